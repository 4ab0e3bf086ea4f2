/* HTTP/1.1 request heads parsed with llhttp (strict mode) into a router view. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/common.h"
#include "sluice/router.h"

#define SL_HTTP_MAX_HEAD (64 * 1024) /* request line + headers; more is 431 */
#define SL_HTTP_MAX_HEADERS 100      /* more is 431 */

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

#endif
