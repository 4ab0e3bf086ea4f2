/* Target selection for a FORWARD rule's target group: ROUND_ROBIN (nginx's smooth weighted
 * round robin), LEAST_CONNECTION (fewest active connections per unit of weight, ties by smooth
 * weighted round robin so idle groups still follow the weights), RANDOM (weighted), SOURCE_IP
 * (weighted rendezvous hash of the client address: a client keeps its target while that
 * target is eligible, and only the clients of a target that leaves move).
 *
 * A target is eligible when its weight is > 0, it is not in maintenance, it is not marked
 * down by the health checker, and it was not already tried for this request.
 *
 * State: struct sl_target_state is shared by every worker and survives config reloads (keyed
 * by target group id, or name, + target ip:port); its fields are atomics. struct sl_balancer
 * is one worker's selection state for one config snapshot (SWRR weights, random seed): no
 * locks, no allocation per pick. */
#ifndef SLUICE_BALANCER_H
#define SLUICE_BALANCER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/config-t.h"

/* Targets tried for one request before answering 502/504. */
#define SL_BALANCER_MAX_TRIES 3

struct sl_target_state {
    /* Read by the balancer on every pick. */
    atomic_uint active;         /* open connections to the target (all workers) */
    atomic_bool down;           /* set by the health checker; false until it says otherwise */
    /* Counted by the workers, on the same line: a request that picks the target writes this
     * line anyway (active, picks), so its bytes cost no second line. */
    atomic_uint_fast64_t picks;     /* connections sent to it since start */
    atomic_uint_fast64_t fails;     /* connects that failed while proxying */
    atomic_uint_fast64_t bytes_out; /* bytes sent to the target (requests, tunnels) */
    atomic_uint_fast64_t bytes_in;  /* bytes received from it */
    /* The rest on their own cache line, written by the health checker (health.h) and read by
     * the admin endpoints: checks never bounce the line every pick reads. */
    _Alignas(64) atomic_int last_result; /* enum sl_check_result of the last check; 0 = none */
    atomic_int last_status;         /* HTTP status of the last HTTP check; 0 = none */
    atomic_uint_fast64_t last_check_ms; /* wall clock (ms since the epoch) it ended; 0 = never */
    atomic_uint_fast64_t checks;    /* checks done */
    atomic_uint_fast64_t check_fails; /* checks failed (passive failures included) */
    atomic_uint_fast64_t changes;   /* UP/DOWN changes */
    atomic_int down_result;         /* enum sl_check_result that made it DOWN */
    atomic_int down_status;         /* and the HTTP status then, if any */
    /* Passive signal: workers add failed connects here; the health checker takes them. */
    atomic_uint passive_pending;
    atomic_int passive_result;
};

/* The shared state of <target> in <group>, made on first use (zeroed: up, idle). The registry
 * lives until sl_target_states_free(); thread-safe, meant for config adoption, not the hot
 * path. NULL on out-of-memory. */
struct sl_target_state *sl_target_state_get(const struct sl_target_group *group,
                                            const struct sl_target *target);
/* Frees the registry (at exit, once no worker runs). */
void sl_target_states_free(void);

struct sl_balancer;

/* One worker's balancer for <cfg> (which must outlive it); <seed> seeds RANDOM. NULL on
 * out-of-memory. */
struct sl_balancer *sl_balancer_new(const struct sl_config *cfg, uint64_t seed);
void sl_balancer_free(struct sl_balancer *b);

/* The targets already tried for one request; zero-initialise per request. */
struct sl_tried {
    unsigned n;
    unsigned idx[SL_BALANCER_MAX_TRIES];
};

struct sl_pick {
    const struct sl_target *target;
    struct sl_target_state *state;
    unsigned index; /* in group->targets */
};

/* HOT: connect. Picks a target of <group> (one of the config's tgroups) for a client at
 * <client>, skipping those in <tried>, and records it in <tried>. Returns SL_OK with <out>
 * filled, or SL_BUSY when no target is eligible (or <tried> is full). Does not touch
 * state->active: the caller counts the connection it opens. */
int sl_balancer_pick(struct sl_balancer *b, const struct sl_target_group *group,
                     const struct sl_addr *client, struct sl_tried *tried, struct sl_pick *out);

#endif
