/* Balancer tests: exact SWRR sequences, eligibility (weight 0, maintenance, down, tried) for
 * every algorithm, least-connection ordering, weighted random and source-IP rendezvous
 * distributions and stability, and the shared target state registry across config loads.
 * Groups are built by hand; the registry is emptied after every test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/addr.h"
#include "sluice/balancer.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/config-t.h"

#define MAX_T 8

/* A target as written in a table: weight, flags, and whether the health checker has it down. */
struct tdef {
    uint16_t w;
    bool maint;
    bool down;
};

/* One hand-built config with one group; targets are 10.0.0.<i+1>:80, named a, b, c, ... */
struct fx {
    struct sl_target t[MAX_T];
    struct sl_target_group g;
    struct sl_config cfg;
    struct sl_balancer *b;
};

static void fx_build(struct fx *f, const char *gid, enum sl_algorithm alg, const struct tdef *d,
                     size_t n, uint64_t seed)
{
    char ip[32];

    assert_true(n <= MAX_T);
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        snprintf(ip, sizeof(ip), "10.0.0.%zu", i + 1);
        assert_int_equal(sl_addr_parse(ip, &f->t[i].addr), 0);
        f->t[i].port = f->t[i].port_orig = 80;
        f->t[i].weight = d[i].w;
        f->t[i].maintenance_enabled = d[i].maint;
        f->t[i].health_check_enabled = true;
    }
    f->g.id = gid;
    f->g.name = "g";
    f->g.algorithm = alg;
    f->g.targets = f->t;
    f->g.n_targets = n;
    f->cfg.tgroups = &f->g;
    f->cfg.n_tgroups = 1;
    f->b = sl_balancer_new(&f->cfg, seed);
    assert_non_null(f->b);
    for (size_t i = 0; i < n; i++)
        atomic_store(&sl_target_state_get(&f->g, &f->t[i])->down, d[i].down);
}

static void fx_done(struct fx *f)
{
    sl_balancer_free(f->b);
}

static struct sl_target_state *fx_state(struct fx *f, size_t i)
{
    struct sl_target_state *st = sl_target_state_get(&f->g, &f->t[i]);

    assert_non_null(st);
    return st;
}

/* One fresh request: returns the picked index as a letter, or '-' for SL_BUSY. */
static char pick1(struct fx *f, const struct sl_addr *client)
{
    struct sl_tried tried = {0};
    struct sl_pick p;
    int rc = sl_balancer_pick(f->b, &f->g, client, &tried, &p);

    if (rc == SL_BUSY) {
        assert_int_equal(tried.n, 0);
        return '-';
    }
    assert_int_equal(rc, SL_OK);
    assert_int_equal(tried.n, 1);
    assert_int_equal(tried.idx[0], p.index);
    assert_ptr_equal(p.target, &f->t[p.index]);
    assert_ptr_equal(p.state, fx_state(f, p.index));
    return (char)('a' + p.index);
}

static void picks_str(struct fx *f, const struct sl_addr *client, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = pick1(f, client);
    out[n] = '\0';
}

static struct sl_addr addr(const char *s)
{
    struct sl_addr a;

    assert_int_equal(sl_addr_parse(s, &a), 0);
    return a;
}

static int teardown(void **state)
{
    (void)state;
    sl_target_states_free();
    return 0;
}

static const enum sl_algorithm all_algs[] = {
    SL_ALG_ROUND_ROBIN,
    SL_ALG_LEAST_CONNECTION,
    SL_ALG_RANDOM,
    SL_ALG_SOURCE_IP,
};

/* ---- round robin ------------------------------------------------------------------------- */

static void test_swrr_sequences(void **state)
{
    static const struct {
        struct tdef t[MAX_T];
        size_t n;
        const char *seq; /* one full cycle; it must repeat exactly (current weights back at 0) */
    } cases[] = {
        {{{.w = 5}, {.w = 1}, {.w = 1}}, 3, "aabacaa"},
        {{{.w = 3}, {.w = 2}}, 2, "ababa"},
        {{{.w = 1}, {.w = 1}, {.w = 1}}, 3, "abc"},
        {{{.w = 1}}, 1, "a"},
        {{{.w = 2}, {.w = 0}, {.w = 1}}, 3, "aca"},
        {{{.w = 256}, {.w = 1}}, 2, NULL}, /* checked by counts below */
    };
    char got[64];

    (void)state;
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        struct fx f;

        fx_build(&f, "tg-rr", SL_ALG_ROUND_ROBIN, cases[c].t, cases[c].n, 1);
        if (cases[c].seq) {
            size_t len = strlen(cases[c].seq);

            for (int cycle = 0; cycle < 3; cycle++) {
                picks_str(&f, NULL, len, got);
                assert_string_equal(got, cases[c].seq);
            }
        } else {
            unsigned a = 0;

            for (int i = 0; i < 257; i++)
                a += pick1(&f, NULL) == 'a';
            assert_int_equal(a, 256);
        }
        fx_done(&f);
        sl_target_states_free();
    }
}

/* Ineligible targets are never picked, by any algorithm. */
static void test_skip_ineligible(void **state)
{
    /* b weight 0, c maintenance, d down: only a and e remain */
    static const struct tdef t[] = {
        {.w = 1}, {.w = 0}, {.w = 1, .maint = true}, {.w = 1, .down = true}, {.w = 1}};
    struct sl_addr client = addr("192.0.2.7");

    (void)state;
    for (size_t a = 0; a < SL_ARRAY_LEN(all_algs); a++) {
        struct fx f;
        unsigned seen_a = 0, seen_e = 0;

        fx_build(&f, "tg-skip", all_algs[a], t, SL_ARRAY_LEN(t), 7);
        for (int i = 0; i < 200; i++) {
            char ch;

            if (all_algs[a] == SL_ALG_SOURCE_IP)
                client.bytes[3] = (uint8_t)i;
            ch = pick1(&f, &client);
            assert_true(ch == 'a' || ch == 'e');
            seen_a += ch == 'a';
            seen_e += ch == 'e';
        }
        assert_true(seen_a > 0 && seen_e > 0);
        fx_done(&f);
        sl_target_states_free();
    }
}

static void test_swrr_skip_sequence(void **state)
{
    static const struct tdef t[] = {
        {.w = 1}, {.w = 0}, {.w = 1, .maint = true}, {.w = 1, .down = true}, {.w = 1}};
    struct fx f;
    char got[16];

    (void)state;
    fx_build(&f, "tg-skip", SL_ALG_ROUND_ROBIN, t, SL_ARRAY_LEN(t), 1);
    picks_str(&f, NULL, 6, got);
    assert_string_equal(got, "aeaeae");
    /* d comes back up: it joins the rotation */
    atomic_store(&fx_state(&f, 3)->down, false);
    picks_str(&f, NULL, 6, got);
    assert_string_equal(got, "adeade");
    fx_done(&f);
}

/* Retries within one request skip what was tried, then run out. */
static void test_tried(void **state)
{
    static const struct tdef t3[] = {{.w = 5}, {.w = 1}, {.w = 1}};
    static const struct tdef t5[] = {{.w = 1}, {.w = 1}, {.w = 1}, {.w = 1}, {.w = 1}};
    struct sl_addr client = addr("198.51.100.9");

    (void)state;
    for (size_t a = 0; a < SL_ARRAY_LEN(all_algs); a++) {
        struct fx f;
        struct sl_tried tried = {0};
        struct sl_pick p;
        bool seen[3] = {false};

        fx_build(&f, "tg-tried", all_algs[a], t3, 3, 3);
        for (int k = 0; k < 3; k++) {
            assert_int_equal(sl_balancer_pick(f.b, &f.g, &client, &tried, &p), SL_OK);
            assert_int_equal(tried.n, (unsigned)k + 1);
            assert_false(seen[p.index]);
            seen[p.index] = true;
        }
        /* all three tried: tried is full and no target is left either way */
        assert_int_equal(sl_balancer_pick(f.b, &f.g, &client, &tried, &p), SL_BUSY);
        assert_int_equal(tried.n, 3);
        fx_done(&f);
        sl_target_states_free();

        /* five eligible targets, but tried is full */
        fx_build(&f, "tg-tried", all_algs[a], t5, 5, 3);
        tried = (struct sl_tried){3, {0, 1, 2}};
        assert_int_equal(sl_balancer_pick(f.b, &f.g, &client, &tried, &p), SL_BUSY);
        /* tried has room: only d or e */
        tried = (struct sl_tried){2, {0, 1}};
        assert_int_equal(sl_balancer_pick(f.b, &f.g, &client, &tried, &p), SL_OK);
        assert_true(p.index >= 2);
        fx_done(&f);
        sl_target_states_free();
    }
}

/* The SWRR tried order from nginx: a first, then the next in SWRR order among the rest. */
static void test_swrr_tried_sequence(void **state)
{
    static const struct tdef t[] = {{.w = 5}, {.w = 1}, {.w = 1}};
    struct sl_tried tried = {0};
    struct sl_pick p;
    struct fx f;

    (void)state;
    fx_build(&f, "tg", SL_ALG_ROUND_ROBIN, t, 3, 1);
    assert_int_equal(sl_balancer_pick(f.b, &f.g, NULL, &tried, &p), SL_OK);
    assert_int_equal(p.index, 0);
    assert_int_equal(sl_balancer_pick(f.b, &f.g, NULL, &tried, &p), SL_OK);
    assert_int_equal(p.index, 1);
    assert_int_equal(sl_balancer_pick(f.b, &f.g, NULL, &tried, &p), SL_OK);
    assert_int_equal(p.index, 2);
    assert_int_equal(tried.n, 3);
    fx_done(&f);
}

static void test_all_ineligible(void **state)
{
    static const struct {
        struct tdef t[MAX_T];
        size_t n;
    } cases[] = {
        {{{.w = 0}}, 0},                                                  /* no target at all */
        {{{.w = 0}, {.w = 0}}, 2},                                        /* weight 0 */
        {{{.w = 1, .maint = true}, {.w = 3, .maint = true}}, 2},          /* maintenance */
        {{{.w = 1, .down = true}, {.w = 2, .down = true}}, 2},            /* down */
        {{{.w = 0}, {.w = 1, .maint = true}, {.w = 1, .down = true}}, 3}, /* a mix */
    };
    struct sl_addr client = addr("2001:db8::1");

    (void)state;
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        for (size_t a = 0; a < SL_ARRAY_LEN(all_algs); a++) {
            struct fx f;

            fx_build(&f, "tg-none", all_algs[a], cases[c].t, cases[c].n, 1);
            assert_int_equal(pick1(&f, &client), '-');
            fx_done(&f);
            sl_target_states_free();
        }
    }
}

/* ---- least connection -------------------------------------------------------------------- */

static void test_least_conn_min(void **state)
{
    static const struct {
        uint16_t w[4];
        unsigned active[4];
        size_t n;
        const char *seq; /* picks with the counts held fixed */
    } cases[] = {
        {{1, 1, 1}, {4, 2, 3}, 3, "bbb"},
        {{1, 2, 1}, {4, 4, 1}, 3, "ccc"},      /* 4, 2, 1 per weight */
        {{1, 2, 1}, {2, 3, 2}, 3, "bbb"},      /* 2, 1.5, 2 */
        {{1, 1, 1}, {0, 5, 0}, 3, "acac"},     /* tie a,c: round robin between them */
        {{1, 2, 1}, {1, 2, 1}, 3, "bacbbacb"}, /* all 1 per weight: SWRR 1,2,1 */
        {{256, 1}, {1000, 4}, 2, "aa"},        /* 3.9 vs 4 */
        {{256, 1}, {1100, 4}, 2, "bb"},        /* 4.3 vs 4 */
        {{3, 0, 1}, {9, 0, 3}, 3, "aac"},      /* b weight 0: never, however idle */
    };
    char got[16];

    (void)state;
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        struct tdef t[4] = {{0}};
        struct fx f;

        for (size_t i = 0; i < cases[c].n; i++)
            t[i].w = cases[c].w[i];
        fx_build(&f, "tg-lc", SL_ALG_LEAST_CONNECTION, t, cases[c].n, 1);
        for (size_t i = 0; i < cases[c].n; i++)
            atomic_store(&fx_state(&f, i)->active, cases[c].active[i]);
        picks_str(&f, NULL, strlen(cases[c].seq), got);
        assert_string_equal(got, cases[c].seq);
        fx_done(&f);
        sl_target_states_free();
    }
}

/* Idle targets follow the weights exactly; counting connections as the caller does spreads
 * them by weight too. */
static void test_least_conn_weights(void **state)
{
    static const struct tdef t[] = {{.w = 5}, {.w = 1}, {.w = 1}};
    unsigned cnt[3] = {0};
    char got[16];
    struct fx f;

    (void)state;
    fx_build(&f, "tg-lc", SL_ALG_LEAST_CONNECTION, t, 3, 1);
    picks_str(&f, NULL, 7, got);
    assert_string_equal(got, "aabacaa");
    for (int i = 0; i < 700; i++)
        cnt[pick1(&f, NULL) - 'a']++;
    assert_int_equal(cnt[0], 500);
    assert_int_equal(cnt[1], 100);
    assert_int_equal(cnt[2], 100);

    /* the caller counts open connections: 70 long-lived ones end up 50/10/10 */
    for (int i = 0; i < 70; i++) {
        char ch = pick1(&f, NULL);

        atomic_fetch_add(&fx_state(&f, (size_t)(ch - 'a'))->active, 1);
    }
    assert_int_equal(atomic_load(&fx_state(&f, 0)->active), 50);
    assert_int_equal(atomic_load(&fx_state(&f, 1)->active), 10);
    assert_int_equal(atomic_load(&fx_state(&f, 2)->active), 10);
    /* picks counts every pick */
    assert_int_equal(atomic_load(&fx_state(&f, 0)->picks), 5 + 500 + 50);
    fx_done(&f);
}

/* ---- random ------------------------------------------------------------------------------ */

static void test_random_distribution(void **state)
{
    static const struct {
        struct tdef t[MAX_T];
        size_t n;
        uint64_t seed;
    } cases[] = {
        {{{.w = 5}, {.w = 3}, {.w = 2}}, 3, 1},
        {{{.w = 1}, {.w = 1}}, 2, 42},
        {{{.w = 3}, {.w = 1}}, 2, 0},
        {{{.w = 2}, {.w = 0}, {.w = 2}, {.w = 1, .maint = true}, {.w = 1}}, 5, 12345},
    };
    enum { N = 100000 };

    (void)state;
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        unsigned cnt[MAX_T] = {0}, total_w = 0;
        struct fx f;

        fx_build(&f, "tg-rand", SL_ALG_RANDOM, cases[c].t, cases[c].n, cases[c].seed);
        for (size_t i = 0; i < cases[c].n; i++)
            total_w += cases[c].t[i].maint ? 0 : cases[c].t[i].w;
        for (int i = 0; i < N; i++)
            cnt[pick1(&f, NULL) - 'a']++;
        for (size_t i = 0; i < cases[c].n; i++) {
            double want = cases[c].t[i].maint ? 0 : (double)N * cases[c].t[i].w / total_w;

            if (want == 0) {
                assert_int_equal(cnt[i], 0);
                continue;
            }
            /* within 2 % of the expected count (at least 3 standard deviations here) */
            if (cnt[i] < want * 0.98 || cnt[i] > want * 1.02)
                fail_msg("case %zu target %zu: %u picks, want %.0f", c, i, cnt[i], want);
        }
        fx_done(&f);
        sl_target_states_free();
    }
}

static void test_random_deterministic(void **state)
{
    static const struct tdef t[] = {{.w = 1}, {.w = 1}, {.w = 1}, {.w = 1}};
    char s1[201], s2[201], s3[201];
    struct fx f;

    (void)state;
    fx_build(&f, "tg-rand", SL_ALG_RANDOM, t, 4, 99);
    picks_str(&f, NULL, 200, s1);
    fx_done(&f);
    fx_build(&f, "tg-rand", SL_ALG_RANDOM, t, 4, 99);
    picks_str(&f, NULL, 200, s2);
    fx_done(&f);
    fx_build(&f, "tg-rand", SL_ALG_RANDOM, t, 4, 100);
    picks_str(&f, NULL, 200, s3);
    fx_done(&f);
    assert_string_equal(s1, s2);
    assert_string_not_equal(s1, s3);
}

/* ---- source ip --------------------------------------------------------------------------- */

static struct sl_addr client_n(unsigned i, bool v6)
{
    struct sl_addr a = {0};

    if (v6) {
        a = addr("2001:db8:1234::");
        a.bytes[12] = (uint8_t)(i >> 24);
        a.bytes[13] = (uint8_t)(i >> 16);
        a.bytes[14] = (uint8_t)(i >> 8);
        a.bytes[15] = (uint8_t)i;
    } else {
        /* consecutive addresses from 10.1.0.0: the worst case for a weak hash */
        a = addr("10.1.0.0");
        a.bytes[2] = (uint8_t)(i >> 8);
        a.bytes[3] = (uint8_t)i;
    }
    return a;
}

static void test_source_ip_sticky(void **state)
{
    static const struct tdef t[] = {{.w = 1}, {.w = 2}, {.w = 1}, {.w = 3}};
    static const char *const clients[] = {
        "192.0.2.1", "192.0.2.2", "203.0.113.77", "2001:db8::1", "2001:db8::2", "fe80::1",
    };
    struct fx f;

    (void)state;
    fx_build(&f, "tg-src", SL_ALG_SOURCE_IP, t, 4, 1);
    for (size_t c = 0; c < SL_ARRAY_LEN(clients); c++) {
        struct sl_addr a = addr(clients[c]);
        char first = pick1(&f, &a);

        assert_true(first >= 'a' && first <= 'd');
        for (int i = 0; i < 100; i++)
            assert_int_equal(pick1(&f, &a), first);
    }
    /* a balancer with another seed (another worker) agrees */
    {
        struct fx g;

        fx_build(&g, "tg-src", SL_ALG_SOURCE_IP, t, 4, 777);
        for (size_t c = 0; c < SL_ARRAY_LEN(clients); c++) {
            struct sl_addr a = addr(clients[c]);

            assert_int_equal(pick1(&g, &a), pick1(&f, &a));
        }
        fx_done(&g);
    }
    /* an IPv4-mapped IPv6 client is its IPv4 address */
    {
        struct sl_addr v4 = addr("192.0.2.55"), mapped = addr("::ffff:192.0.2.55");

        assert_int_equal(pick1(&f, &v4), pick1(&f, &mapped));
        v4.bytes[10] = 0xaa; /* past the v4 address: ignored */
        assert_int_equal(pick1(&f, &v4), pick1(&f, &mapped));
    }
    fx_done(&f);
}

static void test_source_ip_distribution(void **state)
{
    static const struct {
        struct tdef t[MAX_T];
        size_t n;
        bool v6;
    } cases[] = {
        {{{.w = 3}, {.w = 1}}, 2, false},
        {{{.w = 3}, {.w = 1}}, 2, true},
        {{{.w = 1}, {.w = 1}, {.w = 1}, {.w = 1}}, 4, false},
        {{{.w = 2}, {.w = 1}, {.w = 1}}, 3, true},
    };
    enum { N = 10000 };

    (void)state;
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        unsigned cnt[MAX_T] = {0}, total_w = 0;
        struct fx f;

        fx_build(&f, "tg-src", SL_ALG_SOURCE_IP, cases[c].t, cases[c].n, 1);
        for (size_t i = 0; i < cases[c].n; i++)
            total_w += cases[c].t[i].w;
        for (unsigned i = 0; i < N; i++) {
            struct sl_addr a = client_n(i, cases[c].v6);

            cnt[pick1(&f, &a) - 'a']++;
        }
        for (size_t i = 0; i < cases[c].n; i++) {
            double want = (double)N * cases[c].t[i].w / total_w;

            if (cnt[i] < want * 0.95 || cnt[i] > want * 1.05)
                fail_msg("case %zu target %zu: %u clients, want %.0f", c, i, cnt[i], want);
        }
        fx_done(&f);
        sl_target_states_free();
    }
}

/* A target going down moves only its own clients, and they come back when it does; a
 * target removed from the config (a new snapshot) likewise. */
static void test_source_ip_minimal_move(void **state)
{
    static const struct tdef t[] = {{.w = 1}, {.w = 1}, {.w = 2}, {.w = 1}, {.w = 1}};
    enum { N = 4000 };
    static char before[N], after[N];
    unsigned moved = 0;
    struct fx f, g;

    (void)state;
    for (int v6 = 0; v6 < 2; v6++) {
        fx_build(&f, "tg-src", SL_ALG_SOURCE_IP, t, SL_ARRAY_LEN(t), 1);
        for (unsigned i = 0; i < N; i++) {
            struct sl_addr a = client_n(i, v6);

            before[i] = pick1(&f, &a);
        }
        atomic_store(&fx_state(&f, 2)->down, true);
        moved = 0;
        for (unsigned i = 0; i < N; i++) {
            struct sl_addr a = client_n(i, v6);

            after[i] = pick1(&f, &a);
            if (before[i] == 'c') {
                assert_int_not_equal(after[i], 'c');
                moved++;
            } else {
                assert_int_equal(after[i], before[i]);
            }
        }
        /* weight 2 of 6: about a third of the clients were c's */
        assert_true(moved > N / 4 && moved < N * 5 / 12);
        atomic_store(&fx_state(&f, 2)->down, false);
        for (unsigned i = 0; i < N; i++) {
            struct sl_addr a = client_n(i, v6);

            assert_int_equal(pick1(&f, &a), before[i]);
        }

        /* a new snapshot without b (10.0.0.2): indices shift, addresses don't */
        memset(&g, 0, sizeof(g));
        g.t[0] = f.t[0];
        g.t[1] = f.t[2];
        g.t[2] = f.t[3];
        g.t[3] = f.t[4];
        g.g = f.g;
        g.g.targets = g.t;
        g.g.n_targets = 4;
        g.cfg.tgroups = &g.g;
        g.cfg.n_tgroups = 1;
        g.b = sl_balancer_new(&g.cfg, 5);
        assert_non_null(g.b);
        for (unsigned i = 0; i < N; i++) {
            static const char map[] = "acde"; /* g's index -> f's letter */
            struct sl_addr a = client_n(i, v6);
            char now = map[pick1(&g, &a) - 'a'];

            if (before[i] == 'b')
                assert_int_not_equal(now, 'b');
            else
                assert_int_equal(now, before[i]);
        }
        sl_balancer_free(g.b);
        fx_done(&f);
        sl_target_states_free();
    }
}

/* A retry goes to the client's next choice, which is again stable. */
static void test_source_ip_tried(void **state)
{
    static const struct tdef t[] = {{.w = 1}, {.w = 1}, {.w = 1}, {.w = 1}};
    struct sl_addr a = addr("2001:db8::42");
    struct sl_tried t1 = {0}, t2 = {0};
    struct sl_pick p1, p2;
    struct fx f;

    (void)state;
    fx_build(&f, "tg-src", SL_ALG_SOURCE_IP, t, 4, 1);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(sl_balancer_pick(f.b, &f.g, &a, &t1, &p1), SL_OK);
        assert_int_equal(sl_balancer_pick(f.b, &f.g, &a, &t2, &p2), SL_OK);
        assert_int_equal(p1.index, p2.index);
    }
    assert_int_equal(t1.n, 3);
    assert_true(t1.idx[0] != t1.idx[1] && t1.idx[1] != t1.idx[2] && t1.idx[0] != t1.idx[2]);
    fx_done(&f);
}

/* ---- registry ---------------------------------------------------------------------------- */

static void test_registry_keys(void **state)
{
    struct sl_target t1 = {.addr = addr("10.0.0.1"), .port = 80, .weight = 1};
    struct sl_target t1b = t1, t2 = t1, t3 = t1;
    struct sl_target_group g1 = {.id = "tg-1", .name = "one"};
    struct sl_target_group g1b = {.id = "tg-1", .name = "renamed"};
    struct sl_target_group g2 = {.id = "tg-2", .name = "one"};
    struct sl_target_group n1 = {.id = NULL, .name = "one"};
    struct sl_target_group n1b = {.id = NULL, .name = "one"};
    struct sl_target_group n_id = {.id = NULL, .name = "tg-1"};
    struct sl_target_state *s;

    (void)state;
    t1b.ip = "somewhere else, same mapped address"; /* the key is the mapped address */
    t1b.port_orig = 8080;
    t2.port = 81;
    t3.addr = addr("10.0.0.2");
    s = sl_target_state_get(&g1, &t1);
    assert_non_null(s);
    assert_false(atomic_load(&s->down));
    assert_int_equal(atomic_load(&s->active), 0);
    assert_ptr_equal(sl_target_state_get(&g1, &t1), s);
    assert_ptr_equal(sl_target_state_get(&g1, &t1b), s);
    assert_ptr_equal(sl_target_state_get(&g1b, &t1), s);
    t1b.addr.bytes[9] = 0x55; /* past the v4 address: not part of the key */
    assert_ptr_equal(sl_target_state_get(&g1, &t1b), s);    /* id wins over name */
    assert_ptr_not_equal(sl_target_state_get(&g1, &t2), s); /* other port */
    assert_ptr_not_equal(sl_target_state_get(&g1, &t3), s); /* other address */
    assert_ptr_not_equal(sl_target_state_get(&g2, &t1), s); /* other group */
    assert_ptr_not_equal(sl_target_state_get(&n1, &t1), s); /* by name */
    assert_ptr_equal(sl_target_state_get(&n1, &t1), sl_target_state_get(&n1b, &t1));
    assert_ptr_not_equal(sl_target_state_get(&n_id, &t1), s); /* a name is not an id */
    assert_ptr_equal(sl_target_state_get(&g1, &t2), sl_target_state_get(&g1, &t2));
    /* IPv6 and many entries (the table grows) */
    for (unsigned i = 0; i < 1000; i++) {
        struct sl_target t = {.addr = addr("2001:db8::"), .port = (uint16_t)(i % 7)};
        struct sl_target_state *a;

        t.addr.bytes[14] = (uint8_t)(i >> 8);
        t.addr.bytes[15] = (uint8_t)i;
        a = sl_target_state_get(&g1, &t);
        assert_non_null(a);
        atomic_store(&a->picks, i);
    }
    for (unsigned i = 0; i < 1000; i++) {
        struct sl_target t = {.addr = addr("2001:db8::"), .port = (uint16_t)(i % 7)};

        t.addr.bytes[14] = (uint8_t)(i >> 8);
        t.addr.bytes[15] = (uint8_t)i;
        assert_int_equal(atomic_load(&sl_target_state_get(&g1, &t)->picks), i);
    }
    assert_ptr_equal(sl_target_state_get(&g1, &t1), s);
}

#define RELOAD_JSON(targets)                                                                       \
    "{\"targetGroups\": [{\"id\": \"tg1\", \"properties\": {\"name\": \"g1\", "                    \
    "\"algorithm\": \"ROUND_ROBIN\", \"protocol\": \"HTTP\", \"targets\": [" targets "]}}]}"

static struct sl_config *load(const char *json)
{
    struct sl_diags d;
    struct sl_config *c;

    sl_diags_init(&d, "t.json");
    c = sl_config_load_buffer("t.json", json, strlen(json), NULL, &d);
    if (!c)
        sl_diags_print(&d, stderr);
    sl_diags_deinit(&d);
    assert_non_null(c);
    return c;
}

/* Health and counters survive a reload: the second snapshot's balancer binds the same
 * states, even with the targets reordered and one added. */
static void test_registry_reload(void **state)
{
    struct sl_config *c1 = load(RELOAD_JSON("{\"ip\": \"10.0.0.1\", \"port\": 80, \"weight\": 1},"
                                            "{\"ip\": \"10.0.0.2\", \"port\": 80, \"weight\": 1}"));
    struct sl_config *c2 = load(RELOAD_JSON("{\"ip\": \"10.0.0.3\", \"port\": 80, \"weight\": 1},"
                                            "{\"ip\": \"10.0.0.2\", \"port\": 80, \"weight\": 1},"
                                            "{\"ip\": \"10.0.0.1\", \"port\": 80, \"weight\": 1}"));
    struct sl_balancer *b1 = sl_balancer_new(c1, 1), *b2;
    struct sl_target_state *s1[2] = {NULL};
    struct sl_tried tried = {0};
    struct sl_pick p;

    (void)state;
    assert_non_null(b1);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(sl_balancer_pick(b1, &c1->tgroups[0], NULL, &tried, &p), SL_OK);
        s1[p.index] = p.state;
    }
    assert_non_null(s1[0]);
    assert_non_null(s1[1]);
    atomic_store(&s1[1]->down, true); /* the health checker marks 10.0.0.2 down */

    b2 = sl_balancer_new(c2, 2);
    assert_non_null(b2);
    assert_ptr_equal(sl_target_state_get(&c2->tgroups[0], &c2->tgroups[0].targets[2]), s1[0]);
    assert_ptr_equal(sl_target_state_get(&c2->tgroups[0], &c2->tgroups[0].targets[1]), s1[1]);
    for (int k = 0; k < 30; k++) {
        struct sl_tried t = {0};

        assert_int_equal(sl_balancer_pick(b2, &c2->tgroups[0], NULL, &t, &p), SL_OK);
        assert_int_not_equal(p.index, 1); /* still down after the reload */
        assert_ptr_equal(p.state,
                         p.index == 2 ? s1[0] : sl_target_state_get(&c2->tgroups[0], p.target));
    }
    /* one pick each in b1, then 15 of 10.0.0.1 in b2 */
    assert_int_equal(atomic_load(&s1[0]->picks), 16);
    assert_int_equal(atomic_load(&s1[1]->picks), 1);
    sl_balancer_free(b1);
    sl_config_unref(c1);
    sl_balancer_free(b2);
    sl_config_unref(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_swrr_sequences, teardown),
        cmocka_unit_test_teardown(test_skip_ineligible, teardown),
        cmocka_unit_test_teardown(test_swrr_skip_sequence, teardown),
        cmocka_unit_test_teardown(test_tried, teardown),
        cmocka_unit_test_teardown(test_swrr_tried_sequence, teardown),
        cmocka_unit_test_teardown(test_all_ineligible, teardown),
        cmocka_unit_test_teardown(test_least_conn_min, teardown),
        cmocka_unit_test_teardown(test_least_conn_weights, teardown),
        cmocka_unit_test_teardown(test_random_distribution, teardown),
        cmocka_unit_test_teardown(test_random_deterministic, teardown),
        cmocka_unit_test_teardown(test_source_ip_sticky, teardown),
        cmocka_unit_test_teardown(test_source_ip_distribution, teardown),
        cmocka_unit_test_teardown(test_source_ip_minimal_move, teardown),
        cmocka_unit_test_teardown(test_source_ip_tried, teardown),
        cmocka_unit_test_teardown(test_registry_keys, teardown),
        cmocka_unit_test_teardown(test_registry_reload, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
