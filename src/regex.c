/* PCRE2 (8-bit) wrappers: patterns are compiled and JIT-compiled once at config load; a
 * search reuses the caller's per-thread match data and never allocates. Subjects are peer
 * input, so patterns are compiled with PCRE2_MATCH_INVALID_UTF: invalid UTF-8 simply does not
 * match, which also makes the unchecked JIT fast path safe. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdlib.h>
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

/* PCRE2's default JIT stack (32 KiB, on the machine stack) runs out on a repeated group over a
 * long header, and a failed match must not read as "no match" where a deny rule depends on it;
 * a search that hits that limit is retried on this stack, 4 MiB reserved once per thread. */
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (4 * 1024 * 1024)

struct sl_regex_md {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
};

sl_regex_md *sl_regex_md_new(void)
{
    sl_regex_md *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    /* A yes/no answer needs only the overall match pair. */
    m->md = pcre2_match_data_create(1, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    m->stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
    if (!m->md || !m->mctx) {
        sl_regex_md_free(m);
        return NULL;
    }
    if (m->stack) /* without JIT support the interpreter uses the heap instead */
        pcre2_jit_stack_assign(m->mctx, NULL, m->stack);
    return m;
}

void sl_regex_md_free(sl_regex_md *m)
{
    if (!m)
        return;
    pcre2_jit_stack_free(m->stack);
    pcre2_match_context_free(m->mctx);
    pcre2_match_data_free(m->md);
    free(m);
}

int sl_regex_search(const sl_regex *re, const char *s, size_t len, sl_regex_md *m)
{
    int rc;

    if (SL_UNLIKELY(!re || !m))
        return -1;
    if (!s) {
        s = "";
        len = 0;
    }
    /* The JIT fast path on PCRE2's default stack first: it is ~10% faster than the big heap
     * stack, which only a long subject needs, so that is a retry. A pattern without JIT code
     * (PCRE2 built without JIT, or its compilation failed) goes to the interpreter. */
    rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, 0, 0, m->md, NULL);
    if (SL_UNLIKELY(rc == PCRE2_ERROR_JIT_STACKLIMIT))
        rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, 0, 0, m->md, m->mctx);
    else if (SL_UNLIKELY(rc == PCRE2_ERROR_JIT_BADOPTION))
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, m->md, m->mctx);
    if (rc >= 0)
        return 1;
    return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}
