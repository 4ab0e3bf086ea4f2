/* Target selection (see balancer.h for the algorithms and what makes a target eligible), and
 * the process-wide registry of shared target state that outlives config snapshots. The
 * balancer itself is per worker and per snapshot: it owns the SWRR weights, the PRNG and the
 * per-target hashes, and never locks or allocates while picking. Opening, counting and
 * closing the connection belong to the caller. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/balancer.h"
#include "sluice/common.h"

/* ---- shared target state registry ---------------------------------------------------------- */

struct reg_entry {
    /* Its own cache line: every worker bumps these counters, and the neighbours' keys and
     * links must not bounce with them. */
    _Alignas(64) struct sl_target_state st;
    struct reg_entry *next;
    uint64_t hash;
    struct sl_addr addr;
    uint16_t port;
    char kind; /* 'i' keyed by group id, 'n' by name: an id never aliases another's name */
    char group[];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry **reg_buckets;
static size_t reg_nbuckets; /* a power of two, or 0 before first use */
static size_t reg_count;

/* splitmix64's finaliser: every input bit affects every output bit, which both the registry
 * buckets and the rendezvous scores rely on. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* The 16 address bytes as two words, loaded bytewise so alignment and endianness play no
 * part (the result must not depend on the host for tests to hold everywhere). */
static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Hashes only the bytes that make the address (as sl_addr_equal compares them): whatever
 * follows a v4 address in struct sl_addr is not part of it. */
static uint64_t addr_port_hash(const struct sl_addr *a, uint16_t port, uint64_t h)
{
    uint8_t b[16] = {0};

    memcpy(b, a->bytes, a->family == AF_INET6 ? 16 : a->family == AF_INET ? 4 : 0);
    h = mix64(h ^ ((uint64_t)a->family << 16 | port));
    h = mix64(h ^ load64(b));
    return mix64(h ^ load64(b + 8));
}

static void group_key(const struct sl_target_group *g, char *kind, const char **key)
{
    *kind = g->id ? 'i' : 'n';
    *key = g->id ? g->id : g->name ? g->name : "";
}

static uint64_t reg_hash(char kind, const char *group, const struct sl_addr *a, uint16_t port)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (unsigned char)kind; /* FNV-1a over the name */

    for (const unsigned char *p = (const unsigned char *)group; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return addr_port_hash(a, port, h);
}

static int reg_grow(void)
{
    size_t n = reg_nbuckets ? reg_nbuckets * 2 : 64;
    struct reg_entry **b = calloc(n, sizeof(*b));

    if (!b)
        return -1;
    for (size_t i = 0; i < reg_nbuckets; i++) {
        struct reg_entry *e = reg_buckets[i], *next;

        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(reg_buckets);
    reg_buckets = b;
    reg_nbuckets = n;
    return 0;
}

static bool reg_match(const struct reg_entry *e, uint64_t h, char kind, const char *group,
                      const struct sl_addr *a, uint16_t port)
{
    return e->hash == h && e->kind == kind && e->port == port && sl_addr_equal(&e->addr, a) &&
           strcmp(e->group, group) == 0;
}

/* Returns the shared state of <target> in <group>, creating it zeroed (up, idle) on first
 * use. Thread-safe; only meant for config adoption. The pointer stays valid, and is returned
 * again for the same group id (or name) and mapped ip:port, until sl_target_states_free().
 * NULL on out-of-memory. */
struct sl_target_state *sl_target_state_get(const struct sl_target_group *group,
                                            const struct sl_target *target)
{
    struct sl_target_state *st = NULL;
    struct reg_entry *e;
    const char *key;
    size_t klen, size;
    char kind;
    uint64_t h;

    group_key(group, &kind, &key);
    h = reg_hash(kind, key, &target->addr, target->port);
    pthread_mutex_lock(&reg_lock);
    if (reg_nbuckets) {
        for (e = reg_buckets[h & (reg_nbuckets - 1)]; e; e = e->next) {
            if (reg_match(e, h, kind, key, &target->addr, target->port)) {
                st = &e->st;
                goto out;
            }
        }
    }
    if (reg_count >= reg_nbuckets && reg_grow() == -1)
        goto out;
    klen = strlen(key);
    /* aligned_alloc wants a multiple of the alignment */
    size = (sizeof(*e) + klen + 1 + 63) & ~(size_t)63;
    e = aligned_alloc(64, size);
    if (!e)
        goto out;
    memset(e, 0, size);
    atomic_init(&e->st.active, 0);
    atomic_init(&e->st.down, false);
    atomic_init(&e->st.picks, 0);
    atomic_init(&e->st.fails, 0);
    e->hash = h;
    e->addr = target->addr;
    e->port = target->port;
    e->kind = kind;
    memcpy(e->group, key, klen + 1);
    e->next = reg_buckets[h & (reg_nbuckets - 1)];
    reg_buckets[h & (reg_nbuckets - 1)] = e;
    reg_count++;
    st = &e->st;
out:
    pthread_mutex_unlock(&reg_lock);
    return st;
}

/* Frees every registry entry; pointers handed out before become invalid. Call at exit, once
 * no worker runs. The registry can be used again afterwards (tests do). */
void sl_target_states_free(void)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_nbuckets; i++) {
        struct reg_entry *e = reg_buckets[i], *next;

        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(reg_buckets);
    reg_buckets = NULL;
    reg_nbuckets = 0;
    reg_count = 0;
    pthread_mutex_unlock(&reg_lock);
}

/* ---- per-worker balancer ------------------------------------------------------------------- */

struct bal_target {
    int64_t current;   /* SWRR current_weight */
    int64_t effective; /* SWRR effective_weight: the weight, as nothing lowers it yet */
    unsigned active;   /* LEAST_CONNECTION: this pick's snapshot of state->active */
    bool cand;         /* this pick's candidate set; kept here so that picking never allocates */
    uint64_t hash;     /* SOURCE_IP: the target's ip:port, premixed */
    struct sl_target_state *state;
};

struct bal_group {
    struct bal_target *t;
    size_t n;
};

struct sl_balancer {
    const struct sl_config *cfg;
    struct bal_group *groups;   /* parallel to cfg->tgroups */
    struct bal_target *targets; /* every group's, in one block */
    uint64_t rng;               /* xorshift64* state, never 0 */
};

/* One worker's balancer for <cfg>, which must outlive it; <seed> seeds RANDOM. Binds every
 * target to its shared state in the registry (taking the registry lock once per target).
 * Returns the balancer, owned by the caller (sl_balancer_free), or NULL on out-of-memory. */
struct sl_balancer *sl_balancer_new(const struct sl_config *cfg, uint64_t seed)
{
    struct sl_balancer *b = calloc(1, sizeof(*b));
    size_t total = 0, k = 0;

    if (!b)
        return NULL;
    b->cfg = cfg;
    /* splitmix64 turns any seed, 0 and small worker numbers included, into a well-spread
     * state; xorshift64* must not start at 0 */
    b->rng = mix64(seed + 0x9e3779b97f4a7c15ULL);
    if (b->rng == 0)
        b->rng = 0x9e3779b97f4a7c15ULL;
    for (size_t g = 0; g < cfg->n_tgroups; g++)
        total += cfg->tgroups[g].n_targets;
    b->groups = calloc(cfg->n_tgroups ? cfg->n_tgroups : 1, sizeof(*b->groups));
    b->targets = calloc(total ? total : 1, sizeof(*b->targets));
    if (!b->groups || !b->targets)
        goto fail;
    for (size_t g = 0; g < cfg->n_tgroups; g++) {
        const struct sl_target_group *grp = &cfg->tgroups[g];

        b->groups[g].t = b->targets + k;
        b->groups[g].n = grp->n_targets;
        for (size_t i = 0; i < grp->n_targets; i++, k++) {
            const struct sl_target *t = &grp->targets[i];
            struct bal_target *bt = &b->targets[k];

            bt->effective = t->weight;
            bt->hash = addr_port_hash(&t->addr, t->port, 0x5d1ce5a17ULL);
            bt->state = sl_target_state_get(grp, t);
            if (!bt->state)
                goto fail;
        }
    }
    return b;
fail:
    sl_balancer_free(b);
    return NULL;
}

/* Frees <b> (NULL is fine). The shared states stay in the registry. */
void sl_balancer_free(struct sl_balancer *b)
{
    if (!b)
        return;
    free(b->targets);
    free(b->groups);
    free(b);
}

static bool tried_has(const struct sl_tried *tried, unsigned i)
{
    for (unsigned k = 0; k < tried->n; k++) {
        if (tried->idx[k] == i)
            return true;
    }
    return false;
}

static bool eligible(const struct sl_target *t, const struct bal_target *bt,
                     const struct sl_tried *tried, unsigned i)
{
    /* relaxed: "down" publishes no other data, and a pick that races the health checker by a
     * few nanoseconds is no different from one a few nanoseconds earlier */
    return t->weight > 0 && !t->maintenance_enabled &&
           !atomic_load_explicit(&bt->state->down, memory_order_relaxed) && !tried_has(tried, i);
}

/* nginx's smooth weighted round robin over the candidates (STYLE-EXAMPLES §9). Other targets
 * keep their current weight, so a target coming back resumes where it stood. -1 when there
 * is no candidate. */
static int swrr(struct bal_target *bt, size_t n)
{
    int64_t total = 0;
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        if (!bt[i].cand)
            continue;
        bt[i].current += bt[i].effective;
        total += bt[i].effective;
        if (best < 0 || bt[i].current > bt[best].current)
            best = (int)i; /* strict >: a tie goes to the first in list order */
    }
    if (best >= 0)
        bt[best].current -= total;
    return best;
}

/* ln(x) for x in (0, 1], exactly x = v / 2^53 with v in [1, 2^53]. libm's log() would add a
 * link dependency the core does not have; this only has to order rendezvous scores, and its
 * relative error (< 1e-13) is far below what a 53-bit hash resolves. The reduction keeps the
 * mantissa within [1/sqrt2, sqrt2), where m - 1 is exact (Sterbenz), so ln stays accurate
 * near x = 1 too, where -ln(x) is tiny and the score largest. */
static double ln_unit(uint64_t v)
{
    static const double ln2 = 0.69314718055994530942;
    static const double inv_odd[] = {1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9,
                                     1.0 / 7,  1.0 / 5,  1.0 / 3,  1.0};
    int e = 63 - __builtin_clzll(v); /* v = m * 2^e, m in [1, 2) */
    double m = (double)v / (double)(1ULL << e);

    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e++;
    }
    /* ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1), |s| < 0.172: the
     * terms past s^15 are below double precision. Horner, from the last term. */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, p = 0;

    for (size_t k = 0; k < SL_ARRAY_LEN(inv_odd); k++)
        p = p * s2 + inv_odd[k];
    return (e - 53) * ln2 + 2.0 * s * p;
}

/* The client's address as the rendezvous key. An IPv4-mapped IPv6 address is the IPv4
 * client it stands for, so a dual-stack listener hashes it like a v4 one. */
static uint64_t client_hash(const struct sl_addr *c)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct sl_addr a = {0};

    if (!c) {
        /* no address (e.g. a unix socket): everyone is the same client */
    } else if (c->family == AF_INET6 && memcmp(c->bytes, v4mapped, 12) == 0) {
        a.family = AF_INET;
        memcpy(a.bytes, c->bytes + 12, 4);
    } else {
        a = *c;
    }
    return addr_port_hash(&a, 0, 0x50c1a7e5ULL);
}

static int pick_least_conn(struct bal_target *bt, size_t n)
{
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        if (!bt[i].cand)
            continue;
        /* One snapshot per pick: other workers change active meanwhile, and the tie pass
         * below must see the same numbers as this one. */
        bt[i].active = atomic_load_explicit(&bt[i].state->active, memory_order_relaxed);
        if (best < 0 || (uint64_t)bt[i].active * (uint64_t)bt[best].effective <
                            (uint64_t)bt[best].active * (uint64_t)bt[i].effective)
            best = (int)i;
    }
    if (best < 0)
        return -1;
    /* Among those as loaded as the least loaded, SWRR, so an idle group follows the weights
     * exactly instead of always taking the first target. */
    for (size_t i = 0; i < n; i++) {
        if (bt[i].cand)
            bt[i].cand = (uint64_t)bt[i].active * (uint64_t)bt[best].effective ==
                         (uint64_t)bt[best].active * (uint64_t)bt[i].effective;
    }
    return swrr(bt, n);
}

static int pick_random(struct sl_balancer *b, struct bal_target *bt, size_t n)
{
    uint64_t total = 0, r;

    for (size_t i = 0; i < n; i++)
        total += bt[i].cand ? (uint64_t)bt[i].effective : 0;
    if (total == 0)
        return -1;
    /* the modulo bias is total / 2^64, far below anything measurable */
    r = sl_xorshift64s(&b->rng) % total;
    for (size_t i = 0; i < n; i++) {
        if (!bt[i].cand)
            continue;
        if (r < (uint64_t)bt[i].effective)
            return (int)i;
        r -= (uint64_t)bt[i].effective;
    }
    return -1; /* not reached */
}

/* Weighted rendezvous hashing: score = weight / -ln(h), h uniform in (0, 1) per (client,
 * target). The largest score wins; P(target i) = w_i / sum(w) (the scores are exponential
 * variables with rates w_i), and removing a target changes no other target's score, so only
 * its own clients move. */
static int pick_source_ip(struct bal_target *bt, size_t n, const struct sl_addr *client)
{
    uint64_t c = client_hash(client);
    double best_w = 0, best_l = 0;
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        uint64_t h;
        double l, w;

        if (!bt[i].cand)
            continue;
        h = mix64(c ^ bt[i].hash);
        l = -ln_unit((h >> 11) | 1); /* odd 53-bit numerator: never 0, never 2^53 */
        w = (double)bt[i].effective;
        /* w / l > best_w / best_l, without dividing; l > 0 always */
        if (best < 0 || w * best_l > best_w * l) {
            best = (int)i;
            best_w = w;
            best_l = l;
        }
    }
    return best;
}

/* HOT: connect. Picks an eligible target of <group> (an element of the config's tgroups) for
 * the client at <client> by the group's algorithm, adds it to <tried> and counts it in
 * state->picks. Returns SL_OK with <out> filled, or SL_BUSY when <tried> is full or no target
 * is eligible (<tried> and <out> then unchanged). Does not touch state->active. */
int sl_balancer_pick(struct sl_balancer *b, const struct sl_target_group *group,
                     const struct sl_addr *client, struct sl_tried *tried, struct sl_pick *out)
{
    size_t gi = (size_t)(group - b->cfg->tgroups);
    struct bal_target *bt;
    size_t n, ncand = 0;
    int i;

    SL_BUG_ON(gi >= b->cfg->n_tgroups);
    if (tried->n >= SL_BALANCER_MAX_TRIES)
        return SL_BUSY;
    bt = b->groups[gi].t;
    n = b->groups[gi].n;
    for (size_t k = 0; k < n; k++) {
        bt[k].cand = eligible(&group->targets[k], &bt[k], tried, (unsigned)k);
        ncand += bt[k].cand;
    }
    if (ncand == 0)
        return SL_BUSY;
    switch (group->algorithm) {
    case SL_ALG_LEAST_CONNECTION:
        i = pick_least_conn(bt, n);
        break;
    case SL_ALG_RANDOM:
        i = pick_random(b, bt, n);
        break;
    case SL_ALG_SOURCE_IP:
        i = pick_source_ip(bt, n, client);
        break;
    case SL_ALG_ROUND_ROBIN:
    default:
        i = swrr(bt, n);
        break;
    }
    SL_BUG_ON(i < 0);
    tried->idx[tried->n++] = (unsigned)i;
    atomic_fetch_add_explicit(&bt[i].state->picks, 1, memory_order_relaxed);
    out->target = &group->targets[i];
    out->state = bt[i].state;
    out->index = (unsigned)i;
    return SL_OK;
}
