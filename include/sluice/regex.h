/* PCRE2 patterns compiled (and JIT-compiled when available) once at config load. */
#ifndef SLUICE_REGEX_H
#define SLUICE_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config-t.h" /* sl_regex */

typedef struct pcre2_real_match_data_8 sl_regex_md; /* pcre2_match_data (8-bit) */

/* Compiles <pat> (<len> bytes, UTF-8, Perl syntax). On failure returns NULL and writes
 * PCRE2's message into <err> and the offending byte offset into <*erroff>. */
sl_regex *sl_regex_compile(const char *pat, size_t len, bool caseless, char *err, size_t errlen,
                           size_t *erroff);
void sl_regex_free(sl_regex *re);
/* Match data for one thread; enough for a yes/no match. NULL on out-of-memory. */
sl_regex_md *sl_regex_md_new(void);
void sl_regex_md_free(sl_regex_md *md);
/* Unanchored search of <re> in <s>; false on no match or a match error (e.g. limits hit). */
bool sl_regex_search(const sl_regex *re, const char *s, size_t len, sl_regex_md *md);

#endif
