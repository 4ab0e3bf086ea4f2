/* Shared by the config and lint tests: test JSON written with ' for " and ` marking the
 * places (line:col) where a diagnostic must point. Include after <cmocka.h>. */
#ifndef SLUICE_TESTKIT_H
#define SLUICE_TESTKIT_H

#include <stdlib.h>
#include <string.h>

#define TK_MAX_MARKS 8

struct marks {
    unsigned line[TK_MAX_MARKS], col[TK_MAX_MARKS]; /* of each ` marker in text order */
    size_t n;
};

/* The JSON for a test text, in an exactly-sized heap buffer (ASan sees any read past it). */
static inline char *prep(const char *src, size_t *len, struct marks *m)
{
    size_t n = strlen(src), j = 0;
    char *out = malloc(n + 1);
    unsigned l = 1, c = 1;

    assert_non_null(out);
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];

        if (ch == '`') {
            assert_true(m->n < TK_MAX_MARKS);
            m->line[m->n] = l;
            m->col[m->n++] = c;
            continue;
        }
        out[j++] = ch == '\'' ? '"' : (char)ch;
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xC0) != 0x80) {
            c++; /* columns count code points */
        }
    }
    *len = j;
    out = realloc(out, j ? j : 1);
    assert_non_null(out);
    return out;
}

#endif
