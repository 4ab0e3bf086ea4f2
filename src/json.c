/* JSON reader for config files. It builds a jansson tree, records where every value starts
 * (line:col by JSON path) and explains syntax errors in terms of the mistakes people make when
 * they copy the IONOS docs: typographic quotes, unquoted IP addresses and duplicate keys are
 * reported and read on, so one run lists all of them; any other error stops it. The reader is an
 * explicit state machine with a fixed stack of MAX_DEPTH frames, so hostile input cannot make
 * it recurse, and it never reads past <len> (the buffer is not NUL-terminated). */
#include "sluice/json.h"

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64
#define MAX_TYPO_REPORTS 10
#define SNIP_MAX 40 /* bytes of input quoted in a message before it is cut with "..." */

#if JSON_INTEGER_IS_LONG_LONG
#define JSON_INT_MIN LLONG_MIN
#else
#define JSON_INT_MIN LONG_MIN
#endif

#define VALUE_KINDS "a value is a \"string\", a number, true, false, null, an object or an array"

/*
 * JSON paths
 */

void sl_jpath_init(struct sl_jpath *p)
{
    p->len = 0;
    p->buf[0] = '\0';
}

static bool key_is_plain(const char *k)
{
    if (!((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_'))
        return false;
    for (k++; *k != '\0'; k++) {
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return false;
    }
    return true;
}

/* Appends <n> bytes if they fit with room left for the "..." marker; false if not. */
static bool jpath_append(struct sl_jpath *p, const char *s, size_t n)
{
    if (p->len + n + 4 >= SL_JPATH_MAX)
        return false;
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
    return true;
}

/* A path too long for the buffer ends in "...", which no real component can produce. */
static void jpath_truncate(struct sl_jpath *p, size_t old_len)
{
    p->len = old_len;
    if (p->len < 3 || memcmp(p->buf + p->len - 3, "...", 3) != 0) {
        memcpy(p->buf + p->len, "...", 3);
        p->len += 3;
    }
    p->buf[p->len] = '\0';
}

size_t sl_jpath_push_key(struct sl_jpath *p, const char *key)
{
    size_t old = p->len;
    bool ok;

    if (key_is_plain(key)) {
        ok = (old == 0 || jpath_append(p, ".", 1)) && jpath_append(p, key, strlen(key));
    } else {
        ok = jpath_append(p, "[\"", 2);
        for (const char *k = key; ok && *k != '\0'; k++) {
            unsigned char c = (unsigned char)*k;
            char esc[8];

            if (c == '"' || c == '\\') {
                esc[0] = '\\';
                esc[1] = (char)c;
                ok = jpath_append(p, esc, 2);
            } else if (c < 0x20 || c == 0x7f) {
                /* keeps a diagnostic on one line */
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                ok = jpath_append(p, esc, 6);
            } else {
                ok = jpath_append(p, (const char *)k, 1);
            }
        }
        ok = ok && jpath_append(p, "\"]", 2);
    }
    if (!ok)
        jpath_truncate(p, old);
    return old;
}

size_t sl_jpath_push_index(struct sl_jpath *p, size_t index)
{
    size_t old = p->len;
    char s[32];
    int n = snprintf(s, sizeof(s), "[%zu]", index);

    if (!jpath_append(p, s, (size_t)n))
        jpath_truncate(p, old);
    return old;
}

void sl_jpath_pop(struct sl_jpath *p, size_t old_len)
{
    if (old_len < p->len) {
        p->len = old_len;
        p->buf[old_len] = '\0';
    }
}

/*
 * Value positions: open addressing with linear probing, at most 3/4 full.
 */

struct sl_jpos_entry {
    char *path; /* NULL: free slot */
    uint64_t hash;
    unsigned line, col;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void jpos_oom(void)
{
    fprintf(stderr, "sluice: out of memory (JSON positions)\n");
    abort();
}

void sl_jpos_init(struct sl_jpos *m)
{
    m->v = NULL;
    m->cap = 0;
    m->n = 0;
}

void sl_jpos_deinit(struct sl_jpos *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].path);
    free(m->v);
    sl_jpos_init(m);
}

static void jpos_grow(struct sl_jpos *m)
{
    size_t cap = m->cap != 0 ? m->cap * 2 : 64;
    struct sl_jpos_entry *v = calloc(cap, sizeof(*v));

    if (v == NULL)
        jpos_oom();
    for (size_t i = 0; i < m->cap; i++) {
        size_t j;

        if (m->v[i].path == NULL)
            continue;
        for (j = m->v[i].hash & (cap - 1); v[j].path != NULL; j = (j + 1) & (cap - 1))
            ;
        v[j] = m->v[i];
    }
    free(m->v);
    m->v = v;
    m->cap = cap;
}

static struct sl_jpos_entry *jpos_find(const struct sl_jpos *m, const char *path, uint64_t h)
{
    size_t i;

    for (i = h & (m->cap - 1); m->v[i].path != NULL; i = (i + 1) & (m->cap - 1)) {
        if (m->v[i].hash == h && strcmp(m->v[i].path, path) == 0)
            break;
    }
    return &m->v[i];
}

void sl_jpos_put(struct sl_jpos *m, const char *path, unsigned line, unsigned col)
{
    struct sl_jpos_entry *e;
    uint64_t h;

    if (m == NULL || path == NULL)
        return;
    if ((m->n + 1) * 4 > m->cap * 3)
        jpos_grow(m);
    h = hash_str(path);
    e = jpos_find(m, path, h);
    if (e->path == NULL) {
        e->path = strdup(path);
        if (e->path == NULL)
            jpos_oom();
        e->hash = h;
        m->n++;
    }
    e->line = line;
    e->col = col;
}

bool sl_jpos_get(const struct sl_jpos *m, const char *path, unsigned *line, unsigned *col)
{
    const struct sl_jpos_entry *e;

    *line = 0;
    *col = 0;
    if (m == NULL || path == NULL || m->n == 0)
        return false;
    e = jpos_find(m, path, hash_str(path));
    if (e->path == NULL)
        return false;
    *line = e->line;
    *col = e->col;
    return true;
}

/*
 * The reader
 */

struct buf {
    char *p;
    size_t len, cap;
};

struct frame {
    json_t *v; /* borrowed: owned by its parent, or the root */
    bool is_obj;
    unsigned line, col; /* of the opening bracket */
    size_t path_len;    /* length of the container's own path */
    size_t n;           /* index of the current element */
};

enum state {
    ST_VALUE = 0, /* a value is expected */
    ST_KEY,       /* an object key is expected */
    ST_NEXT,      /* a value ended: ',' or a closing bracket, or the end of input at depth 0 */
};

struct parser {
    const unsigned char *s;
    size_t len, off, start;
    struct sl_diags *d;
    struct sl_jpos *pos;
    struct sl_jpos keys; /* first position of each key, by the key's path */
    struct sl_jpath path;
    struct frame stack[MAX_DEPTH];
    int depth;
    json_t *root;
    struct buf sb, kb; /* string value, current key */
    unsigned n_errors;

    /* line:col at offset pc_off, so positions cost O(distance) when asked in order */
    size_t pc_off;
    unsigned pc_line, pc_col;

    /* A typographic opening quote is reported once its string is read, so that a key's
     * error carries the key's path. */
    bool typo_pending;
    unsigned typo_line, typo_col;
    uint32_t typo_cp;
    unsigned n_typo;
    size_t typo_more_idx; /* in d->v: the "... and N more" diagnostic */

    locale_t c_locale;
};

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* What a bare word or a broken number looks like to the person who typed it. */
static bool is_word_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-' || c == '+';
}

/* Length of the valid UTF-8 sequence at <s> (at most <n> bytes), 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    int len;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        *cp = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        *cp = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < (size_t)len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    *cp = (*cp << 6) | (s[1] & 0x3f);
    for (int i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    return len;
}

static int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Whether a typographic quote (U+2018, U+2019, U+201C, U+201D) starts at <off>. */
static bool at_typo(const struct parser *p, size_t off, uint32_t *cp)
{
    const unsigned char *s = p->s + off;

    if (p->len - off < 3 || s[0] != 0xe2 || s[1] != 0x80)
        return false;
    if (s[2] != 0x98 && s[2] != 0x99 && s[2] != 0x9c && s[2] != 0x9d)
        return false;
    *cp = 0x2000 | (s[2] & 0x3f);
    return true;
}

static void pos_at(struct parser *p, size_t off, unsigned *line, unsigned *col)
{
    if (off < p->pc_off) {
        p->pc_off = p->start;
        p->pc_line = 1;
        p->pc_col = 1;
    }
    for (size_t i = p->pc_off; i < off; i++) {
        if (p->s[i] == '\n') {
            p->pc_line++;
            p->pc_col = 1;
        } else if ((p->s[i] & 0xc0) != 0x80) {
            p->pc_col++; /* code points, not bytes: continuation bytes do not count */
        }
    }
    p->pc_off = off;
    *line = p->pc_line;
    *col = p->pc_col;
}

static void flush_typo(struct parser *p);

static void verr_lc(struct parser *p, unsigned line, unsigned col, const char *fmt, va_list ap)
{
    flush_typo(p);
    sl_diag_vadd(p->d, SL_DIAG_ERROR, line, col, p->path.buf, fmt, ap);
    p->n_errors++;
}

static int SL_PRINTF(4, 5)
    error_lc(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verr_lc(p, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reports an error at byte <off>; returns -1 so that callers can "return error_at(...)". */
static int SL_PRINTF(3, 4) error_at(struct parser *p, size_t off, const char *fmt, ...)
{
    unsigned line, col;
    va_list ap;

    pos_at(p, off, &line, &col);
    va_start(ap, fmt);
    verr_lc(p, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(struct parser *p)
{
    return error_at(p, p->off, "out of memory while reading JSON");
}

static void flush_typo(struct parser *p)
{
    char q[4];
    int n;

    if (!p->typo_pending)
        return;
    p->typo_pending = false;
    p->n_errors++;
    p->n_typo++;
    n = utf8_encode(p->typo_cp, q);
    if (p->n_typo == 1) {
        sl_diag_add(p->d, SL_DIAG_ERROR, p->typo_line, p->typo_col, p->path.buf,
                    "typographic quote %.*s (U+%04X) where JSON needs a plain double quote (\"); "
                    "retype the quotes (the IONOS docs' examples use typographic ones)",
                    n, q, (unsigned)p->typo_cp);
    } else if (p->n_typo <= MAX_TYPO_REPORTS) {
        /* The first one carries the hint; repeating it on every string is noise. */
        sl_diag_add(p->d, SL_DIAG_ERROR, p->typo_line, p->typo_col, p->path.buf,
                    "typographic quote %.*s (U+%04X): use a plain double quote (\")", n, q,
                    (unsigned)p->typo_cp);
    } else if (p->n_typo == MAX_TYPO_REPORTS + 1) {
        /* The count is fixed up at the end (finish_typo), the line keeps its place. */
        p->typo_more_idx = p->d->n;
        sl_diag_add(p->d, SL_DIAG_ERROR, p->typo_line, p->typo_col, p->path.buf,
                    "... and 1 more typographic quote");
    }
}

static void finish_typo(struct parser *p)
{
    struct sl_diag *x;
    char *msg;

    flush_typo(p);
    if (p->n_typo <= MAX_TYPO_REPORTS + 1)
        return;
    x = &p->d->v[p->typo_more_idx];
    if (asprintf(&msg, "... and %u more typographic quotes", p->n_typo - MAX_TYPO_REPORTS) == -1) {
        fprintf(stderr, "sluice: out of memory (diagnostics)\n");
        abort();
    }
    free(x->msg);
    x->msg = msg;
}

/* Describes the character at <off> for a message: 'x', 'é' (U+00E9), U+0001, ... */
static const char *describe(const struct parser *p, size_t off, char *out, size_t size)
{
    uint32_t cp;
    int n;

    if (off >= p->len) {
        snprintf(out, size, "end of input");
        return out;
    }
    n = utf8_decode(p->s + off, p->len - off, &cp);
    if (n == 0)
        snprintf(out, size, "byte 0x%02X", p->s[off]);
    else if (cp == 0)
        snprintf(out, size, "a NUL byte");
    else if (cp < 0x20 || cp == 0x7f)
        snprintf(out, size, "control character U+%04X", (unsigned)cp);
    else if (n == 1)
        snprintf(out, size, "'%c'", (char)cp);
    else
        snprintf(out, size, "'%.*s' (U+%04X)", n, (const char *)p->s + off, (unsigned)cp);
    return out;
}

/* Copies input bytes [from, to) for a message, cut at SNIP_MAX; the caller made sure they
 * are printable. */
static const char *snip(const struct parser *p, size_t from, size_t to, char *out, size_t size)
{
    size_t n = to - from;

    if (n > SNIP_MAX) {
        n = SNIP_MAX;
        while (n > 0 && (p->s[from + n] & 0xc0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
        snprintf(out, size, "%.*s...", (int)n, (const char *)p->s + from);
    } else {
        snprintf(out, size, "%.*s", (int)n, (const char *)p->s + from);
    }
    return out;
}

/* Copies the decoded string <s> for a message between double quotes: '"', '\\' and control
 * characters escaped, cut after SNIP_MAX bytes with "...". */
static const char *quote_text(const char *s, size_t n, char *out, size_t size)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((i >= SNIP_MAX && (c & 0xc0) != 0x80) || o + 10 > size)
            break;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static size_t scan_word(const struct parser *p, size_t off)
{
    while (off < p->len && is_word_char(p->s[off]))
        off++;
    return off;
}

static const char *space_name(uint32_t cp)
{
    switch (cp) {
    case 0xa0:
        return "non-breaking space";
    case 0x200b:
        return "zero-width space";
    case 0x202f:
        return "narrow non-breaking space";
    case 0x3000:
        return "ideographic space";
    case 0xfeff:
        return "byte order mark";
    default:
        if ((cp >= 0x2000 && cp <= 0x200a) || cp == 0x205f)
            return "Unicode space";
        return NULL;
    }
}

/* Reports the character at p->off as unexpected, "unexpected 'x': <tail>", with a better
 * message for the usual suspects. */
static int unexpected(struct parser *p, const char *tail)
{
    const unsigned char *s = p->s + p->off;
    size_t left = p->len - p->off;
    char what[64];
    uint32_t cp;
    int n;

    if (left == 0)
        return error_at(p, p->off, "unexpected end of input: %s", tail);
    if (s[0] == '\0')
        return error_at(p, p->off,
                        "NUL byte in the input: a JSON file is UTF-8 text "
                        "(is this file UTF-16 or binary?)");
    if (p->off == p->start && left >= 2 &&
        ((s[0] == 0xff && s[1] == 0xfe) || (s[0] == 0xfe && s[1] == 0xff)))
        return error_at(p, p->off, "the file is UTF-16 (it starts with a UTF-16 byte order "
                                   "mark): save it as UTF-8");
    if (s[0] == '/' && left > 1 && (s[1] == '/' || s[1] == '*'))
        return error_at(p, p->off, "comments are not allowed in JSON: remove the '%c%c' comment",
                        s[0], s[1]);
    if (s[0] >= 0x80) {
        const char *name;

        n = utf8_decode(s, left, &cp);
        if (n == 0)
            return error_at(p, p->off,
                            "invalid UTF-8 byte 0x%02X: the file must be UTF-8 encoded "
                            "(was it saved as Latin-1?)",
                            s[0]);
        name = space_name(cp);
        if (name != NULL)
            return error_at(p, p->off,
                            "%s (U+%04X) is not JSON whitespace: retype it as a plain "
                            "space",
                            name, (unsigned)cp);
    }
    return error_at(p, p->off, "unexpected %s: %s", describe(p, p->off, what, sizeof(what)), tail);
}

static int eof_error(struct parser *p)
{
    const struct frame *f;

    if (p->depth == 0)
        return error_at(p, p->len, "empty input: expected a JSON value, such as an object {...}");
    f = &p->stack[p->depth - 1];
    sl_jpath_pop(&p->path, f->path_len);
    return error_at(p, p->len,
                    "unexpected end of input: %s opened at %u:%u is not closed (missing '%c')",
                    f->is_obj ? "object" : "array", f->line, f->col, f->is_obj ? '}' : ']');
}

static void skip_ws(struct parser *p)
{
    while (p->off < p->len) {
        unsigned char c = p->s[p->off];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->off++;
    }
}

static int buf_append(struct parser *p, struct buf *b, const void *data, size_t n)
{
    if (n >= b->cap - b->len) {
        size_t cap = b->cap != 0 ? b->cap : 64;
        char *np;

        while (n >= cap - b->len) {
            if (cap > SIZE_MAX / 2)
                return oom(p);
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (np == NULL)
            return oom(p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static bool read_hex4(const struct parser *p, size_t off, uint32_t *u)
{
    *u = 0;
    if (p->len - off < 4)
        return false;
    for (size_t i = off; i < off + 4; i++) {
        unsigned char c = p->s[i];

        if (!is_hex(c))
            return false;
        *u = (*u << 4) | (uint32_t)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return true;
}

static int string_eof(struct parser *p, unsigned oline, unsigned ocol)
{
    return error_at(p, p->len,
                    "unexpected end of input: string opened at %u:%u is not closed "
                    "(missing '\"')",
                    oline, ocol);
}

/* Reads the escape at p->off (a backslash) into <b>. */
static int read_escape(struct parser *p, struct buf *b, unsigned oline, unsigned ocol)
{
    size_t bs = p->off;
    uint32_t u, lo;
    char out[4], what[64];
    unsigned char c;

    if (p->len - bs < 2)
        return string_eof(p, oline, ocol);
    c = p->s[bs + 1];
    switch (c) {
    case '"':
    case '\\':
    case '/':
        out[0] = (char)c;
        break;
    case 'b':
        out[0] = '\b';
        break;
    case 'f':
        out[0] = '\f';
        break;
    case 'n':
        out[0] = '\n';
        break;
    case 'r':
        out[0] = '\r';
        break;
    case 't':
        out[0] = '\t';
        break;
    case 'u':
        if (!read_hex4(p, bs + 2, &u))
            return error_at(p, bs,
                            "invalid \\u escape in a string: \\u needs 4 hex digits "
                            "(like \\u00e9)");
        if (u == 0)
            return error_at(p, bs,
                            "NUL character in a string (\\u0000): config strings cannot "
                            "hold one");
        if (u >= 0xdc00 && u <= 0xdfff)
            return error_at(p, bs,
                            "lone surrogate \\u%04X in a string: a low surrogate "
                            "(\\uDC00-\\uDFFF) must follow a high one (\\uD800-\\uDBFF)",
                            (unsigned)u);
        if (u >= 0xd800 && u <= 0xdbff) {
            if (p->len - bs < 12 || p->s[bs + 6] != '\\' || p->s[bs + 7] != 'u' ||
                !read_hex4(p, bs + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
                return error_at(p, bs,
                                "lone surrogate \\u%04X in a string: a high surrogate "
                                "(\\uD800-\\uDBFF) must be followed by a low one "
                                "(\\uDC00-\\uDFFF)",
                                (unsigned)u);
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            p->off += 6;
        }
        p->off += 6;
        return buf_append(p, b, out, (size_t)utf8_encode(u, out));
    default:
        if (c > 0x20 && c < 0x7f)
            return error_at(p, bs,
                            "invalid escape '\\%c' in a string: allowed are \\\" \\\\ \\/ "
                            "\\b \\f \\n \\r \\t and \\uXXXX",
                            c);
        return error_at(p, bs,
                        "invalid escape: '\\' followed by %s in a string; allowed are \\\" "
                        "\\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX",
                        describe(p, bs + 1, what, sizeof(what)));
    }
    p->off += 2;
    return buf_append(p, b, out, 1);
}

static int control_error(struct parser *p, unsigned oline, unsigned ocol)
{
    unsigned char c = p->s[p->off];

    switch (c) {
    case '\0':
        return error_at(p, p->off,
                        "NUL byte in a string: a JSON file is UTF-8 text "
                        "(is this file UTF-16 or binary?)");
    case '\n':
        return error_at(p, p->off,
                        "line break in the string opened at %u:%u: a string ends on its "
                        "line (missing '\"'?); write a line break in a string as \\n",
                        oline, ocol);
    case '\r':
        return error_at(p, p->off,
                        "carriage return in the string opened at %u:%u (missing '\"'?); "
                        "write it as \\r",
                        oline, ocol);
    case '\t':
        return error_at(p, p->off, "tab character in a string: write it as \\t");
    default:
        return error_at(p, p->off, "control character U+%04X in a string: write it as \\u%04x", c,
                        c);
    }
}

/* Reads the string whose opening quote is at p->off into <b> (NUL-terminated, valid UTF-8).
 * A typographic opening quote is reported (flush_typo, by the caller once the path is known)
 * and the string then closes on any quote, typographic or plain. */
static int read_string(struct parser *p, struct buf *b, unsigned oline, unsigned ocol)
{
    bool typo;
    uint32_t cp;

    b->len = 0;
    if (buf_append(p, b, "", 0) == -1)
        return -1;
    typo = at_typo(p, p->off, &cp);
    if (typo) {
        p->typo_pending = true;
        p->typo_line = oline;
        p->typo_col = ocol;
        p->typo_cp = cp;
        p->off += 3;
    } else {
        p->off++;
    }
    for (;;) {
        size_t run = p->off;
        unsigned char c;
        int n;

        while (p->off < p->len) {
            c = p->s[p->off];
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                break;
            p->off++;
        }
        if (buf_append(p, b, p->s + run, p->off - run) == -1)
            return -1;
        if (p->off == p->len)
            return string_eof(p, oline, ocol);
        c = p->s[p->off];
        if (c == '"') {
            p->off++;
            return 0;
        }
        if (c == '\\') {
            if (read_escape(p, b, oline, ocol) == -1)
                return -1;
            continue;
        }
        if (c < 0x20)
            return control_error(p, oline, ocol);
        if (typo && at_typo(p, p->off, &cp)) {
            p->off += 3;
            return 0;
        }
        n = utf8_decode(p->s + p->off, p->len - p->off, &cp);
        if (n == 0)
            return error_at(p, p->off,
                            "invalid UTF-8 byte 0x%02X in a string: the file must be "
                            "UTF-8 encoded (was it saved as Latin-1?)",
                            c);
        if (buf_append(p, b, p->s + p->off, (size_t)n) == -1)
            return -1;
        p->off += (size_t)n;
    }
}

/* Adds <v> (a new reference, may be NULL after a failed allocation) to the open container,
 * under the current key, or makes it the root. */
static int attach(struct parser *p, json_t *v)
{
    const struct frame *f;
    int rc;

    if (v == NULL)
        return oom(p);
    if (p->depth == 0) {
        p->root = v;
        return 0;
    }
    f = &p->stack[p->depth - 1];
    if (f->is_obj)
        rc = json_object_set_new(f->v, p->kb.p, v); /* replaces a duplicate, reported */
    else
        rc = json_array_append_new(f->v, v);
    return rc == -1 ? oom(p) : 0;
}

static int single_quote_error(struct parser *p)
{
    size_t i = p->off + 1;
    char text[SNIP_MAX + 8];

    /* Quote the text back when it is short and printable. */
    while (i < p->len && p->s[i] != '\'' && i - p->off <= SNIP_MAX) {
        uint32_t cp;
        int n = utf8_decode(p->s + i, p->len - i, &cp);

        if (n == 0 || cp < 0x20 || cp == 0x7f || cp == '"' || cp == '\\')
            break;
        i += (size_t)n;
    }
    if (i < p->len && p->s[i] == '\'') {
        snip(p, p->off + 1, i, text, sizeof(text));
        return error_at(p, p->off,
                        "single-quoted string '%s': JSON strings use double quotes "
                        "(\"%s\")",
                        text, text);
    }
    return error_at(p, p->off, "unexpected single quote ('): JSON strings use double quotes (\")");
}

/* A digit-led token of [0-9A-Fa-f.:/] with two '.' or two ':' is an unquoted IP address
 * (or CIDR); it is reported and read as the string it should have been. 0 when read, 1 when
 * it is no such token, -1 on failure. */
static int read_unquoted_ip(struct parser *p, unsigned line, unsigned col)
{
    size_t i = p->off, dots = 0, colons = 0;
    char text[SNIP_MAX + 8];

    while (i < p->len) {
        unsigned char c = p->s[i];

        if (c == '.')
            dots++;
        else if (c == ':')
            colons++;
        else if (!is_hex(c) && c != '/')
            break;
        i++;
    }
    if (dots < 2 && colons < 2)
        return 1;
    snip(p, p->off, i, text, sizeof(text));
    error_lc(p, line, col, "unquoted IP address %s: write it as a string, \"%s\"", text, text);
    if (attach(p, json_stringn((const char *)p->s + p->off, i - p->off)) == -1)
        return -1;
    p->off = i;
    return 0;
}

static int number_error(struct parser *p, size_t start, const char *fmt)
{
    char text[SNIP_MAX + 8];

    snip(p, start, scan_word(p, start), text, sizeof(text));
    return error_at(p, start, fmt, text);
}

static int read_number(struct parser *p)
{
    size_t start = p->off, i = p->off;
    const unsigned char *s = p->s;
    bool neg = false, real = false;
    json_t *v;

    if (s[i] == '-') {
        neg = true;
        i++;
    }
    if (i == p->len || !is_digit(s[i])) {
        char what[64];

        return error_at(p, start, "'-' must be followed by a digit, not %s",
                        describe(p, i, what, sizeof(what)));
    }
    if (s[i] == '0' && i + 1 < p->len && is_digit(s[i + 1]))
        return number_error(p, start,
                            "number %s has a leading zero: JSON numbers are "
                            "decimal and start with 0 only before a '.'");
    while (i < p->len && is_digit(s[i]))
        i++;
    if (i < p->len && s[i] == '.') {
        i++;
        if (i == p->len || !is_digit(s[i]))
            return number_error(p, start, "number %s needs a digit after the '.' (like 1.0)");
        while (i < p->len && is_digit(s[i]))
            i++;
        real = true;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i == p->len || !is_digit(s[i]))
            return number_error(p, start,
                                "bad exponent in number %s: the 'e' must be followed "
                                "by digits (like 1e5 or 2.5e-3)");
        while (i < p->len && is_digit(s[i]))
            i++;
        real = true;
    }
    if (i < p->len && is_word_char(s[i]))
        return number_error(p, start,
                            "invalid number %s: a number is decimal digits with an "
                            "optional '-', fraction and exponent (like -1.5e3)");

    if (real) {
        double d;

        /* strtod needs a terminated copy, and the C locale's '.' whatever the process uses */
        p->sb.len = 0;
        if (buf_append(p, &p->sb, s + start, i - start) == -1)
            return -1;
        if (p->c_locale == (locale_t)0) {
            p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
            if (p->c_locale == (locale_t)0)
                return oom(p);
        }
        d = strtod_l(p->sb.p, NULL, p->c_locale);
        if (isinf(d))
            return number_error(p, start, "number %s is too large for a double");
        v = json_real(d);
    } else {
        /* Accumulated as the negative value: its range is one larger. */
        json_int_t n = 0;
        const json_int_t min = JSON_INT_MIN;

        for (size_t j = start + (neg ? 1 : 0); j < i; j++) {
            int digit = s[j] - '0';

            if (n < (min + digit) / 10)
                goto range;
            n = n * 10 - digit;
        }
        if (!neg) {
            if (n == min)
                goto range;
            n = -n;
        }
        v = json_integer(n);
    }
    if (attach(p, v) == -1)
        return -1;
    p->off = i;
    return 0;
range:
    return number_error(p, start,
                        "integer %s does not fit in 64 bits (-9223372036854775808 to "
                        "9223372036854775807)");
}

static int read_word(struct parser *p)
{
    static const char *const literals[] = { "true", "false", "null" };
    size_t end = scan_word(p, p->off), n = end - p->off;
    const char *w = (const char *)p->s + p->off;
    char text[SNIP_MAX + 8];
    json_t *v = NULL;

    if (n == 4 && memcmp(w, "true", 4) == 0)
        v = json_true();
    else if (n == 5 && memcmp(w, "false", 5) == 0)
        v = json_false();
    else if (n == 4 && memcmp(w, "null", 4) == 0)
        v = json_null();
    if (v != NULL) {
        p->off = end;
        return attach(p, v);
    }
    snip(p, p->off, end, text, sizeof(text));
    for (size_t i = 0; i < SL_ARRAY_LEN(literals); i++) {
        if (strlen(literals[i]) == n && strncasecmp(w, literals[i], n) == 0)
            return error_at(p, p->off, "unexpected '%s': " VALUE_KINDS " (did you mean %s?)", text,
                            literals[i]);
    }
    return error_at(p, p->off, "unexpected '%s': " VALUE_KINDS, text);
}

static int open_container(struct parser *p, bool is_obj, unsigned line, unsigned col,
                          enum state *st)
{
    struct frame *f;
    json_t *v;
    char close = is_obj ? '}' : ']';

    if (p->depth == MAX_DEPTH)
        return error_lc(p, line, col, "nesting deeper than %d levels of objects and arrays",
                        MAX_DEPTH);
    v = is_obj ? json_object() : json_array();
    if (attach(p, v) == -1)
        return -1;
    f = &p->stack[p->depth];
    f->v = v; /* borrowed: attach() gave it to the parent or made it the root */
    f->is_obj = is_obj;
    f->line = line;
    f->col = col;
    f->path_len = p->path.len;
    f->n = 0;
    p->depth++;
    p->off++;
    skip_ws(p);
    if (p->off == p->len)
        return eof_error(p);
    if (p->s[p->off] == (unsigned char)close) {
        p->off++;
        p->depth--;
        *st = ST_NEXT;
    } else if (is_obj) {
        *st = ST_KEY;
    } else {
        sl_jpath_push_index(&p->path, 0);
        *st = ST_VALUE;
    }
    return 0;
}

static int read_value(struct parser *p, enum state *st)
{
    unsigned line, col;
    unsigned char c;
    uint32_t cp;
    int rc;

    skip_ws(p);
    if (p->off == p->len)
        return eof_error(p);
    pos_at(p, p->off, &line, &col);
    sl_jpos_put(p->pos, p->path.buf, line, col);
    c = p->s[p->off];
    *st = ST_NEXT;
    if (c == '{' || c == '[')
        return open_container(p, c == '{', line, col, st);
    if (c == '"' || at_typo(p, p->off, &cp)) {
        if (read_string(p, &p->sb, line, col) == -1)
            return -1;
        flush_typo(p);
        return attach(p, json_stringn(p->sb.p, p->sb.len));
    }
    if (is_digit(c)) {
        rc = read_unquoted_ip(p, line, col);
        if (rc != 1)
            return rc;
    }
    if (is_digit(c) || c == '-')
        return read_number(p);
    if (c == '+')
        return error_at(p, p->off, "unexpected '+': JSON numbers have no '+' sign");
    if (c == '.' && p->off + 1 < p->len && is_digit(p->s[p->off + 1]))
        return number_error(p, p->off, "number %s needs a digit before the '.' (like 0.5)");
    if (c == '\'')
        return single_quote_error(p);
    if (is_alpha(c) || c == '_')
        return read_word(p);
    return unexpected(p, VALUE_KINDS);
}

static int read_key(struct parser *p)
{
    const struct frame *f = &p->stack[p->depth - 1];
    unsigned line, col, first_line, first_col;
    char what[64], text[SNIP_MAX * 2 + 16];
    unsigned char c;
    uint32_t cp;

    skip_ws(p);
    if (p->off == p->len)
        return eof_error(p);
    c = p->s[p->off];
    if (c == '\'')
        return single_quote_error(p);
    if (is_alpha(c) || c == '_') {
        snip(p, p->off, scan_word(p, p->off), text, sizeof(text));
        return error_at(p, p->off, "unquoted key '%s': write it in double quotes, \"%s\"", text,
                        text);
    }
    if (c != '"' && !at_typo(p, p->off, &cp))
        return unexpected(p, "expected a key in double quotes (\"name\")");

    pos_at(p, p->off, &line, &col);
    if (read_string(p, &p->kb, line, col) == -1)
        return -1;
    sl_jpath_push_key(&p->path, p->kb.p);
    flush_typo(p);
    if (json_object_get(f->v, p->kb.p) != NULL) {
        sl_jpos_get(&p->keys, p->path.buf, &first_line, &first_col);
        error_lc(p, line, col, "duplicate key \"%s\" (first at %u:%u)",
                 quote_text(p->kb.p, p->kb.len, text, sizeof(text)), first_line, first_col);
    } else {
        sl_jpos_put(&p->keys, p->path.buf, line, col);
    }

    skip_ws(p);
    if (p->off == p->len)
        return eof_error(p);
    if (p->s[p->off] != ':')
        return error_at(p, p->off, "expected ':' after the key \"%s\", found %s",
                        quote_text(p->kb.p, p->kb.len, text, sizeof(text)),
                        describe(p, p->off, what, sizeof(what)));
    p->off++;
    return 0;
}

/* After a value inside a container: ',' and the next one, or the closing bracket. */
static int read_next(struct parser *p, enum state *st)
{
    struct frame *f = &p->stack[p->depth - 1];
    unsigned char close = f->is_obj ? '}' : ']', other = f->is_obj ? ']' : '}', c;
    char what[64];
    uint32_t cp;

    sl_jpath_pop(&p->path, f->path_len);
    skip_ws(p);
    if (p->off == p->len)
        return eof_error(p);
    c = p->s[p->off];
    if (c == ',') {
        size_t comma = p->off++;

        skip_ws(p);
        if (p->off < p->len && p->s[p->off] == close)
            return error_at(p, comma, "trailing comma before '%c': remove the ','", close);
        f->n++;
        if (f->is_obj) {
            *st = ST_KEY;
        } else {
            sl_jpath_push_index(&p->path, f->n);
            *st = ST_VALUE;
        }
        return 0;
    }
    if (c == close) {
        p->off++;
        p->depth--;
        *st = ST_NEXT;
        return 0;
    }
    if (c == other)
        return error_at(p, p->off,
                        "unexpected '%c': the %s opened at %u:%u must be closed with '%c'", c,
                        f->is_obj ? "object" : "array", f->line, f->col, close);
    if (c == '"' || c == '{' || c == '[' || c == '-' || is_digit(c) || is_alpha(c) ||
        at_typo(p, p->off, &cp))
        return error_at(p, p->off, "missing ',' before %s: %s are separated by commas",
                        describe(p, p->off, what, sizeof(what)),
                        f->is_obj ? "object members" : "array elements");
    return unexpected(p, f->is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
}

static int parse(struct parser *p)
{
    enum state st = ST_VALUE;

    for (;;) {
        int rc;

        switch (st) {
        case ST_VALUE:
            rc = read_value(p, &st);
            break;
        case ST_KEY:
            rc = read_key(p);
            st = ST_VALUE;
            break;
        case ST_NEXT:
            if (p->depth == 0) {
                skip_ws(p);
                if (p->off < p->len)
                    return unexpected(p, "only whitespace may follow the JSON value");
                return 0;
            }
            rc = read_next(p, &st);
            break;
        default:
            SL_BUG_ON(1);
            return -1;
        }
        if (rc == -1)
            return -1;
    }
}

json_t *sl_json_parse(const char *buf, size_t len, struct sl_jpos *pos, struct sl_diags *d)
{
    struct sl_diags local;
    struct parser *p;
    json_t *root;
    int rc;

    /* ~4 KiB of stack frames and path: kept off the caller's stack */
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        if (d != NULL)
            sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "", "out of memory while reading JSON");
        return NULL;
    }
    if (d == NULL) {
        sl_diags_init(&local, "");
        d = &local;
    }
    p->s = (const unsigned char *)(buf != NULL ? buf : "");
    p->len = buf != NULL ? len : 0;
    p->d = d;
    p->pos = pos;
    sl_jpos_init(&p->keys);
    sl_jpath_init(&p->path);
    if (p->len >= 3 && memcmp(p->s, "\xef\xbb\xbf", 3) == 0)
        p->start = 3;
    p->off = p->start;
    p->pc_off = p->start;
    p->pc_line = 1;
    p->pc_col = 1;

    rc = parse(p);
    finish_typo(p);
    root = p->root;
    if (rc == -1 || p->n_errors > 0) {
        json_decref(root);
        root = NULL;
    }
    if (p->c_locale != (locale_t)0)
        freelocale(p->c_locale);
    free(p->sb.p);
    free(p->kb.p);
    sl_jpos_deinit(&p->keys);
    free(p);
    if (d == &local)
        sl_diags_deinit(&local);
    return root;
}
