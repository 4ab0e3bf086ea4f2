/* Diagnostics: config errors and lint warnings, each with file:line:col and a JSON path.
 * Collected rather than printed at once so that a run reports all of them. */
#ifndef SLUICE_DIAG_H
#define SLUICE_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "sluice/common.h"

enum sl_diag_level {
    SL_DIAG_ERROR = 0,
    SL_DIAG_WARNING,
};

struct sl_diag {
    enum sl_diag_level level;
    unsigned line, col; /* 1-based; 0 when the source has no positions (API sync) */
    char *path;         /* JSON path, e.g. forwardingRules[0].properties.listenerPort; may be "" */
    char *msg;
};

struct sl_diags {
    char *origin; /* file name, or a description such as "IONOS API" */
    struct sl_diag *v;
    size_t n, cap;
    size_t n_errors, n_warnings;
};

void sl_diags_init(struct sl_diags *d, const char *origin);
void sl_diags_deinit(struct sl_diags *d);
void sl_diag_add(struct sl_diags *d, enum sl_diag_level level, unsigned line, unsigned col,
                 const char *path, const char *fmt, ...) SL_PRINTF(6, 7);
void sl_diag_vadd(struct sl_diags *d, enum sl_diag_level level, unsigned line, unsigned col,
                  const char *path, const char *fmt, va_list ap);
/* Orders the diagnostics by position (stable; those without one first). */
void sl_diags_sort(struct sl_diags *d);
/* Prints "origin:line:col: path: [warning: ]msg" lines, errors and warnings in the order added. */
void sl_diags_print(const struct sl_diags *d, FILE *out);
/* Formats one diagnostic into <buf> (same text as a printed line, no newline). */
void sl_diag_format(const struct sl_diags *d, const struct sl_diag *x, char *buf, size_t len);

#endif
