/* Rule routing: the forwarding rule by listener, then http rules in IONOS order, with the
 * condition semantics documented in router.h. Whatever a request needs decoded (normalised
 * path, decoded query parameters, a joined repeated header) goes into the per-thread scratch,
 * so the hot path never allocates, locks or logs. */
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/regex.h"
#include "sluice/http.h"
#include "sluice/router.h"

/* The largest request head the parser accepts, plus slack for the ", " joins. */
#define HEAD_MAX (64 * 1024)
#define SCRATCH_CAP (HEAD_MAX + 1024)

struct sl_router_scratch {
    sl_regex_md *md;
    bool path_ready;  /* path/path_len hold this request's normalised path */
    const char *path; /* path_buf, or the request's own path when already normal */
    size_t path_len;
    char path_buf[SCRATCH_CAP];
    char work[SCRATCH_CAP]; /* query key/value decoding, joined header values */
};

/* What one condition compares candidates against. */
struct cand_test {
    const struct sl_condition *c;
    const char *v;
    size_t vlen;
    bool nocase;
    sl_regex_md *md;
};

/* Headers RFC 9110 (and RFC 6455 for Sec-WebSocket-*) define as comma-separated lists, whose
 * members are matched one by one, and those whose tokens are case-insensitive. Users write
 * "Connection EQUALS upgrade" and expect it to hold for "Connection: keep-alive, Upgrade", as
 * every origin server reading the header would. Looked up at config load only. */
static const char *const list_headers[] = {
    "Connection", "Upgrade", "Transfer-Encoding", "TE", "Trailer", "Accept",
    "Accept-Charset", "Accept-Encoding", "Accept-Language", "Cache-Control", "Pragma", "Vary",
    "Via", "Allow", "Content-Encoding", "Content-Language", "If-Match", "If-None-Match",
    "Expect", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Sec-WebSocket-Version",
    "X-Forwarded-For", "X-Forwarded-Proto", "Forwarded",
};

static const char *const nocase_headers[] = {
    "Connection", "Upgrade", "Transfer-Encoding", "TE", "Accept-Encoding", "Content-Encoding",
    "Sec-WebSocket-Version", "Expect", "X-Forwarded-Proto",
};

static inline unsigned char lower(unsigned char ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static bool ci_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static bool bytes_eq(const char *a, const char *b, size_t n, bool nocase)
{
    if (n == 0)
        return true;
    return nocase ? ci_eq(a, b, n) : memcmp(a, b, n) == 0;
}

static bool contains(const char *s, size_t n, const char *v, size_t vlen, bool nocase)
{
    if (vlen == 0)
        return true;
    if (vlen > n)
        return false;
    if (!nocase)
        return memmem(s, n, v, vlen) != NULL;
    for (size_t i = 0; i + vlen <= n; i++) {
        if (ci_eq(s + i, v, vlen))
            return true;
    }
    return false;
}

static bool in_table(const char *const *tab, size_t n, const char *key, size_t key_len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(tab[i]) == key_len && ci_eq(tab[i], key, key_len))
            return true;
    }
    return false;
}

unsigned sl_router_cond_flags(enum sl_cond_type type, const char *key, size_t key_len)
{
    unsigned flags = 0;

    if (type == SL_COND_HOST)
        return SL_COND_F_NOCASE;
    if (type != SL_COND_HEADER || !key)
        return 0;
    if (in_table(list_headers, SL_ARRAY_LEN(list_headers), key, key_len))
        flags |= SL_COND_F_LIST;
    if (in_table(nocase_headers, SL_ARRAY_LEN(nocase_headers), key, key_len))
        flags |= SL_COND_F_NOCASE;
    return flags;
}

struct sl_router_scratch *sl_router_scratch_new(void)
{
    struct sl_router_scratch *s = malloc(sizeof(*s));

    if (!s)
        return NULL;
    s->md = sl_regex_md_new();
    if (!s->md) {
        free(s);
        return NULL;
    }
    s->path_ready = false;
    s->path = NULL;
    s->path_len = 0;
    return s;
}

void sl_router_scratch_free(struct sl_router_scratch *s)
{
    if (!s)
        return;
    sl_regex_md_free(s->md);
    free(s);
}

/* One candidate against the operator (EXISTS: the candidate is there). */
static bool cand_holds(const struct cand_test *t, const char *s, size_t n)
{
    switch (t->c->op) {
    case SL_OP_EXISTS:
        return true;
    case SL_OP_EQUALS:
        return n == t->vlen && bytes_eq(s, t->v, n, t->nocase);
    case SL_OP_CONTAINS:
        return contains(s, n, t->v, t->vlen, t->nocase);
    case SL_OP_STARTS_WITH:
        return n >= t->vlen && bytes_eq(s, t->v, t->vlen, t->nocase);
    case SL_OP_ENDS_WITH:
        return n >= t->vlen && bytes_eq(s + n - t->vlen, t->v, t->vlen, t->nocase);
    case SL_OP_MATCHES:
        /* A match error (a PCRE2 limit) counts as no match; the JIT stack is sized so that
         * only a pathological pattern can hit one on a request head. */
        return sl_regex_search(t->c->re, s, n, t->md) == 1;
    case SL_OP_NONE:
        break;
    }
    return false;
}

static inline bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool name_is(const struct sl_header *h, const char *key, size_t key_len)
{
    return h->name_len == key_len && ci_eq(h->name, key, key_len);
}

/* Each member of a comma-separated list (sl_http_list_next: trimmed, empty ones skipped). */
static bool list_holds(const struct cand_test *t, const char *v, size_t n)
{
    const char *p = v, *e;
    size_t en;

    if (n == 0 || !memchr(v, ',', n))
        return false; /* the single member is the whole value, already tried */
    while (sl_http_list_next(&p, v + n, &e, &en))
        if (cand_holds(t, e, en))
            return true;
    return false;
}

static bool header_holds(const struct cand_test *t, const struct sl_request *req,
                         struct sl_router_scratch *s)
{
    const struct sl_condition *c = t->c;
    size_t lines = 0, total = 0, o = 0;

    if (!c->key)
        return false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sl_header *h = &req->headers[i];

        if (!name_is(h, c->key, c->key_len))
            continue;
        if (c->op == SL_OP_EXISTS)
            return true;
        lines++;
        total += h->value_len;
        if (cand_holds(t, h->value, h->value_len))
            return true;
        if ((c->flags & SL_COND_F_LIST) && list_holds(t, h->value, h->value_len))
            return true;
    }
    if (lines < 2)
        return false;
    /* The combined field value (RFC 9110 §5.3); it fits for any head the parser accepts. */
    total += 2 * (lines - 1);
    if (total > sizeof(s->work))
        return false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sl_header *h = &req->headers[i];

        if (!name_is(h, c->key, c->key_len))
            continue;
        if (o) {
            s->work[o++] = ',';
            s->work[o++] = ' ';
        }
        if (h->value_len)
            memcpy(s->work + o, h->value, h->value_len);
        o += h->value_len;
    }
    return cand_holds(t, s->work, o);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* RFC 3986 §6.2.2.2: only unreserved characters may be decoded without changing meaning. */
static size_t decode_unreserved(const char *p, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        if (p[i] == '%' && n - i >= 3) {
            int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);

            if (hi >= 0 && lo >= 0 && is_unreserved((unsigned char)(hi << 4 | lo))) {
                out[o++] = (char)(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out[o++] = p[i++];
    }
    return o;
}

/* Drops the last segment and its preceding '/' from the output. */
static size_t pop_segment(const char *out, size_t o)
{
    while (o > 0 && out[o - 1] != '/')
        o--;
    return o > 0 ? o - 1 : 0;
}

/* RFC 3986 §5.2.4 remove_dot_segments; the output is never longer than the input. */
static size_t remove_dots(const char *in, size_t n, char *out)
{
    size_t i = 0, o = 0;

    while (i < n) {
        const char *p = in + i;
        size_t rem = n - i;

        if (rem >= 3 && memcmp(p, "../", 3) == 0) {
            i += 3;
        } else if (rem >= 2 && memcmp(p, "./", 2) == 0) {
            i += 2;
        } else if (rem >= 3 && memcmp(p, "/./", 3) == 0) {
            i += 2;
        } else if (rem == 2 && memcmp(p, "/.", 2) == 0) {
            out[o++] = '/';
            i = n;
        } else if (rem >= 4 && memcmp(p, "/../", 4) == 0) {
            i += 3;
            o = pop_segment(out, o);
        } else if (rem == 3 && memcmp(p, "/..", 3) == 0) {
            o = pop_segment(out, o);
            out[o++] = '/';
            i = n;
        } else if ((rem == 1 && p[0] == '.') || (rem == 2 && memcmp(p, "..", 2) == 0)) {
            i = n;
        } else {
            size_t j = i + (p[0] == '/');

            while (j < n && in[j] != '/')
                j++;
            memcpy(out + o, p, j - i);
            o += j - i;
            i = j;
        }
    }
    return o;
}

/* Collapses runs of '/' in place, as nginx does by default (merge_slashes): "//admin" must
 * not slip past a rule on "/admin". Returns the new length. */
static size_t merge_slashes(char *p, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++)
        if (p[i] != '/' || o == 0 || p[o - 1] != '/')
            p[o++] = p[i];
    return o;
}

/* Whether the path needs no normalising: no '%', no '.', no "//". One pass, as this runs
 * for every request that a PATH condition looks at. */
static bool path_is_plain(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '%' || p[i] == '.' || (p[i] == '/' && i + 1 < n && p[i + 1] == '/'))
            return false;
    return true;
}

/* Normalises the request's path once per evaluation. */
static void path_prepare(const struct sl_request *req, struct sl_router_scratch *s)
{
    const char *p = req->path ? req->path : "";
    size_t n = req->path ? req->path_len : 0;
    size_t dn;

    if (s->path_ready)
        return;
    s->path_ready = true;
    s->path = p;
    s->path_len = n;
    /* Common case: nothing to decode and no dot segment, so the path is already normal.
     * A path longer than any head the parser accepts cannot occur; it is used as is. */
    if (path_is_plain(p, n) || n > sizeof(s->work))
        return;
    dn = merge_slashes(s->work, decode_unreserved(p, n, s->work));
    s->path_len = remove_dots(s->work, dn, s->path_buf);
    s->path = s->path_buf;
}

/* application/x-www-form-urlencoded: %XX decoded (malformed kept), '+' is a space. */
static size_t decode_form(const char *p, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        if (p[i] == '%' && n - i >= 3) {
            int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);

            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out[o++] = p[i] == '+' ? ' ' : p[i];
        i++;
    }
    return o;
}

static bool query_holds(const struct cand_test *t, const struct sl_request *req,
                        struct sl_router_scratch *s)
{
    const struct sl_condition *c = t->c;
    const char *p, *end;

    if (!req->query || !c->key)
        return false;
    p = req->query;
    end = p + req->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        size_t plen = (size_t)(pe - p);

        if (plen > 0 && plen <= sizeof(s->work)) {
            const char *eq = memchr(p, '=', plen);
            size_t kl = decode_form(p, (size_t)((eq ? eq : pe) - p), s->work);

            if (kl == c->key_len && bytes_eq(s->work, c->key, kl, false)) {
                size_t vl = 0;

                if (c->op == SL_OP_EXISTS)
                    return true;
                if (eq)
                    vl = decode_form(eq + 1, (size_t)(pe - eq - 1), s->work + kl);
                if (cand_holds(t, s->work + kl, vl))
                    return true;
            }
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return false;
}

static bool cookie_holds(const struct cand_test *t, const struct sl_request *req)
{
    const struct sl_condition *c = t->c;

    if (!c->key)
        return false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sl_header *h = &req->headers[i];
        const char *p, *end;

        if (!name_is(h, "Cookie", 6))
            continue;
        p = h->value;
        end = p + h->value_len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *a = p, *b = semi ? semi : end, *eq, *ne, *vs;

            while (a < b && is_ows(*a))
                a++;
            while (b > a && is_ows(b[-1]))
                b--;
            if (b > a) {
                eq = memchr(a, '=', (size_t)(b - a));
                ne = eq ? eq : b;
                vs = eq ? eq + 1 : b;
                while (ne > a && is_ows(ne[-1]))
                    ne--;
                while (vs < b && is_ows(*vs))
                    vs++;
                if ((size_t)(ne - a) == c->key_len && bytes_eq(a, c->key, c->key_len, false)) {
                    if (c->op == SL_OP_EXISTS || cand_holds(t, vs, (size_t)(b - vs)))
                        return true;
                }
            }
            if (!semi)
                break;
            p = semi + 1;
        }
    }
    return false;
}

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
    }
    return true;
}

/* The host without port, brackets or trailing dot. The parser already strips port and
 * brackets; doing it again costs nothing and keeps rules right for any caller. */
static size_t host_span(const struct sl_request *req, const char **out)
{
    const char *h = req->host;
    size_t n = req->host_len;

    if (!h) {
        *out = "";
        return 0;
    }
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);

        n = close ? (size_t)(close - h - 1) : n - 1;
        h++;
    } else {
        const char *colon = memchr(h, ':', n);

        /* One colon followed by digits is a port; more colons make a bare IPv6 address. */
        if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - h) - 1) &&
            all_digits(colon + 1, n - (size_t)(colon - h) - 1))
            n = (size_t)(colon - h);
    }
    if (n > 0 && h[n - 1] == '.')
        n--;
    *out = h;
    return n;
}

/* The condition's result before negate. */
static bool cond_eval(const struct sl_condition *c, const struct sl_request *req,
                      struct sl_router_scratch *s)
{
    struct cand_test t = {
        .c = c,
        .v = c->value ? c->value : "",
        .vlen = c->value ? c->value_len : 0,
        .nocase = (c->flags & SL_COND_F_NOCASE) != 0,
        .md = s->md,
    };
    const char *h;
    size_t hn;

    switch (c->type) {
    case SL_COND_HEADER:
        return header_holds(&t, req, s);
    case SL_COND_PATH:
        if (c->op == SL_OP_EXISTS)
            return true;
        path_prepare(req, s);
        return cand_holds(&t, s->path, s->path_len);
    case SL_COND_QUERY:
        return query_holds(&t, req, s);
    case SL_COND_METHOD:
        if (c->op == SL_OP_EXISTS)
            return true;
        return cand_holds(&t, req->method ? req->method : "", req->method ? req->method_len : 0);
    case SL_COND_HOST:
        hn = host_span(req, &h);
        if (hn == 0)
            return false;
        t.nocase = true;
        /* "example.com." names the same host as "example.com". */
        if ((c->op == SL_OP_EQUALS || c->op == SL_OP_ENDS_WITH) && t.vlen > 0 &&
            t.v[t.vlen - 1] == '.')
            t.vlen--;
        return cand_holds(&t, h, hn);
    case SL_COND_COOKIE:
        return cookie_holds(&t, req);
    case SL_COND_SOURCE_IP:
        return sl_cidr_contains(&c->cidr, &req->source);
    }
    return false;
}

static bool rule_eval(const struct sl_http_rule *rule, const struct sl_request *req,
                      struct sl_router_scratch *s)
{
    for (size_t i = 0; i < rule->n_conds; i++) {
        const struct sl_condition *c = &rule->conds[i];

        if (cond_eval(c, req, s) == c->negate)
            return false;
    }
    return true;
}

bool sl_router_cond_holds(const struct sl_condition *c, const struct sl_request *req,
                          struct sl_router_scratch *s)
{
    s->path_ready = false;
    return cond_eval(c, req, s) != c->negate;
}

bool sl_router_rule_holds(const struct sl_http_rule *rule, const struct sl_request *req,
                          struct sl_router_scratch *s)
{
    s->path_ready = false;
    return rule_eval(rule, req, s);
}

/* HOT: match */
const struct sl_http_rule *sl_router_match(const struct sl_forwarding_rule *fr,
                                           const struct sl_request *req,
                                           struct sl_router_scratch *s)
{
    if (SL_UNLIKELY(!fr))
        return NULL;
    s->path_ready = false;
    if (SL_LIKELY(fr->order != NULL)) {
        for (size_t i = 0; i < fr->n_rules; i++) {
            if (rule_eval(fr->order[i], req, s))
                return fr->order[i];
        }
        return NULL;
    }
    /* No precomputed order (a hand-built rule): the same IONOS order in two passes. */
    for (int forward = 0; forward < 2; forward++) {
        for (size_t i = 0; i < fr->n_rules; i++) {
            const struct sl_http_rule *r = &fr->rules[i];

            if ((r->type == SL_RULE_FORWARD) == (forward != 0) && rule_eval(r, req, s))
                return r;
        }
    }
    return NULL;
}

static bool is_v4_mapped(const struct sl_addr *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return a->family == AF_INET6 && memcmp(a->bytes, prefix, sizeof(prefix)) == 0;
}

/* HOT: match */
const struct sl_forwarding_rule *sl_router_find_frule(const struct sl_config *cfg,
                                                      const struct sl_addr *local, uint16_t port)
{
    const struct sl_forwarding_rule *wild = NULL, *wild_v4 = NULL;
    struct sl_addr v4 = {0};
    bool mapped;

    if (SL_UNLIKELY(!cfg || !local))
        return NULL;
    /* A dual-stack socket reports IPv4 clients on IPv4-mapped local addresses. */
    mapped = is_v4_mapped(local);
    if (mapped) {
        v4.family = AF_INET;
        memcpy(v4.bytes, local->bytes + 12, 4);
    }
    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];

        if (fr->port != port)
            continue;
        if (sl_addr_equal(&fr->listen, local) || (mapped && sl_addr_equal(&fr->listen, &v4)))
            return fr;
        if (!sl_addr_is_any(&fr->listen))
            continue;
        if (!wild && fr->listen.family == local->family)
            wild = fr;
        else if (!wild_v4 && mapped && fr->listen.family == AF_INET)
            wild_v4 = fr;
    }
    /* The socket's own family first: a mapped address arrived on a dual-stack "::" socket. */
    return wild ? wild : wild_v4;
}

/* Bounded appends into the caller's buffer, leaving room for the NUL. */
struct sbuf {
    char *buf;
    size_t len, n;
    bool ok;
};

static void put(struct sbuf *b, const char *p, size_t n)
{
    if (!b->ok || n == 0)
        return;
    if (n >= b->len - b->n) {
        b->ok = false;
        return;
    }
    memcpy(b->buf + b->n, p, n);
    b->n += n;
}

/* Length of "scheme://" at the start of <p> (RFC 3986 §3.1 scheme), 0 if none. */
static size_t scheme_prefix(const char *p, size_t n)
{
    size_t i = 0;

    if (n == 0 || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
        return 0;
    while (i < n && ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
                     (p[i] >= '0' && p[i] <= '9') || p[i] == '+' || p[i] == '-' || p[i] == '.'))
        i++;
    return n - i >= 3 && memcmp(p + i, "://", 3) == 0 ? i + 3 : 0;
}

int sl_router_redirect_location(const struct sl_http_rule *rule, const struct sl_request *req,
                                char *buf, size_t len)
{
    struct sbuf b = {.buf = buf, .len = len, .n = 0, .ok = true};
    const char *loc, *frag, *q, *path;
    size_t ll, auth = 0;
    bool has_authority = true;

    if (!rule || !rule->location || !buf || len == 0)
        return -1;
    loc = rule->location;
    ll = strlen(loc);
    if (ll == 0)
        return -1;
    if (loc[0] == '/') {
        /* "//host/…" keeps the request's scheme in the client; "/path" is relative. */
        has_authority = ll >= 2 && loc[1] == '/';
        auth = has_authority ? 2 : 0;
    } else {
        auth = scheme_prefix(loc, ll);
        if (auth == 0)
            put(&b, req->tls ? "https://" : "http://", req->tls ? 8 : 7);
    }
    frag = memchr(loc + auth, '#', ll - auth);
    if (!frag)
        frag = loc + ll;
    q = memchr(loc + auth, '?', (size_t)(frag - loc) - auth);
    if (!q)
        q = frag;
    path = has_authority ? memchr(loc + auth, '/', (size_t)(q - loc) - auth) : loc;
    if (!path)
        path = q;

    put(&b, loc, (size_t)(path - loc));
    /* A host move keeps the path; CONNECT's authority and OPTIONS' "*" are not paths, and
     * appending them would let the client choose the host. */
    if (path == q && req->path && req->path_len > 0 && req->path[0] == '/')
        put(&b, req->path, req->path_len);
    else
        put(&b, path, (size_t)(q - path));
    put(&b, q, (size_t)(frag - q));
    if (!rule->drop_query && req->query && req->query_len > 0) {
        if (q == frag)
            put(&b, "?", 1);
        else if (frag[-1] != '?' && frag[-1] != '&')
            put(&b, "&", 1);
        put(&b, req->query, req->query_len);
    }
    put(&b, frag, (size_t)(loc + ll - frag));
    if (!b.ok || b.n > (size_t)INT_MAX)
        return -1;
    buf[b.n] = '\0';
    return (int)b.n;
}
