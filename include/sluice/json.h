/* JSON reader for config files: builds a jansson tree and remembers where every value stood
 * (line:col by JSON path), so config errors can name file:line:col. Its syntax errors carry
 * hints for the mistakes the IONOS docs invite: typographic quotes and unquoted IPs. */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "sluice/diag.h"

/* JSON path of a value: keys joined with '.', array indices as [n], keys that are not plain
 * identifiers as ["key"]. The root is "". Example: forwardingRules[0].properties.httpRules[1]. */
#define SL_JPATH_MAX 512

struct sl_jpath {
    char buf[SL_JPATH_MAX];
    size_t len;
};

void sl_jpath_init(struct sl_jpath *p);
/* Push returns the previous length, to be given back to sl_jpath_pop. */
size_t sl_jpath_push_key(struct sl_jpath *p, const char *key);
size_t sl_jpath_push_index(struct sl_jpath *p, size_t index);
void sl_jpath_pop(struct sl_jpath *p, size_t old_len);

/* Where each value of a parsed document starts, keyed by JSON path. */
struct sl_jpos_entry;

struct sl_jpos {
    struct sl_jpos_entry *v; /* open-addressing hash table */
    size_t cap, n;
};

void sl_jpos_init(struct sl_jpos *m);
void sl_jpos_deinit(struct sl_jpos *m);
void sl_jpos_put(struct sl_jpos *m, const char *path, unsigned line, unsigned col);
/* false (and *line = *col = 0) when the path is unknown or <m> is NULL. */
bool sl_jpos_get(const struct sl_jpos *m, const char *path, unsigned *line, unsigned *col);

/* Parses <len> bytes of <buf> (need not be NUL-terminated).
 * On success returns the root (caller owns one reference) and fills <pos>.
 * On a syntax error returns NULL and adds every error it can find to <d> (errors at level
 * SL_DIAG_ERROR, with line:col and the path of the value being read). It recovers from
 * typographic quotes (reads them as '"') and from an unquoted IP address (reads it as a
 * string) so that one run reports all of them; the result is still NULL then.
 * Duplicate object keys are errors. Strings must be valid UTF-8 without NUL bytes.
 * Nesting deeper than 64 levels is an error (no recursion blow-up on hostile input). */
json_t *sl_json_parse(const char *buf, size_t len, struct sl_jpos *pos, struct sl_diags *d);

#endif
