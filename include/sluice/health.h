/* Health checks: one checker thread with its own event loop probes every target of every
 * target group as the group's IONOS `healthCheck` / `httpHealthCheck` say, and publishes each
 * target's verdict in its shared struct sl_target_state (balancer.h): `down` for the balancer,
 * the last result for the admin endpoints. No worker loop ever runs a check.
 *
 * Rules (README "Health checks"):
 * - TCP check: a connect every checkInterval ms, bounded by checkTimeout (capped by the
 *   interval). HTTP check (httpHealthCheck present): the same connect, then `method path
 *   HTTP/1.1` with `Connection: close`; the status code or the body is matched against
 *   `response` (exact status / body contains, or a PCRE2 search with regex), then negated
 *   when negate is set.
 * - Fall: DOWN after `retries` consecutive failures (0 counts as 1). Rise: UP after one
 *   success. Targets start UP.
 * - Each target's first check comes at a random point within its first interval, then every
 *   interval: a thousand targets are not probed in one burst.
 * - healthCheckEnabled false: never checked, always UP.
 * - Passive signal: a connect that fails while proxying counts as one failed check.
 * - Every UP/DOWN change is logged once with its reason; a flapping target (4 changes within
 *   60 s) is summarised at most once a minute instead of logging each change.
 * - The same target in two groups has one state per group. A target whose group (id, else
 *   name), ip:port and check settings are unchanged by sl_health_apply keeps its state (UP or
 *   DOWN, failure count, schedule); otherwise it starts over UP and unchecked (the counters
 *   go on). */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stdbool.h>

#include "sluice/balancer.h"
#include "sluice/config-t.h"

/* A check's outcome, kept in sl_target_state.last_result / down_result. */
enum sl_check_result {
    SL_CHECK_NONE = 0,     /* not checked yet */
    SL_CHECK_OK,
    SL_CHECK_REFUSED,      /* connection refused */
    SL_CHECK_TIMEOUT,      /* no connect, or no whole answer, within the check timeout */
    SL_CHECK_RESET,        /* reset or closed before the answer was complete */
    SL_CHECK_ERROR,        /* connect failed otherwise (unreachable, no source address, fds) */
    SL_CHECK_STATUS,       /* HTTP: the status did not match (last_status has it) */
    SL_CHECK_BODY,         /* HTTP: the body did not match */
    SL_CHECK_BAD_RESPONSE, /* HTTP: not a valid response, or too large */
};

/* A short phrase: "ok", "refused", "timeout", "reset", "connect error", "status 426" (for
 * SL_CHECK_STATUS, with <status>), "body mismatch", "bad response", "not checked". <buf> holds
 * at least 32 bytes; returns it or a constant. */
const char *sl_check_result_str(enum sl_check_result r, int status, char *buf);

struct sl_health;

/* Called on the checker thread after a target goes DOWN (down) or UP: on every change, also
 * while a flapping target's log lines are summarised. It must not block. */
typedef void (*sl_health_hook)(struct sl_target_state *st, bool down, void *arg);

/* Starts the checker thread (idle until sl_health_apply). <hook> may be NULL. NULL on failure
 * (logged). One per process: the passive signal finds it, and a second start is refused. */
struct sl_health *sl_health_start(sl_health_hook hook, void *arg);
/* Checks <cfg>'s targets from now on (takes a ref on <cfg>, drops the previous one's), from
 * its lbPrivateIps when local. Returns 0 once <cfg> is handed over (-1 if <h> or <cfg> is
 * NULL): the checker thread applies it soon after, and a newer apply before that supersedes
 * it. Out-of-memory there is logged and leaves the previous set checked. */
int sl_health_apply(struct sl_health *h, struct sl_config *cfg);
/* Stops the thread and frees everything (NULL is fine). Call it once no other thread can be
 * inside sl_health_passive_fail, which reaches the checker without a lock. */
void sl_health_stop(struct sl_health *h);

/* From any thread: a connect to the target failed while proxying (<why>: REFUSED, TIMEOUT or
 * ERROR). Counts as one failed check of that target; no-op when its checks are disabled or
 * no checker runs. Lock-free and cheap: a counter, and an eventfd write only for the first
 * failure since the checker last looked. */
void sl_health_passive_fail(struct sl_target_state *st, enum sl_check_result why);

#endif
