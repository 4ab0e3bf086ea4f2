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
    struct sl_rule_stats s; /* first: the pointer handed out is the entry's */
    struct rule_entry *next;
    char *listener, *frule, *rule;
};

static pthread_mutex_t rules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule_entry *rules;      /* in order of first use: /metrics lists them so */
static struct rule_entry **rules_tail = &rules;

struct sl_rule_stats *sl_rule_stats_get(const char *listener, const char *frule,
                                        const char *rule)
{
    struct rule_entry *e;

    pthread_mutex_lock(&rules_lock);
    for (e = rules; e; e = e->next) {
        if (!strcmp(e->listener, listener) && !strcmp(e->frule, frule) && !strcmp(e->rule, rule))
            goto out;
    }
    e = calloc(1, sizeof(*e));
    if (e) {
        e->listener = strdup(listener);
        e->frule = strdup(frule);
        e->rule = strdup(rule);
        if (!e->listener || !e->frule || !e->rule) {
            free(e->listener);
            free(e->frule);
            free(e->rule);
            free(e);
            e = NULL;
            goto out;
        }
        *rules_tail = e;
        rules_tail = &e->next;
    }
out:
    pthread_mutex_unlock(&rules_lock);
    return e ? &e->s : NULL;
}

void sl_rule_stats_foreach(void (*fn)(const char *listener, const char *frule, const char *rule,
                                      const struct sl_rule_stats *s, void *arg),
                           void *arg)
{
    pthread_mutex_lock(&rules_lock);
    for (struct rule_entry *e = rules; e; e = e->next)
        fn(e->listener, e->frule, e->rule, &e->s, arg);
    pthread_mutex_unlock(&rules_lock);
}

void sl_rule_stats_free(void)
{
    pthread_mutex_lock(&rules_lock);
    while (rules) {
        struct rule_entry *e = rules;

        rules = e->next;
        free(e->listener);
        free(e->frule);
        free(e->rule);
        free(e);
    }
    rules_tail = &rules;
    pthread_mutex_unlock(&rules_lock);
}

int sl_rule_table_init(struct sl_rule_table *t, const struct sl_config *cfg)
{
    size_t n = 0;

    t->base = calloc(cfg->n_frules ? cfg->n_frules : 1, sizeof(*t->base));
    for (size_t i = 0; i < cfg->n_frules; i++)
        n += cfg->frules[i].n_rules + 1;
    t->slots = calloc(n ? n : 1, sizeof(*t->slots));
    if (!t->base || !t->slots) {
        sl_rule_table_free(t);
        return -1;
    }
    n = 0;
    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];
        char lst[SL_ADDR_STRLEN + 8];
        const char *frname = fr->name ? fr->name : fr->id ? fr->id : "";

        /* Labelled with the listener as written (not as mapped): what the operator knows. */
        sl_hostport(fr->listener_ip, fr->port_orig, lst);
        t->base[i] = n;
        t->slots[n++] = sl_rule_stats_get(lst, frname, "");
        for (size_t k = 0; k < fr->n_rules; k++)
            t->slots[n++] = sl_rule_stats_get(lst, frname, fr->rules[k].name ? fr->rules[k].name
                                                                             : "");
    }
    return 0;
}

void sl_rule_table_free(struct sl_rule_table *t)
{
    free(t->base);
    free(t->slots);
    t->base = NULL;
    t->slots = NULL;
}
