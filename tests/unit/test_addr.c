/* Unit tests for src/addr.c: parsing and printing IPv4/IPv6 addresses, CIDR prefixes and
 * "ip:port", prefix matching (IPv4-mapped IPv6 included), and socket address conversion.
 * Table-driven: one row per input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "sluice/addr.h"
#include "sluice/common.h"

static void test_addr_parse(void **state)
{
    static const struct {
        const char *in;
        int family;
        const char *text; /* inet_ntop form */
    } good[] = {
        { "1.2.3.4", AF_INET, "1.2.3.4" },
        { "0.0.0.0", AF_INET, "0.0.0.0" },
        { "255.255.255.255", AF_INET, "255.255.255.255" },
        { "10.20.30.40", AF_INET, "10.20.30.40" },
        { "::", AF_INET6, "::" },
        { "::1", AF_INET6, "::1" },
        { "2001:db8::1", AF_INET6, "2001:db8::1" },
        { "2001:DB8:0:0:0:0:0:1", AF_INET6, "2001:db8::1" },
        { "fe80::a:b:c:d", AF_INET6, "fe80::a:b:c:d" },
        { "::ffff:1.2.3.4", AF_INET6, "::ffff:1.2.3.4" },
        { "1:2:3:4:5:6:7:8", AF_INET6, "1:2:3:4:5:6:7:8" },
    };
    static const char *const bad[] = {
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "01.2.3.4", " 1.2.3.4", "1.2.3.4 ",
        "1.2.3.4/32", "localhost", "1.2.3.4:80", ":::", "1::2::3", "::g", "12345::",
        "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "[::1]", "0x7f.0.0.1", "1.2.3.4\n",
    };
    struct sl_addr a;
    char buf[SL_ADDR_STRLEN];

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        if (sl_addr_parse(good[i].in, &a) != 0)
            fail_msg("'%s' should parse", good[i].in);
        assert_int_equal(a.family, good[i].family);
        assert_string_equal(sl_addr_format(&a, buf), good[i].text);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        memset(&a, 0xaa, sizeof(a));
        if (sl_addr_parse(bad[i], &a) != -1)
            fail_msg("'%s' should not parse", bad[i]);
        assert_int_equal(a.family, 0);
    }
    assert_int_equal(sl_addr_parse(NULL, &a), -1);

    memset(&a, 0, sizeof(a));
    assert_string_equal(sl_addr_format(&a, buf), "(unset)");
}

static void test_addr_equal_any(void **state)
{
    struct sl_addr a, b, c, unset;

    (void)state;
    memset(&unset, 0, sizeof(unset));
    assert_int_equal(sl_addr_parse("1.2.3.4", &a), 0);
    assert_int_equal(sl_addr_parse("1.2.3.4", &b), 0);
    assert_int_equal(sl_addr_parse("::ffff:1.2.3.4", &c), 0);
    assert_true(sl_addr_equal(&a, &b));
    assert_false(sl_addr_equal(&a, &c)); /* equality is exact; matching is sl_cidr_contains */
    assert_false(sl_addr_equal(&a, &unset));
    assert_true(sl_addr_equal(&unset, &unset));
    assert_int_equal(sl_addr_parse("2001:db8::1", &a), 0);
    assert_int_equal(sl_addr_parse("2001:db8::2", &b), 0);
    assert_false(sl_addr_equal(&a, &b));

    assert_int_equal(sl_addr_parse("0.0.0.0", &a), 0);
    assert_true(sl_addr_is_any(&a));
    assert_int_equal(sl_addr_parse("::", &a), 0);
    assert_true(sl_addr_is_any(&a));
    assert_int_equal(sl_addr_parse("0.0.0.1", &a), 0);
    assert_false(sl_addr_is_any(&a));
    assert_int_equal(sl_addr_parse("::1", &a), 0);
    assert_false(sl_addr_is_any(&a));
    assert_int_equal(sl_addr_parse("::ffff:0.0.0.0", &a), 0);
    assert_false(sl_addr_is_any(&a));
    assert_false(sl_addr_is_any(&unset));
}

static void test_cidr_parse(void **state)
{
    static const struct {
        const char *in;
        const char *addr; /* masked */
        unsigned prefix;
    } good[] = {
        { "10.0.0.0/8", "10.0.0.0", 8 },
        { "10.1.2.3/8", "10.0.0.0", 8 },
        { "10.20.30.40/24", "10.20.30.0", 24 },
        { "192.168.1.255/31", "192.168.1.254", 31 },
        { "172.31.255.255/12", "172.16.0.0", 12 },
        { "1.2.3.4/32", "1.2.3.4", 32 },
        { "1.2.3.4", "1.2.3.4", 32 },
        { "255.255.255.255/0", "0.0.0.0", 0 },
        { "2001:db8:abcd:12::1/64", "2001:db8:abcd:12::", 64 },
        { "2001:db8::ffff/127", "2001:db8::fffe", 127 },
        { "fe80::1/10", "fe80::", 10 },
        { "ffff::1/1", "8000::", 1 },
        { "::1", "::1", 128 },
        { "::1/128", "::1", 128 },
        { "::/0", "::", 0 },
        { "::ffff:10.1.2.3/104", "::ffff:10.0.0.0", 104 },
    };
    static const char *const bad[] = {
        "", "/", "/24", "1.2.3.4/", "1.2.3.4/08x", "1.2.3.4/08", "1.2.3.4/33", "1.2.3.4/-1",
        "1.2.3.4/+8", "1.2.3.4/ 8", "1.2.3.4 /8", "1.2.3.4/8 ", "1.2.3.4//8", "1.2.3.4/8/8",
        "1.2.3.4/1000000000000000000000", "::/129", "::1/", "2001:db8::/64x", "1.2.3/24",
        "x/8", " 1.2.3.4/8", "1.2.3.4/0x8", "0123456789012345678901234567890123456789012345/8",
    };
    struct sl_cidr c;
    char buf[SL_ADDR_STRLEN];

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        if (sl_cidr_parse(good[i].in, &c) != 0)
            fail_msg("'%s' should parse", good[i].in);
        assert_string_equal(sl_addr_format(&c.addr, buf), good[i].addr);
        assert_int_equal(c.prefix, good[i].prefix);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        memset(&c, 0xaa, sizeof(c));
        if (sl_cidr_parse(bad[i], &c) != -1)
            fail_msg("'%s' should not parse", bad[i]);
        assert_int_equal(c.addr.family, 0);
    }
    assert_int_equal(sl_cidr_parse(NULL, &c), -1);
}

static void test_cidr_contains(void **state)
{
    static const struct {
        const char *cidr, *addr;
        bool in;
    } cases[] = {
        { "10.0.0.0/8", "10.0.0.0", true },
        { "10.0.0.0/8", "10.255.255.255", true },
        { "10.0.0.0/8", "11.0.0.0", false },
        { "10.0.0.0/8", "9.255.255.255", false },
        { "10.20.30.40/24", "10.20.30.1", true },
        { "10.20.30.40/24", "10.20.31.1", false },
        { "192.168.1.0/31", "192.168.1.1", true },
        { "192.168.1.0/31", "192.168.1.2", false },
        { "172.16.0.0/12", "172.31.255.255", true },
        { "172.16.0.0/12", "172.32.0.0", false },
        { "1.2.3.4/32", "1.2.3.4", true },
        { "1.2.3.4", "1.2.3.5", false },
        { "0.0.0.0/0", "1.2.3.4", true },
        { "0.0.0.0/0", "255.255.255.255", true },
        /* IPv4-mapped IPv6 matches IPv4 prefixes */
        { "10.0.0.0/8", "::ffff:10.1.2.3", true },
        { "10.0.0.0/8", "::ffff:11.1.2.3", false },
        { "0.0.0.0/0", "::ffff:1.2.3.4", true },
        { "1.2.3.4/32", "::ffff:1.2.3.4", true },
        /* but not other IPv6 addresses, even with the same low bits */
        { "0.0.0.0/0", "::1", false },
        { "10.0.0.0/8", "::10.1.2.3", false },
        { "10.0.0.0/8", "64:ff9b::10.1.2.3", false },
        { "0.0.0.0/0", "::ffff:0:0", true },
        /* IPv6 prefixes */
        { "2001:db8::/32", "2001:db8:ffff::1", true },
        { "2001:db8::/32", "2001:db9::1", false },
        { "2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff", true },
        { "2001:db8::/64", "2001:db8:0:1::", false },
        { "2001:db8::/127", "2001:db8::1", true },
        { "2001:db8::/127", "2001:db8::2", false },
        { "::1/128", "::1", true },
        { "::/0", "2001:db8::1", true },
        { "fe80::/10", "febf::1", true },
        { "fe80::/10", "fec0::1", false },
        /* an IPv6 prefix sees an IPv4 address in its mapped form */
        { "::ffff:0:0/96", "1.2.3.4", true },
        { "::ffff:10.0.0.0/104", "10.9.8.7", true },
        { "::ffff:10.0.0.0/104", "11.9.8.7", false },
        { "2001:db8::/32", "1.2.3.4", false },
    };
    struct sl_cidr c;
    struct sl_addr a;

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        assert_int_equal(sl_cidr_parse(cases[i].cidr, &c), 0);
        assert_int_equal(sl_addr_parse(cases[i].addr, &a), 0);
        if (sl_cidr_contains(&c, &a) != cases[i].in)
            fail_msg("%s in %s: expected %s", cases[i].addr, cases[i].cidr,
                     cases[i].in ? "true" : "false");
    }
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_cidr_parse("0.0.0.0/0", &c), 0);
    assert_false(sl_cidr_contains(&c, &a)); /* unset address */
    assert_false(sl_cidr_contains(NULL, &a));
}

static void test_parse_port(void **state)
{
    static const struct {
        const char *in;
        const char *addr;
        unsigned port;
        const char *text; /* sl_addr_format_port */
    } good[] = {
        { "1.2.3.4:80", "1.2.3.4", 80, "1.2.3.4:80" },
        { "127.0.0.1:9900", "127.0.0.1", 9900, "127.0.0.1:9900" },
        { "0.0.0.0:1", "0.0.0.0", 1, "0.0.0.0:1" },
        { "[::1]:8080", "::1", 8080, "[::1]:8080" },
        { "[2001:db8::1]:65535", "2001:db8::1", 65535, "[2001:db8::1]:65535" },
        { "[::]:443", "::", 443, "[::]:443" },
        { "[::ffff:1.2.3.4]:80", "::ffff:1.2.3.4", 80, "[::ffff:1.2.3.4]:80" },
    };
    static const char *const bad[] = {
        "", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:99999999999",
        "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4:080", "1.2.3.4:80x", "1.2.3.4:8 0", "1.2.3.4: 80",
        "1.2.3.4:80 ", "1.2.3.4:0x50", "::1:80", "2001:db8::1:80", "[::1]", "[::1]:", "[::1]80",
        "[::1]:80x", "[1.2.3.4]:80", "[::1:80", "::1]:80", "localhost:80", "1.2.3:80",
        "[fe80::1%eth0]:80", "[]:80",
    };
    struct sl_addr a;
    uint16_t port;
    char buf[SL_ADDR_STRLEN], pbuf[SL_ADDR_STRLEN + 8];

    (void)state;
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        if (sl_addr_parse_port(good[i].in, &a, &port) != 0)
            fail_msg("'%s' should parse", good[i].in);
        assert_string_equal(sl_addr_format(&a, buf), good[i].addr);
        assert_int_equal(port, good[i].port);
        assert_string_equal(sl_addr_format_port(&a, port, pbuf), good[i].text);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        port = 7;
        if (sl_addr_parse_port(bad[i], &a, &port) != -1)
            fail_msg("'%s' should not parse", bad[i]);
        assert_int_equal(a.family, 0);
        assert_int_equal(port, 0);
    }
    assert_int_equal(sl_addr_parse_port(NULL, &a, &port), -1);

    /* the longest text fits the documented buffer */
    assert_int_equal(sl_addr_parse("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", &a), 0);
    assert_string_equal(sl_addr_format_port(&a, 65535, pbuf),
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void test_sockaddr(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    struct sl_addr a, b;
    uint16_t port;
    socklen_t len;

    (void)state;
    assert_int_equal(sl_addr_parse("10.1.2.3", &a), 0);
    len = sl_addr_to_sockaddr(&a, 8080, &ss);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 8080);
    assert_int_equal(ntohl(in->sin_addr.s_addr), 0x0a010203);
    assert_int_equal(sl_addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), 0);
    assert_true(sl_addr_equal(&a, &b));
    assert_int_equal(port, 8080);

    assert_int_equal(sl_addr_parse("2001:db8::7", &a), 0);
    len = sl_addr_to_sockaddr(&a, 443, &ss);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(in6->sin6_port), 443);
    assert_int_equal(in6->sin6_addr.s6_addr[15], 7);
    assert_int_equal(sl_addr_from_sockaddr((struct sockaddr *)&ss, &b, NULL), 0);
    assert_true(sl_addr_equal(&a, &b));

    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_addr_to_sockaddr(&a, 80, &ss), 0);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(sl_addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), -1);
    assert_int_equal(b.family, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_addr_equal_any),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_parse_port),
        cmocka_unit_test(test_sockaddr),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
