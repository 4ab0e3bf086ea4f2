/* PCRE2 patterns compiled (and JIT-compiled when available) once at config load. */
#ifndef SLUICE_REGEX_H
#define SLUICE_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config-t.h" /* sl_regex */

/* Per-thread match state: match data, and a JIT stack sized for a whole request head. */
typedef struct sl_regex_md sl_regex_md;

/* Compiles <pat> (<len> bytes, UTF-8, Perl syntax). On failure returns NULL and writes
 * PCRE2's message into <err> and the offending byte offset into <*erroff>. */
sl_regex *sl_regex_compile(const char *pat, size_t len, bool caseless, char *err, size_t errlen,
                           size_t *erroff);
void sl_regex_free(sl_regex *re);
/* Match data for one thread; enough for a yes/no match. NULL on out-of-memory. */
sl_regex_md *sl_regex_md_new(void);
void sl_regex_md_free(sl_regex_md *md);
/* Unanchored search of <re> in <s>: 1 match, 0 no match, -1 a match error (a PCRE2 limit hit;
 * with the JIT stack sized for SL_HTTP_MAX_HEAD input this takes a pathological pattern). */
int sl_regex_search(const sl_regex *re, const char *s, size_t len, sl_regex_md *md);

#endif
