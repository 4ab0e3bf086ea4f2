/* config lint: warnings about a valid config that will not do what its author likely meant on
 * an IONOS ALB: the WebSocket pitfalls of the IONOS guide, rules that can never win, IONOS's
 * reordering of FORWARD rules, unused or weightless target groups, listener clashes. Each
 * warning names the JSON path it is about. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/config.h"
#include "sluice/router.h"

static void SL_PRINTF(4, 5) lint(struct sl_diags *d, const struct sl_srcloc *at, const char *sub,
                                 const char *fmt, ...)
{
    char path[600];
    va_list ap;

    snprintf(path, sizeof(path), "%s%s", at->path, sub ? sub : "");
    va_start(ap, fmt);
    sl_diag_vadd(d, SL_DIAG_WARNING, at->line, at->col, path, fmt, ap);
    va_end(ap);
}

static bool key_is(const struct sl_condition *c, const char *name)
{
    return c->type == SL_COND_HEADER && c->key && !strcasecmp(c->key, name);
}

/* A rule that targets WebSocket upgrades: it tests the Upgrade or Connection header. */
static bool is_upgrade_rule(const struct sl_http_rule *r)
{
    size_t i;

    if (r->type != SL_RULE_FORWARD)
        return false;
    for (i = 0; i < r->n_conds; i++)
        if (!r->conds[i].negate && (key_is(&r->conds[i], "Upgrade") ||
                                    key_is(&r->conds[i], "Connection")))
            return true;
    return false;
}

static bool same_condition(const struct sl_condition *a, const struct sl_condition *b)
{
    bool nocase = a->flags & SL_COND_F_NOCASE;

    if (a->type != b->type || a->op != b->op || a->negate != b->negate)
        return false;
    if ((a->key == NULL) != (b->key == NULL) || (a->value == NULL) != (b->value == NULL))
        return false;
    if (a->key && (a->type == SL_COND_HEADER ? strcasecmp(a->key, b->key) : strcmp(a->key, b->key)))
        return false;
    if (a->type == SL_COND_SOURCE_IP)
        return a->cidr.prefix == b->cidr.prefix && sl_addr_equal(&a->cidr.addr, &b->cidr.addr);
    if (a->value && (nocase && a->op != SL_OP_MATCHES ? strcasecmp(a->value, b->value)
                                                      : strcmp(a->value, b->value)))
        return false;
    return true;
}

/* Every condition of <a> also stands in <b>: whatever <b> matches, <a> matches too. */
static bool conds_subset(const struct sl_http_rule *a, const struct sl_http_rule *b)
{
    size_t i, j;

    for (i = 0; i < a->n_conds; i++) {
        for (j = 0; j < b->n_conds; j++)
            if (same_condition(&a->conds[i], &b->conds[j]))
                break;
        if (j == b->n_conds)
            return false;
    }
    return true;
}

static size_t lint_rules(const struct sl_forwarding_rule *f, struct sl_diags *d)
{
    size_t n = 0, i, j;

    for (i = 0; i < f->n_rules; i++) {
        const struct sl_http_rule *r = &f->rules[i];

        for (j = 0; j < r->n_conds; j++) {
            const struct sl_condition *c = &r->conds[j];

            if (!key_is(c, "Connection") || c->negate || c->op != SL_OP_EQUALS ||
                strcasecmp(c->value, "upgrade"))
                continue;
            lint(d, &c->loc, NULL,
                 "Connection EQUALS \"%s\" misses Firefox's \"Connection: keep-alive, Upgrade\" "
                 "on a balancer that compares the whole value (IONOS does not document that it "
                 "splits the list; sluice does): test the Upgrade header alone (Upgrade EQUALS "
                 "websocket) or use MATCHES \"(?i)\\bupgrade\\b\"", c->value);
            n++;
        }
        /* IONOS moves every FORWARD rule behind the STATIC and REDIRECT rules. */
        if (r->type == SL_RULE_FORWARD) {
            for (j = i + 1; j < f->n_rules; j++) {
                if (f->rules[j].type == SL_RULE_FORWARD)
                    continue;
                lint(d, &r->loc, NULL,
                     "FORWARD rule \"%s\" stands before %s rule \"%s\" (httpRules[%zu]), but IONOS "
                     "evaluates every STATIC and REDIRECT rule before any FORWARD rule: \"%s\" is "
                     "checked first; move \"%s\" after it so the file shows the real order",
                     r->name, sl_rule_type_name(f->rules[j].type), f->rules[j].name, j,
                     f->rules[j].name, r->name);
                n++;
                break;
            }
        }
    }
    /* A rule is dead when an earlier rule (in evaluation order) needs a subset of its
     * conditions. */
    for (j = 1; j < f->n_rules; j++) {
        const struct sl_http_rule *b = f->order[j];

        for (i = 0; i < j; i++) {
            const struct sl_http_rule *a = f->order[i];

            if (!conds_subset(a, b))
                continue;
            if (a->n_conds == 0)
                lint(d, &b->loc, NULL,
                     "rule \"%s\" can never win: rule \"%s\" (httpRules[%u]) is evaluated before "
                     "it and has no conditions, so it takes every request", b->name, a->name,
                     a->index);
            else
                lint(d, &b->loc, NULL,
                     "rule \"%s\" can never win: rule \"%s\" (httpRules[%u]) is evaluated before "
                     "it and its conditions are a subset of this rule's, so it matches every "
                     "request this one would", b->name, a->name, a->index);
            n++;
            break;
        }
    }
    return n;
}

size_t sl_config_lint(const struct sl_config *c, struct sl_diags *d)
{
    size_t n = 0, i, j, k;

    for (i = 0; i < c->n_frules; i++) {
        const struct sl_forwarding_rule *f = &c->frules[i];

        n += lint_rules(f, d);
        for (j = 0; j < i; j++) {
            const struct sl_forwarding_rule *g = &c->frules[j];
            char at[SL_ADDR_STRLEN + 8];

            if (g->port != f->port || !sl_addr_equal(&g->listen, &f->listen))
                continue;
            lint(d, &f->listener_port_loc, NULL,
                 "forwarding rule \"%s\" listens on %s like %s (\"%s\"): only one of them can "
                 "get the traffic", f->name, sl_addr_format_port(&f->listen, f->port, at),
                 g->loc.path, g->name);
            n++;
            break;
        }
        if (c->alb.present && c->alb.n_ips > 0) {
            struct sl_addr a;
            char ips[256] = "";
            size_t off = 0;

            sl_addr_parse(f->listener_ip, &a);
            for (j = 0; j < c->alb.n_ips; j++) {
                struct sl_addr b;

                if (sl_addr_parse(c->alb.ips[j], &b) == 0 && sl_addr_equal(&a, &b))
                    break;
                if (off < sizeof(ips))
                    off += (size_t)snprintf(ips + off, sizeof(ips) - off, "%s%s",
                                            j ? ", " : "", c->alb.ips[j]);
            }
            if (j == c->alb.n_ips) {
                lint(d, &f->listener_ip_loc, NULL,
                     "%s is not among the ALB's ips (%s): IONOS requires a forwarding rule's "
                     "listenerIp to be one of them", f->listener_ip, ips);
                n++;
            }
        }
    }

    for (k = 0; k < c->n_tgroups; k++) {
        const struct sl_target_group *g = &c->tgroups[k];
        const struct sl_http_rule *upgrade = NULL;
        const struct sl_forwarding_rule *upgrade_fr = NULL;
        bool used = false, any_weight = false;

        for (i = 0; i < c->n_frules; i++) {
            for (j = 0; j < c->frules[i].n_rules; j++) {
                const struct sl_http_rule *r = &c->frules[i].rules[j];

                if (r->type != SL_RULE_FORWARD || r->group != g)
                    continue;
                used = true;
                if (!upgrade && is_upgrade_rule(r)) {
                    upgrade = r;
                    upgrade_fr = &c->frules[i];
                }
            }
        }
        if (!used) {
            lint(d, &g->loc, NULL, "target group \"%s\" is used by no FORWARD rule", g->name);
            n++;
        }
        if (upgrade && g->http_check) {
            lint(d, &g->http_check->loc, NULL,
                 "target group \"%s\" has an HTTP health check, and rule \"%s\" of forwarding "
                 "rule \"%s\" forwards WebSocket upgrades to it: as the IONOS WebSocket guide "
                 "warns, its targets become unavailable (a WebSocket server answers a plain "
                 "request with 400 or 426); remove httpHealthCheck and keep the TCP check "
                 "(healthCheckEnabled)", g->name, upgrade->name, upgrade_fr->name);
            n++;
        }
        for (j = 0; j < g->n_targets; j++)
            any_weight |= g->targets[j].weight > 0;
        if (g->n_targets > 0 && !any_weight) {
            lint(d, &g->targets_loc, NULL,
                 "every target of \"%s\" has weight 0: the group gets no new connections "
                 "(weight is 0 to 256, default 1)", g->name);
            n++;
        } else if (g->n_targets == 0 && used) {
            lint(d, &g->targets_loc, NULL,
                 "target group \"%s\" has no targets: requests forwarded to it get 503", g->name);
            n++;
        }
    }
    return n;
}
