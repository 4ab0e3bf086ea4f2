/* Health checks (see health.h): one thread with its own event_base, one struct checker per
 * target state. A checker owns a periodic timer and, while a check is in flight, a socket with
 * an I/O event and a deadline. The main thread hands configs over through a mutex-protected
 * slot and an eventfd; workers report failed connects through the state's passive counter and
 * the same eventfd. Nothing here blocks: sockets are non-blocking, addresses are literal.
 *
 * The checker thread is the only writer of the health fields of struct sl_target_state and
 * touches nothing else a worker owns. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/regex.h"
#include "sluice/source.h"

/* An HTTP check reads at most a head of SL_HTTP_MAX_HEAD and BODY_MAX of body: a body match
 * beyond that looks at the first BODY_MAX bytes only (for a chunked body, of the body as sent,
 * framing included), which is plenty for a health page and bounds a check's memory. */
#define BODY_MAX (64 * 1024)
#define BUF_MAX (SL_HTTP_MAX_HEAD + BODY_MAX)
#define BUF_INIT 4096
/* A target that changes state FLAP_CHANGES times within FLAP_WINDOW_MS is flapping: its
 * changes are summarised at most once per window instead of logged one by one. */
#define FLAP_WINDOW_MS 60000
#define FLAP_CHANGES 4

enum phase { PH_IDLE = 0, PH_CONNECT, PH_SEND, PH_RECV };

struct checker {
    struct sl_health *h;
    struct sl_target_state *st;
    const struct sl_target_group *group; /* in h->cfg: repointed on every apply */
    const struct sl_target *target;
    struct event timer;    /* the next check's start */
    struct event deadline; /* the check in flight's timeout */
    struct event io;       /* on fd, assigned per check */
    uint64_t next_ms;      /* monotonic: when the next check starts */
    int fd;                /* -1: no check in flight */
    enum phase phase;
    uint32_t fails;        /* consecutive failures */
    bool short_logged;     /* the last check could not start for want of fds/ports: said */
    int status;            /* HTTP status of the check in flight; 0 = none (yet) */
    /* HTTP: the request, then the answer */
    char *buf;
    size_t len, cap, sent;
    size_t head_len;       /* 0 = the head is not complete yet */
    size_t scanned;        /* end of what the body scanner has seen */
    bool chunked;
    struct sl_http_body body;
    /* flapping */
    uint64_t changes[FLAP_CHANGES]; /* monotonic ms of the latest changes, a ring */
    unsigned change_pos;
    uint64_t last_change_ms;
    bool flapping;
    unsigned unlogged;     /* changes not logged since line_ms, while flapping */
    uint64_t line_ms;      /* the last flapping line */
};

struct sl_health {
    pthread_t thread;
    struct event_base *base;
    struct event kick; /* on efd: a config, a stop or a passive failure */
    int efd;
    atomic_bool stop;
    pthread_mutex_t lock;
    struct sl_config *pending; /* under lock: the config to apply next */
    /* The checker thread's own from here on. */
    struct sl_config *cfg;     /* what the checkers point into */
    struct sl_source src;
    struct checker **checkers; /* sorted by state pointer */
    size_t n_checkers;
    sl_regex_md *md;
    uint64_t rng;
    sl_health_hook hook;
    void *hook_arg;
};

/* The passive signal finds the checker here; NULL while none runs. */
static _Atomic(struct sl_health *) the_health;

static void add_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    event_add(ev, &tv);
}

static void kick(struct sl_health *h)
{
    uint64_t one = 1;
    ssize_t r = write(h->efd, &one, sizeof(one));

    (void)r; /* only fails if the counter would overflow: it is read long before */
}

/* The loader rejects an interval of 0; the guard only keeps the arithmetic defined. */
static uint32_t interval_ms(const struct sl_target_group *g)
{
    return g->health.check_interval_ms ? g->health.check_interval_ms : 1;
}

/* The timeout bounds the whole check and never exceeds the interval, so at most one check per
 * target is in flight. */
static uint32_t timeout_ms(const struct sl_target_group *g)
{
    uint32_t iv = interval_ms(g), t = g->health.check_timeout_ms;

    return t && t < iv ? t : iv;
}

static const char *group_name(const struct sl_target_group *g)
{
    return g->name ? g->name : g->id ? g->id : "?";
}

const char *sl_check_result_str(enum sl_check_result r, int status, char *buf)
{
    switch (r) {
    case SL_CHECK_NONE:
        return "not checked";
    case SL_CHECK_OK:
        return "ok";
    case SL_CHECK_REFUSED:
        return "refused";
    case SL_CHECK_TIMEOUT:
        return "timeout";
    case SL_CHECK_RESET:
        return "reset";
    case SL_CHECK_ERROR:
        return "connect error";
    case SL_CHECK_STATUS:
        snprintf(buf, 32, "status %d", status);
        return buf;
    case SL_CHECK_BODY:
        return "body mismatch";
    case SL_CHECK_BAD_RESPONSE:
        return "bad response";
    }
    return "unknown";
}

static enum sl_check_result errno_result(int e)
{
    switch (e) {
    case 0:
        return SL_CHECK_OK;
    case ECONNREFUSED:
        return SL_CHECK_REFUSED;
    case ETIMEDOUT:
        return SL_CHECK_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
        return SL_CHECK_RESET;
    default:
        return SL_CHECK_ERROR; /* unreachable, no source address, out of fds, ... */
    }
}

/* ------------------------------------------------------------------------------------------ */
/* State changes and their log lines */

/* "target 10.0.0.1:80 in group "web"" into <buf>. */
static const char *target_name(const struct checker *c, char *buf, size_t len)
{
    char ap[SL_ADDR_STRLEN + 8];

    snprintf(buf, len, "target %s in group \"%s\"",
             sl_addr_format_port(&c->target->addr, c->target->port, ap), group_name(c->group));
    return buf;
}

/* "DOWN (refused)" or "UP" */
static const char *state_now(const struct checker *c, char *buf, size_t len)
{
    char rb[32];
    int r = atomic_load(&c->st->down_result);

    if (!atomic_load(&c->st->down))
        return "UP";
    snprintf(buf, len, "DOWN (%s)",
             sl_check_result_str((enum sl_check_result)r, atomic_load(&c->st->down_status), rb));
    return buf;
}

static void log_change(const struct checker *c, bool down, enum sl_check_result r, bool passive)
{
    const struct sl_http_health_check *hc = c->group->http_check;
    char who[256], rb[32], how[160];

    target_name(c, who, sizeof(who));
    if (!down) {
        sl_log(SL_LOG_INFO, "%s is UP: check ok", who);
        return;
    }
    if (passive)
        snprintf(how, sizeof(how), "passive: connects while proxying failed");
    else if (hc)
        snprintf(how, sizeof(how), "%u failed check%s in a row, HTTP %s %s", c->fails,
                 c->fails == 1 ? "" : "s", sl_http_method_name(hc->method), hc->path);
    else
        snprintf(how, sizeof(how), "%u failed check%s in a row, TCP connect", c->fails,
                 c->fails == 1 ? "" : "s");
    sl_log(SL_LOG_WARN, "%s is DOWN: %s (%s)", who,
           sl_check_result_str(r, atomic_load(&c->st->last_status), rb), how);
}

static unsigned flap_count(const struct checker *c, uint64_t now)
{
    unsigned n = 0;

    for (unsigned i = 0; i < FLAP_CHANGES; i++)
        n += c->changes[i] && now - c->changes[i] < FLAP_WINDOW_MS;
    return n;
}

/* While flapping: the summary once a window has passed since the last line, and back to
 * per-change lines once a whole window passes without a change. */
static void flap_tick(struct checker *c, uint64_t now)
{
    char who[256], sb[64];

    if (!c->flapping)
        return;
    if (c->unlogged && now - c->line_ms >= FLAP_WINDOW_MS) {
        sl_log(SL_LOG_WARN, "%s flapped %u times in the last %u s; now %s",
               target_name(c, who, sizeof(who)), c->unlogged,
               (unsigned)((now - c->line_ms) / 1000), state_now(c, sb, sizeof(sb)));
        c->unlogged = 0;
        c->line_ms = now;
    }
    if (now - c->last_change_ms >= FLAP_WINDOW_MS)
        c->flapping = false;
}

static void change(struct checker *c, bool down, enum sl_check_result r, bool passive)
{
    struct sl_health *h = c->h;
    uint64_t now = sl_clock_ms(CLOCK_MONOTONIC);
    char who[256], sb[64];

    /* down_result first: whoever sees down also sees why */
    if (down) {
        atomic_store(&c->st->down_status, passive ? 0 : c->status);
        atomic_store(&c->st->down_result, (int)r);
    }
    atomic_store(&c->st->down, down);
    atomic_fetch_add(&c->st->changes, 1);

    c->changes[c->change_pos++ % FLAP_CHANGES] = now;
    c->last_change_ms = now;
    if (c->flapping) {
        c->unlogged++;
        flap_tick(c, now);
    } else if (flap_count(c, now) >= FLAP_CHANGES) {
        c->flapping = true;
        c->unlogged = 0;
        c->line_ms = now;
        sl_log(SL_LOG_WARN, "%s is flapping: %u state changes in the last %d s; now %s; further "
               "changes are summarised once a minute", target_name(c, who, sizeof(who)),
               flap_count(c, now), FLAP_WINDOW_MS / 1000, state_now(c, sb, sizeof(sb)));
    } else {
        log_change(c, down, r, passive);
    }
    if (h->hook)
        h->hook(c->st, down, h->hook_arg);
}

/* Counts <n> results <r> (n > 1 only for passive failures: n in a row) towards fall/rise. */
static void account(struct checker *c, enum sl_check_result r, unsigned n, bool passive)
{
    uint32_t need = c->group->health.retries ? c->group->health.retries : 1;

    if (r == SL_CHECK_OK) {
        c->fails = 0;
        if (atomic_load(&c->st->down))
            change(c, false, r, passive);
    } else {
        c->fails = c->fails > UINT32_MAX - n ? UINT32_MAX : c->fails + n;
        if (c->fails >= need && !atomic_load(&c->st->down))
            change(c, true, r, passive);
    }
    flap_tick(c, sl_clock_ms(CLOCK_MONOTONIC));
}

/* ------------------------------------------------------------------------------------------ */
/* One check */

static void check_end(struct checker *c)
{
    if (c->fd != -1) {
        event_del(&c->io);
        close(c->fd);
        c->fd = -1;
    }
    event_del(&c->deadline);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = c->sent = c->head_len = 0;
    c->phase = PH_IDLE;
}

static void check_done(struct checker *c, enum sl_check_result r)
{
    struct sl_target_state *st = c->st;

    check_end(c);
    atomic_store(&st->last_result, (int)r);
    atomic_store(&st->last_status, c->status);
    atomic_store(&st->last_check_ms, sl_clock_ms(CLOCK_REALTIME));
    atomic_fetch_add(&st->checks, 1);
    if (r != SL_CHECK_OK)
        atomic_fetch_add(&st->check_fails, 1);
    account(c, r, 1, false);
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

static void io_wait(struct checker *c, short what)
{
    event_del(&c->io);
    event_assign(&c->io, c->h->base, c->fd, what, io_cb, c);
    event_add(&c->io, NULL);
}

static int request_build(struct checker *c)
{
    static const char fmt[] = "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health-check\r\n"
                              "Accept: */*\r\n%sConnection: close\r\n\r\n";
    const struct sl_http_health_check *hc = c->group->http_check;
    const char *m = sl_http_method_name(hc->method), *path = hc->path ? hc->path : "/";
    /* a body-taking method without a length is refused (411) by some servers */
    const char *cl = hc->method == SL_METHOD_POST || hc->method == SL_METHOD_PUT ||
                     hc->method == SL_METHOD_PATCH ? "Content-Length: 0\r\n" : "";
    /* A target that expects PROXY protocol on every connection gets it on checks too (as
     * haproxy does by default): v2's LOCAL command, v1's UNKNOWN, both meaning "the proxy's
     * own connection, no client behind it". */
    static const char v2_local[16] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    static const char v1_unknown[] = "PROXY UNKNOWN\r\n";
    const char *pp = NULL;
    size_t pp_len = 0;
    char host[SL_ADDR_STRLEN + 8];
    int n;

    if (c->target->proxy_protocol == SL_PROXY_V1) {
        pp = v1_unknown;
        pp_len = sizeof(v1_unknown) - 1;
    } else if (c->target->proxy_protocol != SL_PROXY_NONE) {
        pp = v2_local;
        pp_len = sizeof(v2_local);
    }
    sl_addr_format_port(&c->target->addr, c->target->port, host);
    n = snprintf(NULL, 0, fmt, m, path, host, cl);
    c->cap = pp_len + (size_t)n + 1 > BUF_INIT ? pp_len + (size_t)n + 1 : BUF_INIT;
    c->buf = malloc(c->cap);
    if (!c->buf)
        return -1;
    if (pp)
        memcpy(c->buf, pp, pp_len);
    c->len = pp_len + (size_t)snprintf(c->buf + pp_len, c->cap - pp_len, fmt, m, path, host, cl);
    c->sent = 0;
    return 0;
}

/* Decodes chunked framing in place; returns the data's length. The scanner has checked the
 * syntax of everything here, so this only has to stop where the bytes (perhaps cut at
 * BODY_MAX) end. */
static size_t dechunk(char *p, size_t n)
{
    size_t i = 0, out = 0;

    while (i < n) {
        uint64_t size = 0;
        size_t take;

        for (; i < n; i++) {
            char ch = p[i];
            int v = ch >= '0' && ch <= '9' ? ch - '0' : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f'
                                                     ? (ch | 0x20) - 'a' + 10 : -1;

            if (v < 0)
                break;
            size = size << 4 | (uint64_t)v;
        }
        while (i < n && p[i] != '\n') /* extensions */
            i++;
        i++;
        if (size == 0 || i >= n)
            break;
        take = n - i < size ? n - i : (size_t)size;
        memmove(p + out, p + i, take);
        out += take;
        i += take + 2; /* CRLF */
    }
    return out;
}

/* The verdict on the answer: <body> is NULL for STATUS_CODE. */
static enum sl_check_result judge(struct checker *c, const char *body, size_t n)
{
    const struct sl_http_health_check *hc = c->group->http_check;
    bool match;

    int rx;

    if (hc->match_type == SL_MATCH_STATUS_CODE) {
        char code[16];

        n = (size_t)snprintf(code, sizeof(code), "%03d", c->status);
        if (!hc->regex) {
            match = c->status == (int)strtol(hc->response, NULL, 10);
        } else {
            rx = hc->re ? sl_regex_search(hc->re, code, n, c->h->md) : -1;
            if (rx == -1)
                return SL_CHECK_BAD_RESPONSE; /* no verdict: never a pass, even negated */
            match = rx == 1;
        }
    } else if (hc->regex) {
        rx = hc->re ? sl_regex_search(hc->re, body, n, c->h->md) : -1;
        if (rx == -1)
            return SL_CHECK_BAD_RESPONSE; /* a PCRE2 limit hit on this body */
        match = rx == 1;
    } else {
        match = memmem(body, n, hc->response, strlen(hc->response)) != NULL;
    }
    if (match != hc->negate)
        return SL_CHECK_OK;
    return hc->match_type == SL_MATCH_STATUS_CODE ? SL_CHECK_STATUS : SL_CHECK_BODY;
}

static void judge_body(struct checker *c, size_t end)
{
    char *b = c->buf + c->head_len;
    size_t n = end - c->head_len;

    if (n > BODY_MAX)
        n = BODY_MAX;
    if (c->chunked)
        n = dechunk(b, n);
    check_done(c, judge(c, b, n));
}

/* After new bytes (or the EOF): decides once the answer says enough. */
static void http_progress(struct checker *c, bool eof)
{
    const struct sl_http_health_check *hc = c->group->http_check;
    size_t used;
    int rc;

    if (!c->head_len) {
        struct sl_http_response r;

        for (;;) {
            rc = sl_http_parse_response(c->buf, c->len, hc->method == SL_METHOD_HEAD, &r);
            if (rc != SL_OK || r.status >= 200 || r.status == 101)
                break;
            /* an interim 1xx: the real answer follows */
            memmove(c->buf, c->buf + r.head_len, c->len - r.head_len);
            c->len -= r.head_len;
        }
        if (rc == SL_ERROR) {
            check_done(c, SL_CHECK_BAD_RESPONSE);
            return;
        }
        if (rc == SL_AGAIN) {
            if (eof)
                check_done(c, SL_CHECK_RESET);
            return;
        }
        c->status = r.status;
        if (hc->match_type == SL_MATCH_STATUS_CODE) {
            check_done(c, judge(c, NULL, 0));
            return;
        }
        c->head_len = c->scanned = r.head_len;
        c->chunked = r.body == SL_BODY_CHUNKED;
        sl_http_body_init(&c->body, r.body, r.content_length);
    }
    rc = sl_http_body_scan(&c->body, c->buf + c->scanned, c->len - c->scanned, &used);
    if (rc == SL_ERROR)
        check_done(c, SL_CHECK_BAD_RESPONSE);
    else if (rc == SL_OK)
        judge_body(c, c->scanned + used);
    else if (c->len - c->head_len >= BODY_MAX || (eof && c->body.kind == SL_BODY_CLOSE))
        judge_body(c, c->len);
    else if (eof)
        check_done(c, SL_CHECK_RESET);
    else
        c->scanned = c->len;
}

static void http_send(struct checker *c)
{
    while (c->sent < c->len) {
        ssize_t n = send(c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                io_wait(c, EV_WRITE);
            else
                check_done(c, errno_result(errno));
            return;
        }
        c->sent += (size_t)n;
    }
    c->len = 0;
    c->phase = PH_RECV;
    io_wait(c, EV_READ | EV_PERSIST);
}

static void http_recv(struct checker *c)
{
    ssize_t n;

    if (c->len == c->cap) {
        /* cannot be full at BUF_MAX: the head is refused or the body judged before that */
        size_t cap = c->cap * 2 < BUF_MAX ? c->cap * 2 : BUF_MAX;
        char *b = cap > c->cap ? realloc(c->buf, cap) : NULL;

        if (!b) {
            check_done(c, cap > c->cap ? SL_CHECK_ERROR : SL_CHECK_BAD_RESPONSE);
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            check_done(c, errno_result(errno));
        return;
    }
    c->len += (size_t)n;
    http_progress(c, n == 0);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct checker *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)what;
    switch (c->phase) {
    case PH_CONNECT:
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err || !c->group->http_check) {
            check_done(c, errno_result(err));
        } else if (request_build(c) == -1) {
            check_done(c, SL_CHECK_ERROR);
        } else {
            c->phase = PH_SEND;
            http_send(c);
        }
        break;
    case PH_SEND:
        http_send(c);
        break;
    case PH_RECV:
        http_recv(c);
        break;
    case PH_IDLE:
        break;
    }
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check_done(arg, SL_CHECK_TIMEOUT);
}

static void check_start(struct checker *c)
{
    c->status = 0;
    c->fd = sl_source_connect(&c->h->src, &c->target->addr, c->target->port, false);
    if (c->fd == -1) {
        int e = errno;

        if (sl_connect_err(e) != SL_ERR_RESOURCES) {
            check_done(c, errno_result(e));
            return;
        }
        /* Our shortage (fds, ports, memory), not the target's: no verdict, as for the
         * passive signal; said once until a check can start again. */
        if (!c->short_logged) {
            char buf[300];

            sl_log(SL_LOG_WARN,
                   "%s: check skipped: %s (sluice is short of resources; "
                   "the target's state stays as it was)",
                   target_name(c, buf, sizeof(buf)), strerror(e));
            c->short_logged = true;
        }
        return;
    }
    c->short_logged = false;
    c->phase = PH_CONNECT;
    event_assign(&c->io, c->h->base, c->fd, EV_WRITE, io_cb, c);
    event_add(&c->io, NULL);
    add_ms(&c->deadline, timeout_ms(c->group));
}

/* A fixed period from each check's start, not from its end: the first-check spread holds, and
 * a dead target is DOWN within retries x interval of its first failed check. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct checker *c = arg;
    uint64_t now = sl_clock_ms(CLOCK_MONOTONIC), iv = interval_ms(c->group);

    (void)fd;
    (void)what;
    if (c->fd != -1) /* timeout == interval, and the deadline lost the race */
        check_done(c, SL_CHECK_TIMEOUT);
    c->next_ms += iv;
    if (c->next_ms <= now) /* fell behind (the process was stopped): no catch-up burst */
        c->next_ms = now + iv;
    add_ms(&c->timer, c->next_ms - now);
    check_start(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Checkers and the config */

static struct checker *checker_new(struct sl_health *h)
{
    struct checker *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->h = h;
    c->fd = -1;
    event_assign(&c->timer, h->base, -1, 0, timer_cb, c);
    event_assign(&c->deadline, h->base, -1, 0, deadline_cb, c);
    return c;
}

static void checker_free(struct checker *c)
{
    check_end(c);
    event_del(&c->timer);
    free(c);
}

/* A fresh checker's state: UP and unchecked; the counters go on. */
static void state_reset(struct sl_target_state *st)
{
    atomic_store(&st->down, false);
    atomic_store(&st->last_result, SL_CHECK_NONE);
    atomic_store(&st->last_status, 0);
    atomic_store(&st->last_check_ms, 0);
    atomic_store(&st->down_result, SL_CHECK_NONE);
    atomic_store(&st->down_status, 0);
    atomic_store(&st->passive_pending, 0);
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether the check settings of <a> and <b> (from different snapshots) are the same. */
static bool same_check(const struct sl_target_group *a, const struct sl_target_group *b)
{
    const struct sl_http_health_check *x = a->http_check, *y = b->http_check;

    if (a->health.check_interval_ms != b->health.check_interval_ms ||
        a->health.check_timeout_ms != b->health.check_timeout_ms ||
        a->health.retries != b->health.retries)
        return false;
    if (!x || !y)
        return x == y;
    return x->method == y->method && x->match_type == y->match_type && x->regex == y->regex &&
           x->negate == y->negate && str_eq(x->path, y->path) && str_eq(x->response, y->response);
}

static struct checker *checker_find(struct checker **v, size_t n, const struct sl_target_state *st)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v[mid]->st == st)
            return v[mid];
        if ((uintptr_t)v[mid]->st < (uintptr_t)st)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* One checked target of the new config. */
struct want {
    struct sl_target_state *st;
    const struct sl_target_group *g;
    const struct sl_target *t;
    size_t order;
    struct checker *c;
    bool keep;
};

static int want_cmp(const void *a, const void *b)
{
    const struct want *x = a, *y = b;

    if (x->st != y->st)
        return (uintptr_t)x->st < (uintptr_t)y->st ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Makes the checkers match <cfg> (whose reference it takes over): same state and settings =
 * the same checker, kept with its timer and counts. Everything that can fail is done before
 * the first change, so on out-of-memory the previous set runs on untouched. */
static int reconcile(struct sl_health *h, struct sl_config *cfg)
{
    struct want *w = NULL;
    struct checker **v = NULL;
    size_t n = 0, m = 0;

    for (size_t i = 0; i < cfg->n_tgroups; i++)
        for (size_t j = 0; j < cfg->tgroups[i].n_targets; j++)
            n += cfg->tgroups[i].targets[j].health_check_enabled;
    w = calloc(n ? n : 1, sizeof(*w));
    v = calloc(n ? n : 1, sizeof(*v));
    if (!w || !v)
        goto oom;
    for (size_t i = 0; i < cfg->n_tgroups; i++) {
        const struct sl_target_group *g = &cfg->tgroups[i];

        for (size_t j = 0; j < g->n_targets; j++) {
            if (!g->targets[j].health_check_enabled)
                continue;
            w[m] = (struct want){.g = g, .t = &g->targets[j], .order = m};
            w[m].st = sl_target_state_get(g, &g->targets[j]);
            if (!w[m++].st)
                goto oom;
        }
    }
    /* one checker per state: a target listed twice in a group is checked once */
    qsort(w, m, sizeof(*w), want_cmp);
    n = m;
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (!m || w[m - 1].st != w[i].st)
            w[m++] = w[i];
    for (size_t i = 0; i < m; i++) {
        struct checker *old = checker_find(h->checkers, h->n_checkers, w[i].st);

        if (old && same_check(old->group, w[i].g)) {
            w[i].c = old;
            w[i].keep = true;
        } else if (!(w[i].c = checker_new(h))) {
            goto oom;
        }
    }

    /* commit */
    for (size_t i = 0; i < m; i++) {
        struct checker *c = v[i] = w[i].c;
        uint64_t off;

        c->group = w[i].g;
        c->target = w[i].t;
        if (w[i].keep)
            continue;
        c->st = w[i].st;
        state_reset(c->st);
        off = sl_xorshift64s(&h->rng) % interval_ms(c->group);
        c->next_ms = sl_clock_ms(CLOCK_MONOTONIC) + off;
        add_ms(&c->timer, off);
    }
    for (size_t i = 0; i < h->n_checkers; i++)
        if (checker_find(v, m, h->checkers[i]->st) != h->checkers[i])
            checker_free(h->checkers[i]);
    free(h->checkers);
    h->checkers = v;
    h->n_checkers = m;
    free(w);
    /* unchecked targets are always UP (unless the same state is checked after all) */
    for (size_t i = 0; i < cfg->n_tgroups; i++) {
        const struct sl_target_group *g = &cfg->tgroups[i];

        for (size_t j = 0; j < g->n_targets; j++) {
            struct sl_target_state *st;

            if (g->targets[j].health_check_enabled)
                continue;
            st = sl_target_state_get(g, &g->targets[j]);
            if (st && !checker_find(v, m, st))
                state_reset(st);
        }
    }
    sl_source_find(cfg, &h->src, false);
    sl_config_unref(h->cfg);
    h->cfg = cfg;
    return 0;
oom:
    for (size_t i = 0; w && i < m; i++)
        if (w[i].c && !w[i].keep)
            checker_free(w[i].c);
    free(w);
    free(v);
    sl_log(SL_LOG_ERR, "health checks: out of memory applying %s; the previous targets stay "
           "checked", cfg->origin ? cfg->origin : "the config");
    sl_config_unref(cfg);
    return -1;
}

/* Failed connects reported by the workers since the last look, each one a failed check. */
static void take_passive(struct sl_health *h)
{
    for (size_t i = 0; i < h->n_checkers; i++) {
        struct checker *c = h->checkers[i];
        unsigned n = atomic_exchange(&c->st->passive_pending, 0);
        int why;

        if (!n)
            continue;
        why = atomic_load(&c->st->passive_result);
        if (why <= SL_CHECK_OK || why > SL_CHECK_BAD_RESPONSE)
            why = SL_CHECK_ERROR;
        /* lastCheck tells of this failure, not of an older check's status or time */
        atomic_store(&c->st->last_status, 0);
        atomic_store(&c->st->last_check_ms, sl_clock_ms(CLOCK_REALTIME));
        atomic_store(&c->st->last_result, why);
        atomic_fetch_add(&c->st->check_fails, n);
        account(c, (enum sl_check_result)why, n, true);
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_health *h = arg;
    struct sl_config *cfg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v)); /* resets the counter: one wakeup for all kicks */

    (void)r;
    (void)what;
    if (atomic_load(&h->stop)) {
        event_base_loopbreak(h->base);
        return;
    }
    pthread_mutex_lock(&h->lock);
    cfg = h->pending;
    h->pending = NULL;
    pthread_mutex_unlock(&h->lock);
    if (cfg)
        reconcile(h, cfg);
    take_passive(h);
}

static void *health_main(void *arg)
{
    struct sl_health *h = arg;

    event_base_dispatch(h->base);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The interface */

static void health_free(struct sl_health *h)
{
    for (size_t i = 0; i < h->n_checkers; i++)
        checker_free(h->checkers[i]);
    free(h->checkers);
    if (h->base) {
        if (event_initialized(&h->kick))
            event_del(&h->kick);
        event_base_free(h->base);
    }
    if (h->efd != -1)
        close(h->efd);
    sl_config_unref(h->pending);
    sl_config_unref(h->cfg);
    sl_regex_md_free(h->md);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

struct sl_health *sl_health_start(sl_health_hook hook, void *arg)
{
    struct sl_health *h = calloc(1, sizeof(*h)), *none = NULL;
    struct event_config *ec = event_config_new();
    sigset_t all, old;
    int rc;

    if (!h || !ec) {
        free(h);
        event_config_free(ec);
        sl_log(SL_LOG_ERR, "health checks: out of memory");
        return NULL;
    }
    h->efd = -1;
    h->hook = hook;
    h->hook_arg = arg;
    pthread_mutex_init(&h->lock, NULL);
    /* precise: the default coarse clock would blur intervals of a few ms */
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    h->base = event_base_new_with_config(ec);
    event_config_free(ec);
    h->md = sl_regex_md_new();
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!h->base || !h->md || h->efd == -1) {
        sl_log(SL_LOG_ERR, "health checks: cannot start: %s", strerror(errno));
        goto fail;
    }
    h->rng = sl_seed64((uintptr_t)h);
    event_assign(&h->kick, h->base, h->efd, EV_READ | EV_PERSIST, kick_cb, h);
    event_add(&h->kick, NULL);
    if (!atomic_compare_exchange_strong(&the_health, &none, h)) {
        sl_log(SL_LOG_ERR, "health checks: already running");
        goto fail;
    }
    /* signals go to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&h->thread, NULL, health_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&the_health, NULL);
        sl_log(SL_LOG_ERR, "health checks: cannot start the thread: %s", strerror(rc));
        goto fail;
    }
    return h;
fail:
    health_free(h);
    return NULL;
}

int sl_health_apply(struct sl_health *h, struct sl_config *cfg)
{
    struct sl_config *old;

    if (!h || !cfg)
        return -1;
    pthread_mutex_lock(&h->lock);
    old = h->pending; /* superseded before the thread took it */
    h->pending = sl_config_ref(cfg);
    pthread_mutex_unlock(&h->lock);
    sl_config_unref(old);
    kick(h);
    return 0;
}

void sl_health_stop(struct sl_health *h)
{
    struct sl_health *self = h;

    if (!h)
        return;
    atomic_compare_exchange_strong(&the_health, &self, NULL);
    atomic_store(&h->stop, true);
    kick(h);
    pthread_join(h->thread, NULL);
    health_free(h);
}

void sl_health_passive_fail(struct sl_target_state *st, enum sl_check_result why)
{
    struct sl_health *h = atomic_load(&the_health);

    if (!h || !st)
        return;
    atomic_store_explicit(&st->passive_result, (int)why, memory_order_relaxed);
    /* Only the first failure since the checker last looked wakes it: it takes the whole
     * count. A state nobody checks keeps its count and never wakes it again. */
    if (atomic_fetch_add(&st->passive_pending, 1) == 0)
        kick(h);
}
