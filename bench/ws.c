/* RFC 6455 framing, masking and handshake helpers, and the small process helpers shared by the
 * sluice-bench modes. No I/O here. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_frame_parse(const uint8_t *p, size_t n, struct ws_frame *f)
{
    size_t need = 2;
    uint64_t len;

    if (n < 2)
        return 0;
    len = p[1] & 0x7f;
    if (len == 126)
        need += 2;
    else if (len == 127)
        need += 8;
    if (p[1] & 0x80)
        need += 4;
    if (n < need)
        return 0;
    f->fin = (p[0] & WS_FIN) != 0;
    f->rsv = (p[0] >> 4) & 0x7;
    f->opcode = p[0] & 0x0f;
    f->masked = (p[1] & 0x80) != 0;
    if (len == 126) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        if (len >> 63)
            return -1;
    }
    f->len = len;
    f->hlen = need;
    if (f->masked)
        memcpy(f->key, p + need - 4, 4);
    return 1;
}

size_t ws_frame_hlen(uint64_t len, bool masked)
{
    size_t h = len < 126 ? 2 : len <= 0xffff ? 4 : 10;

    return masked ? h + 4 : h;
}

size_t ws_frame_header(uint8_t *out, uint8_t b0, uint64_t len, const uint8_t *key)
{
    size_t h = 2;

    out[0] = b0;
    if (len < 126) {
        out[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        h = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        h = 10;
    }
    if (key) {
        out[1] |= 0x80;
        memcpy(out + h, key, 4);
        h += 4;
    }
    return h;
}

/* The hot loop of both the echo server (unmasking) and the clients (masking): 32 bytes per
 * iteration through unaligned 64-bit loads, which GCC turns into plain moves (or vectors). */
unsigned ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], unsigned phase)
{
    uint8_t k8[8];
    uint64_t k, a, b, c, d;
    size_t i = 0;

    for (int j = 0; j < 8; j++)
        k8[j] = key[(phase + j) & 3];
    memcpy(&k, k8, 8);
    for (; i + 32 <= n; i += 32) {
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k;
        b ^= k;
        c ^= k;
        d ^= k;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        memcpy(&a, src + i, 8);
        a ^= k;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k8[i & 7];
    return (unsigned)((phase + n) & 3);
}

void ws_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char buf[256], md[SHA_DIGEST_LENGTH];

    /* Keys are 24 characters; a longer one is refused before it gets here. */
    if (key_len > sizeof(buf) - sizeof(ws_guid))
        key_len = sizeof(buf) - sizeof(ws_guid);
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, ws_guid, sizeof(ws_guid) - 1);
    SHA1(buf, key_len + sizeof(ws_guid) - 1, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

void ws_make_key(const uint8_t rnd[16], char out[WS_KEY_LEN + 1])
{
    EVP_EncodeBlock((unsigned char *)out, rnd, 16);
}

size_t ws_head_end(const char *p, size_t n, size_t from)
{
    const char *q;

    from = from > 3 ? from - 3 : 0;
    while (from + 4 <= n) {
        q = memchr(p + from, '\r', n - from);
        if (!q)
            return 0;
        from = (size_t)(q - p);
        if (from + 4 > n)
            return 0;
        if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n')
            return from + 4;
        from++;
    }
    return 0;
}

static inline bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static inline unsigned char lower(unsigned char ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static bool ci_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

int ws_head_next(const char **cur, const char *end, struct ws_hdr *h)
{
    const char *p = *cur, *eol, *colon, *v, *ve;

    eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
        return -1;
    *cur = eol + 1;
    if (eol > p && eol[-1] == '\r')
        eol--;
    if (eol == p)
        return 0;
    colon = memchr(p, ':', (size_t)(eol - p));
    /* No name, or whitespace before the colon (RFC 9112 5.1 says reject): malformed. */
    if (!colon || colon == p || is_ows(colon[-1]) || is_ows(*p))
        return -1;
    v = colon + 1;
    ve = eol;
    while (v < ve && is_ows(*v))
        v++;
    while (ve > v && is_ows(ve[-1]))
        ve--;
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->val = v;
    h->val_len = (size_t)(ve - v);
    return 1;
}

bool ws_hdr_is(const struct ws_hdr *h, const char *name)
{
    size_t n = strlen(name);

    return h->name_len == n && ci_eq(h->name, name, n);
}

bool ws_list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;

    while (i < n) {
        size_t s, e;

        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && is_ows(v[e - 1]))
            e--;
        if (e - s == tl && ci_eq(v + s, tok, tl))
            return true;
    }
    return false;
}

const char *ws_list_first(const char *v, size_t n, size_t *len)
{
    size_t s = 0, e;

    while (s < n && (is_ows(v[s]) || v[s] == ','))
        s++;
    e = s;
    while (e < n && v[e] != ',')
        e++;
    while (e > s && is_ows(v[e - 1]))
        e--;
    *len = e - s;
    return v + s;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

unsigned long bench_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (unsigned long)rl.rlim_cur;
}

int bench_parse_size(const char *s, uint64_t max, uint64_t *out)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {{"", 0},   {"k", 10},   {"K", 10}, {"KiB", 10}, {"m", 20},
                 {"M", 20}, {"MiB", 20}, {"g", 30}, {"G", 30},   {"GiB", 30}};
    unsigned long long v;
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > (max >> units[i].shift))
                return -1;
            *out = (uint64_t)v << units[i].shift;
            return 0;
        }
    }
    return -1;
}

int bench_parse_seconds(const char *s, double max, double *out)
{
    char *end;
    double v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || !(v > 0 && v <= max))
        return -1;
    *out = v;
    return 0;
}

int bench_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long v;
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}
