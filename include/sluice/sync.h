/* API sync: keeps the config in step with an ALB in the IONOS Cloud API (or `sluice emu`).
 * libcurl's multi interface runs on the main thread's libevent loop, so no worker ever waits on
 * the API. Every poll reads the ALB with its forwarding rules (depth 2), then every target
 * group they reference, assembles them into one config document (plus the local `sluice`
 * block) and hands it over only when it differs from the last one handed over. A failing API
 * (unreachable, timeout, 401, 5xx, 429 with Retry-After, malformed JSON) or a document that
 * does not validate leaves the running config alone: retries back off with jitter, and each
 * change of state is logged once. The last good document is cached on disk (atomically) for a
 * start without the API. The token never appears in a log line or an error. */
#ifndef SLUICE_SYNC_H
#define SLUICE_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct sl_sync;

struct sl_sync_opts {
    const char *datacenter_id;
    const char *alb_id;
    unsigned interval_s;  /* between polls while the API answers; 0 = 10 */
    const char *api_url;  /* NULL = $IONOS_API_URL, else https://api.ionos.com/cloudapi/v6 */
    const char *ca_file;  /* NULL = the system's CAs */
    bool insecure;        /* do not verify TLS certificates (a local emulator only) */
    const char *cache_file; /* NULL = $XDG_CACHE_HOME or ~/.cache: sluice/sync-DC-ALB.json */
    json_t *local;        /* the `sluice` block to add to every document (borrowed), or NULL */
};

/* Hands a new document over. Returns 0 when it became the running config, -1 when it is
 * invalid (not offered again until it changes or SIGHUP), -2 when it is valid but could not
 * be applied now (a port in use: offered again at the next poll). The callee logs why and
 * fills <why> with a one-line summary. */
typedef int (*sl_sync_publish_cb)(json_t *doc, const char *origin, char *why, size_t why_len,
                                  void *arg);

/* Sets up a sync on <base> (credentials from IONOS_TOKEN, else IONOS_USERNAME and
 * IONOS_PASSWORD). NULL after logging why. Nothing is requested before sl_sync_first. */
struct sl_sync *sl_sync_new(struct event_base *base, const struct sl_sync_opts *o,
                            sl_sync_publish_cb publish, void *arg);
/* The first poll, run to its end on <base> (at most <timeout_s>): 0 when the API's document
 * was handed over, else the cached one is tried (1 when it was handed over, -1 when there is
 * no usable cache either; logged). Then polls go on by themselves while <base> runs. */
int sl_sync_first(struct sl_sync *s, unsigned timeout_s);
/* Stopping: no more polls; a poll under way ends without handing anything over. */
void sl_sync_stop(struct sl_sync *s);
/* Polls now (SIGHUP), unless a poll is under way. */
void sl_sync_poll_now(struct sl_sync *s);
/* The config file's "sluice" block (a ref is taken; NULL: none), merged into every document
 * from now on: SIGHUP hands over the file's edits with it before polling. The next document
 * is handed over even if unchanged (its certificate files are read again). */
void sl_sync_set_local(struct sl_sync *s, json_t *local);
void sl_sync_free(struct sl_sync *s);

/* For /status and /metrics (main thread). */
struct sl_sync_status {
    const char *url;           /* the ALB's URL (no credentials) */
    bool ok;                   /* the last poll succeeded */
    bool from_cache;           /* the running config came from the cache */
    uint64_t last_success_ms;  /* wall clock; 0 = never */
    uint64_t last_attempt_ms;
    char last_error[256];      /* "" while ok */
    unsigned consecutive_failures;
    uint64_t polls, failures, updates; /* since start */
};
const struct sl_sync_status *sl_sync_status(const struct sl_sync *s);

#endif
