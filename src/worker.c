/* Worker threads: listeners bound with SO_REUSEPORT before the threads start (so a port in use
 * is reported before anything runs), one event_base per thread, and the stop sequence: stop
 * accepting, let connections and tunnels finish, close what is left when the drain period
 * ends. The main thread talks to a worker only through its eventfd. */
#include "sluice/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "sluice/balancer.h"
#include "sluice/config.h"
#include "sluice/front.h"
#include "sluice/log.h"
#include "sluice/router.h"
#include "sluice/source.h"

struct sl_workers {
    struct sl_worker *w;
    unsigned n;
    int *stop_fd;             /* one eventfd per worker */
    int done_fd;              /* eventfd: each worker adds 1 as its loop ends */
    _Atomic uint32_t drain_ms;
};

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (unsigned)n : 1;
}

static int listen_socket(const struct sl_forwarding_rule *fr)
{
    struct sockaddr_storage ss;
    socklen_t len = sl_addr_to_sockaddr(&fr->listen, fr->port, &ss);
    int fd, one = 1;

    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    /* A rule on :: and another on 0.0.0.0 of the same port must both bind. */
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto fail;
    if (bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 4096) == -1)
        goto fail;
    return fd;
fail:
    {
        int e = errno;

        close(fd);
        errno = e;
    }
    return -1;
}

/* Binds worker <w>'s listeners, one per distinct listener address. */
static int bind_listeners(struct sl_worker *w)
{
    const struct sl_config *cfg = w->cfg;

    w->listeners = calloc(cfg->n_frules ? cfg->n_frules : 1, sizeof(*w->listeners));
    if (!w->listeners)
        return -1;
    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];
        struct sl_listener *ln;
        char buf[SL_ADDR_STRLEN + 8];
        size_t k;

        for (k = 0; k < w->n_listeners; k++)
            if (w->listeners[k].port == fr->port &&
                sl_addr_equal(&w->listeners[k].addr, &fr->listen))
                break;
        if (k < w->n_listeners)
            continue; /* the first rule on an address serves it (check warns) */
        ln = &w->listeners[w->n_listeners];
        ln->fd = listen_socket(fr);
        if (ln->fd == -1) {
            sl_log(SL_LOG_ERR, "cannot listen on %s for forwarding rule \"%s\" (%s): %s",
                   sl_addr_format_port(&fr->listen, fr->port, buf), fr->name ? fr->name : "",
                   fr->loc.path, strerror(errno));
            return -1;
        }
        ln->w = w;
        ln->fr = fr;
        ln->addr = fr->listen;
        ln->port = fr->port;
        w->n_listeners++;
        if (w->id == 0)
            sl_log(SL_LOG_INFO, "listening on %s (forwarding rule \"%s\")",
                   sl_addr_format_port(&fr->listen, fr->port, buf), fr->name ? fr->name : "");
    }
    return 0;
}

static void close_listeners(struct sl_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct sl_listener *ln = &w->listeners[i];

        if (ln->fd == -1)
            continue;
        if (ln->ev.ev_base)
            event_del(&ln->ev);
        close(ln->fd);
        ln->fd = -1;
    }
}

void sl_worker_check_done(struct sl_worker *w)
{
    if (w->stopping && w->n_conns == 0 && w->tunnels.n == 0)
        event_base_loopbreak(w->base);
}

static void on_grace(int fd, short what, void *arg)
{
    struct sl_worker *w = arg;

    (void)fd;
    (void)what;
    if (w->tunnels.n || w->n_conns)
        sl_log(SL_LOG_INFO, "worker %u: drain period over, closing %zu tunnels and %zu "
               "connections", w->id, w->tunnels.n, w->n_conns);
    sl_tunnel_close_all(&w->tunnels, SL_ERR_SHUTDOWN);
    sl_front_close_all(w);
    w->stopping = true;
    sl_worker_check_done(w);
}

/* Messages from other threads: a bit in w->msgs, then a write to the worker's eventfd. */
#define WMSG_STOP 0x1        /* stop accepting and drain (ws->drain_ms) */
#define WMSG_TARGET_DOWN 0x2 /* a target went down: closeOnTargetDown */

static void stop(struct sl_worker *w)
{
    struct sl_workers *ws = (struct sl_workers *)w->thread_arg;
    uint32_t drain = atomic_load(&ws->drain_ms);

    if (!w->stopping) {
        w->stopping = true;
        close_listeners(w);
        if (w->accept_resume)
            event_del(w->accept_resume);
        sl_front_stop(w);
        sl_tunnel_list_drain(&w->tunnels);
    }
    if (drain == 0) {
        on_grace(-1, 0, w);
    } else {
        struct timeval tv = {drain / 1000, (drain % 1000) * 1000};

        evtimer_add(w->grace_ev, &tv);
    }
    sl_worker_check_done(w);
}

static void on_msg(int fd, short what, void *arg)
{
    struct sl_worker *w = arg;
    uint64_t v;
    unsigned m;

    (void)what;
    if (read(fd, &v, sizeof(v)) == -1)
        return;
    m = atomic_exchange(&w->msgs, 0);
    if ((m & WMSG_TARGET_DOWN) && w->cfg->local.close_on_target_down)
        upstream_tunnels_close_down(w);
    if (m & WMSG_STOP)
        stop(w);
}

static void on_tick(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_tunnels_flush(arg);
}

static void *worker_main(void *arg)
{
    struct sl_worker *w = arg;

    struct sl_workers *ws = w->thread_arg;
    uint64_t one = 1;

    event_base_dispatch(w->base);
    if (write(ws->done_fd, &one, sizeof(one)) == -1)
        sl_log(SL_LOG_ERR, "worker %u: cannot report its end: %s", w->id, strerror(errno));
    return NULL;
}

static int worker_init(struct sl_workers *ws, struct sl_worker *w, unsigned id,
                       struct sl_config *cfg, unsigned pipes_per_worker)
{
    static const struct timeval tick = {1, 0};

    w->id = id;
    w->thread_arg = ws;
    w->next_id = (uint64_t)id << 56;
    w->cfg = sl_config_ref(cfg);
    w->stats = aligned_alloc(64, sizeof(*w->stats));
    if (!w->stats || sl_rule_table_init(&w->rules, cfg) == -1)
        return -1;
    memset(w->stats, 0, sizeof(*w->stats));
    w->base = event_base_new();
    w->bal = sl_balancer_new(cfg, 0x9e3779b97f4a7c15ull * (id + 1));
    w->scratch = sl_router_scratch_new();
    w->pipes = sl_pipe_pool_new(pipes_per_worker, cfg->local.pipe_size);
    if (!w->base || !w->bal || !w->scratch || !w->pipes)
        return -1;
    sl_source_find(cfg, &w->source, w->id == 0);
    if (bind_listeners(w) == -1)
        return -1;
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct sl_listener *ln = &w->listeners[i];

        if (event_assign(&ln->ev, w->base, ln->fd, EV_READ | EV_PERSIST, sl_front_on_accept,
                         ln) == -1 ||
            event_add(&ln->ev, NULL) == -1)
            return -1;
    }
    w->stop_ev = event_new(w->base, ws->stop_fd[id], EV_READ | EV_PERSIST, on_msg, w);
    w->grace_ev = evtimer_new(w->base, on_grace, w);
    w->accept_resume = evtimer_new(w->base, sl_front_on_accept_resume, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    if (!w->stop_ev || !w->grace_ev || !w->accept_resume || !w->tick_ev ||
        event_add(w->stop_ev, NULL) == -1 || event_add(w->tick_ev, &tick) == -1)
        return -1;
    return 0;
}

static void worker_deinit(struct sl_worker *w)
{
    close_listeners(w);
    free(w->listeners);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    if (w->accept_resume)
        event_free(w->accept_resume);
    if (w->tick_ev)
        event_free(w->tick_ev);
    free(w->stats);
    sl_rule_table_free(&w->rules);
    sl_pipe_pool_free(w->pipes);
    sl_router_scratch_free(w->scratch);
    sl_balancer_free(w->bal);
    if (w->base)
        event_base_free(w->base);
    if (w->cfg)
        sl_config_unref(w->cfg);
}

struct sl_workers *sl_workers_start(struct sl_config *cfg, unsigned n)
{
    struct sl_workers *ws = calloc(1, sizeof(*ws));
    struct rlimit rl;
    unsigned pipes;

    if (n == 0)
        n = cfg->local.threads ? cfg->local.threads : cpu_count();
    if (!ws)
        return NULL;
    ws->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ws->w = calloc(n, sizeof(*ws->w));
    ws->stop_fd = calloc(n, sizeof(int));
    if (ws->done_fd == -1 || !ws->w || !ws->stop_fd)
        goto fail;
    for (unsigned i = 0; i < n; i++)
        ws->stop_fd[i] = -1;
    ws->n = n;
    /* Pipes cost two fds each and are held only while bytes are in flight: a quarter of the fd
     * budget for them (haproxy's maxpipes rule of thumb), split over the workers. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
        rl.rlim_cur = 65536;
    pipes = (unsigned)(rl.rlim_cur / 4 / 2 / n);
    for (unsigned i = 0; i < n; i++) {
        ws->stop_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ws->stop_fd[i] == -1 || worker_init(ws, &ws->w[i], i, cfg, pipes) == -1)
            goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ws->w[i].thread, NULL, worker_main, &ws->w[i]) != 0) {
            sl_log(SL_LOG_ERR, "cannot start worker thread %u", i);
            /* Threads already running are stopped and joined; every worker is freed. */
            sl_workers_stop(ws, 0);
            sl_workers_join(ws);
            return NULL;
        }
        ws->w[i].started = true;
    }
    sl_log(SL_LOG_INFO, "%u workers running", n);
    return ws;
fail:
    for (unsigned i = 0; i < n && ws->w; i++)
        worker_deinit(&ws->w[i]);
    for (unsigned i = 0; i < n && ws->stop_fd; i++)
        if (ws->stop_fd[i] != -1)
            close(ws->stop_fd[i]);
    if (ws->done_fd != -1)
        close(ws->done_fd);
    free(ws->w);
    free(ws->stop_fd);
    free(ws);
    return NULL;
}

int sl_workers_done_fd(const struct sl_workers *ws)
{
    return ws->done_fd;
}

unsigned sl_workers_count(const struct sl_workers *ws)
{
    return ws->n;
}

static void post(struct sl_workers *ws, unsigned msg)
{
    uint64_t one = 1;

    for (unsigned i = 0; i < ws->n; i++) {
        atomic_fetch_or(&ws->w[i].msgs, msg);
        if (write(ws->stop_fd[i], &one, sizeof(one)) == -1)
            sl_log(SL_LOG_ERR, "cannot signal worker %u: %s", i, strerror(errno));
    }
}

void sl_workers_stop(struct sl_workers *ws, uint32_t drain_ms)
{
    atomic_store(&ws->drain_ms, drain_ms);
    post(ws, WMSG_STOP);
}

void sl_workers_target_down(struct sl_workers *ws)
{
    post(ws, WMSG_TARGET_DOWN);
}

const struct sl_worker_stats *sl_workers_stats(const struct sl_workers *ws, unsigned i)
{
    return ws->w[i].stats;
}

void sl_workers_join(struct sl_workers *ws)
{
    for (unsigned i = 0; i < ws->n; i++)
        if (ws->w[i].started)
            pthread_join(ws->w[i].thread, NULL);
    for (unsigned i = 0; i < ws->n; i++) {
        worker_deinit(&ws->w[i]);
        close(ws->stop_fd[i]);
    }
    close(ws->done_fd);
    free(ws->w);
    free(ws->stop_fd);
    free(ws);
}
