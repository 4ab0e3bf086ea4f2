/* config: loads the IONOS resources (ALB, forwarding rules, target groups) and the `sluice`
 * block into an immutable, refcounted snapshot. Every field follows ionos-alb-api.md: type,
 * enum, range, unit, default. Every error names file:line:col and the JSON path; loading goes
 * on after an error so that one run reports all of them. The field readers live in
 * config_read.c, lint warnings in config_lint.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"
#include "sluice/config.h"
#include "sluice/file.h"
#include "sluice/http.h"
#include "sluice/regex.h"
#include "sluice/router.h"

#define MAX_CONFIG_FILE (64u * 1024 * 1024)

/* ---- sluice block ---------------------------------------------------------------------- */

static const char *const local_keys[] = {
    "threads",       "admin",        "addressMap",    "certificates",      "sync",
    "tunnelTimeout", "drainTimeout", "headerTimeout", "closeOnTargetDown", "connectTimeout",
    "accessLog",     "pipeSize",     "splice",        "busyPoll",
};

static void load_address_map(struct ld *ld, const json_t *obj, struct sl_map_entry *v, size_t *n)
{
    const char *k;
    json_t *val;

    json_object_foreach((json_t *)obj, k, val)
    {
        struct sl_map_entry *m = &v[*n];

        cfg_push_key(ld, k);
        if (!json_is_string(val)) {
            cfg_bad_type(ld, val, "a string: the local IP (or IP:PORT) to use instead");
        } else if (cfg_parse_map_side(k, &m->from, &m->from_port) == -1) {
            err(ld, "\"%s\" is not an IP address or IP:PORT to map from", k);
        } else if (cfg_parse_map_side(json_string_value(val), &m->to, &m->to_port) == -1) {
            err(ld, "\"%s\" is not an IP address or IP:PORT to map to", json_string_value(val));
        } else if (m->from.family != m->to.family) {
            err(ld, "maps an IPv%d address to an IPv%d one; both sides must be of one family",
                m->from.family == AF_INET ? 4 : 6, m->to.family == AF_INET ? 4 : 6);
        } else {
            (*n)++;
        }
        cfg_pop(ld);
    }
}

/* <name> as the files are opened: a relative one joined to base_dir (sl_load_opts). */
static const char *file_name(struct ld *ld, const char *name)
{
    const char *dir = ld->opts ? ld->opts->base_dir : NULL;

    if (!name || name[0] == '/' || !dir || !dir[0] || !strcmp(dir, "."))
        return name;
    return sl_arena_printf(ld->a, "%s/%s", dir, name);
}

static void load_certificates(struct ld *ld, const json_t *obj)
{
    struct sl_local *l = &ld->cfg->local;
    struct sl_certificate_ref *v;
    const char *k;
    json_t *val;

    v = sl_arena_calloc(ld->a, json_object_size(obj) + 1, sizeof(*v));
    json_object_foreach((json_t *)obj, k, val)
    {
        struct sl_certificate_ref *c = &v[l->n_certificates];

        cfg_push_key(ld, k);
        if (!json_is_object(val)) {
            cfg_bad_type(ld, val, "an object with \"cert\" and \"key\" file names");
        } else {
            int ok = cfg_get_str(ld, val, "cert", true, "the PEM certificate file", &c->cert) == 1;

            ok &= cfg_get_str(ld, val, "key", true, "the PEM private key file", &c->key) == 1;
            ok &= cfg_get_str(ld, val, "chain", false, "a PEM chain file", &c->chain) >= 0;
            ok &= cfg_get_str(ld, val, "ocsp", false, "a DER OCSP response file", &c->ocsp) >= 0;
            if (ok) {
                c->ref = sl_arena_strdup(ld->a, k);
                c->loc = cfg_here(ld);
                c->cert_loc = cfg_here_key(ld, "cert");
                c->key_loc = cfg_here_key(ld, "key");
                c->chain_loc = cfg_here_key(ld, "chain");
                c->ocsp_loc = cfg_here_key(ld, "ocsp");
                c->cert = file_name(ld, c->cert);
                c->key = file_name(ld, c->key);
                c->chain = file_name(ld, c->chain);
                c->ocsp = file_name(ld, c->ocsp);
                l->n_certificates++;
            }
        }
        cfg_pop(ld);
    }
    l->certificates = v;
}

static void load_local(struct ld *ld, const json_t *root)
{
    struct sl_local *l = &ld->cfg->local;
    const struct sl_load_opts *o = ld->opts;
    struct sl_map_entry *map;
    json_t *s = cfg_get_obj(ld, root, "sluice", false, NULL), *m, *sync;
    size_t n_map = 0, i;
    long long v;
    const char *k;
    json_t *val;

    l->sync_interval_s = 10;
    l->header_timeout_ms = 10000;
    l->connect_timeout_ms = 5000;
    l->drain_timeout_ms = 30000;
    l->access_log = "-";
    l->pipe_size = 256 * 1024;
    m = s ? cfg_member(s, "addressMap") : NULL;
    map = sl_arena_calloc(
        ld->a, (m && json_is_object(m) ? json_object_size(m) : 0) + (o ? o->n_map : 0) + 1,
        sizeof(*map));
    if (s) {
        cfg_push_key(ld, "sluice");
        json_object_foreach(s, k, val)
        {
            for (i = 0; i < SL_ARRAY_LEN(local_keys); i++)
                if (!strcmp(k, local_keys[i]))
                    break;
            if (i == SL_ARRAY_LEN(local_keys)) {
                cfg_push_key(ld, k);
                warn(ld, "unknown sluice setting, ignored (known: threads, admin, addressMap, "
                         "certificates, sync, tunnelTimeout, drainTimeout, headerTimeout, "
                         "closeOnTargetDown, connectTimeout, accessLog, pipeSize, splice, "
                         "busyPoll)");
                cfg_pop(ld);
            }
        }
        if (cfg_get_int(ld, s, "threads", false, 0, 1024, "(0 = one per CPU)", &v) == 1)
            l->threads = (unsigned)v;
        if (cfg_get_str(ld, s, "admin", false, "an IP:PORT string, or \"off\"", &l->admin) == 1) {
            struct sl_addr a;
            uint16_t port;

            if (strcmp(l->admin, "off") && sl_addr_parse_port(l->admin, &a, &port) == -1) {
                cfg_push_key(ld, "admin");
                err(ld,
                    "\"%s\" is not IP:PORT (e.g. \"127.0.0.1:9900\" or \"[::1]:9900\") "
                    "or \"off\"",
                    l->admin);
                cfg_pop(ld);
            }
        }
        if ((m = cfg_get_obj(ld, s, "addressMap", false, NULL))) {
            cfg_push_key(ld, "addressMap");
            load_address_map(ld, m, map, &n_map);
            cfg_pop(ld);
        }
        if ((m = cfg_get_obj(ld, s, "certificates", false, NULL))) {
            cfg_push_key(ld, "certificates");
            load_certificates(ld, m);
            cfg_pop(ld);
        }
        if ((sync = cfg_get_obj(ld, s, "sync", false, NULL))) {
            cfg_push_key(ld, "sync");
            cfg_get_str(ld, sync, "datacenterId", true, "the data center's UUID",
                        &l->sync_datacenter_id);
            cfg_get_str(ld, sync, "applicationLoadBalancerId", true, "the ALB's UUID",
                        &l->sync_alb_id);
            if (cfg_get_int(ld, sync, "intervalSeconds", false, 1, 86400, "seconds", &v) == 1)
                l->sync_interval_s = (unsigned)v;
            cfg_get_str(ld, sync, "apiUrl", false, "the API's base URL", &l->sync_api_url);
            cfg_get_str(ld, sync, "caFile", false, "a PEM file of CA certificates",
                        &l->sync_ca_file);
            cfg_get_str(ld, sync, "cacheFile", false, "a file for the last good config",
                        &l->sync_cache_file);
            cfg_pop(ld);
        }
        if (cfg_get_int(ld, s, "tunnelTimeout", false, 0, INT32_MAXV, "ms (0 = clientTimeout)",
                        &v) == 1)
            l->tunnel_timeout_ms = (uint32_t)v;
        if (cfg_get_int(ld, s, "drainTimeout", false, 0, INT32_MAXV,
                        "ms (0 = close everything at once on SIGTERM)", &v) == 1) {
            l->drain_timeout_ms = (uint32_t)v;
            l->drain_timeout_set = true;
        }
        if (cfg_get_int(ld, s, "headerTimeout", false, 1, INT32_MAXV, "ms", &v) == 1)
            l->header_timeout_ms = (uint32_t)v;
        cfg_get_bool(ld, s, "closeOnTargetDown", &l->close_on_target_down);
        cfg_get_bool(ld, s, "splice", &l->splice);
        if (cfg_get_int(ld, s, "connectTimeout", false, 1, INT32_MAXV, "ms", &v) == 1)
            l->connect_timeout_ms = (uint32_t)v;
        if (cfg_get_int(ld, s, "pipeSize", false, 0, 1 << 30,
                        "bytes per splice pipe (0 = the kernel's default, 64 KiB)", &v) == 1)
            l->pipe_size = (uint32_t)v;
        if (cfg_get_int(ld, s, "busyPoll", false, 0, SL_BUSY_POLL_MAX_US,
                        "microseconds a worker keeps polling after its last event (0 = off)",
                        &v) == 1)
            l->busy_poll_us = (uint32_t)v;
        cfg_get_str(ld, s, "accessLog", false, "a file name, \"-\" (stdout) or \"off\"",
                    &l->access_log);
        cfg_pop(ld);
    }
    l->n_map_file = n_map;
    for (i = 0; o && i < o->n_map; i++)
        map[n_map++] = o->map[i];
    l->map = map;
    l->n_map = n_map;
}

/* ---- collections ----------------------------------------------------------------------- */

/* A list of resources: a plain array, or an API collection object with "items". Pushes the
 * key (and ".items") on the path; the caller pops with pop_collection. */
static json_t *get_collection(struct ld *ld, const json_t *obj, const char *key, int *pushed)
{
    json_t *v = cfg_member(obj, key);

    *pushed = 0;
    if (!v)
        return NULL;
    cfg_push_key(ld, key);
    *pushed = 1;
    if (json_is_object(v)) {
        json_t *items = cfg_member(v, "items");

        if (!items) {
            /* An API collection may come without items; one resource in place of the array
             * would be silently ignored, so say so. */
            if (cfg_member(v, "properties"))
                err(ld, "must be an array of resources; this is a single one: put it in [ ]");
            return NULL;
        }
        cfg_push_key(ld, "items");
        *pushed = 2;
        v = items;
    }
    if (!json_is_array(v)) {
        cfg_bad_type(ld, v, "an array (or a collection object with \"items\")");
        return NULL;
    }
    return v;
}

static void pop_n(struct ld *ld, int n)
{
    while (n-- > 0)
        cfg_pop(ld);
}

/* The "properties" of a resource envelope, and its optional "id". */
static json_t *resource(struct ld *ld, const json_t *r, const char **id, const char *what)
{
    json_t *p;

    *id = NULL;
    if (!json_is_object(r)) {
        cfg_bad_type(ld, r, what);
        return NULL;
    }
    cfg_get_str(ld, r, "id", false, "the resource id", id);
    p = cfg_get_obj(ld, r, "properties", true, "an object with the resource's properties");
    return p;
}

/* ---- target groups ----------------------------------------------------------------------- */

static const char *const algorithm_names[] = {"ROUND_ROBIN", "LEAST_CONNECTION", "RANDOM",
                                              "SOURCE_IP"};
static const char *const proxy_names[] = {"none", "v1", "v2", "v2ssl"};
static const char *const method_names[] = {"GET",   "HEAD",  "PUT",    "POST",
                                           "TRACE", "PATCH", "OPTIONS"};
static const char *const match_names[] = {"STATUS_CODE", "RESPONSE_BODY"};
static const char *const http_only[] = {"HTTP"};
static const char *const version_names[] = {"HTTP1", "HTTP2"};

const char *sl_algorithm_name(enum sl_algorithm a)
{
    return (unsigned)a < SL_ARRAY_LEN(algorithm_names) ? algorithm_names[a] : "?";
}

const char *sl_http_method_name(enum sl_http_method m)
{
    return (unsigned)m < SL_ARRAY_LEN(method_names) ? method_names[m] : "?";
}

const char *sl_match_type_name(enum sl_match_type t)
{
    return (unsigned)t < SL_ARRAY_LEN(match_names) ? match_names[t] : "?";
}

const char *sl_proxy_protocol_name(enum sl_proxy_protocol p)
{
    return (unsigned)p < SL_ARRAY_LEN(proxy_names) ? proxy_names[p] : "?";
}

static int load_ip(struct ld *ld, const json_t *obj, const char *key, const char *what,
                   const char **text, struct sl_addr *addr)
{
    if (cfg_get_str(ld, obj, key, true, what, text) != 1)
        return -1;
    if (sl_addr_parse(*text, addr) == -1) {
        cfg_push_key(ld, key);
        if (strchr(*text, '/'))
            err(ld, "\"%s\" is not an IP address: write it without the /mask", *text);
        else
            err(ld, "\"%s\" is not an IPv4 or IPv6 address", *text);
        cfg_pop(ld);
        return -1;
    }
    return 0;
}

/* The loaders below fill a slot that a rejected sibling may have used before (the array only
 * keeps what loaded): each starts from zero. */
static bool load_target(struct ld *ld, const json_t *t, struct sl_target *out)
{
    long long v;
    int e = 0;
    bool ok = true;

    memset(out, 0, sizeof(*out));
    out->weight = 1;
    out->health_check_enabled = true;
    out->loc = cfg_here(ld);
    if (!json_is_object(t)) {
        cfg_bad_type(ld, t, "an object with ip and port");
        return false;
    }
    ok &= load_ip(ld, t, "ip", "the target's IP address", &out->ip, &out->addr) == 0;
    if (cfg_get_int(ld, t, "port", true, 1, 65535, NULL, &v) == 1)
        out->port = out->port_orig = (uint16_t)v;
    else
        ok = false;
    if (cfg_get_int(ld, t, "weight", false, 0, 256, NULL, &v) == 1)
        out->weight = (uint16_t)v;
    if (cfg_get_enum(ld, t, "proxyProtocol", false, proxy_names, SL_ARRAY_LEN(proxy_names), &e) ==
        1)
        out->proxy_protocol = (enum sl_proxy_protocol)e;
    cfg_get_bool(ld, t, "healthCheckEnabled", &out->health_check_enabled);
    cfg_get_bool(ld, t, "maintenanceEnabled", &out->maintenance_enabled);
    if (ok)
        cfg_map_addr(&ld->cfg->local, &out->addr, &out->port);
    return ok;
}

static void load_health(struct ld *ld, const json_t *p, struct sl_target_group *g)
{
    json_t *h = cfg_get_obj(ld, p, "healthCheck", false, NULL);
    json_t *hh = cfg_get_obj(ld, p, "httpHealthCheck", false, NULL);
    long long v;
    bool has_timeout = false;

    g->health.check_interval_ms = 2000;
    g->health.retries = 3;
    if (h) {
        cfg_push_key(ld, "healthCheck");
        if (cfg_get_int(ld, h, "checkInterval", false, 1, INT32_MAXV, "ms", &v) == 1)
            g->health.check_interval_ms = (uint32_t)v;
        if (cfg_get_int(ld, h, "checkTimeout", false, 1, INT32_MAXV, "ms", &v) == 1) {
            g->health.check_timeout_ms = (uint32_t)v;
            has_timeout = true;
        }
        if (cfg_get_int(ld, h, "retries", false, 0, 65535, NULL, &v) == 1)
            g->health.retries = (uint32_t)v;
        cfg_pop(ld);
    }
    /* IONOS documents no default timeout; ionosctl uses 2000 ms. The interval caps it. */
    if (!has_timeout)
        g->health.check_timeout_ms = 2000;
    if (g->health.check_timeout_ms > g->health.check_interval_ms)
        g->health.check_timeout_ms = g->health.check_interval_ms;

    if (hh) {
        struct sl_http_health_check *c = sl_arena_calloc(ld->a, 1, sizeof(*c));
        int e;

        cfg_push_key(ld, "httpHealthCheck");
        c->loc = cfg_here(ld);
        c->path = "/";
        c->method = SL_METHOD_GET;
        if (cfg_get_str(ld, hh, "path", false, "a request path", &c->path) == 1 &&
            c->path[0] != '/') {
            cfg_push_key(ld, "path");
            err(ld, "\"%s\" must start with '/'", c->path);
            cfg_pop(ld);
        }
        if (cfg_get_enum(ld, hh, "method", false, method_names, SL_ARRAY_LEN(method_names), &e) ==
            1)
            c->method = (enum sl_http_method)e;
        int mt =
            cfg_get_enum(ld, hh, "matchType", true, match_names, SL_ARRAY_LEN(match_names), &e);
        int rx = cfg_get_bool(ld, hh, "regex", &c->regex);

        if (mt == 1)
            c->match_type = (enum sl_match_type)e;
        cfg_get_bool(ld, hh, "negate", &c->negate);
        /* The response is judged by matchType and regex: not when either was wrong. */
        if (cfg_get_str(ld, hh, "response", true,
                        "the expected status code or body (matchType decides)",
                        &c->response) == 1 &&
            mt == 1 && rx != -1) {
            if (c->regex) {
                c->re = cfg_compile_at(ld, "response", c->response, false);
            } else if (c->match_type == SL_MATCH_STATUS_CODE) {
                char *end;
                long code = strtol(c->response, &end, 10);

                if (*end || end == c->response || code < 100 || code > 599) {
                    cfg_push_key(ld, "response");
                    err(ld,
                        "\"%s\" is not a status code; with matchType STATUS_CODE it must be "
                        "100 to 599 (or set regex: true)",
                        c->response);
                    cfg_pop(ld);
                }
            }
        }
        g->http_check = c;
        cfg_pop(ld);
    }
}

static void load_target_groups(struct ld *ld, const json_t *root)
{
    int pushed;
    json_t *arr = get_collection(ld, root, "targetGroups", &pushed), *r;
    size_t i, j, k, n = arr ? json_array_size(arr) : 0;
    struct sl_target_group *v = sl_arena_calloc(ld->a, n + 1, sizeof(*v));

    ld->tg = v;
    json_array_foreach(arr, i, r)
    {
        struct sl_target_group *g = &v[ld->n_tg];
        json_t *p, *ta;
        int e;

        cfg_push_index(ld, i);
        g->loc = cfg_here(ld);
        if (!(p = resource(ld, r, &g->id, "a target group object with \"properties\""))) {
            cfg_pop(ld);
            continue;
        }
        cfg_push_key(ld, "properties");
        cfg_get_str(ld, p, "name", true, "the target group's name", &g->name);
        if (cfg_get_enum(ld, p, "algorithm", true, algorithm_names, SL_ARRAY_LEN(algorithm_names),
                         &e) == 1)
            g->algorithm = (enum sl_algorithm)e;
        cfg_get_enum(ld, p, "protocol", true, http_only, 1, &e);
        if (cfg_get_enum(ld, p, "protocolVersion", false, version_names,
                         SL_ARRAY_LEN(version_names), &e) == 1)
            g->protocol_version = (enum sl_protocol_version)e;
        g->targets_loc = cfg_here_key(ld, "targets");
        if ((ta = cfg_get_arr(ld, p, "targets"))) {
            struct sl_target *t = sl_arena_calloc(ld->a, json_array_size(ta) + 1, sizeof(*t));
            json_t *tv;

            cfg_push_key(ld, "targets");
            json_array_foreach(ta, j, tv)
            {
                cfg_push_index(ld, j);
                if (load_target(ld, tv, &t[g->n_targets])) {
                    for (k = 0; k < g->n_targets; k++) {
                        struct sl_addr a, b;
                        char at[SL_ADDR_STRLEN + 8];

                        /* Compare as written (before the map): "::1" and "0::1" are one. */
                        sl_addr_parse(t[k].ip, &a);
                        sl_addr_parse(t[g->n_targets].ip, &b);
                        if (sl_addr_equal(&a, &b) && t[k].port_orig == t[g->n_targets].port_orig) {
                            err(ld, "duplicate target %s (also at targets[%zu])",
                                sl_addr_format_port(&a, t[k].port_orig, at), k);
                            break;
                        }
                    }
                    g->n_targets++;
                }
                cfg_pop(ld);
            }
            g->targets = t;
            cfg_pop(ld);
        }
        load_health(ld, p, g);
        cfg_pop(ld);
        for (k = 0; g->id && k < ld->n_tg; k++) {
            if (v[k].id && !strcmp(v[k].id, g->id)) {
                err(ld, "duplicate target group id \"%s\" (also %s)", g->id, v[k].loc.path);
                break;
            }
        }
        ld->n_tg++;
        cfg_pop(ld);
    }
    pop_n(ld, pushed);
    ld->cfg->tgroups = v;
    ld->cfg->n_tgroups = ld->n_tg;
}

/* ---- http rules and conditions ----------------------------------------------------------- */

static const char *const cond_type_names[] = {"HEADER", "PATH",   "QUERY",    "METHOD",
                                              "HOST",   "COOKIE", "SOURCE_IP"};
/* Index 0 of enum sl_cond_op is SL_OP_NONE, which is not a JSON value. */
static const char *const cond_op_names[] = {"EXISTS",  "CONTAINS",    "EQUALS",
                                            "MATCHES", "STARTS_WITH", "ENDS_WITH"};
static const char *const rule_type_names[] = {"FORWARD", "STATIC", "REDIRECT"};

const char *sl_cond_type_name(enum sl_cond_type t)
{
    return (unsigned)t < SL_ARRAY_LEN(cond_type_names) ? cond_type_names[t] : "?";
}

const char *sl_cond_op_name(enum sl_cond_op op)
{
    if (op == SL_OP_NONE)
        return "NONE";
    return (unsigned)op - 1 < SL_ARRAY_LEN(cond_op_names) ? cond_op_names[op - 1] : "?";
}

const char *sl_rule_type_name(enum sl_rule_type t)
{
    return (unsigned)t < SL_ARRAY_LEN(rule_type_names) ? rule_type_names[t] : "?";
}

static bool load_condition(struct ld *ld, const json_t *j, struct sl_condition *c)
{
    const char *key = NULL, *value = NULL;
    bool has_key = cfg_member(j, "key") != NULL, has_value = cfg_member(j, "value") != NULL;
    bool ok = true;
    int e;

    memset(c, 0, sizeof(*c));
    c->loc = cfg_here(ld);
    if (!json_is_object(j)) {
        cfg_bad_type(ld, j, "a condition object");
        return false;
    }
    if (cfg_get_enum(ld, j, "type", true, cond_type_names, SL_ARRAY_LEN(cond_type_names), &e) != 1)
        return false;
    c->type = (enum sl_cond_type)e;
    if (c->type == SL_COND_SOURCE_IP) {
        /* IONOS: condition must be null for SOURCE_IP; absent or null both read as none. */
        if (cfg_member(j, "condition")) {
            cfg_push_key(ld, "condition");
            err(ld, "must be null or absent for type SOURCE_IP (the value is a CIDR the "
                    "client address must be in)");
            cfg_pop(ld);
            ok = false;
        }
        c->op = SL_OP_NONE;
    } else if (cfg_get_enum(ld, j, "condition", true, cond_op_names, SL_ARRAY_LEN(cond_op_names),
                            &e) == 1) {
        c->op = (enum sl_cond_op)(e + 1);
    } else {
        ok = false;
    }
    cfg_get_bool(ld, j, "negate", &c->negate);

    if (c->type == SL_COND_HEADER || c->type == SL_COND_QUERY || c->type == SL_COND_COOKIE) {
        if (cfg_get_str(ld, j, "key", true,
                        c->type == SL_COND_HEADER  ? "the header name"
                        : c->type == SL_COND_QUERY ? "the query parameter name"
                                                   : "the cookie name",
                        &key) != 1) {
            ok = false;
        } else if (c->type == SL_COND_HEADER && !sl_http_is_token(key, strlen(key))) {
            cfg_push_key(ld, "key");
            err(ld, "\"%s\" is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)",
                key);
            cfg_pop(ld);
            ok = false;
        }
    } else if (has_key) {
        cfg_push_key(ld, "key");
        err(ld, "must be null or absent for type %s (key is only for HEADER, QUERY, COOKIE)",
            cond_type_names[c->type]);
        cfg_pop(ld);
        ok = false;
    }

    if (c->type == SL_COND_SOURCE_IP) {
        if (cfg_get_str(ld, j, "value", true, "a CIDR such as \"10.0.0.0/8\"", &value) == 1) {
            cfg_push_key(ld, "value");
            if (!strchr(value, '/'))
                err(ld,
                    "\"%s\" is not a CIDR: IONOS requires the mask (\"%s/%d\" for one "
                    "address)",
                    value, value, strchr(value, ':') ? 128 : 32);
            else if (sl_cidr_parse(value, &c->cidr) == -1)
                err(ld, "\"%s\" is not a valid CIDR (e.g. \"10.0.0.0/8\", \"2001:db8::/32\")",
                    value);
            else
                c->value = value;
            ok &= c->value != NULL;
            cfg_pop(ld);
        } else {
            ok = false;
        }
    } else if (c->op == SL_OP_EXISTS) {
        if (has_value) {
            cfg_push_key(ld, "value");
            err(ld, "must be null or absent with condition EXISTS");
            cfg_pop(ld);
            ok = false;
        }
    } else if (c->op != SL_OP_NONE) {
        if (cfg_get_str(ld, j, "value", false, "the value to compare with", &value) == 1) {
            c->value = value;
        } else if (!has_value) {
            cfg_push_key(ld, "value");
            err(ld, "missing; required with condition %s: the string to compare with",
                cond_op_names[c->op - 1]);
            cfg_pop(ld);
            ok = false;
        } else {
            ok = false;
        }
    }
    if (!ok)
        return false;
    c->key = key;
    c->key_len = key ? strlen(key) : 0;
    c->value_len = c->value ? strlen(c->value) : 0;
    c->flags = sl_router_cond_flags(c->type, c->key, c->key_len);
    if (c->op == SL_OP_MATCHES &&
        !(c->re = cfg_compile_at(ld, "value", c->value, c->flags & SL_COND_F_NOCASE)))
        return false;
    return true;
}

static const struct sl_target_group *resolve_group(struct ld *ld, const char *ref)
{
    const struct sl_target_group *by_name = NULL;
    char ids[512] = "", names[512] = "";
    size_t i, n_name = 0, oi = 0, on = 0;

    for (i = 0; i < ld->n_tg; i++)
        if (ld->tg[i].id && !strcmp(ld->tg[i].id, ref))
            return &ld->tg[i];
    for (i = 0; i < ld->n_tg; i++) {
        if (ld->tg[i].name && !strcmp(ld->tg[i].name, ref)) {
            by_name = &ld->tg[i];
            n_name++;
        }
    }
    if (n_name == 1)
        return by_name;
    if (n_name > 1) {
        err(ld, "\"%s\" names %zu target groups; refer to one by its id", ref, n_name);
        return NULL;
    }
    for (i = 0; i < ld->n_tg; i++) {
        if (ld->tg[i].id && oi < sizeof(ids))
            oi += (size_t)snprintf(ids + oi, sizeof(ids) - oi, "%s\"%s\"", oi ? ", " : "",
                                   ld->tg[i].id);
        if (ld->tg[i].name && on < sizeof(names))
            on += (size_t)snprintf(names + on, sizeof(names) - on, "%s\"%s\"", on ? ", " : "",
                                   ld->tg[i].name);
    }
    if (!ld->n_tg)
        err(ld,
            "\"%s\" matches no target group: the file defines none (add them under "
            "\"targetGroups\")",
            ref);
    else
        err(ld, "\"%s\" matches no target group id or name; ids: %s; names: %s", ref,
            oi ? ids : "(none)", on ? names : "(none)");
    return NULL;
}

static bool load_http_rule(struct ld *ld, const json_t *j, struct sl_http_rule *r)
{
    json_t *ca;
    long long v;
    bool ok = true;
    int e;

    memset(r, 0, sizeof(*r));
    r->loc = cfg_here(ld);
    if (!json_is_object(j)) {
        cfg_bad_type(ld, j, "an http rule object");
        return false;
    }
    ok &= cfg_get_str(ld, j, "name", true, "the rule's name, unique in the forwarding rule",
                      &r->name) == 1;
    if (cfg_get_enum(ld, j, "type", true, rule_type_names, SL_ARRAY_LEN(rule_type_names), &e) != 1)
        return false;
    r->type = (enum sl_rule_type)e;

    /* Fields valid for one action only are errors on the others, as the API refuses them. */
    static const struct {
        const char *key;
        unsigned types;
    } only[] = {
        {"targetGroup", 1u << SL_RULE_FORWARD},
        {"location", 1u << SL_RULE_REDIRECT},
        {"dropQuery", 1u << SL_RULE_REDIRECT},
        {"statusCode", 1u << SL_RULE_REDIRECT | 1u << SL_RULE_STATIC},
        {"responseMessage", 1u << SL_RULE_STATIC},
        {"contentType", 1u << SL_RULE_STATIC},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(only); i++) {
        if (cfg_member(j, only[i].key) && !(only[i].types & (1u << r->type))) {
            cfg_push_key(ld, only[i].key);
            err(ld, "is not valid for a %s rule (only for %s)", rule_type_names[r->type],
                !strcmp(only[i].key, "statusCode")       ? "STATIC and REDIRECT"
                : only[i].types == 1u << SL_RULE_FORWARD ? "FORWARD"
                : only[i].types == 1u << SL_RULE_STATIC  ? "STATIC"
                                                         : "REDIRECT");
            cfg_pop(ld);
            ok = false;
        }
    }

    switch (r->type) {
    case SL_RULE_FORWARD:
        if (cfg_get_str(ld, j, "targetGroup", true, "the target group's id (or name)",
                        &r->target_group_ref) == 1) {
            cfg_push_key(ld, "targetGroup");
            r->group = resolve_group(ld, r->target_group_ref);
            ok &= r->group != NULL;
            cfg_pop(ld);
        } else {
            ok = false;
        }
        break;
    case SL_RULE_STATIC:
        r->status_code = 503;
        if (cfg_get_int(ld, j, "statusCode", false, 200, 599, NULL, &v) == 1)
            r->status_code = (int)v;
        ok &= cfg_get_str(ld, j, "responseMessage", true, "the response body",
                          &r->response_message) == 1;
        cfg_get_str(ld, j, "contentType", false, "a media type such as \"text/plain\"",
                    &r->content_type);
        break;
    case SL_RULE_REDIRECT:
        r->status_code = 301;
        if (cfg_member(j, "statusCode")) {
            json_t *sc = cfg_member(j, "statusCode");

            if (json_is_integer(sc) && json_integer_value(sc) != 301 &&
                json_integer_value(sc) != 302 && json_integer_value(sc) != 303 &&
                json_integer_value(sc) != 307 && json_integer_value(sc) != 308) {
                cfg_push_key(ld, "statusCode");
                err(ld, "%lld is not a redirect status; allowed: 301, 302, 303, 307, 308",
                    (long long)json_integer_value(sc));
                cfg_pop(ld);
                ok = false;
            } else if (cfg_get_int(ld, j, "statusCode", false, 301, 308, NULL, &v) == 1) {
                r->status_code = (int)v;
            }
        }
        ok &= cfg_get_str(ld, j, "location", true, "the redirect target (URL or host)",
                          &r->location) == 1;
        cfg_get_bool(ld, j, "dropQuery", &r->drop_query);
        break;
    }

    if ((ca = cfg_get_arr(ld, j, "conditions"))) {
        struct sl_condition *c = sl_arena_calloc(ld->a, json_array_size(ca) + 1, sizeof(*c));
        json_t *cv;
        size_t i;

        cfg_push_key(ld, "conditions");
        json_array_foreach(ca, i, cv)
        {
            cfg_push_index(ld, i);
            if (load_condition(ld, cv, &c[r->n_conds]))
                r->n_conds++;
            else
                ok = false;
            cfg_pop(ld);
        }
        cfg_pop(ld);
        r->conds = c;
    }
    return ok;
}

/* ---- forwarding rules -------------------------------------------------------------------- */

static void load_frule(struct ld *ld, const json_t *r, struct sl_forwarding_rule *f, bool *ok)
{
    json_t *p, *arr;
    long long v;
    int e;

    f->loc = cfg_here(ld);
    f->client_timeout_ms = 50000;
    if (!(p = resource(ld, r, &f->id, "a forwarding rule object with \"properties\""))) {
        *ok = false;
        return;
    }
    cfg_push_key(ld, "properties");
    *ok &= cfg_get_str(ld, p, "name", true, "the forwarding rule's name", &f->name) == 1;
    *ok &= cfg_get_enum(ld, p, "protocol", true, http_only, 1, &e) == 1;
    f->listener_ip_loc = cfg_here_key(ld, "listenerIp");
    f->listener_port_loc = cfg_here_key(ld, "listenerPort");
    *ok &= load_ip(ld, p, "listenerIp", "the listener IP (one of the ALB's ips)", &f->listener_ip,
                   &f->listen) == 0;
    if (cfg_get_int(ld, p, "listenerPort", true, 1, 65535, NULL, &v) == 1)
        f->port = f->port_orig = (uint16_t)v;
    else
        *ok = false;
    if (cfg_get_int(ld, p, "clientTimeout", false, 1, INT32_MAXV, "ms", &v) == 1)
        f->client_timeout_ms = (uint32_t)v;
    if ((arr = cfg_get_arr(ld, p, "serverCertificates"))) {
        const char **certs = sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*certs));
        json_t *cv;
        size_t i, k;

        cfg_push_key(ld, "serverCertificates");
        json_array_foreach(arr, i, cv)
        {
            cfg_push_index(ld, i);
            if (!json_is_string(cv)) {
                cfg_bad_type(ld, cv, "a certificate id (string)");
                *ok = false;
            } else {
                const char *ref = json_string_value(cv);

                for (k = 0; k < ld->cfg->local.n_certificates; k++)
                    if (!strcmp(ld->cfg->local.certificates[k].ref, ref))
                        break;
                if (k == ld->cfg->local.n_certificates) {
                    err(ld,
                        "certificate \"%s\" has no entry in sluice.certificates (its "
                        "\"cert\" and \"key\" PEM files)",
                        ref);
                    *ok = false;
                }
                certs[f->n_server_certificates++] = sl_arena_strdup(ld->a, ref);
            }
            cfg_pop(ld);
        }
        cfg_pop(ld);
        f->server_certificates = certs;
    }
    if ((arr = cfg_get_arr(ld, p, "httpRules"))) {
        struct sl_http_rule *rules =
            sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*rules));
        const struct sl_http_rule **order;
        json_t *rv;
        size_t i, k, n = 0;

        cfg_push_key(ld, "httpRules");
        json_array_foreach(arr, i, rv)
        {
            cfg_push_index(ld, i);
            if (load_http_rule(ld, rv, &rules[n])) {
                rules[n].index = (unsigned)i;
                for (k = 0; k < n; k++) {
                    if (!strcmp(rules[k].name, rules[n].name)) {
                        cfg_push_key(ld, "name");
                        err(ld,
                            "duplicate http rule name \"%s\" (also httpRules[%u]); names "
                            "must be unique in a forwarding rule",
                            rules[n].name, rules[k].index);
                        cfg_pop(ld);
                        *ok = false;
                    }
                }
                n++;
            } else {
                *ok = false;
            }
            cfg_pop(ld);
        }
        cfg_pop(ld);
        /* IONOS order: every STATIC and REDIRECT rule in array order, then every FORWARD. */
        order = sl_arena_calloc(ld->a, n + 1, sizeof(*order));
        k = 0;
        for (i = 0; i < n; i++)
            if (rules[i].type != SL_RULE_FORWARD)
                order[k++] = &rules[i];
        for (i = 0; i < n; i++)
            if (rules[i].type == SL_RULE_FORWARD)
                order[k++] = &rules[i];
        f->rules = rules;
        f->n_rules = n;
        f->order = order;
    }
    if (*ok)
        cfg_map_addr(&ld->cfg->local, &f->listen, &f->port);
    cfg_pop(ld);
}

static void load_frules(struct ld *ld, const json_t *root, const json_t *alb_entities)
{
    const json_t *src[2] = {root, alb_entities};
    const char *keys[2] = {"forwardingRules", "forwardingrules"};
    struct sl_forwarding_rule *v;
    size_t total = 0, i, s, k;

    for (s = 0; s < 2; s++) {
        json_t *x = src[s] ? cfg_member(src[s], keys[s]) : NULL;

        if (x && json_is_object(x))
            x = cfg_member(x, "items");
        if (x && json_is_array(x))
            total += json_array_size(x);
    }
    v = sl_arena_calloc(ld->a, total + 1, sizeof(*v));
    for (s = 0; s < 2; s++) {
        int pushed;
        json_t *arr, *r;

        if (!src[s])
            continue;
        if (s == 1) {
            cfg_push_key(ld, "applicationLoadBalancer");
            cfg_push_key(ld, "entities");
        }
        arr = get_collection(ld, src[s], keys[s], &pushed);
        json_array_foreach(arr, i, r)
        {
            struct sl_forwarding_rule *f = &v[ld->cfg->n_frules];
            bool ok = true;

            cfg_push_index(ld, i);
            load_frule(ld, r, f, &ok);
            for (k = 0; ok && f->id && k < ld->cfg->n_frules; k++) {
                if (v[k].id && !strcmp(v[k].id, f->id)) {
                    err(ld, "duplicate forwarding rule id \"%s\" (also %s)", f->id, v[k].loc.path);
                    ok = false;
                }
            }
            if (ok)
                ld->cfg->n_frules++;
            cfg_pop(ld);
        }
        pop_n(ld, pushed);
        if (s == 1)
            pop_n(ld, 2);
    }
    ld->cfg->frules = v;
}

/* ---- the ALB ------------------------------------------------------------------------------ */

static const json_t *load_alb(struct ld *ld, const json_t *root)
{
    struct sl_alb *alb = &ld->cfg->alb;
    json_t *r = cfg_member(root, "applicationLoadBalancer"), *p, *arr, *ent;
    long long v;
    size_t i;

    if (!r)
        return NULL;
    cfg_push_key(ld, "applicationLoadBalancer");
    alb->present = true;
    alb->loc = cfg_here(ld);
    if (!(p = resource(ld, r, &alb->id, "the ALB object with \"properties\""))) {
        cfg_pop(ld);
        return NULL;
    }
    cfg_push_key(ld, "properties");
    cfg_get_str(ld, p, "name", true, "the ALB's name", &alb->name);
    if (cfg_get_int(ld, p, "listenerLan", true, 1, INT32_MAXV, "(LAN id)", &v) == 1)
        alb->listener_lan = (int)v;
    if (cfg_get_int(ld, p, "targetLan", true, 1, INT32_MAXV, "(LAN id)", &v) == 1)
        alb->target_lan = (int)v;
    if ((arr = cfg_get_arr(ld, p, "ips"))) {
        const char **txt = sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*txt));
        struct sl_addr *a = sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*a));
        json_t *iv;

        cfg_push_key(ld, "ips");
        json_array_foreach(arr, i, iv)
        {
            size_t n = alb->n_ips;

            cfg_push_index(ld, i);
            if (!json_is_string(iv)) {
                cfg_bad_type(ld, iv, "an IP address string");
            } else if (sl_addr_parse(json_string_value(iv), &a[n]) == -1) {
                err(ld, "\"%s\" is not an IPv4 or IPv6 address%s", json_string_value(iv),
                    strchr(json_string_value(iv), '/') ? ": write it without the /mask (masks "
                                                         "belong in lbPrivateIps)"
                                                       : "");
            } else {
                uint16_t port = 0;

                txt[n] = sl_arena_strdup(ld->a, json_string_value(iv));
                cfg_map_addr(&ld->cfg->local, &a[n], &port);
                alb->n_ips++;
            }
            cfg_pop(ld);
        }
        cfg_pop(ld);
        alb->ips = txt;
        alb->ip_addrs = a;
    }
    if ((arr = cfg_get_arr(ld, p, "lbPrivateIps"))) {
        const char **txt = sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*txt));
        struct sl_cidr *c = sl_arena_calloc(ld->a, json_array_size(arr) + 1, sizeof(*c));
        json_t *iv;

        cfg_push_key(ld, "lbPrivateIps");
        json_array_foreach(arr, i, iv)
        {
            size_t n = alb->n_lb_private_ips;
            const char *s = json_is_string(iv) ? json_string_value(iv) : NULL;

            cfg_push_index(ld, i);
            if (!s) {
                cfg_bad_type(ld, iv, "an IP address with a mask, e.g. \"10.20.30.40/24\"");
            } else if (!strchr(s, '/')) {
                err(ld, "\"%s\" has no mask; lbPrivateIps are written with one, e.g. \"%s/24\"", s,
                    s);
            } else if (sl_cidr_parse(s, &c[n]) == -1) {
                err(ld, "\"%s\" is not an IP address with a mask (e.g. \"10.20.30.40/24\")", s);
            } else {
                char ip[SL_ADDR_STRLEN];
                const char *slash = strchr(s, '/');
                uint16_t port = 0;

                /* Keep the host part: it is the source address, not just the network. */
                snprintf(ip, sizeof(ip), "%.*s", (int)(slash - s), s);
                sl_addr_parse(ip, &c[n].addr);
                cfg_map_addr(&ld->cfg->local, &c[n].addr, &port);
                txt[n] = sl_arena_strdup(ld->a, s);
                alb->n_lb_private_ips++;
            }
            cfg_pop(ld);
        }
        cfg_pop(ld);
        alb->lb_private_ips = txt;
        alb->lb_private = c;
    }
    cfg_get_bool(ld, p, "centralLogging", &alb->central_logging);
    cfg_get_str(ld, p, "loggingFormat", false, "a log format string", &alb->logging_format);
    cfg_pop(ld);
    ent = cfg_member(r, "entities");
    if (ent && !json_is_object(ent)) {
        cfg_push_key(ld, "entities");
        cfg_bad_type(ld, ent, "an object");
        cfg_pop(ld);
        ent = NULL;
    }
    cfg_pop(ld);
    return ent;
}

/* ---- snapshot lifetime ------------------------------------------------------------------- */

static void config_free(struct sl_config *c)
{
    size_t i;

    if (!c)
        return;
    for (i = 0; i < c->n_regexes; i++)
        sl_regex_free(c->regexes[i]);
    free(c->regexes);
    if (c->tls_free)
        c->tls_free(c->tls);
    sl_arena_deinit(&c->arena);
    free(c->origin);
    free(c);
}

struct sl_config *sl_config_ref(struct sl_config *c)
{
    atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
    return c;
}

void sl_config_unref(struct sl_config *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

struct sl_config *sl_config_load_json(const char *origin, json_t *root, const struct sl_jpos *pos,
                                      const struct sl_load_opts *o, struct sl_diags *d)
{
    struct sl_config *c = calloc(1, sizeof(*c));
    size_t errors_before = d->n_errors;
    struct ld ld = {.d = d, .pos = pos, .opts = o};
    const json_t *ent;
    static const char *const top_keys[] = {"applicationLoadBalancer", "forwardingRules",
                                           "targetGroups", "sluice"};

    if (!c || !(c->origin = strdup(origin ? origin : "config")))
        abort();
    atomic_init(&c->refcnt, 1);
    sl_arena_init(&c->arena);
    ld.cfg = c;
    ld.a = &c->arena;
    sl_jpath_init(&ld.path);

    if (!json_is_object(root)) {
        cfg_bad_type(&ld, root,
                     "an object with applicationLoadBalancer, forwardingRules, "
                     "targetGroups and sluice");
        goto fail;
    }
    {
        bool any = false;

        for (size_t i = 0; i < SL_ARRAY_LEN(top_keys); i++)
            any |= json_object_get(root, top_keys[i]) != NULL;
        if (!any) {
            err(&ld,
                "none of applicationLoadBalancer, forwardingRules, targetGroups, sluice "
                "is here%s",
                json_object_get(root, "properties")
                    ? "; this looks like one API request body: put it under "
                      "\"applicationLoadBalancer\", or in a \"forwardingRules\" or "
                      "\"targetGroups\" array"
                    : "");
            goto fail;
        }
    }
    load_local(&ld, root);
    ent = load_alb(&ld, root);
    load_target_groups(&ld, root);
    load_frules(&ld, root, ent);
    if (d->n_errors > errors_before)
        goto fail;
    return c;
fail:
    config_free(c);
    return NULL;
}

struct sl_config *sl_config_load_buffer(const char *origin, const char *buf, size_t len,
                                        const struct sl_load_opts *o, struct sl_diags *d)
{
    struct sl_jpos pos;
    struct sl_config *c = NULL;
    json_t *root;

    sl_jpos_init(&pos);
    root = sl_json_parse(buf, len, &pos, d);
    if (root)
        c = sl_config_load_json(origin, root, &pos, o, d);
    json_decref(root);
    sl_jpos_deinit(&pos);
    return c;
}

struct sl_config *sl_config_load_file(const char *file, const struct sl_load_opts *o,
                                      struct sl_diags *d)
{
    FILE *f = fopen(file, "rb");
    struct sl_config *c = NULL;
    char *buf;
    size_t len;
    bool more;

    if (!f) {
        sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "", "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (!(buf = sl_read_stream(f, MAX_CONFIG_FILE, &len, &more)))
        sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "", "cannot read: %s", strerror(errno));
    else if (more)
        sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "", "larger than %u MiB", MAX_CONFIG_FILE >> 20);
    else {
        /* relative certificate files are found beside the config file */
        struct sl_load_opts oo = o ? *o : (struct sl_load_opts){0};
        char *dir = oo.base_dir ? NULL : sl_dir_of(file);

        if (dir)
            oo.base_dir = dir;
        c = sl_config_load_buffer(file, buf, len, &oo, d);
        free(dir);
    }
    free(buf);
    fclose(f);
    return c;
}
