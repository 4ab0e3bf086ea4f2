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

/* Parses the head of the request at the start of <buf>. Returns SL_OK (head complete, spans
 * in <h> point into <buf>), SL_AGAIN (no complete head yet and under the size limit), or
 * SL_ERROR (h->status and h->error say why). */
int sl_http_parse_head(const char *buf, size_t len, struct sl_http_head *h);

#endif
