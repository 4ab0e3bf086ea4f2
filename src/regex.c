/* PCRE2 (8-bit) wrappers: patterns are compiled and JIT-compiled once at config load; a
 * search reuses the caller's per-thread match data and never allocates. Subjects are peer
 * input, so patterns are compiled with PCRE2_MATCH_INVALID_UTF: invalid UTF-8 simply does not
 * match, which also makes the unchecked JIT fast path safe. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string.h>

#include "sluice/common.h"
#include "sluice/regex.h"

sl_regex *sl_regex_compile(const char *pat, size_t len, bool caseless, char *err, size_t errlen,
                           size_t *erroff)
{
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    int errcode = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *re;

    if (caseless)
        opts |= PCRE2_CASELESS;
    re = pcre2_compile((PCRE2_SPTR)(pat ? pat : ""), len, opts, &errcode, &off, NULL);
    if (!re) {
        if (err && errlen) {
            if (pcre2_get_error_message(errcode, (PCRE2_UCHAR *)err, errlen) < 0 && errlen > 1)
                snprintf(err, errlen, "PCRE2 error %d", errcode);
        }
        if (erroff)
            *erroff = off;
        return NULL;
    }
    /* Without JIT support (or on JIT failure) the interpreter still matches correctly. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

void sl_regex_free(sl_regex *re)
{
    pcre2_code_free(re);
}

sl_regex_md *sl_regex_md_new(void)
{
    /* A yes/no answer needs only the overall match pair. */
    return pcre2_match_data_create(1, NULL);
}

void sl_regex_md_free(sl_regex_md *md)
{
    pcre2_match_data_free(md);
}

bool sl_regex_search(const sl_regex *re, const char *s, size_t len, sl_regex_md *md)
{
    size_t jit_size = 0;
    int rc;

    if (SL_UNLIKELY(!re || !md))
        return false;
    if (!s) {
        s = "";
        len = 0;
    }
    if (pcre2_pattern_info(re, PCRE2_INFO_JITSIZE, &jit_size) == 0 && jit_size > 0)
        rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    else
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    return rc >= 0;
}
