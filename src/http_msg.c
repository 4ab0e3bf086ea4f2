/* Response heads from targets and body framing for both directions. A response is parsed
 * before a byte of it reaches the client, and every body is scanned as it streams, so sluice
 * always knows where one message ends and the next begins on both connections: keep-alive with
 * the client stays correct whatever the target sends. */
#include "sluice/http.h"

#include <string.h>
#include <strings.h>

#include <llhttp.h>

struct resp_ctx {
    struct sl_http_response *r;
    bool in_field, in_value;
    bool complete;
    bool overflow;
};

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    struct resp_ctx *c = p->data;
    struct sl_header *hd;

    if (c->r->n_headers >= SL_HTTP_MAX_HEADERS) {
        c->overflow = true;
        return -1;
    }
    hd = &c->r->headers[c->r->n_headers];
    if (!c->in_field) {
        c->in_field = true;
        hd->name = at;
        hd->name_len = 0;
        hd->value = NULL;
        hd->value_len = 0;
    }
    /* The head is one buffer, so pieces of one field are contiguous. */
    hd->name_len = (size_t)(at + n - hd->name);
    return 0;
}

static int on_field_complete(llhttp_t *p)
{
    ((struct resp_ctx *)p->data)->in_field = false;
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct resp_ctx *c = p->data;
    struct sl_header *hd = &c->r->headers[c->r->n_headers];

    if (!c->in_value) {
        c->in_value = true;
        hd->value = at;
    }
    hd->value_len = (size_t)(at + n - hd->value);
    return 0;
}

static int on_value_complete(llhttp_t *p)
{
    struct resp_ctx *c = p->data;
    struct sl_header *hd = &c->r->headers[c->r->n_headers];

    c->in_value = false;
    if (!hd->value)
        hd->value = "";
    while (hd->value_len && (hd->value[hd->value_len - 1] == ' ' ||
                             hd->value[hd->value_len - 1] == '\t'))
        hd->value_len--;
    c->r->n_headers++;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    ((struct resp_ctx *)p->data)->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_header_field = on_field,
    .on_header_field_complete = on_field_complete,
    .on_header_value = on_value,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
};

static bool name_is(const struct sl_header *h, const char *name)
{
    size_t n = strlen(name);

    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool list_has(const struct sl_header *h, const char *token)
{
    const char *p = h->value, *end = h->value + h->value_len, *e;
    size_t n, tn = strlen(token);

    while (sl_http_list_next(&p, end, &e, &n))
        if (n == tn && strncasecmp(e, token, n) == 0)
            return true;
    return false;
}

/* The last member of a list header value ("gzip, chunked" -> "chunked"). */
static bool list_last_is(const struct sl_header *h, const char *token)
{
    const char *p = h->value, *end = h->value + h->value_len, *e, *last = NULL;
    size_t n, ln = 0, tn = strlen(token);

    while (sl_http_list_next(&p, end, &e, &n)) {
        last = e;
        ln = n;
    }
    return last && ln == tn && strncasecmp(last, token, ln) == 0;
}

static int resp_fail(struct sl_http_response *r, const char *why)
{
    r->error = why;
    return SL_ERROR;
}

int sl_http_parse_response(const char *buf, size_t len, bool head_request,
                           struct sl_http_response *r)
{
    size_t lim = len < SL_HTTP_MAX_HEAD ? len : SL_HTTP_MAX_HEAD, i;
    struct resp_ctx c = {.r = r};
    const struct sl_header *cl = NULL;
    bool te = false, te_chunked = false, conn_upgrade = false, up_ws = false;
    llhttp_t p;
    int rc;

    memset(r, 0, offsetof(struct sl_http_response, headers));
    r->n_headers = 0;
    r->body = SL_BODY_NONE;
    r->content_length = 0;
    r->keep_alive = r->upgrade_websocket = false;
    r->error = NULL;
    for (i = 3; i < lim; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            break;
    if (i >= lim) {
        if (len > SL_HTTP_MAX_HEAD)
            return resp_fail(r, "response header section larger than 64 KiB");
        return SL_AGAIN;
    }
    r->head_len = i + 1;
    if (memchr(buf, '\0', r->head_len))
        return resp_fail(r, "NUL byte in the response head");

    llhttp_init(&p, HTTP_RESPONSE, &resp_settings);
    p.data = &c;
    rc = llhttp_execute(&p, buf, r->head_len);
    if (c.overflow)
        return resp_fail(r, "more than 100 response headers");
    if ((rc != HPE_PAUSED && rc != HPE_OK) || !c.complete)
        return resp_fail(r, "malformed response head");
    if (llhttp_get_http_major(&p) != 1)
        return resp_fail(r, "response is not HTTP/1.x");
    r->status = llhttp_get_status_code(&p);
    r->http_minor = llhttp_get_http_minor(&p);
    r->keep_alive = llhttp_should_keep_alive(&p);

    for (i = 0; i < r->n_headers; i++) {
        const struct sl_header *h = &r->headers[i];

        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char ch = (unsigned char)h->value[k];

            if ((ch < ' ' && ch != '\t') || ch == 0x7f)
                return resp_fail(r, "control character in a response header");
        }
        if (name_is(h, "content-length")) {
            if (cl && (cl->value_len != h->value_len ||
                       memcmp(cl->value, h->value, h->value_len) != 0))
                return resp_fail(r, "response with different Content-Length values");
            cl = h;
        } else if (name_is(h, "transfer-encoding")) {
            te = true;
            te_chunked = list_last_is(h, "chunked");
        } else if (name_is(h, "connection")) {
            if (list_has(h, "upgrade"))
                conn_upgrade = true;
        } else if (name_is(h, "upgrade")) {
            if (list_has(h, "websocket"))
                up_ws = true;
        }
    }
    r->upgrade_websocket = conn_upgrade && up_ws;

    /* RFC 9112 §6.3, in its order. */
    if (head_request || (r->status >= 100 && r->status < 200) || r->status == 204 ||
        r->status == 304)
        return SL_OK;
    if (te && cl)
        return resp_fail(r, "response with both Content-Length and Transfer-Encoding");
    if (te) {
        r->body = te_chunked ? SL_BODY_CHUNKED : SL_BODY_CLOSE;
        return SL_OK;
    }
    if (cl) {
        uint64_t n = 0;

        if (cl->value_len == 0)
            return resp_fail(r, "empty Content-Length in the response");
        for (i = 0; i < cl->value_len; i++) {
            unsigned char d = (unsigned char)cl->value[i];

            if (d < '0' || d > '9' || n > (UINT64_MAX >> 4))
                return resp_fail(r, "invalid Content-Length in the response");
            n = n * 10 + (d - '0');
        }
        r->body = n ? SL_BODY_LENGTH : SL_BODY_NONE;
        r->content_length = n;
        return SL_OK;
    }
    r->body = SL_BODY_CLOSE;
    r->keep_alive = false;
    return SL_OK;
}

/* Chunked syntax (RFC 9112 §7.1), one state per position. */
enum {
    CH_SIZE = 0, /* hex digits of chunk-size */
    CH_EXT,      /* after ';' (or OWS), up to CR */
    CH_SIZE_LF,  /* CR seen after the size line */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,  /* at the start of a trailer line (or the final CRLF) */
    CH_TRAILER_LINE,
    CH_TRAILER_LF,
    CH_END_LF,   /* CR of the final empty line seen */
};

#define CH_MAX_LINE 4096 /* chunk extensions and trailer lines: longer is refused */

void sl_http_body_init(struct sl_http_body *b, enum sl_body_kind kind, uint64_t length)
{
    b->kind = kind;
    b->left = kind == SL_BODY_LENGTH ? length : 0;
    b->state = CH_SIZE;
    b->count = 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int scan_chunked(struct sl_http_body *b, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        int v;

        switch (b->state) {
        case CH_SIZE:
            v = hexval(c);
            if (v >= 0) {
                if (b->count >= 15)
                    return SL_ERROR; /* chunk size beyond 2^60 */
                b->left = (b->left << 4) | (uint64_t)v;
                b->count++;
            } else if (b->count && (c == ';' || c == ' ' || c == '\t')) {
                b->state = CH_EXT;
                b->count = 0;
            } else if (b->count && c == '\r') {
                b->state = CH_SIZE_LF;
            } else {
                return SL_ERROR;
            }
            i++;
            break;
        case CH_EXT:
            if (c == '\r')
                b->state = CH_SIZE_LF;
            else if (c == '\n' || c == '\0' || ++b->count > CH_MAX_LINE)
                return SL_ERROR;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return SL_ERROR;
            i++;
            b->count = 0;
            b->state = b->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t n = len - i;

            if (n > b->left)
                n = (size_t)b->left;
            b->left -= n;
            i += n;
            if (b->left == 0)
                b->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r')
                return SL_ERROR;
            b->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return SL_ERROR;
            b->state = CH_SIZE;
            b->count = 0;
            i++;
            break;
        case CH_TRAILER:
            if (c == '\r') {
                b->state = CH_END_LF;
            } else if (c == '\n' || c == ' ' || c == '\t' || c == '\0') {
                return SL_ERROR;
            } else {
                b->state = CH_TRAILER_LINE;
                b->count = 1;
            }
            i++;
            break;
        case CH_TRAILER_LINE:
            if (c == '\r')
                b->state = CH_TRAILER_LF;
            else if (c == '\n' || c == '\0' || ++b->count > CH_MAX_LINE)
                return SL_ERROR;
            i++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return SL_ERROR;
            b->state = CH_TRAILER;
            i++;
            break;
        case CH_END_LF:
            if (c != '\n')
                return SL_ERROR;
            *used = i + 1;
            b->kind = SL_BODY_NONE;
            return SL_OK;
        }
    }
    *used = len;
    return SL_AGAIN;
}

int sl_http_body_scan(struct sl_http_body *b, const char *buf, size_t len, size_t *used)
{
    switch (b->kind) {
    case SL_BODY_NONE:
        *used = 0;
        return SL_OK;
    case SL_BODY_LENGTH:
        if (len >= b->left) {
            *used = (size_t)b->left;
            b->left = 0;
            b->kind = SL_BODY_NONE;
            return SL_OK;
        }
        b->left -= len;
        *used = len;
        return SL_AGAIN;
    case SL_BODY_CHUNKED:
        return scan_chunked(b, buf, len, used);
    case SL_BODY_CLOSE:
        break;
    }
    *used = len;
    return SL_AGAIN;
}
