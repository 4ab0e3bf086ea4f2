/* Workers: N threads, each with its own event_base, its own SO_REUSEPORT listening socket on
 * every forwarding rule's listener, its own balancer state and pipe pool. A worker owns its
 * connections and tunnels outright; nothing crosses threads except the config snapshot
 * (refcounted), the shared target state (atomics) and the stop request. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "sluice/addr.h"
#include "sluice/config-t.h"
#include "sluice/metrics.h"
#include "sluice/source.h"
#include "sluice/tunnel.h"

struct sl_worker;
struct sl_conn;
struct sl_gen;
struct sl_reload;

/* One listening socket of one worker, in one generation. */
struct sl_listener {
    int fd;             /* -1 once closed or handed to the next generation */
    struct event ev;
    struct sl_worker *w;
    struct sl_gen *gen;
    const struct sl_forwarding_rule *fr;
    struct sl_addr addr; /* bound address and port (after the address map) */
    uint16_t port;
};

/* One config snapshot as one worker serves it. New connections take the current generation;
 * each connection and tunnel holds a ref on the one it started with, so a reload never changes
 * the rules, targets or balancer under a request in flight. Worker-local: no atomics. */
struct sl_gen {
    struct sl_config *cfg;           /* one ref */
    struct sl_balancer *bal;
    struct sl_rule_table rules;      /* request counters of cfg's rules */
    struct sl_listener *listeners;   /* one per distinct listener address */
    size_t n_listeners;
    unsigned refs;                   /* 1 while current, + each connection and tunnel */
    uint64_t number;                 /* 1 for the config sluice started with */
};

static inline struct sl_gen *sl_gen_ref(struct sl_gen *g)
{
    g->refs++;
    return g;
}
/* Frees the generation with its last ref (its listeners are closed by then). */
void sl_gen_unref(struct sl_gen *g);

struct sl_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct sl_gen *gen;             /* what new connections get */
    struct sl_reload *pending;      /* a reload handed over, not yet taken (ws->lock) */
    struct sl_router_scratch *scratch;
    struct sl_pipe_pool *pipes;
    struct sl_source source;        /* of the current generation */
    struct sl_tunnel_list tunnels;
    struct sl_conn *conns;          /* HTTP-phase connections, for shutdown */
    size_t n_conns;
    struct event *accept_resume;    /* re-enables accepting after running out of fds */
    struct event *stop_ev;          /* activated by the main thread */
    struct event *grace_ev;         /* drain period end */
    struct event *tick_ev;          /* once a second: live tunnel bytes to the counters */
    struct event *spin_probe;       /* busyPoll: did this pass find an event? (spin_found) */
    bool spin_found;
    struct sl_worker_stats *stats;  /* written by this worker only (metrics.h) */
    atomic_uint msgs;               /* WMSG_* from other threads, with a write to its eventfd */
    bool stopping;
    bool fd_exhausted;              /* logged once per episode */
    uint64_t next_id;               /* connection ids: worker id in the top byte */
    void *thread_arg;               /* the struct sl_workers this worker belongs to */
    bool started;                   /* its thread runs */
};

struct sl_workers;

/* Binds every listener for <n> workers (0 = one per CPU) serving <cfg> (each worker takes a
 * ref) and starts their threads. Returns NULL after logging why (a listener could not be
 * bound, out of memory). */
struct sl_workers *sl_workers_start(struct sl_config *cfg, unsigned n);
/* Asks every worker to stop accepting and to end once its connections and tunnels are done or
 * <drain_ms> passed (then they are closed). Safe from the main thread at any time. */
void sl_workers_stop(struct sl_workers *ws, uint32_t drain_ms);
/* An eventfd that counts workers whose loop has ended (read it to learn how many more did). */
int sl_workers_done_fd(const struct sl_workers *ws);
unsigned sl_workers_count(const struct sl_workers *ws);
/* Hands <cfg> to every worker: new connections are served with it from the worker's next loop
 * turn; open connections and tunnels finish with the config they started with. Listener
 * addresses new in <cfg> are bound first (for every worker), so a port in use refuses the
 * reload (-1, logged) and changes nothing; addresses that stay keep their sockets; those
 * <cfg> drops are closed (their connections finish). Main thread only. */
int sl_workers_reload(struct sl_workers *ws, struct sl_config *cfg);
/* From the health checker: a target went down; workers close its tunnels when
 * sluice.closeOnTargetDown is set. Safe from any thread. */
void sl_workers_target_down(struct sl_workers *ws);
/* Worker <i>'s counters (i < sl_workers_count), readable from any thread. */
const struct sl_worker_stats *sl_workers_stats(const struct sl_workers *ws, unsigned i);
/* Waits for every worker thread to end and frees them. */
void sl_workers_join(struct sl_workers *ws);

/* For front and upstream: the worker ends its loop when stopping and nothing is left. */
void sl_worker_check_done(struct sl_worker *w);
/* Starts or stops watching the current generation's listeners (out of fds: front.c). */
void sl_worker_accepting(struct sl_worker *w, bool on);

/* From upstream.c, for the worker. Once a second: adds the bytes its tunnels moved since the
 * last tick to the shared counters, and closes tunnels whose removed target's drainTimeout has
 * passed. After a reload to <cfg>: marks the tunnels to targets <cfg> no longer has (closed
 * after sluice.drainTimeout when the file sets it, else left to finish). closeOnTargetDown:
 * closes the tunnels to targets marked down. */
void upstream_tunnels_tick(struct sl_worker *w);
void upstream_tunnels_reload(struct sl_worker *w, const struct sl_config *cfg);
void upstream_tunnels_close_down(struct sl_worker *w);

#endif
