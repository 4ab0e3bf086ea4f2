/* The target side of a connection: pick a target, connect without blocking (from a local
 * lbPrivateIp, with a timeout, the next target on refusal or timeout), send the PROXY protocol
 * header and the rewritten request head, read and relay the response head and body, and on a
 * 101 to a WebSocket upgrade hand both sockets to a tunnel. The client side is front.c. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conn-int.h"
#include "sluice/config.h"
#include "sluice/front.h"
#include "sluice/health.h"
#include "sluice/log.h"
#include "sluice/tls.h"
#include "sluice/tunnel.h"

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static bool name_is(const struct sl_header *h, const char *name, size_t n)
{
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

#define NAME_IS(h, lit) name_is((h), lit, sizeof(lit) - 1)

/* Hop-by-hop fields (RFC 9110 §7.6.1) plus those we set ourselves. */
static bool hop_by_hop(const struct sl_header *h)
{
    return NAME_IS(h, "connection") || NAME_IS(h, "keep-alive") ||
           NAME_IS(h, "proxy-connection") || NAME_IS(h, "te") || NAME_IS(h, "upgrade");
}

/* Whether <h> is named by a Connection header among <hs> (so hop-by-hop too). Framing and
 * routing fields stay whatever Connection says: dropping Content-Length on a client's word
 * would let it smuggle a body as a request. */
static bool named_by_connection(const struct sl_header *h, const struct sl_header *hs, size_t n)
{
    if (NAME_IS(h, "host") || NAME_IS(h, "content-length") || NAME_IS(h, "transfer-encoding"))
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *p, *end, *e;
        size_t len;

        if (!NAME_IS(&hs[i], "connection"))
            continue;
        p = hs[i].value;
        end = p + hs[i].value_len;
        while (sl_http_list_next(&p, end, &e, &len))
            if (name_is(h, e, len))
                return true;
    }
    return false;
}

/* Writes the request head as the target gets it into c->fwd: hop-by-hop fields removed,
 * X-Forwarded-For appended to, X-Forwarded-Proto/-Port set, and Connection: Upgrade kept for
 * a WebSocket upgrade (the only upgrade that is passed on). 0, or -1 on out-of-memory. */
int upstream_build_head(struct sl_conn *c, const struct sl_http_head *h)
{
    struct evbuffer *b = evbuffer_new();
    const struct sl_header *hs = h->req.headers;
    size_t n = h->req.n_headers, rl;
    const struct sl_header *upgrade = NULL;
    char peer[SL_ADDR_STRLEN];
    bool xff = false;

    if (!b)
        return -1;
    /* The request line as it came: method SP target SP HTTP/1.x */
    rl = (size_t)(h->target + h->target_len - h->req.method) + 9;
    evbuffer_add(b, h->req.method, rl);
    evbuffer_add(b, "\r\n", 2);
    sl_addr_format(&c->peer, peer);
    for (size_t i = 0; i < n; i++) {
        const struct sl_header *hd = &hs[i];

        if (hop_by_hop(hd)) {
            if (NAME_IS(hd, "upgrade"))
                upgrade = hd;
            continue;
        }
        if (NAME_IS(hd, "x-forwarded-proto") || NAME_IS(hd, "x-forwarded-port") ||
            named_by_connection(hd, hs, n))
            continue;
        if (NAME_IS(hd, "x-forwarded-for")) {
            if (xff)
                continue; /* joined into the first one below */
            xff = true;
            evbuffer_add(b, "X-Forwarded-For: ", 17);
            for (size_t k = i; k < n; k++)
                if (NAME_IS(&hs[k], "x-forwarded-for")) {
                    evbuffer_add(b, hs[k].value, hs[k].value_len);
                    evbuffer_add(b, ", ", 2);
                }
            evbuffer_add_printf(b, "%s\r\n", peer);
            continue;
        }
        evbuffer_add(b, hd->name, hd->name_len);
        evbuffer_add(b, ": ", 2);
        evbuffer_add(b, hd->value, hd->value_len);
        evbuffer_add(b, "\r\n", 2);
    }
    if (!xff)
        evbuffer_add_printf(b, "X-Forwarded-For: %s\r\n", peer);
    evbuffer_add_printf(b, "X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %u\r\n",
                        h->req.tls ? "https" : "http", c->ln->port);
    if ((c->flags & CF_WEBSOCKET) && upgrade) {
        evbuffer_add(b, "Connection: Upgrade\r\nUpgrade: ", 30);
        evbuffer_add(b, upgrade->value, upgrade->value_len);
        evbuffer_add(b, "\r\n\r\n", 4);
    } else {
        /* One request per target connection: the target's close never races a request. */
        evbuffer_add(b, "Connection: close\r\n\r\n", 21);
    }
    if (c->fwd)
        evbuffer_free(c->fwd);
    c->fwd = b;
    return 0;
}

/* ---- PROXY protocol ---- */

#define PP2_TLV_MAX 600
#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CIPHER 0x23
#define PP2_CLIENT_SSL 0x01

static size_t pp2_tlv(uint8_t *p, uint8_t type, const char *v, size_t n)
{
    p[0] = type;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    memcpy(p + 3, v, n);
    return 3 + n;
}

/* The PROXY v2 TLVs of a TLS client (as HAProxy's send-proxy-v2-ssl): ALPN, the SNI as
 * authority, and PP2_TYPE_SSL with the version and cipher. No client certificate is asked
 * for, so "verify" is non-zero (not verified). */
static size_t pp2_ssl_tlvs(const struct sl_conn *c, uint8_t *out)
{
    struct sl_tls_note t;
    size_t n = 0, vl, cl, sub;

    sl_tls_note(c->ssl, &t);
    vl = t.version ? strnlen(t.version, 64) : 0;
    cl = t.cipher ? strnlen(t.cipher, 128) : 0;
    n += pp2_tlv(out + n, PP2_TYPE_ALPN, "http/1.1", 8);
    if (t.sni[0])
        n += pp2_tlv(out + n, PP2_TYPE_AUTHORITY, t.sni, strlen(t.sni));
    sub = 5 + (vl ? 3 + vl : 0) + (cl ? 3 + cl : 0);
    out[n] = PP2_TYPE_SSL;
    out[n + 1] = (uint8_t)(sub >> 8);
    out[n + 2] = (uint8_t)sub;
    out[n + 3] = PP2_CLIENT_SSL;
    memcpy(out + n + 4, "\0\0\0\1", 4); /* verify, big-endian: 1 = no certificate */
    n += 8;
    if (vl)
        n += pp2_tlv(out + n, PP2_SUBTYPE_SSL_VERSION, t.version, vl);
    if (cl)
        n += pp2_tlv(out + n, PP2_SUBTYPE_SSL_CIPHER, t.cipher, cl);
    return n;
}

static void proxy_header(struct sl_conn *c, struct evbuffer *out)
{
    enum sl_proxy_protocol v = c->pick.target->proxy_protocol;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct sl_addr dst;
    uint16_t dport = c->ln->port;
    struct sl_addr src = c->peer;

    /* The destination is the address the client connected to (the listener may be a
     * wildcard). */
    if (getsockname(c->cfd, (struct sockaddr *)&ss, &len) == -1 ||
        sl_addr_from_sockaddr((struct sockaddr *)&ss, &dst, &dport) == -1)
        dst = c->ln->addr;
    if (v == SL_PROXY_V1) {
        char a[SL_ADDR_STRLEN], b[SL_ADDR_STRLEN];

        if (src.family != dst.family) {
            evbuffer_add(out, "PROXY UNKNOWN\r\n", 15);
            return;
        }
        evbuffer_add_printf(out, "PROXY %s %s %s %u %u\r\n",
                            src.family == AF_INET ? "TCP4" : "TCP6", sl_addr_format(&src, a),
                            sl_addr_format(&dst, b), c->peer_port, dport);
    } else {
        static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                        0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
        uint8_t hdr[16 + 36];
        uint8_t tlv[PP2_TLV_MAX];
        size_t alen, tlen = 0;

        /* v2ssl on a TLS client: TLVs saying so (v2ssl on a plain client sends plain v2) */
        if (v == SL_PROXY_V2SSL && c->ssl)
            tlen = pp2_ssl_tlvs(c, tlv);
        memcpy(hdr, sig, 12);
        hdr[12] = 0x21; /* version 2, PROXY */
        if (src.family == AF_INET && dst.family == AF_INET) {
            hdr[13] = 0x11; /* TCP over IPv4 */
            alen = 12;
            memcpy(hdr + 16, src.bytes, 4);
            memcpy(hdr + 20, dst.bytes, 4);
        } else if (src.family == AF_INET6 && dst.family == AF_INET6) {
            hdr[13] = 0x21; /* TCP over IPv6 */
            alen = 36;
            memcpy(hdr + 16, src.bytes, 16);
            memcpy(hdr + 32, dst.bytes, 16);
        } else {
            hdr[13] = 0x00; /* UNSPEC */
            alen = 0;
        }
        if (alen) {
            hdr[16 + alen - 4] = (uint8_t)(c->peer_port >> 8);
            hdr[16 + alen - 3] = (uint8_t)c->peer_port;
            hdr[16 + alen - 2] = (uint8_t)(dport >> 8);
            hdr[16 + alen - 1] = (uint8_t)dport;
        }
        hdr[14] = (uint8_t)((alen + tlen) >> 8);
        hdr[15] = (uint8_t)(alen + tlen);
        evbuffer_add(out, hdr, 16 + alen);
        evbuffer_add(out, tlv, tlen);
    }
}

/* ---- connecting ---- */

void upstream_release(struct sl_conn *c)
{
    if (c->ub) {
        /* Detach the fd first: a bufferevent freed inside its own callback unregisters
         * later, and by then the fd number may belong to the next target's socket. */
        bufferevent_setfd(c->ub, -1);
        bufferevent_free(c->ub);
        c->ub = NULL;
    }
    if (c->ufd != -1) {
        close(c->ufd);
        c->ufd = -1;
    }
    if (c->counted) {
        atomic_fetch_sub_explicit(&c->pick.state->active, 1, memory_order_relaxed);
        c->counted = false;
    }
}

static void connect_failed(struct sl_conn *c, enum sl_err why)
{
    char buf[SL_ADDR_STRLEN + 8];

    atomic_fetch_add_explicit(&c->pick.state->fails, 1, memory_order_relaxed);
    sl_stat_add(&c->w->stats->connect_fails[why], 1);
    /* The passive health signal: the target's fault, not ours (fds, memory). */
    if (why == SL_ERR_CONNECT_REFUSED || why == SL_ERR_CONNECT_TIMEOUT ||
        why == SL_ERR_CONNECT_ERROR)
        sl_health_passive_fail(c->pick.state, why == SL_ERR_CONNECT_REFUSED ? SL_CHECK_REFUSED
                                              : why == SL_ERR_CONNECT_TIMEOUT ? SL_CHECK_TIMEOUT
                                                                               : SL_CHECK_ERROR);
    SL_DEBUG("conn %llu: %s: %s", (unsigned long long)c->id,
             sl_addr_format_port(&c->pick.target->addr, c->pick.target->port, buf),
             sl_err_str(why));
    (void)buf;
    c->err = why;
    upstream_release(c);
}

/* Starts a non-blocking connect to c->pick; SL_OK (in progress or done) or SL_DECLINED with
 * c->err set. */
static int connect_target(struct sl_conn *c)
{
    const struct sl_target *t = c->pick.target;
    uint32_t ms = c->cfg->local.connect_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int fd = sl_source_connect(&c->w->source, &t->addr, t->port, true);

    if (fd == -1) {
        connect_failed(c, sl_connect_err(errno));
        return SL_DECLINED;
    }
    c->ufd = fd;
    c->ub = bufferevent_socket_new(c->w->base, fd, 0);
    if (!c->ub) {
        connect_failed(c, SL_ERR_RESOURCES);
        return SL_DECLINED;
    }
    bufferevent_setcb(c->ub, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->ub, EV_WRITE, CONN_HIGH_WATER / 2, 0);
    bufferevent_set_timeouts(c->ub, NULL, &tv);
    /* The connect is under way: libevent reports its outcome as CONNECTED or ERROR. */
    if (bufferevent_socket_connect(c->ub, NULL, 0) == -1) {
        connect_failed(c, SL_ERR_CONNECT_ERROR);
        return SL_DECLINED;
    }
    return SL_OK;
}

/* 503 naming the group and why none of its targets may take a connection. */
static void no_target(struct sl_conn *c)
{
    const struct sl_target_group *g = c->rule->group;
    unsigned down = 0, maint = 0, zero = 0;
    char detail[200];

    for (size_t i = 0; i < g->n_targets; i++) {
        const struct sl_target *t = &g->targets[i];

        if (t->maintenance_enabled)
            maint++;
        else if (t->weight == 0)
            zero++;
        else
            down++; /* eligible by config: its health check says down */
    }
    snprintf(detail, sizeof(detail), "no target of group \"%s\" is available (%zu targets: %u "
             "down, %u in maintenance, %u with weight 0)",
             g->name ? g->name : g->id ? g->id : "", g->n_targets, down, maint, zero);
    sl_stat_add(&c->w->stats->no_target, 1);
    front_reply_error_detail(c, 503, SL_ERR_NO_TARGET, detail);
}

/* HOT: connect. Picks targets until a connect is under way, or answers 502/503/504. */
void upstream_start(struct sl_conn *c)
{
    for (;;) {
        if (sl_balancer_pick(c->gen->bal, c->rule->group, &c->peer, &c->tried, &c->pick) != SL_OK)
            break;
        atomic_fetch_add_explicit(&c->pick.state->active, 1, memory_order_relaxed);
        c->counted = true;
        if (connect_target(c) == SL_OK)
            return;
    }
    if (c->tried.n == 0)
        no_target(c);
    else if (c->err == SL_ERR_CONNECT_TIMEOUT)
        front_reply_error(c, 504, SL_ERR_CONNECT_TIMEOUT);
    else
        front_reply_error(c, 502, c->err);
}

static void connected(struct sl_conn *c)
{
    uint32_t ms = c->ln->fr->client_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    struct evbuffer *out = bufferevent_get_output(c->ub);

    c->state = CS_FORWARD;
    c->err = SL_ERR_NONE; /* an earlier target's failure is history (counted in "tries") */
    /* clientTimeout also bounds the target (IONOS documents no other timeout): while the
     * request goes out, a target that stops reading it; once it is out, the wait for the
     * answer (armed in front_pump_request_body). */
    bufferevent_set_timeouts(c->ub, NULL, &tv);
    /* <out> is the new connection's: empty until now */
    if (c->pick.target->proxy_protocol != SL_PROXY_NONE)
        proxy_header(c, out);
    evbuffer_add_buffer(out, c->fwd);
    c->up_bytes += evbuffer_get_length(out);
    bufferevent_enable(c->ub, EV_READ);
    /* For an upgrade, frames the client sends before the 101 wait in its input for the
     * tunnel: the pump stops at the end of the request. */
    front_pump_request_body(c);
}

/* ---- the response ---- */

static void tunnel_done(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg);

/* What a tunnel needs after its conn is gone: enough for the access log and the counts. */
struct tunnel_ctx {
    struct sl_worker *w;
    struct sl_gen *gen; /* one ref: ln, target and rule point into it */
    struct sl_target_state *state;
    const struct sl_listener *ln;
    const struct sl_target *target;
    const struct sl_http_rule *rule;
    uint64_t id;
    struct sl_addr peer;
    uint16_t peer_port;
    uint64_t flushed_up, flushed_down; /* bytes already added to the shared counters */
    uint64_t close_at_ms;              /* monotonic; 0 = none: its target was removed */
    struct sl_tls_note *tls;           /* wss: for the access log; else NULL */
};

/* Adds what a tunnel moved since the last flush to its worker's and its target's counters:
 * the worker flushes every live tunnel once a second (worker.c), so /metrics and /status show
 * live bytes while the splice path stays free of shared writes. */
static void tunnel_flush(struct tunnel_ctx *x, const struct sl_tunnel_info *info)
{
    /* Only forward: the handed-over part may not be delivered yet (or ever). */
    uint64_t up = info->bytes_up > x->flushed_up ? info->bytes_up - x->flushed_up : 0;
    uint64_t down = info->bytes_down > x->flushed_down ? info->bytes_down - x->flushed_down : 0;

    if (up) {
        sl_stat_add(&x->w->stats->tunnel_bytes_up, up);
        atomic_fetch_add_explicit(&x->state->bytes_out, up, memory_order_relaxed);
    }
    if (down) {
        sl_stat_add(&x->w->stats->tunnel_bytes_down, down);
        atomic_fetch_add_explicit(&x->state->bytes_in, down, memory_order_relaxed);
    }
    x->flushed_up += up;
    x->flushed_down += down;
}

static void visit_tick(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg,
                       void *ud)
{
    struct tunnel_ctx *x = arg;
    const uint64_t *now = ud;

    tunnel_flush(x, info);
    if (x->close_at_ms && x->close_at_ms <= *now)
        sl_tunnel_close(t, SL_ERR_TARGET_REMOVED);
}

void upstream_tunnels_tick(struct sl_worker *w)
{
    uint64_t now;

    if (w->tunnels.n == 0)
        return; /* an idle worker reads no clock */
    now = sl_clock_ms(CLOCK_MONOTONIC);
    sl_tunnel_list_foreach(&w->tunnels, visit_tick, &now);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;

    return x < y ? -1 : x > y;
}

struct reload_ctx {
    struct sl_target_state **states; /* the new config's, sorted */
    size_t n;
    bool close_now;    /* drainTimeout 0: a removed target's tunnels close in this walk */
    uint64_t close_at; /* else when they close; 0: let them finish */
};

static void visit_reload(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg,
                         void *ud)
{
    struct tunnel_ctx *x = arg;
    struct reload_ctx *r = ud;

    (void)info;
    if (bsearch(&x->state, r->states, r->n, sizeof(*r->states), cmp_ptr))
        x->close_at_ms = 0; /* (back) in the config */
    else if (r->close_now)
        sl_tunnel_close(t, SL_ERR_TARGET_REMOVED);
    else if (!x->close_at_ms)
        x->close_at_ms = r->close_at;
}

void upstream_tunnels_reload(struct sl_worker *w, const struct sl_config *cfg)
{
    struct reload_ctx r = {0};
    size_t n = 0;

    for (size_t i = 0; i < cfg->n_tgroups; i++)
        n += cfg->tgroups[i].n_targets;
    r.states = malloc((n ? n : 1) * sizeof(*r.states));
    if (!r.states)
        return; /* out of memory: the removed targets' tunnels just finish on their own */
    for (size_t i = 0; i < cfg->n_tgroups; i++)
        for (size_t k = 0; k < cfg->tgroups[i].n_targets; k++)
            if ((r.states[r.n] = sl_target_state_get(&cfg->tgroups[i],
                                                      &cfg->tgroups[i].targets[k])))
                r.n++;
    qsort(r.states, r.n, sizeof(*r.states), cmp_ptr);
    if (cfg->local.drain_timeout_set) {
        r.close_now = cfg->local.drain_timeout_ms == 0;
        r.close_at = sl_clock_ms(CLOCK_MONOTONIC) + cfg->local.drain_timeout_ms;
    }
    sl_tunnel_list_foreach(&w->tunnels, visit_reload, &r);
    free(r.states);
}

static void visit_down(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg,
                       void *ud)
{
    struct tunnel_ctx *x = arg;

    (void)info;
    (void)ud;
    if (atomic_load_explicit(&x->state->down, memory_order_relaxed))
        sl_tunnel_close(t, SL_ERR_TARGET_DOWN);
}

void upstream_tunnels_close_down(struct sl_worker *w)
{
    sl_tunnel_list_foreach(&w->tunnels, visit_down, NULL);
}

/* The target said 101 to a WebSocket upgrade: relay it and join the sockets. Everything
 * either side sent past the heads (already read into our buffers) goes first. */
static void to_tunnel(struct sl_conn *c, size_t head_len)
{
    struct evbuffer *cout = bufferevent_get_output(c->cb), *uout = bufferevent_get_output(c->ub);
    /* What the tunnel delivers first but HTTP has counted: output still queued for the
     * client (an earlier answer, a 1xx) and the 101 head. */
    size_t http_part = evbuffer_get_length(cout) + head_len;
    /* Likewise request bytes counted as they were queued but not yet sent to the target. */
    size_t http_up = evbuffer_get_length(uout);
    struct sl_worker *w = c->w;
    struct tunnel_ctx *x;
    uint32_t idle = c->cfg->local.tunnel_timeout_ms ? c->cfg->local.tunnel_timeout_ms
                                                    : c->ln->fr->client_timeout_ms;
    size_t to_client, to_target;
    int cfd = c->cfd, ufd = c->ufd;
    struct ssl_st *ssl = c->ssl;
    struct sl_tunnel *t;

    /* Marked down while this upgrade was under way: with closeOnTargetDown the sweep of open
     * tunnels has passed already, so the tunnel is refused here. */
    if (c->cfg->local.close_on_target_down &&
        atomic_load_explicit(&c->pick.state->down, memory_order_relaxed)) {
        front_reply_error(c, 503, SL_ERR_TARGET_DOWN);
        return;
    }
    if (!(x = malloc(sizeof(*x)))) {
        front_reply_error(c, 502, SL_ERR_RESOURCES);
        return;
    }
    /* What the client gets first: its queued output, then what the target sent past the 101
     * (moved, not copied; a TLS bufferevent's output would also start writing on an add). */
    evbuffer_prepend_buffer(bufferevent_get_input(c->ub), cout);
    cout = bufferevent_get_input(c->ub);
    evbuffer_add_buffer(uout, bufferevent_get_input(c->cb));
    to_client = evbuffer_get_length(cout);
    to_target = evbuffer_get_length(uout);
    c->status = 101;
    c->resp_bytes += head_len;
    c->down_bytes += head_len;
    front_log_request(c, "FORWARD");

    *x = (struct tunnel_ctx){.w = w,
                             .gen = sl_gen_ref(c->gen),
                             .state = c->pick.state,
                             .ln = c->ln,
                             .target = c->pick.target,
                             .rule = c->rule,
                             .id = c->id,
                             .peer = c->peer,
                             .peer_port = c->peer_port,
                             .flushed_up = http_up,
                             .flushed_down = http_part};
    if (ssl && sl_log_access_on() && (x->tls = malloc(sizeof(*x->tls))))
        sl_tls_note(ssl, x->tls);
    /* The tunnel owns the fds, the TLS session and the target's active count from here on. */
    if (ssl) {
        sl_tls_detach(c->cb);
        bufferevent_free(c->cb); /* now, before front_close would set its fd again */
        c->cb = NULL;
    } else
        bufferevent_setfd(c->cb, -1);
    c->cfd = c->ufd = -1;
    c->ssl = NULL;
    c->counted = false;
    t = sl_tunnel_new(w->base, w->pipes, &w->tunnels, cfd, ssl, ufd, evbuffer_pullup(uout, -1),
                      to_target, evbuffer_pullup(cout, -1), to_client, idle, tunnel_done, x);
    /* The target's bufferevent lets go of the fd only now that the tunnel watches it: libevent
     * sees the fd stay watched for reading and leaves epoll alone (one epoll_ctl saved). */
    bufferevent_setfd(c->ub, -1);
    if (!t) {
        atomic_fetch_sub_explicit(&x->state->active, 1, memory_order_relaxed);
        sl_gen_unref(x->gen);
        free(x->tls);
        free(x);
    } else {
        sl_stat_add(&w->stats->tunnels_total, 1);
        sl_stat_add(&w->stats->tunnels_active, 1);
    }
    front_close(c);
}

static void tunnel_done(struct sl_tunnel *t, const struct sl_tunnel_info *info, void *arg)
{
    struct tunnel_ctx *x = arg;
    struct sl_worker *w = x->w;
    struct evbuffer *b = sl_log_access_on() ? evbuffer_new() : NULL;
    char peer[SL_ADDR_STRLEN + 8], lst[SL_ADDR_STRLEN + 8], tgt[SL_ADDR_STRLEN + 8];

    (void)t;
    tunnel_flush(x, info);
    sl_stat_sub(&w->stats->tunnels_active, 1);
    if (b) {
        conn_log_start(b, "tunnel");
        evbuffer_add_printf(b, "\"worker\":%u,\"conn\":%llu,\"client\":\"%s\","
                            "\"listener\":\"%s\",\"target\":\"%s\",\"rule\":",
                            w->id, (unsigned long long)(x->id & 0xffffffffffffffull),
                            sl_addr_format_port(&x->peer, x->peer_port, peer),
                            sl_addr_format_port(&x->ln->addr, x->ln->port, lst),
                            sl_addr_format_port(&x->target->addr, x->target->port, tgt));
        conn_json_str(b, x->rule->name ? x->rule->name : "", x->rule->name ? strlen(x->rule->name) : 0);
        evbuffer_add_printf(b,
                            ",\"bytes_up\":%llu,\"bytes_down\":%llu,\"duration_ms\":%.3f,"
                            "\"spliced\":%s,\"end\":\"%s\"",
                            (unsigned long long)info->bytes_up,
                            (unsigned long long)info->bytes_down, (double)info->duration_us / 1e3,
                            info->spliced ? "true" : "false", sl_err_str(info->end));
        if (x->tls)
            conn_log_tls(b, x->tls);
        evbuffer_add(b, "}", 1);
        sl_log_access((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
        evbuffer_free(b);
    }
    atomic_fetch_sub_explicit(&x->state->active, 1, memory_order_relaxed);
    sl_gen_unref(x->gen);
    free(x->tls);
    free(x);
    /* The tunnel has left the list by now (its count is what check_done reads). */
    sl_worker_check_done(w);
}

/* Queues the response head for the client: hop-by-hop fields removed, our Connection added. */
static void relay_head(struct sl_conn *c, const char *data, const struct sl_http_response *r)
{
    struct evbuffer *out = bufferevent_get_output(c->cb);
    const char *eol = memchr(data, '\n', r->head_len);
    const char *sp = memchr(data, ' ', (size_t)(eol - data));
    size_t before = evbuffer_get_length(out);

    /* Our own HTTP version (RFC 9110 §6.2): the client talks HTTP/1.1 with us, whatever the
     * target speaks; the status code and reason pass as they are. */
    evbuffer_add(out, "HTTP/1.1", 8);
    evbuffer_add(out, sp, (size_t)(eol - sp) + 1);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct sl_header *hd = &r->headers[i];

        if (hop_by_hop(hd) || named_by_connection(hd, r->headers, r->n_headers))
            continue;
        evbuffer_add(out, hd->name, hd->name_len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, hd->value, hd->value_len);
        evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n",
                        (c->flags & CF_CLOSE_AFTER) ? "close" : "keep-alive");
    c->resp_bytes += evbuffer_get_length(out) - before;
}

/* Parses response heads in the target's input; 0 when the body phase has begun, 1 to wait
 * for more, -1 when the conn has moved on (tunnel, error, closed). */
static int response_head(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->ub);
    struct sl_http_response r;

    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < SL_HTTP_MAX_HEAD + 1 ? len : SL_HTTP_MAX_HEAD + 1;
        const char *data;
        int rc;

        if (len == 0)
            return 1;
        data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        rc = sl_http_parse_response(data, n, c->flags & CF_HEAD_REQ, &r);
        if (rc == SL_AGAIN)
            return 1;
        if (rc == SL_ERROR) {
            sl_log(SL_LOG_WARN, "conn %llu: invalid response from the target: %s",
                   (unsigned long long)c->id, r.error);
            front_reply_error(c, 502, SL_ERR_BAD_RESPONSE);
            return -1;
        }
        if (r.status == 101) {
            if ((c->flags & CF_WEBSOCKET) && r.upgrade_websocket) {
                to_tunnel(c, r.head_len);
                return -1;
            }
            front_reply_error(c, 502, SL_ERR_BAD_RESPONSE);
            return -1;
        }
        if (r.status < 200) {
            /* 100 Continue, 103 Early Hints: passed on as they are; the final one follows. */
            evbuffer_remove_buffer(in, bufferevent_get_output(c->cb), r.head_len);
            c->resp_bytes += r.head_len;
            c->down_bytes += r.head_len;
            continue;
        }
        c->status = r.status;
        if (r.body == SL_BODY_CLOSE || (c->flags & CF_WEBSOCKET))
            c->flags |= CF_CLOSE_AFTER; /* a refused upgrade may have frames behind it */
        relay_head(c, data, &r);
        c->down_bytes += r.head_len;
        evbuffer_drain(in, r.head_len);
        c->flags |= CF_RESP_HEAD;
        sl_http_body_init(&c->respb, r.body, r.content_length);
        return 0;
    }
}

static void response_body(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->ub);
    struct evbuffer *out = bufferevent_get_output(c->cb);
    struct evbuffer_iovec v[16];
    size_t total = 0;
    int n, rc = SL_AGAIN;

    n = evbuffer_peek(in, -1, NULL, v, 16);
    if (c->respb.kind == SL_BODY_NONE)
        rc = SL_OK;
    for (int i = 0; i < n && i < 16 && rc == SL_AGAIN; i++) {
        size_t used;

        rc = sl_http_body_scan(&c->respb, v[i].iov_base, v[i].iov_len, &used);
        if (rc == SL_ERROR) {
            c->err = SL_ERR_BAD_RESPONSE;
            front_log_request(c, "FORWARD");
            front_close(c);
            return;
        }
        total += used;
    }
    if (total) {
        evbuffer_remove_buffer(in, out, total);
        c->resp_bytes += total;
        c->down_bytes += total;
    }
    if (rc == SL_OK) {
        /* A response that ends before its request did leaves the client mid-body. */
        if (!(c->flags & CF_REQ_DONE))
            c->flags |= CF_CLOSE_AFTER;
        front_request_done(c);
        return;
    }
    if (evbuffer_get_length(out) >= CONN_HIGH_WATER)
        bufferevent_disable(c->ub, EV_READ); /* resumed by the client's write callback */
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    if (!(c->flags & CF_RESP_HEAD) && response_head(c) != 0)
        return;
    response_body(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    /* The request (its head, at least) is out with the handshake's ACK: back to quick ACKs
     * before the answer comes, so a 101 followed by frames is not held by a Nagle target
     * waiting on our ACK. */
    conn_quickack_once(c, CF_UP_QUICKACK, c->ufd);
    /* The target took the body bytes waiting for it: read more from the client. */
    if (c->state == CS_FORWARD && !(c->flags & CF_REQ_DONE))
        front_pump_request_body(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    if (c->state == CS_CONNECT) {
        if (what & BEV_EVENT_CONNECTED) {
            connected(c);
            return;
        }
        if (what & BEV_EVENT_TIMEOUT) {
            connect_failed(c, SL_ERR_CONNECT_TIMEOUT);
        } else {
            int err = evutil_socket_geterror(c->ufd);

            connect_failed(c, err == ECONNREFUSED ? SL_ERR_CONNECT_REFUSED
                                                  : SL_ERR_CONNECT_ERROR);
        }
        upstream_start(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (!(c->flags & CF_RESP_HEAD)) {
            front_reply_error(c, 504, SL_ERR_TARGET_TIMEOUT);
            return;
        }
        c->err = SL_ERR_TARGET_TIMEOUT;
    } else if (what & BEV_EVENT_EOF) {
        if (c->flags & CF_RESP_HEAD) {
            if (c->respb.kind == SL_BODY_CLOSE) {
                /* The close ends this body: pass on what is buffered and finish. */
                struct evbuffer *in = bufferevent_get_input(bev);

                c->resp_bytes += evbuffer_get_length(in);
                c->down_bytes += evbuffer_get_length(in);
                evbuffer_add_buffer(bufferevent_get_output(c->cb), in);
                front_request_done(c);
                return;
            }
            c->err = SL_ERR_TARGET_CLOSED;
        } else {
            front_reply_error(c, 502, SL_ERR_TARGET_CLOSED);
            return;
        }
    } else {
        if (!(c->flags & CF_RESP_HEAD)) {
            front_reply_error(c, 502, SL_ERR_TARGET_RESET);
            return;
        }
        c->err = SL_ERR_TARGET_RESET;
    }
    /* Mid-response: the client learns from the close that the response is cut short. */
    front_log_request(c, "FORWARD");
    front_close(c);
}
