/* Unit tests for the config lint (src/config_lint.c): for every warning a config where it fires
 * (level, JSON path, line:col, message) and near misses where it must not, plus the shipped
 * conf/demo.json (no warnings) and conf/ionos-guide.json (the two pitfalls of the IONOS guide).
 *
 * Test texts are written with ' for " (turned back before parsing); each ` marks where the next
 * expected warning points (it is removed). Every text is otherwise clean: a row expects exactly
 * its warnings and no others. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/diag.h"

#include "testkit.h"

/* ---- helpers ------------------------------------------------------------------------------ */

#define MAX_WARN 3

struct warn {
    const char *path, *frag;
};

struct lrow {
    const char *name;
    const char *src;
    struct warn w[MAX_WARN]; /* in the order of the ` markers; none = must stay silent */
};

static const struct sl_diag *find_warning(const struct sl_diags *d, const char *path,
                                          const char *frag)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct sl_diag *x = &d->v[i];

        if (x->level == SL_DIAG_WARNING && !strcmp(x->path, path) && strstr(x->msg, frag))
            return x;
    }
    return NULL;
}

static void expect_warning(const struct sl_diags *d, const char *path, unsigned line,
                           unsigned col, const char *frag)
{
    const struct sl_diag *x = find_warning(d, path, frag);

    if (!x) {
        sl_diags_print(d, stderr);
        fail_msg("no warning at '%s' containing '%s'", path, frag);
    }
    if (x->line != line || x->col != col) {
        sl_diags_print(d, stderr);
        fail_msg("'%s' at %u:%u, expected %u:%u", x->msg, x->line, x->col, line, col);
    }
}

/* Loads <src> (which must be valid without diagnostics) and lints it into <d>. */
static struct sl_config *load_lint(const char *src, const struct sl_load_opts *o,
                                   struct sl_diags *d, struct marks *m)
{
    size_t len, n;
    char *buf = prep(src, &len, m);
    struct sl_config *c;

    sl_diags_init(d, "t.json");
    c = sl_config_load_buffer("t.json", buf, len, o, d);
    free(buf);
    if (!c || d->n) {
        sl_diags_print(d, stderr);
        fail_msg("the config should load without diagnostics");
    }
    n = sl_config_lint(c, d);
    assert_int_equal(n, d->n);
    assert_int_equal(d->n_errors, 0);
    return c;
}

static void check_row(const struct lrow *row, const struct sl_load_opts *o)
{
    struct sl_diags d;
    struct marks m;
    struct sl_config *c = load_lint(row->src, o, &d, &m);
    size_t n = 0;

    while (n < MAX_WARN && row->w[n].path)
        n++;
    assert_int_equal(m.n, n); /* one marker per expected warning */
    for (size_t i = 0; i < n; i++)
        expect_warning(&d, row->w[i].path, m.line[i], m.col[i], row->w[i].frag);
    if (d.n_warnings != n) {
        sl_diags_print(&d, stderr);
        fail_msg("%s: %zu warnings, expected %zu", row->name, d.n_warnings, n);
    }
    sl_config_unref(c);
    sl_diags_deinit(&d);
}

static void test_lint_row(void **state)
{
    check_row(*state, NULL);
}

/* ---- building blocks for test texts ------------------------------------------------------- */

#define T1 "[{'ip': '10.0.0.1', 'port': 80}]"
#define GT(id, targets, extra)                                                                 \
    "{'id': '" id "', 'properties': {'name': '" id "', 'algorithm': 'ROUND_ROBIN', "           \
    "'protocol': 'HTTP', 'targets': " targets extra "}}"
#define G(id, extra) GT(id, T1, extra)
#define FRP(name, ip, port, rules)                                                             \
    "{'properties': {'name': '" name "', 'protocol': 'HTTP', 'listenerIp': " ip ", "           \
    "'listenerPort': " port ", 'httpRules': [" rules "]}}"
#define FRL(rules) FRP("fr", "'192.0.2.1'", "80", rules)
#define CFG(groups, frs) "{'targetGroups': [" groups "], 'forwardingRules': [" frs "]}"
#define ONE(rules) CFG(G("tg", ""), FRL(rules))
#define FWDTO(name, tg, conds)                                                                 \
    "{'name': '" name "', 'type': 'FORWARD', 'targetGroup': '" tg "', 'conditions': [" conds "]}"
#define FWD(name, conds) FWDTO(name, "tg", conds)
#define STAT(name, conds)                                                                      \
    "{'name': '" name "', 'type': 'STATIC', 'responseMessage': 'x', 'conditions': [" conds "]}"
#define REDIR(name, conds)                                                                     \
    "{'name': '" name "', 'type': 'REDIRECT', 'location': 'l', 'conditions': [" conds "]}"
#define HDR(k, op, v)                                                                          \
    "{'type': 'HEADER', 'condition': '" op "', 'key': '" k "', 'value': '" v "'}"
#define NHDR(k, op, v)                                                                         \
    "{'type': 'HEADER', 'condition': '" op "', 'key': '" k "', 'value': '" v "', 'negate': true}"
#define PATH(op, v) "{'type': 'PATH', 'condition': '" op "', 'value': '" v "'}"
#define NPATH(op, v) "{'type': 'PATH', 'condition': '" op "', 'value': '" v "', 'negate': true}"
#define SRC(v) "{'type': 'SOURCE_IP', 'value': '" v "'}"
#define HTTPCHECK "'httpHealthCheck': {'matchType': 'STATUS_CODE', 'response': '200'}"
#define UPGRADE HDR("Upgrade", "EQUALS", "websocket")
#define ALB(ips) "'applicationLoadBalancer': {'properties': {'name': 'alb', 'listenerLan': 1, " \
                 "'targetLan': 2" ips "}}"

#define P_RULE(i) "forwardingRules[0].properties.httpRules[" #i "]"
#define P_HC "targetGroups[0].properties.httpHealthCheck"

#define W_HC "target group \"tg\" has an HTTP health check, and rule \"ws\" of forwarding rule " \
             "\"fr\" forwards WebSocket upgrades to it"
#define W_FIREFOX "misses Firefox's \"Connection: keep-alive, Upgrade\""
#define W_SUBSET "is evaluated before it and its conditions are a subset of this rule's"
#define W_NOCOND "is evaluated before it and has no conditions, so it takes every request"

static const struct lrow rows[] = {
    /* HTTP health check on a group that WebSocket upgrades are forwarded to */
    { "http check, upgrade rule",
      CFG(G("tg", ", " "'httpHealthCheck': `{'matchType': 'STATUS_CODE', 'response': '200'}"),
          FRL(FWD("ws", UPGRADE))),
      { { P_HC, W_HC } } },
    { "http check, Connection MATCHES rule",
      CFG(G("tg", ", 'httpHealthCheck': `{'matchType': 'RESPONSE_BODY', 'response': 'ok'}"),
          FRL(FWD("ws", HDR("Connection", "MATCHES", "(?i)upgrade")))),
      { { P_HC, W_HC } } },
    { "http check, upgrade rule among others",
      CFG(G("tg", ", 'httpHealthCheck': `{'matchType': 'STATUS_CODE', 'response': '200'}"),
          FRL(FWD("api", PATH("STARTS_WITH", "/api")) ", " FWD("ws", UPGRADE))),
      { { P_HC, W_HC } } },
    { "no warning: TCP check only",
      CFG(G("tg", ", 'healthCheck': {'checkInterval': 1000, 'retries': 2}"),
          FRL(FWD("ws", UPGRADE))),
      { { NULL } } },
    { "no warning: http check, only a plain rule forwards",
      CFG(G("tg", ", " HTTPCHECK), FRL(FWD("api", PATH("STARTS_WITH", "/api")))), { { NULL } } },
    { "no warning: http check, negated Upgrade",
      CFG(G("tg", ", " HTTPCHECK),
          FRL(FWD("plain", "{'type': 'HEADER', 'condition': 'EXISTS', 'key': 'Upgrade', "
                           "'negate': true}"))),
      { { NULL } } },
    { "no warning: http check, upgrade rule is STATIC",
      CFG(G("tg", ", " HTTPCHECK), FRL(STAT("ws", UPGRADE) ", " FWD("all", ""))), { { NULL } } },
    { "no warning: upgrade rule forwards to the group without http check",
      CFG(G("tg", "") ", " G("web", ", " HTTPCHECK),
          FRL(FWD("ws", UPGRADE) ", " FWDTO("api", "web", PATH("STARTS_WITH", "/api")))),
      { { NULL } } },

    /* Connection EQUALS upgrade */
    { "Connection EQUALS upgrade",
      ONE(FWD("ws", "`" HDR("Connection", "EQUALS", "upgrade") ", " UPGRADE)),
      { { P_RULE(0) ".conditions[0]", "Connection EQUALS \"upgrade\" " W_FIREFOX } } },
    { "connection EQUALS Upgrade, second condition",
      ONE(FWD("ws", UPGRADE ", `" HDR("connection", "EQUALS", "Upgrade"))),
      { { P_RULE(0) ".conditions[1]", "Connection EQUALS \"Upgrade\" " W_FIREFOX } } },
    { "Connection EQUALS upgrade on a STATIC rule",
      ONE(STAT("ws", "`" HDR("Connection", "EQUALS", "upgrade")) ", " FWD("all", "")),
      { { P_RULE(0) ".conditions[0]", W_FIREFOX } } },
    { "no warning: Connection CONTAINS upgrade",
      ONE(FWD("ws", HDR("Connection", "CONTAINS", "upgrade"))), { { NULL } } },
    { "no warning: Connection MATCHES upgrade",
      ONE(FWD("ws", HDR("Connection", "MATCHES", "(?i)\\\\bupgrade\\\\b"))), { { NULL } } },
    { "no warning: Connection EQUALS upgrade negated",
      ONE(FWD("ws", NHDR("Connection", "EQUALS", "upgrade"))), { { NULL } } },
    { "no warning: Connection EQUALS keep-alive",
      ONE(FWD("ka", HDR("Connection", "EQUALS", "keep-alive"))), { { NULL } } },
    { "no warning: X-Connection EQUALS upgrade",
      ONE(FWD("x", HDR("X-Connection", "EQUALS", "upgrade"))), { { NULL } } },

    /* rules that can never win */
    { "earlier rule with a subset of the conditions",
      ONE(FWD("a", PATH("STARTS_WITH", "/api")) ", `"
          FWD("b", HDR("X-V", "EQUALS", "2") ", " PATH("STARTS_WITH", "/api"))),
      { { P_RULE(1), "rule \"b\" can never win: rule \"a\" (httpRules[0]) " W_SUBSET } } },
    { "earlier rule with the same conditions",
      ONE(FWD("a", PATH("EQUALS", "/x") ", " UPGRADE) ", `"
          FWD("b", UPGRADE ", " PATH("EQUALS", "/x"))),
      { { P_RULE(1), "rule \"b\" can never win: rule \"a\" (httpRules[0]) " W_SUBSET } } },
    { "earlier rule without conditions",
      ONE(FWD("all", "") ", `" FWD("api", PATH("STARTS_WITH", "/api"))),
      { { P_RULE(1), "rule \"api\" can never win: rule \"all\" (httpRules[0]) " W_NOCOND } } },
    { "two rules without conditions",
      ONE(FWD("all", "") ", `" FWD("again", "")),
      { { P_RULE(1), "rule \"again\" can never win: rule \"all\" (httpRules[0]) " W_NOCOND } } },
    { "later STATIC shadows an earlier FORWARD (IONOS order)",
      ONE("``" FWD("api", PATH("STARTS_WITH", "/api")) ", " STAT("maint", "")),
      { { P_RULE(0), "rule \"api\" can never win: rule \"maint\" (httpRules[1]) " W_NOCOND },
        { P_RULE(0), "FORWARD rule \"api\" stands before STATIC rule \"maint\"" } } },
    { "header name compared ignoring case",
      ONE(FWD("a", HDR("x-env", "EQUALS", "prod")) ", `"
          FWD("b", HDR("X-Env", "EQUALS", "prod") ", " PATH("EQUALS", "/"))),
      { { P_RULE(1), "rule \"b\" can never win: rule \"a\"" } } },
    { "HOST value compared ignoring case",
      ONE(FWD("a", "{'type': 'HOST', 'condition': 'EQUALS', 'value': 'A.example'}") ", `"
          FWD("b", "{'type': 'HOST', 'condition': 'EQUALS', 'value': 'a.EXAMPLE'}")),
      { { P_RULE(1), "rule \"b\" can never win: rule \"a\"" } } },
    { "SOURCE_IP compared as networks",
      ONE(FWD("a", SRC("10.0.0.0/8")) ", `" FWD("b", SRC("10.1.2.3/8"))),
      { { P_RULE(1), "rule \"b\" can never win: rule \"a\"" } } },
    { "no warning: values differ",
      ONE(FWD("a", PATH("STARTS_WITH", "/api")) ", " FWD("b", PATH("STARTS_WITH", "/apx"))),
      { { NULL } } },
    { "no warning: one negated",
      ONE(FWD("a", NPATH("STARTS_WITH", "/api")) ", " FWD("b", PATH("STARTS_WITH", "/api"))),
      { { NULL } } },
    { "no warning: operators differ",
      ONE(FWD("a", PATH("STARTS_WITH", "/api")) ", " FWD("b", PATH("EQUALS", "/api"))),
      { { NULL } } },
    { "no warning: header names differ",
      ONE(FWD("a", HDR("X-A", "EQUALS", "1")) ", " FWD("b", HDR("X-B", "EQUALS", "1"))),
      { { NULL } } },
    { "no warning: header values differ in case",
      ONE(FWD("a", HDR("X-Env", "EQUALS", "Prod")) ", " FWD("b", HDR("X-Env", "EQUALS", "prod"))),
      { { NULL } } },
    { "no warning: the earlier rule has more conditions",
      ONE(FWD("a", PATH("STARTS_WITH", "/api") ", " UPGRADE) ", "
          FWD("b", PATH("STARTS_WITH", "/api"))),
      { { NULL } } },
    { "no warning: SOURCE_IP networks differ",
      ONE(FWD("a", SRC("10.0.0.0/8")) ", " FWD("b", SRC("10.0.0.0/16"))), { { NULL } } },
    { "no warning: the catch-all comes last",
      ONE(FWD("api", PATH("STARTS_WITH", "/api")) ", " FWD("all", "")), { { NULL } } },

    /* FORWARD before STATIC or REDIRECT */
    { "FORWARD before STATIC",
      ONE("`" FWD("api", PATH("STARTS_WITH", "/api")) ", " STAT("maint", PATH("EQUALS", "/m"))),
      { { P_RULE(0), "FORWARD rule \"api\" stands before STATIC rule \"maint\" (httpRules[1]), "
                     "but IONOS evaluates every STATIC and REDIRECT rule before any FORWARD "
                     "rule" } } },
    { "FORWARD before REDIRECT",
      ONE("`" FWD("api", PATH("STARTS_WITH", "/api")) ", `" FWD("b", PATH("EQUALS", "/b")) ", "
          REDIR("old", PATH("EQUALS", "/old"))),
      { { P_RULE(0), "FORWARD rule \"api\" stands before REDIRECT rule \"old\" (httpRules[2])" },
        { P_RULE(1), "FORWARD rule \"b\" stands before REDIRECT rule \"old\"" } } },
    { "no warning: every FORWARD rule last",
      ONE(STAT("maint", PATH("EQUALS", "/m")) ", " REDIR("old", PATH("EQUALS", "/old")) ", "
          FWD("api", PATH("STARTS_WITH", "/api")) ", " FWD("all", "")),
      { { NULL } } },

    /* target groups */
    { "unused target group",
      CFG(G("tg", "") ", `" G("spare", ""), FRL(FWD("all", ""))),
      { { "targetGroups[1]", "target group \"spare\" is used by no FORWARD rule" } } },
    { "unused without forwarding rules",
      "{'targetGroups': [`" G("tg", "") "]}",
      { { "targetGroups[0]", "target group \"tg\" is used by no FORWARD rule" } } },
    { "no warning: every group used, one by name",
      CFG(G("tg", "") ", " G("web", ""),
          FRL(FWD("api", PATH("STARTS_WITH", "/api")) ", " FWDTO("all", "web", ""))),
      { { NULL } } },
    { "all weights 0",
      CFG(GT("tg", "`[{'ip': '10.0.0.1', 'port': 80, 'weight': 0}, "
                   "{'ip': '10.0.0.2', 'port': 80, 'weight': 0}]", ""),
          FRL(FWD("all", ""))),
      { { "targetGroups[0].properties.targets", "every target of \"tg\" has weight 0" } } },
    { "no warning: one weight above 0",
      CFG(GT("tg", "[{'ip': '10.0.0.1', 'port': 80, 'weight': 0}, "
                   "{'ip': '10.0.0.2', 'port': 80, 'weight': 1}]", ""),
          FRL(FWD("all", ""))),
      { { NULL } } },
    { "used group without targets (absent)",
      "{'targetGroups': [{'id': 'tg', 'properties': `{'name': 'tg', 'algorithm': 'RANDOM', "
      "'protocol': 'HTTP'}}], 'forwardingRules': [" FRL(FWD("all", "")) "]}",
      { { "targetGroups[0].properties.targets",
          "target group \"tg\" has no targets: requests forwarded to it get 503" } } },
    { "used group without targets (empty)",
      CFG(GT("tg", "`[]", ""), FRL(FWD("all", ""))),
      { { "targetGroups[0].properties.targets", "target group \"tg\" has no targets" } } },
    { "no warning about targets for an unused empty group",
      CFG(G("tg", "") ", `" GT("spare", "[]", ""), FRL(FWD("all", ""))),
      { { "targetGroups[1]", "target group \"spare\" is used by no FORWARD rule" } } },

    /* listeners */
    { "two forwarding rules on one listener",
      CFG(G("tg", ""), FRP("a", "'192.0.2.1'", "80", FWD("all", "")) ", "
                       FRP("b", "'192.0.2.1'", "`80", FWD("all", ""))),
      { { "forwardingRules[1].properties.listenerPort",
          "forwarding rule \"b\" listens on 192.0.2.1:80 like forwardingRules[0] (\"a\"): only "
          "one of them can get the traffic" } } },
    { "two forwarding rules on one IPv6 listener",
      CFG(G("tg", ""), FRP("a", "'2001:db8::1'", "80", FWD("all", "")) ", "
                       FRP("b", "'2001:DB8:0::1'", "`80", FWD("all", ""))),
      { { "forwardingRules[1].properties.listenerPort",
          "listens on [2001:db8::1]:80 like forwardingRules[0]" } } },
    { "no warning: one IP, different ports",
      CFG(G("tg", ""), FRP("a", "'192.0.2.1'", "80", FWD("all", "")) ", "
                       FRP("b", "'192.0.2.1'", "443", FWD("all", ""))),
      { { NULL } } },
    { "no warning: one port, different IPs",
      CFG(G("tg", ""), FRP("a", "'192.0.2.1'", "80", FWD("all", "")) ", "
                       FRP("b", "'192.0.2.2'", "80", FWD("all", ""))),
      { { NULL } } },
    { "listener IP not among the ALB's ips",
      "{" ALB(", 'ips': ['192.0.2.10', '192.0.2.11']") ", 'targetGroups': [" G("tg", "") "], "
      "'forwardingRules': [" FRP("fr", "`'192.0.2.1'", "80", FWD("all", "")) "]}",
      { { "forwardingRules[0].properties.listenerIp",
          "192.0.2.1 is not among the ALB's ips (192.0.2.10, 192.0.2.11): IONOS requires a "
          "forwarding rule's listenerIp to be one of them" } } },
    { "no warning: listener IP among the ALB's ips",
      "{" ALB(", 'ips': ['192.0.2.10', '2001:db8::1']") ", 'targetGroups': [" G("tg", "") "], "
      "'forwardingRules': [" FRP("fr", "'2001:DB8::1'", "80", FWD("all", "")) "]}",
      { { NULL } } },
    { "no warning: the ALB has no ips",
      "{" ALB("") ", 'targetGroups': [" G("tg", "") "], "
      "'forwardingRules': [" FRP("fr", "'192.0.2.1'", "80", FWD("all", "")) "]}",
      { { NULL } } },
    { "no warning: the ALB has an empty ips list",
      "{" ALB(", 'ips': []") ", 'targetGroups': [" G("tg", "") "], "
      "'forwardingRules': [" FRP("fr", "'192.0.2.1'", "80", FWD("all", "")) "]}",
      { { NULL } } },
    { "no warning: no ALB",
      CFG(G("tg", ""), FRP("fr", "'203.0.113.9'", "80", FWD("all", ""))), { { NULL } } },
};

/* The address map makes two listeners one; the ALB's ips are compared as written. */
static void test_listener_collision_by_address_map(void **state)
{
    static const struct lrow file_map = {
        "listeners made one by sluice.addressMap",
        "{" ALB(", 'ips': ['192.0.2.1', '192.0.2.2']") ", 'targetGroups': [" G("tg", "") "], "
        "'forwardingRules': [" FRP("a", "'192.0.2.1'", "80", FWD("all", "")) ", "
        FRP("b", "'192.0.2.2'", "`80", FWD("all", "")) "], "
        "'sluice': {'addressMap': {'192.0.2.1': '127.0.0.1', '192.0.2.2': '127.0.0.1'}}}",
        { { "forwardingRules[1].properties.listenerPort",
            "forwarding rule \"b\" listens on 127.0.0.1:80 like forwardingRules[0] (\"a\")" } },
    };
    static const struct lrow cli_map = {
        "ports made one by --map",
        CFG(G("tg", ""), FRP("a", "'192.0.2.1'", "80", FWD("all", "")) ", "
                         FRP("b", "'192.0.2.1'", "`8080", FWD("all", ""))),
        { { "forwardingRules[1].properties.listenerPort",
            "listens on 192.0.2.1:80 like forwardingRules[0]" } },
    };
    struct sl_map_entry m;
    struct sl_load_opts o = { .map = &m, .n_map = 1 };

    (void)state;
    check_row(&file_map, NULL);
    assert_int_equal(sl_map_entry_parse("192.0.2.1:8080=192.0.2.1:80", &m), 0);
    check_row(&cli_map, &o);
}

/* ---- the shipped configs ------------------------------------------------------------------- */

#ifdef SOURCE_ROOT
static const char *const built_root = SOURCE_ROOT;
#else
static const char *const built_root = NULL;
#endif

/* Finds conf/<name> under the source tree: -DSOURCE_ROOT if the build passes one, then
 * $MESON_SOURCE_ROOT, the working directory and its parents (meson test runs in the build
 * directory), then the ancestors of this executable (<build>/tests/test_lint). */
static bool find_conf(const char *name, char *out, size_t len)
{
    char exe[PATH_MAX], up[PATH_MAX + 8];
    const char *roots[8];
    size_t n = 0;
    ssize_t k;

    if (built_root)
        roots[n++] = built_root;
    if (getenv("MESON_SOURCE_ROOT"))
        roots[n++] = getenv("MESON_SOURCE_ROOT");
    roots[n++] = ".";
    roots[n++] = "..";
    roots[n++] = "../..";
    k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k > 0) {
        exe[k] = '\0';
        for (int i = 0; i < 3; i++) {
            char *slash = strrchr(exe, '/');

            if (slash)
                *slash = '\0';
        }
        snprintf(up, sizeof(up), "%s", exe);
        roots[n++] = up;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(out, len, "%s/conf/%s", roots[i], name);
        if (access(out, R_OK) == 0)
            return true;
    }
    return false;
}

static struct sl_config *load_conf(const char *name, struct sl_diags *d)
{
    char path[PATH_MAX + 64];
    struct sl_config *c;
    size_t n;

    if (!find_conf(name, path, sizeof(path))) {
        print_message("conf/%s not found (set MESON_SOURCE_ROOT to the source tree): skipped\n",
                      name);
        return NULL;
    }
    sl_diags_init(d, path);
    c = sl_config_load_file(path, NULL, d);
    if (!c || d->n) {
        sl_diags_print(d, stderr);
        fail_msg("%s should load without diagnostics", path);
    }
    n = sl_config_lint(c, d);
    assert_int_equal(n, d->n);
    return c;
}

static void test_demo_json(void **state)
{
    struct sl_diags d;
    struct sl_config *c = load_conf("demo.json", &d);

    (void)state;
    if (!c)
        skip();
    if (d.n) {
        sl_diags_print(&d, stderr);
        fail_msg("conf/demo.json: %zu warnings", d.n);
    }
    sl_config_unref(c);
    sl_diags_deinit(&d);
}

static void test_ionos_guide_json(void **state)
{
    struct sl_diags d;
    struct sl_config *c = load_conf("ionos-guide.json", &d);

    (void)state;
    if (!c)
        skip();
    expect_warning(&d, "forwardingRules[0].properties.httpRules[0].conditions[0]", 41, 15,
                   "Connection EQUALS \"upgrade\" " W_FIREFOX);
    expect_warning(&d, "forwardingRules[0].properties.listenerIp", 33, 23,
                   "1.2.3.4 is not among the ALB's ips (1.1.1.1)");
    assert_int_equal(d.n_warnings, 2);
    assert_int_equal(d.n, 2);
    sl_config_unref(c);
    sl_diags_deinit(&d);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_collision_by_address_map),
        cmocka_unit_test(test_demo_json),
        cmocka_unit_test(test_ionos_guide_json),
    };
    struct CMUnitTest t[SL_ARRAY_LEN(rows)];
    int failed;

    for (size_t i = 0; i < SL_ARRAY_LEN(rows); i++)
        t[i] = (struct CMUnitTest){ rows[i].name, test_lint_row, NULL, NULL, (void *)&rows[i] };
    failed = _cmocka_run_group_tests("lint", t, SL_ARRAY_LEN(t), NULL, NULL);
    failed += cmocka_run_group_tests_name("lint others", tests, NULL, NULL);
    return failed;
}
