/* Diagnostics: errors and warnings collected in the order found, printed one per line as
 * "origin:line:col: path: [warning: ]msg". The location and path parts are left out when
 * unknown (line 0, empty path). Out of memory aborts: diagnostics are only made while
 * loading a config. */
#include "sluice/diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fprintf(stderr, "sluice: out of memory (diagnostics)\n");
    abort();
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s != NULL ? s : "");

    if (p == NULL)
        oom();
    return p;
}

void sl_diags_init(struct sl_diags *d, const char *origin)
{
    memset(d, 0, sizeof(*d));
    d->origin = xstrdup(origin);
}

void sl_diags_deinit(struct sl_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].path);
        free(d->v[i].msg);
    }
    free(d->v);
    free(d->origin);
    memset(d, 0, sizeof(*d));
}

void sl_diag_vadd(struct sl_diags *d, enum sl_diag_level level, unsigned line, unsigned col,
                  const char *path, const char *fmt, va_list ap)
{
    struct sl_diag *x;
    char *msg;

    if (d->n == d->cap) {
        size_t cap = d->cap != 0 ? d->cap * 2 : 16;
        struct sl_diag *v = realloc(d->v, cap * sizeof(*v));

        if (v == NULL)
            oom();
        d->v = v;
        d->cap = cap;
    }
    if (vasprintf(&msg, fmt, ap) == -1)
        oom();
    /* One diagnostic is one line, whatever the caller formatted. */
    for (char *c = msg; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    x = &d->v[d->n++];
    x->level = level;
    x->line = line;
    x->col = col;
    x->path = xstrdup(path);
    x->msg = msg;
    if (level == SL_DIAG_ERROR)
        d->n_errors++;
    else
        d->n_warnings++;
}

void sl_diag_add(struct sl_diags *d, enum sl_diag_level level, unsigned line, unsigned col,
                 const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sl_diag_vadd(d, level, line, col, path, fmt, ap);
    va_end(ap);
}

/* Writes the location, "line:col" or "line" (with a leading ':' after an origin), or "". */
static void format_loc(const struct sl_diags *d, const struct sl_diag *x, char *loc, size_t len)
{
    const char *sep = d->origin != NULL && d->origin[0] != '\0' ? ":" : "";

    if (x->line == 0)
        loc[0] = '\0';
    else if (x->col == 0)
        snprintf(loc, len, "%s%u", sep, x->line);
    else
        snprintf(loc, len, "%s%u:%u", sep, x->line, x->col);
}

#define DIAG_FMT "%s%s%s%s%s%s%s"
#define DIAG_ARGS(origin, loc, x)                                                                  \
    origin, loc, (origin)[0] != '\0' || (loc)[0] != '\0' ? ": " : "", (x)->path,                   \
        (x)->path[0] != '\0' ? ": " : "", (x)->level == SL_DIAG_WARNING ? "warning: " : "",        \
        (x)->msg

void sl_diag_format(const struct sl_diags *d, const struct sl_diag *x, char *buf, size_t len)
{
    const char *origin = d->origin != NULL ? d->origin : "";
    char loc[32];

    if (len == 0)
        return;
    format_loc(d, x, loc, sizeof(loc));
    snprintf(buf, len, DIAG_FMT, DIAG_ARGS(origin, loc, x));
}

void sl_diags_sort(struct sl_diags *d)
{
    /* Insertion sort: stable, so diagnostics at one place keep the order they were found in;
     * those without a position (file-level) come first. n is small. */
    for (size_t i = 1; i < d->n; i++) {
        struct sl_diag x = d->v[i];
        size_t j = i;

        while (j > 0 && (d->v[j - 1].line > x.line ||
                         (d->v[j - 1].line == x.line && d->v[j - 1].col > x.col))) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = x;
    }
}

void sl_diags_print(const struct sl_diags *d, FILE *out)
{
    const char *origin = d->origin != NULL ? d->origin : "";
    char loc[32];

    for (size_t i = 0; i < d->n; i++) {
        const struct sl_diag *x = &d->v[i];

        format_loc(d, x, loc, sizeof(loc));
        fprintf(out, DIAG_FMT "\n", DIAG_ARGS(origin, loc, x));
    }
}
