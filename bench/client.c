/* sluice-bench's load generators: bulk (pipelined echo throughput), rr (request/response
 * latency), upgrades (connect + handshake + one echo + close rate) and idle (many open, quiet
 * tunnels). One event_base per thread, each owning a share of the connections; every phase ends
 * on a timer, so every mode is bounded in time. The client masks every frame with a fresh random
 * key (RFC 6455 5.3), 8 bytes at a time.
 *
 * Every echo is verified. A message's first 8 bytes are its per-connection sequence number
 * (little-endian; a shorter message carries the low bytes that fit), the rest is a slice of one
 * shared read-only pseudo-random pattern starting at an offset derived from the sequence number
 * and the connection's index (pat_off). So the sender masks straight from the pattern and the
 * receiver checks each chunk with one memcmp against it: no per-connection copy of what was
 * sent. Echoes must come back in order, binary, whole and exact.
 *
 * wss:// runs the same over TLS (OpenSSL): one SSL_CTX per run, an SSL per connection, the
 * handshake driven by the socket's events between connect and the HTTP upgrade. A plain ws://
 * connection pays one test of c->ssl on its read and write paths, nothing more. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sluice/common.h"
#include "sluice/metrics.h" /* sl_counter: single-writer counters the progress display reads */
#include "ws.h"

#define CLI_RBUF_BULK (256 * 1024)
#define CLI_SBUF_MIN (256 * 1024)
#define CLI_RBUF_SMALL 4096 /* idle and upgrades: a 101 head and control frames */
#define CLI_CTL (2 * (WS_HDR_MAX + WS_CONTROL_MAX))
#define CLI_HANDSHAKE_MS 10000
#define CLI_CLOSE_MS 5000
#define CLI_PING_MS 10000
#define CLI_OPEN_DEADLINE_S 120 /* the whole open phase, whatever the per-handshake timeouts */
#define CLI_MAX_THREADS 64
#define CLI_MAX_CONNS 1000000
#define CLI_MAX_SIZE (1ULL << 30)
#define CLI_ECHO_MS 5000        /* upgrades: the one echo of a cycle */
#define CLI_DRAIN_S 2.0         /* after a run: the time echoes still due get to come back ... */
#define CLI_DRAIN_BPS 200e6     /* ... plus a second per 200 MB of them */
#define CLI_HIST (64 + 58 * 64) /* log-linear latency buckets, < 1/64 wide (see hist_index) */
#define CLI_PAT_SPAN 4093       /* pattern offsets: (seq + CLI_PAT_STRIDE * conn) mod this prime */
#define CLI_PAT_STRIDE 977
#define CLI_SEQ_LEN 8
#define CLI_PING_LEN 32 /* idle: sequence number + pattern, like a data message */
#define CLI_SESS_MAX 32 /* wss://: sessions a thread keeps for resumption */

enum cli_mode {
    CM_BULK = 0,
    CM_RR,
    CM_UPGRADES,
    CM_IDLE,
};

enum cli_state {
    CST_DEAD = 0, /* no socket */
    CST_CONNECTING,
    CST_TLS,       /* wss://: connected, TLS handshake under way */
    CST_HANDSHAKE, /* request sent, waiting for the 101 */
    CST_OPEN,
    CST_CLOSING, /* our close frame sent (upgrades), waiting for the server's */
};

enum cli_phase {
    PH_OPEN = 0,
    PH_RUN,
    PH_PING,
};

struct cli_opts {
    enum cli_mode mode;
    const char *name;
    char host[300], path[1024];
    const char *protocol;
    struct sockaddr_storage dst;
    socklen_t dst_len;
    uint64_t size;
    double seconds, hold;
    unsigned conns, threads, window, concurrency;
    bool json, progress;
    struct sockaddr_in *src;
    unsigned n_src;
    bool tls, insecure, no_resume; /* wss:// and its options */
    bool sni;                      /* send tls_name as SNI: not an IP literal (RFC 6066 3) */
    const char *cafile, *sni_opt;
    char tls_name[300]; /* the name the certificate must have: --sni, else the URL's host */
};

struct cworker;

struct cconn {
    struct cworker *w;
    unsigned idx;  /* global, picks the source address */
    unsigned uses; /* upgrades: connections this slot has made (cli_start keeps it) */
    int fd;
    enum cli_state st;
    struct event *rev, *wev;
    SSL *ssl; /* wss:// only */
    uint8_t *rbuf, *sbuf;
    size_t rlen, rpos, slen, soff, clen, head_scan;
    uint8_t ctl[CLI_CTL]; /* control frames waiting for a frame boundary in sbuf */
    char accept[WS_ACCEPT_LEN + 1];
    uint64_t t0;     /* rr: when the message went out */
    uint64_t t_conn; /* upgrades: when connect() started */
    uint64_t hs_ns;  /* upgrades: connect() to the whole 101 */
    uint64_t remain, msg_len;
    uint64_t send_seq, recv_seq; /* the next message's sequence number, each way */
    size_t pat_in;               /* the pattern offset of the message coming in */
    uint8_t seq_in[CLI_SEQ_LEN]; /* its sequence bytes so far */
    unsigned inflight;
    bool in_payload, in_msg, frame_fin, ping_sent, pong_ok;
    bool rd_want_write, wr_want_read; /* TLS: SSL_read waits for POLLOUT, SSL_write for POLLIN */
};

struct client;

struct cworker {
    struct client *cl;
    pthread_t tid;
    struct event_base *base;
    struct cconn *c;
    unsigned n, first;
    unsigned next, pending, limit; /* open phase */
    bool in_open_next, running;
    enum cli_phase ph;
    bool draining;        /* the run is over; what is due still comes back */
    unsigned waiting;     /* ping phase: pongs outstanding */
    uint64_t outstanding; /* bulk, rr: echoes due; upgrades: cycles under way */
    uint64_t rng;
    sl_counter opened, open_failed, pongs;
    sl_counter bytes, msgs, upgrades, failed, errors;
    uint64_t open_done_ns, run_ns, max_ns;
    uint64_t *hist;
    char first_err[200];
    SSL_SESSION *sess[CLI_SESS_MAX]; /* wss://: the latest sessions, newest last */
    unsigned n_sess;
    sl_counter tls_handshakes, tls_resumed;
};

struct client {
    struct cli_opts o;
    struct cworker *w;
    uint8_t *pattern;
    size_t rcap, scap;
    pthread_barrier_t barrier;
    atomic_uint open_failed;
    uint64_t t_start;
    _Atomic uint64_t run_start_ns; /* for the progress display: when the timed phase began */
    atomic_bool pinging;           /* idle: the ping phase has begun */
    pthread_mutex_t done_mx;       /* the progress display waits on done_cv for the workers */
    pthread_cond_t done_cv;
    unsigned done;
    SSL_CTX *ssl_ctx;         /* wss:// */
    atomic_bool tls_info_set; /* the first handshake fills tls_version and tls_cipher */
    char tls_version[32], tls_cipher[80];
};

static void cli_start(struct cconn *c);
static void cli_open_next(struct cworker *w);
static int cli_send(struct cconn *c);

static void cli_error(struct cworker *w, const char *fmt, ...) SL_PRINTF(2, 3);

static void cli_error(struct cworker *w, const char *fmt, ...)
{
    va_list ap;

    sl_stat_add(&w->errors, 1);
    if (w->first_err[0])
        return;
    va_start(ap, fmt);
    vsnprintf(w->first_err, sizeof(w->first_err), fmt, ap);
    va_end(ap);
}

/* HdrHistogram-like log-linear buckets of nanoseconds: one per value below 128, then 64 per
 * power of two, so a bucket [2^e + k 2^(e-6), 2^e + (k + 1) 2^(e-6)) is less than 1/64 of its
 * values wide. */
static unsigned hist_index(uint64_t v)
{
    unsigned e;

    if (v < 64)
        return (unsigned)v;
    e = 63 - (unsigned)__builtin_clzll(v);
    return 64 + (e - 6) * 64 + (unsigned)((v >> (e - 6)) - 64);
}

/* The highest value bucket <i> holds (what HdrHistogram reports too): a percentile is never
 * under-reported, and over-reported by less than 1/64 (1.6 %). */
static uint64_t hist_upper(unsigned i)
{
    unsigned e;

    if (i < 64)
        return i;
    e = (i - 64) / 64 + 6;
    return ((64 + (uint64_t)((i - 64) % 64) + 1) << (e - 6)) - 1;
}

/* The <ppm>/10^6 percentile by nearest rank: the smallest recorded value v such that at least
 * ceil(total * ppm / 10^6) values are <= v, as its bucket's upper bound, capped at the exact
 * maximum (which the true value cannot exceed). */
static uint64_t hist_pct(const uint64_t *h, uint64_t total, uint64_t max, uint64_t ppm)
{
    uint64_t rank = total / 1000000 * ppm + (total % 1000000 * ppm + 999999) / 1000000, acc = 0;

    if (total == 0)
        return 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < CLI_HIST; i++) {
        acc += h[i];
        if (acc >= rank)
            return hist_upper(i) < max ? hist_upper(i) : max;
    }
    return max;
}

static void hist_add(struct cworker *w, uint64_t ns)
{
    w->hist[hist_index(ns)]++;
    if (ns > w->max_ns)
        w->max_ns = ns;
}

/* The sequence number's little-endian bytes. */
static void seq_bytes(uint64_t seq, uint8_t out[CLI_SEQ_LEN])
{
    for (int i = 0; i < CLI_SEQ_LEN; i++)
        out[i] = (uint8_t)(seq >> (8 * i));
}

/* Where in the pattern the bytes after message <seq>'s sequence number start on <c>. The
 * connection's index moves it too, so a message delivered to the wrong connection differs. */
static size_t pat_off(const struct cconn *c, uint64_t seq)
{
    return (size_t)((seq + (uint64_t)c->idx * CLI_PAT_STRIDE) % CLI_PAT_SPAN);
}

/* Bytes of a <size>-byte message that carry the sequence number. */
static size_t seq_len(uint64_t size)
{
    return size < CLI_SEQ_LEN ? (size_t)size : CLI_SEQ_LEN;
}

/* idle: the ping <seq> on <c>, and the pong it expects. */
static void ping_payload(const struct cconn *c, uint64_t seq, uint8_t out[CLI_PING_LEN])
{
    seq_bytes(seq, out);
    memcpy(out + CLI_SEQ_LEN, c->w->cl->pattern + pat_off(c, seq), CLI_PING_LEN - CLI_SEQ_LEN);
}

/* Closes the socket; the struct stays, ready for cli_start. <clean>: the connection ended
 * normally, so TLS says close_notify first (and OpenSSL keeps the session resumable: it marks
 * one freed without it as bad). */
static void cli_close(struct cconn *c, bool clean)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    c->rev = c->wev = NULL;
    if (c->ssl) {
        if (clean && SSL_is_init_finished(c->ssl) && SSL_shutdown(c->ssl) < 0)
            ERR_clear_error();
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd != -1)
        close(c->fd);
    c->fd = -1;
    c->st = CST_DEAD;
}

static void cli_on_restart(evutil_socket_t fd, short what, void *arg)
{
    struct cconn *c = arg;

    (void)fd;
    (void)what;
    if (c->w->running)
        cli_start(c);
}

/* A connection ended, with the reason <err> or normally (NULL): closes it and does the
 * phase's bookkeeping. The caller returns at once: <c> is closed (an upgrades slot starts its
 * next connection from the loop). */
static void cli_end(struct cconn *c, const char *err)
{
    struct cworker *w = c->w;
    enum cli_state st = c->st;

    cli_close(c, err == NULL);
    if (st == CST_CONNECTING || st == CST_TLS || st == CST_HANDSHAKE) {
        if (w->ph == PH_OPEN) {
            cli_error(w, "connection %u: %s", c->idx, err);
            sl_stat_add(&w->open_failed, 1);
            w->pending--;
            cli_open_next(w);
            return;
        }
    }
    if (w->cl->o.mode == CM_UPGRADES) {
        w->outstanding--;
        if (err && (w->running || w->draining)) {
            sl_stat_add(&w->failed, 1);
            cli_error(w, "upgrade (slot %u): %s", c->idx, err);
        }
        /* From the loop, not from here: a connect that fails at once would recurse. */
        if (w->running) {
            struct timeval now = {0, 0};

            event_base_once(w->base, -1, EV_TIMEOUT, cli_on_restart, c, &now);
        } else if (w->draining && w->outstanding == 0) {
            event_base_loopbreak(w->base);
        }
        return;
    }
    if (err)
        cli_error(w, "connection %u: %s", c->idx, err);
    w->outstanding -= c->inflight;
    c->inflight = 0;
    if (w->draining && w->outstanding == 0)
        event_base_loopbreak(w->base);
    if (w->ph == PH_PING && c->ping_sent && !c->pong_ok && --w->waiting == 0)
        event_base_loopbreak(w->base);
}

static void cli_fail_errno(struct cconn *c, const char *what)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
    cli_end(c, msg);
}

/* OpenSSL's reason for the error <code>, in words; a system error's is its errno's. */
static const char *tls_reason(unsigned long code)
{
    const char *rs;

    if (ERR_SYSTEM_ERROR(code))
        return strerror(ERR_GET_REASON(code));
    rs = ERR_reason_error_string(code);
    return rs ? rs : "unknown error";
}

/* Ends <c> after an SSL call failed with SSL_get_error's <e> (<err>: errno right after the
 * call), naming the cause after <what>: the certificate check, OpenSSL's reason or the socket's
 * error. Clears the thread's error queue, which SSL_get_error reads: one connection's error
 * must not show up as another's. */
static void cli_tls_fail(struct cconn *c, const char *what, int e, int err)
{
    const struct cli_opts *o = &c->w->cl->o;
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long code = ERR_peek_error(); /* the first: the cause, the rest its effects */
    char msg[512];

    if (!o->insecure && vr != X509_V_OK) {
        bool name = vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH;

        snprintf(msg, sizeof(msg), "%s: certificate verify failed (%s); %s%s", what,
                 X509_verify_cert_error_string(vr),
                 name ? "the certificate is not for " : "use --insecure or --cafile",
                 name ? o->tls_name : "");
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(msg, sizeof(msg), "%s: %s", what, err ? strerror(err) : "connection closed");
    } else if (code) {
        snprintf(msg, sizeof(msg), "%s: %s%s", what, tls_reason(code),
                 ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ? " (not a TLS server?)" : "");
    } else {
        snprintf(msg, sizeof(msg), "%s: SSL error %d", what, e);
    }
    ERR_clear_error();
    cli_end(c, msg);
}

/* SSL_write did not take the bytes: waits for what it wants. Returns 0, or -1 if <c> ended. */
static int cli_tls_write_wait(struct cconn *c)
{
    int err = errno, e = SSL_get_error(c->ssl, 0);

    if (e == SSL_ERROR_WANT_WRITE) {
        event_add(c->wev, NULL);
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ) {
        c->wr_want_read = true; /* the read event retries (cli_tls_read) */
        event_del(c->wev);
        return 0;
    }
    cli_tls_fail(c, "TLS write", e, err);
    return -1;
}

/* Appends a masked control frame to c->ctl. */
static void cli_ctl(struct cconn *c, uint8_t op, const void *payload, size_t len)
{
    uint64_t r = sl_xorshift64s(&c->w->rng);
    uint8_t key[4];
    size_t h;

    if (c->clen + WS_HDR_MAX + len > sizeof(c->ctl))
        return; /* the peer pings faster than we can answer: drop a pong */
    memcpy(key, &r, 4);
    h = ws_frame_header(c->ctl + c->clen, WS_FIN | op, len, key);
    ws_mask(c->ctl + c->clen + h, payload, len, key, 0);
    c->clen += h + len;
}

/* Appends the next masked data message to c->sbuf: its sequence number, then the pattern from
 * the offset that number picks, masked on the way from the shared pattern into sbuf. */
static void cli_append_msg(struct cconn *c)
{
    struct cworker *w = c->w;
    struct client *cl = w->cl;
    uint64_t r = sl_xorshift64s(&w->rng), size = cl->o.size;
    size_t h, sl = seq_len(size);
    uint8_t key[4], sb[CLI_SEQ_LEN], *out;
    unsigned phase;

    memcpy(key, &r, 4);
    seq_bytes(c->send_seq, sb);
    h = ws_frame_header(c->sbuf + c->slen, WS_FIN | WS_OP_BINARY, size, key);
    out = c->sbuf + c->slen + h;
    phase = ws_mask(out, sb, sl, key, 0);
    ws_mask(out + sl, cl->pattern + pat_off(c, c->send_seq), (size_t)size - sl, key, phase);
    c->slen += h + (size_t)size;
    c->send_seq++;
    c->inflight++;
    if (cl->o.mode != CM_UPGRADES)
        w->outstanding++;
    if (cl->o.mode == CM_RR)
        c->t0 = bench_now_ns();
}

/* Writes what is queued, refilling the send buffer with messages while the window allows.
 * Returns -1 if <c> ended. */
static int cli_send(struct cconn *c)
{
    struct client *cl = c->w->cl;
    size_t fsz = ws_frame_hlen(cl->o.size, true) + cl->o.size;

    for (;;) {
        ssize_t n;

        if (c->soff == c->slen) {
            c->soff = c->slen = 0;
            if (c->clen) {
                memcpy(c->sbuf, c->ctl, c->clen);
                c->slen = c->clen;
                c->clen = 0;
            }
            if (c->w->running && (cl->o.mode == CM_BULK || cl->o.mode == CM_RR)) {
                while (c->inflight < cl->o.window && c->slen + fsz <= cl->scap)
                    cli_append_msg(c);
            }
            if (c->slen == 0) {
                if (!c->rd_want_write)
                    event_del(c->wev);
                return 0;
            }
        }
        if (c->ssl) {
            size_t done;

            /* After a WANT_*, this retries with the same bytes, as SSL_write requires: soff
             * and slen move only when it took some. */
            if (SSL_write_ex(c->ssl, c->sbuf + c->soff, c->slen - c->soff, &done) != 1)
                return cli_tls_write_wait(c);
            c->soff += done;
            continue;
        }
        n = write(c->fd, c->sbuf + c->soff, c->slen - c->soff);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                event_add(c->wev, NULL);
                return 0;
            }
            cli_fail_errno(c, "write");
            return -1;
        }
        c->soff += (size_t)n;
    }
}

/* Checks the chunk p[0, n) of the echo coming in, at payload offset c->msg_len, against what
 * was sent: the sequence number, then the pattern. Returns -1 after cli_end on a mismatch. */
static int cli_check(struct cconn *c, const uint8_t *p, size_t n)
{
    struct client *cl = c->w->cl;
    uint64_t size = cl->o.size, off = c->msg_len;
    size_t sl = seq_len(size);
    char msg[200];

    if (n > size - off) {
        snprintf(msg, sizeof(msg), "echo %llu: longer than the %llu bytes sent (length mismatch)",
                 (unsigned long long)c->recv_seq, (unsigned long long)size);
        cli_end(c, msg);
        return -1;
    }
    if (off < sl) {
        size_t m = n < sl - off ? n : sl - (size_t)off;

        memcpy(c->seq_in + off, p, m);
        p += m;
        n -= m;
        off += m;
        if (off == sl) {
            uint8_t want[CLI_SEQ_LEN];
            uint64_t got = 0, exp = 0;

            seq_bytes(c->recv_seq, want);
            if (memcmp(c->seq_in, want, sl) != 0) {
                for (size_t i = sl; i-- > 0;) {
                    got = got << 8 | c->seq_in[i];
                    exp = exp << 8 | want[i];
                }
                snprintf(msg, sizeof(msg),
                         "echo %llu: sequence number %llu, expected %llu (reordered, dropped or "
                         "duplicated)",
                         (unsigned long long)c->recv_seq, (unsigned long long)got,
                         (unsigned long long)exp);
                cli_end(c, msg);
                return -1;
            }
        }
    }
    if (n && memcmp(p, cl->pattern + c->pat_in + (off - sl), n) != 0) {
        const uint8_t *q = cl->pattern + c->pat_in + (off - sl);
        size_t i = 0;

        while (p[i] == q[i])
            i++;
        snprintf(msg, sizeof(msg), "echo %llu: payload differs from what was sent at byte %llu",
                 (unsigned long long)c->recv_seq, (unsigned long long)(off + i));
        cli_end(c, msg);
        return -1;
    }
    return 0;
}

/* A whole message has come back, its content verified. Returns -1 if <c> ended. */
static int cli_on_message(struct cconn *c)
{
    struct cworker *w = c->w;
    struct client *cl = w->cl;

    c->in_msg = false;
    if (c->msg_len != cl->o.size) {
        char msg[160];

        snprintf(msg, sizeof(msg), "echo %llu: %llu bytes, expected %llu (length mismatch)",
                 (unsigned long long)c->recv_seq, (unsigned long long)c->msg_len,
                 (unsigned long long)cl->o.size);
        cli_end(c, msg);
        return -1;
    }
    c->inflight--;
    c->recv_seq++;
    if (cl->o.mode == CM_UPGRADES) {
        /* The cycle's echo is back: close 1000 and wait for the server's close. */
        static const uint8_t code_1000[2] = {0x03, 0xe8};
        struct timeval tv = {CLI_CLOSE_MS / 1000, 0};

        c->st = CST_CLOSING;
        event_add(c->rev, &tv);
        cli_ctl(c, WS_OP_CLOSE, code_1000, 2);
        return cli_send(c);
    }
    w->outstanding--;
    if (w->running) {
        sl_stat_add(&w->msgs, 1);
        if (cl->o.mode == CM_RR)
            hist_add(w, bench_now_ns() - c->t0);
    } else if (w->draining && w->outstanding == 0) {
        event_base_loopbreak(w->base);
    }
    return 0; /* the window is refilled once per read (cli_on_read), not once per echo */
}

/* Reads the server's frames in c->rbuf. Returns -1 if <c> ended. */
static int cli_frames(struct cconn *c)
{
    struct cworker *w = c->w;

    for (;;) {
        uint8_t *p = c->rbuf + c->rpos, *pl;
        size_t avail = c->rlen - c->rpos;
        struct ws_frame f;
        int r;

        if (c->in_payload) {
            size_t n = avail < c->remain ? avail : (size_t)c->remain;

            if (n == 0)
                break;
            if (cli_check(c, p, n) < 0)
                return -1;
            c->msg_len += n;
            if (w->running)
                sl_stat_add(&w->bytes, n);
            c->rpos += n;
            c->remain -= n;
            c->in_payload = c->remain > 0;
            if (!c->in_payload && c->frame_fin && cli_on_message(c) < 0)
                return -1;
            continue;
        }
        r = ws_frame_parse(p, avail, &f);
        if (r == 0)
            break;
        if (r < 0 || f.masked || f.rsv) {
            cli_end(c, "bad frame from the server (masked, reserved bits or length)");
            return -1;
        }
        if (f.opcode >= WS_OP_CLOSE) {
            if (f.opcode > WS_OP_PONG || !f.fin || f.len > WS_CONTROL_MAX) {
                cli_end(c, "bad control frame from the server");
                return -1;
            }
            if (avail < f.hlen + f.len)
                break;
            pl = p + f.hlen;
            c->rpos += f.hlen + (size_t)f.len;
            if (f.opcode == WS_OP_PING) {
                cli_ctl(c, WS_OP_PONG, pl, (size_t)f.len);
                if (cli_send(c) < 0)
                    return -1;
            } else if (f.opcode == WS_OP_PONG) {
                /* An unsolicited pong is allowed (RFC 6455 5.5.3); the answer to our ping
                 * must carry its payload. */
                if (c->ping_sent && !c->pong_ok) {
                    uint8_t want[CLI_PING_LEN];

                    ping_payload(c, c->recv_seq, want);
                    if (f.len != CLI_PING_LEN || memcmp(pl, want, CLI_PING_LEN) != 0) {
                        cli_end(c, "pong differs from the ping (payload mismatch)");
                        return -1;
                    }
                    c->recv_seq++;
                    c->pong_ok = true;
                    sl_stat_add(&w->pongs, 1);
                    if (w->ph == PH_PING && --w->waiting == 0)
                        event_base_loopbreak(w->base);
                }
            } else {
                /* The server closes: the end of an upgrades cycle, else an error. */
                char msg[80];
                unsigned code = f.len >= 2 ? (unsigned)pl[0] << 8 | pl[1] : 1005;

                if (c->st == CST_CLOSING && code == 1000) {
                    if (w->running) {
                        sl_stat_add(&w->upgrades, 1);
                        hist_add(w, c->hs_ns);
                    }
                    cli_end(c, NULL);
                } else {
                    snprintf(msg, sizeof(msg),
                             c->st == CST_CLOSING ? "server answered close 1000 with close %u"
                                                  : "server sent close %u (unexpected close)",
                             code);
                    cli_end(c, msg);
                }
                return -1;
            }
            continue;
        }
        if (f.opcode > WS_OP_BINARY) {
            char msg[80];

            snprintf(msg, sizeof(msg), "bad frame from the server: reserved opcode %u", f.opcode);
            cli_end(c, msg);
            return -1;
        }
        if ((f.opcode == WS_OP_CONT) != c->in_msg) {
            cli_end(c, c->in_msg ? "bad data frame sequence from the server: a new message "
                                   "inside a fragmented one"
                                 : "bad data frame sequence from the server: a stray "
                                   "continuation frame");
            return -1;
        }
        if (f.opcode != WS_OP_CONT) {
            if (c->inflight == 0 || c->st != CST_OPEN) {
                cli_end(c, "a data message from the server with no echo due (unexpected message)");
                return -1;
            }
            if (f.opcode != WS_OP_BINARY) {
                char msg[120];

                snprintf(msg, sizeof(msg), "echo %llu: opcode %u (text), expected %u (binary)",
                         (unsigned long long)c->recv_seq, f.opcode, WS_OP_BINARY);
                cli_end(c, msg);
                return -1;
            }
            c->in_msg = true;
            c->msg_len = 0;
            c->pat_in = pat_off(c, c->recv_seq);
        }
        c->rpos += f.hlen;
        c->frame_fin = f.fin;
        c->remain = f.len;
        c->in_payload = f.len > 0;
        if (!c->in_payload && f.fin && cli_on_message(c) < 0)
            return -1;
    }
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    return 0;
}

/* The 101 is in: the connection is open. */
static void cli_opened(struct cconn *c)
{
    struct cworker *w = c->w;

    c->st = CST_OPEN;
    event_del(c->rev); /* drop the handshake timeout */
    event_add(c->rev, NULL);
    if (w->cl->o.mode == CM_UPGRADES) {
        /* The handshake is done: one echo next, then the close (cli_on_message). */
        struct timeval tv = {CLI_ECHO_MS / 1000, 0};

        c->hs_ns = bench_now_ns() - c->t_conn;
        event_add(c->rev, &tv);
        cli_append_msg(c);
        cli_send(c);
        return;
    }
    if (w->ph == PH_OPEN) {
        sl_stat_add(&w->opened, 1);
        w->pending--;
        cli_open_next(w);
    }
}

/* Checks the 101 in rbuf; returns the head's length, 0 if incomplete, -1 after cli_end. */
static long cli_handshake(struct cconn *c)
{
    const char *p = (const char *)c->rbuf, *cur, *end;
    size_t n = ws_head_end(p, c->rlen, c->head_scan), sl;
    struct ws_hdr h;
    bool accept_ok = false, upgrade_ok = false;
    char msg[160];
    int r;

    if (n == 0) {
        c->head_scan = c->rlen;
        if (c->rlen == c->w->cl->rcap) {
            cli_end(c, "response head too large");
            return -1;
        }
        return 0;
    }
    end = p + n;
    cur = memchr(p, '\n', n);
    sl = (size_t)(cur - p);
    while (sl > 0 && (p[sl - 1] == '\r'))
        sl--;
    if (sl < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        snprintf(msg, sizeof(msg), "handshake answered \"%.*s\"", (int)(sl > 80 ? 80 : sl), p);
        cli_end(c, msg);
        return -1;
    }
    cur++;
    while ((r = ws_head_next(&cur, end, &h)) == 1) {
        if (ws_hdr_is(&h, "Sec-WebSocket-Accept"))
            accept_ok = h.val_len == WS_ACCEPT_LEN && memcmp(h.val, c->accept, h.val_len) == 0;
        else if (ws_hdr_is(&h, "Upgrade"))
            upgrade_ok = ws_list_has(h.val, h.val_len, "websocket");
    }
    if (r < 0 || !accept_ok || !upgrade_ok) {
        cli_end(c, r < 0        ? "malformed 101 head"
                   : !accept_ok ? "101 with a wrong Sec-WebSocket-Accept"
                                : "101 without Upgrade: websocket");
        return -1;
    }
    return (long)n;
}

/* Takes the <n> bytes just read into rbuf: the 101, then frames. Returns -1 if <c> ended. */
static int cli_on_bytes(struct cconn *c, size_t n)
{
    long hl;

    c->rlen += n;
    if (c->st == CST_HANDSHAKE) {
        hl = cli_handshake(c);
        if (hl <= 0)
            return (int)hl;
        c->rpos = (size_t)hl;
        cli_opened(c);
        if (c->st == CST_DEAD)
            return -1;
    }
    return cli_frames(c);
}

static void cli_tls_handshake(struct cconn *c);

/* wss://: reads what TLS has for <c>, then writes once, as cli_on_read does. */
static void cli_tls_read(struct cconn *c)
{
    for (;;) {
        size_t n;
        int r = SSL_read_ex(c->ssl, c->rbuf + c->rlen, c->w->cl->rcap - c->rlen, &n);
        int err = errno, e;

        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_WANT_WRITE) {
                c->rd_want_write = true; /* the write event retries */
                event_add(c->wev, NULL);
                break;
            }
            if (e == SSL_ERROR_ZERO_RETURN) {
                ERR_clear_error();
                cli_end(c, c->st == CST_HANDSHAKE ? "closed before the 101 (TLS close_notify)"
                                                  : "closed by the server (TLS close_notify)");
                return;
            }
            cli_tls_fail(c, "TLS read", e, err);
            return;
        }
        if (cli_on_bytes(c, n) < 0)
            return;
        /* SSL may hold decrypted bytes, or whole records, that no fd event will announce:
         * read on while it holds any. What is still in the socket makes the read event
         * (level-triggered) fire again, so no read is spent on an EAGAIN. */
        if (!SSL_has_pending(c->ssl))
            break;
    }
    if (c->wr_want_read) {
        c->wr_want_read = false;
        if (cli_send(c) < 0)
            return;
    }
    if (c->st == CST_OPEN && c->soff == c->slen)
        cli_send(c);
}

static void cli_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct cconn *c = arg;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        if (c->st == CST_CLOSING)
            cli_end(c, "no close frame from the server");
        else if (c->st == CST_OPEN)
            cli_end(c, "no echo within the echo timeout (missing echo)");
        else if (c->st == CST_TLS)
            cli_end(c, "TLS handshake not done within the handshake timeout (a TLS server?)");
        else
            cli_end(c, "no 101 within the handshake timeout");
        return;
    }
    if (c->ssl) {
        if (c->st == CST_TLS)
            cli_tls_handshake(c);
        else
            cli_tls_read(c);
        return;
    }
    n = read(fd, c->rbuf + c->rlen, c->w->cl->rcap - c->rlen);
    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR)
            cli_fail_errno(c, "read");
        return;
    }
    if (n == 0) {
        cli_end(c, c->st == CST_HANDSHAKE ? "closed before the 101" : "closed by the server");
        return;
    }
    /* One write for every echo this read brought back: a write per echo made the client,
     * not what it measures, the bottleneck (and every message its own TCP segment). */
    if (cli_on_bytes(c, (size_t)n) == 0 && c->st == CST_OPEN && c->soff == c->slen)
        cli_send(c);
}

static void cli_send_request(struct cconn *c)
{
    struct cli_opts *o = &c->w->cl->o;
    char req[2048], key[WS_KEY_LEN + 1];
    uint64_t r[2] = {sl_xorshift64s(&c->w->rng), sl_xorshift64s(&c->w->rng)};
    int n;

    ws_make_key((const uint8_t *)r, key);
    ws_accept(key, WS_KEY_LEN, c->accept);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s"
                 "User-Agent: sluice-bench\r\n\r\n",
                 o->path, o->host, key, o->protocol ? "Sec-WebSocket-Protocol: " : "",
                 o->protocol ? o->protocol : "", o->protocol ? "\r\n" : "");
    /* A fresh socket's send buffer takes a 2 KiB request whole (over TLS: one record). */
    if (c->ssl) {
        size_t done;

        if (SSL_write_ex(c->ssl, req, (size_t)n, &done) != 1) {
            int err = errno;

            cli_tls_fail(c, "sending the handshake", SSL_get_error(c->ssl, 0), err);
            return;
        }
    } else if (write(c->fd, req, (size_t)n) != n) {
        cli_fail_errno(c, "sending the handshake");
        return;
    }
    c->st = CST_HANDSHAKE;
    event_del(c->wev);
    {
        struct timeval tv = {CLI_HANDSHAKE_MS / 1000, 0};

        event_add(c->rev, &tv);
    }
}

/* One step of the TLS handshake, when the socket is ready for what the last one wanted; then
 * the upgrade request. */
static void cli_tls_handshake(struct cconn *c)
{
    struct cworker *w = c->w;
    struct client *cl = w->cl;
    int r = SSL_connect(c->ssl), err = errno, e;

    if (r == 1) {
        sl_stat_add(&w->tls_handshakes, 1);
        if (SSL_session_reused(c->ssl))
            sl_stat_add(&w->tls_resumed, 1);
        if (!atomic_exchange(&cl->tls_info_set, true)) {
            snprintf(cl->tls_version, sizeof(cl->tls_version), "%s", SSL_get_version(c->ssl));
            snprintf(cl->tls_cipher, sizeof(cl->tls_cipher), "%s", SSL_get_cipher_name(c->ssl));
        }
        cli_send_request(c);
        return;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        event_del(c->wev); /* the read event is on, with the handshake timeout */
    else if (e == SSL_ERROR_WANT_WRITE)
        event_add(c->wev, NULL);
    else
        cli_tls_fail(c, "TLS handshake", e, err);
}

/* Offers the thread's newest resumable session on <ssl>. A TLS 1.3 one is a ticket, used once
 * (RFC 8446 C.4; OpenSSL marks it not resumable once resumed), so it leaves the pool and the
 * tickets the server sends after the handshake refill it; a TLS 1.2 one stays for the next.
 * Returns 0 if SSL_set_session failed. */
static int cli_tls_resume(struct cworker *w, SSL *ssl)
{
    while (w->n_sess) {
        SSL_SESSION *s = w->sess[w->n_sess - 1];
        int ok;

        if (!SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(s);
            w->n_sess--;
            continue;
        }
        ok = SSL_set_session(ssl, s);
        if (SSL_SESSION_get_protocol_version(s) == TLS1_3_VERSION) {
            SSL_SESSION_free(s);
            w->n_sess--;
        }
        return ok;
    }
    return 1;
}

/* wss://: TCP is up; the TLS handshake starts, resuming a session of the thread's if any. */
static void cli_tls_start(struct cconn *c)
{
    struct cworker *w = c->w;
    const struct cli_opts *o = &w->cl->o;
    struct timeval tv = {CLI_HANDSHAKE_MS / 1000, 0};

    c->st = CST_TLS;
    c->ssl = SSL_new(w->cl->ssl_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
        (o->sni && !SSL_set_tlsext_host_name(c->ssl, o->tls_name)) ||
        (!o->insecure && !SSL_set1_host(c->ssl, o->tls_name)) || !cli_tls_resume(w, c->ssl)) {
        ERR_clear_error();
        cli_end(c, "TLS: cannot set up the connection");
        return;
    }
    SSL_set_app_data(c->ssl, c);
    event_del(c->wev);
    event_add(c->rev, &tv);
    cli_tls_handshake(c);
}

static void cli_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct cconn *c = arg;
    socklen_t len = sizeof(int);
    int err = 0;

    if (c->st == CST_CONNECTING) {
        if (what & EV_TIMEOUT) {
            cli_end(c, "connect timed out");
            return;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err) {
            errno = err ? err : errno;
            cli_fail_errno(c, "connect");
            return;
        }
        if (c->w->cl->ssl_ctx)
            cli_tls_start(c);
        else
            cli_send_request(c);
        return;
    }
    if (c->ssl) {
        if (c->st == CST_TLS) {
            cli_tls_handshake(c);
            return;
        }
        if (c->rd_want_write) {
            c->rd_want_write = false;
            cli_tls_read(c); /* which writes too */
            return;
        }
    }
    cli_send(c);
}

static void cli_start(struct cconn *c)
{
    struct cworker *w = c->w;
    struct cli_opts *o = &w->cl->o;
    struct timeval tv = {CLI_HANDSHAKE_MS / 1000, 0};
    int one = 1;

    memset(&c->rlen, 0, sizeof(*c) - offsetof(struct cconn, rlen));
    if (o->mode == CM_UPGRADES) {
        /* A cycle under way until its cli_end; its one message is numbered by the cycle. */
        w->outstanding++;
        c->send_seq = c->recv_seq = c->uses;
    }
    c->fd = socket(o->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        c->st = CST_CONNECTING;
        cli_fail_errno(c, "socket");
        return;
    }
    c->st = CST_CONNECTING;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->n_src) {
        /* Bind the address only: the port is picked at connect, per destination, so each
         * source address has its own ~28k ephemeral ports. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&o->src[(c->idx + c->uses) % o->n_src],
                 sizeof(struct sockaddr_in)) == -1) {
            cli_fail_errno(c, "bind to the source address");
            return;
        }
    }
    c->uses++;
    c->rev = event_new(w->base, c->fd, EV_READ | EV_PERSIST, cli_on_read, c);
    c->wev = event_new(w->base, c->fd, EV_WRITE | EV_PERSIST, cli_on_write, c);
    if (!c->rev || !c->wev) {
        cli_end(c, "out of memory");
        return;
    }
    c->t_conn = bench_now_ns();
    if (connect(c->fd, (struct sockaddr *)&o->dst, o->dst_len) == -1 && errno != EINPROGRESS) {
        cli_fail_errno(c, "connect");
        return;
    }
    event_add(c->wev, &tv);
}

static void cli_open_next(struct cworker *w)
{
    if (w->in_open_next)
        return; /* a connection failed synchronously inside the loop below */
    w->in_open_next = true;
    while (w->pending < w->limit && w->next < w->n) {
        w->pending++;
        cli_start(&w->c[w->next++]);
    }
    w->in_open_next = false;
    if (w->pending == 0 && w->next == w->n) {
        w->open_done_ns = bench_now_ns();
        event_base_loopbreak(w->base);
    }
}

static void cli_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct cworker *w = arg;

    (void)fd;
    (void)what;
    w->running = false;
    event_base_loopbreak(w->base);
}

/* Runs the loop until a loopbreak or <seconds> pass. */
static void cli_run_for(struct cworker *w, double seconds)
{
    struct event *t = evtimer_new(w->base, cli_on_deadline, w);
    struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};

    evtimer_add(t, &tv);
    event_base_dispatch(w->base);
    event_free(t);
}

/* The run is over: waits (bounded) for what is still due (bulk, rr: the echoes of messages in
 * flight; upgrades: the cycles under way, which start no new one) so that it is verified too and
 * a dropped echo cannot go unnoticed; whatever does not come back is an error. */
static void cli_drain(struct cworker *w)
{
    const struct cli_opts *o = &w->cl->o;
    uint64_t due = o->mode == CM_UPGRADES ? w->n : w->outstanding;
    double secs = CLI_DRAIN_S + (double)due * (double)o->size / CLI_DRAIN_BPS;

    if (w->outstanding == 0)
        return;
    w->draining = true;
    cli_run_for(w, secs);
    w->draining = false;
    if (w->outstanding == 0)
        return;
    for (unsigned i = 0; i < w->n; i++) {
        struct cconn *c = &w->c[i];

        if (o->mode == CM_UPGRADES && c->st != CST_DEAD) {
            sl_stat_add(&w->failed, 1);
            cli_error(w, "upgrade (slot %u): %s %.1f s after the run (missing %s)", c->idx,
                      c->st == CST_OPEN ? "no echo" : "still unfinished", secs,
                      c->st == CST_OPEN ? "echo" : "answer");
        } else if (o->mode != CM_UPGRADES && c->st == CST_OPEN && c->inflight) {
            cli_error(w,
                      "connection %u: echo %llu and %u more still missing %.1f s after the run "
                      "(missing echo)",
                      c->idx, (unsigned long long)c->recv_seq, c->inflight - 1, secs);
        }
    }
}

/* Marks the start of the timed phase for the progress display (the first worker's clock). */
static void cli_mark_run(struct client *cl, uint64_t t)
{
    uint64_t zero = 0;

    atomic_compare_exchange_strong(&cl->run_start_ns, &zero, t);
}

static void cli_work(struct cworker *w)
{
    struct client *cl = w->cl;
    const struct cli_opts *o = &cl->o;
    uint64_t t;

    if (o->mode == CM_UPGRADES) {
        w->ph = PH_RUN;
        w->running = true;
        t = bench_now_ns();
        cli_mark_run(cl, t);
        for (unsigned i = 0; i < w->n; i++)
            cli_start(&w->c[i]);
        cli_run_for(w, o->seconds);
        w->running = false;
        w->run_ns = bench_now_ns() - t;
        cli_drain(w);
        return;
    }

    w->ph = PH_OPEN;
    cli_open_next(w);
    if (w->pending)
        cli_run_for(w, CLI_OPEN_DEADLINE_S);
    if (w->pending) {
        cli_error(w, "%u handshakes still pending after %d s", w->pending, CLI_OPEN_DEADLINE_S);
        sl_stat_add(&w->open_failed, w->pending + (w->n - w->next));
        w->open_done_ns = bench_now_ns();
    }
    atomic_fetch_add(&cl->open_failed, (unsigned)sl_stat_get(&w->open_failed));
    pthread_barrier_wait(&cl->barrier);

    w->ph = PH_RUN;
    if (o->mode == CM_IDLE) {
        cli_mark_run(cl, bench_now_ns());
        if (sl_stat_get(&w->opened) == 0)
            return; /* nothing to hold */
        cli_run_for(w, o->hold);
        w->ph = PH_PING;
        atomic_store(&cl->pinging, true);
        for (unsigned i = 0; i < w->n; i++) {
            struct cconn *c = &w->c[i];
            uint8_t ping[CLI_PING_LEN];

            if (c->st != CST_OPEN)
                continue;
            c->ping_sent = true;
            w->waiting++;
            ping_payload(c, c->send_seq++, ping);
            cli_ctl(c, WS_OP_PING, ping, sizeof(ping));
            cli_send(c);
        }
        if (w->waiting)
            cli_run_for(w, CLI_PING_MS / 1000.0);
        return;
    }
    /* bulk, rr: a failed handshake anywhere fails the run, so don't measure a partial one. */
    if (atomic_load(&cl->open_failed))
        return;
    w->running = true;
    t = bench_now_ns();
    cli_mark_run(cl, t);
    for (unsigned i = 0; i < w->n; i++) {
        if (w->c[i].st == CST_OPEN)
            cli_send(&w->c[i]);
    }
    cli_run_for(w, o->seconds);
    w->running = false;
    w->run_ns = bench_now_ns() - t;
    cli_drain(w);
}

static void *cli_thread(void *arg)
{
    struct cworker *w = arg;
    struct client *cl = w->cl;

    cli_work(w);
    pthread_mutex_lock(&cl->done_mx);
    cl->done++;
    pthread_cond_signal(&cl->done_cv);
    pthread_mutex_unlock(&cl->done_mx);
    return NULL;
}

static int parse_url(const char *url, struct cli_opts *o)
{
    const char *h, *slash, *colon, *hend;
    char host[300], port[8] = "80";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    struct in6_addr ip;
    size_t hl;

    if (strncmp(url, "ws://", 5) == 0) {
        h = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        h = url + 6;
        o->tls = true;
        snprintf(port, sizeof(port), "443");
    } else {
        return -1;
    }
    slash = strchr(h, '/');
    hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= sizeof(o->host) || strlen(slash ? slash : "/") >= sizeof(o->path))
        return -1;
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    snprintf(o->path, sizeof(o->path), "%s", slash ? slash : "/");
    if (o->host[0] == '[') {
        hend = strchr(o->host, ']');
        if (!hend)
            return -1;
        colon = hend[1] == ':' ? hend + 1 : NULL;
        if (hend[1] && !colon)
            return -1;
        snprintf(host, sizeof(host), "%.*s", (int)(hend - o->host - 1), o->host + 1);
    } else {
        colon = strrchr(o->host, ':');
        snprintf(host, sizeof(host), "%.*s", (int)(colon ? colon - o->host : (long)hl), o->host);
    }
    if (colon) {
        if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port))
            return -1;
        snprintf(port, sizeof(port), "%s", colon + 1);
    }
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    memcpy(&o->dst, ai->ai_addr, ai->ai_addrlen);
    o->dst_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(o->tls_name, sizeof(o->tls_name), "%s", o->sni_opt ? o->sni_opt : host);
    o->sni =
        inet_pton(AF_INET, o->tls_name, &ip) != 1 && inet_pton(AF_INET6, o->tls_name, &ip) != 1;
    return 0;
}

/* "A-B" (IPv4, inclusive), "A", or a comma-separated list of those. */
static int parse_sources(const char *s, struct cli_opts *o)
{
    char buf[1024], *save = NULL, *tok;
    unsigned cap = 0;

    if (strlen(s) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", s);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        struct in_addr a, b;
        uint32_t lo, hi;

        if (dash)
            *dash = '\0';
        if (inet_pton(AF_INET, tok, &a) != 1 || (dash && inet_pton(AF_INET, dash + 1, &b) != 1))
            return -1;
        lo = ntohl(a.s_addr);
        hi = dash ? ntohl(b.s_addr) : lo;
        if (hi < lo || hi - lo >= 65536 || o->n_src + (hi - lo + 1) > 65536)
            return -1;
        for (uint64_t v = lo; v <= hi; v++) {
            if (o->n_src == cap) {
                cap = cap ? cap * 2 : 64;
                o->src = realloc(o->src, cap * sizeof(*o->src));
                if (!o->src)
                    return -1;
            }
            o->src[o->n_src] =
                (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl((uint32_t)v)};
            o->n_src++;
        }
    }
    return o->n_src ? 0 : -1;
}

#define TLS_OPTS " insecure cafile sni no-resume "

static int parse_client_args(int argc, char **argv, struct cli_opts *o)
{
    static const struct {
        const char *name;
        enum cli_mode mode;
        const char *opts; /* the options the mode takes, space-separated */
    } modes[] = {
        {"bulk", CM_BULK, " url size seconds conns threads window verify json" TLS_OPTS},
        {"rr", CM_RR, " url size seconds conns threads verify json" TLS_OPTS},
        {"upgrades", CM_UPGRADES,
         " url size seconds conns concurrency threads src source-ips protocol json" TLS_OPTS},
        {"idle", CM_IDLE,
         " url conns hold concurrency threads src source-ips protocol json" TLS_OPTS},
    };
    const char *opts = NULL, *url = NULL;
    bool window_set = false;
    char msg[200];

    for (size_t i = 0; i < SL_ARRAY_LEN(modes); i++) {
        if (!strcmp(argv[0], modes[i].name)) {
            o->mode = modes[i].mode;
            opts = modes[i].opts;
            o->name = modes[i].name;
        }
    }
    if (!opts)
        return bench_usage("unknown mode");
    o->size = o->mode == CM_BULK ? 1 << 20 : 64;
    o->seconds = 5;
    o->hold = 10;
    o->conns = 1;
    o->threads = 1;
    o->concurrency = o->mode == CM_UPGRADES ? 4 : 200;
    for (int a = 1; a < argc; a++) {
        const char *opt = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        char key[40];
        int bad = 0;

        if (!strcmp(opt, "-k"))
            opt = "--insecure";
        if (strncmp(opt, "--", 2) != 0 || strlen(opt) > 30)
            return bench_usage("unexpected argument");
        snprintf(key, sizeof(key), " %s ", opt + 2);
        if (!strstr(opts, key)) {
            snprintf(msg, sizeof(msg), "%s does not take %s", o->name, opt);
            return bench_usage(msg);
        }
        if (!strcmp(opt, "--verify"))
            continue; /* verification is always on; the flag stays for old scripts */
        if (!strcmp(opt, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(opt, "--insecure")) {
            o->insecure = true;
            continue;
        }
        if (!strcmp(opt, "--no-resume")) {
            o->no_resume = true;
            continue;
        }
        if (!v) {
            snprintf(msg, sizeof(msg), "%s needs a value", opt);
            return bench_usage(msg);
        }
        a++;
        if (!strcmp(opt, "--url"))
            url = v;
        else if (!strcmp(opt, "--size"))
            bad = bench_parse_size(v, CLI_MAX_SIZE, &o->size);
        else if (!strcmp(opt, "--seconds"))
            bad = bench_parse_seconds(v, 86400, &o->seconds);
        else if (!strcmp(opt, "--hold"))
            bad = bench_parse_seconds(v, 86400, &o->hold);
        else if (!strcmp(opt, "--conns") && o->mode == CM_UPGRADES)
            bad = bench_parse_uint(v, 1, CLI_MAX_CONNS, &o->concurrency); /* the slots */
        else if (!strcmp(opt, "--conns"))
            bad = bench_parse_uint(v, 1, CLI_MAX_CONNS, &o->conns);
        else if (!strcmp(opt, "--threads"))
            bad = bench_parse_uint(v, 1, CLI_MAX_THREADS, &o->threads);
        else if (!strcmp(opt, "--concurrency"))
            bad = bench_parse_uint(v, 1, CLI_MAX_CONNS, &o->concurrency);
        else if (!strcmp(opt, "--window"))
            bad = bench_parse_uint(v, 1, 1 << 20, &o->window), window_set = true;
        else if (!strcmp(opt, "--src") || !strcmp(opt, "--source-ips"))
            bad = parse_sources(v, o);
        else if (!strcmp(opt, "--protocol"))
            bad = strpbrk(v, "\r\n") ? -1 : (o->protocol = v, 0);
        else if (!strcmp(opt, "--cafile"))
            o->cafile = v;
        else if (!strcmp(opt, "--sni")) /* a host name: at most 253 bytes (RFC 1035) */
            bad = !*v || strlen(v) > 253 || strpbrk(v, "\r\n") ? -1 : (o->sni_opt = v, 0);
        if (bad) {
            snprintf(msg, sizeof(msg), "bad value for %s: %s", opt, v);
            return bench_usage(msg);
        }
    }
    if (!url)
        return bench_usage("--url ws[s]://HOST[:PORT][/PATH] is required");
    if (o->mode == CM_BULK && o->size == 0)
        return bench_usage("bulk needs --size of at least 1 byte");
    if (parse_url(url, o) < 0) {
        snprintf(msg, sizeof(msg), "bad or unresolvable --url %s (ws[s]://HOST[:PORT][/PATH])",
                 url);
        return bench_usage(msg);
    }
    if (!o->tls && (o->insecure || o->cafile || o->sni_opt || o->no_resume))
        return bench_usage("--insecure, --cafile, --sni and --no-resume need a wss:// URL");
    if (o->insecure && o->cafile)
        return bench_usage("--insecure skips the verification --cafile is for: pick one");
    if (o->mode == CM_RR) {
        o->window = 1;
    } else if (!window_set) {
        /* About 4 MiB in flight per connection: enough to keep a loopback pipe full, bounded
         * for many connections; at least 2 so a message is always on its way. */
        uint64_t wnd = (4u << 20) / (o->size ? o->size : 1);

        o->window = wnd < 2 ? 2 : wnd > 1024 ? 1024 : (unsigned)wnd;
    }
    if (o->mode == CM_UPGRADES)
        o->conns = o->concurrency;
    if (o->threads > o->conns)
        o->threads = o->conns;
    return 0;
}

/* A connection's new session: OpenSSL hands it over at the end of a full TLS 1.2 handshake,
 * and with each ticket after a TLS 1.3 one. Its thread keeps the latest CLI_SESS_MAX for its
 * next handshakes (cli_tls_resume). */
static int cli_tls_on_session(SSL *ssl, SSL_SESSION *sess)
{
    struct cworker *w = ((struct cconn *)SSL_get_app_data(ssl))->w;

    if (w->n_sess == CLI_SESS_MAX) {
        SSL_SESSION_free(w->sess[0]);
        memmove(w->sess, w->sess + 1, (CLI_SESS_MAX - 1) * sizeof(w->sess[0]));
        w->n_sess--;
    }
    w->sess[w->n_sess++] = sess;
    return 1; /* the reference is ours now */
}

/* The run's SSL_CTX (wss://), shared by the threads: TLS 1.2 and up, ALPN http/1.1, the
 * certificate checked against the system CAs (or --cafile) unless --insecure, and each
 * thread's latest sessions kept for resumption unless --no-resume. NULL after printing why. */
static SSL_CTX *cli_tls_ctx(const struct cli_opts *o)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *what = "cannot set up TLS", *arg = "";
    char msg[400];

    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) /* 0 is success here */
        goto fail;
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->mode == CM_IDLE) /* thousands of quiet connections: no 34 KiB of buffers each */
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (o->cafile) {
        what = "cannot load --cafile ";
        arg = o->cafile;
        if (!SSL_CTX_load_verify_locations(ctx, o->cafile, NULL))
            goto fail;
    } else if (!o->insecure && !SSL_CTX_set_default_verify_paths(ctx)) {
        what = "cannot load the system's CA certificates";
        goto fail;
    }
    SSL_CTX_set_verify(ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (o->no_resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else {
        /* No internal store: it would be one locked cache for all threads, and the callback
         * keeps what we need. */
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, cli_tls_on_session);
    }
    ERR_clear_error(); /* anything the CA loading left: nothing failed */
    return ctx;
fail:
    snprintf(msg, sizeof(msg), "%s%s: %s", what, arg,
             ERR_peek_error() ? tls_reason(ERR_peek_error()) : "failed");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    bench_usage(msg);
    return NULL;
}

/* Sums of the workers' counters; <hist> too when not NULL (after the workers are done). */
struct cli_sums {
    uint64_t bytes, msgs, ups, failed, errors, opened, open_failed, pongs, run_ns, open_ns, max_ns;
    uint64_t tls_handshakes, tls_resumed;
    const char *first_err;
};

static void cli_sum(struct client *cl, struct cli_sums *s, uint64_t *hist)
{
    memset(s, 0, sizeof(*s));
    for (unsigned i = 0; i < cl->o.threads; i++) {
        struct cworker *w = &cl->w[i];

        s->bytes += sl_stat_get(&w->bytes);
        s->msgs += sl_stat_get(&w->msgs);
        s->ups += sl_stat_get(&w->upgrades);
        s->failed += sl_stat_get(&w->failed);
        s->errors += sl_stat_get(&w->errors);
        s->opened += sl_stat_get(&w->opened);
        s->open_failed += sl_stat_get(&w->open_failed);
        s->pongs += sl_stat_get(&w->pongs);
        s->tls_handshakes += sl_stat_get(&w->tls_handshakes);
        s->tls_resumed += sl_stat_get(&w->tls_resumed);
        if (!hist)
            continue;
        if (w->run_ns > s->run_ns)
            s->run_ns = w->run_ns;
        if (w->open_done_ns && w->open_done_ns - cl->t_start > s->open_ns)
            s->open_ns = w->open_done_ns - cl->t_start;
        if (w->max_ns > s->max_ns)
            s->max_ns = w->max_ns;
        if (w->hist) {
            for (unsigned j = 0; j < CLI_HIST; j++)
                hist[j] += w->hist[j];
        }
        if (w->first_err[0] && !s->first_err)
            s->first_err = w->first_err;
    }
}

/* Latency percentiles in microseconds: p50, p90, p99, p99.9, max. */
struct cli_pcts {
    double p50, p90, p99, p999, max;
};

static void cli_pcts(const uint64_t *hist, uint64_t n, uint64_t max, struct cli_pcts *p)
{
    p->p50 = (double)hist_pct(hist, n, max, 500000) / 1e3;
    p->p90 = (double)hist_pct(hist, n, max, 900000) / 1e3;
    p->p99 = (double)hist_pct(hist, n, max, 990000) / 1e3;
    p->p999 = (double)hist_pct(hist, n, max, 999000) / 1e3;
    p->max = (double)max / 1e3;
}

/* Ends the result line: the TLS fields (--json: "tls" always), then "}" with --json. */
static void print_tls(const struct client *cl, const struct cli_sums *s)
{
    const struct cli_opts *o = &cl->o;
    const char *v = cl->tls_version, *ci = cl->tls_cipher; /* empty: no handshake completed */
    unsigned long long hs = (unsigned long long)s->tls_handshakes;
    unsigned long long res = (unsigned long long)s->tls_resumed;

    if (o->json && !o->tls)
        printf(",\"tls\":false}\n");
    else if (o->json)
        printf(",\"tls\":true,\"tls_version\":%s%s%s,\"tls_cipher\":%s%s%s,"
               "\"tls_handshakes\":%llu,\"tls_resumed\":%llu}\n",
               *v ? "\"" : "", *v ? v : "null", *v ? "\"" : "", *ci ? "\"" : "", *ci ? ci : "null",
               *ci ? "\"" : "", hs, res);
    else if (o->tls)
        printf(" tls_version=%s tls_cipher=%s tls_handshakes=%llu tls_resumed=%llu\n",
               *v ? v : "none", *ci ? ci : "none", hs, res);
    else
        putchar('\n');
}

static void print_result(struct client *cl, int *rc)
{
    const struct cli_opts *o = &cl->o;
    uint64_t *hist = calloc(CLI_HIST, sizeof(uint64_t));
    struct cli_sums s;
    struct cli_pcts p = {0};
    double secs, open_s;

    if (!hist) {
        fprintf(stderr, "sluice-bench %s: out of memory\n", o->name);
        *rc = 1;
        return;
    }
    cli_sum(cl, &s, hist);
    secs = s.run_ns ? (double)s.run_ns / 1e9 : o->seconds;
    open_s = (double)s.open_ns / 1e9;
    switch (o->mode) {
    case CM_BULK: {
        double mibs = (double)s.bytes / secs / (1024.0 * 1024.0);
        double mbs = (double)s.bytes / secs / 1e6, mps = (double)s.msgs / secs;

        if (o->json)
            printf("{\"mode\":\"bulk\",\"conns\":%u,\"size\":%llu,\"seconds\":%.3f,"
                   "\"bytes\":%llu,\"mib_per_s\":%.1f,\"mb_per_s\":%.1f,\"messages\":%llu,"
                   "\"msgs_per_s\":%.1f,\"window\":%u,\"threads\":%u,\"verify\":true,"
                   "\"errors\":%llu",
                   o->conns, (unsigned long long)o->size, secs, (unsigned long long)s.bytes, mibs,
                   mbs, (unsigned long long)s.msgs, mps, o->window, o->threads,
                   (unsigned long long)s.errors);
        else
            printf("bulk: conns=%u size=%llu seconds=%.2f bytes=%llu MiB/s=%.1f MB/s=%.1f "
                   "msgs/s=%.1f",
                   o->conns, (unsigned long long)o->size, secs, (unsigned long long)s.bytes, mibs,
                   mbs, mps);
        if (s.errors || s.bytes == 0)
            *rc = 1;
        break;
    }
    case CM_RR:
        cli_pcts(hist, s.msgs, s.max_ns, &p);
        if (o->json)
            printf("{\"mode\":\"rr\",\"conns\":%u,\"size\":%llu,\"seconds\":%.3f,"
                   "\"messages\":%llu,\"msgs_per_s\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
                   "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"threads\":%u,"
                   "\"verify\":true,\"errors\":%llu",
                   o->conns, (unsigned long long)o->size, secs, (unsigned long long)s.msgs,
                   (double)s.msgs / secs, p.p50, p.p90, p.p99, p.p999, p.max, o->threads,
                   (unsigned long long)s.errors);
        else
            printf("rr: conns=%u size=%llu seconds=%.2f msgs=%llu msgs/s=%.0f p50_us=%.1f "
                   "p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
                   o->conns, (unsigned long long)o->size, secs, (unsigned long long)s.msgs,
                   (double)s.msgs / secs, p.p50, p.p90, p.p99, p.p999, p.max);
        if (s.errors || s.msgs == 0)
            *rc = 1;
        break;
    case CM_UPGRADES:
        cli_pcts(hist, s.ups, s.max_ns, &p);
        if (o->json)
            printf("{\"mode\":\"upgrades\",\"conns\":%u,\"concurrency\":%u,\"size\":%llu,"
                   "\"seconds\":%.3f,\"upgrades\":%llu,\"upgrades_per_s\":%.1f,\"failed\":%llu,"
                   "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
                   "\"max_us\":%.1f,\"threads\":%u,\"verify\":true,\"errors\":%llu",
                   o->concurrency, o->concurrency, (unsigned long long)o->size, secs,
                   (unsigned long long)s.ups, (double)s.ups / secs, (unsigned long long)s.failed,
                   p.p50, p.p90, p.p99, p.p999, p.max, o->threads, (unsigned long long)s.errors);
        else
            printf("upgrades: conns=%u concurrency=%u size=%llu seconds=%.2f upgrades=%llu "
                   "upgrades/s=%.0f failed=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f "
                   "p999_us=%.1f max_us=%.1f",
                   o->concurrency, o->concurrency, (unsigned long long)o->size, secs,
                   (unsigned long long)s.ups, (double)s.ups / secs, (unsigned long long)s.failed,
                   p.p50, p.p90, p.p99, p.p999, p.max);
        if (s.failed || s.errors || s.ups == 0)
            *rc = 1;
        break;
    case CM_IDLE:
        if (o->json)
            printf("{\"mode\":\"idle\",\"conns\":%u,\"opened\":%llu,\"ok\":%llu,\"failed\":%llu,"
                   "\"open_seconds\":%.3f,\"hold_seconds\":%.3f,\"threads\":%u,\"verify\":true,"
                   "\"errors\":%llu",
                   o->conns, (unsigned long long)s.opened, (unsigned long long)s.pongs,
                   (unsigned long long)(o->conns - s.pongs), open_s, o->hold, o->threads,
                   (unsigned long long)s.errors);
        else
            printf("idle: opened=%llu ok=%llu failed=%llu conns=%u open_seconds=%.2f "
                   "hold_seconds=%.1f",
                   (unsigned long long)s.opened, (unsigned long long)s.pongs,
                   (unsigned long long)(o->conns - s.pongs), o->conns, open_s, o->hold);
        if (s.pongs != o->conns || s.errors)
            *rc = 1;
        break;
    }
    print_tls(cl, &s);
    fflush(stdout);
    if (s.open_failed && o->mode != CM_IDLE)
        fprintf(stderr, "sluice-bench %s: %llu of %u handshakes failed\n", o->name,
                (unsigned long long)s.open_failed, o->conns);
    if (s.first_err)
        fprintf(stderr, "sluice-bench %s: %llu errors; first: %s\n", o->name,
                (unsigned long long)s.errors, s.first_err);
    if (s.open_failed)
        *rc = 1;
    free(hist);
}

/* One line of progress on stderr (a terminal): the rate so far, errors so far, seconds left. */
static int progress_line(struct client *cl, char *buf, size_t cap)
{
    const struct cli_opts *o = &cl->o;
    uint64_t rs = atomic_load(&cl->run_start_ns), now = bench_now_ns();
    double el = rs && now > rs ? (double)(now - rs) / 1e9 : 0, left;
    unsigned long long err;
    struct cli_sums s;

    cli_sum(cl, &s, NULL);
    err = (unsigned long long)s.errors;
    left = (o->mode == CM_IDLE ? o->hold : o->seconds) - el;
    left = left > 0 ? (double)(long)left + ((double)(long)left < left) : 0; /* whole s, up */
    if (!rs)
        return snprintf(buf, cap, "%s: opening %llu/%u, %llu errors", o->name,
                        (unsigned long long)(s.opened + s.open_failed), o->conns, err);
    if (el < 1e-3)
        el = 1e-3;
    switch (o->mode) {
    case CM_BULK:
        return snprintf(buf, cap, "bulk: %.1f MB/s, %.0f msgs/s, %llu errors, %.0f s left",
                        (double)s.bytes / el / 1e6, (double)s.msgs / el, err, left);
    case CM_RR:
        return snprintf(buf, cap, "rr: %.0f msgs/s, %llu errors, %.0f s left", (double)s.msgs / el,
                        err, left);
    case CM_UPGRADES:
        return snprintf(buf, cap, "upgrades: %.0f upgrades/s, %llu errors, %.0f s left",
                        (double)s.ups / el, err, left);
    case CM_IDLE:
        if (atomic_load(&cl->pinging))
            return snprintf(buf, cap, "idle: %llu/%llu pongs, %llu errors",
                            (unsigned long long)s.pongs, (unsigned long long)s.opened, err);
        return snprintf(buf, cap, "idle: %llu open, %llu errors, %.0f s left",
                        (unsigned long long)s.opened, err, left);
    }
    return 0;
}

/* Waits for the workers; on a terminal, redraws the progress line every second meanwhile and
 * erases it at the end, before the result is printed. */
static void wait_workers(struct client *cl)
{
    struct timespec next;
    char line[200];
    int shown = 0;

    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&cl->done_mx);
    while (cl->done < cl->o.threads) {
        if (!cl->o.progress) {
            pthread_cond_wait(&cl->done_cv, &cl->done_mx);
            continue;
        }
        next.tv_sec++;
        while (cl->done < cl->o.threads &&
               pthread_cond_timedwait(&cl->done_cv, &cl->done_mx, &next) != ETIMEDOUT)
            ;
        if (cl->done < cl->o.threads) {
            int n = progress_line(cl, line, sizeof(line));

            if (n >= (int)sizeof(line))
                n = (int)sizeof(line) - 1;
            fprintf(stderr, "\r%s%*s", line, shown > n ? shown - n : 0, "");
            fflush(stderr);
            if (n > shown)
                shown = n;
        }
    }
    pthread_mutex_unlock(&cl->done_mx);
    if (shown) {
        fprintf(stderr, "\r%*s\r", shown, "");
        fflush(stderr);
    }
}

int bench_client_main(int argc, char **argv)
{
    struct client cl = {0};
    struct cli_opts *o = &cl.o;
    unsigned long nofile;
    unsigned per, extra, first = 0;
    uint64_t seed, plen;
    int rc;

    rc = parse_client_args(argc, argv, o);
    if (rc)
        return rc;
    if (o->tls) {
        cl.ssl_ctx = cli_tls_ctx(o);
        if (!cl.ssl_ctx) {
            free(o->src);
            return 2;
        }
    }
    nofile = bench_raise_nofile();
    if (o->conns + 16 > nofile)
        fprintf(stderr, "sluice-bench %s: warning: %u connections but a limit of %lu fds\n",
                o->name, o->conns, nofile);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    o->progress = isatty(STDERR_FILENO) == 1;
    if (o->mode == CM_BULK || o->mode == CM_RR) {
        cl.rcap = CLI_RBUF_BULK;
        cl.scap = ws_frame_hlen(o->size, true) + o->size;
        if (cl.scap < CLI_SBUF_MIN)
            cl.scap = CLI_SBUF_MIN;
        cl.scap += CLI_CTL;
    } else {
        /* A 101 head and control frames; upgrades' echo streams through like bulk's. */
        cl.rcap = CLI_RBUF_SMALL;
        cl.scap = CLI_CTL + (o->mode == CM_UPGRADES ? ws_frame_hlen(o->size, true) + o->size : 0);
    }
    /* The pattern every message's bytes after its sequence number come from, at offsets below
     * CLI_PAT_SPAN: the same pseudo-random bytes on every run (a fixed seed). */
    plen = (o->size > CLI_PING_LEN ? o->size : CLI_PING_LEN) + CLI_PAT_SPAN;
    cl.pattern = malloc(plen);
    if (!cl.pattern)
        return 1;
    seed = 0x736c75696365ULL;
    for (uint64_t i = 0; i < plen; i += 8) {
        uint64_t r = sl_xorshift64s(&seed);

        memcpy(cl.pattern + i, &r, plen - i < 8 ? plen - i : 8);
    }
    cl.w = calloc(o->threads, sizeof(*cl.w));
    if (!cl.w)
        return 1;
    pthread_barrier_init(&cl.barrier, NULL, o->threads);
    pthread_mutex_init(&cl.done_mx, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cl.done_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    per = o->conns / o->threads;
    extra = o->conns % o->threads;
    for (unsigned i = 0; i < o->threads; i++) {
        struct cworker *w = &cl.w[i];

        w->cl = &cl;
        w->n = per + (i < extra ? 1 : 0);
        w->first = first;
        first += w->n;
        w->limit = o->concurrency / o->threads ? o->concurrency / o->threads : 1;
        w->rng = sl_seed64((uintptr_t)w);
        w->base = event_base_new();
        w->c = calloc(w->n, sizeof(*w->c));
        if (o->mode == CM_RR || o->mode == CM_UPGRADES) {
            w->hist = calloc(CLI_HIST, sizeof(uint64_t));
            if (!w->hist)
                return 1;
        }
        if (!w->base || !w->c)
            return 1;
        for (unsigned j = 0; j < w->n; j++) {
            struct cconn *c = &w->c[j];

            c->w = w;
            c->idx = w->first + j;
            c->fd = -1;
            c->rbuf = malloc(cl.rcap);
            c->sbuf = malloc(cl.scap);
            if (!c->rbuf || !c->sbuf) {
                fprintf(stderr, "sluice-bench %s: out of memory\n", o->name);
                return 1;
            }
        }
    }
    cl.t_start = bench_now_ns();
    for (unsigned i = 0; i < o->threads; i++) {
        if (pthread_create(&cl.w[i].tid, NULL, cli_thread, &cl.w[i]) != 0) {
            fprintf(stderr, "sluice-bench %s: cannot start threads\n", o->name);
            return 1;
        }
    }
    wait_workers(&cl);
    for (unsigned i = 0; i < o->threads; i++)
        pthread_join(cl.w[i].tid, NULL);

    rc = 0;
    print_result(&cl, &rc);
    for (unsigned i = 0; i < o->threads; i++) {
        struct cworker *w = &cl.w[i];

        for (unsigned j = 0; j < w->n; j++) {
            cli_close(&w->c[j], true);
            free(w->c[j].rbuf);
            free(w->c[j].sbuf);
        }
        free(w->c);
        free(w->hist);
        for (unsigned j = 0; j < w->n_sess; j++)
            SSL_SESSION_free(w->sess[j]);
        event_base_free(w->base);
    }
    SSL_CTX_free(cl.ssl_ctx);
    pthread_barrier_destroy(&cl.barrier);
    pthread_cond_destroy(&cl.done_cv);
    pthread_mutex_destroy(&cl.done_mx);
    free(cl.w);
    free(cl.pattern);
    free(o->src);
    return rc;
}
