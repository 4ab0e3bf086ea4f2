/* The tunnel behind a WebSocket 101: one sl_tunnel owns the client and target sockets, one
 * struct event on each, and moves bytes both ways. A direction copies: one read into a
 * 16 KiB buffer from the worker's cache (32 KiB once it streams) and one send, nothing
 * allocated per message.
 * splice(2) through a pipe is used only with a pool (sluice.splice) and only for streams:
 * measured on loopback (bench/RESULTS.md), it beat copying by ~1.15x for one stream of
 * 64 KiB messages, but with 50 streams of 4 KiB messages copying was ~1.5-2x faster (the
 * receivers pay for spliced skbs; sluice was not the bottleneck there), and for small
 * messages one read + one send beats socket -> pipe -> socket. So a direction whose reads
 * keep filling the buffer (STREAM_AFTER in a row) tries splice, and stays with it while a
 * splice round moves at least SPLICE_MIN bytes and the receiver keeps up. Pipes and buffers come
 * from the worker's pool only while bytes are in flight; without a pipe (pool empty, out of fds,
 * splice unsupported) a direction copies. It does not look at WebSocket frames: it is a byte pipe
 * with half-close, reset and idle-timeout rules. Single-threaded, like the worker that owns it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sluice/common.h"
#include "sluice/tunnel.h"

/* The copy path's buffer: 16 KiB is what one read of a loopback or LAN socket usually gives,
 * and small enough that a few of them per worker cost nothing. */
#define COPY_BUF_SIZE (16 * 1024)
/* A stream's buffer (reads that keep filling COPY_BUF_SIZE) and a wss tunnel's: one read and
 * one send move twice as much and the receivers wake up half as often; for TLS, two records
 * per read of the target and per send to it. Measured on loopback (sluice-bench, pinned):
 * 50 streams of 4 KiB messages 1.05-1.19x faster than with 16 KiB, one stream of 64 KiB
 * messages the same; with 64 KiB buffers that one stream lost ~25 % (bursts the receivers
 * could not absorb), and wss gained nothing over 32 KiB. */
#define BIG_BUF_SIZE (32 * 1024)
/* Full copy reads in a row before a direction tries splice, and the bytes a splice round
 * must move to keep it (see the top of the file). */
#define STREAM_AFTER 4
#define SPLICE_MIN (64 * 1024)
/* After the receiver pushed back (a short send, or splice met a full socket): this many more
 * full copy reads before the direction tries splice again. */
#define SPLICE_BACKOFF (-100)
/* Idle copy buffers a pool keeps, so the copy path does not malloc on every read. */
#define BUF_CACHE_MAX 16
/* Bytes one direction moves per wakeup before yielding to the other connections of the
 * worker; the events are level-triggered, so the rest is picked up on the next pass. */
#define PUMP_BUDGET (512 * 1024)
/* libevent's timer runs on its cached (possibly coarse) monotonic clock and we read ours a
 * little later in the callback, so a timeout fires up to a few ms "early" by our clock.
 * Without slack that would re-arm the event for a whole extra period. */
#define TIMEOUT_SLACK_MS 10
/* The kernel's default pipe size, if F_GETPIPE_SZ ever fails. */
#define PIPE_DEFAULT_SIZE (16 * 4096)

struct tun_pipe {
    int rfd, wfd;
    unsigned len;          /* bytes inside */
    unsigned cap;          /* its size, from F_SETPIPE_SZ/F_GETPIPE_SZ */
    struct tun_pipe *next; /* in the pool's idle stack */
};

struct sl_pipe_pool {
    struct tun_pipe *idle; /* stack: the most recently used pipe is the warmest */
    void *bufs[2];         /* idle copy buffers (COPY_BUF_SIZE, BIG_BUF_SIZE), linked through
                            * their first bytes */
    unsigned n_idle, n_in_use, max, size, n_bufs[2];
    bool eager; /* splice every read (sl_pipe_pool_set_eager) */
    uint64_t created, exhausted;
};

enum {
    DIR_F_EOF = 1 << 0,      /* the source said EOF */
    DIR_F_SHUT = 1 << 1,     /* ... and it was passed on: shutdown(dst, SHUT_WR) done */
    DIR_F_NOSPLICE = 1 << 2, /* splice refused these fds: copy from now on */
    DIR_F_BUF_COPY = 1 << 3, /* buf is a copy buffer (back to the pool's cache) */
    DIR_F_STREAM = 1 << 4,   /* large reads: splice (see the top of the file), else copy
                              * through BIG_BUF_SIZE buffers */
    DIR_F_BUF_BIG = 1 << 5,  /* buf is a BIG_BUF_SIZE copy buffer */
    DIR_F_RDHUP = 1 << 6,    /* epoll said the source's FIN is in (EV_CLOSED): a read that
                              * does not fill the buffer has taken the last bytes */
};

enum {
    TUN_F_ENDED = 1 << 0,   /* tunnel_end has run or is running */
    TUN_F_SPLICED = 1 << 1, /* a byte went through a pipe */
    TUN_F_MOVED = 1 << 2,   /* a byte moved during this callback */
    TUN_F_REARM = 1 << 3,   /* the timeout changed: re-add both events */
    TUN_F_TMO = 1 << 4,     /* tmo is set (idle or FIN timeout armed) */
};

/* A TLS client side: what SSL_read/SSL_write need besides their own readiness. */
enum {
    TLS_RD_WANTS_WRITE = 1 << 0, /* SSL_read must write (a TLS 1.3 key update answer) */
    TLS_WR_WANTS_READ = 1 << 1,  /* SSL_write must read first */
};

/* One direction: src = fd[i], dst = fd[!i]. It holds bytes only while they are in flight,
 * in buf (handed-over or copied bytes) or in pipe, never both: it reads again only once
 * everything is sent. */
struct tun_dir {
    struct tun_pipe *pipe; /* attached only while it holds bytes */
    char *buf;             /* non-NULL only while off < len */
    uint32_t off, len;
    uint8_t flags;
    int8_t full_reads; /* copy reads in a row that filled the buffer, or a backoff (< 0) */
};

struct sl_tunnel {
    struct event ev[2];    /* [0] on the client fd, [1] on the target fd */
    struct tun_dir dir[2]; /* [0] up: client -> target, [1] down: target -> client */
    struct sl_tunnel *prev, *next;
    struct sl_tunnel_list *list;
    struct event_base *base;
    struct sl_pipe_pool *pool;
    sl_tunnel_done_cb done;
    void *done_arg;
    struct timeval tmo;   /* common-timeout value for both events */
    struct timeval start; /* wall clock, for the log */
    uint64_t start_us;    /* monotonic, for the duration */
    uint64_t end_us;      /* monotonic, once ended */
    uint64_t last_ms;     /* monotonic: the last byte moved */
    uint64_t fin_at_ms;   /* 0, or when a half-closed tunnel ends regardless */
    uint64_t bytes[2];    /* delivered, per direction */
    int fd[2];
    SSL *ssl;         /* the client side's TLS session, or NULL */
    uint8_t tls_want; /* TLS_* */
    uint32_t idle_ms;
    short interest[2]; /* EV_READ|EV_WRITE as last added, -1 = not added */
    uint8_t flags;
    uint8_t end;       /* enum sl_err: why it ended, or why it is about to */
    uint8_t first_eof; /* enum sl_err: CLIENT_CLOSED or TARGET_CLOSED, by the first EOF */
};

/* Monotonic, not event_base_gettimeofday_cached(): that one is the wall clock (libevent's
 * cached monotonic time plus an offset), and a clock step would end every tunnel at once
 * or keep idle ones forever. clock_gettime is a vDSO call, no syscall. */
static inline uint64_t mono_us(void)
{
    return sl_clock_us(CLOCK_MONOTONIC);
}

/* ------------------------------------------------------------------------------------------ */
/* The pool */

/* A pool of at most <max_pipes> pipes of <pipe_size> bytes (0 = kernel default), none made
 * yet: pipes are made on demand. NULL on out-of-memory. The caller frees it with
 * sl_pipe_pool_free once its tunnels are gone. */
struct sl_pipe_pool *sl_pipe_pool_new(unsigned max_pipes, unsigned pipe_size)
{
    struct sl_pipe_pool *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->max = max_pipes;
    p->size = pipe_size;
    return p;
}

/* Closes every idle pipe, frees the cached copy buffers and the pool. Pipes in use belong to
 * live tunnels, which must be gone by now. */
void sl_pipe_pool_free(struct sl_pipe_pool *p)
{
    if (!p)
        return;
    SL_BUG_ON(p->n_in_use != 0);
    while (p->idle) {
        struct tun_pipe *pp = p->idle;

        p->idle = pp->next;
        close(pp->rfd);
        close(pp->wfd);
        free(pp);
    }
    for (int k = 0; k < 2; k++)
        while (p->bufs[k]) {
            void *b = p->bufs[k];

            memcpy(&p->bufs[k], b, sizeof(void *));
            free(b);
        }
    free(p);
}

void sl_pipe_pool_set_eager(struct sl_pipe_pool *p, bool eager)
{
    p->eager = eager;
}

/* Copies the pool's counters into <out>; a NULL pool reads as all zero. */
void sl_pipe_pool_stats(const struct sl_pipe_pool *p, struct sl_pipe_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    out->idle = p->n_idle;
    out->in_use = p->n_in_use;
    out->max = p->max;
    out->created = p->created;
    out->exhausted = p->exhausted;
}

/* An empty pipe for a direction that has bytes to move, or NULL: copy instead. */
static struct tun_pipe *pipe_get(struct sl_pipe_pool *pool)
{
    struct tun_pipe *p;
    int fds[2], sz;

    if (!pool || pool->max == 0)
        return NULL; /* copy only by configuration: not "exhausted" */
    if (pool->idle) {
        p = pool->idle;
        pool->idle = p->next;
        pool->n_idle--;
        pool->n_in_use++;
        return p;
    }
    if (pool->n_in_use >= pool->max)
        goto exhausted;
    p = malloc(sizeof(*p));
    if (!p)
        goto exhausted;
    /* EMFILE/ENFILE are expected under load: each pipe is two fds. */
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
        free(p);
        goto exhausted;
    }
    /* F_SETPIPE_SZ fails above /proc/sys/fs/pipe-max-size or once the user has used up
     * pipe-user-pages-soft; the pipe then keeps the default size, which still works. It
     * returns the size really set (rounded up to a power-of-two number of pages). */
    sz = pool->size > 0 ? fcntl(fds[1], F_SETPIPE_SZ, (int)pool->size) : -1;
    if (sz <= 0)
        sz = fcntl(fds[1], F_GETPIPE_SZ);
    p->rfd = fds[0];
    p->wfd = fds[1];
    p->len = 0;
    p->cap = sz > 0 ? (unsigned)sz : PIPE_DEFAULT_SIZE;
    p->next = NULL;
    pool->created++;
    pool->n_in_use++;
    return p;

exhausted:
    pool->exhausted++;
    return NULL;
}

/* Back to the pool: only empty pipes, so the next user starts clean. */
static void pipe_put(struct sl_pipe_pool *pool, struct tun_pipe *p)
{
    SL_BUG_ON(p->len != 0);
    p->next = pool->idle;
    pool->idle = p;
    pool->n_in_use--;
    pool->n_idle++;
}

/* A pipe that hit an error or still holds bytes nobody will read is closed, not pooled. */
static void pipe_kill(struct sl_pipe_pool *pool, struct tun_pipe *p)
{
    close(p->rfd);
    close(p->wfd);
    free(p);
    pool->n_in_use--;
}

/* A copy buffer from <t>'s pool: COPY_BUF_SIZE, or BIG_BUF_SIZE when <big>. */
static void *buf_get(struct sl_tunnel *t, bool big)
{
    struct sl_pipe_pool *pool = t->pool;
    int k = big;
    void *b;

    if (pool && pool->bufs[k]) {
        b = pool->bufs[k];
        memcpy(&pool->bufs[k], b, sizeof(void *));
        pool->n_bufs[k]--;
        return b;
    }
    return malloc(k ? BIG_BUF_SIZE : COPY_BUF_SIZE);
}

static void buf_put(struct sl_tunnel *t, void *b, bool big)
{
    struct sl_pipe_pool *pool = t->pool;
    int k = big;

    if (pool && pool->n_bufs[k] < BUF_CACHE_MAX) {
        memcpy(b, &pool->bufs[k], sizeof(void *));
        pool->bufs[k] = b;
        pool->n_bufs[k]++;
        return;
    }
    free(b);
}

/* ------------------------------------------------------------------------------------------ */
/* One direction */

static inline bool dir_pending(const struct tun_dir *d)
{
    return d->buf || d->pipe;
}

static void dir_drop_buf(struct sl_tunnel *t, struct tun_dir *d)
{
    if (d->flags & DIR_F_BUF_COPY)
        buf_put(t, d->buf, d->flags & DIR_F_BUF_BIG);
    else
        free(d->buf);
    d->buf = NULL;
    d->off = d->len = 0;
    d->flags &= ~(DIR_F_BUF_COPY | DIR_F_BUF_BIG);
}

/* Whatever the direction still holds, at the end of the tunnel. */
static void dir_release(struct sl_tunnel *t, struct tun_dir *d)
{
    if (d->buf)
        dir_drop_buf(t, d);
    if (d->pipe) {
        pipe_kill(t->pool, d->pipe);
        d->pipe = NULL;
    }
}

/* The result <r> of SSL_read (<wr> false) or SSL_write on the client side as read(2) or send(2)
 * would give it: bytes, 0 at the client's close_notify (or EOF), or -1 with errno; EAGAIN
 * also when TLS needs the other readiness first (noted in tls_want for tunnel_watch). */
static ssize_t tls_result(struct sl_tunnel *t, int r, bool wr)
{
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);

    switch (e) {
    case SSL_ERROR_NONE:
        return r;
    case SSL_ERROR_WANT_READ:
        if (wr)
            t->tls_want |= TLS_WR_WANTS_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (!wr)
            t->tls_want |= TLS_RD_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        if (!wr)
            return 0;
        errno = EPIPE; /* the client has closed: nothing more can reach it */
        return -1;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0 && !wr)
            return 0; /* EOF without close_notify */
        if (errno == 0)
            errno = EPIPE;
        return -1;
    default:
        ERR_clear_error(); /* a bad record: the client's stream is broken */
        errno = EPROTO;
        return -1;
    }
}

/* read(2) from side <i>, through TLS on a TLS client side. */
static inline ssize_t side_read(struct sl_tunnel *t, int i, void *b, size_t n)
{
    if (i == 0 && t->ssl) {
        ERR_clear_error(); /* SSL_get_error reads the thread's queue: only ours in it */
        return tls_result(t, SSL_read(t->ssl, b, (int)n), false);
    }
    /* recv, not read: the socket call skips the VFS read path (~30 ns a call here). */
    return recv(t->fd[i], b, n, 0);
}

/* send(2) to side <i>, through TLS on a TLS client side. <more>: a FIN follows at once, so
 * the kernel holds a small tail until shutdown() or close() sends it along with the FIN. */
static inline ssize_t side_send(struct sl_tunnel *t, int i, const void *b, size_t n, bool more)
{
    if (i == 0 && t->ssl) {
        ERR_clear_error();
        return tls_result(t, SSL_write(t->ssl, b, n > INT32_MAX ? INT32_MAX : (int)n), true);
    }
    /* MSG_NOSIGNAL: a peer that reset must cost an EPIPE, not the process. */
    return send(t->fd[i], b, n, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
}

/* Records why a read or write of side <side> (0 client, 1 target) failed: SL_ERROR. */
static int dir_fail(struct sl_tunnel *t, int side, int err)
{
    if (err == ENOMEM || err == ENOBUFS)
        t->end = SL_ERR_RESOURCES;
    else
        t->end = side == 0 ? SL_ERR_CLIENT_RESET : SL_ERR_TARGET_RESET;
    return SL_ERROR;
}

static inline bool splice_unsupported(int err)
{
    return err == EINVAL || err == ENOSYS || err == EBADF;
}

/* splice refused to write the pipe out (never seen on TCP, but a socket with a ULP might):
 * move what the pipe holds into a plain buffer so it can go out with send(), and copy from
 * now on. The bytes are in the pipe already, so the reads cannot block. */
static int pipe_to_buf(struct sl_tunnel *t, struct tun_dir *d)
{
    struct tun_pipe *p = d->pipe;
    char *b = malloc(p->len);
    uint32_t got = 0;

    if (!b) {
        t->end = SL_ERR_RESOURCES;
        return SL_ERROR;
    }
    while (got < p->len) {
        ssize_t n = read(p->rfd, b + got, p->len - got);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(b);
            t->end = SL_ERR_RESOURCES;
            return SL_ERROR;
        }
        got += (uint32_t)n;
    }
    p->len = 0;
    pipe_kill(t->pool, p);
    d->pipe = NULL;
    d->buf = b;
    d->off = 0;
    d->len = got;
    d->flags |= DIR_F_NOSPLICE;
    return SL_OK;
}

/* Sends what direction <i> holds to fd[!i]: SL_OK once it holds nothing,
 * SL_AGAIN when the destination is full, SL_ERROR (t->end set) on an error. */
static int tunnel_splice_out(struct sl_tunnel *t, int i)
{
    struct tun_dir *d = &t->dir[i];
    int dst = t->fd[!i];

again:
    while (d->buf) {
        /* Past EOF, dir_pump's next step is dir_shut (or the tunnel's close). */
        ssize_t n = side_send(t, !i, d->buf + d->off, d->len - d->off, d->flags & DIR_F_EOF);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return SL_AGAIN;
            return dir_fail(t, !i, errno);
        }
        /* A short send: the receiver is the bottleneck, keep copying (see EAGAIN below). */
        if ((size_t)n < d->len - d->off)
            d->full_reads = SPLICE_BACKOFF;
        d->off += (uint32_t)n;
        t->bytes[i] += (uint64_t)n;
        t->flags |= TUN_F_MOVED;
        if (d->off == d->len)
            dir_drop_buf(t, d);
    }
    while (d->pipe) {
        struct tun_pipe *p = d->pipe;
        /* splice cannot take MSG_NOSIGNAL: writing to a reset socket raises SIGPIPE, which
         * the process must ignore (haproxy does the same). */
        ssize_t n = splice(p->rfd, NULL, dst, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* The receiver is the bottleneck: splicing into a full socket moves a few
                 * hundred bytes per wakeup (pipe pages count whole against its send
                 * buffer), where a 16 KiB copy moves 16 KiB. Copy from now on. */
                d->flags &= ~DIR_F_STREAM;
                d->full_reads = SPLICE_BACKOFF;
                return SL_AGAIN;
            }
            if (splice_unsupported(errno)) {
                if (pipe_to_buf(t, d) != SL_OK)
                    return SL_ERROR;
                goto again;
            }
            return dir_fail(t, !i, errno);
        }
        /* We are the pipe's only reader and it holds p->len bytes, so 0 cannot happen. */
        SL_BUG_ON(n == 0);
        p->len -= (unsigned)n;
        t->bytes[i] += (uint64_t)n;
        t->flags |= TUN_F_MOVED | TUN_F_SPLICED;
        if (p->len == 0) {
            pipe_put(t->pool, p); /* empty: an idle tunnel holds no pipe */
            d->pipe = NULL;
        }
    }
    return SL_OK;
}

static void dir_saw_eof(struct sl_tunnel *t, int i)
{
    t->dir[i].flags |= DIR_F_EOF;
    if (t->first_eof == SL_ERR_NONE)
        t->first_eof = i == 0 ? SL_ERR_CLIENT_CLOSED : SL_ERR_TARGET_CLOSED;
}

/* Reads from fd[i] into pipe <p> while the reads come back large, until the socket is empty
 * or the pipe full; the pipe stays attached if it got bytes. Returns the bytes read (*more: the
 * pipe filled up, the socket may hold more), 0 at EOF, SL_AGAIN, SL_DECLINED (splice unsupported
 * and nothing read: copy instead) or SL_ERROR. */
static ssize_t tunnel_splice_in(struct sl_tunnel *t, int i, struct tun_pipe *p, bool *more)
{
    struct tun_dir *d = &t->dir[i];
    ssize_t got = 0;

    for (;;) {
        /* Ask for all the room left: one call per pipeful rather than per segment. */
        ssize_t n = splice(t->fd[i], NULL, p->wfd, NULL, p->cap - p->len,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

        if (n > 0) {
            p->len += (unsigned)n;
            got += n;
            if (p->len >= p->cap) {
                *more = true;
                break;
            }
            /* One splice takes all the socket holds, up to the pipe's room or slots: after
             * a small one it is most likely empty, and the EAGAIN of asking again would be
             * a wasted syscall (level-triggered EV_READ brings us back if more came). A
             * large one means a stream still arriving: keep filling the pipe. */
            if (n < SPLICE_MIN)
                break;
            continue;
        }
        if (n == 0) {
            dir_saw_eof(t, i);
            break;
        }
        if (errno == EINTR)
            continue;
        /* EAGAIN: the socket is empty, or the pipe ran out of slots before p->cap bytes
         * (each slot holds one page at most, and segments rarely fill pages): either way
         * level-triggered EV_READ tells us when to come back. */
        if (errno == EAGAIN)
            break;
        if (splice_unsupported(errno)) {
            d->flags |= DIR_F_NOSPLICE;
            if (p->len == 0) {
                pipe_kill(t->pool, p);
                return SL_DECLINED;
            }
            break;
        }
        d->pipe = p; /* tunnel_end closes it with whatever it holds */
        return dir_fail(t, i, errno);
    }
    if (p->len > 0)
        d->pipe = p;
    else
        pipe_put(t->pool, p);
    if (got > 0) {
        if (got < SPLICE_MIN && (d->flags & DIR_F_STREAM)) {
            d->flags &= ~DIR_F_STREAM; /* too little for splice to pay: copy again */
            d->full_reads = 0;
        }
        t->flags |= TUN_F_MOVED;
        return got;
    }
    return (d->flags & DIR_F_EOF) ? 0 : SL_AGAIN;
}

/* Whether the next byte of <fd> is urgent data (SIOCATMARK), which a read stops before. */
static bool at_urgent_mark(int fd)
{
    int at = 0;

    return ioctl(fd, SIOCATMARK, &at) == 0 && at;
}

/* The copy path: one read of up to COPY_BUF_SIZE bytes, BIG_BUF_SIZE for a stream or a wss
 * tunnel (whose TLS side reads records until it is full or has nothing more). Same returns as
 * tunnel_splice_in; *more when the buffer filled up. */
static ssize_t copy_in(struct sl_tunnel *t, int i, bool *more)
{
    struct tun_dir *d = &t->dir[i];
    bool big = t->ssl || (d->flags & DIR_F_STREAM);
    size_t cap = big ? BIG_BUF_SIZE : COPY_BUF_SIZE;
    char *b = buf_get(t, big);
    ssize_t n, got = 0;

    if (!b) {
        t->end = SL_ERR_RESOURCES;
        return SL_ERROR;
    }
    do {
        n = side_read(t, i, b + got, cap - (size_t)got);
        if (n > 0)
            got += n;
    } while ((n == -1 && errno == EINTR) ||
             (n > 0 && i == 0 && t->ssl && (size_t)got < cap && SSL_has_pending(t->ssl)));
    if (got > 0) {
        n = got;
        d->buf = b;
        d->off = 0;
        d->len = (uint32_t)n;
        d->flags |= DIR_F_BUF_COPY | (big ? DIR_F_BUF_BIG : 0);
        /* A stream that slowed down to small reads: back to small buffers. */
        if (!t->ssl && (size_t)n < COPY_BUF_SIZE)
            d->flags &= ~DIR_F_STREAM;
        /* A short read means the socket is empty now: skip the read that would only say
         * EAGAIN. TLS may hold more already read. */
        *more = (size_t)n == cap || (i == 0 && t->ssl && SSL_has_pending(t->ssl));
        if (!*more)
            d->full_reads = d->full_reads > 0 ? 0 : d->full_reads; /* a backoff runs on */
        else if (d->full_reads < STREAM_AFTER && ++d->full_reads == STREAM_AFTER)
            d->flags |= DIR_F_STREAM; /* a stream: the next reads try splice */
        /* The FIN was in before this read and the read left the socket empty: these are the
         * last bytes. Saying EOF now spares the read that returns 0, and the send below goes
         * out with the FIN in the same segment (one packet and one ACK fewer for the side
         * that closes first). A read also stops short at TCP's urgent mark, with bytes
         * behind it: there, read on. */
        if (!*more && (d->flags & DIR_F_RDHUP) && !at_urgent_mark(t->fd[i]))
            dir_saw_eof(t, i);
        t->flags |= TUN_F_MOVED;
        return n;
    }
    buf_put(t, b, big);
    if (n == 0) {
        dir_saw_eof(t, i);
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return SL_AGAIN;
    return dir_fail(t, i, errno);
}

/* Direction <i> holds nothing and its source said EOF: pass the FIN on. The first one starts
 * the FIN timeout for the other direction. */
static void dir_shut(struct sl_tunnel *t, int i)
{
    struct tun_dir *d = &t->dir[i];
    const struct timeval *c;
    struct timeval tv;
    uint32_t fin = t->list->draining ? SL_TUNNEL_DRAIN_FIN_MS : SL_TUNNEL_FIN_TIMEOUT_MS;
    uint32_t ms = fin;

    if (d->flags & DIR_F_SHUT)
        return;
    d->flags |= DIR_F_SHUT;
    /* A TLS client learns the end from close_notify (best effort: never waits). */
    if (i == 1 && t->ssl) {
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    /* Both done: the tunnel ends now, and its close() sends this FIN (fd[!i] has read its
     * own EOF, so nothing unread turns it into a reset): one syscall fewer per tunnel. */
    if (t->dir[!i].flags & DIR_F_SHUT)
        return;
    /* A failure (the peer is gone) shows on that side's next read or write. */
    shutdown(t->fd[!i], SHUT_WR);
    t->fin_at_ms = mono_us() / 1000 + fin;
    if (t->idle_ms && t->idle_ms < ms)
        ms = t->idle_ms;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    c = event_base_init_common_timeout(t->base, &tv);
    t->tmo = c ? *c : tv;
    t->flags |= TUN_F_TMO | TUN_F_REARM;
}

/* Moves direction <i> as far as it goes now: flush what it holds, then read and flush
 * again, until the source is empty, the destination is full (backpressure: it
 * stops reading and waits for EV_WRITE on the destination) or the budget is spent.
 * SL_OK, or SL_ERROR with t->end set. */
static int dir_pump(struct sl_tunnel *t, int i)
{
    struct tun_dir *d = &t->dir[i];
    size_t budget = PUMP_BUDGET;
    bool more = true;

    for (;;) {
        if (dir_pending(d)) {
            int rc = tunnel_splice_out(t, i);

            if (rc == SL_AGAIN)
                return SL_OK;
            if (rc != SL_OK)
                return rc;
        }
        if (d->flags & DIR_F_EOF) {
            dir_shut(t, i);
            return SL_OK;
        }
        if (!more || budget == 0)
            return SL_OK;

        ssize_t n = SL_DECLINED;
        struct tun_pipe *p;

        more = false;
        if (!(d->flags & DIR_F_NOSPLICE) &&
            ((d->flags & DIR_F_STREAM) || (t->pool && t->pool->eager)) &&
            (p = pipe_get(t->pool)) != NULL)
            n = tunnel_splice_in(t, i, p, &more);
        if (n == SL_DECLINED)
            n = copy_in(t, i, &more);
        if (n == SL_AGAIN)
            return SL_OK;
        if (n < 0)
            return SL_ERROR;
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The tunnel */

static void tunnel_on_io(evutil_socket_t fd, short what, void *arg);

/* Sets fd[i]'s interest from the state: EV_READ while its direction may read (no EOF, holds
 * nothing), EV_WRITE while the other direction holds bytes for it. Touches the event (one
 * epoll_ctl at the next dispatch) only when that changed; <force> re-arms its timeout. 0, or
 * -1 if event_add failed. */
static int tunnel_watch(struct sl_tunnel *t, int i, bool force)
{
    const struct tun_dir *d = &t->dir[i];
    short want = 0;

    /* EV_CLOSED (EPOLLRDHUP) on a plain side: the FIN is announced with the last bytes. Not
     * on a TLS side: SSL may hold bytes the socket no longer shows. */
    if (!(d->flags & DIR_F_EOF) && !dir_pending(d))
        want |= (i == 0 && t->ssl) ? EV_READ : EV_READ | EV_CLOSED;
    if (dir_pending(&t->dir[!i]))
        want |= EV_WRITE;
    if (i == 0 && (t->tls_want & TLS_RD_WANTS_WRITE))
        want |= EV_WRITE;
    if (i == 0 && (t->tls_want & TLS_WR_WANTS_READ))
        want |= EV_READ;
    if (want == t->interest[i]) {
        if (!force)
            return 0;
        /* Only the timeout changed: event_add reschedules it and leaves epoll alone. */
        return event_add(&t->ev[i], (t->flags & TUN_F_TMO) ? &t->tmo : NULL);
    }
    if (t->interest[i] != -1)
        event_del(&t->ev[i]);
    t->interest[i] = -1;
    event_assign(&t->ev[i], t->base, t->fd[i], want | EV_PERSIST, tunnel_on_io, t);
    /* With no EV_READ/EV_WRITE the event is a pure timer: the timeout still runs. */
    if (event_add(&t->ev[i], (t->flags & TUN_F_TMO) ? &t->tmo : NULL) == -1)
        return -1;
    t->interest[i] = want;
    return 0;
}

static void abort_close(int fd)
{
    /* Linger 0: close sends RST, so the peer learns the stream broke rather than ended. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Closes both fds, gives back pipes and buffers, leaves the list, calls done and frees the
 * tunnel. Inside a callback it must be the last thing done with <t>. */
static void tunnel_end(struct sl_tunnel *t, enum sl_err why)
{
    struct sl_tunnel_info info;
    bool reset =
        why == SL_ERR_CLIENT_RESET || why == SL_ERR_TARGET_RESET || why == SL_ERR_RESOURCES;

    t->flags |= TUN_F_ENDED;
    t->end = (uint8_t)why;
    t->end_us = mono_us();
    for (int i = 0; i < 2; i++) {
        /* Also takes the event off the active queue if the other fd is ready in this same
         * loop pass, so libevent never calls us on freed memory. */
        if (t->interest[i] != -1)
            event_del(&t->ev[i]);
        if (i == 0 && t->ssl)
            SSL_free(t->ssl);
        if (reset)
            abort_close(t->fd[i]);
        else
            close(t->fd[i]);
        dir_release(t, &t->dir[i]);
    }
    if (t->prev)
        t->prev->next = t->next;
    else
        t->list->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->list->n--;
    sl_tunnel_get_info(t, &info);
    if (t->done)
        t->done(t, &info, t->done_arg);
    free(t);
}

/* Whether the timeout that just fired ends the tunnel, and why. The events' timers are
 * re-armed by their own activity only, so a timer may fire while the other fd is busy. */
static bool tunnel_expired(const struct sl_tunnel *t, enum sl_err *why)
{
    uint64_t now = mono_us() / 1000;

    if (t->fin_at_ms && now + TIMEOUT_SLACK_MS >= t->fin_at_ms) {
        *why = (enum sl_err)t->first_eof; /* the side that closed first ended it */
        return true;
    }
    if (t->idle_ms && now + TIMEOUT_SLACK_MS >= t->last_ms + t->idle_ms) {
        *why = SL_ERR_IDLE_TIMEOUT;
        return true;
    }
    return false;
}

/* An SSL_read that had to write, or an SSL_write that had to read, goes on when the client
 * socket is ready that other way. */
static int tls_retry(struct sl_tunnel *t, short what)
{
    if ((what & EV_WRITE) && (t->tls_want & TLS_RD_WANTS_WRITE)) {
        t->tls_want &= ~TLS_RD_WANTS_WRITE;
        if (dir_pump(t, 0) != SL_OK)
            return SL_ERROR;
    }
    if ((what & EV_READ) && (t->tls_want & TLS_WR_WANTS_READ)) {
        t->tls_want &= ~TLS_WR_WANTS_READ;
        if (dir_pump(t, 1) != SL_OK)
            return SL_ERROR;
    }
    return SL_OK;
}

/* TLS may hold client bytes it has read from the socket but not handed out yet (a pump that
 * ran out of budget, read-ahead): no readiness will announce them, so come back for them. */
static inline void tls_pending(struct sl_tunnel *t)
{
    if (t->ssl && !(t->dir[0].flags & DIR_F_EOF) && !dir_pending(&t->dir[0]) &&
        SSL_has_pending(t->ssl))
        event_active(&t->ev[0], EV_READ, 1);
}

/* HOT: splice. Both directions of a tunnel are driven from here (dir_pump ->
 * tunnel_splice_in/_out): fd is the source of its own direction (EV_READ) and the
 * destination of the other one (EV_WRITE). */
static void tunnel_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct sl_tunnel *t = arg;
    int i = fd == t->fd[1];
    enum sl_err why;

    if ((what & EV_TIMEOUT) && tunnel_expired(t, &why)) {
        tunnel_end(t, why);
        return;
    }
    if (SL_UNLIKELY(t->tls_want) && i == 0 && tls_retry(t, what) != SL_OK) {
        tunnel_end(t, (enum sl_err)t->end);
        return;
    }
    if ((what & EV_WRITE) && dir_pump(t, !i) != SL_OK) {
        tunnel_end(t, (enum sl_err)t->end);
        return;
    }
    if (what & EV_CLOSED)
        t->dir[i].flags |= DIR_F_RDHUP;
    if ((what & EV_READ) && dir_pump(t, i) != SL_OK) {
        tunnel_end(t, (enum sl_err)t->end);
        return;
    }
    tls_pending(t);
    if (t->flags & TUN_F_MOVED) {
        t->flags &= ~TUN_F_MOVED;
        t->last_ms = mono_us() / 1000;
    }
    if (t->dir[0].flags & t->dir[1].flags & DIR_F_SHUT) {
        tunnel_end(t, (enum sl_err)t->first_eof);
        return;
    }
    bool force = t->flags & TUN_F_REARM;

    t->flags &= ~TUN_F_REARM;
    if (tunnel_watch(t, 0, force) == -1 || tunnel_watch(t, 1, force) == -1)
        tunnel_end(t, SL_ERR_RESOURCES);
}

/* Direction <i>'s first bytes, handed over by the caller: sent now as far as the socket
 * takes them (the 101 goes out without a round through epoll), the rest copied for EV_WRITE.
 * A send error is left for that EV_WRITE path too, which meets it again and ends the tunnel
 * from its callback. -1 on out-of-memory. */
static int dir_handover(struct sl_tunnel *t, int i, const char *data, size_t len)
{
    struct tun_dir *d = &t->dir[i];
    ssize_t n;

    if (len == 0)
        return 0;
    if (len > UINT32_MAX)
        return -1;
    do {
        n = side_send(t, !i, data, len, false);
    } while (n == -1 && errno == EINTR);
    if (n > 0) {
        t->bytes[i] += (uint64_t)n;
        data += n;
        len -= (size_t)n;
        if (len == 0)
            return 0;
    }
    d->buf = malloc(len);
    if (!d->buf)
        return -1;
    memcpy(d->buf, data, len);
    d->off = 0;
    d->len = (uint32_t)len;
    return 0;
}

/* Makes and starts the tunnel between <client_fd> and <target_fd> (see tunnel.h). It sends
 * the handed-over bytes if the sockets take them, but never fails or ends on a write error
 * (see dir_handover), so <done> can never run before the caller has the pointer. Returns the
 * tunnel, owning both fds and linked into <list>; or NULL (out of memory, or event_add failed) with
 * both fds closed and <done> not called. */
struct sl_tunnel *sl_tunnel_new(struct event_base *base, struct sl_pipe_pool *pool,
                                struct sl_tunnel_list *list, int client_fd, SSL *client_tls,
                                int target_fd, const void *to_target, size_t to_target_len,
                                const void *to_client, size_t to_client_len, uint32_t idle_ms,
                                sl_tunnel_done_cb done, void *arg)
{
    struct sl_tunnel *t = calloc(1, sizeof(*t));

    if (!t)
        goto fail;
    t->base = base;
    t->pool = pool;
    t->list = list;
    t->done = done;
    t->done_arg = arg;
    t->fd[0] = client_fd;
    t->fd[1] = target_fd;
    if ((t->ssl = client_tls)) {
        /* Reading ahead: one read(2) per socketful instead of two per record (tls_pending
         * picks up what it holds). Splice sees ciphertext on the client socket unless the
         * kernel does the crypto (kTLS): then spliced bytes are encrypted on their way out. */
        SSL_set_read_ahead(t->ssl, 1);
        t->dir[0].flags |= DIR_F_NOSPLICE;
        if (BIO_get_ktls_send(SSL_get_wbio(t->ssl)) <= 0)
            t->dir[1].flags |= DIR_F_NOSPLICE;
    }
    t->idle_ms = idle_ms;
    t->interest[0] = t->interest[1] = -1;
    gettimeofday(&t->start, NULL);
    t->start_us = mono_us();
    t->last_ms = t->start_us / 1000;
    if (dir_handover(t, 1, to_client, to_client_len) == -1 ||
        dir_handover(t, 0, to_target, to_target_len) == -1)
        goto fail;
    if (idle_ms > 0) {
        struct timeval tv = {.tv_sec = idle_ms / 1000, .tv_usec = (idle_ms % 1000) * 1000};
        /* One queue per distinct duration, O(1) add and remove, instead of the min-heap:
         * every tunnel of a listener shares the same idle timeout. NULL only past 256
         * distinct durations; the plain timeout works then too. */
        const struct timeval *c = event_base_init_common_timeout(base, &tv);

        t->tmo = c ? *c : tv;
        t->flags |= TUN_F_TMO;
    }
    if (tunnel_watch(t, 0, true) == -1 || tunnel_watch(t, 1, true) == -1)
        goto fail;
    tls_pending(t);

    t->prev = NULL;
    t->next = list->head;
    if (list->head)
        list->head->prev = t;
    list->head = t;
    list->n++;
    return t;

fail:
    if (t) {
        for (int i = 0; i < 2; i++) {
            if (t->interest[i] != -1)
                event_del(&t->ev[i]);
            free(t->dir[i].buf);
        }
        free(t);
    }
    if (client_tls)
        SSL_free(client_tls);
    close(client_fd);
    close(target_fd);
    return NULL;
}

/* Fills <out> with <t>'s counters so far (final ones inside the done callback). */
void sl_tunnel_get_info(const struct sl_tunnel *t, struct sl_tunnel_info *out)
{
    uint64_t now = (t->flags & TUN_F_ENDED) ? t->end_us : mono_us();

    out->bytes_up = t->bytes[0];
    out->bytes_down = t->bytes[1];
    out->start = t->start;
    out->duration_us = now - t->start_us;
    out->end = (t->flags & TUN_F_ENDED) ? (enum sl_err)t->end : SL_ERR_NONE;
    out->spliced = t->flags & TUN_F_SPLICED;
}

/* Ends <t> now with reason <why>: reset reasons (and SL_ERR_RESOURCES) close both sockets
 * with RST, others with FIN. Calls done, frees <t>. A tunnel already ending is left alone. */
void sl_tunnel_close(struct sl_tunnel *t, enum sl_err why)
{
    if (!t || (t->flags & TUN_F_ENDED))
        return;
    tunnel_end(t, why);
}

/* Shutdown: ends the half-closed tunnels of <list> and shortens later FIN timeouts. */
void sl_tunnel_list_drain(struct sl_tunnel_list *list)
{
    struct sl_tunnel *t, *next;

    list->draining = true;
    for (t = list->head; t; t = next) {
        next = t->next;
        if ((t->dir[0].flags | t->dir[1].flags) & DIR_F_SHUT)
            tunnel_end(t, (enum sl_err)t->first_eof);
    }
}

/* Ends every tunnel in <list> with <why>. A done callback may close others: the head is
 * re-read after each one. */
void sl_tunnel_close_all(struct sl_tunnel_list *list, enum sl_err why)
{
    while (list->head)
        tunnel_end(list->head, why);
}

void sl_tunnel_list_foreach(struct sl_tunnel_list *list, sl_tunnel_visit_cb fn, void *ud)
{
    struct sl_tunnel *t, *next;
    struct sl_tunnel_info info;

    memset(&info, 0, sizeof(info));
    for (t = list->head; t; t = next) {
        next = t->next; /* fn may end t */
        /* the counters only: this runs over every tunnel each second, no clock read */
        info.bytes_up = t->bytes[0];
        info.bytes_down = t->bytes[1];
        fn(t, &info, t->done_arg, ud);
    }
}
