/* HTTP/1.1 request heads parsed with llhttp (strict mode) into a router view. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/common.h"
#include "sluice/router.h"

#define SL_HTTP_MAX_HEAD (64 * 1024) /* request line + headers; more is 431 */
#define SL_HTTP_MAX_HEADERS 100      /* more is 431 */

/* How a message's body is delimited (RFC 9112 §6.3). */
enum sl_body_kind {
    SL_BODY_NONE = 0,
    SL_BODY_LENGTH,  /* Content-Length bytes */
    SL_BODY_CHUNKED, /* chunked, up to and including the last chunk's trailer section */
    SL_BODY_CLOSE,   /* responses only: until the target closes */
};

struct sl_http_head {
    struct sl_request req;                        /* spans into the parsed buffer */
    struct sl_header headers[SL_HTTP_MAX_HEADERS];
    const char *target;                           /* request-target as sent */
    size_t target_len;
    unsigned http_major, http_minor;
    bool upgrade;     /* Connection: upgrade with an Upgrade header */
    bool websocket;   /* ... and Upgrade lists websocket */
    bool keep_alive;
    size_t head_len;  /* bytes up to and including the blank line */
    enum sl_body_kind body;
    uint64_t content_length; /* SL_BODY_LENGTH */
    int status;       /* on SL_ERROR: the status to answer (400, 431, 501, 505) */
    const char *error; /* on SL_ERROR: why, one line */
};

/* Whether <s> (<n> bytes, n > 0) is an RFC 9110 token: a valid header field name or method. */
bool sl_http_is_token(const char *s, size_t n);

/* The next member of an RFC 9110 comma-separated list in [*p, end), with optional whitespace
 * trimmed; empty members are skipped. Returns false at the end. Inline: the router walks
 * list headers with it for every request. */
static inline bool sl_http_list_next(const char **p, const char *end, const char **e,
                                     size_t *elen)
{
    const char *s = *p, *q;

    while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
        s++;
    if (s == end) {
        *p = s;
        return false;
    }
    for (q = s; q < end && *q != ','; q++)
        ;
    *p = q;
    while (q > s && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    *e = s;
    *elen = (size_t)(q - s);
    return true;
}

/* Parses the head of the request at the start of <buf>. Returns SL_OK (head complete, spans
 * in <h> point into <buf>), SL_AGAIN (no complete head yet and under the size limit), or
 * SL_ERROR (h->status and h->error say why). */
int sl_http_parse_head(const char *buf, size_t len, struct sl_http_head *h);

/* A response head from a target. */
struct sl_http_response {
    int status;
    unsigned http_minor;
    size_t head_len;          /* bytes up to and including the blank line */
    struct sl_header headers[SL_HTTP_MAX_HEADERS];
    size_t n_headers;
    enum sl_body_kind body;
    uint64_t content_length;  /* SL_BODY_LENGTH */
    bool keep_alive;          /* the target keeps the connection open after it */
    bool upgrade_websocket;   /* Upgrade: websocket and Connection: upgrade */
    const char *error;        /* on SL_ERROR: why, one line */
};

/* Parses the response head at the start of <buf> sent for a request whose method was HEAD
 * when <head_request>. Returns SL_OK (spans in <r> point into <buf>), SL_AGAIN (incomplete, under
 * SL_HTTP_MAX_HEAD) or SL_ERROR (r->error says why: the response must not reach the client). */
int sl_http_parse_response(const char *buf, size_t len, bool head_request,
                           struct sl_http_response *r);

/* Where a message body ends, scanned as it streams by without copying or decoding it. */
struct sl_http_body {
    enum sl_body_kind kind;
    uint64_t left;   /* LENGTH: bytes left; CHUNKED: data bytes left in the chunk */
    unsigned state;  /* CHUNKED: position in the chunk syntax */
    unsigned count;  /* CHUNKED: size digits or line bytes so far (bounded) */
};

/* Starts tracking a body of <kind> (and <length> for SL_BODY_LENGTH). */
void sl_http_body_init(struct sl_http_body *b, enum sl_body_kind kind, uint64_t length);
/* Scans the next <len> bytes of the message. Returns SL_OK when the body ends within them
 * (*used = the bytes that belong to this message; the rest is the next message), SL_AGAIN when
 * all <len> bytes belong to it and more are to come (*used = len), SL_ERROR on invalid chunked
 * syntax. SL_BODY_NONE ends at once; SL_BODY_CLOSE never ends. */
int sl_http_body_scan(struct sl_http_body *b, const char *buf, size_t len, size_t *used);

#endif
