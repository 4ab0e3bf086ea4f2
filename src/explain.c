/* explain: prints how the router treats one raw HTTP request: which forwarding rule listens,
 * every http rule in IONOS evaluation order with each condition's result, and the action.
 * It uses the same parser (http) and matcher (router) as the data plane. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/explain.h"
#include "sluice/http.h"
#include "sluice/router.h"

/* Converts LF line endings to CRLF when the text has no CR at all (a hand-written file), and
 * ends the head with a blank line if the file stops right after the last header. */
static char *normalise(const char *buf, size_t len, size_t *out_len, bool *converted)
{
    char *o = malloc(2 * len + 5);
    size_t i, n = 0;
    bool has_cr = memchr(buf, '\r', len) != NULL;

    if (!o)
        abort();
    *converted = false;
    for (i = 0; i < len; i++) {
        if (buf[i] == '\n' && !has_cr) {
            o[n++] = '\r';
            *converted = true;
        }
        o[n++] = buf[i];
    }
    o[n] = '\0';
    if (!memmem(o, n, "\r\n\r\n", 4) && n > 0) {
        if (n >= 2 && o[n - 2] == '\r' && o[n - 1] == '\n') {
            memcpy(o + n, "\r\n", 2);
            n += 2;
        } else if (o[n - 1] != '\r' && o[n - 1] != '\n') {
            memcpy(o + n, "\r\n\r\n", 4);
            n += 4;
        }
    }
    *out_len = n;
    return o;
}

/* Prints <s> quoted, with control characters escaped, so a body stays on one line. */
static void put_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '\r')
            fputs("\\r", out);
        else if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void show_cond(FILE *out, const struct sl_condition *c)
{
    fprintf(out, "%s%s", c->negate ? "NOT " : "", sl_cond_type_name(c->type));
    if (c->key)
        fprintf(out, " \"%s\"", c->key);
    if (c->type == SL_COND_SOURCE_IP) {
        fprintf(out, " in %s", c->value);
        return;
    }
    fprintf(out, " %s", sl_cond_op_name(c->op));
    if (c->value)
        fprintf(out, " \"%s\"", c->value);
}

/* What the request offered to a condition, so a reader sees why it held or not. */
static void show_seen(FILE *out, const struct sl_condition *c, const struct sl_request *r)
{
    char ip[SL_ADDR_STRLEN];
    size_t i, shown = 0;

    switch (c->type) {
    case SL_COND_HEADER:
    case SL_COND_COOKIE: {
        const char *name = c->type == SL_COND_HEADER ? c->key : "Cookie";

        for (i = 0; i < r->n_headers; i++) {
            if (r->headers[i].name_len != strlen(name) ||
                strncasecmp(r->headers[i].name, name, r->headers[i].name_len))
                continue;
            fprintf(out, "%s%.*s: %.*s", shown++ ? "; " : "", (int)r->headers[i].name_len,
                    r->headers[i].name, (int)r->headers[i].value_len, r->headers[i].value);
        }
        if (!shown)
            fprintf(out, "no %s header", name);
        break;
    }
    case SL_COND_PATH:
        fprintf(out, "path %.*s", (int)r->path_len, r->path);
        break;
    case SL_COND_QUERY:
        if (r->query)
            fprintf(out, "query %.*s", (int)r->query_len, r->query);
        else
            fprintf(out, "no query");
        break;
    case SL_COND_METHOD:
        fprintf(out, "method %.*s", (int)r->method_len, r->method);
        break;
    case SL_COND_HOST:
        if (r->host)
            fprintf(out, "host %.*s", (int)r->host_len, r->host);
        else
            fprintf(out, "no host");
        break;
    case SL_COND_SOURCE_IP:
        fprintf(out, "client %s", sl_addr_format(&r->source, ip));
        break;
    }
}

static void show_action(FILE *out, const struct sl_http_rule *w, const struct sl_request *req)
{
    char where[SL_ADDR_STRLEN + 8], loc[8192];
    const struct sl_target_group *g;
    struct sl_addr orig;
    size_t i;

    if (!w) {
        fprintf(out, "action: no rule matches: sluice answers %d (see README, "
                     "\"Rule semantics\")\n", SL_ROUTER_NOMATCH_STATUS);
        return;
    }
    switch (w->type) {
    case SL_RULE_FORWARD:
        g = w->group;
        fprintf(out, "action: FORWARD (rule \"%s\") to target group \"%s\"%s%s%s, %s\n", w->name,
                g->name, g->id ? " (id " : "", g->id ? g->id : "", g->id ? ")" : "",
                sl_algorithm_name(g->algorithm));
        if (g->n_targets == 0)
            fprintf(out, "  no targets: the request would get 503\n");
        for (i = 0; i < g->n_targets; i++) {
            const struct sl_target *t = &g->targets[i];

            fprintf(out, "  target %s weight %u%s%s%s", sl_addr_format_port(&t->addr, t->port,
                                                                             where),
                    t->weight, t->weight == 0 ? " (no new connections)" : "",
                    t->maintenance_enabled ? " maintenance (no new connections)" : "",
                    t->health_check_enabled ? "" : " health check off");
            if (t->proxy_protocol != SL_PROXY_NONE)
                fprintf(out, " proxy protocol %s", sl_proxy_protocol_name(t->proxy_protocol));
            sl_addr_parse(t->ip, &orig);
            if (!sl_addr_equal(&orig, &t->addr) || t->port != t->port_orig)
                fprintf(out, " (configured as %s)", sl_addr_format_port(&orig, t->port_orig,
                                                                        where));
            fputc('\n', out);
        }
        if (g->http_check)
            fprintf(out, "  health: HTTP check %s (a WebSocket-only target may fail it)\n",
                    g->http_check->path);
        break;
    case SL_RULE_STATIC:
        fprintf(out, "action: STATIC (rule \"%s\") %d, Content-Type: %s, body: ", w->name,
                w->status_code, w->content_type ? w->content_type : "(none)");
        put_quoted(out, w->response_message);
        fputc('\n', out);
        break;
    case SL_RULE_REDIRECT:
        if (sl_router_redirect_location(w, req, loc, sizeof(loc)) < 0)
            snprintf(loc, sizeof(loc), "(longer than %zu bytes)", sizeof(loc));
        fprintf(out, "action: REDIRECT (rule \"%s\") %d, Location: %s\n", w->name,
                w->status_code, loc);
        break;
    }
}

int sl_explain(const struct sl_config *c, const char *buf, size_t len,
               const struct sl_explain_opts *o, FILE *out)
{
    struct sl_router_scratch *s = NULL;
    const struct sl_forwarding_rule *f;
    const struct sl_http_rule *winner = NULL;
    struct sl_http_head *h = calloc(1, sizeof(*h));
    char a1[SL_ADDR_STRLEN + 8], a2[SL_ADDR_STRLEN];
    struct sl_addr listener, written;
    uint16_t port;
    bool converted;
    size_t n, i, j;
    char *req = normalise(buf, len, &n, &converted);
    int rc = 1;

    if (!h || !(s = sl_router_scratch_new()))
        abort();
    if (converted)
        fprintf(out, "note: the request had LF line endings; read as CRLF\n");
    if (sl_http_parse_head(req, n, h) != SL_OK) {
        fprintf(out, "request: does not parse: %s; sluice would answer %d and close\n",
                h->error ? h->error : "incomplete request head (no blank line after the headers)",
                h->status ? h->status : 400);
        goto out;
    }
    h->req.source = o->source;
    if (!o->have_source)
        sl_addr_parse("127.0.0.1", &h->req.source);
    if (o->have_listener) {
        listener = o->listener;
        port = o->port;
    } else if (c->n_frules > 0) {
        listener = c->frules[0].listen;
        port = c->frules[0].port;
    } else {
        fprintf(out, "listener: the config has no forwarding rules\n");
        goto out;
    }
    fprintf(out, "request: %.*s %.*s HTTP/%u.%u, host %.*s, from %s%s%s\n",
            (int)h->req.method_len, h->req.method, (int)h->target_len, h->target, h->http_major,
            h->http_minor, h->req.host ? (int)h->req.host_len : 6,
            h->req.host ? h->req.host : "(none)", sl_addr_format(&h->req.source, a2),
            o->have_source ? "" : " (default; set with --source)",
            h->websocket ? ", WebSocket upgrade" : h->upgrade ? ", upgrade" : "");
    f = sl_router_find_frule(c, &listener, port);
    if (!f) {
        fprintf(out, "listener: no forwarding rule listens on %s; sluice would not accept the "
                     "connection\n", sl_addr_format_port(&listener, port, a1));
        goto out;
    }
    h->req.tls = f->n_server_certificates > 0;
    fprintf(out, "listener: %s%s\n", sl_addr_format_port(&listener, port, a1),
            o->have_listener ? "" : " (the first forwarding rule's; set with --listener)");
    sl_addr_parse(f->listener_ip, &written);
    fprintf(out, "forwarding rule: \"%s\" (%s) on %s\n", f->name, f->loc.path,
            sl_addr_format_port(&written, f->port_orig, a1));
    if (f->n_rules == 0)
        fprintf(out, "http rules: none\n");
    else
        fprintf(out, "http rules in evaluation order (STATIC and REDIRECT first, then FORWARD; "
                     "first match wins):\n");
    for (i = 0; i < f->n_rules; i++) {
        const struct sl_http_rule *r = f->order[i];
        bool holds = sl_router_rule_holds(r, &h->req, s);
        const char *verdict = !holds    ? "no match"
                              : !winner ? "MATCH, wins"
                                        : "would match, but an earlier rule won";

        fprintf(out, "  %zu. \"%s\" %s (httpRules[%u]): %s\n", i + 1, r->name,
                sl_rule_type_name(r->type), r->index, verdict);
        if (r->n_conds == 0)
            fprintf(out, "       (no conditions: always holds)\n");
        for (j = 0; j < r->n_conds; j++) {
            fprintf(out, "       %-5s ", sl_router_cond_holds(&r->conds[j], &h->req, s) ? "true"
                                                                                      : "false");
            show_cond(out, &r->conds[j]);
            fprintf(out, "   [");
            show_seen(out, &r->conds[j], &h->req);
            fprintf(out, "]\n");
        }
        if (holds && !winner)
            winner = r;
    }
    /* The data plane's own answer must agree with the walk above. */
    SL_BUG_ON(winner != sl_router_match(f, &h->req, s));
    show_action(out, winner, &h->req);
    rc = 0;
out:
    sl_router_scratch_free(s);
    free(h);
    free(req);
    return rc;
}
