/* Counters for the admin endpoints (see metrics.h): the per-rule registry and its per-snapshot
 * lookup tables. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/addr.h"
#include "sluice/metrics.h"

struct sl_config_info sl_config_info;

struct rule_entry {
    struct rule_entry *next;
    char *listener, *frule, *rule;
    struct sl_rule_stats *w; /* one block per worker, cache-line aligned */
    size_t refs;             /* worker tables that hold it: 0 = not in any running config */
};

static pthread_mutex_t rules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule_entry *rules; /* in order of first use: /metrics lists them so */
static struct rule_entry **rules_tail = &rules;
static unsigned n_workers;

int sl_rule_stats_init(unsigned n)
{
    int rc = 0;

    pthread_mutex_lock(&rules_lock);
    if (n_workers && n_workers != n)
        rc = -1;
    else
        n_workers = n;
    pthread_mutex_unlock(&rules_lock);
    return rc;
}

static void entry_free(struct rule_entry *e)
{
    free(e->listener);
    free(e->frule);
    free(e->rule);
    free(e->w);
    free(e);
}

/* The registry's entry for the rule, made on first use; NULL on out-of-memory. Under
 * rules_lock. */
static struct rule_entry *entry_get(const char *listener, const char *frule, const char *rule)
{
    struct rule_entry *e;
    size_t sz = (n_workers ? n_workers : 1) * sizeof(struct sl_rule_stats);

    for (e = rules; e; e = e->next)
        if (!strcmp(e->listener, listener) && !strcmp(e->frule, frule) && !strcmp(e->rule, rule))
            return e;
    if (!(e = calloc(1, sizeof(*e))))
        return NULL;
    e->listener = strdup(listener);
    e->frule = strdup(frule);
    e->rule = strdup(rule);
    e->w = aligned_alloc(64, sz);
    if (!e->listener || !e->frule || !e->rule || !e->w) {
        entry_free(e);
        return NULL;
    }
    memset(e->w, 0, sz);
    *rules_tail = e;
    rules_tail = &e->next;
    return e;
}

void sl_rule_stats_foreach(void (*fn)(const char *listener, const char *frule, const char *rule,
                                      const uint64_t by_class[6], void *arg),
                           void *arg)
{
    pthread_mutex_lock(&rules_lock);
    for (struct rule_entry *e = rules; e; e = e->next) {
        uint64_t sum[6] = {0};

        if (e->refs == 0)
            continue;
        for (unsigned w = 0; w < (n_workers ? n_workers : 1); w++)
            for (int k = 0; k < 6; k++)
                sum[k] += sl_stat_get(&e->w[w].by_class[k]);
        fn(e->listener, e->frule, e->rule, sum, arg);
    }
    pthread_mutex_unlock(&rules_lock);
}

void sl_rule_stats_free(void)
{
    pthread_mutex_lock(&rules_lock);
    while (rules) {
        struct rule_entry *e = rules;

        rules = e->next;
        entry_free(e);
    }
    rules_tail = &rules;
    n_workers = 0;
    pthread_mutex_unlock(&rules_lock);
}

int sl_rule_table_init(struct sl_rule_table *t, const struct sl_config *cfg, unsigned worker)
{
    size_t n = 0;

    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < cfg->n_frules; i++)
        n += cfg->frules[i].n_rules + 1;
    t->base = calloc(cfg->n_frules ? cfg->n_frules : 1, sizeof(*t->base));
    t->slots = calloc(n ? n : 1, sizeof(*t->slots));
    t->entries = calloc(n ? n : 1, sizeof(*t->entries));
    if (!t->base || !t->slots || !t->entries) {
        sl_rule_table_free(t);
        return -1;
    }
    pthread_mutex_lock(&rules_lock);
    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];
        char lst[SL_ADDR_STRLEN + 8];

        /* Labelled with the listener as written (not as mapped): what the operator knows. */
        sl_hostport(fr->listener_ip, fr->port_orig, lst);
        t->base[i] = t->n;
        for (size_t k = 0; k <= fr->n_rules; k++) {
            struct rule_entry *e = entry_get(lst, fr->name, k ? fr->rules[k - 1].name : "");

            /* out of memory: that rule's requests go uncounted, nothing else breaks */
            if (e && worker < (n_workers ? n_workers : 1)) {
                e->refs++;
                t->slots[t->n] = &e->w[worker];
            }
            t->entries[t->n] = t->slots[t->n] ? e : NULL;
            t->n++;
        }
    }
    pthread_mutex_unlock(&rules_lock);
    return 0;
}

void sl_rule_table_free(struct sl_rule_table *t)
{
    pthread_mutex_lock(&rules_lock);
    for (size_t i = 0; t->entries && i < t->n; i++)
        if (t->entries[i])
            ((struct rule_entry *)t->entries[i])->refs--;
    pthread_mutex_unlock(&rules_lock);
    free(t->base);
    free(t->slots);
    free(t->entries);
    memset(t, 0, sizeof(*t));
}
