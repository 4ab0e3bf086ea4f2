/* Router tests: every condition type x operator x negate, the IONOS evaluation order, the
 * WebSocket rule from the IONOS guide, header/path/query/cookie/host details, forwarding rule
 * lookup by listener and REDIRECT locations. Rules are built by hand the way the config loader
 * builds them (flags from sl_router_cond_flags, MATCHES compiled caseless on NOCASE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/addr.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/config-t.h"
#include "sluice/regex.h"
#include "sluice/router.h"

#define MAX_HDRS 8
#define MAX_REGEXES 256

/* A request as written in a table; build_req() turns it into a struct sl_request. */
struct rq {
    const char *method; /* NULL = "GET" */
    const char *path;   /* NULL = "/" */
    const char *query;  /* NULL = no '?' */
    const char *host;
    const char *hdr[MAX_HDRS]; /* "Name: value" */
    const char *src;           /* NULL = 192.0.2.1 */
    bool tls;
};

struct built_req {
    struct sl_request r;
    struct sl_header h[MAX_HDRS];
};

static sl_regex *regexes[MAX_REGEXES];
static size_t n_regexes;
static struct sl_router_scratch *scratch;

static int group_setup(void **state)
{
    (void)state;
    scratch = sl_router_scratch_new();
    return scratch ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_regexes; i++)
        sl_regex_free(regexes[i]);
    n_regexes = 0;
    sl_router_scratch_free(scratch);
    return 0;
}

static void build_req(const struct rq *q, struct built_req *b)
{
    memset(b, 0, sizeof(*b));
    b->r.method = q->method ? q->method : "GET";
    b->r.method_len = strlen(b->r.method);
    b->r.path = q->path ? q->path : "/";
    b->r.path_len = strlen(b->r.path);
    b->r.query = q->query;
    b->r.query_len = q->query ? strlen(q->query) : 0;
    b->r.host = q->host;
    b->r.host_len = q->host ? strlen(q->host) : 0;
    for (size_t i = 0; i < MAX_HDRS && q->hdr[i]; i++) {
        const char *line = q->hdr[i], *colon = strchr(line, ':'), *v, *e;

        assert_non_null(colon);
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        b->h[i] = (struct sl_header){line, (size_t)(colon - line), v, (size_t)(e - v)};
        b->r.n_headers = i + 1;
    }
    b->r.headers = b->h;
    assert_int_equal(sl_addr_parse(q->src ? q->src : "192.0.2.1", &b->r.source), 0);
    b->r.tls = q->tls;
}

/* A condition exactly as the config loader stores it. */
static struct sl_condition mkcond(enum sl_cond_type type, enum sl_cond_op op, bool negate,
                                  const char *key, const char *value)
{
    struct sl_condition c = {.type = type, .op = op, .negate = negate};

    c.key = key;
    c.key_len = key ? strlen(key) : 0;
    c.flags = sl_router_cond_flags(type, key, c.key_len);
    if (type == SL_COND_SOURCE_IP) {
        assert_int_equal(sl_cidr_parse(value, &c.cidr), 0);
        c.value = value;
        c.value_len = strlen(value);
        return c;
    }
    if (op != SL_OP_EXISTS) {
        c.value = value;
        c.value_len = strlen(value);
    }
    if (op == SL_OP_MATCHES) {
        char err[128];
        size_t off = 0;

        c.re = sl_regex_compile(value, c.value_len, (c.flags & SL_COND_F_NOCASE) != 0, err,
                                sizeof(err), &off);
        if (!c.re)
            fail_msg("regex %s: %s at %zu", value, err, off);
        assert_true(n_regexes < MAX_REGEXES);
        regexes[n_regexes++] = c.re;
    }
    c.loc.path = "";
    return c;
}

static bool holds(const struct sl_condition *c, const struct rq *q)
{
    struct built_req b;

    build_req(q, &b);
    return sl_router_cond_holds(c, &b.r, scratch);
}

/* ---- every condition type x operator x negate ---- */

struct cond_case {
    enum sl_cond_type type;
    enum sl_cond_op op;
    const char *key;
    const char *value;
    struct rq rq;
    bool expect; /* without negate; negate must give the opposite */
};

#define FF_UA "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

static const struct cond_case cond_cases[] = {
    /* HEADER */
    {SL_COND_HEADER, SL_OP_EXISTS, "X-Api-Key", NULL, {.hdr = {"X-Api-Key: s3cr3t"}}, true},
    {SL_COND_HEADER, SL_OP_EXISTS, "X-Api-Key", NULL, {.hdr = {"X-Other: 1"}}, false},
    {SL_COND_HEADER, SL_OP_EXISTS, "X-Empty", NULL, {.hdr = {"X-Empty:"}}, true},
    {SL_COND_HEADER, SL_OP_EXISTS, "x-api-key", NULL, {.hdr = {"X-API-KEY: 1"}}, true},
    {SL_COND_HEADER, SL_OP_CONTAINS, "Accept", "json",
     {.hdr = {"Accept: text/html, application/json"}}, true},
    {SL_COND_HEADER, SL_OP_CONTAINS, "Accept", "json", {.hdr = {"Accept: text/html"}}, false},
    {SL_COND_HEADER, SL_OP_EQUALS, "X-Api-Key", "Secret", {.hdr = {"X-Api-Key: Secret"}}, true},
    {SL_COND_HEADER, SL_OP_EQUALS, "X-Api-Key", "Secret", {.hdr = {"X-Api-Key: secret"}},
     false},
    {SL_COND_HEADER, SL_OP_EQUALS, "X-Api-Key", "Secret", {.hdr = {"X-Api-Key: Secret2"}},
     false},
    {SL_COND_HEADER, SL_OP_EQUALS, "x-api-key", "Secret", {.hdr = {"X-API-Key: Secret"}}, true},
    {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "application/json",
     {.hdr = {"Accept: text/html,application/json;q=0.9"}}, false},
    {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "application/json",
     {.hdr = {"Accept: text/html,  application/json ,"}}, true},
    {SL_COND_HEADER, SL_OP_MATCHES, "X-Api-Key", "^S[a-z]+t$", {.hdr = {"X-Api-Key: Secret"}},
     true},
    {SL_COND_HEADER, SL_OP_MATCHES, "X-Api-Key", "^S[a-z]+t$", {.hdr = {"X-Api-Key: secret"}},
     false},
    {SL_COND_HEADER, SL_OP_MATCHES, "Upgrade", "^websocket$", {.hdr = {"Upgrade: WebSocket"}},
     true},
    {SL_COND_HEADER, SL_OP_MATCHES, "X-Bin", "abc", {.hdr = {"X-Bin: \xff\xfe" "abc\xc3"}},
     true},
    {SL_COND_HEADER, SL_OP_STARTS_WITH, "User-Agent", "Mozilla/", {.hdr = {"User-Agent: " FF_UA}},
     true},
    {SL_COND_HEADER, SL_OP_STARTS_WITH, "User-Agent", "Mozilla/", {.hdr = {"User-Agent: curl/8"}},
     false},
    {SL_COND_HEADER, SL_OP_STARTS_WITH, "User-Agent", "mozilla/", {.hdr = {"User-Agent: " FF_UA}},
     false},
    {SL_COND_HEADER, SL_OP_ENDS_WITH, "User-Agent", "Firefox/128.0",
     {.hdr = {"User-Agent: " FF_UA}}, true},
    {SL_COND_HEADER, SL_OP_ENDS_WITH, "User-Agent", "Firefox/128.0",
     {.hdr = {"User-Agent: curl/8"}}, false},
    {SL_COND_HEADER, SL_OP_ENDS_WITH, "Accept-Encoding", "GZIP",
     {.hdr = {"Accept-Encoding: br, gzip"}}, true},

    /* PATH: EXISTS always holds (its failing case is the negated one) */
    {SL_COND_PATH, SL_OP_EXISTS, NULL, NULL, {.path = "/"}, true},
    {SL_COND_PATH, SL_OP_EXISTS, NULL, NULL, {.path = "/anything"}, true},
    {SL_COND_PATH, SL_OP_CONTAINS, NULL, "/admin", {.path = "/x/admin/y"}, true},
    {SL_COND_PATH, SL_OP_CONTAINS, NULL, "/admin", {.path = "/x/public/y"}, false},
    {SL_COND_PATH, SL_OP_CONTAINS, NULL, "admin", {.path = "/x/ADMIN"}, false},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/admin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/%61dmin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/%61%64%6D%69%6e"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/public/../admin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "//admin"}, true},
    {SL_COND_PATH, SL_OP_STARTS_WITH, NULL, "/admin/", {.path = "/admin///x//y"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/x//..//admin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/./public/%2e%2E/admin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/../../admin"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/admin", .query = "x=1"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/admin/"}, false},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/admin", {.path = "/Admin"}, false},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a%2Fb", {.path = "/a%2Fb"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a/b", {.path = "/a%2Fb"}, false},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a%zz%4", {.path = "/a%zz%4"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a/", {.path = "/a/b/.."}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a/b/", {.path = "/a/b/."}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a/..b/.c", {.path = "/a/..b/.c"}, true},
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "/a/g", {.path = "/a/b/c/./../../g"}, true}, /* RFC */
    {SL_COND_PATH, SL_OP_EQUALS, NULL, "mid/6", {.path = "mid/content=5/../6"}, true},
    {SL_COND_PATH, SL_OP_MATCHES, NULL, "^/api/v[0-9]+/", {.path = "/api/v2/users"}, true},
    {SL_COND_PATH, SL_OP_MATCHES, NULL, "^/api/v[0-9]+/", {.path = "/api/vx/users"}, false},
    {SL_COND_PATH, SL_OP_MATCHES, NULL, "^/admin$", {.path = "/x/../%61dmin"}, true},
    {SL_COND_PATH, SL_OP_STARTS_WITH, NULL, "/static/", {.path = "/static/app.js"}, true},
    {SL_COND_PATH, SL_OP_STARTS_WITH, NULL, "/static/", {.path = "/api/static/"}, false},
    {SL_COND_PATH, SL_OP_STARTS_WITH, NULL, "/admin", {.path = "/public/../admin/x"}, true},
    {SL_COND_PATH, SL_OP_ENDS_WITH, NULL, ".js", {.path = "/static/app.js", .query = "v=.css"},
     true},
    {SL_COND_PATH, SL_OP_ENDS_WITH, NULL, ".css", {.path = "/static/app.js", .query = "v=.css"},
     false},

    /* QUERY */
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = "a=1&debug"}, true},
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = "debug="}, true},
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = "a=1&debugger=1"}, false},
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = "a=debug"}, false},
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = ""}, false},
    {SL_COND_QUERY, SL_OP_EXISTS, "debug", NULL, {.query = NULL}, false},
    {SL_COND_QUERY, SL_OP_EXISTS, "Debug", NULL, {.query = "debug=1"}, false},
    {SL_COND_QUERY, SL_OP_EXISTS, "a b", NULL, {.query = "x&&a+b"}, true},
    {SL_COND_QUERY, SL_OP_EXISTS, "b", NULL, {.query = "a=1;b=2"}, false},
    {SL_COND_QUERY, SL_OP_CONTAINS, "q", "hello world", {.query = "q=say+hello%20world%21"},
     true},
    {SL_COND_QUERY, SL_OP_CONTAINS, "q", "hello world", {.query = "q=hello"}, false},
    {SL_COND_QUERY, SL_OP_EQUALS, "user name", "a&b=c", {.query = "user+name=a%26b%3dc"}, true},
    {SL_COND_QUERY, SL_OP_EQUALS, "id", "2", {.query = "id=1&id=2"}, true},
    {SL_COND_QUERY, SL_OP_EQUALS, "id", "2", {.query = "id=1&id=3"}, false},
    {SL_COND_QUERY, SL_OP_EQUALS, "id", "A", {.query = "id=a"}, false},
    {SL_COND_QUERY, SL_OP_EQUALS, "v", "%zz%4", {.query = "v=%zz%4"}, true},
    {SL_COND_QUERY, SL_OP_EQUALS, "v", "", {.query = "v"}, true},
    {SL_COND_QUERY, SL_OP_EQUALS, "v", "x=y", {.query = "v=x=y"}, true},
    {SL_COND_QUERY, SL_OP_MATCHES, "id", "^[0-9]+$", {.query = "id=42"}, true},
    {SL_COND_QUERY, SL_OP_MATCHES, "id", "^[0-9]+$", {.query = "id=4x2"}, false},
    {SL_COND_QUERY, SL_OP_STARTS_WITH, "lang", "de", {.query = "lang=de-DE"}, true},
    {SL_COND_QUERY, SL_OP_STARTS_WITH, "lang", "de", {.query = "lang=en-US&xlang=de"}, false},
    {SL_COND_QUERY, SL_OP_ENDS_WITH, "file", ".pdf", {.query = "file=a%2Epdf"}, true},
    {SL_COND_QUERY, SL_OP_ENDS_WITH, "file", ".pdf", {.query = "file=a.PDF"}, false},

    /* METHOD: EXISTS always holds */
    {SL_COND_METHOD, SL_OP_EXISTS, NULL, NULL, {.method = "GET"}, true},
    {SL_COND_METHOD, SL_OP_EXISTS, NULL, NULL, {.method = "BREW"}, true},
    {SL_COND_METHOD, SL_OP_CONTAINS, NULL, "OS", {.method = "POST"}, true},
    {SL_COND_METHOD, SL_OP_CONTAINS, NULL, "OS", {.method = "GET"}, false},
    {SL_COND_METHOD, SL_OP_EQUALS, NULL, "GET", {.method = "GET"}, true},
    {SL_COND_METHOD, SL_OP_EQUALS, NULL, "GET", {.method = "get"}, false},
    {SL_COND_METHOD, SL_OP_EQUALS, NULL, "GET", {.method = "HEAD"}, false},
    {SL_COND_METHOD, SL_OP_MATCHES, NULL, "^(PUT|PATCH)$", {.method = "PATCH"}, true},
    {SL_COND_METHOD, SL_OP_MATCHES, NULL, "^(PUT|PATCH)$", {.method = "POST"}, false},
    {SL_COND_METHOD, SL_OP_STARTS_WITH, NULL, "P", {.method = "PUT"}, true},
    {SL_COND_METHOD, SL_OP_STARTS_WITH, NULL, "P", {.method = "DELETE"}, false},
    {SL_COND_METHOD, SL_OP_ENDS_WITH, NULL, "ST", {.method = "POST"}, true},
    {SL_COND_METHOD, SL_OP_ENDS_WITH, NULL, "ST", {.method = "PUT"}, false},

    /* HOST: case-insensitive, port, brackets and a trailing dot ignored */
    {SL_COND_HOST, SL_OP_EXISTS, NULL, NULL, {.host = "example.com"}, true},
    {SL_COND_HOST, SL_OP_EXISTS, NULL, NULL, {.host = NULL}, false},
    {SL_COND_HOST, SL_OP_EXISTS, NULL, NULL, {.host = ""}, false},
    {SL_COND_HOST, SL_OP_CONTAINS, NULL, "ample", {.host = "EXAMPLE.com"}, true},
    {SL_COND_HOST, SL_OP_CONTAINS, NULL, "ample", {.host = "other.org"}, false},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "Example.COM"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "example.com:8080"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "example.com."}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "example.com.:443"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com.", {.host = "example.com"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "::1", {.host = "[::1]:8080"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "::1", {.host = "[::1]"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "::1", {.host = "::1"}, true},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "example.org"}, false},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = "www.example.com"}, false},
    {SL_COND_HOST, SL_OP_EQUALS, NULL, "example.com", {.host = NULL}, false},
    {SL_COND_HOST, SL_OP_MATCHES, NULL, "^api\\.example\\.com$", {.host = "API.Example.com"},
     true},
    {SL_COND_HOST, SL_OP_MATCHES, NULL, "^api\\.example\\.com$", {.host = "www.example.com"},
     false},
    {SL_COND_HOST, SL_OP_STARTS_WITH, NULL, "api.", {.host = "Api.example.com:80"}, true},
    {SL_COND_HOST, SL_OP_STARTS_WITH, NULL, "api.", {.host = "www.example.com"}, false},
    {SL_COND_HOST, SL_OP_ENDS_WITH, NULL, ".example.com", {.host = "a.example.com."}, true},
    {SL_COND_HOST, SL_OP_ENDS_WITH, NULL, ".example.com", {.host = "a.example.net"}, false},

    /* COOKIE */
    {SL_COND_COOKIE, SL_OP_EXISTS, "session", NULL, {.hdr = {"Cookie: a=1; session=xyz"}},
     true},
    {SL_COND_COOKIE, SL_OP_EXISTS, "session", NULL, {.hdr = {"Cookie: sessionid=1"}}, false},
    {SL_COND_COOKIE, SL_OP_EXISTS, "session", NULL, {.hdr = {"X-Cookie: session=1"}}, false},
    {SL_COND_COOKIE, SL_OP_EXISTS, "Session", NULL, {.hdr = {"Cookie: session=1"}}, false},
    {SL_COND_COOKIE, SL_OP_EXISTS, "flag", NULL, {.hdr = {"cookie: a=1;flag"}}, true},
    {SL_COND_COOKIE, SL_OP_EXISTS, "empty", NULL, {.hdr = {"Cookie: empty="}}, true},
    {SL_COND_COOKIE, SL_OP_CONTAINS, "session", "yz", {.hdr = {"Cookie: a=1; session=xyz"}},
     true},
    {SL_COND_COOKIE, SL_OP_CONTAINS, "session", "yz", {.hdr = {"Cookie: a=xyz; session=x"}},
     false},
    {SL_COND_COOKIE, SL_OP_EQUALS, "session", "xyz",
     {.hdr = {"Cookie: a=1;  session = xyz ;b=2"}}, true},
    {SL_COND_COOKIE, SL_OP_EQUALS, "lang", "en", {.hdr = {"Cookie: lang=de", "Cookie: lang=en"}},
     true},
    {SL_COND_COOKIE, SL_OP_EQUALS, "lang", "en", {.hdr = {"Cookie: lang=de; lang=en"}}, true},
    {SL_COND_COOKIE, SL_OP_EQUALS, "lang", "en", {.hdr = {"Cookie: lang=EN"}}, false},
    {SL_COND_COOKIE, SL_OP_EQUALS, "lang", "en", {.hdr = {"Cookie: lang=de"}}, false},
    {SL_COND_COOKIE, SL_OP_EQUALS, "flag", "", {.hdr = {"Cookie: flag; x=1"}}, true},
    {SL_COND_COOKIE, SL_OP_EQUALS, "t", "a=b", {.hdr = {"Cookie: t=a=b"}}, true},
    {SL_COND_COOKIE, SL_OP_MATCHES, "uid", "^[0-9a-f]{8}$", {.hdr = {"Cookie: uid=deadbeef"}},
     true},
    {SL_COND_COOKIE, SL_OP_MATCHES, "uid", "^[0-9a-f]{8}$", {.hdr = {"Cookie: uid=DEADBEEF"}},
     false},
    {SL_COND_COOKIE, SL_OP_STARTS_WITH, "ab", "v2", {.hdr = {"Cookie: ab=v2-green"}}, true},
    {SL_COND_COOKIE, SL_OP_STARTS_WITH, "ab", "v2", {.hdr = {"Cookie: ab=v1-green"}}, false},
    {SL_COND_COOKIE, SL_OP_ENDS_WITH, "ab", "green", {.hdr = {"Cookie: ab=v2-green"}}, true},
    {SL_COND_COOKIE, SL_OP_ENDS_WITH, "ab", "green", {.path = "/"}, false},

    /* SOURCE_IP */
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "10.0.0.0/8", {.src = "10.1.2.3"}, true},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "10.0.0.0/8", {.src = "192.168.1.1"}, false},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "192.0.2.7", {.src = "192.0.2.7"}, true},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "192.0.2.7", {.src = "192.0.2.8"}, false},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "2001:db8::/32", {.src = "2001:db8::1"}, true},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "2001:db8::/32", {.src = "2001:db9::1"}, false},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "10.0.0.0/8", {.src = "::ffff:10.1.2.3"}, true},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "10.0.0.0/8", {.src = "::ffff:11.1.2.3"}, false},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "10.0.0.0/8", {.src = "2001:db8::1"}, false},
    {SL_COND_SOURCE_IP, SL_OP_NONE, NULL, "0.0.0.0/0", {.src = "203.0.113.5"}, true},
};

static void test_condition_matrix(void **state)
{
    unsigned seen[SL_COND_SOURCE_IP + 1][SL_OP_ENDS_WITH + 1][2] = {{{0}}};
    int failures = 0;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cond_cases); i++) {
        const struct cond_case *k = &cond_cases[i];

        for (int neg = 0; neg < 2; neg++) {
            struct sl_condition c = mkcond(k->type, k->op, neg, k->key, k->value);
            bool want = neg ? !k->expect : k->expect;
            bool got = holds(&c, &k->rq);

            seen[k->type][k->op][got]++;
            if (got != want) {
                print_error("case %zu: %s %s key=%s value=%s negate=%d: got %d, want %d\n", i,
                            sl_cond_type_name(k->type), sl_cond_op_name(k->op),
                            k->key ? k->key : "-", k->value ? k->value : "-", neg, got, want);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);

    /* Every type x operator was seen holding and failing (negate covers both for each). */
    for (int t = SL_COND_HEADER; t <= SL_COND_SOURCE_IP; t++) {
        for (int op = SL_OP_NONE; op <= SL_OP_ENDS_WITH; op++) {
            bool valid = (t == SL_COND_SOURCE_IP) == (op == SL_OP_NONE);

            if (!valid)
                continue;
            if (!seen[t][op][0] || !seen[t][op][1])
                fail_msg("%s %s lacks a holding or failing case", sl_cond_type_name(t),
                         sl_cond_op_name(op));
        }
    }
}

/* ---- flags ---- */

static void test_cond_flags(void **state)
{
    static const struct {
        enum sl_cond_type type;
        const char *key;
        unsigned flags;
    } cases[] = {
        {SL_COND_HEADER, "Connection", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "connection", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "UPGRADE", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "Sec-WebSocket-Version", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "te", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "X-Forwarded-Proto", SL_COND_F_LIST | SL_COND_F_NOCASE},
        {SL_COND_HEADER, "Accept", SL_COND_F_LIST},
        {SL_COND_HEADER, "Sec-WebSocket-Protocol", SL_COND_F_LIST},
        {SL_COND_HEADER, "X-Forwarded-For", SL_COND_F_LIST},
        {SL_COND_HEADER, "Forwarded", SL_COND_F_LIST},
        {SL_COND_HEADER, "X-Api-Key", 0},
        {SL_COND_HEADER, "Host", 0},
        {SL_COND_HEADER, "Cookie", 0},
        {SL_COND_HEADER, "T", 0},
        {SL_COND_HEADER, "Connections", 0},
        {SL_COND_HOST, NULL, SL_COND_F_NOCASE},
        {SL_COND_PATH, NULL, 0},
        {SL_COND_METHOD, NULL, 0},
        {SL_COND_QUERY, "Connection", 0},
        {SL_COND_COOKIE, "Upgrade", 0},
        {SL_COND_SOURCE_IP, NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        const char *k = cases[i].key;

        assert_int_equal(sl_router_cond_flags(cases[i].type, k, k ? strlen(k) : 0),
                         cases[i].flags);
    }
}

/* ---- headers ---- */

static void test_header_details(void **state)
{
    static const struct cond_case cases[] = {
        /* a repeated header: each line, and the comma-joined value */
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Tag", "b", {.hdr = {"X-Tag: a", "X-Tag: b"}}, true},
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Tag", "a, b", {.hdr = {"X-Tag: a", "x-tag: b"}},
         true},
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Tag", "a, b, c",
         {.hdr = {"X-Tag: a", "X-Other: z", "X-Tag: b", "X-TAG: c"}}, true},
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Tag", "a, b", {.hdr = {"X-Tag: a"}}, false},
        {SL_COND_HEADER, SL_OP_MATCHES, "X-Tag", "^a, b$", {.hdr = {"X-Tag: a", "X-Tag: b"}},
         true},
        /* members only for list headers */
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Tag", "a", {.hdr = {"X-Tag: a, b"}}, false},
        {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "application/json",
         {.hdr = {"Accept: text/html", "Accept: application/json"}}, true},
        {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "application/json",
         {.hdr = {"Accept: text/html", "Accept: image/png,\tapplication/json"}}, true},
        {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "", {.hdr = {"Accept: a,,b"}}, false},
        {SL_COND_HEADER, SL_OP_EQUALS, "X-Forwarded-For", "10.0.0.1",
         {.hdr = {"X-Forwarded-For: 192.0.2.1, 10.0.0.1"}}, true},
        /* list members of a non-NOCASE list header stay case-sensitive */
        {SL_COND_HEADER, SL_OP_EQUALS, "Accept", "Application/JSON",
         {.hdr = {"Accept: text/html, application/json"}}, false},
        /* value case: NOCASE headers ignore it, others do not */
        {SL_COND_HEADER, SL_OP_EQUALS, "Transfer-Encoding", "chunked",
         {.hdr = {"Transfer-Encoding: gzip, Chunked"}}, true},
        {SL_COND_HEADER, SL_OP_CONTAINS, "X-Api-Key", "key", {.hdr = {"X-Api-Key: MYKEY"}},
         false},
        {SL_COND_HEADER, SL_OP_CONTAINS, "Connection", "UPGR", {.hdr = {"Connection: upgrade"}},
         true},
        /* name matches whole names only */
        {SL_COND_HEADER, SL_OP_EXISTS, "X-Api", NULL, {.hdr = {"X-Api-Key: 1"}}, false},
    };
    int failures = 0;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        const struct cond_case *k = &cases[i];

        for (int neg = 0; neg < 2; neg++) {
            struct sl_condition c = mkcond(k->type, k->op, neg, k->key, k->value);

            if (holds(&c, &k->rq) != (neg ? !k->expect : k->expect)) {
                print_error("header case %zu negate=%d failed\n", i, neg);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

/* ---- rules and evaluation order ---- */

#define MAX_RULES 8

struct frule_box {
    struct sl_http_rule rules[MAX_RULES];
    const struct sl_http_rule *order[MAX_RULES];
    struct sl_forwarding_rule fr;
};

/* Fills fr and its IONOS order (STATIC/REDIRECT in array order, then FORWARD) as the loader. */
static void finish_frule(struct frule_box *b, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        b->rules[i].index = (unsigned)i;
        if (b->rules[i].type != SL_RULE_FORWARD)
            b->order[k++] = &b->rules[i];
    }
    for (size_t i = 0; i < n; i++) {
        if (b->rules[i].type == SL_RULE_FORWARD)
            b->order[k++] = &b->rules[i];
    }
    b->fr.name = "fr";
    b->fr.rules = b->rules;
    b->fr.n_rules = n;
    b->fr.order = b->order;
}

static const char *match_name(const struct sl_forwarding_rule *fr, const struct rq *q)
{
    struct built_req b;
    const struct sl_http_rule *r;

    build_req(q, &b);
    r = sl_router_match(fr, &b.r, scratch);
    return r ? r->name : NULL;
}

static void expect_match(const struct sl_forwarding_rule *fr, const struct rq *q,
                         const char *want)
{
    const char *got = match_name(fr, q);

    if (!want && got)
        fail_msg("%s %s: matched %s, want none", q->method ? q->method : "GET",
                 q->path ? q->path : "/", got);
    if (want && (!got || strcmp(got, want) != 0))
        fail_msg("%s %s: matched %s, want %s", q->method ? q->method : "GET",
                 q->path ? q->path : "/", got ? got : "(none)", want);
}

static void test_evaluation_order(void **state)
{
    static struct frule_box b;
    struct sl_condition c_static = mkcond(SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/static");
    struct sl_condition c_old = mkcond(SL_COND_HOST, SL_OP_EQUALS, false, NULL, "old.example.com");
    struct sl_condition c_api[2] = {
        mkcond(SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/api"),
        mkcond(SL_COND_METHOD, SL_OP_EQUALS, false, NULL, "POST"),
    };
    struct sl_condition c_api2 = mkcond(SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/api");
    struct sl_condition c_maint = mkcond(SL_COND_QUERY, SL_OP_EXISTS, false, "maint", NULL);

    (void)state;
    memset(&b, 0, sizeof(b));
    /* Array order deliberately puts an always-holding FORWARD first. */
    b.rules[0] = (struct sl_http_rule){.name = "fw-default", .type = SL_RULE_FORWARD};
    b.rules[1] = (struct sl_http_rule){.name = "fw-api-post", .type = SL_RULE_FORWARD,
                                       .conds = c_api, .n_conds = 2};
    b.rules[2] = (struct sl_http_rule){.name = "st-static", .type = SL_RULE_STATIC,
                                       .status_code = 200, .conds = &c_static, .n_conds = 1};
    b.rules[3] = (struct sl_http_rule){.name = "rd-old", .type = SL_RULE_REDIRECT,
                                       .location = "www.example.com", .conds = &c_old,
                                       .n_conds = 1};
    b.rules[4] = (struct sl_http_rule){.name = "fw-api", .type = SL_RULE_FORWARD,
                                       .conds = &c_api2, .n_conds = 1};
    b.rules[5] = (struct sl_http_rule){.name = "st-maint", .type = SL_RULE_STATIC,
                                       .status_code = 503, .conds = &c_maint, .n_conds = 1};
    finish_frule(&b, 6);

    for (int pass = 0; pass < 2; pass++) {
        /* STATIC/REDIRECT before FORWARD although fw-default comes first in the array */
        expect_match(&b.fr, &(struct rq){.path = "/static/a.css"}, "st-static");
        expect_match(&b.fr, &(struct rq){.path = "/", .host = "old.example.com"}, "rd-old");
        /* among non-FORWARD rules: array order */
        expect_match(&b.fr, &(struct rq){.path = "/static/x", .host = "old.example.com"},
                     "st-static");
        expect_match(&b.fr, &(struct rq){.path = "/", .host = "old.example.com", .query = "maint"},
                     "rd-old");
        expect_match(&b.fr, &(struct rq){.path = "/x", .query = "maint"}, "st-maint");
        /* among FORWARD rules: array order, first match wins; no conditions always hold */
        expect_match(&b.fr, &(struct rq){.path = "/api/x", .method = "POST"}, "fw-default");
        expect_match(&b.fr, &(struct rq){.path = "/other"}, "fw-default");
        /* without a precomputed order the router derives the same one */
        b.fr.order = NULL;
    }

    /* rules in FORWARD order once fw-default is gone: all conditions must hold (AND) */
    b.rules[0].type = SL_RULE_FORWARD;
    b.rules[0].conds = &c_maint;
    b.rules[0].n_conds = 1;
    b.rules[5].conds = &c_static; /* never reached before st-static */
    finish_frule(&b, 6);
    expect_match(&b.fr, &(struct rq){.path = "/api/x", .method = "POST"}, "fw-api-post");
    expect_match(&b.fr, &(struct rq){.path = "/api/x", .method = "GET"}, "fw-api");
    /* nothing holds: NULL (the caller answers SL_ROUTER_NOMATCH_STATUS) */
    expect_match(&b.fr, &(struct rq){.path = "/other"}, NULL);
    assert_int_equal(SL_ROUTER_NOMATCH_STATUS, 503);

    /* a forwarding rule without http rules matches nothing */
    finish_frule(&b, 0);
    expect_match(&b.fr, &(struct rq){.path = "/"}, NULL);
    assert_null(sl_router_match(NULL, NULL, scratch));
}

/* The IONOS guide's WebSocket rule: Connection EQUALS upgrade AND Upgrade EQUALS websocket. */
static void test_websocket_rule(void **state)
{
    static struct frule_box b;
    struct sl_condition ws[2] = {
        mkcond(SL_COND_HEADER, SL_OP_EQUALS, false, "Connection", "upgrade"),
        mkcond(SL_COND_HEADER, SL_OP_EQUALS, false, "Upgrade", "websocket"),
    };
    static const struct {
        struct rq rq;
        const char *want;
    } cases[] = {
        /* Firefox */
        {{.path = "/ws", .host = "chat.example.com",
          .hdr = {"Host: chat.example.com", "User-Agent: " FF_UA, "Sec-WebSocket-Version: 13",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Connection: keep-alive, Upgrade",
                  "Upgrade: websocket"}},
         "ws"},
        /* Chrome */
        {{.path = "/ws", .hdr = {"Upgrade: websocket", "Connection: Upgrade"}}, "ws"},
        /* "Upgrade: WebSocket" as some clients send it */
        {{.path = "/ws", .hdr = {"Connection: Upgrade", "Upgrade: WebSocket"}}, "ws"},
        {{.path = "/ws", .hdr = {"connection: UPGRADE", "upgrade: WEBSOCKET"}}, "ws"},
        /* Connection split over two lines */
        {{.path = "/ws", .hdr = {"Connection: keep-alive", "Connection: Upgrade",
                                 "Upgrade: websocket"}},
         "ws"},
        /* an Upgrade list with several protocols */
        {{.path = "/ws", .hdr = {"Connection: Upgrade", "Upgrade: h2c, websocket"}}, "ws"},
        /* not upgrades */
        {{.path = "/ws", .hdr = {"Connection: keep-alive"}}, "web"},
        {{.path = "/ws", .hdr = {"Upgrade: websocket"}}, "web"},
        {{.path = "/ws", .hdr = {"Connection: keep-alive, Upgrade", "Upgrade: h2c"}}, "web"},
        {{.path = "/ws", .hdr = {"Connection: Upgraded", "Upgrade: websocket"}}, "web"},
        {{.path = "/ws", .hdr = {"X-Connection: Upgrade", "Upgrade: websocket"}}, "web"},
    };

    (void)state;
    memset(&b, 0, sizeof(b));
    b.rules[0] = (struct sl_http_rule){.name = "ws", .type = SL_RULE_FORWARD, .conds = ws,
                                       .n_conds = 2};
    b.rules[1] = (struct sl_http_rule){.name = "web", .type = SL_RULE_FORWARD};
    finish_frule(&b, 2);
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        expect_match(&b.fr, &cases[i].rq, cases[i].want);
}

/* Several path conditions in one rule share one normalisation; the next request resets it. */
static void test_path_reuse(void **state)
{
    static struct frule_box b;
    struct sl_condition c[2] = {
        mkcond(SL_COND_PATH, SL_OP_STARTS_WITH, false, NULL, "/admin/"),
        mkcond(SL_COND_PATH, SL_OP_ENDS_WITH, false, NULL, ".php"),
    };

    (void)state;
    memset(&b, 0, sizeof(b));
    b.rules[0] = (struct sl_http_rule){.name = "deny", .type = SL_RULE_STATIC, .status_code = 403,
                                       .conds = c, .n_conds = 2};
    finish_frule(&b, 1);
    expect_match(&b.fr, &(struct rq){.path = "/x/../admin/%69ndex.php"}, "deny");
    expect_match(&b.fr, &(struct rq){.path = "/public/index.php"}, NULL);
    expect_match(&b.fr, &(struct rq){.path = "/admin/./i.php"}, "deny");
    expect_match(&b.fr, &(struct rq){.path = "/admin/i.php/.."}, NULL);
}

/* ---- listener lookup ---- */

struct fr_spec {
    const char *name;
    const char *ip;
    uint16_t port;
};

static void test_find_frule(void **state)
{
    static const struct fr_spec specs[] = {
        {"v4-any-80", "0.0.0.0", 80},    {"v4-exact-80", "10.0.0.1", 80},
        {"v6-any-80", "::", 80},         {"v6-exact-80", "2001:db8::1", 80},
        {"v4-exact-443", "10.0.0.1", 443},
    };
    static const struct {
        const char *ip;
        uint16_t port;
        const char *want;
    } cases[] = {
        {"10.0.0.1", 80, "v4-exact-80"},       {"10.0.0.2", 80, "v4-any-80"},
        {"::ffff:10.0.0.1", 80, "v4-exact-80"}, {"::ffff:10.0.0.9", 80, "v6-any-80"},
        {"2001:db8::1", 80, "v6-exact-80"},    {"2001:db8::2", 80, "v6-any-80"},
        {"10.0.0.1", 443, "v4-exact-443"},     {"10.0.0.2", 443, NULL},
        {"10.0.0.1", 8080, NULL},              {"::1", 443, NULL},
    };
    static const struct {
        const char *ip;
        uint16_t port;
        const char *want;
    } v4only_cases[] = {
        {"::ffff:10.0.0.5", 80, "v4-any-80"}, {"10.9.9.9", 80, "v4-any-80"},
        {"::1", 80, NULL},                    {"::ffff:10.0.0.1", 443, "v4-exact-443"},
    };
    struct sl_forwarding_rule frs[SL_ARRAY_LEN(specs)];
    struct sl_config cfg;

    (void)state;
    memset(frs, 0, sizeof(frs));
    memset(&cfg, 0, sizeof(cfg));
    for (size_t i = 0; i < SL_ARRAY_LEN(specs); i++) {
        frs[i].name = specs[i].name;
        frs[i].listener_ip = specs[i].ip;
        assert_int_equal(sl_addr_parse(specs[i].ip, &frs[i].listen), 0);
        frs[i].port = frs[i].port_orig = specs[i].port;
    }
    cfg.frules = frs;
    cfg.n_frules = SL_ARRAY_LEN(frs);
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        struct sl_addr a;
        const struct sl_forwarding_rule *fr;

        assert_int_equal(sl_addr_parse(cases[i].ip, &a), 0);
        fr = sl_router_find_frule(&cfg, &a, cases[i].port);
        if (!cases[i].want)
            assert_null(fr);
        else if (!fr || strcmp(fr->name, cases[i].want) != 0)
            fail_msg("%s:%u: got %s, want %s", cases[i].ip, cases[i].port,
                     fr ? fr->name : "(none)", cases[i].want);
    }

    /* Only IPv4 listeners: a mapped local address reaches the IPv4 rules. */
    frs[2] = frs[0];
    frs[3] = frs[4];
    cfg.n_frules = 4;
    for (size_t i = 0; i < SL_ARRAY_LEN(v4only_cases); i++) {
        struct sl_addr a;
        const struct sl_forwarding_rule *fr;

        assert_int_equal(sl_addr_parse(v4only_cases[i].ip, &a), 0);
        fr = sl_router_find_frule(&cfg, &a, v4only_cases[i].port);
        if (!v4only_cases[i].want)
            assert_null(fr);
        else if (!fr || strcmp(fr->name, v4only_cases[i].want) != 0)
            fail_msg("v4-only %s:%u: got %s, want %s", v4only_cases[i].ip, v4only_cases[i].port,
                     fr ? fr->name : "(none)", v4only_cases[i].want);
    }
    cfg.n_frules = 0;
    assert_null(sl_router_find_frule(&cfg, &frs[0].listen, 80));
}

/* ---- REDIRECT locations ---- */

static void test_redirect_location(void **state)
{
    static const struct {
        const char *location;
        bool drop_query;
        struct rq rq;
        const char *want;
    } cases[] = {
        /* scheme-less location (the IONOS example): the request's scheme, path appended */
        {"www.ionos.com", false, {.path = "/a/b"}, "http://www.ionos.com/a/b"},
        {"www.ionos.com", false, {.path = "/a/b", .tls = true}, "https://www.ionos.com/a/b"},
        {"www.ionos.com", false, {.path = "/"}, "http://www.ionos.com/"},
        {"www.ionos.com:8443", false, {.path = "/x", .tls = true},
         "https://www.ionos.com:8443/x"},
        /* a location with a path keeps it */
        {"www.ionos.com/", false, {.path = "/x"}, "http://www.ionos.com/"},
        {"https://example.com/new", false, {.path = "/old"}, "https://example.com/new"},
        {"https://example.com/new", false, {.path = "/old", .query = "x=1"},
         "https://example.com/new?x=1"},
        /* a location with a scheme and no path */
        {"https://example.com", false, {.path = "/old", .query = "x=1"},
         "https://example.com/old?x=1"},
        {"HTTP://Example.com:8080", false, {.path = "/old", .tls = true},
         "HTTP://Example.com:8080/old"},
        {"wss+x.y-z://h", false, {.path = "/p"}, "wss+x.y-z://h/p"},
        /* dropQuery */
        {"https://example.com", true, {.path = "/old", .query = "x=1"},
         "https://example.com/old"},
        {"www.ionos.com", true, {.path = "/p", .query = "a=1&b=2"}, "http://www.ionos.com/p"},
        {"www.ionos.com", false, {.path = "/p", .query = "a=1&b=2"},
         "http://www.ionos.com/p?a=1&b=2"},
        /* no query, or a present but empty one: nothing appended */
        {"https://example.com", false, {.path = "/old", .query = ""}, "https://example.com/old"},
        {"https://example.com", false, {.path = "/old"}, "https://example.com/old"},
        /* the location already has a query */
        {"https://example.com/search?src=lb", false, {.path = "/old", .query = "q=1"},
         "https://example.com/search?src=lb&q=1"},
        {"https://example.com/search?src=lb", true, {.path = "/old", .query = "q=1"},
         "https://example.com/search?src=lb"},
        {"https://example.com/p?", false, {.path = "/old", .query = "q=1"},
         "https://example.com/p?q=1"},
        {"example.com?src=lb", false, {.path = "/old", .query = "q=1"},
         "http://example.com/old?src=lb&q=1"},
        /* a fragment stays last */
        {"https://example.com/p#top", false, {.path = "/old", .query = "q=1"},
         "https://example.com/p?q=1#top"},
        {"https://example.com#top", false, {.path = "/old"}, "https://example.com/old#top"},
        /* a relative location is used as written */
        {"/maintenance", false, {.path = "/old", .query = "q=1"}, "/maintenance?q=1"},
        {"//cdn.example.com", false, {.path = "/img/a.png"}, "//cdn.example.com/img/a.png"},
        /* CONNECT's authority and OPTIONS' "*" are not paths: never appended */
        {"https://www.example.com", false, {.path = "evil.com:443"}, "https://www.example.com"},
        {"https://www.example.com", false, {.path = "*"}, "https://www.example.com"},
    };
    char buf[256];

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        struct sl_http_rule r = {.name = "rd", .type = SL_RULE_REDIRECT, .status_code = 301,
                                 .location = cases[i].location,
                                 .drop_query = cases[i].drop_query};
        struct built_req b;
        int n;

        build_req(&cases[i].rq, &b);
        n = sl_router_redirect_location(&r, &b.r, buf, sizeof(buf));
        if (n < 0 || strcmp(buf, cases[i].want) != 0)
            fail_msg("case %zu: %s -> %s, want %s", i, cases[i].location, n < 0 ? "-1" : buf,
                     cases[i].want);
        assert_int_equal(n, (int)strlen(cases[i].want));
    }

    /* A buffer too small: exactly the length plus the NUL fits, one byte less does not. */
    {
        struct sl_http_rule r = {.name = "rd", .type = SL_RULE_REDIRECT,
                                 .location = "www.ionos.com"};
        struct built_req b;
        const char *want = "https://www.ionos.com/path?q=1";
        size_t wl = strlen(want);

        build_req(&(struct rq){.path = "/path", .query = "q=1", .tls = true}, &b);
        assert_int_equal(sl_router_redirect_location(&r, &b.r, buf, wl + 1), (int)wl);
        assert_string_equal(buf, want);
        for (size_t len = 0; len <= wl; len++)
            assert_int_equal(sl_router_redirect_location(&r, &b.r, buf, len), -1);
        r.location = NULL;
        assert_int_equal(sl_router_redirect_location(&r, &b.r, buf, sizeof(buf)), -1);
        r.location = "";
        assert_int_equal(sl_router_redirect_location(&r, &b.r, buf, sizeof(buf)), -1);
    }
}

/* ---- names and regex ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sl_cond_type_name(SL_COND_HEADER), "HEADER");
    assert_string_equal(sl_cond_type_name(SL_COND_PATH), "PATH");
    assert_string_equal(sl_cond_type_name(SL_COND_QUERY), "QUERY");
    assert_string_equal(sl_cond_type_name(SL_COND_METHOD), "METHOD");
    assert_string_equal(sl_cond_type_name(SL_COND_HOST), "HOST");
    assert_string_equal(sl_cond_type_name(SL_COND_COOKIE), "COOKIE");
    assert_string_equal(sl_cond_type_name(SL_COND_SOURCE_IP), "SOURCE_IP");
    assert_string_equal(sl_cond_op_name(SL_OP_EXISTS), "EXISTS");
    assert_string_equal(sl_cond_op_name(SL_OP_CONTAINS), "CONTAINS");
    assert_string_equal(sl_cond_op_name(SL_OP_EQUALS), "EQUALS");
    assert_string_equal(sl_cond_op_name(SL_OP_MATCHES), "MATCHES");
    assert_string_equal(sl_cond_op_name(SL_OP_STARTS_WITH), "STARTS_WITH");
    assert_string_equal(sl_cond_op_name(SL_OP_ENDS_WITH), "ENDS_WITH");
    assert_non_null(sl_cond_op_name(SL_OP_NONE));
    assert_string_equal(sl_rule_type_name(SL_RULE_FORWARD), "FORWARD");
    assert_string_equal(sl_rule_type_name(SL_RULE_STATIC), "STATIC");
    assert_string_equal(sl_rule_type_name(SL_RULE_REDIRECT), "REDIRECT");
}

static void test_regex(void **state)
{
    char err[128] = "";
    size_t off = 99;
    sl_regex *re;
    sl_regex_md *md = sl_regex_md_new();

    (void)state;
    assert_non_null(md);
    assert_null(sl_regex_compile("a(b", 3, false, err, sizeof(err), &off));
    assert_true(strlen(err) > 0);
    assert_int_equal(off, 3);

    re = sl_regex_compile("^caf\xc3\xa9$", 7, true, err, sizeof(err), &off);
    assert_non_null(re);
    assert_int_equal(sl_regex_search(re, "CAF\xc3\x89", 5, md), 1); /* Unicode caseless */
    assert_int_equal(sl_regex_search(re, "cafe", 4, md), 0);
    assert_int_equal(sl_regex_search(re, "caf\xff", 4, md), 0); /* invalid UTF-8 never matches */
    sl_regex_free(re);

    re = sl_regex_compile("b.d", 3, false, err, sizeof(err), &off);
    assert_non_null(re);
    assert_int_equal(sl_regex_search(re, "xxabcdxx", 8, md), 1);
    assert_int_equal(sl_regex_search(re, "xxabcdxx", 4, md), 0); /* length, not NUL, bounds */
    assert_int_equal(sl_regex_search(re, "ABCD", 4, md), 0);
    assert_int_equal(sl_regex_search(re, NULL, 0, md), 0);
    sl_regex_free(re);

    /* A repeated group over a head-sized subject: PCRE2's default 32 KiB JIT stack fails here
     * (PCRE2_ERROR_JITSTACKLIMIT), which once made a deny rule on a long path not match. */
    {
        size_t n = 60000, i;
        char *subj = malloc(n + 1);

        assert_non_null(subj);
        for (i = 0; i < n; i++)
            subj[i] = "ab"[i & 1];
        subj[n] = 'c';
        re = sl_regex_compile("(a|b)*c", 7, false, err, sizeof(err), &off);
        assert_non_null(re);
        assert_int_equal(sl_regex_search(re, subj, n + 1, md), 1);
        sl_regex_free(re);
        subj[0] = '/';
        for (i = 1; i + 2 <= 16001; i += 2)
            memcpy(subj + i, "a/", 2);
        memcpy(subj + 16001, "secret", 6);
        re = sl_regex_compile("^/(?:[^/]+/)*secret", 19, false, err, sizeof(err), &off);
        assert_non_null(re);
        assert_int_equal(sl_regex_search(re, subj, 16007, md), 1);
        sl_regex_free(re);
        free(subj);
    }
    sl_regex_md_free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_condition_matrix),
        cmocka_unit_test(test_cond_flags),
        cmocka_unit_test(test_header_details),
        cmocka_unit_test(test_evaluation_order),
        cmocka_unit_test(test_websocket_rule),
        cmocka_unit_test(test_path_reuse),
        cmocka_unit_test(test_find_frule),
        cmocka_unit_test(test_redirect_location),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_regex),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
