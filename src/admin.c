/* The admin endpoints (see admin.h). Everything here reads: the config snapshot, the workers'
 * own counters, the shared per-target and per-rule atomics. Nothing a worker does waits on it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "sluice/addr.h"
#include "sluice/admin.h"
#include "sluice/balancer.h"
#include "sluice/config.h"
#include "sluice/health.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/sync.h"
#include "sluice/tls.h"
#include "sluice/worker.h"

struct sl_admin {
    struct evhttp *http;
    struct sl_config *cfg;
    struct sl_workers *ws;
    const struct sl_sync *sync;
    bool draining;
};

/* Sums of every worker's counters. */
struct totals {
    uint64_t accepted, http_active, tunnels_active, tunnels_total, up, down, no_target;
    uint64_t fails[SL_ERR_COUNT];
};

static void sum_workers(const struct sl_admin *a, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; a->ws && i < sl_workers_count(a->ws); i++) {
        const struct sl_worker_stats *s = sl_workers_stats(a->ws, i);

        t->accepted += sl_stat_get(&s->accepted);
        t->http_active += sl_stat_get(&s->http_active);
        t->tunnels_active += sl_stat_get(&s->tunnels_active);
        t->tunnels_total += sl_stat_get(&s->tunnels_total);
        t->up += sl_stat_get(&s->tunnel_bytes_up);
        t->down += sl_stat_get(&s->tunnel_bytes_down);
        t->no_target += sl_stat_get(&s->no_target);
        for (int k = 0; k < SL_ERR_COUNT; k++)
            t->fails[k] += sl_stat_get(&s->connect_fails[k]);
    }
}

static const char *group_label(const struct sl_target_group *g)
{
    return g->name ? g->name : g->id ? g->id : "";
}

/* Whether target <i> of <g> repeats an earlier one (same shared state): listed once. */
static bool seen_before(const struct sl_target_group *g, size_t i)
{
    for (size_t k = 0; k < i; k++) {
        if (g->targets[k].port == g->targets[i].port &&
            sl_addr_equal(&g->targets[k].addr, &g->targets[i].addr))
            return true;
    }
    return false;
}

/* ---- /metrics ---------------------------------------------------------------------------- */

/* A label value as the text format wants it: \, " and newline escaped. */
static void label(struct evbuffer *b, const char *name, const char *v, bool first)
{
    evbuffer_add_printf(b, "%s%s=\"", first ? "" : ",", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(b, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
    evbuffer_add(b, "\"", 1);
}

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct evbuffer *b, const char *name, const char *type, const char *help,
                uint64_t v)
{
    family(b, name, type, help);
    evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void rule_line(const char *listener, const char *frule, const char *rule,
                      const uint64_t by_class[6], void *arg)
{
    static const char *const cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    struct evbuffer *b = arg;

    for (int k = 0; k < 6; k++) {
        uint64_t v = by_class[k];

        if (k == 0 && v == 0)
            continue; /* "none" only once something ended without an answer */
        evbuffer_add(b, "sluice_requests_total{", 22);
        label(b, "listener", listener, true);
        label(b, "forwarding_rule", frule, false);
        label(b, "rule", rule, false);
        label(b, "class", cls[k], false);
        evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v);
    }
}

enum tmetric {
    TM_UP,
    TM_MAINT,
    TM_ACTIVE,
    TM_PICKS,
    TM_FAILS,
    TM_BYTES,
    TM_CHECKS,
    TM_CHECK_FAILS,
    TM_CHANGES,
    TM_COUNT
};

static const struct {
    const char *name, *type, *help;
} tmetrics[TM_COUNT] = {
    {"sluice_target_up", "gauge",
     "1 while the target's health check passes (or checks are disabled), 0 while it is DOWN."},
    {"sluice_target_maintenance", "gauge", "1 when the target has maintenanceEnabled."},
    {"sluice_target_active_connections", "gauge", "Open connections and tunnels to the target."},
    {"sluice_target_connections_total", "counter", "Connections sent to the target."},
    {"sluice_target_connect_failures_total", "counter",
     "Connects to the target that failed while proxying."},
    {"sluice_target_bytes_total", "counter",
     "Bytes to (direction=\"out\") and from (\"in\") the target, tunnels included (live)."},
    {"sluice_target_checks_total", "counter", "Health checks done."},
    {"sluice_target_check_failures_total", "counter",
     "Health checks failed, passive failures included."},
    {"sluice_target_state_changes_total", "counter", "UP/DOWN changes."},
};

/* <gid>: the group's id, or "#<index>" for a group without one (the name may repeat). */
static void target_metric(struct evbuffer *b, enum tmetric m, const struct sl_target_group *g,
                          const char *gid, const struct sl_target *t,
                          struct sl_target_state *st)
{
    char tl[SL_ADDR_STRLEN + 8];
    uint64_t v = 0;

    sl_hostport(t->ip, t->port_orig, tl);
    for (int dir = 0; dir < (m == TM_BYTES ? 2 : 1); dir++) {
        switch (m) {
        case TM_UP:
            v = !atomic_load(&st->down);
            break;
        case TM_MAINT:
            v = t->maintenance_enabled;
            break;
        case TM_ACTIVE:
            v = atomic_load(&st->active);
            break;
        case TM_PICKS:
            v = atomic_load(&st->picks);
            break;
        case TM_FAILS:
            v = atomic_load(&st->fails);
            break;
        case TM_BYTES:
            v = dir == 0 ? atomic_load(&st->bytes_out) : atomic_load(&st->bytes_in);
            break;
        case TM_CHECKS:
            v = atomic_load(&st->checks);
            break;
        case TM_CHECK_FAILS:
            v = atomic_load(&st->check_fails);
            break;
        case TM_CHANGES:
            v = atomic_load(&st->changes);
            break;
        case TM_COUNT:
            break;
        }
        evbuffer_add_printf(b, "%s{", tmetrics[m].name);
        label(b, "group", group_label(g), true);
        label(b, "group_id", gid, false);
        label(b, "target", tl, false);
        if (m == TM_BYTES)
            label(b, "direction", dir == 0 ? "out" : "in", false);
        evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v);
    }
}

static void render_tls(struct evbuffer *b)
{
    struct sl_tls_stats ts;

    sl_tls_get_stats(&ts);
    one(b, "sluice_tls_handshakes_total", "counter", "TLS handshakes completed.", ts.handshakes);
    one(b, "sluice_tls_resumed_total", "counter",
        "TLS handshakes that resumed a session (ticket or session id).", ts.resumed);
    one(b, "sluice_tls_sni_unknown_total", "counter",
        "TLS handshakes whose SNI matched no certificate of the listener (the first one served).",
        ts.sni_unknown);
    family(b, "sluice_tls_handshake_errors_total", "counter",
           "TLS handshakes that did not complete, by cause.");
    for (int i = 0; i < SL_TLS_N_FAIL; i++)
        evbuffer_add_printf(b, "sluice_tls_handshake_errors_total{cause=\"%s\"} %llu\n",
                            sl_tls_fail_name((enum sl_tls_fail)i),
                            (unsigned long long)ts.failed[i]);
    family(b, "sluice_tls_ktls", "gauge",
           "1 once the kernel has taken the TLS record keys (kTLS) of a connection, by direction.");
    evbuffer_add_printf(b,
                        "sluice_tls_ktls{direction=\"send\"} %d\n"
                        "sluice_tls_ktls{direction=\"recv\"} %d\n",
                        ts.ktls_send, ts.ktls_recv);
}

static void render_metrics(struct sl_admin *a, struct evbuffer *b)
{
    static const struct {
        enum sl_err e;
        const char *reason;
    } reasons[] = {
        {SL_ERR_CONNECT_REFUSED, "refused"},
        {SL_ERR_CONNECT_TIMEOUT, "timeout"},
        {SL_ERR_CONNECT_ERROR, "error"},
        {SL_ERR_RESOURCES, "resources"},
    };
    const struct sl_config *cfg = a->cfg;
    struct totals t;

    sum_workers(a, &t);
    family(b, "sluice_build_info", "gauge", "Always 1; the version is a label.");
    evbuffer_add_printf(b, "sluice_build_info{version=\"%s\"} 1\n", SL_VERSION);
    one(b, "sluice_start_time_seconds", "gauge", "When the process started (Unix time).",
        sl_stat_get(&sl_config_info.start_time_ms) / 1000);
    one(b, "sluice_config_generation", "gauge", "Config snapshots loaded since start (1 = the first).",
        sl_stat_get(&sl_config_info.generation));
    one(b, "sluice_config_load_timestamp_seconds", "gauge",
        "When the running config was loaded (Unix time).",
        sl_stat_get(&sl_config_info.load_time_ms) / 1000);
    family(b, "sluice_config_load_duration_seconds", "gauge",
           "How long loading and checking the running config took.");
    evbuffer_add_printf(b, "sluice_config_load_duration_seconds %.6f\n",
                        (double)sl_stat_get(&sl_config_info.load_duration_us) / 1e6);
    one(b, "sluice_workers", "gauge", "Worker threads.", a->ws ? sl_workers_count(a->ws) : 0);
    one(b, "sluice_connections_accepted_total", "counter", "Client connections accepted.",
        t.accepted);
    one(b, "sluice_connections_active", "gauge",
        "Open client connections (HTTP phase and tunnels).", t.http_active + t.tunnels_active);
    family(b, "sluice_requests_total", "counter",
           "Requests answered, by listener, forwarding rule, http rule (\"\" = none matched or "
           "refused before routing) and status class (\"none\" = ended without an answer).");
    sl_rule_stats_foreach(rule_line, b);
    one(b, "sluice_tunnels_active", "gauge", "Open WebSocket tunnels.", t.tunnels_active);
    one(b, "sluice_tunnels_total", "counter", "WebSocket tunnels opened.", t.tunnels_total);
    family(b, "sluice_tunnel_bytes_total", "counter",
           "Bytes through tunnels, updated every second while they live.");
    evbuffer_add_printf(b, "sluice_tunnel_bytes_total{direction=\"client_to_target\"} %llu\n"
                        "sluice_tunnel_bytes_total{direction=\"target_to_client\"} %llu\n",
                        (unsigned long long)t.up, (unsigned long long)t.down);
    family(b, "sluice_upstream_connect_failures_total", "counter",
           "Failed connects to targets, by reason.");
    for (size_t i = 0; i < SL_ARRAY_LEN(reasons); i++)
        evbuffer_add_printf(b, "sluice_upstream_connect_failures_total{reason=\"%s\"} %llu\n",
                            reasons[i].reason, (unsigned long long)t.fails[reasons[i].e]);
    one(b, "sluice_no_target_total", "counter",
        "Requests answered 503 because no target of the group was available.", t.no_target);
    render_tls(b);
    one(b, "sluice_log_dropped_total", "counter", "Log lines dropped: the log queue was full.",
        sl_log_dropped());
    if (a->sync) {
        const struct sl_sync_status *ss = sl_sync_status(a->sync);

        one(b, "sluice_sync_up", "gauge", "1 while the last poll of the IONOS API succeeded.",
            ss->ok);
        one(b, "sluice_sync_from_cache", "gauge",
            "1 while the running config came from the sync cache (the API has not answered).",
            ss->from_cache);
        one(b, "sluice_sync_last_success_timestamp_seconds", "gauge",
            "When a poll of the API last succeeded (Unix time; 0 = never).",
            ss->last_success_ms / 1000);
        one(b, "sluice_sync_polls_total", "counter", "Polls of the API.", ss->polls);
        one(b, "sluice_sync_failures_total", "counter",
            "Polls that failed (API unreachable or erring, or its config invalid).",
            ss->failures);
        one(b, "sluice_sync_updates_total", "counter",
            "Configs from the API that became the running config.", ss->updates);
    }
    for (int m = 0; m < TM_COUNT; m++) {
        family(b, tmetrics[m].name, tmetrics[m].type, tmetrics[m].help);
        for (size_t gi = 0; cfg && gi < cfg->n_tgroups; gi++) {
            const struct sl_target_group *g = &cfg->tgroups[gi];
            char gid[24];

            if (!g->id)
                snprintf(gid, sizeof(gid), "#%zu", gi);
            for (size_t k = 0; k < g->n_targets; k++) {
                struct sl_target_state *st;

                if (seen_before(g, k) || !(st = sl_target_state_get(g, &g->targets[k])))
                    continue;
                target_metric(b, (enum tmetric)m, g, g->id ? g->id : gid, &g->targets[k], st);
            }
        }
    }
}

/* ---- /status ----------------------------------------------------------------------------- */

static json_t *iso_time(uint64_t ms)
{
    char buf[SL_ISO_LEN];

    return ms ? json_string(sl_iso_ms(ms, buf)) : json_null();
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *status_check(const struct sl_target_group *g)
{
    json_t *c = json_pack("{s:s, s:I, s:I, s:I}", "type", g->http_check ? "HTTP" : "TCP",
                          "checkInterval", (json_int_t)g->health.check_interval_ms,
                          "checkTimeout", (json_int_t)g->health.check_timeout_ms,
                          "retries", (json_int_t)g->health.retries);
    const struct sl_http_health_check *h = g->http_check;

    if (h)
        json_object_set_new(c, "http", json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "method",
                                                 sl_http_method_name(h->method), "path", h->path,
                                                 "matchType", sl_match_type_name(h->match_type),
                                                 "response", h->response, "regex", h->regex,
                                                 "negate", h->negate));
    return c;
}

static json_t *status_target(const struct sl_target *t, struct sl_target_state *st)
{
    char tl[SL_ADDR_STRLEN + 8], mapped[SL_ADDR_STRLEN + 8], rbuf[32];
    int res = atomic_load(&st->last_result), code = atomic_load(&st->last_status);
    bool down = atomic_load(&st->down);
    const char *state = t->maintenance_enabled ? "MAINTENANCE"
                        : down                 ? "DOWN"
                        : t->weight == 0       ? "WEIGHT_0"
                                               : "UP";
    json_t *o;

    sl_hostport(t->ip, t->port_orig, tl);
    o = json_pack("{s:s, s:s, s:i, s:s, s:b, s:b, s:s, s:b}", "target", tl, "address",
                  sl_addr_format_port(&t->addr, t->port, mapped), "weight", (int)t->weight,
                  "proxyProtocol", sl_proxy_protocol_name(t->proxy_protocol),
                  "healthCheckEnabled", t->health_check_enabled, "maintenanceEnabled",
                  t->maintenance_enabled, "state", state, "eligible",
                  !down && !t->maintenance_enabled && t->weight > 0);
    json_object_set_new(o, "health", json_string(!t->health_check_enabled ? "UNCHECKED"
                                                 : down                   ? "DOWN"
                                                                          : "UP"));
    json_object_set_new(o, "lastCheck",
                        res == SL_CHECK_NONE
                            ? json_null()
                            : json_pack("{s:b, s:s, s:o, s:o}", "ok", res == SL_CHECK_OK,
                                        "result", sl_check_result_str(res, code, rbuf),
                                        "httpStatus", code ? json_integer(code) : json_null(),
                                        "at", iso_time(atomic_load(&st->last_check_ms))));
    json_object_set_new(o, "downReason",
                        down ? json_string(sl_check_result_str(atomic_load(&st->down_result),
                                                               atomic_load(&st->down_status),
                                                               rbuf))
                             : json_null());
    json_object_set_new(o, "activeConnections", json_integer(atomic_load(&st->active)));
    json_object_set_new(o, "connections", json_integer((json_int_t)atomic_load(&st->picks)));
    json_object_set_new(o, "connectFailures", json_integer((json_int_t)atomic_load(&st->fails)));
    json_object_set_new(o, "bytesOut", json_integer((json_int_t)atomic_load(&st->bytes_out)));
    json_object_set_new(o, "bytesIn", json_integer((json_int_t)atomic_load(&st->bytes_in)));
    json_object_set_new(o, "checks", json_integer((json_int_t)atomic_load(&st->checks)));
    json_object_set_new(o, "checkFailures",
                        json_integer((json_int_t)atomic_load(&st->check_fails)));
    json_object_set_new(o, "stateChanges", json_integer((json_int_t)atomic_load(&st->changes)));
    return o;
}

static json_t *status_listeners(const struct sl_config *cfg)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];
        char lst[SL_ADDR_STRLEN + 8], bound[SL_ADDR_STRLEN + 8];
        json_t *rules = json_array();

        sl_hostport(fr->listener_ip, fr->port_orig, lst);
        for (size_t k = 0; k < fr->n_rules; k++) {
            const struct sl_http_rule *r = &fr->rules[k];
            json_t *jr = json_pack("{s:o, s:s, s:i}", "name", jstr(r->name), "type",
                                   sl_rule_type_name(r->type), "conditions", (int)r->n_conds);

            if (r->type == SL_RULE_FORWARD)
                json_object_set_new(jr, "targetGroup", jstr(r->target_group_ref));
            else
                json_object_set_new(jr, "statusCode", json_integer(r->status_code));
            json_array_append_new(rules, jr);
        }
        json_array_append_new(arr, json_pack("{s:o, s:o, s:s, s:s, s:I, s:o}", "id", jstr(fr->id),
                                             "name", jstr(fr->name), "listener", lst, "bound",
                                             sl_addr_format_port(&fr->listen, fr->port, bound),
                                             "clientTimeout", (json_int_t)fr->client_timeout_ms,
                                             "httpRules", rules));
    }
    return arr;
}

static json_t *status_groups(const struct sl_config *cfg)
{
    json_t *arr = json_array();

    for (size_t gi = 0; gi < cfg->n_tgroups; gi++) {
        const struct sl_target_group *g = &cfg->tgroups[gi];
        json_t *targets = json_array();
        int eligible = 0;

        for (size_t k = 0; k < g->n_targets; k++) {
            struct sl_target_state *st;
            json_t *jt;

            if (seen_before(g, k) || !(st = sl_target_state_get(g, &g->targets[k])))
                continue;
            jt = status_target(&g->targets[k], st);
            eligible += json_is_true(json_object_get(jt, "eligible"));
            json_array_append_new(targets, jt);
        }
        json_array_append_new(arr, json_pack("{s:o, s:o, s:s, s:o, s:i, s:o}", "id", jstr(g->id),
                                             "name", jstr(g->name), "algorithm",
                                             sl_algorithm_name(g->algorithm), "healthCheck",
                                             status_check(g), "eligibleTargets", eligible,
                                             "targets", targets));
    }
    return arr;
}

static json_t *render_status(struct sl_admin *a)
{
    struct totals t;
    uint64_t start = sl_stat_get(&sl_config_info.start_time_ms), now_ms;
    json_t *o;

    now_ms = sl_clock_ms(CLOCK_REALTIME);
    sum_workers(a, &t);
    o = json_pack("{s:s, s:i, s:o, s:f, s:b, s:i}", "version", SL_VERSION, "pid", (int)getpid(),
                  "started", iso_time(start), "uptimeSeconds", (double)(now_ms - start) / 1e3,
                  "draining", a->draining, "workers",
                  a->ws ? (int)sl_workers_count(a->ws) : 0);
    json_object_set_new(o, "config",
                        json_pack("{s:o, s:I, s:o}", "origin", jstr(a->cfg ? a->cfg->origin : NULL),
                                  "generation",
                                  (json_int_t)sl_stat_get(&sl_config_info.generation), "loaded",
                                  iso_time(sl_stat_get(&sl_config_info.load_time_ms))));
    json_object_set_new(o, "connections", json_pack("{s:I, s:I}", "accepted",
                                                    (json_int_t)t.accepted, "active",
                                                    (json_int_t)(t.http_active + t.tunnels_active)));
    json_object_set_new(o, "tunnels",
                        json_pack("{s:I, s:I, s:I, s:I}", "active", (json_int_t)t.tunnels_active,
                                  "total", (json_int_t)t.tunnels_total, "bytesUp",
                                  (json_int_t)t.up, "bytesDown", (json_int_t)t.down));
    if (a->sync) {
        const struct sl_sync_status *ss = sl_sync_status(a->sync);

        json_object_set_new(o, "sync", json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:i, s:I, s:I, "
                                                 "s:I}",
                                                 "url", ss->url, "ok", ss->ok, "fromCache",
                                                 ss->from_cache, "lastSuccess",
                                                 iso_time(ss->last_success_ms), "lastAttempt",
                                                 iso_time(ss->last_attempt_ms), "lastError",
                                                 ss->last_error[0] ? json_string(ss->last_error)
                                                                   : json_null(),
                                                 "consecutiveFailures",
                                                 (int)ss->consecutive_failures, "polls",
                                                 (json_int_t)ss->polls, "failures",
                                                 (json_int_t)ss->failures, "updates",
                                                 (json_int_t)ss->updates));
    }
    if (a->cfg) {
        json_object_set_new(o, "listeners", status_listeners(a->cfg));
        json_object_set_new(o, "targetGroups", status_groups(a->cfg));
    }
    return o;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                  struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct sl_admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evbuffer *b = evbuffer_new();

    if (!b) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    if (!path)
        path = "/";
    /* GET only: evhttp would send a HEAD answer's body, which breaks a keep-alive client. */
    if (cmd != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        evbuffer_add_printf(b, "405 Method Not Allowed: the admin endpoints only read\n");
        reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", b);
    } else if (!strcmp(path, "/metrics")) {
        render_metrics(a, b);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
    } else if (!strcmp(path, "/status")) {
        json_t *o = render_status(a);
        char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

        if (s) {
            evbuffer_add(b, s, strlen(s));
            evbuffer_add(b, "\n", 1);
            reply(req, 200, "OK", "application/json", b);
        } else {
            evbuffer_add_printf(b, "500 Internal Server Error: out of memory\n");
            reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", b);
        }
        free(s);
        json_decref(o);
    } else if (!strcmp(path, "/healthz")) {
        evbuffer_add_printf(b, a->draining ? "draining\n" : "ok\n");
        reply(req, a->draining ? 503 : 200, a->draining ? "Service Unavailable" : "OK",
              "text/plain; charset=utf-8", b);
    } else {
        evbuffer_add_printf(b, "404 Not Found: try /metrics, /status or /healthz\n");
        reply(req, 404, "Not Found", "text/plain; charset=utf-8", b);
    }
    evbuffer_free(b);
}

struct sl_admin *sl_admin_start(struct event_base *base, const char *addr)
{
    struct sl_admin *a = calloc(1, sizeof(*a));
    struct sl_addr ip;
    uint16_t port;
    char host[SL_ADDR_STRLEN];

    if (!a || sl_addr_parse_port(addr, &ip, &port) == -1 || !(a->http = evhttp_new(base))) {
        sl_log(SL_LOG_ERR, "admin endpoint %s: %s", addr,
               a ? "not IP:PORT or out of memory" : "out of memory");
        sl_admin_free(a);
        return NULL;
    }
    /* Small answers to a few local scrapers: bound what a misbehaving one can hold. */
    evhttp_set_max_headers_size(a->http, 16 * 1024);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(a->http, on_request, a);
    errno = 0;
    if (!evhttp_bind_socket_with_handle(a->http, sl_addr_format(&ip, host), port)) {
        sl_log(SL_LOG_ERR, "admin endpoint %s: cannot listen: %s", addr,
               errno ? strerror(errno) : "bind failed");
        sl_admin_free(a);
        return NULL;
    }
    sl_log(SL_LOG_INFO, "admin endpoint on http://%s/ (/metrics, /status, /healthz)", addr);
    return a;
}

void sl_admin_set(struct sl_admin *a, struct sl_config *cfg, struct sl_workers *ws)
{
    struct sl_config *old = a->cfg;

    a->cfg = cfg ? sl_config_ref(cfg) : NULL;
    a->ws = ws;
    if (old)
        sl_config_unref(old);
}

void sl_admin_set_sync(struct sl_admin *a, const struct sl_sync *s)
{
    a->sync = s;
}

void sl_admin_set_draining(struct sl_admin *a)
{
    a->draining = true;
}

void sl_admin_free(struct sl_admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    if (a->cfg)
        sl_config_unref(a->cfg);
    free(a);
}
