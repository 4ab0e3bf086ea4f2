/* sl_tunnel over real TCP sockets on 127.0.0.1: client_app <-> client_fd [tunnel] target_fd
 * <-> target_app. The app ends are driven non-blocking from the same event_base as the
 * tunnel; every loop is bounded by a deadline. Payloads are a position-dependent pattern
 * checked byte by byte, so loss, duplication and reordering all show. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "sluice/tunnel.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IO_CHUNK (64 * KiB)
#define LONG_IDLE_MS 30000 /* for tests that must not time out */

enum mode {
    M_SPLICE = 0, /* pool with pipes */
    M_COPY0,      /* pool with max_pipes 0 */
    M_NOPOOL,     /* pool NULL */
};

/* One application end: sends <to_send> bytes of pattern <sseed>, expects <expect> bytes:
 * <prefix> then pattern <rseed>. */
struct app {
    struct event ev;
    struct event_base *base;
    int fd;
    short interest; /* -1: event not added */
    uint64_t to_send, sent;
    uint32_t sseed;
    bool shut_after, shut_done;
    const unsigned char *prefix;
    size_t prefix_len;
    uint64_t expect, recvd;
    uint32_t rseed;
    bool paused, eof, bad;
    int err;
};

/* What the done callback saw. */
struct rec {
    int calls;
    struct sl_tunnel_info info;
};

static struct {
    int fds_before;
    struct event_base *base;
    int lfd;
    struct sl_pipe_pool *pool;
    struct sl_tunnel_list list;
    struct app apps[8];
    unsigned n_apps;
} g;

static unsigned char io_buf[IO_CHUNK];

static inline unsigned char pat(uint32_t seed, uint64_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;

    x ^= x >> 15;
    x *= 2246822519u;
    return (unsigned char)(x >> 24);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    assert_int_not_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), -1);
}

static void set_bufs(int fd, int sz)
{
    if (sz <= 0)
        return;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

/* A listening socket on 127.0.0.1, port 0; accepted sockets inherit its buffer sizes. */
static int make_listener(int bufsz)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    set_bufs(fd, bufsz);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

/* A connected pair: *app (connecting end) and *tun (accepted end), both non-blocking. */
static void tcp_pair(int lfd, int bufsz, int *app, int *tun)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(c >= 0);
    set_bufs(c, bufsz);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sl), 0);
    *tun = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(*tun >= 0);
    set_nonblock(c);
    *app = c;
}

/* ------------------------------------------------------------------------------------------ */
/* Application ends */

static void app_on_io(evutil_socket_t fd, short what, void *arg);

static void app_watch(struct app *a)
{
    short want = 0;

    if (a->fd < 0)
        return;
    if (!a->paused && !a->eof && !a->err)
        want |= EV_READ;
    if (!a->err && a->sent < a->to_send)
        want |= EV_WRITE;
    if (want == a->interest)
        return;
    if (a->interest != -1)
        event_del(&a->ev);
    event_assign(&a->ev, a->base, a->fd, want | EV_PERSIST, app_on_io, a);
    assert_int_equal(event_add(&a->ev, NULL), 0);
    a->interest = want;
}

static void app_maybe_shut(struct app *a)
{
    if (a->shut_after && !a->shut_done && a->sent == a->to_send && !a->err) {
        shutdown(a->fd, SHUT_WR);
        a->shut_done = true;
    }
}

static void app_write(struct app *a)
{
    for (int k = 0; k < 4 && a->sent < a->to_send; k++) {
        uint64_t left = a->to_send - a->sent;
        size_t n = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        ssize_t r;

        for (size_t j = 0; j < n; j++)
            io_buf[j] = pat(a->sseed, a->sent + j);
        r = send(a->fd, io_buf, n, MSG_NOSIGNAL);
        if (r == -1) {
            if (errno != EAGAIN && errno != EINTR)
                a->err = errno;
            break;
        }
        a->sent += (uint64_t)r;
    }
    app_maybe_shut(a);
}

static void app_read(struct app *a)
{
    for (int k = 0; k < 8 && !a->paused; k++) {
        ssize_t r = recv(a->fd, io_buf, IO_CHUNK, 0);

        if (r == 0) {
            a->eof = true;
            return;
        }
        if (r == -1) {
            if (errno != EAGAIN && errno != EINTR)
                a->err = errno;
            return;
        }
        for (ssize_t j = 0; j < r; j++) {
            uint64_t off = a->recvd + (uint64_t)j;
            unsigned char want =
                off < a->prefix_len ? a->prefix[off] : pat(a->rseed, off - a->prefix_len);

            if (io_buf[j] != want && !a->bad) {
                fprintf(stderr, "app fd %d: byte %llu is %02x, want %02x\n", a->fd,
                        (unsigned long long)off, io_buf[j], want);
                a->bad = true;
            }
        }
        a->recvd += (uint64_t)r;
    }
}

static void app_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;

    (void)fd;
    if (what & EV_WRITE)
        app_write(a);
    if (what & EV_READ)
        app_read(a);
    app_watch(a);
}

static struct app *app_new(int fd)
{
    struct app *a;

    assert_true(g.n_apps < SL_ARRAY_LEN(g.apps));
    a = &g.apps[g.n_apps++];
    memset(a, 0, sizeof(*a));
    a->base = g.base;
    a->fd = fd;
    a->interest = -1;
    return a;
}

static void app_start(struct app *a)
{
    app_maybe_shut(a);
    app_watch(a);
}

static void app_close(struct app *a, bool rst)
{
    if (a->fd < 0)
        return;
    if (a->interest != -1)
        event_del(&a->ev);
    a->interest = -1;
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        assert_int_equal(setsockopt(a->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    }
    close(a->fd);
    a->fd = -1;
}

static bool app_finished(const struct app *a)
{
    return a->sent == a->to_send && a->recvd == a->expect && a->eof;
}

static void assert_app_ok(const struct app *a)
{
    assert_int_equal(a->err, 0);
    assert_false(a->bad);
    assert_true(a->sent == a->to_send);
    assert_true(a->recvd == a->expect);
}

/* ------------------------------------------------------------------------------------------ */
/* Loop and tunnel helpers */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until cond(arg) holds or <timeout_ms> pass; a 5 ms tick bounds each pass. */
static bool run_until(bool (*cond)(void *), void *arg, unsigned timeout_ms)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = 5000};
    struct event *tick = event_new(g.base, -1, EV_PERSIST, on_tick, NULL);
    uint64_t deadline = now_ms() + timeout_ms;
    bool ok = true;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (!cond || !cond(arg)) {
        if (now_ms() >= deadline) {
            ok = false;
            break;
        }
        event_base_loop(g.base, EVLOOP_ONCE);
    }
    event_free(tick);
    return ok;
}

static void run_for(unsigned ms)
{
    run_until(NULL, NULL, ms);
}

static void on_done(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg)
{
    struct rec *r = arg;
    struct sl_tunnel_info again;

    /* The info passed in and the one read through the pointer agree while t lives. */
    sl_tunnel_get_info(t, &again);
    assert_true(again.bytes_up == info->bytes_up && again.end == info->end);
    r->calls++;
    r->info = *info;
}

static struct sl_pipe_pool *pool_for(enum mode m)
{
    switch (m) {
    case M_SPLICE: { /* every read through a pipe: the pipe path's own tests */
        struct sl_pipe_pool *p = sl_pipe_pool_new(16, 0);

        if (p)
            sl_pipe_pool_set_eager(p, true);
        return p;
    }
    case M_COPY0:
        return sl_pipe_pool_new(0, 0);
    case M_NOPOOL:
        return NULL;
    }
    return NULL;
}

/* A tunnel between two fresh pairs; the app ends are returned not yet started. */
static struct sl_tunnel *tunnel_make(int lfd, int bufsz, struct app **ca, struct app **ta,
                                     const void *up, size_t up_len, const void *down,
                                     size_t down_len, uint32_t idle_ms, struct rec *rec)
{
    int c_app, c_tun, t_app, t_tun;
    struct sl_tunnel *t;

    tcp_pair(lfd, bufsz, &c_app, &c_tun);
    tcp_pair(lfd, bufsz, &t_app, &t_tun);
    *ca = app_new(c_app);
    *ta = app_new(t_app);
    memset(rec, 0, sizeof(*rec));
    t = sl_tunnel_new(g.base, g.pool, &g.list, c_tun, NULL, t_tun, up, up_len, down, down_len, idle_ms,
                      on_done, rec);
    assert_non_null(t);
    return t;
}

struct both {
    struct app *a, *b;
    struct rec *rec;
};

static bool cond_transfer_done(void *arg)
{
    struct both *x = arg;

    return x->rec->calls == 1 && app_finished(x->a) && app_finished(x->b);
}

static bool cond_done(void *arg)
{
    return ((struct rec *)arg)->calls > 0;
}

static bool cond_received(void *arg)
{
    struct both *x = arg;

    return x->a->recvd == x->a->expect && x->b->recvd == x->b->expect;
}

/* ------------------------------------------------------------------------------------------ */
/* Fixtures */

static int setup(void **state)
{
    (void)state;
    memset(&g, 0, sizeof(g));
    g.fds_before = count_fds();
    g.base = event_base_new();
    assert_non_null(g.base);
    g.lfd = make_listener(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_tunnel_close_all(&g.list, SL_ERR_SHUTDOWN);
    assert_null(g.list.head);
    assert_int_equal(g.list.n, 0);
    for (unsigned i = 0; i < g.n_apps; i++)
        app_close(&g.apps[i], false);
    sl_pipe_pool_free(g.pool);
    g.pool = NULL;
    close(g.lfd);
    event_base_free(g.base);
    assert_int_equal(count_fds(), g.fds_before);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Transfers */

static unsigned char *pattern_buf(uint32_t seed, size_t n)
{
    unsigned char *b = malloc(n ? n : 1);

    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = pat(seed, i);
    return b;
}

/* <up>/<down> pattern bytes each way after <hand_up>/<hand_down> handed-over bytes through a
 * tunnel on <pool>; both apps shut down after sending, so the tunnel ends cleanly, every byte
 * checked and counted, and no pipe left in use. Whether it spliced is the caller's to check. */
static void transfer_run(struct sl_pipe_pool *pool, uint64_t up, uint64_t down, size_t hand_up,
                         size_t hand_down, struct rec *out, struct sl_pipe_pool_stats *st)
{
    unsigned char *hu = pattern_buf(0xA1, hand_up), *hd = pattern_buf(0xB2, hand_down);
    struct app *ca, *ta;
    struct rec rec;

    g.pool = pool;
    tunnel_make(g.lfd, 0, &ca, &ta, hu, hand_up, hd, hand_down, LONG_IDLE_MS, &rec);
    /* The tunnel copied them: ours can go now. */
    free(hu);
    free(hd);
    hu = pattern_buf(0xA1, hand_up);
    hd = pattern_buf(0xB2, hand_down);

    ca->to_send = up;
    ca->sseed = 1;
    ca->shut_after = true;
    ca->prefix = hd;
    ca->prefix_len = hand_down;
    ca->expect = hand_down + down;
    ca->rseed = 2;
    ta->to_send = down;
    ta->sseed = 2;
    ta->shut_after = true;
    ta->prefix = hu;
    ta->prefix_len = hand_up;
    ta->expect = hand_up + up;
    ta->rseed = 1;
    app_start(ca);
    app_start(ta);

    struct both x = {ca, ta, &rec};

    assert_true(run_until(cond_transfer_done, &x, 60000));
    assert_app_ok(ca);
    assert_app_ok(ta);
    assert_int_equal(rec.calls, 1);
    assert_true(rec.info.end == SL_ERR_CLIENT_CLOSED || rec.info.end == SL_ERR_TARGET_CLOSED);
    assert_true(rec.info.bytes_up == hand_up + up);
    assert_true(rec.info.bytes_down == hand_down + down);
    assert_null(g.list.head);
    sl_pipe_pool_stats(g.pool, st);
    assert_int_equal(st->in_use, 0);
    free(hu);
    free(hd);
    *out = rec;
}

static void transfer_with(struct sl_pipe_pool *pool, bool expect_splice, uint64_t up, uint64_t down,
                          size_t hand_up, size_t hand_down)
{
    struct rec rec;
    struct sl_pipe_pool_stats st;

    transfer_run(pool, up, down, hand_up, hand_down, &rec, &st);
    assert_int_equal(rec.info.spliced, expect_splice && up + down > 0);
    if (expect_splice && up + down > 0)
        assert_true(st.created >= 1 && st.idle >= 1);
    if (!expect_splice)
        assert_true(st.created == 0);
}

static void transfer(enum mode m, uint64_t up, uint64_t down, size_t hand_up, size_t hand_down)
{
    transfer_with(pool_for(m), m == M_SPLICE, up, down, hand_up, hand_down);
}

#define XFER(name, m, n)                                                                           \
    static void name(void **s)                                                                     \
    {                                                                                              \
        (void)s;                                                                                   \
        transfer(m, n, n, 0, 0);                                                                   \
    }
XFER(xfer_splice_0, M_SPLICE, 0)
XFER(xfer_splice_1, M_SPLICE, 1)
XFER(xfer_splice_64k, M_SPLICE, 64 * KiB)
XFER(xfer_splice_16m, M_SPLICE, 16 * MiB)
XFER(xfer_copy0_0, M_COPY0, 0)
XFER(xfer_copy0_1, M_COPY0, 1)
XFER(xfer_copy0_64k, M_COPY0, 64 * KiB)
XFER(xfer_copy0_16m, M_COPY0, 16 * MiB)
XFER(xfer_nopool_0, M_NOPOOL, 0)
XFER(xfer_nopool_1, M_NOPOOL, 1)
XFER(xfer_nopool_64k, M_NOPOOL, 64 * KiB)
XFER(xfer_nopool_16m, M_NOPOOL, 16 * MiB)

/* One way only, the other direction silent until its FIN. */
static void xfer_one_way(void **s)
{
    (void)s;
    transfer(M_SPLICE, 3 * MiB, 0, 0, 0);
}

/* Big pipes (1 MiB), and a size over pipe-max-size whose F_SETPIPE_SZ failure is ignored. */
static void xfer_pipe_sizes(void **s)
{
    (void)s;
    transfer_with(sl_pipe_pool_new(4, 1 * MiB), true, 16 * MiB, 16 * MiB, 0, 0);
    sl_pipe_pool_free(g.pool);
    g.pool = NULL;
    transfer_with(sl_pipe_pool_new(4, 1u << 30), true, 256 * KiB, 256 * KiB, 0, 0);
}

static void handover_splice(void **s)
{
    (void)s;
    transfer(M_SPLICE, 64 * KiB, 64 * KiB, 100, 37);
}

static void handover_copy(void **s)
{
    (void)s;
    transfer(M_NOPOOL, 64 * KiB, 64 * KiB, 37, 100);
}

/* Handed-over bytes only, no later bytes: they alone make the counters. */
static void handover_only(void **s)
{
    (void)s;
    transfer(M_SPLICE, 0, 0, 5, 9);
}

/* More handed-over bytes than the socket buffers take at once: the flush goes through
 * EAGAIN and EV_WRITE before any later byte may follow. */
static void handover_large(void **s)
{
    (void)s;
    transfer(M_SPLICE, 1 * MiB, 1 * MiB, 3 * MiB, 3 * MiB);
}

/* ------------------------------------------------------------------------------------------ */
/* Half-close, reset */

static bool cond_app_eof(void *arg)
{
    struct app *a = arg;

    return a->eof && a->recvd == a->expect;
}

static bool cond_app_recvd(void *arg)
{
    struct app *a = arg;

    return a->recvd == a->expect;
}

static void half_close(enum mode m)
{
    struct app *ca, *ta;
    struct rec rec;
    struct sl_tunnel_info info;
    struct sl_tunnel *t;

    g.pool = pool_for(m);
    t = tunnel_make(g.lfd, 0, &ca, &ta, NULL, 0, NULL, 0, LONG_IDLE_MS, &rec);
    ca->to_send = 5;
    ca->sseed = 1;
    ca->shut_after = true;
    ta->rseed = 1;
    ta->expect = 5;
    ca->rseed = 2;
    app_start(ca);
    app_start(ta);

    /* client -> target: 5 bytes then FIN; the target sees both, the tunnel lives on. */
    assert_true(run_until(cond_app_eof, ta, 5000));
    assert_int_equal(rec.calls, 0);
    sl_tunnel_get_info(t, &info);
    assert_true(info.bytes_up == 5 && info.bytes_down == 0);
    assert_int_equal(info.end, SL_ERR_NONE);

    /* The target still answers through the half-closed tunnel. */
    ta->to_send = 64 * KiB;
    ta->sseed = 2;
    ca->expect = 64 * KiB;
    app_watch(ta);
    assert_true(run_until(cond_app_recvd, ca, 5000));
    assert_int_equal(rec.calls, 0);
    sl_tunnel_get_info(t, &info);
    assert_true(info.bytes_down == 64 * KiB);

    /* Then closes its side: the tunnel ends, by the client's FIN that came first. */
    ta->shut_after = true;
    app_maybe_shut(ta);
    assert_true(run_until(cond_app_eof, ca, 5000));
    assert_true(run_until(cond_done, &rec, 5000));
    assert_app_ok(ca);
    assert_app_ok(ta);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rec.info.end, SL_ERR_CLIENT_CLOSED);
    assert_true(rec.info.bytes_up == 5 && rec.info.bytes_down == 64 * KiB);
    assert_int_equal(rec.info.spliced, m == M_SPLICE);
}

static void half_close_splice(void **s)
{
    (void)s;
    half_close(M_SPLICE);
}

static void half_close_copy(void **s)
{
    (void)s;
    half_close(M_NOPOOL);
}

static bool cond_app_err(void *arg)
{
    struct app *a = arg;

    return a->err != 0 || a->eof;
}

/* Side <who> (0 client, 1 target) closes with RST after some traffic. */
static void reset(enum mode m, int who)
{
    struct app *ca, *ta, *gone, *other;
    struct rec rec;

    g.pool = pool_for(m);
    tunnel_make(g.lfd, 0, &ca, &ta, NULL, 0, NULL, 0, LONG_IDLE_MS, &rec);
    ca->to_send = 1000;
    ca->sseed = 1;
    ta->rseed = 1;
    ta->expect = 1000;
    ta->to_send = 3000;
    ta->sseed = 2;
    ca->rseed = 2;
    ca->expect = 3000;
    app_start(ca);
    app_start(ta);
    struct both x = {ca, ta, &rec};

    assert_true(run_until(cond_received, &x, 5000));
    gone = who == 0 ? ca : ta;
    other = who == 0 ? ta : ca;
    app_close(gone, true);
    assert_true(run_until(cond_done, &rec, 5000));
    assert_true(run_until(cond_app_err, other, 5000));
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rec.info.end, who == 0 ? SL_ERR_CLIENT_RESET : SL_ERR_TARGET_RESET);
    /* Passed on as a reset, not as a clean end. */
    assert_false(other->eof);
    assert_int_equal(other->err, ECONNRESET);
    assert_false(other->bad);
    assert_true(rec.info.bytes_up == 1000 && rec.info.bytes_down == 3000);
}

static void reset_client_splice(void **s)
{
    (void)s;
    reset(M_SPLICE, 0);
}

static void reset_target_splice(void **s)
{
    (void)s;
    reset(M_SPLICE, 1);
}

static void reset_client_copy(void **s)
{
    (void)s;
    reset(M_NOPOOL, 0);
}

static void reset_target_copy(void **s)
{
    (void)s;
    reset(M_COPY0, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Timeouts */

static void idle_timeout(void **s)
{
    struct app *ca, *ta;
    struct rec rec;

    (void)s;
    g.pool = pool_for(M_SPLICE);
    tunnel_make(g.lfd, 0, &ca, &ta, "x", 1, NULL, 0, 200, &rec);
    ta->expect = 1;
    ta->prefix = (const unsigned char *)"x";
    ta->prefix_len = 1;
    app_start(ca);
    app_start(ta);
    assert_true(run_until(cond_done, &rec, 5000));
    assert_int_equal(rec.info.end, SL_ERR_IDLE_TIMEOUT);
    assert_true(rec.info.bytes_up == 1);
    /* Idle means idle long enough: a few ms of slack, not a fraction of the timeout. */
    assert_true(rec.info.duration_us >= 150 * 1000);
    assert_true(run_until(cond_app_eof, ta, 5000));
    assert_true(run_until(cond_app_eof, ca, 5000));
}

struct trickle {
    struct app *a;
    struct event ev;
};

static void on_trickle(evutil_socket_t fd, short what, void *arg)
{
    struct trickle *tr = arg;

    (void)fd;
    (void)what;
    tr->a->to_send++;
    app_watch(tr->a);
}

/* One byte every 40 ms in one direction only, idle 200 ms: the fd that sees no I/O fires
 * its timeout, which must look at the tunnel's last activity and re-arm. */
static void steady_one_way(int dir)
{
    struct app *ca, *ta, *snd, *rcv;
    struct rec rec;
    struct trickle tr;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 40000};

    g.pool = pool_for(M_SPLICE);
    tunnel_make(g.lfd, 0, &ca, &ta, NULL, 0, NULL, 0, 200, &rec);
    snd = dir == 0 ? ca : ta;
    rcv = dir == 0 ? ta : ca;
    snd->sseed = 7;
    rcv->rseed = 7;
    app_start(ca);
    app_start(ta);
    tr.a = snd;
    event_assign(&tr.ev, g.base, -1, EV_PERSIST, on_trickle, &tr);
    event_add(&tr.ev, &tv);
    run_for(1000);
    event_del(&tr.ev);
    assert_int_equal(rec.calls, 0);
    assert_true(snd->sent >= 10);
    rcv->expect = snd->to_send;
    assert_true(run_until(cond_app_recvd, rcv, 2000));
    assert_false(rcv->bad);

    assert_true(run_until(cond_done, &rec, 5000));
    assert_int_equal(rec.info.end, SL_ERR_IDLE_TIMEOUT);
    assert_true((dir == 0 ? rec.info.bytes_up : rec.info.bytes_down) == snd->sent);
}

static void steady_up_no_timeout(void **s)
{
    (void)s;
    steady_one_way(0);
}

static void steady_down_no_timeout(void **s)
{
    (void)s;
    steady_one_way(1);
}

/* After the client's FIN, the target has SL_TUNNEL_FIN_TIMEOUT_MS to finish, even though the
 * idle timeout is longer. */
static void fin_timeout(void **s)
{
    struct app *ca, *ta;
    struct rec rec;

    (void)s;
    g.pool = pool_for(M_SPLICE);
    tunnel_make(g.lfd, 0, &ca, &ta, NULL, 0, NULL, 0, 60000, &rec);
    ca->shut_after = true;
    app_start(ca);
    app_start(ta);
    assert_true(run_until(cond_app_eof, ta, 5000));
    assert_true(run_until(cond_done, &rec, SL_TUNNEL_FIN_TIMEOUT_MS + 5000));
    assert_int_equal(rec.info.end, SL_ERR_CLIENT_CLOSED);
    assert_true(rec.info.duration_us >= (SL_TUNNEL_FIN_TIMEOUT_MS - 100) * 1000ull);
}

/* ------------------------------------------------------------------------------------------ */
/* Pool, backpressure, closing */

/* A megabyte each way, then silence: the tunnel lives on without a pipe. */
static void idle_holds_no_pipe(void **s)
{
    struct app *ca, *ta;
    struct rec rec;
    struct sl_tunnel *t;
    struct sl_tunnel_info info;
    struct sl_pipe_pool_stats st;

    (void)s;
    g.pool = pool_for(M_SPLICE);
    t = tunnel_make(g.lfd, 0, &ca, &ta, NULL, 0, NULL, 0, LONG_IDLE_MS, &rec);
    ca->to_send = ta->expect = 1 * MiB;
    ta->to_send = ca->expect = 1 * MiB;
    ca->sseed = ta->rseed = 3;
    ta->sseed = ca->rseed = 4;
    app_start(ca);
    app_start(ta);
    struct both x = {ca, ta, &rec};

    assert_true(run_until(cond_received, &x, 10000));
    run_for(50);
    sl_pipe_pool_stats(g.pool, &st);
    assert_int_equal(st.in_use, 0);
    assert_true(st.idle >= 1 && st.idle <= 2);
    assert_int_equal(st.exhausted, 0);
    assert_int_equal(rec.calls, 0);
    sl_tunnel_get_info(t, &info);
    assert_true(info.bytes_up == 1 * MiB && info.bytes_down == 1 * MiB);
    assert_true(info.spliced);
    assert_int_equal(info.end, SL_ERR_NONE);

    sl_tunnel_close(t, SL_ERR_SHUTDOWN);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rec.info.end, SL_ERR_SHUTDOWN);
    assert_null(g.list.head);
    assert_true(run_until(cond_app_eof, ca, 5000));
    assert_true(run_until(cond_app_eof, ta, 5000));
    assert_app_ok(ca);
    assert_app_ok(ta);
}

/* The target stops reading: the tunnel must stop reading the client (the client's sends
 * stall), then deliver everything once the target reads again. */
static void backpressure(enum mode m)
{
    const int bufsz = 32 * KiB; /* fixed buffers: no autotuning to soak up megabytes */
    int lfd = make_listener(bufsz);
    struct app *ca, *ta;
    struct rec rec;
    struct sl_pipe_pool_stats st;
    struct sl_tunnel_info info;
    struct sl_tunnel *t;
    uint64_t s1, s2;

    g.pool = pool_for(m);
    t = tunnel_make(lfd, bufsz, &ca, &ta, NULL, 0, NULL, 0, LONG_IDLE_MS, &rec);
    close(lfd);
    ca->to_send = ta->expect = 8 * MiB;
    ca->sseed = ta->rseed = 5;
    ca->shut_after = ta->shut_after = true;
    ta->paused = true;
    app_start(ca);
    app_start(ta);

    run_for(300);
    s1 = ca->sent;
    run_for(200);
    s2 = ca->sent;
    assert_true(s1 == s2);
    assert_true(s2 < 2 * MiB);
    sl_tunnel_get_info(t, &info);
    assert_true(info.bytes_up <= s2);
    sl_pipe_pool_stats(g.pool, &st);
    /* The stalled direction keeps its pipe, with the bytes in it. */
    assert_int_equal(st.in_use, m == M_SPLICE ? 1 : 0);

    ta->paused = false;
    app_watch(ta);
    struct both x = {ca, ta, &rec};

    assert_true(run_until(cond_transfer_done, &x, 30000));
    assert_app_ok(ca);
    assert_app_ok(ta);
    assert_true(rec.info.bytes_up == 8 * MiB);
    assert_true(rec.info.end == SL_ERR_CLIENT_CLOSED || rec.info.end == SL_ERR_TARGET_CLOSED);
}

static void backpressure_splice(void **s)
{
    (void)s;
    backpressure(M_SPLICE);
}

static void backpressure_copy(void **s)
{
    (void)s;
    backpressure(M_NOPOOL);
}

/* The default pool (not eager): small messages are copied, however many, and no pipe is
 * even made for them; a 16 MiB stream arrives intact whichever way each read went. */
static void adaptive(void **s)
{
    struct sl_pipe_pool *p = sl_pipe_pool_new(16, 0);
    struct sl_pipe_pool_stats st;
    struct rec rec;

    (void)s;
    transfer_with(p, false, 4 * KiB, 4 * KiB, 0, 0);
    sl_pipe_pool_stats(p, &st);
    assert_true(st.created == 0);
    sl_pipe_pool_free(p);
    g.pool = NULL;
    transfer_run(sl_pipe_pool_new(16, 0), 16 * MiB, 16 * MiB, 0, 0, &rec, &st);
}

/* max_pipes 1: a stalled tunnel holds the only pipe, so a second one copies, and says so. */
static void pool_exhausted(void **s)
{
    const int bufsz = 32 * KiB;
    int lfd = make_listener(bufsz);
    struct app *ca, *ta, *cb, *tb;
    struct rec ra, rb;
    struct sl_pipe_pool_stats st;

    (void)s;
    g.pool = sl_pipe_pool_new(1, 0);
    sl_pipe_pool_set_eager(g.pool, true);
    tunnel_make(lfd, bufsz, &ca, &ta, NULL, 0, NULL, 0, LONG_IDLE_MS, &ra);
    close(lfd);
    ca->to_send = ta->expect = 4 * MiB;
    ca->sseed = ta->rseed = 8;
    ca->shut_after = ta->shut_after = true;
    ta->paused = true;
    app_start(ca);
    app_start(ta);
    run_for(200);
    sl_pipe_pool_stats(g.pool, &st);
    assert_int_equal(st.in_use, 1);

    tunnel_make(g.lfd, 0, &cb, &tb, NULL, 0, NULL, 0, LONG_IDLE_MS, &rb);
    cb->to_send = tb->expect = 64 * KiB;
    tb->to_send = cb->expect = 64 * KiB;
    cb->sseed = tb->rseed = 9;
    tb->sseed = cb->rseed = 10;
    cb->shut_after = tb->shut_after = true;
    app_start(cb);
    app_start(tb);
    struct both xb = {cb, tb, &rb};

    assert_true(run_until(cond_transfer_done, &xb, 10000));
    assert_app_ok(cb);
    assert_app_ok(tb);
    assert_false(rb.info.spliced);
    sl_pipe_pool_stats(g.pool, &st);
    assert_true(st.exhausted > 0);
    assert_int_equal(st.created, 1);

    ta->paused = false;
    app_watch(ta);
    struct both xa = {ca, ta, &ra};

    assert_true(run_until(cond_transfer_done, &xa, 30000));
    assert_app_ok(ca);
    assert_app_ok(ta);
    sl_pipe_pool_stats(g.pool, &st);
    assert_int_equal(st.in_use, 0);
    assert_true(st.idle + st.in_use <= st.max);
}

static void close_all(void **s)
{
    struct app *ca[3], *ta[3];
    struct rec rec[3];

    (void)s;
    g.pool = pool_for(M_SPLICE);
    for (int i = 0; i < 3; i++) {
        tunnel_make(g.lfd, 0, &ca[i], &ta[i], "hi", 2, NULL, 0, LONG_IDLE_MS, &rec[i]);
        ca[i]->to_send = 256 * KiB;
        ca[i]->sseed = (uint32_t)i;
        ta[i]->prefix = (const unsigned char *)"hi";
        ta[i]->prefix_len = 2;
        ta[i]->rseed = (uint32_t)i;
        app_start(ca[i]);
        app_start(ta[i]);
    }
    assert_int_equal(g.list.n, 3);
    run_for(20);
    sl_tunnel_close_all(&g.list, SL_ERR_SHUTDOWN);
    assert_null(g.list.head);
    assert_int_equal(g.list.n, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec[i].calls, 1);
        assert_int_equal(rec[i].info.end, SL_ERR_SHUTDOWN);
        /* The app ends see the close (FIN, or RST if bytes were still unread). */
        assert_true(run_until(cond_app_err, ta[i], 5000));
    }
    run_for(20);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rec[i].calls, 1);
}

/* A done callback may close other tunnels, even during close_all. */
static struct sl_tunnel *victim;

static void on_done_close_victim(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg)
{
    on_done(t, info, arg);
    if (victim && victim != t) {
        struct sl_tunnel *v = victim;

        victim = NULL;
        sl_tunnel_close(v, SL_ERR_RESOURCES);
    }
}

static void close_from_done(void **s)
{
    int app[4], tun[4];
    struct rec rec[2];
    struct sl_tunnel *t[2];

    (void)s;
    memset(rec, 0, sizeof(rec));
    for (int i = 0; i < 4; i++) {
        tcp_pair(g.lfd, 0, &app[i], &tun[i]);
        (void)app_new(app[i]);
    }
    for (int i = 0; i < 2; i++) {
        t[i] = sl_tunnel_new(g.base, NULL, &g.list, tun[2 * i], NULL, tun[2 * i + 1], NULL, 0, NULL, 0,
                             1000, on_done_close_victim, &rec[i]);
        assert_non_null(t[i]);
    }
    victim = t[0]; /* the head is t[1]: ending it closes t[0] from its done callback */
    sl_tunnel_close_all(&g.list, SL_ERR_SHUTDOWN);
    assert_int_equal(rec[1].calls, 1);
    assert_int_equal(rec[1].info.end, SL_ERR_SHUTDOWN);
    assert_int_equal(rec[0].calls, 1);
    assert_int_equal(rec[0].info.end, SL_ERR_RESOURCES);
    assert_int_equal(g.list.n, 0);
}

static int group_setup(void **state)
{
    (void)state;
    /* splice(2) cannot take MSG_NOSIGNAL: the process ignores SIGPIPE, as sluice does. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(xfer_splice_0),
        T(xfer_splice_1),
        T(xfer_splice_64k),
        T(xfer_splice_16m),
        T(xfer_copy0_0),
        T(xfer_copy0_1),
        T(xfer_copy0_64k),
        T(xfer_copy0_16m),
        T(xfer_nopool_0),
        T(xfer_nopool_1),
        T(xfer_nopool_64k),
        T(xfer_nopool_16m),
        T(xfer_one_way),
        T(xfer_pipe_sizes),
        T(handover_splice),
        T(handover_copy),
        T(handover_only),
        T(handover_large),
        T(half_close_splice),
        T(half_close_copy),
        T(reset_client_splice),
        T(reset_target_splice),
        T(reset_client_copy),
        T(reset_target_copy),
        T(idle_timeout),
        T(steady_up_no_timeout),
        T(steady_down_no_timeout),
        T(idle_holds_no_pipe),
        T(backpressure_splice),
        T(backpressure_copy),
        T(pool_exhausted),
        T(adaptive),
        T(close_all),
        T(close_from_done),
        T(fin_timeout),
    };

    /* TUNNEL_TEST=half_close* runs only the matching tests (e.g. under strace). */
    if (getenv("TUNNEL_TEST"))
        cmocka_set_test_filter(getenv("TUNNEL_TEST"));
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
