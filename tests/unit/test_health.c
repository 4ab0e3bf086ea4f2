/* The health checker against real targets on 127.0.0.1: a test server thread owns listeners
 * on ephemeral ports (closed and re-bound on the same port to stop and restart a target) and
 * answers each connection as its target is told: close at once, a canned HTTP answer, or
 * silence. Configs are JSON texts. Every wait is bounded by a deadline.
 *
 * Every config carries a "sync" group with one unchecked target: its state is reset to UP on
 * every apply, so setting it DOWN before sl_health_apply and waiting for UP tells the test the
 * checker thread has taken the config. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sluice/addr.h"
#include "sluice/balancer.h"
#include "sluice/config.h"
#include "sluice/health.h"

#define MAX_TGT 8
#define MAX_CONN 256
#define MAX_ACCEPTS 512
#define WAIT_MS 5000

/* ---- time ---------------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return sl_clock_ms(CLOCK_MONOTONIC);
}

static uint64_t wall_ms(void)
{
    return sl_clock_ms(CLOCK_REALTIME);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Polls <cond> every <step> ms until it holds; fails the test after <ms>. */
#define WAIT_STEP(cond, ms, step)                                                                \
    do {                                                                                         \
        uint64_t dl_ = now_ms() + (ms);                                                          \
        while (!(cond)) {                                                                        \
            if (now_ms() > dl_)                                                                  \
                fail_msg("%s:%d: no \"%s\" within %d ms", __FILE__, __LINE__, #cond, (int)(ms)); \
            sleep_ms(step);                                                                      \
        }                                                                                        \
    } while (0)
#define WAIT_FOR(cond) WAIT_STEP(cond, WAIT_MS, 10)

#define LD(st, f) atomic_load(&(st)->f)

/* ---- the test targets ---------------------------------------------------------------------- */

enum tmode {
    T_CLOSE = 0, /* accept and close at once */
    T_HTTP,      /* read the request head, send resp, close */
    T_SILENT,    /* accept and never answer */
};

struct tgt {
    int lfd;        /* -1: closed (connects are refused) */
    uint16_t port;
    unsigned gen;   /* bumped on close: its connections are dropped */
    enum tmode mode;
    const char *resp;
    unsigned accepts;
    uint64_t accept_ms[MAX_ACCEPTS];
    struct sl_addr peer; /* of the latest connection */
};

struct conn {
    int fd; /* -1: free */
    int t;
    unsigned gen;
    size_t len;
    char req[4096];
};

static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    int wake[2];
    atomic_bool stop;
    struct tgt t[MAX_TGT]; /* under mu */
    struct conn c[MAX_CONN]; /* the server thread's own */
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void srv_wake(void)
{
    char b = 1;
    ssize_t r = write(srv.wake[1], &b, 1);

    (void)r;
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
}

static void conn_read(struct conn *c, const struct tgt *t)
{
    ssize_t n = read(c->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);

    if (n == -1 && errno == EAGAIN)
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (t->mode == T_SILENT) {
        c->len = 0;
        return;
    }
    if (strstr(c->req, "\r\n\r\n")) {
        size_t len = strlen(t->resp), off = 0;

        /* blocking: the answers of the size tests exceed a socket buffer, and the checker
         * reads on its own thread (or closes: EPIPE) */
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
        while (off < len) {
            ssize_t w = send(c->fd, t->resp + off, len - off, MSG_NOSIGNAL);

            if (w <= 0)
                break;
            off += (size_t)w;
        }
        conn_close(c);
    }
}

static void srv_accept(int i)
{
    struct tgt *t = &srv.t[i];

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c = NULL;
        uint16_t port;

        if (fd == -1)
            return;
        if (t->accepts < MAX_ACCEPTS)
            t->accept_ms[t->accepts] = now_ms();
        t->accepts++;
        sl_addr_from_sockaddr((struct sockaddr *)&ss, &t->peer, &port);
        for (int k = 0; k < MAX_CONN && !c; k++)
            if (srv.c[k].fd == -1)
                c = &srv.c[k];
        if (t->mode == T_CLOSE || !c) {
            close(fd);
            continue;
        }
        *c = (struct conn){.fd = fd, .t = i, .gen = t->gen};
    }
}

static void *srv_main(void *arg)
{
    static struct pollfd p[1 + MAX_TGT + MAX_CONN];
    static int who[1 + MAX_TGT + MAX_CONN]; /* target index, or MAX_TGT + conn index */
    static unsigned gens[1 + MAX_TGT + MAX_CONN];

    (void)arg;
    while (!atomic_load(&srv.stop)) {
        nfds_t n = 1;
        char junk[64];

        p[0] = (struct pollfd){.fd = srv.wake[0], .events = POLLIN};
        pthread_mutex_lock(&srv.mu);
        for (int i = 0; i < MAX_CONN; i++) { /* a closed target's connections go */
            struct conn *c = &srv.c[i];

            if (c->fd != -1 && c->gen != srv.t[c->t].gen)
                conn_close(c);
        }
        for (int i = 0; i < MAX_TGT; i++) {
            if (srv.t[i].lfd != -1) {
                who[n] = i;
                gens[n] = srv.t[i].gen;
                p[n++] = (struct pollfd){.fd = srv.t[i].lfd, .events = POLLIN};
            }
        }
        for (int i = 0; i < MAX_CONN; i++) {
            if (srv.c[i].fd != -1) {
                who[n] = MAX_TGT + i;
                p[n++] = (struct pollfd){.fd = srv.c[i].fd, .events = POLLIN};
            }
        }
        pthread_mutex_unlock(&srv.mu);
        if (poll(p, n, 1000) <= 0)
            continue;
        if (p[0].revents && read(srv.wake[0], junk, sizeof(junk)) < 0)
            continue;
        pthread_mutex_lock(&srv.mu);
        /* connections first: accepting may reuse a slot freed here */
        for (nfds_t k = 1; k < n; k++) {
            if (who[k] >= MAX_TGT && p[k].revents) {
                struct conn *c = &srv.c[who[k] - MAX_TGT];

                if (c->fd != -1)
                    conn_read(c, &srv.t[c->t]);
            }
        }
        for (nfds_t k = 1; k < n; k++) {
            /* the test may have closed it meanwhile (and its fd number be reused) */
            if (who[k] < MAX_TGT && p[k].revents && srv.t[who[k]].gen == gens[k] &&
                srv.t[who[k]].lfd != -1)
                srv_accept(who[k]);
        }
        pthread_mutex_unlock(&srv.mu);
    }
    return NULL;
}

static int listen_on(uint16_t port, uint16_t *out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    assert_int_not_equal(fd, -1);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
        fail_msg("bind 127.0.0.1:%u: %s", port, strerror(errno));
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *out = ntohs(sa.sin_port);
    return fd;
}

/* A listening target; returns its index. <resp> must outlive it. */
static int tgt_open(enum tmode mode, const char *resp)
{
    for (int i = 0; i < MAX_TGT; i++) {
        struct tgt *t = &srv.t[i];

        if (t->lfd != -1 || t->port)
            continue;
        pthread_mutex_lock(&srv.mu);
        t->mode = mode;
        t->resp = resp;
        t->accepts = 0;
        t->lfd = listen_on(0, &t->port);
        pthread_mutex_unlock(&srv.mu);
        srv_wake();
        return i;
    }
    fail_msg("no free target slot");
    return -1;
}

/* Stops target <i>: its port refuses connects until tgt_reopen. */
static void tgt_close(int i)
{
    pthread_mutex_lock(&srv.mu);
    if (srv.t[i].lfd != -1)
        close(srv.t[i].lfd);
    srv.t[i].lfd = -1;
    srv.t[i].gen++;
    pthread_mutex_unlock(&srv.mu);
    srv_wake();
}

static void tgt_reopen(int i)
{
    uint16_t port;

    pthread_mutex_lock(&srv.mu);
    srv.t[i].lfd = listen_on(srv.t[i].port, &port);
    pthread_mutex_unlock(&srv.mu);
    srv_wake();
}

/* A port nothing listens on. */
static uint16_t closed_port(void)
{
    int i = tgt_open(T_CLOSE, NULL);

    tgt_close(i);
    return srv.t[i].port;
}

static unsigned tgt_accepts(int i)
{
    unsigned n;

    pthread_mutex_lock(&srv.mu);
    n = srv.t[i].accepts;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

static int srv_start(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_TGT; i++)
        srv.t[i].lfd = -1;
    for (int i = 0; i < MAX_CONN; i++)
        srv.c[i].fd = -1;
    if (pipe2(srv.wake, O_NONBLOCK | O_CLOEXEC) == -1)
        return -1;
    return pthread_create(&srv.thread, NULL, srv_main, NULL);
}

static int srv_stop(void **state)
{
    (void)state;
    atomic_store(&srv.stop, true);
    srv_wake();
    pthread_join(srv.thread, NULL);
    for (int i = 0; i < MAX_CONN; i++)
        if (srv.c[i].fd != -1)
            conn_close(&srv.c[i]);
    close(srv.wake[0]);
    close(srv.wake[1]);
    return 0;
}

/* ---- configs ------------------------------------------------------------------------------- */

struct gdef {
    const char *name;
    uint16_t ports[2]; /* 0 = none */
    unsigned interval, timeout, retries; /* timeout 0 = the interval */
    const char *http;  /* the httpHealthCheck object, or NULL */
    bool disabled;     /* healthCheckEnabled false */
};

#define SYNC_PORT 1

static struct sl_config *load(const char *json)
{
    struct sl_diags d;
    struct sl_config *c;

    sl_diags_init(&d, "t.json");
    c = sl_config_load_buffer("t.json", json, strlen(json), NULL, &d);
    if (!c) {
        fprintf(stderr, "%s\n", json);
        sl_diags_print(&d, stderr);
    }
    sl_diags_deinit(&d);
    assert_non_null(c);
    return c;
}

#define ADD(...)                                                                                 \
    do {                                                                                         \
        o += (size_t)snprintf(b + o, cap - o, __VA_ARGS__);                                      \
        assert_true(o < cap);                                                                    \
    } while (0)

/* The config of groups <g> (and the sync group), after <alb> (a JSON member, or NULL). */
static struct sl_config *build(const char *alb, const struct gdef *g, size_t n)
{
    size_t cap = 2048 + n * 1024, o = 0;
    char *b = malloc(cap);
    struct sl_config *c;

    assert_non_null(b);
    ADD("{%s%s\"targetGroups\": [{\"id\": \"tg-sync\", \"properties\": {\"name\": \"sync\", "
        "\"algorithm\": \"ROUND_ROBIN\", \"protocol\": \"HTTP\", \"targets\": [{\"ip\": "
        "\"127.0.0.1\", \"port\": %d, \"healthCheckEnabled\": false}]}}",
        alb ? alb : "", alb ? ", " : "", SYNC_PORT);
    for (size_t i = 0; i < n; i++) {
        ADD(", {\"id\": \"tg-%s\", \"properties\": {\"name\": \"%s\", \"algorithm\": "
            "\"ROUND_ROBIN\", \"protocol\": \"HTTP\", \"targets\": [", g[i].name, g[i].name);
        for (int k = 0, m = 0; k < 2; k++)
            if (g[i].ports[k])
                ADD("%s{\"ip\": \"127.0.0.1\", \"port\": %u, \"weight\": 1, "
                    "\"healthCheckEnabled\": %s}", m++ ? ", " : "", g[i].ports[k],
                    g[i].disabled ? "false" : "true");
        ADD("], \"healthCheck\": {\"checkInterval\": %u, \"checkTimeout\": %u, \"retries\": %u}",
            g[i].interval, g[i].timeout ? g[i].timeout : g[i].interval, g[i].retries);
        if (g[i].http)
            ADD(", \"httpHealthCheck\": %s", g[i].http);
        ADD("}}");
    }
    ADD("]}");
    c = load(b);
    free(b);
    return c;
}

/* The state of target <t> of group <g> (counting the groups passed to build, not sync). */
static struct sl_target_state *tstate(const struct sl_config *c, size_t g, size_t t)
{
    struct sl_target_state *st;

    assert_true(g + 1 < c->n_tgroups);
    assert_true(t < c->tgroups[g + 1].n_targets);
    st = sl_target_state_get(&c->tgroups[g + 1], &c->tgroups[g + 1].targets[t]);
    assert_non_null(st);
    return st;
}

/* ---- the checker under test ---------------------------------------------------------------- */

#define MAX_EVENTS 256

/* What the hook saw, in order. */
struct event_rec {
    struct sl_target_state *st;
    bool down;
    uint64_t check_fails, at_ms, at_wall;
};

static struct {
    atomic_uint n;
    struct event_rec ev[MAX_EVENTS];
} rec;

static struct sl_health *H;

static void hook(struct sl_target_state *st, bool down, void *arg)
{
    unsigned i = atomic_load(&rec.n);

    (void)arg; /* &rec; no cmocka asserts off the test's thread */
    if (i < MAX_EVENTS)
        rec.ev[i] = (struct event_rec){.st = st, .down = down,
                                       .check_fails = atomic_load(&st->check_fails),
                                       .at_ms = now_ms(), .at_wall = wall_ms()};
    atomic_store(&rec.n, i + 1); /* publishes ev[i] */
}

/* Hook calls about <st>, and the latest one in <last>. */
static unsigned hooked(const struct sl_target_state *st, struct event_rec *last)
{
    unsigned n = 0, all = atomic_load(&rec.n);

    for (unsigned i = 0; i < all && i < MAX_EVENTS; i++) {
        if (rec.ev[i].st == st) {
            n++;
            if (last)
                *last = rec.ev[i];
        }
    }
    return n;
}

/* Hands <c> to the checker and waits until its thread has taken it. Drops the caller's ref. */
static void apply(struct sl_config *c)
{
    struct sl_target_state *sync = sl_target_state_get(&c->tgroups[0], &c->tgroups[0].targets[0]);

    assert_non_null(sync);
    atomic_store(&sync->down, true);
    assert_int_equal(sl_health_apply(H, c), 0);
    sl_config_unref(c);
    WAIT_STEP(!atomic_load(&sync->down), WAIT_MS, 1);
}

static int setup(void **state)
{
    (void)state;
    atomic_store(&rec.n, 0);
    H = sl_health_start(hook, &rec);
    return H ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sl_health_stop(H);
    H = NULL;
    for (int i = 0; i < MAX_TGT; i++) {
        tgt_close(i);
        srv.t[i].port = 0;
    }
    sl_target_states_free();
    return 0;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_result_str(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(sl_check_result_str(SL_CHECK_NONE, 0, buf), "not checked");
    assert_string_equal(sl_check_result_str(SL_CHECK_OK, 0, buf), "ok");
    assert_string_equal(sl_check_result_str(SL_CHECK_REFUSED, 0, buf), "refused");
    assert_string_equal(sl_check_result_str(SL_CHECK_TIMEOUT, 0, buf), "timeout");
    assert_string_equal(sl_check_result_str(SL_CHECK_RESET, 0, buf), "reset");
    assert_string_equal(sl_check_result_str(SL_CHECK_ERROR, 0, buf), "connect error");
    assert_string_equal(sl_check_result_str(SL_CHECK_STATUS, 426, buf), "status 426");
    assert_string_equal(sl_check_result_str(SL_CHECK_BODY, 0, buf), "body mismatch");
    assert_string_equal(sl_check_result_str(SL_CHECK_BAD_RESPONSE, 0, buf), "bad response");
}

/* 1. A listening target passes its TCP checks and stays UP. */
static void test_tcp_ok(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {srv.t[t].port}, 100, 0, 3, NULL, false};
    struct sl_config *c = build(NULL, &g, 1);
    struct sl_target_state *st = tstate(c, 0, 0);
    uint64_t before = wall_ms();

    (void)state;
    apply(c);
    WAIT_FOR(LD(st, checks) >= 3);
    assert_int_equal(LD(st, last_result), SL_CHECK_OK);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, check_fails), 0);
    assert_int_equal(LD(st, last_status), 0);
    assert_true(LD(st, last_check_ms) >= before && LD(st, last_check_ms) <= wall_ms());
    WAIT_FOR(tgt_accepts(t) >= 3); /* its accept may lag the checker's connect */
    assert_int_equal(hooked(st, NULL), 0);
}

/* 1b. sluice out of fds is not the target's fault: its checks cannot start, and with retries 1
 * a single failed verdict would mark it DOWN; it stays UP, with no check counted, and the
 * checks go on once fds are free again. */
static void test_own_fd_shortage(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {srv.t[t].port}, 100, 0, 1, NULL, false};
    struct sl_config *c = build(NULL, &g, 1);
    struct sl_target_state *st = tstate(c, 0, 0);
    struct rlimit old, low;
    int fill[64], n = 0, fd, result;
    uint64_t checks, checks_after;
    bool full, down;

    (void)state;
    apply(c);
    WAIT_FOR(LD(st, checks) >= 2);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free fd: the limit goes there */
    assert_true(fd >= 0);
    low = old;
    low.rlim_cur = (rlim_t)fd + 32;
    close(fd);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (n < 64 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fill[n++] = fd;
    full = n < 64 && errno == EMFILE;
    checks = LD(st, checks);
    usleep(600 * 1000); /* six intervals */
    down = LD(st, down);
    result = LD(st, last_result);
    checks_after = LD(st, checks);
    /* fds and limit back before any assertion: a failure must not starve the next tests */
    while (n > 0)
        close(fill[--n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(full);
    assert_false(down);
    assert_int_equal(result, SL_CHECK_OK);
    assert_true(checks_after <= checks + 1); /* one check may have been under way */
    WAIT_FOR(LD(st, checks) >= checks + 3);
    assert_false(LD(st, down));
}

/* 2. A closed port is DOWN after `retries` refused checks, and UP again after one success. */
static void test_tcp_down_up(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {srv.t[t].port}, 100, 0, 3, NULL, false};
    struct sl_config *c = build(NULL, &g, 1);
    struct sl_target_state *st = tstate(c, 0, 0);
    struct event_rec e;
    uint64_t t0, first_fail;

    (void)state;
    tgt_close(t);
    t0 = now_ms();
    apply(c);
    WAIT_STEP(LD(st, check_fails) >= 1, WAIT_MS, 1);
    first_fail = LD(st, last_check_ms); /* the next check is 100 ms away */
    assert_false(LD(st, down));
    WAIT_STEP(hooked(st, &e) == 1, WAIT_MS, 1); /* the hook comes right after the change */
    assert_true(LD(st, down));
    assert_int_equal(LD(st, down_result), SL_CHECK_REFUSED);
    assert_int_equal(LD(st, last_result), SL_CHECK_REFUSED);
    assert_true(e.down);
    assert_int_equal(e.check_fails, 3); /* it took exactly `retries` failures */
    /* two more periods after the first failure (less timer slop), and at most the random
     * first offset plus three periods (plus generous slack) after the apply */
    assert_true(e.at_wall - first_fail >= 2 * 100 - 30);
    assert_true(e.at_ms - t0 <= 100 + 3 * 100 + 1000);
    assert_int_equal(LD(st, changes), 1);

    tgt_reopen(t);
    WAIT_FOR(hooked(st, &e) == 2);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, last_result), SL_CHECK_OK);
    assert_false(e.down);
    assert_int_equal(LD(st, changes), 2);
}

#define HTTP_CHECK(match, resp, extra)                                                           \
    "{\"path\": \"/health\", \"method\": \"GET\", \"matchType\": \"" match "\", "                \
    "\"response\": \"" resp "\"" extra "}"

static const char R200[] = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nhello ok world";
static const char R426[] = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nContent-Length: 0\r\n\r\n";
static const char R204[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
static const char RHEAD[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
/* "hello ok world" in three chunks, "ok" split across two of them */
static const char RCHUNKED[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n2;ext=1\r\n o\r\n7\r\nk world\r\n0\r\n\r\n";
static const char RCLOSE[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close";
static const char RSHORT[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
static const char RBAD[] = "HTTP/1.1 2x0 OK\r\n\r\n";

/* 3. STATUS_CODE: exact, regex, negate; a WebSocket-only target (426) fails a GET check. */
static void test_http_status(void **state)
{
    uint16_t p200 = srv.t[tgt_open(T_HTTP, R200)].port;
    uint16_t p426 = srv.t[tgt_open(T_HTTP, R426)].port;
    uint16_t p204 = srv.t[tgt_open(T_HTTP, R204)].port;
    uint16_t phead = srv.t[tgt_open(T_HTTP, RHEAD)].port;
    struct gdef g[] = {
        {"ok200", {p200}, 100, 0, 2, HTTP_CHECK("STATUS_CODE", "200", ""), false},
        {"ws426", {p426}, 100, 0, 2, HTTP_CHECK("STATUS_CODE", "200", ""), false},
        {"re204", {p204}, 100, 0, 2,
         HTTP_CHECK("STATUS_CODE", "^2\\\\d\\\\d$", ", \"regex\": true"), false},
        {"neg200", {p200}, 100, 0, 2, HTTP_CHECK("STATUS_CODE", "200", ", \"negate\": true"),
         false},
        {"head", {phead}, 100, 0, 2,
         "{\"method\": \"HEAD\", \"matchType\": \"STATUS_CODE\", \"response\": \"200\"}", false},
    };
    struct sl_config *c = build(NULL, g, SL_ARRAY_LEN(g));
    struct sl_target_state *ok = tstate(c, 0, 0), *ws = tstate(c, 1, 0), *re = tstate(c, 2, 0);
    struct sl_target_state *neg = tstate(c, 3, 0), *head = tstate(c, 4, 0);
    char buf[32];

    (void)state;
    apply(c);
    WAIT_FOR(LD(ws, down) && LD(neg, down) && LD(ok, checks) >= 3 && LD(re, checks) >= 3 &&
             LD(head, checks) >= 3);
    assert_false(LD(ok, down));
    assert_int_equal(LD(ok, last_result), SL_CHECK_OK);
    assert_int_equal(LD(ok, last_status), 200);
    assert_int_equal(LD(ok, check_fails), 0);

    assert_int_equal(LD(ws, down_result), SL_CHECK_STATUS);
    assert_int_equal(LD(ws, last_status), 426);
    assert_string_equal(sl_check_result_str(LD(ws, down_result), LD(ws, last_status), buf),
                        "status 426");

    assert_false(LD(re, down));
    assert_int_equal(LD(re, last_result), SL_CHECK_OK);
    assert_int_equal(LD(re, last_status), 204);

    assert_int_equal(LD(neg, down_result), SL_CHECK_STATUS);
    assert_int_equal(LD(neg, last_status), 200);

    /* a HEAD answer announces a body it does not send: the check must not wait for it */
    assert_false(LD(head, down));
    assert_int_equal(LD(head, last_result), SL_CHECK_OK);
}

/* 4. RESPONSE_BODY: contains, mismatch, chunked (decoded), regex, close-delimited, and
 * answers cut short or malformed. */
static void test_http_body(void **state)
{
    uint16_t p200 = srv.t[tgt_open(T_HTTP, R200)].port;
    uint16_t pch = srv.t[tgt_open(T_HTTP, RCHUNKED)].port;
    uint16_t pclose = srv.t[tgt_open(T_HTTP, RCLOSE)].port;
    uint16_t pshort = srv.t[tgt_open(T_HTTP, RSHORT)].port;
    uint16_t pbad = srv.t[tgt_open(T_HTTP, RBAD)].port;
    struct gdef g[] = {
        {"contains", {p200}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "ok", ""), false},
        {"mismatch", {p200}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "nope", ""), false},
        {"chunked", {pch}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "o ok w", ""), false},
        {"regex", {p200}, 100, 0, 2,
         HTTP_CHECK("RESPONSE_BODY", "h.llo\\\\s+ok", ", \"regex\": true"), false},
        {"anchored", {p200}, 100, 0, 2,
         HTTP_CHECK("RESPONSE_BODY", "^ok", ", \"regex\": true"), false},
        {"close", {pclose}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "until close", ""), false},
        {"short", {pshort}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "short", ""), false},
        {"bad", {pbad}, 100, 0, 2, HTTP_CHECK("RESPONSE_BODY", "OK", ""), false},
    };
    struct sl_config *c = build(NULL, g, SL_ARRAY_LEN(g));
    struct sl_target_state *st[SL_ARRAY_LEN(g)];

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(g); i++)
        st[i] = tstate(c, i, 0);
    apply(c);
    WAIT_FOR(LD(st[0], checks) >= 3 && LD(st[1], down) && LD(st[2], checks) >= 3 &&
             LD(st[3], checks) >= 3 && LD(st[4], down) && LD(st[5], checks) >= 3 &&
             LD(st[6], down) && LD(st[7], down));
    assert_false(LD(st[0], down));
    assert_int_equal(LD(st[0], last_result), SL_CHECK_OK);
    assert_int_equal(LD(st[1], down_result), SL_CHECK_BODY);
    assert_int_equal(LD(st[1], last_status), 200);
    assert_false(LD(st[2], down));
    assert_int_equal(LD(st[2], last_result), SL_CHECK_OK);
    assert_false(LD(st[3], down));
    assert_int_equal(LD(st[3], last_result), SL_CHECK_OK);
    assert_int_equal(LD(st[4], down_result), SL_CHECK_BODY);
    assert_false(LD(st[5], down));
    assert_int_equal(LD(st[5], last_result), SL_CHECK_OK);
    assert_int_equal(LD(st[6], down_result), SL_CHECK_RESET);
    assert_int_equal(LD(st[7], down_result), SL_CHECK_BAD_RESPONSE);
}

/* Answers beyond the limits: a head over 64 KiB is a bad response; a body is matched on its
 * first 64 KiB only. */
static void test_http_limits(void **state)
{
    /* static: the server thread may still be sending them when the test ends */
    static char bighead[100 * 1024], bigbody[100 * 1024];
    enum { BIG = sizeof(bighead) };
    int n;

    (void)state;
    n = snprintf(bighead, BIG, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(bighead + n, 'a', 70 * 1024);
    strcpy(bighead + n + 70 * 1024, "\r\nContent-Length: 0\r\n\r\n");
    n = snprintf(bigbody, BIG, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nfirst",
                 80 * 1024);
    memset(bigbody + n, 'b', 80 * 1024 - 10);
    strcpy(bigbody + n + 80 * 1024 - 10, "late!");

    uint16_t phead = srv.t[tgt_open(T_HTTP, bighead)].port;
    uint16_t pbody = srv.t[tgt_open(T_HTTP, bigbody)].port;
    struct gdef g[] = {
        {"head", {phead}, 100, 0, 1, HTTP_CHECK("STATUS_CODE", "200", ""), false},
        {"early", {pbody}, 100, 0, 1, HTTP_CHECK("RESPONSE_BODY", "first", ""), false},
        {"late", {pbody}, 100, 0, 1, HTTP_CHECK("RESPONSE_BODY", "late!", ""), false},
    };
    struct sl_config *c = build(NULL, g, 3);
    struct sl_target_state *head = tstate(c, 0, 0), *early = tstate(c, 1, 0);
    struct sl_target_state *late = tstate(c, 2, 0);

    apply(c);
    WAIT_FOR(LD(head, down) && LD(late, down) && LD(early, checks) >= 3);
    assert_int_equal(LD(head, down_result), SL_CHECK_BAD_RESPONSE);
    assert_int_equal(LD(late, down_result), SL_CHECK_BODY);
    assert_false(LD(early, down));
    assert_int_equal(LD(early, last_result), SL_CHECK_OK);
}

/* 5. Silence is a TIMEOUT (bounded by checkTimeout); a close right after accept a RESET. */
static void test_http_timeout_reset(void **state)
{
    int ts = tgt_open(T_SILENT, NULL);
    uint16_t psilent = srv.t[ts].port;
    uint16_t pclose = srv.t[tgt_open(T_CLOSE, NULL)].port;
    struct gdef g[] = {
        {"silent", {psilent}, 1000, 200, 1, HTTP_CHECK("STATUS_CODE", "200", ""), false},
        {"closer", {pclose}, 100, 0, 1, HTTP_CHECK("STATUS_CODE", "200", ""), false},
    };
    struct sl_config *c = build(NULL, g, 2);
    struct sl_target_state *silent = tstate(c, 0, 0), *closer = tstate(c, 1, 0);
    uint64_t accepted;

    (void)state;
    apply(c);
    WAIT_FOR(tgt_accepts(ts) >= 1);
    accepted = now_ms();
    WAIT_STEP(LD(silent, down), WAIT_MS, 1);
    assert_int_equal(LD(silent, down_result), SL_CHECK_TIMEOUT);
    assert_int_equal(LD(silent, last_status), 0);
    /* the 200 ms timeout, not the 1000 ms interval */
    assert_true(now_ms() - accepted < 800);
    WAIT_FOR(LD(closer, down));
    assert_int_equal(LD(closer, down_result), SL_CHECK_RESET);
}

/* 6. healthCheckEnabled false: never checked, always UP, passive failures ignored. */
static void test_disabled(void **state)
{
    uint16_t port = closed_port();
    struct gdef g = {"off", {port}, 50, 0, 1, NULL, false};
    struct sl_config *on = build(NULL, &g, 1), *off;
    struct sl_target_state *st = tstate(on, 0, 0);
    uint64_t checks;

    (void)state;
    g.disabled = true;
    off = build(NULL, &g, 1);
    /* checked first: DOWN; then disabled: UP at once, and no more checks */
    apply(on);
    WAIT_FOR(LD(st, down));
    apply(off);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, last_result), SL_CHECK_NONE);
    checks = LD(st, checks);
    sleep_ms(300);
    assert_int_equal(LD(st, checks), checks);
    for (int i = 0; i < 5; i++)
        sl_health_passive_fail(st, SL_CHECK_REFUSED);
    sleep_ms(100);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, last_result), SL_CHECK_NONE);

    /* never checked from the start */
    g.name = "off2";
    off = build(NULL, &g, 1);
    st = tstate(off, 0, 0);
    apply(off);
    sl_health_passive_fail(st, SL_CHECK_REFUSED);
    sleep_ms(300);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, checks), 0);
    assert_int_equal(LD(st, check_fails), 0);
}

/* 7. Passive failures count as failed checks: `retries` of them make the target DOWN. The
 * one active check of the minute may come in between: a success resets the count. */
static void test_passive(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {srv.t[t].port}, 60000, 0, 3, NULL, false};
    struct sl_config *c = build(NULL, &g, 1);
    struct sl_target_state *st = tstate(c, 0, 0);
    struct event_rec e;
    uint64_t checks;

    (void)state;
    apply(c);
    sl_health_passive_fail(st, SL_CHECK_REFUSED);
    sl_health_passive_fail(st, SL_CHECK_REFUSED);
    WAIT_FOR(LD(st, check_fails) == 2);
    assert_false(LD(st, down));
    assert_int_equal(LD(st, last_result), SL_CHECK_REFUSED);
    checks = LD(st, checks);
    sl_health_passive_fail(st, SL_CHECK_TIMEOUT);
    WAIT_FOR(LD(st, check_fails) == 3);
    if (!LD(st, down)) {
        assert_int_not_equal(LD(st, checks), checks); /* only a success in between excuses it */
        for (int i = 0; i < 3; i++)
            sl_health_passive_fail(st, SL_CHECK_TIMEOUT);
    }
    WAIT_FOR(hooked(st, &e) == 1);
    assert_true(LD(st, down));
    assert_int_equal(LD(st, down_result), SL_CHECK_TIMEOUT);
    assert_int_equal(LD(st, last_result), SL_CHECK_TIMEOUT);
    assert_true(e.down);
    assert_int_equal(LD(st, last_status), 0);
}

/* 8. One target in two groups: one state each, each group's check. */
static void test_two_groups(void **state)
{
    uint16_t port = srv.t[tgt_open(T_HTTP, R200)].port;
    struct gdef g[] = {
        {"http", {port}, 100, 0, 2, HTTP_CHECK("STATUS_CODE", "500", ""), false},
        {"tcp", {port}, 100, 0, 2, NULL, false},
    };
    struct sl_config *c = build(NULL, g, 2);
    struct sl_target_state *http = tstate(c, 0, 0), *tcp = tstate(c, 1, 0);

    (void)state;
    assert_ptr_not_equal(http, tcp);
    apply(c);
    WAIT_FOR(LD(http, down) && LD(tcp, checks) >= 3);
    assert_int_equal(LD(http, down_result), SL_CHECK_STATUS);
    assert_int_equal(LD(http, last_status), 200);
    assert_false(LD(tcp, down));
    assert_int_equal(LD(tcp, last_result), SL_CHECK_OK);
    assert_int_equal(LD(tcp, last_status), 0);
}

/* 9. Reconcile: an equal config keeps the checker (and the state DOWN); changed settings
 * start over from UP; a removed target is no longer checked. */
static void test_reconcile(void **state)
{
    uint16_t dead = closed_port();
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {dead, srv.t[t].port}, 100, 0, 2, NULL, false};
    struct sl_config *a = build(NULL, &g, 1), *b, *cc, *d;
    struct sl_target_state *st = tstate(a, 0, 0), *live = tstate(a, 0, 1);
    uint64_t n, applied_wall;

    (void)state;
    b = build(NULL, &g, 1);
    g.interval = 150;
    g.retries = 3;
    cc = build(NULL, &g, 1);
    g.ports[0] = 0;
    d = build(NULL, &g, 1);

    apply(a);
    WAIT_FOR(LD(st, down));
    n = LD(st, checks);
    apply(b); /* the same settings in a new snapshot */
    assert_true(LD(st, down));
    WAIT_FOR(LD(st, checks) >= n + 3);
    assert_true(LD(st, down));
    assert_int_equal(LD(st, changes), 1);

    applied_wall = wall_ms();
    apply(cc); /* another interval: a new checker, the state starts over */
    assert_false(LD(st, down));
    /* its first check may come at once, but not a DOWN: that takes 3 */
    assert_true((LD(st, last_result) == SL_CHECK_NONE && LD(st, last_check_ms) == 0) ||
                LD(st, last_check_ms) >= applied_wall);
    WAIT_FOR(LD(st, down));
    assert_int_equal(LD(st, changes), 2);

    apply(d); /* the dead target removed */
    n = LD(st, checks);
    uint64_t m = LD(live, checks);

    sleep_ms(400);
    assert_int_equal(LD(st, checks), n);
    assert_true(LD(live, checks) >= m + 2);
}

/* 10. A hundred targets are first checked spread over the interval, not in one burst. */
static void test_jitter(void **state)
{
    enum { N = 100, IV = 1000 };
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef *g = calloc(N, sizeof(*g));
    char (*names)[16] = calloc(N, 16);
    unsigned buckets[10] = {0}, most = 0;
    uint64_t lo = UINT64_MAX, hi = 0, t0;

    (void)state;
    assert_non_null(g);
    assert_non_null(names);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "g%d", i);
        g[i] = (struct gdef){names[i], {srv.t[t].port}, IV, 0, 3, NULL, false};
    }
    struct sl_config *c = build(NULL, g, N);

    t0 = now_ms();
    apply(c);
    WAIT_FOR(tgt_accepts(t) >= N);
    pthread_mutex_lock(&srv.mu);
    for (int i = 0; i < N; i++) { /* all first checks come before any second one */
        uint64_t at = srv.t[t].accept_ms[i];

        lo = at < lo ? at : lo;
        hi = at > hi ? at : hi;
        buckets[(at - t0) * 10 / IV < 10 ? (at - t0) * 10 / IV : 9]++;
    }
    pthread_mutex_unlock(&srv.mu);
    for (int i = 0; i < 10; i++)
        most = buckets[i] > most ? buckets[i] : most;
    print_message("first checks of %d targets spread over %u ms, at most %u in 100 ms\n", N,
                  (unsigned)(hi - lo), most);
    assert_true(hi - lo > IV / 2);
    assert_true(most <= 35); /* uniform: ~10 per 100 ms */
    free(g);
    free(names);
}

/* 11. Checks come from the ALB's local lbPrivateIp. */
static void test_source_address(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"web", {srv.t[t].port}, 100, 0, 3, NULL, false};
    struct sl_config *c = build("\"applicationLoadBalancer\": {\"properties\": {\"name\": \"alb\", "
                                "\"listenerLan\": 1, \"targetLan\": 2, \"lbPrivateIps\": "
                                "[\"127.0.0.2/8\"]}}", &g, 1);
    struct sl_addr want, peer;
    char buf[SL_ADDR_STRLEN];

    (void)state;
    apply(c);
    WAIT_FOR(tgt_accepts(t) >= 1);
    pthread_mutex_lock(&srv.mu);
    peer = srv.t[t].peer;
    pthread_mutex_unlock(&srv.mu);
    assert_int_equal(sl_addr_parse("127.0.0.2", &want), 0);
    assert_string_equal(sl_addr_format(&peer, buf), "127.0.0.2");
    assert_true(sl_addr_equal(&peer, &want));
}

/* 12. A flapping target changes state many times but logs only a few lines. */
static void test_flapping(void **state)
{
    int t = tgt_open(T_CLOSE, NULL);
    struct gdef g = {"flappy", {srv.t[t].port}, 20, 0, 1, NULL, false};
    struct sl_config *c = build(NULL, &g, 1);
    struct sl_target_state *st = tstate(c, 0, 0);
    FILE *log = tmpfile();
    char port[16], line[1024];
    int saved, lines = 0;
    bool open = true;

    (void)state;
    assert_non_null(log);
    snprintf(port, sizeof(port), ":%u ", srv.t[t].port);
    fflush(stderr);
    saved = dup(2);
    assert_int_not_equal(saved, -1);
    assert_int_not_equal(dup2(fileno(log), 2), -1);
    apply(c);
    for (uint64_t end = now_ms() + 1500; now_ms() < end; sleep_ms(60)) {
        if (open)
            tgt_close(t);
        else
            tgt_reopen(t);
        open = !open;
    }
    sl_health_stop(H); /* no more lines */
    H = NULL;
    dup2(saved, 2);
    close(saved);
    rewind(log);
    while (fgets(line, sizeof(line), log)) {
        if (strstr(line, port)) {
            lines++;
            fprintf(stderr, "  logged: %s", line);
        }
    }
    fclose(log);
    print_message("%u changes, %d log lines\n", (unsigned)LD(st, changes), lines);
    assert_true(LD(st, changes) >= 10);
    assert_true(hooked(st, NULL) == LD(st, changes)); /* the hook hears every one */
    assert_true(lines >= 2 && lines <= 6);
}

/* 13. Stopping right after an apply, and without one, leaks nothing (ASan, valgrind). */
static void test_stop_early(void **state)
{
    uint16_t port = srv.t[tgt_open(T_SILENT, NULL)].port;
    struct gdef g = {"web", {port}, 1, 0, 3, HTTP_CHECK("STATUS_CODE", "200", ""), false};

    (void)state;
    for (int i = 0; i < 20; i++) {
        struct sl_config *c = build(NULL, &g, 1);

        assert_int_equal(sl_health_apply(H, c), 0);
        assert_int_equal(sl_health_apply(H, c), 0); /* replaces the pending one */
        sl_config_unref(c);
        if (i % 2)
            sleep_ms(5); /* let a few checks be in flight */
        sl_health_stop(H);
        H = sl_health_start(hook, &rec);
        assert_non_null(H);
    }
    sl_health_stop(H);
    H = sl_health_start(hook, &rec);
    assert_non_null(H);
    /* one checker per process: a second one is refused */
    assert_null(sl_health_start(NULL, NULL));
    sl_health_stop(H);
    H = NULL;
    sl_health_stop(NULL);
    /* no checker: the passive signal is a no-op */
    sl_health_passive_fail(NULL, SL_CHECK_REFUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_str),
        cmocka_unit_test_setup_teardown(test_tcp_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_fd_shortage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_down_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_timeout_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jitter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_early, setup, teardown),
    };

    return cmocka_run_group_tests(tests, srv_start, srv_stop);
}
