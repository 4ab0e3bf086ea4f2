/* Micro-benchmark of sl_router_match: a realistic 10-rule forwarding rule against a baseline
 * with one unconditional rule, for a few representative requests. Prints the median time per
 * match over several timed repetitions and the ratio to the baseline of the same run.
 * Usage: sluice-router-bench [--seconds S] (per repetition, default 0.3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/addr.h"
#include "sluice/common.h"
#include "sluice/config-t.h"
#include "sluice/regex.h"
#include "sluice/router.h"

#define REPS 7
#define BATCH 256
#define MAX_CONDS 4
#define MAX_RULES 10
#define MAX_HDRS 24

struct cond_spec {
    enum sl_cond_type type;
    enum sl_cond_op op;
    bool negate;
    const char *key, *value;
};

struct rule_spec {
    const char *name;
    enum sl_rule_type type;
    struct cond_spec conds[MAX_CONDS];
};

/* Mixed as in a real deployment: redirects and static answers interleaved with forwards. */
static const struct rule_spec rule_specs[MAX_RULES] = {
    {"api-v2", SL_RULE_FORWARD,
     {{SL_COND_PATH, SL_OP_MATCHES, false, NULL, "^/api/v[0-9]+/"},
      {SL_COND_HEADER, SL_OP_CONTAINS, false, "Accept", "application/json"}}},
    {"apex-to-www", SL_RULE_REDIRECT, {{SL_COND_HOST, SL_OP_EQUALS, false, NULL, "example.com"}}},
    {"admin-internal-only", SL_RULE_STATIC,
     {{SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/admin"},
      {SL_COND_SOURCE_IP, SL_OP_NONE, true, NULL, "10.0.0.0/8"}}},
    {"canary", SL_RULE_FORWARD, {{SL_COND_COOKIE, SL_OP_EQUALS, false, "canary", "1"}}},
    {"healthz", SL_RULE_STATIC, {{SL_COND_PATH, SL_OP_EQUALS, false, NULL, "/healthz"}}},
    {"old-blog", SL_RULE_REDIRECT,
     {{SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/blog/"},
      {SL_COND_HOST, SL_OP_ENDS_WITH, false, NULL, ".example.com"}}},
    {"debug", SL_RULE_FORWARD,
     {{SL_COND_QUERY, SL_OP_EXISTS, false, "debug", NULL},
      {SL_COND_HEADER, SL_OP_EXISTS, false, "X-Api-Key", NULL}}},
    {"robots", SL_RULE_STATIC, {{SL_COND_PATH, SL_OP_EQUALS, false, NULL, "/robots.txt"}}},
    {"assets", SL_RULE_FORWARD,
     {{SL_COND_PATH, SL_OP_ENDS_WITH, false, NULL, ".js"},
      {SL_COND_METHOD, SL_OP_EQUALS, false, NULL, "GET"}}},
    {"websocket", SL_RULE_FORWARD,
     {{SL_COND_HEADER, SL_OP_EQUALS, false, "Connection", "upgrade"},
      {SL_COND_HEADER, SL_OP_EQUALS, false, "Upgrade", "websocket"}}},
};

struct req_spec {
    const char *name;
    const char *method, *path, *query, *host, *src;
    const char *hdr[MAX_HDRS];
    const char *expect; /* rule name, NULL for no match */
    bool baseline;      /* measured against the 1-rule forwarding rule */
};

#define FF_HEADERS                                                                            \
    "Host: www.example.com",                                                                  \
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", \
        "Accept-Language: en-US,en;q=0.5", "Accept-Encoding: gzip, deflate, br, zstd"

static const struct req_spec req_specs[] = {
    {"baseline (1 rule)", "GET", "/products/42", NULL, "www.example.com", "198.51.100.7",
     {FF_HEADERS, "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      "Connection: keep-alive", "Cookie: session=5f2b9c; theme=dark"},
     "default", true},
    {"ws upgrade (Firefox)", "GET", "/chat/socket", NULL, "www.example.com", "198.51.100.7",
     {FF_HEADERS, "Accept: */*", "Sec-WebSocket-Version: 13", "Origin: https://www.example.com",
      "Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Connection: keep-alive, Upgrade", "Cookie: session=5f2b9c; theme=dark",
      "Sec-Fetch-Dest: empty", "Sec-Fetch-Mode: websocket", "Sec-Fetch-Site: same-origin",
      "Pragma: no-cache", "Cache-Control: no-cache", "Upgrade: websocket"},
     "websocket", false},
    {"plain GET (no match)", "GET", "/products/42", NULL, "www.example.com", "198.51.100.7",
     {FF_HEADERS, "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      "Connection: keep-alive", "Cookie: session=5f2b9c; theme=dark"},
     NULL, false},
    {"GET hits STATIC", "GET", "/robots.txt", NULL, "www.example.com", "198.51.100.7",
     {FF_HEADERS, "Accept: */*", "Connection: keep-alive"}, "robots", false},
    {"API GET (MATCHES)", "GET", "/api/v2/items", "page=2&sort=name", "www.example.com",
     "198.51.100.7",
     {FF_HEADERS, "Accept: application/json", "Connection: keep-alive",
      "Cookie: session=5f2b9c"},
     "api-v2", false},
    {"dot-segment path", "GET", "/static/../app/%6dain.js", "v=3", "www.example.com",
     "198.51.100.7", {FF_HEADERS, "Accept: */*", "Connection: keep-alive"}, "assets", false},
};

struct built {
    struct sl_request r;
    struct sl_header h[MAX_HDRS];
};

static sl_regex *regexes[MAX_RULES * MAX_CONDS];
static size_t n_regexes;
static volatile uintptr_t sink;

static void die(const char *msg)
{
    fprintf(stderr, "sluice-router-bench: %s\n", msg);
    exit(1);
}

static void build_cond(const struct cond_spec *cs, struct sl_condition *c)
{
    memset(c, 0, sizeof(*c));
    c->type = cs->type;
    c->op = cs->op;
    c->negate = cs->negate;
    c->key = cs->key;
    c->key_len = cs->key ? strlen(cs->key) : 0;
    c->flags = sl_router_cond_flags(cs->type, cs->key, c->key_len);
    c->value = cs->value;
    c->value_len = cs->value ? strlen(cs->value) : 0;
    c->loc.path = "";
    if (cs->type == SL_COND_SOURCE_IP && sl_cidr_parse(cs->value, &c->cidr) < 0)
        die("bad CIDR");
    if (cs->op == SL_OP_MATCHES) {
        char err[128];
        size_t off;

        c->re = sl_regex_compile(cs->value, c->value_len, (c->flags & SL_COND_F_NOCASE) != 0,
                                 err, sizeof(err), &off);
        if (!c->re)
            die(err);
        regexes[n_regexes++] = c->re;
    }
}

static void build_req(const struct req_spec *q, struct built *b)
{
    memset(b, 0, sizeof(*b));
    b->r.method = q->method;
    b->r.method_len = strlen(q->method);
    b->r.path = q->path;
    b->r.path_len = strlen(q->path);
    b->r.query = q->query;
    b->r.query_len = q->query ? strlen(q->query) : 0;
    b->r.host = q->host;
    b->r.host_len = strlen(q->host);
    for (size_t i = 0; i < MAX_HDRS && q->hdr[i]; i++) {
        const char *colon = strchr(q->hdr[i], ':');

        b->h[i] = (struct sl_header){q->hdr[i], (size_t)(colon - q->hdr[i]), colon + 2,
                                     strlen(colon + 2)};
        b->r.n_headers = i + 1;
    }
    b->r.headers = b->h;
    if (sl_addr_parse(q->src, &b->r.source) < 0)
        die("bad source address");
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs batches until <seconds> have passed; returns ns per match. */
static double time_once(const struct sl_forwarding_rule *fr, const struct sl_request *req,
                        struct sl_router_scratch *s, double seconds)
{
    double start = now_ns(), end = start + seconds * 1e9, t;
    uintptr_t acc = 0;
    unsigned long long n = 0;

    do {
        for (int i = 0; i < BATCH; i++) {
            /* The request may have changed as far as the compiler knows: no hoisting. */
            __asm__ volatile("" : : "r"(req) : "memory");
            acc += (uintptr_t)sl_router_match(fr, req, s);
        }
        n += BATCH;
        t = now_ns();
    } while (t < end);
    sink = acc;
    return (t - start) / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median_ns(const struct sl_forwarding_rule *fr, const struct sl_request *req,
                        struct sl_router_scratch *s, double seconds)
{
    double v[REPS];

    for (int i = 0; i < REPS; i++)
        v[i] = time_once(fr, req, s, seconds);
    qsort(v, REPS, sizeof(v[0]), cmp_double);
    return v[REPS / 2];
}

int main(int argc, char **argv)
{
    static struct sl_condition conds[MAX_RULES][MAX_CONDS];
    static struct sl_http_rule rules[MAX_RULES];
    static const struct sl_http_rule *order[MAX_RULES];
    struct sl_http_rule base_rule = {.name = "default", .type = SL_RULE_FORWARD};
    const struct sl_http_rule *base_order[1] = {&base_rule};
    struct sl_forwarding_rule fr = {.name = "bench", .rules = rules, .n_rules = MAX_RULES,
                                    .order = order};
    struct sl_forwarding_rule base = {.name = "baseline", .rules = &base_rule, .n_rules = 1,
                                      .order = base_order};
    struct sl_router_scratch *s;
    double seconds = 0.3, base_ns = 0;
    size_t k = 0;

    for (int i = 1; i < argc; i++) {
        char *end;

        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            errno = 0;
            seconds = strtod(argv[++i], &end);
            if (errno || *end || !(seconds > 0 && seconds <= 60))
                die("--seconds wants a number in (0, 60]");
        } else {
            fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
            return 2;
        }
    }

    for (size_t i = 0; i < MAX_RULES; i++) {
        const struct rule_spec *rs = &rule_specs[i];
        size_t n = 0;

        /* A zeroed spec (HEADER without an operator) ends the list. */
        while (n < MAX_CONDS && !(rs->conds[n].type == SL_COND_HEADER &&
                                  rs->conds[n].op == SL_OP_NONE))
            n++;
        for (size_t j = 0; j < n; j++)
            build_cond(&rs->conds[j], &conds[i][j]);
        rules[i] = (struct sl_http_rule){.name = rs->name, .type = rs->type, .index = (unsigned)i,
                                         .status_code = rs->type == SL_RULE_REDIRECT ? 301 : 503,
                                         .location = "www.example.com", .response_message = "",
                                         .conds = conds[i], .n_conds = n};
    }
    /* IONOS order, as the config loader computes it. */
    for (size_t i = 0; i < MAX_RULES; i++) {
        if (rules[i].type != SL_RULE_FORWARD)
            order[k++] = &rules[i];
    }
    for (size_t i = 0; i < MAX_RULES; i++) {
        if (rules[i].type == SL_RULE_FORWARD)
            order[k++] = &rules[i];
    }

    s = sl_router_scratch_new();
    if (!s)
        die("out of memory");

    printf("sl_router_match: %d repetitions of %.2f s per case, median\n\n", REPS, seconds);
    printf("%-24s %-12s %12s %10s\n", "case", "rule", "ns/match", "x baseline");
    for (size_t i = 0; i < SL_ARRAY_LEN(req_specs); i++) {
        const struct req_spec *q = &req_specs[i];
        const struct sl_forwarding_rule *f = q->baseline ? &base : &fr;
        const struct sl_http_rule *m;
        struct built b;
        double ns;

        build_req(q, &b);
        m = sl_router_match(f, &b.r, s);
        if ((m == NULL) != (q->expect == NULL) || (m && strcmp(m->name, q->expect) != 0)) {
            fprintf(stderr, "case \"%s\" matched %s, expected %s\n", q->name,
                    m ? m->name : "(none)", q->expect ? q->expect : "(none)");
            return 1;
        }
        ns = median_ns(f, &b.r, s, seconds);
        if (q->baseline)
            base_ns = ns;
        printf("%-24s %-12s %12.1f %10.2f\n", q->name, m ? m->name : "(none)", ns,
               base_ns > 0 ? ns / base_ns : 0.0);
    }

    sl_router_scratch_free(s);
    for (size_t i = 0; i < n_regexes; i++)
        sl_regex_free(regexes[i]);
    return 0;
}
