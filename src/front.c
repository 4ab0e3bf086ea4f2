/* The client side: accept, read and parse request heads (limits, header timeout, keep-alive
 * idle timeout), route them, answer STATIC/REDIRECT/errors locally, stream request bodies to
 * the target, keep pipelined requests in order, and close politely (lingering close, so a
 * client that sent more than we read still gets our answer instead of a reset). The target
 * side is upstream.c. */
#include "sluice/front.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "conn-int.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/router.h"
#include "sluice/tls.h"

#define ACCEPT_BATCH 64          /* connections accepted per wake-up, then others run */
#define ACCEPT_PAUSE_MS 100      /* pause when out of fds */
#define LINGER_MS 2000           /* reading and discarding after our final answer */
#define EARLY_READ 4096          /* the read at accept: most request heads (libevent's size) */

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void on_timer(int fd, short what, void *arg);
static void process(struct sl_conn *c);

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 418: return "I'm a teapot";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void set_timer(struct sl_conn *c, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(c->timer, &tv);
}

/* ---- accept ---- */

static void pause_accepting(struct sl_worker *w, int err)
{
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};

    sl_worker_accepting(w, false);
    evtimer_add(w->accept_resume, &tv);
    if (!w->fd_exhausted) {
        struct rlimit rl = {0, 0};

        getrlimit(RLIMIT_NOFILE, &rl);
        sl_log(SL_LOG_WARN, "worker %u: cannot accept (%s; open file limit %llu): accepting "
               "paused, open connections and tunnels carry on", w->id, strerror(err),
               (unsigned long long)rl.rlim_cur);
        w->fd_exhausted = true;
    }
}

void sl_front_on_accept_resume(int fd, short what, void *arg)
{
    struct sl_worker *w = arg;

    (void)fd;
    (void)what;
    if (w->stopping)
        return;
    sl_worker_accepting(w, true);
}

/* The callbacks, write watermark and clientTimeout of the client's (new) bufferevent. */
static void client_bev_setup(struct sl_conn *c)
{
    uint32_t idle = c->ln->fr->client_timeout_ms;
    struct timeval tv = {idle / 1000, (idle % 1000) * 1000};

    bufferevent_setcb(c->cb, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->cb, EV_WRITE, CONN_HIGH_WATER / 2, 0);
    /* clientTimeout: idle between requests, and a client that stops reading or sending. */
    bufferevent_set_timeouts(c->cb, &tv, &tv);
}

/* HOT: the first read. The request is usually there as the connection is accepted (a client
 * sends it right behind the handshake), so it is read now, as HAProxy does, not after a round
 * through epoll: that saves the round and libevent's FIONREAD, and since the read interest
 * added at accept is taken back in the same pass when the request goes to a target, the
 * changelist never passes either to epoll (an upgrade's client socket is first registered by
 * its tunnel). Nothing there yet costs one recv() that says EAGAIN. */
static void read_at_once(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->cb);
    struct evbuffer_iovec v;
    ssize_t n;

    /* A socket bufferevent's input only takes bytes while libevent reads into it. */
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, EARLY_READ, &v, 1) < 1) {
        evbuffer_freeze(in, 0);
        return;
    }
    n = recv(c->cfd, v.iov_base, v.iov_len, 0);
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(in, &v, 1);
    }
    evbuffer_freeze(in, 0);
    if (n > 0)
        process(c);
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        front_close(c); /* closed (a port probe) or reset before a byte was sent */
}

static void conn_new(struct sl_listener *ln, int fd, const struct sockaddr_storage *ss)
{
    struct sl_worker *w = ln->w;
    struct sl_conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (!c)
        goto fail;
    c->w = w;
    c->ln = ln;
    c->cfd = fd;
    c->ufd = -1;
    c->id = ++w->next_id;
    sl_addr_from_sockaddr((const struct sockaddr *)ss, &c->peer, &c->peer_port);
    if (sl_tls_on(ln->gen->cfg, ln->fr))
        c->cb = sl_tls_bev_new(w->base, fd, ln->gen->cfg, ln->fr, &c->ssl);
    else
        c->cb = bufferevent_socket_new(w->base, fd, 0);
    c->timer = evtimer_new(w->base, on_timer, c);
    if (!c->cb || !c->timer)
        goto fail;
    /* Responses are written whole; small ones must not wait for Nagle. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->gen = sl_gen_ref(ln->gen);
    c->cfg = c->gen->cfg;
    client_bev_setup(c);
    bufferevent_enable(c->cb, EV_READ);
    if (c->ssl) {
        /* The handshake and the first head share headerTimeout: a stalled handshake ends. */
        c->flags |= CF_HEAD_TIMER;
        set_timer(c, c->cfg->local.header_timeout_ms);
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    sl_stat_add(&w->stats->accepted, 1);
    sl_stat_add(&w->stats->http_active, 1);
    if (!c->ssl)
        read_at_once(c);
    return;
fail:
    if (c) {
        if (c->cb)
            bufferevent_free(c->cb);
        if (c->ssl)
            sl_tls_free_ssl(c->ssl);
        if (c->timer)
            event_free(c->timer);
        free(c);
    }
    close(fd);
}

/* HOT: accept */
void sl_front_on_accept(int fd, short what, void *arg)
{
    struct sl_listener *ln = arg;
    struct sl_worker *w = ln->w;

    (void)what;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd == -1) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                pause_accepting(w, errno);
                return;
            case EAGAIN:
                /* The backlog is empty: whatever ran short of fds is over. */
                if (SL_UNLIKELY(w->fd_exhausted)) {
                    w->fd_exhausted = false;
                    sl_log(SL_LOG_INFO, "worker %u: accepting again", w->id);
                }
                return;
            default: /* the next readiness retries */
                return;
            }
        }
        conn_new(ln, cfd, &ss);
    }
}

/* ---- closing ---- */

void front_close(struct sl_conn *c)
{
    struct sl_worker *w = c->w;

    upstream_release(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    sl_stat_sub(&w->stats->http_active, 1);
    if (c->cb) {
        if (c->ssl)
            sl_tls_detach(c->cb);
        else
            bufferevent_setfd(c->cb, -1); /* see upstream_release */
        bufferevent_free(c->cb);
    }
    if (c->ssl)
        sl_tls_free_ssl(c->ssl); /* its bufferevent defers callbacks: nothing uses it now */
    if (c->cfd != -1)
        close(c->cfd);
    if (c->timer)
        event_free(c->timer);
    if (c->fwd)
        evbuffer_free(c->fwd);
    if (c->gen)
        sl_gen_unref(c->gen);
    free(c);
    sl_worker_check_done(w);
}

/* All output written: half-close and read what the client still sends for a moment, so the
 * kernel does not answer those bytes with a reset that would destroy our response. */
static void linger(struct sl_conn *c)
{
    c->flags |= CF_LINGER;
    if (c->ssl)
        sl_tls_close_notify(c->ssl);
    if (shutdown(c->cfd, SHUT_WR) == -1) {
        front_close(c);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->cb), evbuffer_get_length(bufferevent_get_input(c->cb)));
    bufferevent_enable(c->cb, EV_READ);
    set_timer(c, LINGER_MS);
}

/* The current answer is the last one: close once it is written. */
static void close_after_output(struct sl_conn *c)
{
    c->state = CS_CLOSING;
    upstream_release(c);
    bufferevent_disable(c->cb, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->cb)) == 0)
        linger(c);
}

void sl_front_stop(struct sl_worker *w)
{
    struct sl_conn *c, *next;

    for (c = w->conns; c; c = next) {
        next = c->next;
        c->flags |= CF_CLOSE_AFTER;
        if (c->state != CS_HEAD || evbuffer_get_length(bufferevent_get_input(c->cb)) != 0)
            continue; /* finishes its request, then closes */
        if (evbuffer_get_length(bufferevent_get_output(c->cb)) == 0)
            front_close(c);
        else
            close_after_output(c);
    }
}

void sl_front_close_all(struct sl_worker *w)
{
    while (w->conns) {
        struct sl_conn *c = w->conns;

        /* A request cut off here is counted (class "none") and logged like any other. */
        if (c->state == CS_CONNECT || c->state == CS_FORWARD) {
            c->err = SL_ERR_SHUTDOWN;
            front_log_request(c, "FORWARD");
        }
        front_close(c);
    }
}

/* ---- access log ---- */

void conn_json_str(struct evbuffer *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    evbuffer_add(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};

        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch < 0x7f)
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\') {
            char e2[2] = {'\\', (char)ch};

            evbuffer_add(b, e2, 2);
        } else {
            evbuffer_add(b, esc, 6);
        }
    }
    evbuffer_add(b, s + run, n - run);
    evbuffer_add(b, "\"", 1);
}

void conn_log_tls(struct evbuffer *b, const struct sl_tls_note *n)
{
    evbuffer_add_printf(b, ",\"tls\":{\"version\":\"%s\",\"cipher\":\"%s\",\"resumed\":%s,\"sni\":",
                        n->version, n->cipher, n->resumed ? "true" : "false");
    if (n->sni[0])
        conn_json_str(b, n->sni, strlen(n->sni));
    else
        evbuffer_add(b, "null", 4);
    evbuffer_add(b, "}", 1);
}

void conn_log_start(struct evbuffer *b, const char *type)
{
    char ts[SL_ISO_LEN];

    evbuffer_add_printf(b, "{\"time\":\"%s\",\"type\":\"%s\",",
                        sl_iso_ms(sl_clock_ms(CLOCK_REALTIME), ts), type);
}

void front_log_request(struct sl_conn *c, const char *action)
{
    struct evbuffer *b;
    char peer[SL_ADDR_STRLEN + 8], lst[SL_ADDR_STRLEN + 8], tgt[SL_ADDR_STRLEN + 8];
    struct timeval now;
    double ms;

    /* Counted here because every request ends here, whatever answered it. */
    sl_rule_table_count(&c->gen->rules, (size_t)(c->ln->fr - c->cfg->frules), c->rule,
                        c->status);
    if (c->pick.state && (c->up_bytes | c->down_bytes)) {
        atomic_fetch_add_explicit(&c->pick.state->bytes_out, c->up_bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->pick.state->bytes_in, c->down_bytes, memory_order_relaxed);
    }
    /* The line only when someone will read it ("accessLog": "off" builds nothing). */
    if (!sl_log_access_on() || !(b = evbuffer_new()))
        return;
    gettimeofday(&now, NULL);
    ms = (double)(now.tv_sec - c->t0.tv_sec) * 1e3 + (double)(now.tv_usec - c->t0.tv_usec) / 1e3;
    conn_log_start(b, "http");
    evbuffer_add_printf(b, "\"worker\":%u,\"conn\":%llu,"
                        "\"client\":\"%s\",\"listener\":\"%s\",\"method\":",
                        c->w->id,
                        (unsigned long long)(c->id & 0xffffffffffffffull),
                        sl_addr_format_port(&c->peer, c->peer_port, peer),
                        sl_addr_format_port(&c->ln->addr, c->ln->port, lst));
    conn_json_str(b, c->method, strlen(c->method));
    evbuffer_add(b, ",\"path\":", 8);
    conn_json_str(b, c->path, strlen(c->path));
    evbuffer_add(b, ",\"rule\":", 8);
    if (c->rule && c->rule->name)
        conn_json_str(b, c->rule->name, strlen(c->rule->name));
    else
        evbuffer_add(b, "null", 4);
    evbuffer_add_printf(b, ",\"action\":\"%s\",\"status\":%d,\"target\":", action, c->status);
    if (c->pick.target) {
        sl_addr_format_port(&c->pick.target->addr, c->pick.target->port, tgt);
        evbuffer_add_printf(b, "\"%s\"", tgt);
    } else {
        evbuffer_add(b, "null", 4);
    }
    evbuffer_add_printf(b, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f",
                        (unsigned long long)c->req_bytes, (unsigned long long)c->resp_bytes, ms);
    if (c->tried.n > 1)
        evbuffer_add_printf(b, ",\"tries\":%u", c->tried.n);
    if (c->err != SL_ERR_NONE)
        evbuffer_add_printf(b, ",\"error\":\"%s\"", sl_err_str(c->err));
    if (c->ssl && c->tls_up) {
        struct sl_tls_note n;

        sl_tls_note(c->ssl, &n);
        conn_log_tls(b, &n);
    }
    evbuffer_add(b, "}", 1);
    sl_log_access((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
    evbuffer_free(b);
}

/* ---- local answers ---- */

/* Queues a complete response. <extra>: header lines (each ending in CRLF) or NULL. */
static void reply_raw(struct sl_conn *c, int status, const char *ctype, const char *extra,
                      const char *body, size_t body_len)
{
    struct evbuffer *out = bufferevent_get_output(c->cb);
    bool close = c->flags & CF_CLOSE_AFTER;
    size_t before = evbuffer_get_length(out);

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", status, reason(status),
                        body_len);
    if (ctype)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n", close ? "close" : "keep-alive");
    if (!(c->flags & CF_HEAD_REQ))
        evbuffer_add(out, body, body_len);
    c->status = status;
    c->resp_bytes += evbuffer_get_length(out) - before;
}

/* Answers <status> with a one-line body naming why, and closes. */
void front_reply_error(struct sl_conn *c, int status, enum sl_err why)
{
    front_reply_error_detail(c, status, why, sl_err_str(why));
}

/* Answers "<status> <reason>: <detail>" as text, logs the request as <action>, closes. */
static void reply_text_close(struct sl_conn *c, int status, const char *detail, const char *action)
{
    char body[300];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, reason(status), detail);

    if (n >= (int)sizeof(body))
        n = sizeof(body) - 1;
    c->flags |= CF_CLOSE_AFTER;
    reply_raw(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
    front_log_request(c, action);
    close_after_output(c);
}

void front_reply_error_detail(struct sl_conn *c, int status, enum sl_err why, const char *detail)
{
    c->err = why;
    if (c->flags & CF_RESP_HEAD) {
        /* Part of a response already went out: the client can only learn by the close. */
        c->flags |= CF_CLOSE_AFTER;
        front_log_request(c, "FORWARD");
        front_close(c);
        return;
    }
    upstream_release(c);
    reply_text_close(c, status, detail,
                     c->rule && c->rule->type == SL_RULE_FORWARD ? "FORWARD" : "LOCAL");
}

/* A request refused before routing: <why> is the parser's one-line reason. */
static void reply_bad_request(struct sl_conn *c, int status, const char *why)
{
    c->err = SL_ERR_BAD_REQUEST;
    reply_text_close(c, status, why, "REFUSED");
}

/* Ends the current request (its response is queued or sent); 0 if the connection stays for
 * the next one, -1 if it is closing or closed. */
static int finish_request(struct sl_conn *c)
{
    upstream_release(c);
    if (c->fwd) {
        evbuffer_free(c->fwd);
        c->fwd = NULL;
    }
    if (c->flags & CF_CLOSE_AFTER || c->w->stopping) {
        close_after_output(c);
        return -1;
    }
    c->state = CS_HEAD;
    c->flags = 0;
    c->rule = NULL;
    c->err = SL_ERR_NONE;
    c->status = 0;
    c->req_bytes = c->resp_bytes = 0;
    c->up_bytes = c->down_bytes = 0;
    memset(&c->tried, 0, sizeof(c->tried));
    memset(&c->pick, 0, sizeof(c->pick));
    bufferevent_enable(c->cb, EV_READ);
    return 0;
}

void front_request_done(struct sl_conn *c)
{
    front_log_request(c, "FORWARD");
    if (finish_request(c) == 0)
        process(c);
}

static void reply_local(struct sl_conn *c, const struct sl_http_rule *r,
                        const struct sl_http_head *h)
{
    if (r->type == SL_RULE_STATIC) {
        const char *msg = r->response_message ? r->response_message : "";

        reply_raw(c, r->status_code, r->content_type ? r->content_type : "text/plain",
                  NULL, msg, strlen(msg));
        front_log_request(c, "STATIC");
    } else {
        char loc[8192], extra[8300];

        if (sl_router_redirect_location(r, &h->req, loc, sizeof(loc)) < 0) {
            c->flags |= CF_CLOSE_AFTER;
            reply_raw(c, 500, "text/plain", NULL, "500: redirect location too long\n", 32);
        } else {
            snprintf(extra, sizeof(extra), "Location: %s\r\n", loc);
            reply_raw(c, r->status_code, NULL, extra, "", 0);
        }
        front_log_request(c, "REDIRECT");
    }
}

/* ---- requests ---- */

static void note_request(struct sl_conn *c, const struct sl_http_head *h)
{
    size_t n;

    n = h->req.method_len < sizeof(c->method) - 1 ? h->req.method_len : sizeof(c->method) - 1;
    memcpy(c->method, h->req.method, n);
    c->method[n] = '\0';
    n = h->target_len < sizeof(c->path) - 1 ? h->target_len : sizeof(c->path) - 1;
    memcpy(c->path, h->target, n);
    c->path[n] = '\0';
    gettimeofday(&c->t0, NULL);
}

/* HOT: parse. Handles one request head at the start of the input; 0 when the connection can
 * take the next one at once, 1 to wait, -1 when it is closing or gone. */
static int handle_head(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->cb);
    size_t len = evbuffer_get_length(in);
    size_t n = len < SL_HTTP_MAX_HEAD + 1 ? len : SL_HTTP_MAX_HEAD + 1;
    const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    const struct sl_http_rule *rule;
    struct sl_http_head h;
    int rc;

    rc = sl_http_parse_head(data, n, &h);
    if (rc == SL_AGAIN) {
        /* A head in pieces: its sender may be waiting on our ACK (Nagle) for the rest. */
        conn_quickack_once(c, CF_QUICKACK, c->cfd);
        if (!(c->flags & CF_HEAD_TIMER)) {
            c->flags |= CF_HEAD_TIMER;
            set_timer(c, c->cfg->local.header_timeout_ms);
        }
        return 1;
    }
    evtimer_del(c->timer);
    c->flags &= ~CF_HEAD_TIMER;
    if (rc == SL_ERROR) {
        gettimeofday(&c->t0, NULL);
        c->method[0] = c->path[0] = '\0';
        reply_bad_request(c, h.status, h.error);
        return -1;
    }
    h.req.source = c->peer;
    h.req.tls = c->ssl != NULL;
    note_request(c, &h);
    c->req_bytes = h.head_len;
    if (!h.keep_alive)
        c->flags |= CF_CLOSE_AFTER;
    if (h.req.method_len == 4 && !memcmp(h.req.method, "HEAD", 4))
        c->flags |= CF_HEAD_REQ;

    rule = sl_router_match(c->ln->fr, &h.req, c->w->scratch);
    c->rule = rule;
    if (!rule || rule->type != SL_RULE_FORWARD) {
        /* We answer without reading the body: the connection cannot carry another request. */
        if (h.body != SL_BODY_NONE)
            c->flags |= CF_CLOSE_AFTER;
        if (rule) {
            reply_local(c, rule, &h);
        } else {
            static const char msg[] = "503 Service Unavailable: no http rule matched\n";

            c->err = SL_ERR_NONE;
            reply_raw(c, SL_ROUTER_NOMATCH_STATUS, "text/plain; charset=utf-8", NULL, msg,
                      sizeof(msg) - 1);
            front_log_request(c, "NOMATCH");
        }
        evbuffer_drain(in, h.head_len);
        return finish_request(c);
    }

    if (h.websocket)
        c->flags |= CF_WEBSOCKET;
    if (upstream_build_head(c, &h) == -1) {
        front_reply_error(c, 500, SL_ERR_RESOURCES);
        return -1;
    }
    evbuffer_drain(in, h.head_len);
    sl_http_body_init(&c->reqb, h.body, h.content_length);
    /* A body may come in pieces too, and its answer only after its end. */
    if (h.body != SL_BODY_NONE)
        conn_quickack_once(c, CF_QUICKACK, c->cfd);
    c->state = CS_CONNECT;
    /* The body (and, for an upgrade, any early WebSocket frames) waits in the input. */
    bufferevent_disable(c->cb, EV_READ);
    upstream_start(c);
    return 1;
}

/* Takes requests from the input while the connection is between requests. */
static void process(struct sl_conn *c)
{
    while (c->state == CS_HEAD &&
           evbuffer_get_length(bufferevent_get_input(c->cb)) > 0) {
        /* A client that pipelines without reading our answers waits until it does. */
        if (evbuffer_get_length(bufferevent_get_output(c->cb)) >= CONN_HIGH_WATER) {
            bufferevent_disable(c->cb, EV_READ);
            return;
        }
        if (handle_head(c) != 0)
            return;
    }
}

/* Moves request body bytes from the client to the target, up to the end of the request. */
void front_pump_request_body(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->cb);
    struct evbuffer *out = bufferevent_get_output(c->ub);
    struct evbuffer_iovec v[16];
    size_t total = 0;
    int n, rc = SL_AGAIN;

    if (c->flags & CF_REQ_DONE)
        return;
    if (c->reqb.kind == SL_BODY_NONE)
        rc = SL_OK;
    n = evbuffer_peek(in, -1, NULL, v, 16);
    for (int i = 0; i < n && i < 16 && rc == SL_AGAIN; i++) {
        size_t used;

        rc = sl_http_body_scan(&c->reqb, v[i].iov_base, v[i].iov_len, &used);
        if (rc == SL_ERROR) {
            c->flags |= CF_CLOSE_AFTER;
            front_reply_error(c, 400, SL_ERR_BAD_REQUEST);
            return;
        }
        total += used;
    }
    if (total) {
        evbuffer_remove_buffer(in, out, total);
        c->req_bytes += total;
        c->up_bytes += total;
    }
    if (rc == SL_OK) {
        uint32_t ms = c->ln->fr->client_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        c->flags |= CF_REQ_DONE;
        /* Now the wait for the answer starts: clientTimeout bounds it. */
        bufferevent_set_timeouts(c->ub, &tv, &tv);
        /* Pipelined requests wait until this response is complete. */
        bufferevent_disable(c->cb, EV_READ);
    } else if (evbuffer_get_length(out) >= CONN_HIGH_WATER) {
        bufferevent_disable(c->cb, EV_READ); /* resumed by the target's write callback */
    } else {
        bufferevent_enable(c->cb, EV_READ);
    }
}

void front_client_drained(struct sl_conn *c)
{
    if (c->ub && c->state == CS_FORWARD)
        bufferevent_enable(c->ub, EV_READ);
}

/* ---- client callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    switch (c->state) {
    case CS_HEAD:
        process(c);
        break;
    case CS_FORWARD:
        if (!(c->flags & CF_REQ_DONE))
            front_pump_request_body(c);
        else
            bufferevent_disable(c->cb, EV_READ);
        break;
    case CS_CONNECT:
        bufferevent_disable(c->cb, EV_READ);
        break;
    case CS_CLOSING:
        if (c->flags & CF_LINGER)
            evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        else
            bufferevent_disable(c->cb, EV_READ);
        break;
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;

    if (c->state == CS_CLOSING) {
        if (!(c->flags & CF_LINGER) && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            linger(c);
        return;
    }
    if (c->state == CS_HEAD) {
        bufferevent_enable(c->cb, EV_READ);
        process(c);
        return;
    }
    front_client_drained(c);
}

/* The client's TLS handshake did not complete: count and log the cause, and close. Plain
 * HTTP gets a plain 400 (as nginx does), through a plain bufferevent that takes the SSL one's
 * place, so it is written and closed politely like any other answer. */
static void tls_failed(struct sl_conn *c, enum sl_tls_fail why, const char *detail)
{
    char peer[SL_ADDR_STRLEN + 8];
    struct bufferevent *plain;

    if (why == SL_TLS_CLOSED && sl_tls_untouched(c->ssl)) {
        front_close(c); /* a port probe: connected and closed, not one byte of TLS */
        return;
    }
    sl_tls_failed(why, sl_addr_format_port(&c->peer, c->peer_port, peer), detail);
    if (why != SL_TLS_PLAIN_HTTP || !(plain = bufferevent_socket_new(c->w->base, c->cfd, 0))) {
        front_close(c);
        return;
    }
    sl_tls_detach(c->cb);
    bufferevent_free(c->cb);
    sl_tls_free_ssl(c->ssl);
    c->ssl = NULL;
    c->cb = plain;
    client_bev_setup(c);
    evtimer_del(c->timer);
    c->flags &= ~CF_HEAD_TIMER;
    gettimeofday(&c->t0, NULL);
    c->method[0] = c->path[0] = '\0';
    reply_bad_request(c, 400, "this port speaks HTTPS (TLS)");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    if (c->ssl && !c->tls_up) {
        char detail[200];

        if (what & BEV_EVENT_CONNECTED) {
            c->tls_up = true;
            sl_tls_handshake_done(c->ssl);
            /* A handshake can end on the client's flight (a resumed TLS 1.2 session), with
             * no answer of ours to carry the ACK its request may be waiting for. */
            sl_tcp_quickack(c->cfd, true);
            return;
        }
        tls_failed(c,
                   (what & BEV_EVENT_TIMEOUT)
                       ? SL_TLS_TIMEOUT
                       : sl_tls_classify(c->cb, what & BEV_EVENT_EOF, detail, sizeof(detail)),
                   (what & BEV_EVENT_TIMEOUT) ? "" : detail);
        return;
    }
    if (c->state == CS_HEAD && (what & BEV_EVENT_TIMEOUT) && (c->flags & CF_HEAD_TIMER)) {
        on_timer(-1, 0, c); /* clientTimeout ran out first: still a 408 */
        return;
    }
    if (c->state == CS_HEAD && (what & BEV_EVENT_EOF) &&
        evbuffer_get_length(bufferevent_get_output(c->cb)) != 0) {
        /* A half-closed client still gets all of its last answer. */
        c->flags |= CF_CLOSE_AFTER;
        close_after_output(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) &&
        ((c->state == CS_FORWARD && (c->flags & CF_REQ_DONE)) ||
         (c->state == CS_CONNECT && c->reqb.kind == SL_BODY_NONE))) {
        /* The client half-closed after a complete request: answer it, then close. */
        c->flags |= CF_CLOSE_AFTER;
        return;
    }
    if (c->state == CS_HEAD && (what & BEV_EVENT_TIMEOUT) &&
        evbuffer_get_length(bufferevent_get_input(c->cb)) == 0 &&
        evbuffer_get_length(bufferevent_get_output(c->cb)) != 0) {
        /* The client is not reading our last answer: give up on it. */
        front_close(c);
        return;
    }
    if (c->state == CS_CONNECT || c->state == CS_FORWARD) {
        c->err = (what & BEV_EVENT_TIMEOUT) ? SL_ERR_IDLE_TIMEOUT
                 : (what & BEV_EVENT_EOF)   ? SL_ERR_CLIENT_CLOSED
                                            : SL_ERR_CLIENT_RESET;
        if (!c->status)
            c->status = 499; /* nginx's "client closed request" */
        front_log_request(c, "FORWARD");
    }
    front_close(c);
}

static void on_timer(int fd, short what, void *arg)
{
    struct sl_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CS_CLOSING) {
        front_close(c); /* end of the lingering close */
        return;
    }
    if (c->ssl && !c->tls_up) {
        tls_failed(c, SL_TLS_TIMEOUT, "");
        return;
    }
    if (c->state == CS_HEAD && (c->flags & CF_HEAD_TIMER)) {
        gettimeofday(&c->t0, NULL);
        c->method[0] = c->path[0] = '\0';
        c->err = SL_ERR_IDLE_TIMEOUT;
        c->flags |= CF_CLOSE_AFTER;
        reply_raw(c, 408, "text/plain; charset=utf-8", NULL,
                  "408 Request Timeout: the request head did not arrive in time\n", 61);
        front_log_request(c, "REFUSED");
        close_after_output(c);
    }
}
