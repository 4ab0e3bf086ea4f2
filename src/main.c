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
#include "sluice/explain.h"
#include "sluice/health.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/worker.h"

#ifndef SL_VERSION
#define SL_VERSION "dev"
#endif

#define MAX_MAPS 256

static const char usage_text[] =
    "usage:\n"
    "  sluice run [--map FROM=TO]... [--threads N] [--admin ADDR] CONFIG\n"
    "      run the balancer on CONFIG; SIGTERM/SIGINT stop accepting and drain (a second one\n"
    "      closes everything at once)\n"
    "  sluice check [--strict] [--map FROM=TO]... CONFIG\n"
    "      validate and lint CONFIG; exit 0 when valid, 1 on errors (--strict: or warnings)\n"
    "  sluice explain [--listener IP:PORT] [--source IP] [--map FROM=TO]... CONFIG "
    "[REQUEST_FILE|-]\n"
    "      show which rule a raw HTTP request (default: stdin) matches, and why\n"
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
};

/* Common option parsing; <allow> lists the options the subcommand takes. Returns 0 to go on,
 * -1 when done (help printed), or the exit code of a usage error. */
static int parse_args(int argc, char **argv, const char *allow, struct cli *c)
{
    const char *pos[2] = { NULL, NULL };
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
                    snprintf(msg, sizeof(msg), "--map %s: expected FROM=TO with IP or IP:PORT "
                                               "on each side (IPv6 with a port as [::1]:80), "
                                               "both sides of one address family", val);
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
    if (!pos[0])
        return usage("missing CONFIG");
    c->config = pos[0];
    c->request = pos[1];
    return 0;
}

static struct sl_config *load(const struct cli *c, struct sl_diags *d)
{
    struct sl_load_opts o = { .map = c->maps, .n_map = c->n_maps };

    return sl_config_load_file(c->config, &o, d);
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
    struct cli c = { 0 };
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
               "%zu warning%s%s\n", c.config, cfg->n_frules, cfg->n_frules == 1 ? "" : "s",
               rules, rules == 1 ? "" : "s", cfg->n_tgroups, cfg->n_tgroups == 1 ? "" : "s",
               d.n_warnings, d.n_warnings == 1 ? "" : "s",
               c.strict && d.n_warnings ? " (errors with --strict)" : "");
        rc = c.strict && d.n_warnings ? 1 : 0;
    }
    sl_config_unref(cfg);
    sl_diags_deinit(&d);
    return rc;
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n;
    char *buf = malloc(cap);

    *len = 0;
    while (buf) {
        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
        if (*len == cap) {
            if (cap > 4 * SL_HTTP_MAX_HEAD)
                break; /* the head limit is far below: the rest cannot matter */
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    return buf;
}

static int cmd_explain(int argc, char **argv)
{
    struct cli c = { 0 };
    struct sl_diags d;
    struct sl_config *cfg;
    FILE *f = stdin;
    char *req;
    size_t len;
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
    req = read_all(f, &len);
    if (f != stdin)
        fclose(f);
    if (!req) {
        fprintf(stderr, "sluice: out of memory\n");
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
    struct sl_config *cfg;      /* the running config (one ref) */
    struct sl_admin *admin;
    struct sl_health *health;
    uint32_t drain_ms;
    unsigned stops, ended;
    atomic_bool close_on_down; /* sluice.closeOnTargetDown, for the checker's thread */
};

static uint64_t now_us(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t now_ms(clockid_t clk)
{
    return now_us(clk) / 1000;
}

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
    const char *what[4];
    size_t n = 0;

    if (a->threads != b->threads)
        what[n++] = "threads";
    if ((a->admin != NULL) != (b->admin != NULL) || (a->admin && strcmp(a->admin, b->admin)))
        what[n++] = "admin";
    if (strcmp(a->access_log, b->access_log))
        what[n++] = "accessLog";
    if (a->pipe_size != b->pipe_size)
        what[n++] = "pipeSize";
    for (size_t i = 0; i < n; i++)
        sl_log(SL_LOG_WARN, "reload: sluice.%s changed; it takes effect at the next start",
               what[i]);
}

/* SIGHUP: the file again, checked as `sluice check` would. A file with errors, or a new
 * listener that cannot be bound, is refused and the running config stays. */
static void reload(struct run *r)
{
    struct sl_diags d;
    struct sl_config *cfg;
    char *text = NULL, *line, *save = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    uint64_t t0 = now_us(CLOCK_MONOTONIC), gen;

    if (r->stops) {
        sl_log(SL_LOG_WARN, "SIGHUP while stopping: not reloading");
        if (m)
            fclose(m);
        free(text);
        return;
    }
    cfg = load_checked(r->cli, &d, m ? m : stderr);
    if (m)
        fclose(m);
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        sl_log(cfg ? SL_LOG_WARN : SL_LOG_ERR, "reload: %s", line);
    free(text);
    if (!cfg) {
        sl_log(SL_LOG_ERR, "reload: %s has %zu error%s: refused; the running config stays "
               "(generation %llu)", r->cli->config, d.n_errors, d.n_errors == 1 ? "" : "s",
               (unsigned long long)sl_stat_get(&sl_config_info.generation));
        sl_diags_deinit(&d);
        return;
    }
    sl_diags_deinit(&d);
    if (sl_workers_reload(r->ws, cfg) == -1) {
        sl_log(SL_LOG_ERR, "reload: refused; the running config stays");
        sl_config_unref(cfg);
        return;
    }
    restart_only(&r->cfg->local, &cfg->local);
    if (r->health)
        sl_health_apply(r->health, cfg);
    if (r->admin)
        sl_admin_set(r->admin, cfg, r->ws);
    sl_config_unref(r->cfg);
    r->cfg = cfg;
    r->drain_ms = cfg->local.drain_timeout_ms;
    atomic_store(&r->close_on_down, cfg->local.close_on_target_down);
    gen = sl_stat_get(&sl_config_info.generation) + 1;
    sl_config_info.load_duration_us = now_us(CLOCK_MONOTONIC) - t0;
    sl_config_info.load_time_ms = now_ms(CLOCK_REALTIME);
    sl_config_info.generation = gen;
    sl_log(SL_LOG_INFO, "reload: generation %llu from %s: %zu forwarding rule%s, %zu target "
           "group%s; open connections and tunnels keep the config they started with",
           (unsigned long long)gen, r->cli->config, cfg->n_frules, cfg->n_frules == 1 ? "" : "s",
           cfg->n_tgroups, cfg->n_tgroups == 1 ? "" : "s");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct run *r = arg;

    (void)what;
    if (sig == SIGHUP) {
        reload(r);
        return;
    }
    if (r->admin)
        sl_admin_set_draining(r->admin);
    if (r->stops++ == 0) {
        sl_log(SL_LOG_INFO, "%s: stopping: no new connections; open ones get up to %u ms",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", r->drain_ms);
        sl_workers_stop(r->ws, r->drain_ms);
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

static int cmd_run(int argc, char **argv)
{
    struct cli c = { 0 };
    struct run r = { 0 };
    struct sl_diags d;
    struct sl_config *cfg;
    struct event *sig[3] = { NULL, NULL, NULL }, *end = NULL;
    static const int sigs[3] = { SIGTERM, SIGINT, SIGHUP };
    int rc;
    uint64_t t0;

    if ((rc = parse_args(argc, argv, "map threads", &c)))
        return rc < 0 ? 0 : rc;
    sl_config_info.start_time_ms = now_ms(CLOCK_REALTIME);
    t0 = now_us(CLOCK_MONOTONIC);
    cfg = load_checked(&c, &d, stderr);
    sl_diags_deinit(&d);
    sl_config_info.load_duration_us = now_us(CLOCK_MONOTONIC) - t0;
    sl_config_info.load_time_ms = now_ms(CLOCK_REALTIME);
    sl_config_info.generation = 1;
    if (!cfg) {
        fprintf(stderr, "sluice: %s is invalid; nothing started (see `sluice check %s`)\n",
                c.config, c.config);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an EPIPE, not a death */
    raise_nofile();
    if (sl_log_start(cfg->local.access_log, SL_LOG_INFO) == -1) {
        fprintf(stderr, "sluice: access log %s: %s\n", cfg->local.access_log, strerror(errno));
        sl_config_unref(cfg);
        return 1;
    }
    r.cli = &c;
    r.cfg = cfg;
    atomic_store(&r.close_on_down, cfg->local.close_on_target_down);
    r.drain_ms = cfg->local.drain_timeout_ms;
    r.base = event_base_new();
    if (!r.base || start_admin(&r, c.admin, cfg->local.admin) == -1 ||
        !(r.ws = sl_workers_start(cfg, c.threads))) {
        rc = 1;
        goto out;
    }
    if (r.admin)
        sl_admin_set(r.admin, cfg, r.ws);
    /* Checks start once the workers run: a target's first verdict may close tunnels. */
    r.health = sl_health_start(on_target_health, &r);
    if (r.health)
        sl_health_apply(r.health, cfg);
    else
        sl_log(SL_LOG_WARN, "health checks are not running: every target counts as up");
    for (int i = 0; i < 3; i++) {
        sig[i] = evsignal_new(r.base, sigs[i], on_signal, &r);
        if (sig[i])
            evsignal_add(sig[i], NULL);
    }
    end = event_new(r.base, sl_workers_done_fd(r.ws), EV_READ | EV_PERSIST, on_worker_end, &r);
    if (end)
        event_add(end, NULL);
    event_base_dispatch(r.base);
    /* The checker and the admin endpoint refer to the workers: they go first. */
    sl_health_stop(r.health);
    sl_admin_free(r.admin);
    r.admin = NULL;
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
    if (r.base)
        event_base_free(r.base);
    sl_log_stop();
    sl_target_states_free();
    sl_rule_stats_free();
    sl_config_unref(r.cfg ? r.cfg : cfg);
    return rc;
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
