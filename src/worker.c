/* Worker threads: listeners bound with SO_REUSEPORT before the threads start (so a port in use
 * is reported before anything runs), one event_base per thread, and the stop sequence: stop
 * accepting, let connections and tunnels finish, close what is left when the drain period
 * ends. The main thread talks to a worker only through its eventfd. */
#include "sluice/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "sluice/balancer.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/front.h"
#include "sluice/log.h"
#include "sluice/router.h"
#include "sluice/source.h"

struct sl_workers {
    struct sl_worker *w;
    unsigned n;
    int *stop_fd; /* one eventfd per worker */
    int done_fd;  /* eventfd: each worker adds 1 as its loop ends */
    _Atomic uint32_t drain_ms;
    struct sl_config *cur; /* the snapshot last handed to the workers (main thread's) */
    pthread_mutex_t lock;  /* guards every worker's pending reload */
};

/* A reload on its way to one worker: the snapshot and, for each of its distinct listener
 * addresses (listener_slots order), a socket bound for this worker or -1 where the worker
 * already listens there. */
struct sl_reload {
    struct sl_config *cfg;
    int *fds;
    size_t n;
};

static void reload_free(struct sl_reload *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (r->fds[i] != -1)
            close(r->fds[i]);
    free(r->fds);
    sl_config_unref(r->cfg);
    free(r);
}

/* The CPUs this process may run on (its affinity, as taskset or a cpuset container sets
 * it; what nproc counts), else the CPUs online. */
static unsigned cpu_count(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
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
    /* Accepted sockets inherit delayed ACKs: the request's ACK goes out with the answer
     * (HAProxy does the same in HTTP mode; see sl_tcp_quickack). */
    sl_tcp_quickack(fd, false);
    return fd;
fail : {
    int e = errno;

    close(fd);
    errno = e;
}
    return -1;
}

/* Whether two listener addresses (IP and port) are the same one. */
static bool same_addr(const struct sl_addr *a, unsigned a_port, const struct sl_addr *b,
                      unsigned b_port)
{
    return a_port == b_port && sl_addr_equal(a, b);
}

/* The forwarding rules that own a listener: the first rule on each distinct address (`sluice
 * check` warns about the others). Fills <idx> (cfg->n_frules entries) and returns how many. */
static size_t listener_slots(const struct sl_config *cfg, size_t *idx)
{
    size_t n = 0;

    for (size_t i = 0; i < cfg->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[i];
        size_t k;

        for (k = 0; k < n; k++)
            if (same_addr(&cfg->frules[idx[k]].listen, cfg->frules[idx[k]].port, &fr->listen,
                          fr->port))
                break;
        if (k == n)
            idx[n++] = i;
    }
    return n;
}

/* Whether <cfg> (may be NULL) listens on <fr>'s address. */
static bool listens_on(const struct sl_config *cfg, const struct sl_forwarding_rule *fr)
{
    for (size_t i = 0; cfg && i < cfg->n_frules; i++)
        if (same_addr(&cfg->frules[i].listen, cfg->frules[i].port, &fr->listen, fr->port))
            return true;
    return false;
}

/* Binds, for each of <n> workers, a socket on every listener address of <cfg> that <old> does
 * not listen on (-1 in the others). <fds> is n x slots; returns slots, or -1 after logging
 * which address could not be bound (nothing left open). */
static ssize_t bind_new(const struct sl_config *cfg, const struct sl_config *old, unsigned n,
                        int **fds)
{
    size_t *idx = calloc(cfg->n_frules ? cfg->n_frules : 1, sizeof(*idx));
    size_t slots;
    int *v;

    if (!idx)
        return -1;
    slots = listener_slots(cfg, idx);
    v = malloc((slots ? slots : 1) * n * sizeof(*v));
    if (!v) {
        free(idx);
        return -1;
    }
    for (size_t i = 0; i < slots * n; i++)
        v[i] = -1;
    for (size_t k = 0; k < slots; k++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[idx[k]];
        char buf[SL_ADDR_STRLEN + 8];

        if (listens_on(old, fr))
            continue;
        for (unsigned w = 0; w < n; w++) {
            if ((v[w * slots + k] = listen_socket(fr)) != -1)
                continue;
            sl_log(SL_LOG_ERR, "cannot listen on %s for forwarding rule \"%s\" (%s): %s",
                   sl_addr_format_port(&fr->listen, fr->port, buf), fr->name ? fr->name : "",
                   fr->loc.path, strerror(errno));
            for (size_t i = 0; i < slots * n; i++)
                if (v[i] != -1)
                    close(v[i]);
            free(v);
            free(idx);
            return -1;
        }
        sl_log(SL_LOG_INFO, "listening on %s (forwarding rule \"%s\")",
               sl_addr_format_port(&fr->listen, fr->port, buf), fr->name ? fr->name : "");
    }
    free(idx);
    *fds = v;
    return (ssize_t)slots;
}

static void listener_close(struct sl_listener *ln)
{
    if (ln->fd == -1)
        return;
    if (ln->ev.ev_base)
        event_del(&ln->ev);
    close(ln->fd);
    ln->fd = -1;
}

static void gen_free(struct sl_gen *g)
{
    for (size_t i = 0; i < g->n_listeners; i++)
        listener_close(&g->listeners[i]);
    free(g->listeners);
    sl_rule_table_free(&g->rules);
    sl_balancer_free(g->bal);
    sl_config_unref(g->cfg);
    free(g);
}

void sl_gen_unref(struct sl_gen *g)
{
    if (--g->refs == 0)
        gen_free(g);
}

/* Worker <w>'s generation for <cfg>: its balancer, rule counters and listeners. A listener's
 * socket is fds[slot] when not -1, else taken over from <old> (same address): a listener that
 * stays keeps its socket and its accept queue across reloads. NULL on out-of-memory (every
 * fds[] socket is then closed). */
static struct sl_gen *gen_new(struct sl_worker *w, struct sl_config *cfg, int *fds,
                              struct sl_gen *old, uint64_t number)
{
    struct sl_gen *g = calloc(1, sizeof(*g));
    size_t *idx = calloc(cfg->n_frules ? cfg->n_frules : 1, sizeof(*idx));
    size_t slots = idx ? listener_slots(cfg, idx) : 0;

    if (!g || !idx || !(g->listeners = calloc(slots ? slots : 1, sizeof(*g->listeners))) ||
        sl_rule_table_init(&g->rules, cfg, w->id) == -1 ||
        !(g->bal = sl_balancer_new(cfg, 0x9e3779b97f4a7c15ull * (w->id + 1) + number))) {
        for (size_t k = 0; idx && k < slots; k++) {
            if (fds[k] != -1)
                close(fds[k]);
            fds[k] = -1;
        }
        if (g) {
            free(g->listeners);
            sl_rule_table_free(&g->rules);
            free(g);
        }
        free(idx);
        return NULL;
    }
    g->cfg = sl_config_ref(cfg);
    g->refs = 1;
    g->number = number;
    for (size_t k = 0; k < slots; k++) {
        const struct sl_forwarding_rule *fr = &cfg->frules[idx[k]];
        struct sl_listener *ln = &g->listeners[g->n_listeners++];

        /* The socket this worker already listens on wins over a fresh one (its accept queue
         * goes on); a fresh one is for an address it does not listen on yet. */
        ln->fd = -1;
        for (size_t i = 0; ln->fd == -1 && old && i < old->n_listeners; i++) {
            struct sl_listener *o = &old->listeners[i];

            if (o->fd != -1 && same_addr(&o->addr, o->port, &fr->listen, fr->port)) {
                if (o->ev.ev_base)
                    event_del(&o->ev);
                ln->fd = o->fd;
                o->fd = -1;
            }
        }
        if (ln->fd == -1)
            ln->fd = fds[k];
        else if (fds[k] != -1)
            close(fds[k]);
        fds[k] = -1;
        if (ln->fd == -1) {
            char buf[SL_ADDR_STRLEN + 8];

            sl_log(SL_LOG_ERR, "worker %u: no socket for %s: it does not serve that listener",
                   w->id, sl_addr_format_port(&fr->listen, fr->port, buf));
        }
        ln->w = w;
        ln->gen = g;
        ln->fr = fr;
        ln->addr = fr->listen;
        ln->port = fr->port;
        if (ln->fd != -1)
            event_assign(&ln->ev, w->base, ln->fd, EV_READ | EV_PERSIST, sl_front_on_accept, ln);
    }
    free(idx);
    return g;
}

void sl_worker_accepting(struct sl_worker *w, bool on)
{
    struct sl_gen *g = w->gen;

    for (size_t i = 0; g && i < g->n_listeners; i++) {
        if (g->listeners[i].fd == -1)
            continue;
        if (on)
            event_add(&g->listeners[i].ev, NULL);
        else
            event_del(&g->listeners[i].ev);
    }
}

static void close_listeners(struct sl_worker *w)
{
    for (size_t i = 0; w->gen && i < w->gen->n_listeners; i++)
        listener_close(&w->gen->listeners[i]);
}

/* Takes this worker's pending reload, if any: new connections get the new generation; those
 * open keep theirs until they end. */
static void adopt(struct sl_worker *w)
{
    struct sl_workers *ws = (struct sl_workers *)w->thread_arg;
    struct sl_reload *r;
    struct sl_gen *g, *old = w->gen;

    pthread_mutex_lock(&ws->lock);
    r = w->pending;
    w->pending = NULL;
    pthread_mutex_unlock(&ws->lock);
    if (!r)
        return;
    if (w->stopping) {
        reload_free(r);
        return;
    }
    g = gen_new(w, r->cfg, r->fds, old, old->number + 1);
    if (!g) {
        sl_log(SL_LOG_ERR, "worker %u: out of memory: it keeps serving the previous config", w->id);
        reload_free(r);
        return;
    }
    w->gen = g;
    /* Listeners the new config dropped close now (their connections finish). */
    for (size_t i = 0; i < old->n_listeners; i++)
        listener_close(&old->listeners[i]);
    /* Accepting is paused only while the out-of-fds timer runs; it enables the new ones. */
    if (!evtimer_pending(w->accept_resume, NULL))
        sl_worker_accepting(w, true);
    sl_source_find(g->cfg, &w->source, false);
    upstream_tunnels_reload(w, g->cfg);
    sl_gen_unref(old);
    reload_free(r);
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
        sl_log(SL_LOG_INFO,
               "worker %u: drain period over, closing %zu tunnels and %zu "
               "connections",
               w->id, w->tunnels.n, w->n_conns);
    sl_tunnel_close_all(&w->tunnels, SL_ERR_SHUTDOWN);
    sl_front_close_all(w);
    w->stopping = true;
    sl_worker_check_done(w);
}

/* Messages from other threads: a bit in w->msgs, then a write to the worker's eventfd. */
#define WMSG_STOP 0x1        /* stop accepting and drain (ws->drain_ms) */
#define WMSG_TARGET_DOWN 0x2 /* a target went down: closeOnTargetDown */
#define WMSG_RELOAD 0x4      /* a new config waits in w->pending */

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
    if (m & WMSG_RELOAD)
        adopt(w);
    if ((m & WMSG_TARGET_DOWN) && w->gen->cfg->local.close_on_target_down)
        upstream_tunnels_close_down(w);
    if (m & WMSG_STOP)
        stop(w);
}

static void on_tick(int fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_tunnels_tick(arg);
}

/* Runs first in each busy-polling pass (activated before it, and at the highest priority):
 * whatever else is active then was found by this pass's epoll_wait or timers. */
static void on_spin_probe(int fd, short what, void *arg)
{
    struct sl_worker *w = arg;

    (void)fd;
    (void)what;
    w->spin_found = event_base_get_num_events(w->base, EVENT_BASE_COUNT_ACTIVE) > 0;
}

/* The worker's loop, until a callback breaks it. With sluice.busyPoll, the loop keeps
 * running non-blocking passes until that many µs have gone by without an event, and only
 * then may sleep: a peer that sends meanwhile finds the worker awake, so nobody pays for a
 * wakeup (the sender's IPI to a sleeping CPU; on a VM without halt polling, this CPU's halt
 * exit). Counted from the last event, not from the wakeup, so a worker with steady traffic
 * never sleeps (a spin that ended at a fixed time would sleep whenever that moment fell
 * between two events). Read at each wakeup, so a reload changes it. */
static void worker_loop(struct sl_worker *w)
{
    while (event_base_loop(w->base, EVLOOP_ONCE) == 0 && !event_base_got_break(w->base)) {
        uint32_t spin = w->gen->cfg->local.busy_poll_us;
        uint64_t now, end;

        if (spin == 0)
            continue;
        end = sl_clock_us(CLOCK_MONOTONIC) + spin;
        do {
            event_active(w->spin_probe, EV_TIMEOUT, 0);
            if (event_base_loop(w->base, EVLOOP_NONBLOCK) != 0 || event_base_got_break(w->base))
                return;
            now = sl_clock_us(CLOCK_MONOTONIC);
            if (w->spin_found)
                end = now + spin;
        } while (now < end);
    }
}

static void *worker_main(void *arg)
{
    struct sl_worker *w = arg;

    struct sl_workers *ws = w->thread_arg;
    uint64_t one = 1;

    worker_loop(w);
    /* A TLS bufferevent defers its callbacks, and a deferred callback still queued holds a
     * reference to it: one freed in the pass that stopped the loop would outlive the base
     * (event_base_free cancels such callbacks without running them). This pass lets them
     * run and drop it (the bufferevents' own callbacks are unset by then); the worker's own
     * events are taken out first, so it does nothing else. */
    event_del(w->stop_ev);
    event_del(w->grace_ev);
    event_del(w->tick_ev);
    event_del(w->accept_resume);
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    if (write(ws->done_fd, &one, sizeof(one)) == -1)
        sl_log(SL_LOG_ERR, "worker %u: cannot report its end: %s", w->id, strerror(errno));
    return NULL;
}

/* A worker's loop. With the changelist, the event_del/event_add pairs of one callback (a
 * request handed to the target, a 101 turned into a tunnel, a tunnel whose interest flips)
 * cost one epoll_ctl, or none, at the next dispatch instead of one each. It is safe because
 * sluice never dup()s a socket it registers; a closed fd number reused within one pass is
 * handled by libevent (its MOD falls back to ADD). Nothing else touches a worker's base
 * from another thread (messages come through an eventfd), so it needs no lock either. */
static struct event_base *worker_base_new(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *b;

    if (!ec)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    b = event_base_new_with_config(ec);
    event_config_free(ec);
    return b;
}

/* <fds>: this worker's bound listener sockets (taken over, closed on failure). */
static int worker_init(struct sl_workers *ws, struct sl_worker *w, unsigned id,
                       struct sl_config *cfg, int *fds, unsigned pipes_per_worker)
{
    static const struct timeval tick = {1, 0};

    w->id = id;
    w->thread_arg = ws;
    w->next_id = (uint64_t)id << 56;
    w->stats = aligned_alloc(64, sizeof(*w->stats));
    if (w->stats)
        memset(w->stats, 0, sizeof(*w->stats));
    w->base = worker_base_new();
    w->scratch = sl_router_scratch_new();
    w->pipes = sl_pipe_pool_new(pipes_per_worker, cfg->local.pipe_size);
    if (!w->stats || !w->base || !w->scratch || !w->pipes ||
        !(w->gen = gen_new(w, cfg, fds, NULL, 1)))
        return -1;
    sl_source_find(cfg, &w->source, w->id == 0);
    sl_worker_accepting(w, true);
    w->stop_ev = event_new(w->base, ws->stop_fd[id], EV_READ | EV_PERSIST, on_msg, w);
    w->grace_ev = evtimer_new(w->base, on_grace, w);
    w->accept_resume = evtimer_new(w->base, sl_front_on_accept_resume, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->spin_probe = event_new(w->base, -1, 0, on_spin_probe, w);
    if (!w->stop_ev || !w->grace_ev || !w->accept_resume || !w->tick_ev || !w->spin_probe ||
        event_priority_set(w->spin_probe, 0) == -1 || event_add(w->stop_ev, NULL) == -1 ||
        event_add(w->tick_ev, &tick) == -1)
        return -1;
    return 0;
}

static void worker_deinit(struct sl_worker *w)
{
    close_listeners(w);
    if (w->gen)
        sl_gen_unref(w->gen); /* the last ref: every connection has ended */
    reload_free(w->pending);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    if (w->accept_resume)
        event_free(w->accept_resume);
    if (w->tick_ev)
        event_free(w->tick_ev);
    if (w->spin_probe)
        event_free(w->spin_probe);
    free(w->stats);
    sl_pipe_pool_free(w->pipes);
    sl_router_scratch_free(w->scratch);
    if (w->base)
        event_base_free(w->base);
}

struct sl_workers *sl_workers_start(struct sl_config *cfg, unsigned n)
{
    struct sl_workers *ws = calloc(1, sizeof(*ws));
    struct rlimit rl;
    unsigned pipes;
    int *fds = NULL;
    ssize_t slots = 0;
    unsigned cpus = cpu_count();

    if (n == 0)
        n = cfg->local.threads ? cfg->local.threads : cpus;
    if (!ws)
        return NULL;
    /* Measured with 2 workers on 1 CPU (bench/run sluice-2t): rr p99 3.3x that of one
     * worker, every rate lower. A worker whose turn it is waits out the other's time slice. */
    if (n > cpus)
        sl_log(SL_LOG_WARN,
               "%u worker threads for %u usable CPU%s: workers that share a CPU wait for "
               "each other's time slices (latency); threads 0 starts one per usable CPU",
               n, cpus, cpus == 1 ? "" : "s");
    if (sl_rule_stats_init(n) == -1) { /* one worker count per process */
        free(ws);
        return NULL;
    }
    pthread_mutex_init(&ws->lock, NULL);
    ws->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ws->w = calloc(n, sizeof(*ws->w));
    ws->stop_fd = calloc(n, sizeof(int));
    if (ws->done_fd == -1 || !ws->w || !ws->stop_fd)
        goto fail;
    for (unsigned i = 0; i < n; i++)
        ws->stop_fd[i] = -1;
    ws->n = n;
    /* Pipes cost two fds each and are held only while bytes are in flight: a quarter of the fd
     * budget for them (haproxy's maxpipes rule of thumb), split over the workers. None
     * without sluice.splice: the tunnels copy (tunnel.c says why that is the default). */
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
        rl.rlim_cur = 65536;
    pipes = cfg->local.splice ? (unsigned)(rl.rlim_cur / 4 / 2 / n) : 0;
    /* Every listener is bound before any thread runs: a port in use stops the start. */
    if ((slots = bind_new(cfg, NULL, n, &fds)) == -1)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        ws->stop_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ws->stop_fd[i] == -1 ||
            worker_init(ws, &ws->w[i], i, cfg, fds + i * (size_t)slots, pipes) == -1)
            goto fail;
    }
    free(fds);
    fds = NULL;
    ws->cur = sl_config_ref(cfg);
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
    if (cfg->local.busy_poll_us)
        sl_log(SL_LOG_INFO, "%u workers running, each busy-polling %u us after its last event", n,
               cfg->local.busy_poll_us);
    else
        sl_log(SL_LOG_INFO, "%u workers running", n);
    return ws;
fail:
    for (ssize_t i = 0; fds && i < slots * (ssize_t)n; i++)
        if (fds[i] != -1)
            close(fds[i]);
    free(fds);
    for (unsigned i = 0; i < n && ws->w; i++)
        worker_deinit(&ws->w[i]);
    pthread_mutex_destroy(&ws->lock);
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
    if (ws->cur)
        sl_config_unref(ws->cur);
    pthread_mutex_destroy(&ws->lock);
    free(ws->w);
    free(ws->stop_fd);
    free(ws);
}

/* A reload replaces <old> before the worker took it: the sockets <old> bound for addresses
 * <r> keeps, and that the worker does not listen on yet, move to <r> (its own slots are -1
 * there: sl_workers_reload compared with <old>'s config). */
static void carry_over(struct sl_reload *old, struct sl_reload *r)
{
    size_t *io = calloc(old->cfg->n_frules ? old->cfg->n_frules : 1, sizeof(*io));
    size_t *in = calloc(r->cfg->n_frules ? r->cfg->n_frules : 1, sizeof(*in));

    if (io && in) {
        size_t no = listener_slots(old->cfg, io), nn = listener_slots(r->cfg, in);

        for (size_t k = 0; k < nn && k < r->n; k++) {
            const struct sl_forwarding_rule *fr = &r->cfg->frules[in[k]];

            for (size_t i = 0; r->fds[k] == -1 && i < no && i < old->n; i++) {
                const struct sl_forwarding_rule *of = &old->cfg->frules[io[i]];

                if (old->fds[i] != -1 && same_addr(&of->listen, of->port, &fr->listen, fr->port)) {
                    r->fds[k] = old->fds[i];
                    old->fds[i] = -1;
                }
            }
        }
    }
    free(io);
    free(in);
}

int sl_workers_reload(struct sl_workers *ws, struct sl_config *cfg)
{
    int *fds;
    ssize_t slots = bind_new(cfg, ws->cur, ws->n, &fds);

    if (slots == -1)
        return -1;
    for (size_t i = 0; i < ws->cur->n_frules; i++) {
        const struct sl_forwarding_rule *fr = &ws->cur->frules[i];
        char buf[SL_ADDR_STRLEN + 8];
        bool first = true;

        for (size_t k = 0; k < i && first; k++)
            first = !same_addr(&ws->cur->frules[k].listen, ws->cur->frules[k].port, &fr->listen,
                               fr->port);
        if (first && !listens_on(cfg, fr))
            sl_log(SL_LOG_INFO, "no longer listening on %s (open connections finish)",
                   sl_addr_format_port(&fr->listen, fr->port, buf));
    }
    pthread_mutex_lock(&ws->lock);
    for (unsigned i = 0; i < ws->n; i++) {
        struct sl_reload *r = calloc(1, sizeof(*r));
        int *mine = malloc((slots ? (size_t)slots : 1) * sizeof(int));

        if (!r || !mine) {
            free(r);
            free(mine);
            continue; /* that worker keeps the previous config; its sockets close below */
        }
        memcpy(mine, fds + i * (size_t)slots, (size_t)slots * sizeof(int));
        for (ssize_t k = 0; k < slots; k++)
            fds[i * (size_t)slots + (size_t)k] = -1;
        r->cfg = sl_config_ref(cfg);
        r->fds = mine;
        r->n = (size_t)slots;
        if (ws->w[i].pending) {
            /* one not yet taken is superseded, its new sockets handed on */
            carry_over(ws->w[i].pending, r);
            reload_free(ws->w[i].pending);
        }
        ws->w[i].pending = r;
    }
    pthread_mutex_unlock(&ws->lock);
    for (size_t i = 0; i < (size_t)slots * ws->n; i++)
        if (fds[i] != -1)
            close(fds[i]);
    free(fds);
    sl_config_unref(ws->cur);
    ws->cur = sl_config_ref(cfg);
    post(ws, WMSG_RELOAD);
    return 0;
}
