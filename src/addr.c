/* IP addresses and CIDR prefixes as plain values, parsed and printed with inet_pton/inet_ntop.
 * Parsing is strict (no spaces, signs, leading zeros or trailing junk) because the input is
 * config text that should fail loudly. An IPv4-mapped IPv6 address (::ffff:a.b.c.d), which is
 * how a dual-stack socket shows an IPv4 peer, matches the IPv4 prefixes. */
#include "sluice/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static unsigned addr_bits(const struct sl_addr *a)
{
    return a->family == AF_INET ? 32 : 128;
}

static bool is_v4mapped(const struct sl_addr *a)
{
    return a->family == AF_INET6 && memcmp(a->bytes, v4mapped_prefix, 12) == 0;
}

int sl_addr_parse(const char *s, struct sl_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return -1;
    if (strchr(s, ':') != NULL) {
        if (inet_pton(AF_INET6, s, out->bytes) != 1)
            return -1;
        out->family = AF_INET6;
    } else {
        if (inet_pton(AF_INET, s, out->bytes) != 1)
            return -1;
        out->family = AF_INET;
    }
    return 0;
}

/* Strict decimal: digits only, no sign or leading zero, value <= max. -1 if not. */
static long parse_decimal(const char *s, long max)
{
    long v = 0;

    if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    return v;
}

int sl_cidr_parse(const char *s, struct sl_cidr *out)
{
    char host[SL_ADDR_STRLEN];
    const char *slash;
    size_t n;
    long prefix;
    unsigned bits;

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return -1;
    slash = strchr(s, '/');
    if (slash == NULL) {
        if (sl_addr_parse(s, &out->addr) == -1)
            return -1;
        out->prefix = (uint8_t)addr_bits(&out->addr);
        return 0;
    }

    n = (size_t)(slash - s);
    if (n >= sizeof(host))
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    if (sl_addr_parse(host, &out->addr) == -1)
        goto fail;
    bits = addr_bits(&out->addr);
    prefix = parse_decimal(slash + 1, bits);
    if (prefix == -1)
        goto fail;
    out->prefix = (uint8_t)prefix;

    /* Clear the host bits, so that 10.1.2.3/8 is stored as 10.0.0.0/8. */
    for (unsigned i = 0; i < bits / 8; i++) {
        unsigned keep = (unsigned)prefix > i * 8 ? (unsigned)prefix - i * 8 : 0;

        if (keep < 8)
            out->addr.bytes[i] &= (uint8_t)(0xff00 >> keep);
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return -1;
}

/* Whether the first <prefix> bits of <a> and <b> are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff00 >> rest)) == 0;
}

bool sl_cidr_contains(const struct sl_cidr *c, const struct sl_addr *a)
{
    if (c == NULL || a == NULL || c->addr.family == 0 || a->family == 0)
        return false;
    if (c->addr.family == a->family)
        return prefix_equal(c->addr.bytes, a->bytes, c->prefix);
    if (c->addr.family == AF_INET && is_v4mapped(a))
        return prefix_equal(c->addr.bytes, a->bytes + 12, c->prefix);
    if (c->addr.family == AF_INET6 && a->family == AF_INET) {
        /* Compare as the mapped form, so ::ffff:0:0/96 also holds every IPv4 address. */
        uint8_t mapped[16];

        memcpy(mapped, v4mapped_prefix, 12);
        memcpy(mapped + 12, a->bytes, 4);
        return prefix_equal(c->addr.bytes, mapped, c->prefix);
    }
    return false;
}

bool sl_addr_equal(const struct sl_addr *a, const struct sl_addr *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == 0)
        return true;
    return memcmp(a->bytes, b->bytes, addr_bits(a) / 8) == 0;
}

bool sl_addr_is_any(const struct sl_addr *a)
{
    static const uint8_t zero[16];

    if (a->family != AF_INET && a->family != AF_INET6)
        return false;
    return memcmp(a->bytes, zero, addr_bits(a) / 8) == 0;
}

char *sl_addr_format(const struct sl_addr *a, char *buf)
{
    if ((a->family != AF_INET && a->family != AF_INET6) ||
        inet_ntop(a->family, a->bytes, buf, SL_ADDR_STRLEN) == NULL)
        strcpy(buf, "(unset)");
    return buf;
}

char *sl_addr_format_port(const struct sl_addr *a, uint16_t port, char *buf)
{
    char host[SL_ADDR_STRLEN];

    sl_addr_format(a, host);
    if (a->family == AF_INET6)
        snprintf(buf, SL_ADDR_STRLEN + 8, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(buf, SL_ADDR_STRLEN + 8, "%s:%u", host, (unsigned)port);
    return buf;
}

int sl_addr_parse_port(const char *s, struct sl_addr *out, uint16_t *port)
{
    char host[SL_ADDR_STRLEN];
    const char *colon, *h = s;
    size_t n;
    long p;

    memset(out, 0, sizeof(*out));
    *port = 0;
    if (s == NULL)
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        n = (size_t)(close - h);
        colon = close + 1;
        if (memchr(h, ':', n) == NULL) /* brackets are for IPv6 only */
            return -1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        n = (size_t)(colon - s);
        if (memchr(s, ':', n) != NULL) /* IPv6 needs brackets: "::1:80" is ambiguous */
            return -1;
    }
    if (n >= sizeof(host))
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    p = parse_decimal(colon + 1, 65535);
    if (p < 1 || sl_addr_parse(host, out) == -1) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    *port = (uint16_t)p;
    return 0;
}

int sl_addr_from_sockaddr(const struct sockaddr *sa, struct sl_addr *out, uint16_t *port)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        out->family = AF_INET;
        memcpy(out->bytes, &in->sin_addr, 4);
        if (port != NULL)
            *port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        out->family = AF_INET6;
        memcpy(out->bytes, &in6->sin6_addr, 16);
        if (port != NULL)
            *port = ntohs(in6->sin6_port);
        return 0;
    }
    return -1;
}

socklen_t sl_addr_to_sockaddr(const struct sl_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        memcpy(&in->sin_addr, a->bytes, 4);
        return sizeof(*in);
    }
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        memcpy(&in6->sin6_addr, a->bytes, 16);
        return sizeof(*in6);
    }
    return 0;
}

char *sl_hostport(const char *ip, uint16_t port, char *buf)
{
    snprintf(buf, SL_ADDR_STRLEN + 8, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)port);
    return buf;
}
