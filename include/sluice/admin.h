/* The admin endpoints, served on the main thread's event loop (evhttp), never on a worker's:
 *   GET /metrics  Prometheus text format 0.0.4
 *   GET /status   JSON: listeners, rules, target groups and every target's health and counters
 *   GET /healthz  200 "ok" while serving, 503 "draining" once stopping
 * Read-only; loopback by default (SL_ADMIN_DEFAULT). */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>

#include "sluice/config-t.h"

#define SL_ADMIN_DEFAULT "127.0.0.1:9900"

struct event_base;
struct sl_workers;
struct sl_admin;

/* Listens on <addr> ("IP:PORT") on <base>. NULL after logging why (address in use, ...). */
struct sl_admin *sl_admin_start(struct event_base *base, const char *addr);
/* What to report from now on: <cfg> (a ref is taken, the previous one dropped) served by <ws>. */
void sl_admin_set(struct sl_admin *a, struct sl_config *cfg, struct sl_workers *ws);
/* The API sync to report on (NULL: none). */
struct sl_sync;
void sl_admin_set_sync(struct sl_admin *a, const struct sl_sync *s);
/* Stopping: /healthz answers 503 from now on. */
void sl_admin_set_draining(struct sl_admin *a);
/* Closes the listener and frees (NULL is fine). Call before freeing the workers. */
void sl_admin_free(struct sl_admin *a);

#endif
