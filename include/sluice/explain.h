/* `sluice explain`: shows how the router treats one raw HTTP request. */
#ifndef SLUICE_EXPLAIN_H
#define SLUICE_EXPLAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"

struct sl_explain_opts {
    bool have_listener;    /* else: the first forwarding rule's listener */
    struct sl_addr listener;
    uint16_t port;
    bool have_source;      /* else: 127.0.0.1 */
    struct sl_addr source;
};

/* Parses the request in <buf> (LF-only line endings are converted, with a note) and prints the
 * forwarding rule, every http rule in evaluation order with each condition's result, and the
 * action. Returns 0, or 1 when the request does not parse or no forwarding rule listens there
 * (the reason is printed). */
int sl_explain(const struct sl_config *c, const char *buf, size_t len,
               const struct sl_explain_opts *o, FILE *out);

#endif
