/* The counters behind /metrics and /status. Workers count without locks and without sharing
 * cache lines on the hot path: each worker has its own struct sl_worker_stats that only it
 * writes (plain relaxed loads and stores, no locked instructions); the admin endpoint sums
 * them. Requests by rule are counted in a process-wide registry of per-rule counters that
 * survives config snapshots (keyed by forwarding rule and http rule name), one relaxed atomic
 * add per request. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "sluice/common.h"
#include "sluice/config-t.h"

typedef atomic_uint_fast64_t sl_counter;

/* Single-writer add: only the owning thread may call it on a counter. */
static inline void sl_stat_add(sl_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void sl_stat_sub(sl_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}
static inline uint64_t sl_stat_get(const sl_counter *c)
{
    return atomic_load_explicit((sl_counter *)c, memory_order_relaxed);
}

/* One worker's counters (written by that worker only). */
struct sl_worker_stats {
    _Alignas(64) sl_counter accepted;  /* client connections accepted */
    sl_counter http_active;            /* client connections in their HTTP phase */
    sl_counter tunnels_active;
    sl_counter tunnels_total;          /* tunnels opened (a 101 relayed) */
    sl_counter tunnel_bytes_up;        /* client -> target through tunnels; live (see upstream.c) */
    sl_counter tunnel_bytes_down;      /* target -> client */
    sl_counter connect_fails[SL_ERR_COUNT]; /* failed target connects, by reason */
    sl_counter no_target;              /* requests answered 503: no target available */
};

/* One worker's requests of one http rule (or of none: refused before routing, or no rule
 * matched), on a cache line of its own: workers never share one on the hot path. */
struct sl_rule_stats {
    _Alignas(64) sl_counter by_class[6]; /* [1] 1xx ... [5] 5xx; [0] ended with no response */
};

/* Before the first sl_rule_table_init: how many workers count (each gets its own block of
 * every rule's counters). 0, or -1 if called again with another number. */
int sl_rule_stats_init(unsigned n_workers);
/* Calls <fn> for every rule of a config some worker runs now (a rule dropped by a reload
 * leaves /metrics; its counts come back with it), its counters summed over the workers. */
void sl_rule_stats_foreach(void (*fn)(const char *listener, const char *frule, const char *rule,
                                      const uint64_t by_class[6], void *arg),
                           void *arg);
void sl_rule_stats_free(void);

/* A worker's lookup table for one config: for each forwarding rule i, slots[base[i]] is "no
 * rule" and slots[base[i] + 1 + k] is its http rule k; entries (opaque) hold the registry's
 * rules for sl_rule_table_free. Made and freed off the hot path (under a lock). */
struct sl_rule_table {
    size_t *base;
    struct sl_rule_stats **slots;
    void **entries;
    size_t n;
};
int sl_rule_table_init(struct sl_rule_table *t, const struct sl_config *cfg, unsigned worker);
void sl_rule_table_free(struct sl_rule_table *t);

/* HOT: one request of <fr> (index in cfg->frules) answered <status> by <rule> (NULL = none),
 * counted by the table's worker alone. */
static inline void sl_rule_table_count(const struct sl_rule_table *t, size_t fr,
                                       const struct sl_http_rule *rule, int status)
{
    struct sl_rule_stats *s = t->slots[t->base[fr] + (rule ? rule->index + 1 : 0)];
    unsigned cls = status >= 100 && status < 600 ? (unsigned)status / 100 : 0;

    if (s)
        sl_stat_add(&s->by_class[cls], 1);
}

/* The running config: set by main when a snapshot is published. */
struct sl_config_info {
    sl_counter generation;      /* 1 for the first config */
    sl_counter load_time_ms;    /* wall clock when it was loaded, ms since the epoch */
    sl_counter load_duration_us; /* how long loading and checking it took */
    sl_counter start_time_ms;   /* process start */
};
extern struct sl_config_info sl_config_info;

#endif
