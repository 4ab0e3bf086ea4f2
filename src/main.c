/* sluice: command-line entry; dispatches subcommands and does nothing else. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "sluice/admin.h"
#include "sluice/balancer.h"
#include "sluice/config.h"
#include "sluice/emu.h"
#include "sluice/explain.h"
#include "sluice/file.h"
#include "sluice/health.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/sync.h"
#include "sluice/tls.h"
#include "sluice/worker.h"

#ifndef SL_VERSION
#define SL_VERSION "dev"
#endif

#define MAX_MAPS 256

static const char usage_text[] =
    "usage:\n"
    "  sluice run [--map FROM=TO]... [--threads N] [--admin ADDR] CONFIG\n"
    "      run the balancer on CONFIG; SIGHUP reloads it; SIGTERM/SIGINT stop accepting and\n"
    "      drain (a second one closes everything at once)\n"
    "  sluice run --sync DATACENTER_ID/ALB_ID [--insecure] [--ca-file FILE] [...] [CONFIG]\n"
    "      run the ALB as the IONOS Cloud API has it (IONOS_TOKEN or IONOS_USERNAME and\n"
    "      IONOS_PASSWORD, IONOS_API_URL), polled every sluice.sync.intervalSeconds; CONFIG\n"
    "      gives only its sluice block. SIGHUP polls at once\n"
    "  sluice check [--strict] [--map FROM=TO]... CONFIG\n"
    "      validate and lint CONFIG; exit 0 when valid, 1 on errors (--strict: or warnings)\n"
    "  sluice explain [--listener IP:PORT] [--source IP] [--map FROM=TO]... CONFIG "
    "[REQUEST_FILE|-]\n"
    "      show which rule a raw HTTP request (default: stdin) matches, and why\n"
    "  sluice emu --listen IP:PORT --state FILE [--token TOKEN]\n"
    "      an IONOS CloudAPI v6 emulator (ALBs, forwarding rules, target groups) on\n"
    "      http://IP:PORT/cloudapi/v6, its state kept in FILE\n"
    "  sluice --version\n"
    "\n"
    "  --map FROM=TO   use local address TO for IONOS address FROM (IP or IP:PORT each side);\n"
    "                  overrides sluice.addressMap in CONFIG\n";

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "sluice: %s\n", why);
    fputs(usage_text, stderr);
    return 2;
}

struct cli {
    const char *config;
    const char *request;
    bool strict;
    struct sl_map_entry maps[MAX_MAPS];
    size_t n_maps;
    struct sl_explain_opts ex;
    unsigned threads;
    const char *admin;
    char *sync_dc; /* --sync DATACENTER_ID/ALB_ID, split */
    const char *sync_alb;
    bool insecure;
    const char *ca_file;
};

/* Common option parsing; <allow> lists the options the subcommand takes. Returns 0 to go on,
 * -1 when done (help printed), or the exit code of a usage error. */
static int parse_args(int argc, char **argv, const char *allow, struct cli *c)
{
    const char *pos[2] = {NULL, NULL};
    size_t n_pos = 0;
    int i;

    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        char msg[300];

        if (!strcmp(a, "--strict") && strstr(allow, "strict")) {
            c->strict = true;
            continue;
        }
        if ((!strcmp(a, "--threads") || !strcmp(a, "--admin")) && strstr(allow, "threads")) {
            char *end;
            long v;

            if (!val) {
                snprintf(msg, sizeof(msg), "%s needs a value", a);
                return usage(msg);
            }
            i++;
            if (!strcmp(a, "--admin")) {
                struct sl_addr ad;
                uint16_t port;

                if (strcmp(val, "off") && sl_addr_parse_port(val, &ad, &port) == -1) {
                    snprintf(msg, sizeof(msg), "--admin %s: expected IP:PORT or off", val);
                    return usage(msg);
                }
                c->admin = val;
                continue;
            }
            v = strtol(val, &end, 10);
            if (*end || v < 1 || v > 1024) {
                snprintf(msg, sizeof(msg), "--threads %s: expected a number from 1 to 1024", val);
                return usage(msg);
            }
            c->threads = (unsigned)v;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return -1; /* done: exit 0 */
        }
        if (!strcmp(a, "--insecure") && strstr(allow, "sync")) {
            c->insecure = true;
            continue;
        }
        if ((!strcmp(a, "--sync") || !strcmp(a, "--ca-file")) && strstr(allow, "sync")) {
            char *slash;

            if (!val) {
                snprintf(msg, sizeof(msg), "%s needs a value", a);
                return usage(msg);
            }
            i++;
            if (!strcmp(a, "--ca-file")) {
                c->ca_file = val;
                continue;
            }
            free(c->sync_dc);
            c->sync_dc = strdup(val);
            slash = c->sync_dc ? strchr(c->sync_dc, '/') : NULL;
            if (!slash || slash == c->sync_dc || !slash[1] || strchr(slash + 1, '/')) {
                snprintf(msg, sizeof(msg), "--sync %s: expected DATACENTER_ID/ALB_ID", val);
                free(c->sync_dc);
                c->sync_dc = NULL;
                return usage(msg);
            }
            *slash = '\0';
            c->sync_alb = slash + 1;
            continue;
        }
        if ((!strcmp(a, "--map") && strstr(allow, "map")) ||
            (!strcmp(a, "--listener") && strstr(allow, "listener")) ||
            (!strcmp(a, "--source") && strstr(allow, "source"))) {
            if (!val) {
                snprintf(msg, sizeof(msg), "%s needs a value", a);
                return usage(msg);
            }
            i++;
            if (!strcmp(a, "--map")) {
                if (c->n_maps == MAX_MAPS)
                    return usage("too many --map options");
                if (sl_map_entry_parse(val, &c->maps[c->n_maps]) == -1) {
                    snprintf(msg, sizeof(msg),
                             "--map %s: expected FROM=TO with IP or IP:PORT "
                             "on each side (IPv6 with a port as [::1]:80), "
                             "both sides of one address family",
                             val);
                    return usage(msg);
                }
                c->n_maps++;
            } else if (!strcmp(a, "--listener")) {
                if (sl_addr_parse_port(val, &c->ex.listener, &c->ex.port) == -1) {
                    snprintf(msg, sizeof(msg), "--listener %s: expected IP:PORT", val);
                    return usage(msg);
                }
                c->ex.have_listener = true;
            } else {
                if (sl_addr_parse(val, &c->ex.source) == -1) {
                    snprintf(msg, sizeof(msg), "--source %s: expected an IP address", val);
                    return usage(msg);
                }
                c->ex.have_source = true;
            }
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') {
            snprintf(msg, sizeof(msg), "unknown option %s", a);
            return usage(msg);
        }
        if (n_pos == (strstr(allow, "request") ? 2u : 1u))
            return usage("too many arguments");
        pos[n_pos++] = a;
    }
    if (!pos[0] && !c->sync_dc)
        return usage("missing CONFIG");
    c->config = pos[0];
    c->request = pos[1];
    return 0;
}

/* <cfg> with its certificates loaded (tls.h), or NULL (the errors in <d>). */
static struct sl_config *with_tls(struct sl_config *cfg, struct sl_diags *d)
{
    if (cfg && sl_tls_attach(cfg, d) != 0) {
        sl_config_unref(cfg);
        return NULL;
    }
    return cfg;
}

static struct sl_config *load(const struct cli *c, struct sl_diags *d)
{
    struct sl_load_opts o = {.map = c->maps, .n_map = c->n_maps};

    return with_tls(sl_config_load_file(c->config, &o, d), d);
}

/* Loads and lints CONFIG, printing every diagnostic sorted to <out>; <d> keeps the counts
 * (the caller deinits it). The snapshot, or NULL when the file is invalid. */
static struct sl_config *load_checked(const struct cli *c, struct sl_diags *d, FILE *out)
{
    struct sl_config *cfg;

    sl_diags_init(d, c->config);
    cfg = load(c, d);
    if (cfg)
        sl_config_lint(cfg, d);
    sl_diags_sort(d);
    sl_diags_print(d, out);
    return cfg;
}

static int cmd_check(int argc, char **argv)
{
    struct cli c = {0};
    struct sl_diags d;
    struct sl_config *cfg;
    size_t rules = 0, i;
    int rc;

    if ((rc = parse_args(argc, argv, "strict map", &c)))
        return rc < 0 ? 0 : rc;
    cfg = load_checked(&c, &d, stdout);
    if (!cfg) {
        printf("%s: invalid: %zu error%s\n", c.config, d.n_errors, d.n_errors == 1 ? "" : "s");
        rc = 1;
    } else {
        for (i = 0; i < cfg->n_frules; i++)
            rules += cfg->frules[i].n_rules;
        printf("%s: valid: %zu forwarding rule%s, %zu http rule%s, %zu target group%s; "
               "%zu warning%s%s\n",
               c.config, cfg->n_frules, cfg->n_frules == 1 ? "" : "s", rules, rules == 1 ? "" : "s",
               cfg->n_tgroups, cfg->n_tgroups == 1 ? "" : "s", d.n_warnings,
               d.n_warnings == 1 ? "" : "s",
               c.strict && d.n_warnings ? " (errors with --strict)" : "");
        rc = c.strict && d.n_warnings ? 1 : 0;
    }
    sl_config_unref(cfg);
    sl_diags_deinit(&d);
    return rc;
}

static int cmd_explain(int argc, char **argv)
{
    struct cli c = {0};
    struct sl_diags d;
    struct sl_config *cfg;
    FILE *f = stdin;
    char *req;
    size_t len;
    bool more;
    int rc;

    if ((rc = parse_args(argc, argv, "map listener source request", &c)))
        return rc < 0 ? 0 : rc;
    sl_diags_init(&d, c.config);
    cfg = load(&c, &d);
    if (!cfg) {
        sl_diags_sort(&d);
        sl_diags_print(&d, stderr);
        fprintf(stderr, "%s: invalid: %zu error%s (see `sluice check`)\n", c.config, d.n_errors,
                d.n_errors == 1 ? "" : "s");
        sl_diags_deinit(&d);
        return 1;
    }
    sl_diags_deinit(&d);
    if (c.request && strcmp(c.request, "-") && !(f = fopen(c.request, "rb"))) {
        fprintf(stderr, "sluice: %s: %s\n", c.request, strerror(errno));
        sl_config_unref(cfg);
        return 1;
    }
    /* the head limit is far below: bytes past 4 x it cannot matter */
    req = sl_read_stream(f, 4 * SL_HTTP_MAX_HEAD, &len, &more);
    if (f != stdin)
        fclose(f);
    if (!req) {
        fprintf(stderr, "sluice: cannot read the request: %s\n", strerror(errno));
        sl_config_unref(cfg);
        return 1;
    }
    rc = sl_explain(cfg, req, len, &c.ex, stdout);
    free(req);
    sl_config_unref(cfg);
    return rc;
}

/* ---- run ---- */

struct run {
    const struct cli *cli;
    struct event_base *base;
    struct sl_workers *ws;
    struct sl_config *cfg; /* the running config (one ref) */
    struct sl_admin *admin;
    struct sl_health *health;
    struct sl_sync *sync; /* NULL unless the config comes from the API */
    unsigned stops, ended;
    atomic_bool close_on_down; /* sluice.closeOnTargetDown, for the checker's thread */
};

/* On the health checker's thread: with closeOnTargetDown, workers close the tunnels to a
 * target that went down. */
static void on_target_health(struct sl_target_state *st, bool down, void *arg)
{
    struct run *r = arg;

    (void)st;
    /* Workers walk their tunnels only when there is something to close. */
    if (down && atomic_load_explicit(&r->close_on_down, memory_order_relaxed))
        sl_workers_target_down(r->ws);
}

/* The admin endpoint: an address given explicitly must be served (else sluice does not
 * start); the default one is skipped with a warning when taken (e.g. a second sluice). */
static int start_admin(struct run *r, const char *given, const char *conf)
{
    const char *addr = given ? given : conf ? conf : SL_ADMIN_DEFAULT;

    if (!strcmp(addr, "off"))
        return 0;
    r->admin = sl_admin_start(r->base, addr);
    if (r->admin || given || conf)
        return r->admin ? 0 : -1;
    sl_log(SL_LOG_WARN, "running without the admin endpoint (set sluice.admin or --admin to "
                        "choose another address, or \"off\")");
    return 0;
}

/* Settings read once at start: a reload that changes them says they wait for a restart. */
static void restart_only(const struct sl_local *a, const struct sl_local *b)
{
    const char *what[5];
    size_t n = 0;

    if (a->threads != b->threads)
        what[n++] = "threads";
    if ((a->admin != NULL) != (b->admin != NULL) || (a->admin && strcmp(a->admin, b->admin)))
        what[n++] = "admin";
    if (strcmp(a->access_log, b->access_log))
        what[n++] = "accessLog";
    if (a->pipe_size != b->pipe_size)
        what[n++] = "pipeSize";
    if (a->splice != b->splice)
        what[n++] = "splice";
    for (size_t i = 0; i < n; i++)
        sl_log(SL_LOG_WARN, "reload: sluice.%s changed; it takes effect at the next start",
               what[i]);
}

/* Makes <cfg> (one ref, taken) the running config: workers, health checks, admin. -1 when
 * a new listener cannot be bound (logged; nothing changed). */
static int apply(struct run *r, struct sl_config *cfg, const char *origin, uint64_t t0)
{
    uint64_t gen;

    if (sl_workers_reload(r->ws, cfg) == -1) {
        sl_config_unref(cfg);
        return -1;
    }
    restart_only(&r->cfg->local, &cfg->local);
    if (r->health)
        sl_health_apply(r->health, cfg);
    if (r->admin)
        sl_admin_set(r->admin, cfg, r->ws);
    sl_config_unref(r->cfg);
    r->cfg = cfg;
    atomic_store(&r->close_on_down, cfg->local.close_on_target_down);
    gen = sl_stat_get(&sl_config_info.generation) + 1;
    sl_config_info.load_duration_us = sl_clock_us(CLOCK_MONOTONIC) - t0;
    sl_config_info.load_time_ms = sl_clock_ms(CLOCK_REALTIME);
    sl_config_info.generation = gen;
    sl_log(SL_LOG_INFO,
           "reload: generation %llu from %s: %zu forwarding rule%s, %zu target "
           "group%s; open connections and tunnels keep the config they started with",
           (unsigned long long)gen, origin, cfg->n_frules, cfg->n_frules == 1 ? "" : "s",
           cfg->n_tgroups, cfg->n_tgroups == 1 ? "" : "s");
    return 0;
}

/* Logs every diagnostic of <d> as "<prefix>: file:line:col: path: message". */
static void log_diags(struct sl_diags *d, enum sl_log_level level, const char *prefix)
{
    char line[600];

    sl_diags_sort(d);
    for (size_t i = 0; i < d->n; i++) {
        sl_diag_format(d, &d->v[i], line, sizeof(line));
        sl_log(d->v[i].level == SL_DIAG_ERROR ? SL_LOG_ERR : level, "%s: %s", prefix, line);
    }
}

/* The "sluice" block of the file at <path> (a new ref), or NULL; *<ok> false (when given)
 * if the file cannot be read as JSON, logged. */
static json_t *local_block(const char *path, bool *ok)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    json_t *l = json_incref(json_object_get(root, "sluice"));

    if (!root)
        sl_log(SL_LOG_ERR, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    if (ok)
        *ok = root != NULL;
    json_decref(root);
    return l;
}

/* The end of a load, for SIGHUP and the sync alike: lints <cfg> (NULL: the load failed) into
 * <d>, logs every diagnostic under <prefix>, and for a failed load writes "N errors, the
 * first: <the first error>" into <why>. Deinits <d>; returns <cfg>. */
static struct sl_config *checked(struct sl_config *cfg, struct sl_diags *d, const char *prefix,
                                 char *why, size_t why_len)
{
    if (cfg)
        sl_config_lint(cfg, d);
    log_diags(d, SL_LOG_WARN, prefix);
    if (!cfg) {
        char first[300] = "";

        /* sorted by position, warnings among the errors: the first error, not d->v[0] */
        for (size_t i = 0; i < d->n && !first[0]; i++)
            if (d->v[i].level == SL_DIAG_ERROR)
                sl_diag_format(d, &d->v[i], first, sizeof(first));
        snprintf(why, why_len, "%zu error%s, the first: %s", d->n_errors,
                 d->n_errors == 1 ? "" : "s", first);
    }
    sl_diags_deinit(d);
    return cfg;
}

/* SIGHUP: the file again, checked as `sluice check` would. A file with errors, or a new
 * listener that cannot be bound, is refused and the running config stays. */
static void reload(struct run *r)
{
    struct sl_diags d;
    struct sl_config *cfg;
    char why[400];
    uint64_t t0 = sl_clock_us(CLOCK_MONOTONIC);

    if (r->stops) {
        sl_log(SL_LOG_WARN, "SIGHUP while stopping: not reloading");
        return;
    }
    if (r->sync) {
        /* the file gives the sluice block: its edits go with this poll */
        if (r->cli->config) {
            bool ok;
            json_t *local = local_block(r->cli->config, &ok);

            if (ok)
                sl_sync_set_local(r->sync, local);
            else
                sl_log(SL_LOG_ERR, "reload: %s cannot be read: its sluice block stays as it was",
                       r->cli->config);
            json_decref(local);
        }
        sl_log(SL_LOG_INFO, "SIGHUP: %s%spolling the API now", r->cli->config ? r->cli->config : "",
               r->cli->config ? " read again; " : "");
        sl_sync_poll_now(r->sync);
        return;
    }
    sl_diags_init(&d, r->cli->config);
    if (!(cfg = checked(load(r->cli, &d), &d, "reload", why, sizeof(why)))) {
        sl_log(SL_LOG_ERR, "reload: %s has %s: refused; the running config stays (generation %llu)",
               r->cli->config, why, (unsigned long long)sl_stat_get(&sl_config_info.generation));
        return;
    }
    if (apply(r, cfg, r->cli->config, t0) == -1)
        sl_log(SL_LOG_ERR, "reload: refused; the running config stays");
}

/* A document from the API (or the sync cache): checked as `sluice check` would, then run.
 * Before the workers start it only becomes the config they start with. */
static int on_sync_doc(json_t *doc, const char *origin, char *why, size_t why_len, void *arg)
{
    struct run *r = arg;
    struct sl_load_opts o = {.map = r->cli->maps, .n_map = r->cli->n_maps};
    struct sl_diags d;
    struct sl_config *cfg;
    uint64_t t0 = sl_clock_us(CLOCK_MONOTONIC);
    /* certificates of the local file's sluice block are found beside it */
    char *dir = r->cli->config ? sl_dir_of(r->cli->config) : NULL;

    o.base_dir = dir;
    sl_diags_init(&d, origin);
    cfg = checked(with_tls(sl_config_load_json(origin, doc, NULL, &o, &d), &d), &d, "sync", why,
                  why_len);
    free(dir);
    if (!cfg)
        return -1;
    if (!r->ws) {
        if (r->cfg)
            sl_config_unref(r->cfg);
        r->cfg = cfg;
        sl_config_info.load_duration_us = sl_clock_us(CLOCK_MONOTONIC) - t0;
        return 0;
    }
    /* (never while stopping: the stop stops the sync first, and it hands nothing over) */
    if (apply(r, cfg, origin, t0) == -1) {
        snprintf(why, why_len, "a listener it names cannot be bound");
        return -2;
    }
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct run *r = arg;

    (void)what;
    if (!r->ws) {
        /* Still starting (the first poll of the API): a stop ends the start, a reload has
         * nothing to reload yet. */
        if (sig == SIGHUP) {
            sl_log(SL_LOG_INFO, "SIGHUP while starting: nothing to reload yet");
            return;
        }
        r->stops++;
        if (r->sync)
            sl_sync_stop(r->sync);
        return;
    }
    if (sig == SIGHUP) {
        reload(r);
        return;
    }
    if (r->admin)
        sl_admin_set_draining(r->admin);
    if (r->sync)
        sl_sync_stop(r->sync);
    if (r->stops++ == 0) {
        sl_log(SL_LOG_INFO, "%s: stopping: no new connections; open ones get up to %u ms",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", r->cfg->local.drain_timeout_ms);
        sl_workers_stop(r->ws, r->cfg->local.drain_timeout_ms);
    } else {
        sl_log(SL_LOG_INFO, "second stop signal: closing everything now");
        sl_workers_stop(r->ws, 0);
    }
}

static void on_worker_end(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return;
    r->ended += (unsigned)v;
    if (r->ended >= sl_workers_count(r->ws))
        event_base_loopbreak(r->base);
}

/* The open-file limit is the connection limit: take all the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            sl_log(SL_LOG_WARN, "cannot raise the open file limit: %s", strerror(errno));
    }
}

/* The `sluice` block of CONFIG as written, for the documents sync builds. NULL when absent. */

/* Sync mode: the first config from the API (or its cache), then polling on <r->base>. */
static int start_sync(struct run *r, struct sl_config *file_cfg)
{
    const struct cli *c = r->cli;
    const struct sl_local *l = file_cfg ? &file_cfg->local : NULL;
    json_t *local = c->config ? local_block(c->config, NULL) : NULL;
    struct sl_sync_opts o = {
        .datacenter_id = c->sync_dc ? c->sync_dc
                         : l        ? l->sync_datacenter_id
                                    : NULL,
        .alb_id = c->sync_alb ? c->sync_alb
                  : l         ? l->sync_alb_id
                              : NULL,
        .interval_s = l ? l->sync_interval_s : 10,
        .api_url = l ? l->sync_api_url : NULL,
        .ca_file = c->ca_file ? c->ca_file
                   : l        ? l->sync_ca_file
                              : NULL,
        .insecure = c->insecure,
        .cache_file = l ? l->sync_cache_file : NULL,
        .local = local,
    };
    int rc = -1;

    if (file_cfg && (file_cfg->n_frules || file_cfg->n_tgroups || file_cfg->alb.present))
        sl_log(SL_LOG_WARN,
               "sync: %s also holds IONOS resources; the API's are used, the "
               "file gives only its sluice block",
               c->config);
    r->sync = sl_sync_new(r->base, &o, on_sync_doc, r);
    if (r->sync)
        rc = sl_sync_first(r->sync, 15);
    json_decref(local);
    return rc < 0 ? -1 : 0;
}

static int cmd_run(int argc, char **argv)
{
    struct cli c = {0};
    struct run r = {0};
    struct sl_diags d;
    struct sl_config *cfg = NULL;
    struct event *sig[3] = {NULL, NULL, NULL}, *end = NULL;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    int rc;
    uint64_t t0;

    if ((rc = parse_args(argc, argv, "map threads sync", &c)))
        return rc < 0 ? 0 : rc;
    r.cli = &c;
    sl_config_info.start_time_ms = sl_clock_ms(CLOCK_REALTIME);
    t0 = sl_clock_us(CLOCK_MONOTONIC);
    if (c.config) {
        cfg = load_checked(&c, &d, stderr);
        sl_diags_deinit(&d);
        if (!cfg) {
            fprintf(stderr, "sluice: %s is invalid; nothing started (see `sluice check %s`)\n",
                    c.config, c.config);
            return 1;
        }
    }
    sl_config_info.load_duration_us = sl_clock_us(CLOCK_MONOTONIC) - t0;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an EPIPE, not a death */
    raise_nofile();
    r.base = event_base_new();
    if (!r.base) {
        sl_config_unref(cfg);
        return 1;
    }
    /* Signals are ours from here on: a SIGHUP during a slow start must not kill sluice. */
    for (int i = 0; i < 3; i++) {
        sig[i] = evsignal_new(r.base, sigs[i], on_signal, &r);
        if (sig[i])
            evsignal_add(sig[i], NULL);
    }
    if (c.sync_dc || (cfg && cfg->local.sync_datacenter_id)) {
        if (start_sync(&r, cfg) == -1) {
            sl_config_unref(cfg);
            if (r.stops) {
                sl_log(SL_LOG_INFO, "stopped while starting");
                rc = 0;
            } else {
                fprintf(stderr, "sluice: no config from the API nor from its cache; nothing "
                                "started\n");
                rc = 1;
            }
            goto out;
        }
        sl_config_unref(cfg); /* its sluice block is in the API's documents */
    } else {
        r.cfg = cfg;
    }
    cfg = NULL;
    sl_config_info.load_time_ms = sl_clock_ms(CLOCK_REALTIME);
    sl_config_info.generation = 1;
    if (sl_log_start(r.cfg->local.access_log, SL_LOG_INFO) == -1) {
        fprintf(stderr, "sluice: access log %s: %s\n", r.cfg->local.access_log, strerror(errno));
        rc = 1;
        goto out;
    }
    atomic_store(&r.close_on_down, r.cfg->local.close_on_target_down);
    if (start_admin(&r, c.admin, r.cfg->local.admin) == -1 ||
        !(r.ws = sl_workers_start(r.cfg, c.threads))) {
        rc = 1;
        goto out;
    }
    if (r.admin) {
        sl_admin_set(r.admin, r.cfg, r.ws);
        sl_admin_set_sync(r.admin, r.sync);
    }
    /* Checks start once the workers run: a target's first verdict may close tunnels. */
    r.health = sl_health_start(on_target_health, &r);
    if (r.health)
        sl_health_apply(r.health, r.cfg);
    else
        sl_log(SL_LOG_WARN, "health checks are not running: every target counts as up");
    end = event_new(r.base, sl_workers_done_fd(r.ws), EV_READ | EV_PERSIST, on_worker_end, &r);
    if (end)
        event_add(end, NULL);
    event_base_dispatch(r.base);
    /* The checker, the admin endpoint and sync refer to the workers: they go first. */
    sl_health_stop(r.health);
    sl_admin_free(r.admin);
    r.admin = NULL;
    sl_sync_free(r.sync);
    r.sync = NULL;
    sl_workers_join(r.ws);
    sl_log(SL_LOG_INFO, "stopped");
    rc = 0;
out:
    for (int i = 0; i < 3; i++)
        if (sig[i])
            event_free(sig[i]);
    if (end)
        event_free(end);
    sl_admin_free(r.admin);
    sl_sync_free(r.sync);
    if (r.base)
        event_base_free(r.base);
    sl_log_stop();
    sl_target_states_free();
    sl_rule_stats_free();
    if (r.cfg)
        sl_config_unref(r.cfg);
    free(c.sync_dc);
    return rc;
}

static int cmd_emu(int argc, char **argv)
{
    const char *listen = NULL, *state = NULL, *token = NULL;
    struct sl_addr a;
    uint16_t port;
    char msg[300];

    for (int i = 0; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--listen")  ? &listen
                            : !strcmp(argv[i], "--state") ? &state
                            : !strcmp(argv[i], "--token") ? &token
                                                          : NULL;

        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!slot) {
            snprintf(msg, sizeof(msg), "emu: unknown argument \"%s\"", argv[i]);
            return usage(msg);
        }
        if (i + 1 >= argc) {
            snprintf(msg, sizeof(msg), "emu: %s needs a value", argv[i]);
            return usage(msg);
        }
        *slot = argv[++i];
    }
    if (!listen || !state)
        return usage("emu: --listen IP:PORT and --state FILE are required");
    if (sl_addr_parse_port(listen, &a, &port) == -1) {
        snprintf(msg, sizeof(msg), "emu: --listen %s: expected IP:PORT", listen);
        return usage(msg);
    }
    return sl_emu_main(listen, state, token);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL);
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "check"))
        return cmd_check(argc - 2, argv + 2);
    if (!strcmp(argv[1], "explain"))
        return cmd_explain(argc - 2, argv + 2);
    if (!strcmp(argv[1], "emu"))
        return cmd_emu(argc - 2, argv + 2);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("sluice %s\n", SL_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    {
        char msg[200];

        snprintf(msg, sizeof(msg), "unknown command \"%s\"", argv[1]);
        return usage(msg);
    }
}
