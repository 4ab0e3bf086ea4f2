/* Request heads: find the blank line ourselves, let llhttp (no lenient flags) parse the head
 * and stop at on_headers_complete, then add the checks llhttp leaves out (bare LF, obs-fold,
 * header name tokens, target form, Host rules, body framing) and build the router's view.
 * Every span points into the caller's buffer; nothing is allocated.
 */
#include "sluice/http.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "sluice/common.h"

/* The path of an absolute-form target without one ("http://h?q" means "/?q"). */
static const char root_path[] = "/";

/* h->error for messages built at run time (llhttp's reason with our context). */
static _Thread_local char err_buf[192];

struct parse_ctx {
    struct sl_http_head *h;
    size_t n;            /* committed headers */
    bool in_field;       /* span callbacks for the current name/value arrived */
    bool in_value;
    bool complete;       /* on_headers_complete ran */
    int status;          /* set by a callback that stops the parse */
    const char *error;
};

static int fail(struct sl_http_head *h, int status, const char *error)
{
    h->status = status;
    h->error = error;
    return SL_ERROR;
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_alpha(unsigned char c)
{
    c |= 0x20;
    return c >= 'a' && c <= 'z';
}

static inline bool is_hex(unsigned char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && memchr("!#$%&'*+-.^_`|~", c, 15));
}

/* RFC 3986 unreserved / sub-delims. */
static bool is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && memchr("-._~!$&'()*+,;=", c, 15));
}

bool sl_http_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static bool method_is(const struct sl_request *r, const char *lit)
{
    return r->method_len == strlen(lit) && memcmp(r->method, lit, r->method_len) == 0;
}

static bool eq_nocase(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);

    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];

        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

/* Span callbacks may come in pieces; the pieces of one element are adjacent in the buffer. */
static int extend(const char **start, size_t *len, const char *at, size_t n)
{
    if (at != *start + *len)
        return -1;
    *len += n;
    return 0;
}

static int stop(llhttp_t *p, struct parse_ctx *c, int status, const char *error)
{
    c->status = status;
    c->error = error;
    llhttp_set_error_reason(p, error);
    return HPE_USER;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    struct sl_request *r = &c->h->req;

    if (!r->method) {
        r->method = at;
        r->method_len = n;
    } else if (extend(&r->method, &r->method_len, at, n)) {
        return stop(p, c, 400, "method split unexpectedly");
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    struct sl_http_head *h = c->h;

    if (!h->target) {
        h->target = at;
        h->target_len = n;
    } else if (extend(&h->target, &h->target_len, at, n)) {
        return stop(p, c, 400, "request target split unexpectedly");
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    struct sl_header *hd;

    if (c->n >= SL_HTTP_MAX_HEADERS)
        return stop(p, c, 431, "more than 100 header fields");
    hd = &c->h->headers[c->n];
    if (!c->in_field) {
        c->in_field = true;
        hd->name = at;
        hd->name_len = n;
    } else if (extend(&hd->name, &hd->name_len, at, n)) {
        return stop(p, c, 400, "header name split unexpectedly");
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct parse_ctx *c = p->data;
    struct sl_header *hd;

    if (!c->in_field) /* an empty name: no span came */
        return stop(p, c, 400, "empty header name");
    hd = &c->h->headers[c->n];
    c->in_field = false;
    c->in_value = false;
    /* An empty value may come without a span: point it just past the name. */
    hd->value = hd->name + hd->name_len;
    hd->value_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    struct sl_header *hd = &c->h->headers[c->n];

    if (!c->in_value) {
        c->in_value = true;
        hd->value = at;
        hd->value_len = n;
    } else if (extend(&hd->value, &hd->value_len, at, n)) {
        /* Pieces with a gap are a folded line. */
        return stop(p, c, 400, "obsolete line folding in a header value");
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct parse_ctx *c = p->data;

    c->in_value = false;
    c->n++;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct parse_ctx *c = p->data;

    c->complete = true;
    return HPE_PAUSED; /* the body is not ours to parse */
}

static const llhttp_settings_t settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

/* Finds the end of the head; refuses bare LF, bare CR, NUL and folded lines as soon as they are
 * seen, so a client cannot keep us waiting with a head only a lenient parser would end. */
static int find_head(const char *buf, size_t len, size_t *start, struct sl_http_head *h)
{
    size_t lim = len < SL_HTTP_MAX_HEAD ? len : SL_HTTP_MAX_HEAD;
    size_t i = 0;

    /* RFC 9112 §2.2: ignore empty lines before the request line. */
    while (i + 1 < lim && buf[i] == '\r' && buf[i + 1] == '\n')
        i += 2;
    *start = i;
    for (; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];

        if (SL_LIKELY(c > '\r'))
            continue;
        if (c == '\n') {
            if (i == 0 || buf[i - 1] != '\r')
                return fail(h, 400, "bare LF line ending in the request head");
            if (i >= *start + 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
                h->head_len = i + 1;
                return SL_OK;
            }
            if (i + 1 < len && is_ows((unsigned char)buf[i + 1]))
                return fail(h, 400, "header line starts with whitespace (obsolete line folding)");
        } else if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n')
                return fail(h, 400, "bare CR in the request head");
        } else if (c == '\0') {
            return fail(h, 400, "NUL byte in the request head");
        }
    }
    if (len > SL_HTTP_MAX_HEAD)
        return fail(h, 431, "request header section larger than 64 KiB");
    return SL_AGAIN;
}

/* "HTTP/x.y" at the end of the request line, when it is there. */
static bool line_version(const char *rl, size_t rl_len, unsigned *major, unsigned *minor)
{
    const unsigned char *v;

    if (rl_len < 10)
        return false;
    v = (const unsigned char *)rl + rl_len - 8;
    if (v[-1] != ' ' || memcmp(v, "HTTP/", 5) != 0 || !is_digit(v[5]) ||
        v[6] != '.' || !is_digit(v[7]))
        return false;
    *major = v[5] - '0';
    *minor = v[7] - '0';
    return true;
}

/* "parsing <where>: <llhttp's reason>" for an llhttp error. */
static const char *llhttp_error(llhttp_t *p, const char *head, size_t rl_len, size_t head_len)
{
    const char *reason = llhttp_get_error_reason(p);
    const char *pos = llhttp_get_error_pos(p);
    size_t off = pos && pos >= head && pos <= head + head_len ? (size_t)(pos - head) : 0;
    unsigned line = 1;
    size_t ls = 0;
    bool value;

    if (!reason)
        reason = llhttp_errno_name(llhttp_get_errno(p));
    if (off <= rl_len) {
        snprintf(err_buf, sizeof(err_buf), "parsing the request line: %s", reason);
        return err_buf;
    }
    if (off + 2 >= head_len) {
        snprintf(err_buf, sizeof(err_buf), "checking the header section: %s", reason);
        return err_buf;
    }
    for (size_t i = 0; i < off; i++) {
        if (head[i] == '\n') {
            line++;
            ls = i + 1;
        }
    }
    value = memchr(head + ls, ':', off - ls) != NULL;
    snprintf(err_buf, sizeof(err_buf), "parsing header line %u (%s): %s", line,
             value ? "value" : "name", reason);
    return err_buf;
}

/* host [":" port] (IPv6 in brackets) -> host without port and brackets. An empty <s> gives an
 * empty host when <allow_empty>. */
static bool parse_authority(const char *s, size_t n, bool allow_empty, bool need_port,
                            const char **host, size_t *host_len)
{
    size_t i = 0, hs, he;

    if (n == 0) {
        *host = s;
        *host_len = 0;
        return allow_empty && !need_port;
    }
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);

        if (!rb || rb == s + 1)
            return false;
        hs = 1;
        he = (size_t)(rb - s);
        for (i = hs; i < he; i++)
            if (!is_host_char((unsigned char)s[i]) && s[i] != ':')
                return false;
        i = he + 1;
    } else {
        hs = 0;
        for (; i < n && s[i] != ':'; i++) {
            unsigned char c = (unsigned char)s[i];

            if (c == '%') {
                if (i + 2 >= n || !is_hex((unsigned char)s[i + 1]) ||
                    !is_hex((unsigned char)s[i + 2]))
                    return false;
                i += 2;
            } else if (!is_host_char(c)) {
                return false;
            }
        }
        he = i;
        if (he == 0)
            return false;
    }
    if (i < n) {
        if (s[i] != ':')
            return false;
        if (need_port && i + 1 == n)
            return false;
        for (i++; i < n; i++)
            if (!is_digit((unsigned char)s[i]))
                return false;
    } else if (need_port) {
        return false;
    }
    *host = s + hs;
    *host_len = he - hs;
    return true;
}

/* Splits "path[?query][#fragment]" (the fragment is dropped). */
static void split_path(struct sl_request *r, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && s[i] != '?' && s[i] != '#')
        i++;
    r->path = s;
    r->path_len = i;
    if (i < n && s[i] == '?') {
        size_t q = ++i;

        while (i < n && s[i] != '#')
            i++;
        r->query = s + q;
        r->query_len = i - q;
    }
}

/* Fills path, query and (from an authority in the target) host; 0 or -1 with h->error set. */
static int parse_target(struct sl_http_head *h, bool *authority)
{
    struct sl_request *r = &h->req;
    const char *t = h->target;
    size_t n = h->target_len, i;

    *authority = false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];

        /* Raw non-ASCII is refused too, as llhttp's strict build does. */
        if (c <= ' ' || c >= 0x7f)
            return fail(h, 400, "invalid character in the request target");
    }
    if (n == 0)
        return fail(h, 400, "empty request target");

    /* Authority-form: path is the authority as written, no query. */
    if (method_is(r, "CONNECT")) {
        if (!parse_authority(t, n, false, true, &r->host, &r->host_len))
            return fail(h, 400, "CONNECT needs an authority-form target (host:port)");
        r->path = t;
        r->path_len = n;
        *authority = true;
        return 0;
    }
    /* Asterisk-form: path "*", no query. */
    if (n == 1 && t[0] == '*') {
        if (!method_is(r, "OPTIONS"))
            return fail(h, 400, "asterisk-form target with a method other than OPTIONS");
        r->path = t;
        r->path_len = 1;
        return 0;
    }
    if (t[0] == '/') {
        split_path(r, t, n);
        return 0;
    }

    /* Absolute-form: scheme "://" authority [path-abempty] ["?" query] ["#" fragment]. */
    for (i = 0; i < n && t[i] != ':'; i++)
        ;
    if (!(eq_nocase(t, i, "http") || eq_nocase(t, i, "https")) || n - i < 3 ||
        memcmp(t + i, "://", 3) != 0)
        return fail(h, 400, "request target is not origin-form or an http(s) absolute-form");
    i += 3;
    {
        size_t as = i;

        while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
            i++;
        /* Userinfo ('@') is refused here too (RFC 9110 §4.2.4). */
        if (!parse_authority(t + as, i - as, false, false, &r->host, &r->host_len))
            return fail(h, 400, "invalid authority in an absolute-form target");
    }
    *authority = true;
    split_path(r, t + i, n - i);
    if (r->path_len == 0)
        r->path = root_path, r->path_len = 1;
    return 0;
}

static bool has_token(const struct sl_header *hd, const char *tok)
{
    const char *p = hd->value, *end = hd->value + hd->value_len, *e;
    size_t n;

    while (sl_http_list_next(&p, end, &e, &n))
        if (eq_nocase(e, n, tok))
            return true;
    return false;
}

/* Codings a gateway may pass on (IANA HTTP Transfer Coding registry). */
static bool known_coding(const char *s, size_t n)
{
    return eq_nocase(s, n, "chunked") || eq_nocase(s, n, "gzip") || eq_nocase(s, n, "x-gzip") ||
           eq_nocase(s, n, "deflate") || eq_nocase(s, n, "compress") ||
           eq_nocase(s, n, "x-compress");
}

struct framing {
    const struct sl_header *cl;
    bool te;
    bool te_final_chunked; /* of the last coding seen so far */
    bool te_bad;           /* chunked not last, or chunked with parameters */
    bool te_unknown;
};

static void scan_te(const struct sl_header *hd, struct framing *f)
{
    const char *p = hd->value, *end = hd->value + hd->value_len, *e;
    size_t n;

    f->te = true;
    /* An empty member (",chunked") is legal list syntax that some servers read as a coding
     * they do not know: refuse it rather than risk a framing disagreement. */
    {
        bool seen = false;

        for (e = p; e < end; e++) {
            if (*e == ',') {
                f->te_bad |= !seen;
                seen = false;
            } else if (!is_ows((unsigned char)*e)) {
                seen = true;
            }
        }
        f->te_bad |= !seen;
    }
    while (sl_http_list_next(&p, end, &e, &n)) {
        const char *semi = memchr(e, ';', n);
        size_t name_len = semi ? (size_t)(semi - e) : n;

        while (name_len && is_ows((unsigned char)e[name_len - 1]))
            name_len--;
        if (f->te_final_chunked)
            f->te_bad = true; /* a coding after chunked */
        f->te_final_chunked = eq_nocase(e, name_len, "chunked");
        /* llhttp does not frame "chunked;x" as chunked: refuse rather than disagree. */
        if (f->te_final_chunked && semi)
            f->te_bad = true;
        if (!known_coding(e, name_len))
            f->te_unknown = true;
    }
}

/* Validates the header lines and collects what the head's meaning depends on. */
static int check_headers(struct sl_http_head *h, bool *conn_upgrade, bool *upgrade_hdr,
                         bool *ws, const struct sl_header **host_hdr)
{
    struct framing f = {0};
    size_t hosts = 0;

    *conn_upgrade = *upgrade_hdr = *ws = false;
    *host_hdr = NULL;
    for (size_t k = 0; k < h->req.n_headers; k++) {
        struct sl_header *hd = &h->headers[k];
        const char *v = hd->value;
        size_t vn = hd->value_len;

        if (hd->name_len == 0)
            return fail(h, 400, "empty header name");
        for (size_t i = 0; i < hd->name_len; i++)
            if (!is_tchar((unsigned char)hd->name[i]))
                return fail(h, 400, "invalid character in a header name");
        for (size_t i = 0; i < vn; i++) {
            unsigned char c = (unsigned char)v[i];

            if ((c < ' ' && c != '\t') || c == 0x7f)
                return fail(h, 400, "control character in a header value");
        }
        while (vn && is_ows((unsigned char)*v))
            v++, vn--;
        while (vn && is_ows((unsigned char)v[vn - 1]))
            vn--;
        hd->value = v;
        hd->value_len = vn;

        switch (hd->name_len) {
        case 4:
            if (eq_nocase(hd->name, 4, "host")) {
                hosts++;
                *host_hdr = hd;
            }
            break;
        case 7:
            if (eq_nocase(hd->name, 7, "upgrade")) {
                const char *p = v, *end = v + vn, *e;
                size_t n;

                while (sl_http_list_next(&p, end, &e, &n)) {
                    const char *slash = memchr(e, '/', n);

                    *upgrade_hdr = true;
                    if (eq_nocase(e, slash ? (size_t)(slash - e) : n, "websocket"))
                        *ws = true;
                }
            }
            break;
        case 10:
            if (eq_nocase(hd->name, 10, "connection") && has_token(hd, "upgrade"))
                *conn_upgrade = true;
            break;
        case 14:
            if (eq_nocase(hd->name, 14, "content-length")) {
                if (vn == 0)
                    return fail(h, 400, "empty Content-Length");
                for (size_t i = 0; i < vn; i++)
                    if (!is_digit((unsigned char)v[i]))
                        return fail(h, 400, "invalid Content-Length");
                if (f.cl && (f.cl->value_len != vn || memcmp(f.cl->value, v, vn) != 0))
                    return fail(h, 400, "Content-Length headers with different values");
                f.cl = hd;
            }
            break;
        case 17:
            if (eq_nocase(hd->name, 17, "transfer-encoding"))
                scan_te(hd, &f);
            break;
        default:
            break;
        }
    }

    if (hosts > 1)
        return fail(h, 400, "more than one Host header");
    if (hosts == 0 && h->http_minor == 1)
        return fail(h, 400, "HTTP/1.1 request without a Host header");
    if (f.te) {
        if (f.cl)
            return fail(h, 400, "both Content-Length and Transfer-Encoding");
        /* RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
        if (h->http_minor == 0)
            return fail(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
        /* RFC 9112 §6.3: chunked not final -> length unknown -> 400. */
        if (f.te_bad || !f.te_final_chunked)
            return fail(h, 400, "Transfer-Encoding does not end with chunked");
        if (f.te_unknown)
            return fail(h, 501, "unknown transfer coding");
        h->body = SL_BODY_CHUNKED;
    } else if (f.cl) {
        uint64_t n = 0;

        for (size_t i = 0; i < f.cl->value_len; i++) {
            if (n > (UINT64_MAX >> 4))
                return fail(h, 400, "Content-Length too large");
            n = n * 10 + (uint64_t)(f.cl->value[i] - '0');
        }
        h->body = n ? SL_BODY_LENGTH : SL_BODY_NONE;
        h->content_length = n;
    }
    return 0;
}

/* HOT: parse
 * h->req.source and h->req.tls are not touched: the caller sets them. On SL_ERROR only status
 * and error are meaningful; error may point into a thread-local buffer that the next call on
 * the same thread overwrites. A request with an absolute-form or authority-form target takes
 * its host from the target (RFC 9112 §3.2.2), while Host must still be present and valid. */
int sl_http_parse_head(const char *buf, size_t len, struct sl_http_head *h)
{
    struct sl_request *r = &h->req;
    struct parse_ctx c = {.h = h};
    const struct sl_header *host_hdr;
    bool conn_upgrade, upgrade_hdr, ws, authority;
    const char *head, *rl_end;
    size_t start, head_n, rl_len;
    unsigned major, minor;
    llhttp_t p;
    int rc;

    r->method = r->path = r->query = r->host = NULL;
    r->method_len = r->path_len = r->query_len = r->host_len = 0;
    r->headers = h->headers;
    r->n_headers = 0;
    h->target = NULL;
    h->target_len = 0;
    h->http_major = h->http_minor = 0;
    h->upgrade = h->websocket = h->keep_alive = false;
    h->head_len = 0;
    h->status = 0;
    h->error = NULL;
    h->body = SL_BODY_NONE;
    h->content_length = 0;

    rc = find_head(buf, len, &start, h);
    if (rc != SL_OK)
        return rc;
    head = buf + start;
    head_n = h->head_len - start;
    /* Every CR in the head is followed by LF, so the first CR ends the request line. */
    rl_end = memchr(head, '\r', head_n);
    rl_len = (size_t)(rl_end - head);

    if (line_version(head, rl_len, &major, &minor) && !(major == 1 && minor <= 1)) {
        snprintf(err_buf, sizeof(err_buf), "HTTP/%u.%u is not supported", major, minor);
        return fail(h, 505, err_buf);
    }

    llhttp_init(&p, HTTP_REQUEST, &settings);
    p.data = &c;
    rc = llhttp_execute(&p, head, head_n);
    if (rc == HPE_USER && c.status)
        return fail(h, c.status, c.error);
    if (rc != HPE_PAUSED && rc != HPE_OK)
        return fail(h, 400, llhttp_error(&p, head, rl_len, head_n));
    if (!c.complete || llhttp_get_error_pos(&p) != head + head_n)
        return fail(h, 400, "request head ended early");
    r->n_headers = c.n;
    h->http_major = llhttp_get_http_major(&p);
    h->http_minor = llhttp_get_http_minor(&p);
    if (h->http_major != 1 || h->http_minor > 1)
        return fail(h, 400, "request line without an HTTP/1.x version");
    /* Exactly: method SP request-target SP HTTP-version (no other whitespace). */
    if (!r->method || !h->target || r->method != head ||
        h->target != r->method + r->method_len + 1 || h->target[-1] != ' ' ||
        h->target + h->target_len + 9 != rl_end)
        return fail(h, 400, "malformed request line");

    /* RFC 9112 §3.2: no fragment in a request target; servers disagree on what follows '#'. */
    if (memchr(h->target, '#', h->target_len))
        return fail(h, 400, "request target with a #fragment");
    if (parse_target(h, &authority))
        return SL_ERROR;
    if (check_headers(h, &conn_upgrade, &upgrade_hdr, &ws, &host_hdr))
        return SL_ERROR;
    if (host_hdr) {
        const char *hh;
        size_t hl;

        if (!parse_authority(host_hdr->value, host_hdr->value_len, true, false, &hh, &hl))
            return fail(h, 400, "invalid Host header");
        if (!authority) {
            r->host = hh;
            r->host_len = hl;
        } else if (hl != r->host_len || strncasecmp(hh, r->host, hl)) {
            /* The rules see the target's authority (RFC 9112 §3.2.2); a target behind us that
             * read Host instead would see another virtual host. */
            return fail(h, 400, "Host header differs from the request target's authority");
        }
    }

    h->keep_alive = llhttp_should_keep_alive(&p);
    /* RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored. */
    h->upgrade = h->http_minor == 1 && conn_upgrade && upgrade_hdr;
    h->websocket = h->upgrade && ws;
    return SL_OK;
}
