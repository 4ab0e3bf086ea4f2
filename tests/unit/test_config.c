/* Unit tests for the config loader (src/config.c): every field and default of a valid config,
 * the places forwarding rules and target groups may stand, target group references, the IONOS
 * evaluation order, the address map, refcounting, and one table row per validation error class
 * with its JSON path, line:col and message. The "config regressions" group at the end keeps
 * mistakes the loader once made from coming back.
 *
 * Test texts are written with ' for " (turned back before parsing), and a ` marks where the
 * expected diagnostic points (it is removed; its line:col is what the row expects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/addr.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/diag.h"

#include "testkit.h"

/* ---- helpers ------------------------------------------------------------------------------ */

#define MAX_MARKS 8

struct run {
    struct sl_diags d;
    struct sl_config *c;
    struct marks m;
    unsigned line, col; /* of the first marker; 0 without one */
};

static void run_load(struct run *r, const char *src, const struct sl_load_opts *o)
{
    size_t len;
    char *buf = prep(src, &len, &r->m);

    r->line = r->m.line[0];
    r->col = r->m.col[0];
    sl_diags_init(&r->d, "t.json");
    r->c = sl_config_load_buffer("t.json", buf, len, o, &r->d);
    free(buf);
}

static void run_done(struct run *r)
{
    sl_config_unref(r->c);
    sl_diags_deinit(&r->d);
}

/* Loads a config that must be valid and free of warnings. */
static const struct sl_config *load_ok(struct run *r, const char *src,
                                       const struct sl_load_opts *o)
{
    run_load(r, src, o);
    if (!r->c || r->d.n != 0) {
        sl_diags_print(&r->d, stderr);
        fail_msg("expected a valid config without diagnostics");
    }
    return r->c;
}

static const struct sl_diag *find_diag(const struct sl_diags *d, enum sl_diag_level lv,
                                       const char *path, const char *frag)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct sl_diag *x = &d->v[i];

        if (x->level == lv && !strcmp(x->path, path) && strstr(x->msg, frag))
            return x;
    }
    return NULL;
}

static const struct sl_diag *expect_diag(const struct sl_diags *d, enum sl_diag_level lv,
                                         const char *path, unsigned line, unsigned col,
                                         const char *frag)
{
    const struct sl_diag *x = find_diag(d, lv, path, frag);

    if (!x) {
        sl_diags_print(d, stderr);
        fail_msg("no %s at '%s' containing '%s'", lv == SL_DIAG_ERROR ? "error" : "warning",
                 path, frag);
    }
    if (x->line != line || x->col != col) {
        sl_diags_print(d, stderr);
        fail_msg("'%s' at %u:%u, expected %u:%u", x->msg, x->line, x->col, line, col);
    }
    return x;
}

static void assert_ip(const struct sl_addr *a, const char *text)
{
    char buf[SL_ADDR_STRLEN];

    assert_string_equal(sl_addr_format(a, buf), text);
}

/* ---- building blocks for test texts ------------------------------------------------------- */

#define TG1                                                                                    \
    "'targetGroups': [{'id': 'tg1', 'properties': {'name': 'g1', 'algorithm': 'ROUND_ROBIN', " \
    "'protocol': 'HTTP', 'targets': [{'ip': '10.0.0.1', 'port': 80}]}}]"
#define FRX(p)                                                                                 \
    "'forwardingRules': [{'id': 'fr1', 'properties': {'name': 'fr', 'protocol': 'HTTP', "      \
    "'listenerIp': '192.0.2.1'" p "}}]"
#define FR(p) FRX(", 'listenerPort': 80" p)
#define DOC(x) "{" TG1 ", " x "}"
#define RULES(r) DOC(FR(", 'httpRules': [" r "]"))
#define FWD(c)                                                                                 \
    RULES("{'name': 'r', 'type': 'FORWARD', 'targetGroup': 'tg1', 'conditions': [" c "]}")
#define TGX(p)                                                                                 \
    "{'targetGroups': [{'id': 'tg1', 'properties': {'name': 'g1', 'protocol': 'HTTP'" p "}}]}"
#define TG(p) TGX(", 'algorithm': 'ROUND_ROBIN'" p)
#define TARGETS(t) TG(", 'targets': [" t "]")
#define ALBX(p) "{'applicationLoadBalancer': {'properties': {'name': 'alb'" p "}}}"
#define ALB(p) ALBX(", 'listenerLan': 1, 'targetLan': 2" p)
#define SLUICE(s) "{'sluice': {" s "}}"
#define GROUP(id, name)                                                                        \
    "{'id': '" id "', 'properties': {'name': '" name "', 'algorithm': 'RANDOM', "              \
    "'protocol': 'HTTP'}}"

#define P_FR "forwardingRules[0].properties"
#define P_RULE P_FR ".httpRules[0]"
#define P_COND P_RULE ".conditions[0]"
#define P_TG "targetGroups[0].properties"
#define P_T P_TG ".targets[0]"
#define P_ALB "applicationLoadBalancer.properties"

/* ---- a full valid config ---------------------------------------------------------------- */

static const char full_config[] =
    "{\n"
    "  'applicationLoadBalancer': {\n"
    "    'id': 'alb-1', 'type': 'applicationloadbalancer', 'href': 'https://x/alb-1',\n"
    "    'metadata': {'state': 'AVAILABLE', 'etag': 'e'},\n"
    "    'properties': {'name': 'alb', 'listenerLan': 1, 'targetLan': 2,\n"
    "      'ips': ['192.0.2.10', '2001:db8::10'], 'lbPrivateIps': ['10.20.30.40/24'],\n"
    "      'centralLogging': true, 'loggingFormat': '%ci %r', 'futureField': 1}\n"
    "  },\n"
    "  'forwardingRules': [{'id': 'fr-1', 'properties': {\n"
    "    'name': 'web', 'protocol': 'HTTP', 'listenerIp': '192.0.2.10', 'listenerPort': 443,\n"
    "    'clientTimeout': 30000, 'serverCertificates': ['cert-1'], 'httpRules': [\n"
    "      {'name': 'api', 'type': 'FORWARD', 'targetGroup': 'tg-1', 'conditions': [\n"
    "        {'type': 'PATH', 'condition': 'STARTS_WITH', 'value': '/api'},\n"
    "        {'type': 'HEADER', 'condition': 'MATCHES', 'key': 'X-Env', 'value': '^(prod|qa)$',\n"
    "         'negate': true},\n"
    "        {'type': 'SOURCE_IP', 'value': '10.1.2.3/8'},\n"
    "        {'type': 'QUERY', 'condition': 'EXISTS', 'key': 'debug'},\n"
    "        {'type': 'COOKIE', 'condition': 'EQUALS', 'key': 'sid', 'value': 'abc'},\n"
    "        {'type': 'METHOD', 'condition': 'EQUALS', 'value': 'POST'},\n"
    "        {'type': 'HOST', 'condition': 'ENDS_WITH', 'value': '.example.com'},\n"
    "        {'type': 'PATH', 'condition': 'CONTAINS', 'value': 'v2', 'negate': false}]},\n"
    "      {'name': 'maint', 'type': 'STATIC', 'statusCode': 200, 'responseMessage': 'ok',\n"
    "       'contentType': 'text/plain'},\n"
    "      {'name': 'old', 'type': 'REDIRECT', 'statusCode': 308,\n"
    "       'location': 'https://new.example/', 'dropQuery': true}]}}],\n"
    "  'targetGroups': [{'id': 'tg-1', 'type': 'target-group', 'properties': {\n"
    "    'name': 'pool', 'algorithm': 'LEAST_CONNECTION', 'protocol': 'HTTP',\n"
    "    'protocolVersion': 'HTTP2', 'location': 'de/fra',\n"
    "    'targets': [{'ip': '10.0.0.5', 'port': 8080, 'weight': 200, 'proxyProtocol': 'v2ssl',\n"
    "                 'healthCheckEnabled': false, 'maintenanceEnabled': true}],\n"
    "    'healthCheck': {'checkInterval': 5000, 'checkTimeout': 1500, 'retries': 7},\n"
    "    'httpHealthCheck': {'path': '/health', 'method': 'HEAD', 'matchType': 'RESPONSE_BODY',\n"
    "                        'response': '^ok', 'regex': true, 'negate': true}}}],\n"
    "  'sluice': {'threads': 4, 'admin': '127.0.0.1:9900',\n"
    "    'certificates': {'cert-1': {'cert': 'c.pem', 'key': 'k.pem', 'chain': 'ch.pem'}},\n"
    "    'sync': {'datacenterId': 'dc-1', 'applicationLoadBalancerId': 'alb-1',\n"
    "             'intervalSeconds': 30},\n"
    "    'tunnelTimeout': 3600000, 'drainTimeout': 5000, 'headerTimeout': 2000,\n"
    "    'closeOnTargetDown': true, 'connectTimeout': 1500, 'accessLog': 'off',\n"
    "    'pipeSize': 1048576, 'busyPoll': 200}\n"
    "}\n";

static void test_full_config(void **state)
{
    struct run r;
    const struct sl_config *c = load_ok(&r, full_config, NULL);
    const struct sl_alb *alb = &c->alb;
    const struct sl_forwarding_rule *f;
    const struct sl_http_rule *h;
    const struct sl_condition *k;
    const struct sl_target_group *g;
    const struct sl_target *t;
    const struct sl_local *l = &c->local;

    (void)state;
    assert_string_equal(c->origin, "t.json");
    /* ALB */
    assert_true(alb->present);
    assert_string_equal(alb->id, "alb-1");
    assert_string_equal(alb->name, "alb");
    assert_int_equal(alb->listener_lan, 1);
    assert_int_equal(alb->target_lan, 2);
    assert_int_equal(alb->n_ips, 2);
    assert_string_equal(alb->ips[0], "192.0.2.10");
    assert_string_equal(alb->ips[1], "2001:db8::10");
    assert_ip(&alb->ip_addrs[0], "192.0.2.10");
    assert_ip(&alb->ip_addrs[1], "2001:db8::10");
    assert_int_equal(alb->n_lb_private_ips, 1);
    assert_string_equal(alb->lb_private_ips[0], "10.20.30.40/24");
    assert_ip(&alb->lb_private[0].addr, "10.20.30.40"); /* the host part is kept */
    assert_int_equal(alb->lb_private[0].prefix, 24);
    assert_true(alb->central_logging);
    assert_string_equal(alb->logging_format, "%ci %r");
    assert_string_equal(alb->loc.path, "applicationLoadBalancer");
    assert_int_equal(alb->loc.line, 2);
    assert_int_equal(alb->loc.col, 30);

    /* forwarding rule */
    assert_int_equal(c->n_frules, 1);
    f = &c->frules[0];
    assert_string_equal(f->id, "fr-1");
    assert_string_equal(f->name, "web");
    assert_string_equal(f->listener_ip, "192.0.2.10");
    assert_ip(&f->listen, "192.0.2.10");
    assert_int_equal(f->port, 443);
    assert_int_equal(f->port_orig, 443);
    assert_int_equal(f->client_timeout_ms, 30000);
    assert_int_equal(f->n_server_certificates, 1);
    assert_string_equal(f->server_certificates[0], "cert-1");
    assert_string_equal(f->loc.path, "forwardingRules[0]");
    assert_int_equal(f->loc.line, 9);
    assert_int_equal(f->loc.col, 23);
    assert_int_equal(f->n_rules, 3);

    h = &f->rules[0];
    assert_string_equal(h->name, "api");
    assert_int_equal(h->type, SL_RULE_FORWARD);
    assert_int_equal(h->index, 0);
    assert_string_equal(h->target_group_ref, "tg-1");
    assert_ptr_equal(h->group, &c->tgroups[0]);
    assert_string_equal(h->loc.path, "forwardingRules[0].properties.httpRules[0]");
    assert_int_equal(h->loc.line, 12);
    assert_int_equal(h->loc.col, 7);
    assert_int_equal(h->n_conds, 8);
    k = h->conds;
    assert_int_equal(k[0].type, SL_COND_PATH);
    assert_int_equal(k[0].op, SL_OP_STARTS_WITH);
    assert_false(k[0].negate);
    assert_null(k[0].key);
    assert_string_equal(k[0].value, "/api");
    assert_int_equal(k[0].value_len, 4);
    assert_null(k[0].re);
    assert_string_equal(k[0].loc.path, "forwardingRules[0].properties.httpRules[0].conditions[0]");
    assert_int_equal(k[0].loc.line, 13);
    assert_int_equal(k[0].loc.col, 9);
    assert_int_equal(k[1].type, SL_COND_HEADER);
    assert_int_equal(k[1].op, SL_OP_MATCHES);
    assert_true(k[1].negate);
    assert_string_equal(k[1].key, "X-Env");
    assert_int_equal(k[1].key_len, 5);
    assert_string_equal(k[1].value, "^(prod|qa)$");
    assert_non_null(k[1].re);
    assert_int_equal(k[2].type, SL_COND_SOURCE_IP);
    assert_int_equal(k[2].op, SL_OP_NONE);
    assert_string_equal(k[2].value, "10.1.2.3/8");
    assert_ip(&k[2].cidr.addr, "10.0.0.0");
    assert_int_equal(k[2].cidr.prefix, 8);
    assert_int_equal(k[3].type, SL_COND_QUERY);
    assert_int_equal(k[3].op, SL_OP_EXISTS);
    assert_string_equal(k[3].key, "debug");
    assert_null(k[3].value);
    assert_int_equal(k[3].value_len, 0);
    assert_int_equal(k[4].type, SL_COND_COOKIE);
    assert_int_equal(k[4].op, SL_OP_EQUALS);
    assert_string_equal(k[4].key, "sid");
    assert_string_equal(k[4].value, "abc");
    assert_int_equal(k[5].type, SL_COND_METHOD);
    assert_string_equal(k[5].value, "POST");
    assert_int_equal(k[6].type, SL_COND_HOST);
    assert_int_equal(k[6].op, SL_OP_ENDS_WITH);
    assert_true(k[6].flags & SL_COND_F_NOCASE);
    assert_int_equal(k[7].op, SL_OP_CONTAINS);
    assert_false(k[7].negate);

    h = &f->rules[1];
    assert_string_equal(h->name, "maint");
    assert_int_equal(h->type, SL_RULE_STATIC);
    assert_int_equal(h->index, 1);
    assert_int_equal(h->status_code, 200);
    assert_string_equal(h->response_message, "ok");
    assert_string_equal(h->content_type, "text/plain");
    assert_null(h->group);
    assert_int_equal(h->n_conds, 0);

    h = &f->rules[2];
    assert_string_equal(h->name, "old");
    assert_int_equal(h->type, SL_RULE_REDIRECT);
    assert_int_equal(h->status_code, 308);
    assert_string_equal(h->location, "https://new.example/");
    assert_true(h->drop_query);

    /* target group */
    assert_int_equal(c->n_tgroups, 1);
    g = &c->tgroups[0];
    assert_string_equal(g->id, "tg-1");
    assert_string_equal(g->name, "pool");
    assert_int_equal(g->algorithm, SL_ALG_LEAST_CONNECTION);
    assert_int_equal(g->protocol_version, SL_HTTP2);
    assert_string_equal(g->loc.path, "targetGroups[0]");
    assert_int_equal(g->n_targets, 1);
    t = &g->targets[0];
    assert_string_equal(t->ip, "10.0.0.5");
    assert_ip(&t->addr, "10.0.0.5");
    assert_int_equal(t->port, 8080);
    assert_int_equal(t->port_orig, 8080);
    assert_int_equal(t->weight, 200);
    assert_int_equal(t->proxy_protocol, SL_PROXY_V2SSL);
    assert_false(t->health_check_enabled);
    assert_true(t->maintenance_enabled);
    assert_string_equal(t->loc.path, "targetGroups[0].properties.targets[0]");
    assert_int_equal(g->health.check_interval_ms, 5000);
    assert_int_equal(g->health.check_timeout_ms, 1500);
    assert_int_equal(g->health.retries, 7);
    assert_non_null(g->http_check);
    assert_string_equal(g->http_check->path, "/health");
    assert_int_equal(g->http_check->method, SL_METHOD_HEAD);
    assert_int_equal(g->http_check->match_type, SL_MATCH_RESPONSE_BODY);
    assert_string_equal(g->http_check->response, "^ok");
    assert_true(g->http_check->regex);
    assert_true(g->http_check->negate);
    assert_non_null(g->http_check->re);
    assert_string_equal(g->http_check->loc.path, "targetGroups[0].properties.httpHealthCheck");
    assert_int_equal(c->n_regexes, 2);

    /* sluice */
    assert_int_equal(l->threads, 4);
    assert_string_equal(l->admin, "127.0.0.1:9900");
    assert_int_equal(l->n_map, 0);
    assert_int_equal(l->n_certificates, 1);
    assert_string_equal(l->certificates[0].ref, "cert-1");
    assert_string_equal(l->certificates[0].cert, "c.pem");
    assert_string_equal(l->certificates[0].key, "k.pem");
    assert_string_equal(l->certificates[0].chain, "ch.pem");
    assert_string_equal(l->sync_datacenter_id, "dc-1");
    assert_string_equal(l->sync_alb_id, "alb-1");
    assert_int_equal(l->sync_interval_s, 30);
    assert_int_equal(l->tunnel_timeout_ms, 3600000);
    assert_int_equal(l->drain_timeout_ms, 5000);
    assert_int_equal(l->header_timeout_ms, 2000);
    assert_true(l->close_on_target_down);
    assert_int_equal(l->connect_timeout_ms, 1500);
    assert_string_equal(l->access_log, "off");
    assert_int_equal(l->pipe_size, 1048576);
    assert_int_equal(l->busy_poll_us, 200);

    assert_string_equal(sl_algorithm_name(g->algorithm), "LEAST_CONNECTION");
    assert_string_equal(sl_proxy_protocol_name(t->proxy_protocol), "v2ssl");
    assert_string_equal(sl_algorithm_name((enum sl_algorithm)99), "?");
    assert_string_equal(sl_proxy_protocol_name((enum sl_proxy_protocol)99), "?");
    run_done(&r);
}

/* ---- defaults ---------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    static const char src[] =
        "{'targetGroups': ["
        " {'id': 'a', 'properties': {'name': 'a', 'algorithm': 'ROUND_ROBIN', 'protocol': 'HTTP',"
        "   'targets': [{'ip': '10.0.0.1', 'port': 80}],"
        "   'httpHealthCheck': {'matchType': 'STATUS_CODE', 'response': '200'}}},"
        " {'id': 'b', 'properties': {'name': 'b', 'algorithm': 'RANDOM', 'protocol': 'HTTP',"
        "   'healthCheck': {'checkInterval': 1000}}},"
        " {'id': 'c', 'properties': {'name': 'c', 'algorithm': 'SOURCE_IP', 'protocol': 'HTTP',"
        "   'healthCheck': {'checkInterval': 500, 'checkTimeout': 800}}},"
        " {'id': 'd', 'properties': {'name': 'd', 'algorithm': 'SOURCE_IP', 'protocol': 'HTTP',"
        "   'healthCheck': {'retries': 0}}}],"
        " 'forwardingRules': [{'properties': {'name': 'f', 'protocol': 'HTTP',"
        "   'listenerIp': '192.0.2.1', 'listenerPort': 80, 'httpRules': ["
        "   {'name': 's', 'type': 'STATIC', 'responseMessage': 'down'},"
        "   {'name': 'r', 'type': 'REDIRECT', 'location': 'x.example'},"
        "   {'name': 'f', 'type': 'FORWARD', 'targetGroup': 'a'}]}}],"
        " 'sluice': {}}";
    struct run r;
    const struct sl_config *c = load_ok(&r, src, NULL);
    const struct sl_forwarding_rule *f = &c->frules[0];
    const struct sl_target_group *g = c->tgroups;
    const struct sl_target *t = &g[0].targets[0];

    (void)state;
    assert_false(c->alb.present);
    assert_int_equal(c->alb.n_ips, 0);
    assert_null(f->id);
    assert_int_equal(f->client_timeout_ms, 50000);
    assert_int_equal(f->n_server_certificates, 0);
    assert_int_equal(f->rules[0].status_code, 503);
    assert_null(f->rules[0].content_type);
    assert_int_equal(f->rules[1].status_code, 301);
    assert_false(f->rules[1].drop_query);
    assert_int_equal(f->rules[2].n_conds, 0);
    assert_null(f->rules[2].conds);

    assert_int_equal(t->weight, 1);
    assert_true(t->health_check_enabled);
    assert_false(t->maintenance_enabled);
    assert_int_equal(t->proxy_protocol, SL_PROXY_NONE);
    assert_int_equal(g[0].protocol_version, SL_HTTP1);
    assert_int_equal(g[0].health.check_interval_ms, 2000);
    assert_int_equal(g[0].health.check_timeout_ms, 2000);
    assert_int_equal(g[0].health.retries, 3);
    assert_string_equal(g[0].http_check->path, "/");
    assert_int_equal(g[0].http_check->method, SL_METHOD_GET);
    assert_false(g[0].http_check->regex);
    assert_false(g[0].http_check->negate);
    assert_null(g[0].http_check->re);
    /* the default timeout is capped by a smaller interval, a given one too */
    assert_int_equal(g[1].health.check_interval_ms, 1000);
    assert_int_equal(g[1].health.check_timeout_ms, 1000);
    assert_int_equal(g[1].health.retries, 3);
    assert_null(g[1].http_check);
    assert_int_equal(g[1].n_targets, 0);
    assert_int_equal(g[2].health.check_timeout_ms, 500);
    assert_int_equal(g[3].health.retries, 0);

    assert_int_equal(c->local.threads, 0);
    assert_null(c->local.admin);
    assert_int_equal(c->local.header_timeout_ms, 10000);
    assert_int_equal(c->local.sync_interval_s, 10);
    assert_null(c->local.sync_datacenter_id);
    assert_int_equal(c->local.tunnel_timeout_ms, 0);
    assert_int_equal(c->local.drain_timeout_ms, 30000);
    assert_int_equal(c->local.connect_timeout_ms, 5000);
    assert_string_equal(c->local.access_log, "-");
    assert_int_equal(c->local.pipe_size, 256 * 1024);
    assert_int_equal(c->local.busy_poll_us, 0);
    assert_false(c->local.close_on_target_down);
    assert_int_equal(c->local.n_certificates, 0);
    run_done(&r);
}

/* No sluice block at all: the local defaults still apply. */
static void test_defaults_without_sluice(void **state)
{
    struct run r;
    const struct sl_config *c = load_ok(&r, "{'forwardingRules': []}", NULL);

    (void)state;
    assert_int_equal(c->n_frules, 0);
    assert_int_equal(c->n_tgroups, 0);
    assert_int_equal(c->local.header_timeout_ms, 10000);
    assert_int_equal(c->local.sync_interval_s, 10);
    assert_int_equal(c->local.threads, 0);
    run_done(&r);
}

/* ---- where forwarding rules and target groups stand -------------------------------------- */

#define MINI_FR(name, port)                                                                    \
    "{'properties': {'name': '" name "', 'protocol': 'HTTP', 'listenerIp': '192.0.2.1', "      \
    "'listenerPort': " port "}}"
#define MINI_ALB(ent)                                                                          \
    "'applicationLoadBalancer': {'properties': {'name': 'a', 'listenerLan': 1, 'targetLan': 2}" \
    ", 'entities': " ent "}"

static void test_frule_locations(void **state)
{
    static const struct {
        const char *src;
        size_t n;
        const char *name[2];
        const char *path[2];
    } rows[] = {
        { "{'forwardingRules': [" MINI_FR("top", "80") "]}", 1, { "top" },
          { "forwardingRules[0]" } },
        { "{" MINI_ALB("{'forwardingrules': {'type': 'collection', 'items': [" MINI_FR("n", "80")
          "]}}") "}", 1, { "n" },
          { "applicationLoadBalancer.entities.forwardingrules.items[0]" } },
        { "{" MINI_ALB("{'forwardingrules': [" MINI_FR("n", "80") "]}") "}", 1, { "n" },
          { "applicationLoadBalancer.entities.forwardingrules[0]" } },
        { "{'forwardingRules': [" MINI_FR("top", "80") "], "
          MINI_ALB("{'forwardingrules': {'items': [" MINI_FR("n", "81") "]}}") "}", 2,
          { "top", "n" },
          { "forwardingRules[0]", "applicationLoadBalancer.entities.forwardingrules.items[0]" } },
        { "{'forwardingRules': {'type': 'collection', 'offset': 0, 'items': [" MINI_FR("c", "80")
          "]}}", 1, { "c" }, { "forwardingRules.items[0]" } },
        /* a depth-0 collection (no items) and entities without forwardingrules: nothing */
        { "{'forwardingRules': {'type': 'collection'}}", 0, { NULL }, { NULL } },
        { "{" MINI_ALB("{}") "}", 0, { NULL }, { NULL } },
        { "{" MINI_ALB("null") "}", 0, { NULL }, { NULL } },
    };

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(rows); i++) {
        struct run r;
        const struct sl_config *c = load_ok(&r, rows[i].src, NULL);

        assert_int_equal(c->n_frules, rows[i].n);
        for (size_t j = 0; j < rows[i].n; j++) {
            assert_string_equal(c->frules[j].name, rows[i].name[j]);
            assert_string_equal(c->frules[j].loc.path, rows[i].path[j]);
        }
        run_done(&r);
    }
}

static void test_target_group_collection(void **state)
{
    struct run r;
    const struct sl_config *c = load_ok(&r,
        "{'targetGroups': {'type': 'collection', 'limit': 100, 'items': [" GROUP("x", "gx") ", "
        GROUP("y", "gy") "]}, 'forwardingRules': [{'properties': {'name': 'f', 'protocol': 'HTTP',"
        " 'listenerIp': '192.0.2.1', 'listenerPort': 80, 'httpRules': [{'name': 'r', 'type': "
        "'FORWARD', 'targetGroup': 'y'}]}}]}", NULL);

    (void)state;
    assert_int_equal(c->n_tgroups, 2);
    assert_string_equal(c->tgroups[1].loc.path, "targetGroups.items[1]");
    assert_ptr_equal(c->frules[0].rules[0].group, &c->tgroups[1]);
    run_done(&r);
}

/* ---- conditions, unknown fields, null -------------------------------------------------- */

static void test_source_ip_condition_absent_or_null(void **state)
{
    struct run r;
    const struct sl_config *c = load_ok(&r,
        FWD("{'type': 'SOURCE_IP', 'value': '10.0.0.0/8'}, "
            "{'type': 'SOURCE_IP', 'condition': null, 'key': null, 'value': '2001:db8::/32', "
            "'negate': true}"), NULL);
    const struct sl_condition *k = c->frules[0].rules[0].conds;

    (void)state;
    assert_int_equal(c->frules[0].rules[0].n_conds, 2);
    assert_int_equal(k[0].op, SL_OP_NONE);
    assert_int_equal(k[0].cidr.prefix, 8);
    assert_int_equal(k[1].op, SL_OP_NONE);
    assert_true(k[1].negate);
    assert_null(k[1].key);
    assert_ip(&k[1].cidr.addr, "2001:db8::");
    assert_int_equal(k[1].cidr.prefix, 32);
    run_done(&r);
}

static void test_unknown_fields_ignored(void **state)
{
    struct run r;
    const struct sl_config *c = load_ok(&r,
        "{'id': 'x', 'href': 'h', 'futureTopLevel': {'a': [1]}, "
        "'targetGroups': [{'id': 'tg1', 'type': 'target-group', 'href': 'h', 'metadata': "
        "{'state': 'BUSY'}, 'properties': {'name': 'g', 'algorithm': 'RANDOM', 'protocol': 'HTTP', "
        "'unknown': true, 'targets': [{'ip': '10.0.0.1', 'port': 80, 'zone': 'a'}], "
        "'healthCheck': {'x': 1}, 'httpHealthCheck': {'matchType': 'STATUS_CODE', "
        "'response': '204', 'y': 2}}}], "
        FR(", 'extra': [], 'httpRules': [{'name': 'r', 'type': 'FORWARD', 'targetGroup': 'tg1', "
           "'comment': 'hi', 'conditions': [{'type': 'PATH', 'condition': 'EQUALS', "
           "'value': '/', 'note': 1}]}]") "}", NULL);

    (void)state;
    assert_int_equal(c->n_tgroups, 1);
    assert_int_equal(c->frules[0].n_rules, 1);
    run_done(&r);
}

/* null reads as absent for optional fields, as the API sends every field. */
static void test_null_is_absent(void **state)
{
    static const char src[] =
        "{'applicationLoadBalancer': {'id': null, 'entities': null, 'properties': {'name': 'a', "
        "'listenerLan': 1, 'targetLan': 2, 'ips': null, 'lbPrivateIps': null, "
        "'centralLogging': null, 'loggingFormat': null}}, "
        "'targetGroups': [{'id': 'tg1', 'properties': {'name': 'g', 'algorithm': 'RANDOM', "
        "'protocol': 'HTTP', 'protocolVersion': null, 'healthCheck': null, "
        "'httpHealthCheck': null, 'targets': [{'ip': '10.0.0.1', 'port': 80, 'weight': null, "
        "'proxyProtocol': null, 'healthCheckEnabled': null, 'maintenanceEnabled': null}]}}], "
        "'forwardingRules': [{'id': null, 'properties': {'name': 'f', 'protocol': 'HTTP', "
        "'listenerIp': '192.0.2.1', 'listenerPort': 80, 'clientTimeout': null, "
        "'serverCertificates': null, 'httpRules': ["
        "{'name': 'fw', 'type': 'FORWARD', 'targetGroup': 'tg1', 'location': null, "
        "'dropQuery': null, 'statusCode': null, 'responseMessage': null, 'contentType': null, "
        "'conditions': null}, "
        "{'name': 'st', 'type': 'STATIC', 'responseMessage': 'x', 'statusCode': null, "
        "'targetGroup': null, 'conditions': [{'type': 'PATH', 'condition': 'EXISTS', "
        "'key': null, 'value': null, 'negate': null}]}]}}], "
        "'sluice': {'threads': null, 'admin': null, 'addressMap': null, 'certificates': null, "
        "'sync': null, 'headerTimeout': null}}";
    struct run r;
    const struct sl_config *c = load_ok(&r, src, NULL);
    const struct sl_http_rule *h = c->frules[0].rules;

    (void)state;
    assert_true(c->alb.present);
    assert_null(c->alb.id);
    assert_int_equal(c->alb.n_ips, 0);
    assert_false(c->alb.central_logging);
    assert_null(c->alb.logging_format);
    assert_null(c->frules[0].id);
    assert_int_equal(c->frules[0].client_timeout_ms, 50000);
    assert_int_equal(h[0].n_conds, 0);
    assert_int_equal(h[1].status_code, 503);
    assert_int_equal(h[1].conds[0].op, SL_OP_EXISTS);
    assert_false(h[1].conds[0].negate);
    assert_int_equal(c->tgroups[0].targets[0].weight, 1);
    assert_true(c->tgroups[0].targets[0].health_check_enabled);
    assert_null(c->tgroups[0].http_check);
    assert_int_equal(c->local.header_timeout_ms, 10000);
    run_done(&r);
}

/* ---- target group references -------------------------------------------------------------- */

static void test_target_group_resolution(void **state)
{
    /* group[0] is named like group[1]'s id: the id wins */
    struct run r;
    const struct sl_config *c = load_ok(&r,
        "{'targetGroups': [" GROUP("a", "b") ", " GROUP("b", "c") ", "
        "{'properties': {'name': 'noid', 'algorithm': 'RANDOM', 'protocol': 'HTTP'}}], "
        FR(", 'httpRules': ["
           "{'name': 'by-id-over-name', 'type': 'FORWARD', 'targetGroup': 'b'},"
           "{'name': 'by-name', 'type': 'FORWARD', 'targetGroup': 'c'},"
           "{'name': 'by-id', 'type': 'FORWARD', 'targetGroup': 'a'},"
           "{'name': 'no-id', 'type': 'FORWARD', 'targetGroup': 'noid'}]") "}", NULL);
    const struct sl_http_rule *h = c->frules[0].rules;

    (void)state;
    assert_null(c->tgroups[2].id);
    assert_ptr_equal(h[0].group, &c->tgroups[1]);
    assert_ptr_equal(h[1].group, &c->tgroups[1]);
    assert_ptr_equal(h[2].group, &c->tgroups[0]);
    assert_ptr_equal(h[3].group, &c->tgroups[2]);
    assert_string_equal(h[0].target_group_ref, "b");
    run_done(&r);
}

/* ---- the IONOS evaluation order --------------------------------------------------------- */

static void test_evaluation_order(void **state)
{
    static const char *const want[] = { "s1", "r1", "s2", "f1", "f2", "f3" };
    struct run r;
    const struct sl_config *c = load_ok(&r,
        RULES("{'name': 'f1', 'type': 'FORWARD', 'targetGroup': 'tg1', 'conditions': "
              "[{'type': 'PATH', 'condition': 'EQUALS', 'value': '/1'}]},"
              "{'name': 's1', 'type': 'STATIC', 'responseMessage': 'x', 'conditions': "
              "[{'type': 'PATH', 'condition': 'EQUALS', 'value': '/2'}]},"
              "{'name': 'f2', 'type': 'FORWARD', 'targetGroup': 'tg1', 'conditions': "
              "[{'type': 'PATH', 'condition': 'EQUALS', 'value': '/3'}]},"
              "{'name': 'r1', 'type': 'REDIRECT', 'location': 'l', 'conditions': "
              "[{'type': 'PATH', 'condition': 'EQUALS', 'value': '/4'}]},"
              "{'name': 's2', 'type': 'STATIC', 'responseMessage': 'y', 'conditions': "
              "[{'type': 'PATH', 'condition': 'EQUALS', 'value': '/5'}]},"
              "{'name': 'f3', 'type': 'FORWARD', 'targetGroup': 'tg1'}"), NULL);
    const struct sl_forwarding_rule *f = &c->frules[0];

    (void)state;
    assert_int_equal(f->n_rules, 6);
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++)
        assert_string_equal(f->order[i]->name, want[i]);
    /* array order stays as written */
    assert_string_equal(f->rules[0].name, "f1");
    assert_int_equal(f->order[0]->index, 1);
    run_done(&r);
}

/* ---- address map ---------------------------------------------------------------------------- */

static void test_address_map(void **state)
{
    static const char *const cli[] = {
        "10.0.0.5=127.0.0.5",               /* overrides the file's 10.0.0.5 */
        "192.0.2.10:443=127.0.0.1:8443",    /* IP:PORT: the port changes too */
    };
    static const char src[] =
        "{'applicationLoadBalancer': {'properties': {'name': 'a', 'listenerLan': 1, "
        "'targetLan': 2, 'ips': ['192.0.2.10', '2001:db8::10'], "
        "'lbPrivateIps': ['10.20.30.40/24']}}, "
        "'targetGroups': [{'id': 'g', 'properties': {'name': 'g', 'algorithm': 'RANDOM', "
        "'protocol': 'HTTP', 'targets': ["
        "{'ip': '10.0.0.5', 'port': 80}, {'ip': '10.0.0.6', 'port': 8080}, "
        "{'ip': '10.0.0.6', 'port': 8081}, {'ip': '10.0.0.7', 'port': 80}, "
        "{'ip': '10.0.0.7', 'port': 81}, {'ip': '10.0.0.8', 'port': 80}, "
        "{'ip': '10.0.0.99', 'port': 80}]}}], "
        "'forwardingRules': ["
        "{'properties': {'name': 'tls', 'protocol': 'HTTP', 'listenerIp': '192.0.2.10', "
        "'listenerPort': 443}}, "
        "{'properties': {'name': 'plain', 'protocol': 'HTTP', 'listenerIp': '192.0.2.10', "
        "'listenerPort': 80}}, "
        "{'properties': {'name': 'v6', 'protocol': 'HTTP', 'listenerIp': '2001:db8::10', "
        "'listenerPort': 80}}], "
        "'sluice': {'addressMap': {"
        "'192.0.2.10': '127.0.0.1', '2001:db8::10': '::1', '10.0.0.5': '127.0.0.2', "
        "'10.0.0.6:8080': '127.0.0.3:9000', "
        "'10.0.0.7:80': '127.0.0.8', '10.0.0.7': '127.0.0.7', "   /* ip:port first */
        "'10.0.0.8': '127.0.0.7', '10.0.0.8:80': '127.0.0.9:90', " /* ip:port last */
        "'10.20.30.40': '127.0.0.40'}}}";
    static const struct {
        const char *ip;
        unsigned port;
    } want[] = {
        { "127.0.0.5", 80 }, { "127.0.0.3", 9000 }, { "10.0.0.6", 8081 }, { "127.0.0.8", 80 },
        { "127.0.0.7", 81 }, { "127.0.0.9", 90 },   { "10.0.0.99", 80 },
    };
    struct sl_map_entry m[SL_ARRAY_LEN(cli)];
    struct sl_load_opts o = { .map = m, .n_map = SL_ARRAY_LEN(cli) };
    struct run r;
    const struct sl_config *c;
    const struct sl_target *t;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cli); i++)
        assert_int_equal(sl_map_entry_parse(cli[i], &m[i]), 0);
    c = load_ok(&r, src, &o);

    /* listeners: the --map ip:port entry, then the file's ip-only one */
    assert_string_equal(c->frules[0].listener_ip, "192.0.2.10");
    assert_ip(&c->frules[0].listen, "127.0.0.1");
    assert_int_equal(c->frules[0].port, 8443);
    assert_int_equal(c->frules[0].port_orig, 443);
    assert_ip(&c->frules[1].listen, "127.0.0.1");
    assert_int_equal(c->frules[1].port, 80);
    assert_ip(&c->frules[2].listen, "::1");
    assert_string_equal(c->frules[2].listener_ip, "2001:db8::10");

    /* targets */
    t = c->tgroups[0].targets;
    assert_int_equal(c->tgroups[0].n_targets, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        assert_ip(&t[i].addr, want[i].ip);
        assert_int_equal(t[i].port, want[i].port);
    }
    assert_string_equal(t[0].ip, "10.0.0.5");
    assert_int_equal(t[1].port_orig, 8080);

    /* ALB addresses: mapped, text kept */
    assert_string_equal(c->alb.ips[0], "192.0.2.10");
    assert_ip(&c->alb.ip_addrs[0], "127.0.0.1");
    assert_ip(&c->alb.ip_addrs[1], "::1");
    assert_string_equal(c->alb.lb_private_ips[0], "10.20.30.40/24");
    assert_ip(&c->alb.lb_private[0].addr, "127.0.0.40");
    assert_int_equal(c->alb.lb_private[0].prefix, 24);

    /* the file's entries, then --map's */
    assert_int_equal(c->local.n_map, 9 + SL_ARRAY_LEN(cli));
    assert_ip(&c->local.map[9].to, "127.0.0.5");
    run_done(&r);
}

/* --map alone, on a config without sluice.addressMap. */
static void test_address_map_cli_only(void **state)
{
    struct sl_map_entry m;
    struct sl_load_opts o = { .map = &m, .n_map = 1 };
    struct run r;
    const struct sl_config *c;

    (void)state;
    assert_int_equal(sl_map_entry_parse("192.0.2.1=127.0.0.1", &m), 0);
    c = load_ok(&r, DOC(FR("")), &o);
    assert_ip(&c->frules[0].listen, "127.0.0.1");
    assert_int_equal(c->frules[0].port, 80);
    assert_ip(&c->tgroups[0].targets[0].addr, "10.0.0.1");
    assert_int_equal(c->local.n_map, 1);
    run_done(&r);
}

static void test_map_entry_parse(void **state)
{
    static const struct {
        const char *in;
        const char *from, *to;
        unsigned from_port, to_port;
    } good[] = {
        { "1.2.3.4=127.0.0.1", "1.2.3.4", "127.0.0.1", 0, 0 },
        { "1.2.3.4:80=127.0.0.1:8080", "1.2.3.4", "127.0.0.1", 80, 8080 },
        { "1.2.3.4=127.0.0.1:8080", "1.2.3.4", "127.0.0.1", 0, 8080 },
        { "1.2.3.4:443=127.0.0.1", "1.2.3.4", "127.0.0.1", 443, 0 },
        { "2001:db8::1=::1", "2001:db8::1", "::1", 0, 0 },
        { "[2001:db8::1]:443=[::1]:8443", "2001:db8::1", "::1", 443, 8443 },
        { "1.2.3.4:65535=5.6.7.8:1", "1.2.3.4", "5.6.7.8", 65535, 1 },
    };
    static const char *const bad[] = {
        "", "=", "1.2.3.4", "=1.2.3.4", "1.2.3.4=", "1.2.3.4=host", "host=1.2.3.4",
        "1.2.3.4:0=5.6.7.8", "1.2.3.4:65536=5.6.7.8", "1.2.3.4=5.6.7.8:0", "1.2.3.4=5.6.7.8=9",
        " 1.2.3.4=5.6.7.8", "1.2.3.4 =5.6.7.8", "[1.2.3.4]:80=5.6.7.8", "[::1]=::2",
        "1.2.3.4/32=5.6.7.8", "1.2.3.4:80:90=5.6.7.8",
        "1.2.3.4=1111111111111111111111111111111111111111111111111111111111111111111111111111111"
        "11111111111111111111111111111111111111111111111111111111111111111111111111111111111111",
    };
    struct sl_map_entry m;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        if (sl_map_entry_parse(good[i].in, &m) != 0)
            fail_msg("'%s' should parse", good[i].in);
        assert_ip(&m.from, good[i].from);
        assert_ip(&m.to, good[i].to);
        assert_int_equal(m.from_port, good[i].from_port);
        assert_int_equal(m.to_port, good[i].to_port);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        if (sl_map_entry_parse(bad[i], &m) != -1)
            fail_msg("'%s' should not parse", bad[i]);
}

/* ---- refcounting ------------------------------------------------------------------------ */

static void test_refcount(void **state)
{
    struct run r;
    struct sl_config *c;

    (void)state;
    run_load(&r, full_config, NULL);
    c = r.c;
    assert_non_null(c);
    assert_int_equal(atomic_load(&c->refcnt), 1);
    assert_ptr_equal(sl_config_ref(c), c);
    assert_ptr_equal(sl_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refcnt), 3);
    sl_config_unref(c);
    sl_config_unref(c);
    assert_int_equal(atomic_load(&c->refcnt), 1);
    assert_string_equal(c->frules[0].name, "web"); /* still alive */
    sl_config_unref(c);                            /* the last one frees (ASan checks) */
    sl_config_unref(NULL);
    r.c = NULL;
    run_done(&r);
}

/* ---- one row per validation error class ----------------------------------------------------- */

struct erow {
    const char *name;
    const char *src;
    const char *path;
    const char *frag;
    const char *nofrag; /* must not be in that message */
    unsigned n_errors;  /* 0 = exactly 1 */
};

static const struct erow erows[] = {
    /* root */
    { "root not an object", "`[1, 2]", "", "must be an object with applicationLoadBalancer, "
      "forwardingRules, targetGroups and sluice, not an array", NULL, 0 },
    { "no top-level key", "`{'foo': 1}", "", "none of applicationLoadBalancer, forwardingRules, "
      "targetGroups, sluice is here", "request body", 0 },
    { "no top-level key, request body", "`{'properties': {'name': 'x'}}", "",
      "this looks like one API request body: put it under \"applicationLoadBalancer\"", NULL, 0 },

    /* missing required fields */
    { "missing fr name",
      DOC("'forwardingRules': [{'properties': `{'protocol': 'HTTP', 'listenerIp': '192.0.2.1', "
          "'listenerPort': 80}}]"),
      P_FR ".name", "missing; required: the forwarding rule's name", NULL, 0 },
    { "missing protocol",
      DOC("'forwardingRules': [{'properties': `{'name': 'f', 'listenerIp': '192.0.2.1', "
          "'listenerPort': 80}}]"),
      P_FR ".protocol", "missing; required: one of HTTP", NULL, 0 },
    { "missing listenerIp",
      DOC("'forwardingRules': [{'properties': `{'name': 'f', 'protocol': 'HTTP', "
          "'listenerPort': 80}}]"),
      P_FR ".listenerIp", "missing; required: the listener IP", NULL, 0 },
    { "missing listenerPort",
      DOC("'forwardingRules': [{'properties': `{'name': 'f', 'protocol': 'HTTP', "
          "'listenerIp': '192.0.2.1'}}]"),
      P_FR ".listenerPort", "missing; required: an integer from 1 to 65535", NULL, 0 },
    { "missing properties", "{'forwardingRules': [`{'id': 'x'}]}", "forwardingRules[0].properties",
      "missing; required: an object with the resource's properties", NULL, 0 },
    { "empty required string",
      DOC("'forwardingRules': [{'properties': {'name': `'', 'protocol': 'HTTP', "
          "'listenerIp': '192.0.2.1', 'listenerPort': 80}}]"),
      P_FR ".name", "must not be empty; required: the forwarding rule's name", NULL, 0 },
    { "missing rule name", RULES("`{'type': 'FORWARD', 'targetGroup': 'tg1'}"), P_RULE ".name",
      "missing; required: the rule's name", NULL, 0 },
    { "missing rule type", RULES("`{'name': 'r', 'targetGroup': 'tg1'}"), P_RULE ".type",
      "missing; required: one of FORWARD, STATIC, REDIRECT", NULL, 0 },
    { "missing algorithm",
      "{'targetGroups': [{'properties': `{'name': 'g', 'protocol': 'HTTP'}}]}", P_TG ".algorithm",
      "missing; required: one of ROUND_ROBIN, LEAST_CONNECTION, RANDOM, SOURCE_IP", NULL, 0 },
    { "missing group name",
      "{'targetGroups': [{'properties': `{'algorithm': 'RANDOM', 'protocol': 'HTTP'}}]}",
      P_TG ".name", "missing; required: the target group's name", NULL, 0 },
    { "missing target ip", TARGETS("`{'port': 80}"), P_T ".ip",
      "missing; required: the target's IP address", NULL, 0 },
    { "missing target port", TARGETS("`{'ip': '10.0.0.1'}"), P_T ".port",
      "missing; required: an integer from 1 to 65535", NULL, 0 },
    { "missing ALB listenerLan",
      "{'applicationLoadBalancer': {'properties': `{'name': 'alb', 'targetLan': 2}}}",
      P_ALB ".listenerLan",
      "missing; required: an integer from 1 to 2147483647 (LAN id)", NULL, 0 },
    { "missing key for HEADER", FWD("`{'type': 'HEADER', 'condition': 'EXISTS'}"), P_COND ".key",
      "missing; required: the header name", NULL, 0 },
    { "missing key for QUERY", FWD("`{'type': 'QUERY', 'condition': 'EXISTS'}"), P_COND ".key",
      "missing; required: the query parameter name", NULL, 0 },
    { "missing key for COOKIE", FWD("`{'type': 'COOKIE', 'condition': 'EXISTS'}"),
      P_COND ".key", "missing; required: the cookie name", NULL, 0 },
    { "missing condition", FWD("`{'type': 'PATH', 'value': '/'}"), P_COND ".condition",
      "missing; required: one of EXISTS, CONTAINS, EQUALS, MATCHES, STARTS_WITH, ENDS_WITH",
      NULL, 0 },
    { "missing value for EQUALS", FWD("`{'type': 'PATH', 'condition': 'EQUALS'}"),
      P_COND ".value", "missing; required with condition EQUALS", NULL, 0 },
    { "missing value for SOURCE_IP", FWD("`{'type': 'SOURCE_IP'}"), P_COND ".value",
      "missing; required: a CIDR", NULL, 0 },
    { "missing targetGroup for FORWARD", RULES("`{'name': 'r', 'type': 'FORWARD'}"),
      P_RULE ".targetGroup", "missing; required: the target group's id (or name)", NULL, 0 },
    { "missing location for REDIRECT", RULES("`{'name': 'r', 'type': 'REDIRECT'}"),
      P_RULE ".location", "missing; required: the redirect target", NULL, 0 },
    { "missing responseMessage for STATIC", RULES("`{'name': 'r', 'type': 'STATIC'}"),
      P_RULE ".responseMessage", "missing; required: the response body", NULL, 0 },
    { "missing matchType", TG(", 'httpHealthCheck': `{'response': '200'}"),
      P_TG ".httpHealthCheck.matchType", "missing; required: one of STATUS_CODE, RESPONSE_BODY",
      NULL, 0 },
    { "missing response", TG(", 'httpHealthCheck': `{'matchType': 'STATUS_CODE'}"),
      P_TG ".httpHealthCheck.response", "missing; required: the expected status code", NULL, 0 },
    { "missing sync datacenterId", SLUICE("'sync': `{'applicationLoadBalancerId': 'a'}"),
      "sluice.sync.datacenterId", "missing; required: the data center's UUID", NULL, 0 },
    { "missing sync ALB id", SLUICE("'sync': `{'datacenterId': 'd'}"),
      "sluice.sync.applicationLoadBalancerId", "missing; required: the ALB's UUID", NULL, 0 },

    /* wrong types */
    { "string for integer", DOC(FRX(", 'listenerPort': `'8080'")), P_FR ".listenerPort",
      "must be an integer, not a string (\"8080\"); write it without quotes", NULL, 0 },
    { "non-numeric string for integer", TARGETS("{'ip': '10.0.0.1', 'port': `'http'}"),
      P_T ".port", "must be an integer, not a string (\"http\")", "without quotes", 0 },
    { "number for integer", TARGETS("{'ip': '10.0.0.1', 'port': 80, 'weight': `1.5}"),
      P_T ".weight", "must be an integer, not a number (1.5)", NULL, 0 },
    { "string true for boolean",
      TARGETS("{'ip': '10.0.0.1', 'port': 80, 'healthCheckEnabled': `'true'}"),
      P_T ".healthCheckEnabled", "must be a boolean, not the string \"true\"; write it without "
      "quotes", NULL, 0 },
    { "number for boolean", RULES("{'name': 'r', 'type': 'REDIRECT', 'location': 'l', "
                                  "'dropQuery': `1}"),
      P_RULE ".dropQuery", "must be true or false, not an integer (1)", NULL, 0 },
    { "number for string",
      DOC("'forwardingRules': [{'properties': {'name': `5, 'protocol': 'HTTP', "
          "'listenerIp': '192.0.2.1', 'listenerPort': 80}}]"),
      P_FR ".name", "not an integer (5)", NULL, 0 },
    { "number for id", "{'targetGroups': [{'id': `7, 'properties': {'name': 'g', "
                       "'algorithm': 'RANDOM', 'protocol': 'HTTP'}}]}",
      "targetGroups[0].id", "must be a string (the resource id), not an integer (7)", NULL, 0 },
    { "number for enum", TGX(", 'algorithm': `1"), P_TG ".algorithm",
      "must be one of ROUND_ROBIN, LEAST_CONNECTION, RANDOM, SOURCE_IP, not an integer (1)",
      NULL, 0 },
    { "object for array", DOC(FR(", 'httpRules': `{}")), P_FR ".httpRules",
      "must be an array, not an object ({})", NULL, 0 },
    { "object for targets", TG(", 'targets': `{'ip': '10.0.0.1'}"), P_TG ".targets",
      "must be an array, not an object", NULL, 0 },
    { "string for forwardingRules", "{'forwardingRules': `'x'}", "forwardingRules",
      "must be an array (or a collection object with \"items\"), not a string", NULL, 0 },
    { "array for object", TG(", 'healthCheck': `[]"), P_TG ".healthCheck",
      "must be an object, not an array", NULL, 0 },
    { "sluice not an object", "{'sluice': `true}", "sluice", "must be an object, not a boolean",
      NULL, 0 },
    { "entities not an object",
      "{'applicationLoadBalancer': {'properties': {'name': 'a', 'listenerLan': 1, "
      "'targetLan': 2}, 'entities': `[]}}",
      "applicationLoadBalancer.entities", "must be an object, not an array", NULL, 0 },
    { "resource not an object", "{'targetGroups': [`[]]}", "targetGroups[0]",
      "must be a target group object with \"properties\", not an array", NULL, 0 },
    { "rule not an object", RULES("`'r1'"), P_RULE,
      "must be an http rule object, not a string", NULL, 0 },
    { "condition not an object", FWD("`1"), P_COND, "must be a condition object, not an integer",
      NULL, 0 },
    { "certificate not a string", DOC(FR(", 'serverCertificates': [`1]")),
      P_FR ".serverCertificates[0]", "must be a certificate id (string), not an integer", NULL, 0 },

    /* enums */
    { "enum not allowed",
      DOC("'forwardingRules': [{'properties': {'name': 'f', 'protocol': `'HTTPS', "
          "'listenerIp': '192.0.2.1', 'listenerPort': 80}}]"),
      P_FR ".protocol", "\"HTTPS\" is not one of HTTP", "did you mean", 0 },
    { "enum case slip",
      DOC("'forwardingRules': [{'properties': {'name': 'f', 'protocol': `'http', "
          "'listenerIp': '192.0.2.1', 'listenerPort': 80}}]"),
      P_FR ".protocol", "\"http\" is not one of HTTP (values are case-sensitive: did you mean "
      "\"HTTP\"?)", NULL, 0 },
    { "algorithm case slip", TGX(", 'algorithm': `'round_robin'"), P_TG ".algorithm",
      "did you mean \"ROUND_ROBIN\"", NULL, 0 },
    { "condition not allowed",
      FWD("{'type': 'HEADER', 'condition': `'EQUAL', 'key': 'Upgrade', 'value': 'websocket'}"),
      P_COND ".condition", "\"EQUAL\" is not one of EXISTS, CONTAINS, EQUALS, MATCHES, "
      "STARTS_WITH, ENDS_WITH", "did you mean", 0 },
    { "condition type not allowed", FWD("{'type': `'IP', 'value': '10.0.0.0/8'}"),
      P_COND ".type", "\"IP\" is not one of HEADER, PATH, QUERY, METHOD, HOST, COOKIE, SOURCE_IP",
      NULL, 0 },
    { "rule type case slip", RULES("{'name': 'r', 'type': `'static', 'responseMessage': 'x'}"),
      P_RULE ".type", "did you mean \"STATIC\"", NULL, 0 },
    { "proxyProtocol case slip",
      TARGETS("{'ip': '10.0.0.1', 'port': 80, 'proxyProtocol': `'V2'}"), P_T ".proxyProtocol",
      "\"V2\" is not one of none, v1, v2, v2ssl (values are case-sensitive: did you mean \"v2\"?)",
      NULL, 0 },
    { "protocolVersion not allowed", TG(", 'protocolVersion': `'HTTP3'"),
      P_TG ".protocolVersion", "\"HTTP3\" is not one of HTTP1, HTTP2", NULL, 0 },
    { "health check method not allowed",
      TG(", 'httpHealthCheck': {'method': `'DELETE', 'matchType': 'STATUS_CODE', "
         "'response': '200'}"),
      P_TG ".httpHealthCheck.method", "is not one of GET, HEAD, PUT, POST, TRACE, PATCH, OPTIONS",
      NULL, 0 },

    /* ranges */
    { "listenerPort 0", DOC(FRX(", 'listenerPort': `0")), P_FR ".listenerPort",
      "0 is out of range; allowed: 1 to 65535", NULL, 0 },
    { "listenerPort 65536", DOC(FRX(", 'listenerPort': `65536")), P_FR ".listenerPort",
      "65536 is out of range; allowed: 1 to 65535", NULL, 0 },
    { "target port 0", TARGETS("{'ip': '10.0.0.1', 'port': `0}"), P_T ".port",
      "0 is out of range; allowed: 1 to 65535", NULL, 0 },
    { "weight 257", TARGETS("{'ip': '10.0.0.1', 'port': 80, 'weight': `257}"), P_T ".weight",
      "257 is out of range; allowed: 0 to 256", NULL, 0 },
    { "weight -1", TARGETS("{'ip': '10.0.0.1', 'port': 80, 'weight': `-1}"), P_T ".weight",
      "-1 is out of range; allowed: 0 to 256", NULL, 0 },
    { "retries 65536", TG(", 'healthCheck': {'retries': `65536}"), P_TG ".healthCheck.retries",
      "65536 is out of range; allowed: 0 to 65535", NULL, 0 },
    { "checkInterval 0", TG(", 'healthCheck': {'checkInterval': `0}"),
      P_TG ".healthCheck.checkInterval", "0 is out of range; allowed: 1 to 2147483647 ms", NULL,
      0 },
    { "checkTimeout 0", TG(", 'healthCheck': {'checkTimeout': `0}"),
      P_TG ".healthCheck.checkTimeout", "0 is out of range; allowed: 1 to 2147483647 ms", NULL,
      0 },
    { "STATIC statusCode 199",
      RULES("{'name': 'r', 'type': 'STATIC', 'responseMessage': 'x', 'statusCode': `199}"),
      P_RULE ".statusCode", "199 is out of range; allowed: 200 to 599", NULL, 0 },
    { "STATIC statusCode 600",
      RULES("{'name': 'r', 'type': 'STATIC', 'responseMessage': 'x', 'statusCode': `600}"),
      P_RULE ".statusCode", "600 is out of range; allowed: 200 to 599", NULL, 0 },
    { "REDIRECT statusCode 305",
      RULES("{'name': 'r', 'type': 'REDIRECT', 'location': 'l', 'statusCode': `305}"),
      P_RULE ".statusCode", "305 is not a redirect status; allowed: 301, 302, 303, 307, 308",
      NULL, 0 },
    { "REDIRECT statusCode 200",
      RULES("{'name': 'r', 'type': 'REDIRECT', 'location': 'l', 'statusCode': `200}"),
      P_RULE ".statusCode", "200 is not a redirect status", NULL, 0 },
    { "REDIRECT statusCode string",
      RULES("{'name': 'r', 'type': 'REDIRECT', 'location': 'l', 'statusCode': `'302'}"),
      P_RULE ".statusCode", "write it without quotes", NULL, 0 },
    { "clientTimeout 0", DOC(FR(", 'clientTimeout': `0")), P_FR ".clientTimeout",
      "0 is out of range; allowed: 1 to 2147483647 ms", NULL, 0 },
    { "listenerLan 0", ALBX(", 'listenerLan': `0, 'targetLan': 2"), P_ALB ".listenerLan",
      "0 is out of range; allowed: 1 to 2147483647 (LAN id)", NULL, 0 },
    { "threads 1025", SLUICE("'threads': `1025"), "sluice.threads",
      "1025 is out of range; allowed: 0 to 1024 (0 = one per CPU)", NULL, 0 },
    { "sync intervalSeconds 0",
      SLUICE("'sync': {'datacenterId': 'd', 'applicationLoadBalancerId': 'a', "
             "'intervalSeconds': `0}"),
      "sluice.sync.intervalSeconds", "0 is out of range; allowed: 1 to 86400 seconds", NULL, 0 },
    { "headerTimeout 0", SLUICE("'headerTimeout': `0"), "sluice.headerTimeout",
      "0 is out of range; allowed: 1 to 2147483647 ms", NULL, 0 },
    { "drainTimeout -1", SLUICE("'drainTimeout': `-1"), "sluice.drainTimeout",
      "-1 is out of range; allowed: 0 to 2147483647 ms (0 = close everything at once on SIGTERM)", NULL, 0 },
    { "busyPoll 100001", SLUICE("'busyPoll': `100001"), "sluice.busyPoll",
      "100001 is out of range; allowed: 0 to 100000 microseconds a worker keeps polling after "
      "its last event (0 = off)", NULL, 0 },
    { "busyPoll not a number", SLUICE("'busyPoll': `true"), "sluice.busyPoll",
      "must be an integer, not a boolean", NULL, 0 },

    /* addresses */
    { "invalid target IP", TARGETS("{'ip': `'10.0.0.300', 'port': 80}"), P_T ".ip",
      "\"10.0.0.300\" is not an IPv4 or IPv6 address", NULL, 0 },
    { "listener IP with mask",
      DOC("'forwardingRules': [{'properties': {'name': 'f', 'protocol': 'HTTP', "
          "'listenerIp': `'192.0.2.1/32', 'listenerPort': 80}}]"),
      P_FR ".listenerIp", "\"192.0.2.1/32\" is not an IP address: write it without the /mask",
      NULL, 0 },
    { "invalid ALB ip", ALB(", 'ips': ['192.0.2.1', `'alb.example']"), P_ALB ".ips[1]",
      "\"alb.example\" is not an IPv4 or IPv6 address", NULL, 0 },
    { "lbPrivateIps without mask", ALB(", 'lbPrivateIps': [`'10.20.30.40']"),
      P_ALB ".lbPrivateIps[0]", "\"10.20.30.40\" has no mask; lbPrivateIps are written with "
      "one, e.g. \"10.20.30.40/24\"", NULL, 0 },
    { "lbPrivateIps invalid", ALB(", 'lbPrivateIps': [`'10.20.30.400/24']"),
      P_ALB ".lbPrivateIps[0]", "is not an IP address with a mask", NULL, 0 },
    { "lbPrivateIps bad prefix", ALB(", 'lbPrivateIps': [`'10.20.30.40/33']"),
      P_ALB ".lbPrivateIps[0]", "is not an IP address with a mask", NULL, 0 },
    { "SOURCE_IP without mask", FWD("{'type': 'SOURCE_IP', 'value': `'10.0.0.1'}"),
      P_COND ".value", "\"10.0.0.1\" is not a CIDR: IONOS requires the mask (\"10.0.0.1/32\" "
      "for one address)", NULL, 0 },
    { "SOURCE_IP v6 without mask", FWD("{'type': 'SOURCE_IP', 'value': `'2001:db8::1'}"),
      P_COND ".value", "(\"2001:db8::1/128\" for one address)", NULL, 0 },
    { "SOURCE_IP invalid CIDR", FWD("{'type': 'SOURCE_IP', 'value': `'10.0.0.0/33'}"),
      P_COND ".value", "\"10.0.0.0/33\" is not a valid CIDR", NULL, 0 },

    /* fields that must not be there */
    { "condition for SOURCE_IP",
      FWD("{'type': 'SOURCE_IP', 'condition': `'EQUALS', 'value': '10.0.0.0/8'}"),
      P_COND ".condition", "must be null or absent for type SOURCE_IP", NULL, 0 },
    { "key for PATH", FWD("{'type': 'PATH', 'condition': 'EQUALS', 'key': `'k', 'value': '/'}"),
      P_COND ".key", "must be null or absent for type PATH (key is only for HEADER, QUERY, "
      "COOKIE)", NULL, 0 },
    { "key for SOURCE_IP", FWD("{'type': 'SOURCE_IP', 'key': `'k', 'value': '10.0.0.0/8'}"),
      P_COND ".key", "must be null or absent for type SOURCE_IP", NULL, 0 },
    { "value for EXISTS",
      FWD("{'type': 'HEADER', 'condition': 'EXISTS', 'key': 'X-A', 'value': `'y'}"),
      P_COND ".value", "must be null or absent with condition EXISTS", NULL, 0 },
    { "targetGroup on STATIC",
      RULES("{'name': 'r', 'type': 'STATIC', 'responseMessage': 'x', 'targetGroup': `'tg1'}"),
      P_RULE ".targetGroup", "is not valid for a STATIC rule (only for FORWARD)", NULL, 0 },
    { "location on FORWARD",
      RULES("{'name': 'r', 'type': 'FORWARD', 'targetGroup': 'tg1', 'location': `'l'}"),
      P_RULE ".location", "is not valid for a FORWARD rule (only for REDIRECT)", NULL, 0 },
    { "responseMessage on REDIRECT",
      RULES("{'name': 'r', 'type': 'REDIRECT', 'location': 'l', 'responseMessage': `'x'}"),
      P_RULE ".responseMessage", "is not valid for a REDIRECT rule (only for STATIC)", NULL, 0 },
    { "statusCode on FORWARD",
      RULES("{'name': 'r', 'type': 'FORWARD', 'targetGroup': 'tg1', 'statusCode': `200}"),
      P_RULE ".statusCode", "is not valid for a FORWARD rule (only for STATIC and REDIRECT)",
      NULL, 0 },

    /* values */
    { "invalid header name", FWD("{'type': 'HEADER', 'condition': 'EXISTS', 'key': `'X Bad'}"),
      P_COND ".key", "\"X Bad\" is not a valid header name", NULL, 0 },
    { "bad regex in MATCHES", FWD("{'type': 'PATH', 'condition': 'MATCHES', 'value': `'^(a'}"),
      P_COND ".value", "\"^(a\" is not a valid PCRE2 regular expression: ", NULL, 0 },
    { "bad regex in httpHealthCheck",
      TG(", 'httpHealthCheck': {'matchType': 'RESPONSE_BODY', 'response': `'(', 'regex': true}"),
      P_TG ".httpHealthCheck.response", "\"(\" is not a valid PCRE2 regular expression", NULL, 0 },
    { "STATUS_CODE response not a code",
      TG(", 'httpHealthCheck': {'matchType': 'STATUS_CODE', 'response': `'ok'}"),
      P_TG ".httpHealthCheck.response", "\"ok\" is not a status code; with matchType STATUS_CODE "
      "it must be 100 to 599", NULL, 0 },
    { "STATUS_CODE response 600",
      TG(", 'httpHealthCheck': {'matchType': 'STATUS_CODE', 'response': `'600'}"),
      P_TG ".httpHealthCheck.response", "\"600\" is not a status code", NULL, 0 },
    { "health check path without slash",
      TG(", 'httpHealthCheck': {'path': `'health', 'matchType': 'STATUS_CODE', "
         "'response': '200'}"),
      P_TG ".httpHealthCheck.path", "\"health\" must start with '/'", NULL, 0 },

    /* duplicates and references */
    { "duplicate http rule name",
      RULES("{'name': 'a', 'type': 'STATIC', 'responseMessage': 'x'}, "
            "{'name': `'a', 'type': 'REDIRECT', 'location': 'l'}"),
      P_FR ".httpRules[1].name", "duplicate http rule name \"a\" (also httpRules[0])", NULL, 0 },
    { "duplicate target",
      TARGETS("{'ip': '10.0.0.1', 'port': 80}, {'ip': '10.0.0.1', 'port': 81}, "
              "`{'ip': '10.0.0.1', 'port': 80, 'weight': 5}"),
      P_TG ".targets[2]", "duplicate target 10.0.0.1:80 (also at targets[0])", NULL, 0 },
    { "duplicate target, IPv6 written differently",
      TARGETS("{'ip': '2001:db8::1', 'port': 80}, `{'ip': '2001:DB8:0::1', 'port': 80}"),
      P_TG ".targets[1]", "duplicate target [2001:db8::1]:80 (also at targets[0])", NULL, 0 },
    { "duplicate target group id",
      "{'targetGroups': [" GROUP("x", "a") ", `" GROUP("x", "b") "]}", "targetGroups[1]",
      "duplicate target group id \"x\" (also targetGroups[0])", NULL, 0 },
    { "duplicate forwarding rule id",
      "{'forwardingRules': [{'id': 'f', 'properties': {'name': 'a', 'protocol': 'HTTP', "
      "'listenerIp': '192.0.2.1', 'listenerPort': 80}}, `{'id': 'f', 'properties': {'name': "
      "'b', 'protocol': 'HTTP', 'listenerIp': '192.0.2.1', 'listenerPort': 81}}]}",
      "forwardingRules[1]", "duplicate forwarding rule id \"f\" (also forwardingRules[0])",
      NULL, 0 },
    { "duplicate forwarding rule id across places",
      "{'forwardingRules': [{'id': 'f', 'properties': {'name': 'a', 'protocol': 'HTTP', "
      "'listenerIp': '192.0.2.1', 'listenerPort': 80}}], "
      MINI_ALB("{'forwardingrules': {'items': [`{'id': 'f', 'properties': {'name': 'b', "
               "'protocol': 'HTTP', 'listenerIp': '192.0.2.1', 'listenerPort': 81}}]}}") "}",
      "applicationLoadBalancer.entities.forwardingrules.items[0]",
      "duplicate forwarding rule id \"f\" (also forwardingRules[0])", NULL, 0 },
    { "missing target group",
      "{'targetGroups': [" GROUP("tg1", "g1") ", " GROUP("tg2", "g2") "], "
      FR(", 'httpRules': [{'name': 'r', 'type': 'FORWARD', 'targetGroup': `'nope'}]") "}",
      P_RULE ".targetGroup", "\"nope\" matches no target group id or name; ids: \"tg1\", "
      "\"tg2\"; names: \"g1\", \"g2\"", NULL, 0 },
    { "no target groups at all",
      "{" FR(", 'httpRules': [{'name': 'r', 'type': 'FORWARD', 'targetGroup': `'tg1'}]") "}",
      P_RULE ".targetGroup", "\"tg1\" matches no target group: the file defines none", NULL, 0 },
    { "ambiguous target group name",
      "{'targetGroups': [" GROUP("a", "g") ", " GROUP("b", "g") "], "
      FR(", 'httpRules': [{'name': 'r', 'type': 'FORWARD', 'targetGroup': `'g'}]") "}",
      P_RULE ".targetGroup", "\"g\" names 2 target groups; refer to one by its id", NULL, 0 },
    { "certificate without entry", DOC(FR(", 'serverCertificates': [`'cert-9']")),
      P_FR ".serverCertificates[0]", "certificate \"cert-9\" has no entry in sluice.certificates",
      NULL, 0 },

    /* sluice block */
    { "admin not IP:PORT", SLUICE("'admin': `'127.0.0.1'"), "sluice.admin",
      "\"127.0.0.1\" is not IP:PORT", NULL, 0 },
    { "addressMap value not an IP", SLUICE("'addressMap': {'192.0.2.1': `'local'}"),
      "sluice.addressMap[\"192.0.2.1\"]", "\"local\" is not an IP address or IP:PORT to map to",
      NULL, 0 },
    { "addressMap key not an IP", SLUICE("'addressMap': {'alb': `'127.0.0.1'}"),
      "sluice.addressMap.alb", "\"alb\" is not an IP address or IP:PORT to map from", NULL, 0 },
    { "addressMap value not a string", SLUICE("'addressMap': {'192.0.2.1': `1}"),
      "sluice.addressMap[\"192.0.2.1\"]", "must be a string: the local IP (or IP:PORT) to use "
      "instead, not an integer", NULL, 0 },
    { "addressMap mixing families", SLUICE("'addressMap': {'192.0.2.1': `'::1'}"),
      "sluice.addressMap[\"192.0.2.1\"]", "maps an IPv4 address to an IPv6 one; both sides must "
      "be of one family", NULL, 0 },
    { "certificates entry missing key", SLUICE("'certificates': {'c1': `{'cert': 'c.pem'}}"),
      "sluice.certificates.c1.key", "missing; required: the PEM private key file", NULL, 0 },
    { "certificates entry not an object", SLUICE("'certificates': {'c1': `'c.pem'}"),
      "sluice.certificates.c1", "must be an object with \"cert\" and \"key\" file names", NULL,
      0 },

    /* errors inside the other places rules and groups may stand */
    { "error in a nested forwarding rule",
      "{" MINI_ALB("{'forwardingrules': {'items': [{'properties': {'name': 'fr', 'protocol': "
                   "'HTTP', 'listenerIp': '192.0.2.1', 'listenerPort': `0}}]}}") "}",
      "applicationLoadBalancer.entities.forwardingrules.items[0].properties.listenerPort",
      "0 is out of range", NULL, 0 },
    { "error in a target group collection",
      "{'targetGroups': {'items': [{'properties': {'name': 'g', 'algorithm': `'X', "
      "'protocol': 'HTTP'}}]}}",
      "targetGroups.items[0].properties.algorithm", "\"X\" is not one of ROUND_ROBIN", NULL, 0 },
    /* multi-line: the line counts */
    { "position on a later line",
      "{\n  'targetGroups': [\n    {'properties': {'name': 'g', 'algorithm': 'RANDOM',\n"
      "      'protocol': 'HTTP', 'targets': [{'ip': '10.0.0.1', 'port': `70000}]}}\n  ]\n}\n",
      P_T ".port", "70000 is out of range", NULL, 0 },
};

static void test_error_row(void **state)
{
    const struct erow *e = *state;
    const struct sl_diag *x;
    struct run r;

    run_load(&r, e->src, NULL);
    if (r.c) {
        sl_diags_print(&r.d, stderr);
        fail_msg("%s: the config loaded", e->name);
    }
    assert_int_not_equal(r.line, 0); /* every row marks its position */
    x = expect_diag(&r.d, SL_DIAG_ERROR, e->path, r.line, r.col, e->frag);
    if (e->nofrag && strstr(x->msg, e->nofrag))
        fail_msg("%s: '%s' should not contain '%s'", e->name, x->msg, e->nofrag);
    if (r.d.n_errors != (e->n_errors ? e->n_errors : 1)) {
        sl_diags_print(&r.d, stderr);
        fail_msg("%s: %zu errors", e->name, r.d.n_errors);
    }
    run_done(&r);
}

/* ---- errors that need more than one row's worth -------------------------------------------- */

static void test_unknown_sluice_setting_warns(void **state)
{
    struct run r;

    (void)state;
    run_load(&r, "{'sluice': {'threads': 2, 'thread': `4}}", NULL);
    assert_non_null(r.c);
    assert_int_equal(r.d.n_errors, 0);
    assert_int_equal(r.d.n_warnings, 1);
    expect_diag(&r.d, SL_DIAG_WARNING, "sluice.thread", r.line, r.col,
                "unknown sluice setting, ignored (known: threads,");
    assert_int_equal(r.c->local.threads, 2);
    run_done(&r);
}

/* Typographic quotes and an unquoted IP, as pasted from the IONOS docs, in one run. */
static void test_json_syntax_errors(void **state)
{
    static const char src[] =
        "{\n"
        "  `\xE2\x80\x9C" "forwardingRules\xE2\x80\x9D: [{\n"
        "    \"properties\": {\"name\": \"fr\", \"listenerIp\": `1.2.3.4}}]\n"
        "}\n";
    struct run r;

    (void)state;
    run_load(&r, src, NULL);
    assert_null(r.c);
    expect_diag(&r.d, SL_DIAG_ERROR, "forwardingRules", r.m.line[0], r.m.col[0],
                "typographic quote \xE2\x80\x9C (U+201C) where JSON needs a plain double quote");
    expect_diag(&r.d, SL_DIAG_ERROR, "forwardingRules[0].properties.listenerIp", r.m.line[1],
                r.m.col[1],
                "unquoted IP address 1.2.3.4: write it as a string, \"1.2.3.4\"");
    assert_int_equal(r.d.n_errors, 2);
    run_done(&r);
}

/* Found by fuzz_config: a rejected http rule left its condition count in the slot the next
 * rule reused, so that rule's conditions were written past their array (and an invalid
 * condition's missing operator indexed a name table at -1). Each rule's errors are reported,
 * nothing else happens. The same for targets and conditions rejected before a valid one. */
static void test_rejected_rules_leave_nothing_behind(void **state)
{
    static const char src[] =
        "{'forwardingRules': [{'properties': {'httpRules': [\n"
        "  {'type': 'REDIRECT', 'conditions': [{'type': 'PATH', 'condition': 'EQUALS', 'value': '/d'}]},\n"
        "  {'type': 'STATIC', 'conditions': [{'type': 'PATH', 'condition': 'EQUALS', 'value': '/d'}]},\n"
        "  {'type': 'STATIC', 'conditions': [{'type': 'HEADER'}]},\n"
        "  {'name': 'ok', 'type': 'STATIC', 'statusCode': 200, 'responseMessage': 'x',\n"
        "   'conditions': [{'type': 'HEADER', 'key': 'X', 'condition': 'EXISTS', 'negate': true,\n"
        "                   'value': 'no'},\n"
        "                  {'type': 'PATH', 'condition': 'EQUALS', 'value': '/f'}]}]}}],\n"
        " 'targetGroups': [{'id': 'tg', 'properties': {'name': 'g', 'algorithm': 'RANDOM',\n"
        "   'protocol': 'HTTP', 'targets': [{'ip': 'x', 'port': 80, 'weight': 300,\n"
        "   'maintenanceEnabled': true}, {'ip': '10.0.0.1', 'port': 80}]}}]}\n";
    struct run r;

    (void)state;
    run_load(&r, src, NULL);
    assert_null(r.c);
    assert_true(r.d.n_errors >= 6);
    run_done(&r);
}

/* Five different errors in one file: all five are reported, nothing is loaded. */
static void test_several_errors(void **state)
{
    static const char src[] =
        "{\n"
        "  'forwardingRules': [{'properties': {\n"
        "    'name': 'fr', 'protocol': 'HTTP', 'listenerIp': '192.0.2.1', 'listenerPort': `80800,\n"
        "    'httpRules': [\n"
        "      {'name': 'a', 'type': 'FORWARD', 'targetGroup': `'missing'},\n"
        "      {'name': 'b', 'type': 'REDIRECT', 'statusCode': `305, 'location': 'l'},\n"
        "      {'name': 'c', 'type': 'STATIC', 'responseMessage': 'x', 'conditions': [\n"
        "        {'type': 'HEADER', 'condition': `'EQUAL', 'key': 'Upgrade', 'value': 'w'}]}]}}],\n"
        "  'targetGroups': [{'id': 'tg', 'properties': {'name': 'g', 'algorithm': 'RANDOM',\n"
        "    'protocol': 'HTTP', 'targets': [{'ip': '10.0.0.1', 'port': 80, 'weight': `300}]}}]\n"
        "}\n";
    static const struct {
        const char *path, *frag;
    } want[] = {
        { P_FR ".listenerPort", "80800 is out of range" },
        { P_FR ".httpRules[0].targetGroup",
          "\"missing\" matches no target group id or name; ids: \"tg\"; names: \"g\"" },
        { P_FR ".httpRules[1].statusCode", "305 is not a redirect status" },
        { P_FR ".httpRules[2].conditions[0].condition", "\"EQUAL\" is not one of EXISTS" },
        { P_TG ".targets[0].weight", "300 is out of range; allowed: 0 to 256" },
    };
    static const unsigned lines[] = { 3, 5, 6, 8, 10 };
    struct run r;

    (void)state;
    run_load(&r, src, NULL);
    assert_null(r.c);
    assert_int_equal(r.m.n, SL_ARRAY_LEN(want));
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        expect_diag(&r.d, SL_DIAG_ERROR, want[i].path, r.m.line[i], r.m.col[i], want[i].frag);
        assert_int_equal(r.m.line[i], lines[i]);
    }
    assert_int_equal(r.d.n_errors, 5);
    assert_int_equal(r.d.n_warnings, 0);
    run_done(&r);
}

static void test_load_file_missing(void **state)
{
    struct sl_diags d;

    (void)state;
    sl_diags_init(&d, "/nonexistent/sluice.json");
    assert_null(sl_config_load_file("/nonexistent/sluice.json", NULL, &d));
    assert_int_equal(d.n_errors, 1);
    assert_int_equal(d.v[0].line, 0);
    assert_string_equal(d.v[0].path, "");
    assert_non_null(strstr(d.v[0].msg, "cannot open"));
    sl_diags_deinit(&d);
}

/* A tree from the API has no positions: errors carry line 0 and still the path. */
static void test_load_json_without_positions(void **state)
{
    size_t len;
    struct marks m;
    char *buf = prep(FWD("{'type': 'PATH', 'condition': 'EQUALS', 'value': '/', 'key': 'k'}"),
                     &len, &m);
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    struct sl_diags d;
    struct sl_config *c;

    (void)state;
    free(buf);
    assert_non_null(root);
    sl_diags_init(&d, "IONOS API");
    assert_null(sl_config_load_json("IONOS API", root, NULL, NULL, &d));
    expect_diag(&d, SL_DIAG_ERROR, P_COND ".key", 0, 0, "must be null or absent for type PATH");
    assert_int_equal(d.n_errors, 1);
    sl_diags_deinit(&d);
    json_decref(root);

    /* and a valid tree loads, its objects without positions */
    buf = prep(DOC(FR("")), &len, &m);
    root = json_loadb(buf, len, 0, &je);
    free(buf);
    assert_non_null(root);
    sl_diags_init(&d, "IONOS API");
    c = sl_config_load_json("IONOS API", root, NULL, NULL, &d);
    assert_non_null(c);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->origin, "IONOS API");
    assert_string_equal(c->frules[0].loc.path, "forwardingRules[0]");
    assert_int_equal(c->frules[0].loc.line, 0);
    assert_int_equal(c->frules[0].loc.col, 0);
    sl_config_unref(c);
    sl_diags_deinit(&d);
    json_decref(root);
}

/* ---- regressions: mistakes the loader once made -------------------------------------- */

/* Regression: a mistake in matchType or regex left the default (STATUS_CODE, no regex), so
 * the response gets a second, misleading error ("with matchType STATUS_CODE it must be 100 to
 * 599"). */
static void test_bug_health_check_cascade(void **state)
{
    static const struct {
        const char *src, *path, *frag;
    } rows[] = {
        { TG(", 'httpHealthCheck': {'matchType': `'response_body', 'response': 'healthy'}"),
          P_TG ".httpHealthCheck.matchType", "did you mean \"RESPONSE_BODY\"" },
        { TG(", 'httpHealthCheck': {'matchType': 'STATUS_CODE', 'response': '^2..$', "
             "'regex': `'true'}"),
          P_TG ".httpHealthCheck.regex", "must be a boolean, not the string \"true\"" },
    };

    size_t bad = 0;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(rows); i++) {
        struct run r;

        run_load(&r, rows[i].src, NULL);
        assert_null(r.c);
        expect_diag(&r.d, SL_DIAG_ERROR, rows[i].path, r.line, r.col, rows[i].frag);
        if (r.d.n_errors != 1) {
            print_error("%zu errors for one mistake in %s:\n", r.d.n_errors, rows[i].path);
            sl_diags_print(&r.d, stderr);
            bad++;
        }
        run_done(&r); /* before failing, so that ASan reports no leak */
    }
    if (bad)
        fail_msg("%zu of %zu health check mistakes give a second error", bad,
                 SL_ARRAY_LEN(rows));
}

/* Regression: one resource where an array belongs ("forwardingRules": {"properties": ...}) is
 * read as a depth-0 collection and silently ignored: the config loads without the rule. */
static void test_bug_single_object_for_array(void **state)
{
    static const char *const srcs[] = {
        "{'forwardingRules': `{'properties': {'name': 'f', 'protocol': 'HTTP', "
        "'listenerIp': '192.0.2.1', 'listenerPort': 80}}}",
        "{'targetGroups': `" GROUP("tg1", "g1") "}",
    };

    size_t bad = 0;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(srcs); i++) {
        struct run r;

        run_load(&r, srcs[i], NULL);
        if (r.c) {
            print_error("'%s' loads, with %zu forwarding rules and %zu target groups\n",
                        srcs[i], r.c->n_frules, r.c->n_tgroups);
            bad++;
        } else {
            expect_diag(&r.d, SL_DIAG_ERROR, i ? "targetGroups" : "forwardingRules", r.line,
                        r.col, "must be an array");
        }
        run_done(&r);
    }
    if (bad)
        fail_msg("%zu of %zu single objects silently ignored", bad, SL_ARRAY_LEN(srcs));
}

/* Regression: sluice.addressMap refused mixing address families, --map did not. */
static void test_bug_map_entry_mixed_families(void **state)
{
    static const char *const bad[] = { "192.0.2.1=::1", "[2001:db8::1]:80=127.0.0.1:8080" };
    struct sl_map_entry m;

    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        if (sl_map_entry_parse(bad[i], &m) != -1) {
            print_error("'%s' parses, but addressMap refuses mixing families\n", bad[i]);
            n++;
        }
    }
    if (n)
        fail_msg("%zu of %zu mixed-family --map entries accepted", n, SL_ARRAY_LEN(bad));
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_without_sluice),
        cmocka_unit_test(test_frule_locations),
        cmocka_unit_test(test_target_group_collection),
        cmocka_unit_test(test_source_ip_condition_absent_or_null),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_null_is_absent),
        cmocka_unit_test(test_target_group_resolution),
        cmocka_unit_test(test_evaluation_order),
        cmocka_unit_test(test_address_map),
        cmocka_unit_test(test_address_map_cli_only),
        cmocka_unit_test(test_map_entry_parse),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_unknown_sluice_setting_warns),
        cmocka_unit_test(test_json_syntax_errors),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_rejected_rules_leave_nothing_behind),
        cmocka_unit_test(test_load_file_missing),
        cmocka_unit_test(test_load_json_without_positions),
    };
    static const struct CMUnitTest bugs[] = {
        cmocka_unit_test(test_bug_health_check_cascade),
        cmocka_unit_test(test_bug_single_object_for_array),
        cmocka_unit_test(test_bug_map_entry_mixed_families),
    };
    struct CMUnitTest rows[SL_ARRAY_LEN(erows)];
    int failed;

    for (size_t i = 0; i < SL_ARRAY_LEN(erows); i++)
        rows[i] = (struct CMUnitTest){ erows[i].name, test_error_row, NULL, NULL,
                                       (void *)&erows[i] };
    failed = cmocka_run_group_tests_name("config", tests, NULL, NULL);
    failed += _cmocka_run_group_tests("config errors", rows, SL_ARRAY_LEN(rows), NULL, NULL);
    failed += cmocka_run_group_tests_name("config regressions", bugs, NULL, NULL);
    return failed;
}
