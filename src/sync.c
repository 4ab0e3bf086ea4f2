/* API sync (see sync.h): libcurl's multi interface on the main thread's libevent loop, in the
 * shape of libcurl's own multi-event example: curl tells us which sockets to watch and when to
 * wake it; libevent tells curl when they are ready. One poll is a small state machine: the ALB
 * (depth 2: its forwarding rules with their properties), then the referenced target groups in
 * parallel, then one document handed to the caller when it changed. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "sluice/common.h"
#include "sluice/file.h"
#include "sluice/log.h"
#include "sluice/sync.h"

#define DEFAULT_API "https://api.ionos.com/cloudapi/v6"
#define BODY_MAX (16u << 20)  /* an ALB with its rules, or a target group: far below */
#define BACKOFF_FIRST_MS 1000 /* the first retry after a failure; doubles up to the interval */
#define RETRY_AFTER_MAX_S 300 /* a 429's Retry-After is honoured up to this (or the interval) */

struct sockev {
    struct event *ev;
    curl_socket_t fd;
    struct sockev *next;
};

struct xfer {
    struct sl_sync *s;
    struct xfer *prev, *next; /* s->xfers */
    CURL *e;
    char *buf;
    size_t len;
    bool group;      /* a target group, not the ALB */
};

enum phase { IDLE = 0, POLLING };

struct sl_sync {
    struct event_base *base;
    CURLM *multi;
    struct event *curl_timer, *poll_timer, *deadline;
    struct sockev *socks;
    struct xfer *xfers;          /* in flight */
    struct curl_slist *headers;  /* Accept, and the token's Authorization: never logged */
    char *user, *password;       /* basic credentials, when no token */
    char *api, *alb_url, *origin, *cache;
    const char *ca_file;
    bool insecure;
    unsigned interval_s;
    json_t *local;
    sl_sync_publish_cb publish;
    void *arg;

    /* the poll in progress */
    enum phase phase;
    unsigned in_flight;
    json_t *alb;                 /* the ALB as read */
    json_t *groups;              /* the target groups read so far */
    char err_key[64];            /* the first failure of this poll: its kind ("" = none) */
    char err_msg[256];
    long retry_after_s;          /* from a 429 */
    bool first_done;
    bool stopped;                /* sluice is stopping: no more polls, nothing handed over */

    char *last_doc;              /* canonical text of the document last handed over */
    char *last_bad;              /* ... and of the last one refused: not offered again */
    char last_bad_why[200];
    char state_key[64];          /* what was logged last: "" = ok */
    unsigned api_failures;       /* in a row, of the API itself: what the backoff grows with */
    struct sl_sync_status st;
    uint64_t rng;
};

/* ---- curl on libevent ---------------------------------------------------------------------- */

static void check_done(struct sl_sync *s);

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sl_sync *s = arg;
    int running, flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
                         (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(s->multi, fd, flags, &running);
    check_done(s);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sl_sync *s = arg;
    int running;

    (void)fd;
    (void)what;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    struct sl_sync *s = userp;
    struct sockev *se = sockp, **pp;
    short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
                 (what & CURL_POLL_OUT ? EV_WRITE : 0);

    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (se) {
            for (pp = &s->socks; *pp; pp = &(*pp)->next) {
                if (*pp == se) {
                    *pp = se->next;
                    break;
                }
            }
            event_free(se->ev);
            free(se);
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (!se) {
        se = calloc(1, sizeof(*se));
        if (!se)
            return -1;
        se->fd = fd;
        se->next = s->socks;
        s->socks = se;
        curl_multi_assign(s->multi, fd, se);
    } else {
        event_free(se->ev);
    }
    se->ev = event_new(s->base, fd, kind, on_socket, s);
    if (!se->ev || event_add(se->ev, NULL) == -1)
        return -1;
    return 0;
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
    struct sl_sync *s = userp;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    (void)m;
    if (ms < 0)
        evtimer_del(s->curl_timer);
    else
        evtimer_add(s->curl_timer, &tv);
    return 0;
}

/* ---- one transfer -------------------------------------------------------------------------- */

static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    char *b;

    if (x->len + len > BODY_MAX)
        return 0; /* curl reports a write error: counted as a malformed answer */
    b = realloc(x->buf, x->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + x->len, p, len);
    x->len += len;
    b[x->len] = '\0';
    x->buf = b;
    return len;
}

static int start_get(struct sl_sync *s, const char *url, bool group)
{
    struct xfer *x = calloc(1, sizeof(*x));
    long ms = (long)s->interval_s * 1000;

    if (!x || !(x->e = curl_easy_init())) {
        free(x);
        return -1;
    }
    x->s = s;
    x->group = group;
    /* A poll must end before the next is due, and never waits for ever. */
    if (ms < 5000)
        ms = 5000;
    if (ms > 30000)
        ms = 30000;
    curl_easy_setopt(x->e, CURLOPT_URL, url);
    curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->e, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(x->e, CURLOPT_USERAGENT, "sluice/" SL_VERSION);
    curl_easy_setopt(x->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->e, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(x->e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(x->e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->e, CURLOPT_ACCEPT_ENCODING, "");
    if (s->user) {
        curl_easy_setopt(x->e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(x->e, CURLOPT_USERNAME, s->user);
        curl_easy_setopt(x->e, CURLOPT_PASSWORD, s->password);
    }
    if (s->ca_file)
        curl_easy_setopt(x->e, CURLOPT_CAINFO, s->ca_file);
    if (s->insecure) {
        curl_easy_setopt(x->e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(x->e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (curl_multi_add_handle(s->multi, x->e) != CURLM_OK) {
        curl_easy_cleanup(x->e);
        free(x);
        return -1;
    }
    x->next = s->xfers;
    if (s->xfers)
        s->xfers->prev = x;
    s->xfers = x;
    s->in_flight++;
    return 0;
}

/* The first failure of a poll is the one reported. <key> names its kind, for logging once
 * per change; <msg> says it to an operator. */
static void fail(struct sl_sync *s, const char *key, const char *fmt, ...) SL_PRINTF(3, 4);
static void fail(struct sl_sync *s, const char *key, const char *fmt, ...)
{
    va_list ap;

    if (s->err_key[0])
        return;
    snprintf(s->err_key, sizeof(s->err_key), "%s", key);
    va_start(ap, fmt);
    vsnprintf(s->err_msg, sizeof(s->err_msg), fmt, ap);
    va_end(ap);
}

/* An API error body's first message, for the log (bounded; it is the API's text). */
static void api_message(const char *body, size_t len, char *out, size_t n)
{
    json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *m = json_array_get(json_object_get(j, "messages"), 0);
    const char *msg = json_string_value(json_object_get(m, "message"));

    snprintf(out, n, "%s", msg ? msg : "");
    json_decref(j);
}

static void collect_groups(struct sl_sync *s);

static void finished(struct sl_sync *s, struct xfer *x, CURLcode rc)
{
    long code = 0;
    char url_kind[32], msg[160];
    json_error_t je;
    json_t *j;

    snprintf(url_kind, sizeof(url_kind), "%s", x->group ? "a target group" : "the ALB");
    curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
        fail(s, rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "unreachable",
             "reading %s: %s", url_kind, curl_easy_strerror(rc));
        return;
    }
    if (code != 200) {
        curl_off_t ra = 0;

        api_message(x->buf, x->len, msg, sizeof(msg));
        if (code == 429) {
            curl_easy_getinfo(x->e, CURLINFO_RETRY_AFTER, &ra);
            if (ra > s->retry_after_s)
                s->retry_after_s = (long)ra;
        }
        fail(s, code == 401 || code == 403 ? "auth" : code == 429 ? "rate" : code >= 500
                ? "server" : "http",
             "reading %s: HTTP %ld%s%s", url_kind, code, msg[0] ? ": " : "", msg);
        return;
    }
    j = json_loadb(x->buf ? x->buf : "", x->len, 0, &je);
    if (!json_is_object(j)) {
        if (j)
            fail(s, "json", "reading %s: not a JSON object", url_kind);
        else
            fail(s, "json", "reading %s: not a JSON object (line %d, column %d: %s)", url_kind,
                 je.line, je.column, je.text);
        json_decref(j);
        return;
    }
    if (x->group) {
        json_array_append_new(s->groups, j);
    } else if (!json_is_array(json_object_get(json_object_get(json_object_get(j, "entities"),
                                                              "forwardingrules"), "items"))) {
        /* Not "no rules": an answer that lacks them (depth not honoured) would close every
         * listener. An empty items array is a real ALB without rules. */
        fail(s, "json", "reading the ALB: no entities.forwardingrules.items in the answer "
             "(asked with depth=2)");
        json_decref(j);
    } else {
        json_decref(s->alb);
        s->alb = j;
        collect_groups(s);
    }
}

/* After the ALB: every target group its rules name, each read once. */
static void collect_groups(struct sl_sync *s)
{
    json_t *items = json_object_get(json_object_get(json_object_get(s->alb, "entities"),
                                                    "forwardingrules"), "items");
    json_t *seen = json_object();
    size_t i, k;
    json_t *fr, *rule;

    json_array_foreach(items, i, fr) {
        json_array_foreach(json_object_get(json_object_get(fr, "properties"), "httpRules"), k,
                           rule) {
            const char *id = json_string_value(json_object_get(rule, "targetGroup"));
            char *esc, *url;

            if (!id || json_object_get(seen, id))
                continue;
            json_object_set_new(seen, id, json_true());
            esc = curl_easy_escape(NULL, id, 0);
            if (esc && asprintf(&url, "%s/targetgroups/%s?depth=1", s->api, esc) != -1) {
                if (start_get(s, url, true) == -1)
                    fail(s, "memory", "out of memory");
                free(url);
            }
            curl_free(esc);
        }
    }
    json_decref(seen);
}

/* ---- the document -------------------------------------------------------------------------- */

/* Drops what changes without the config changing (metadata: etags, dates, states; hrefs). */
static void strip(json_t *j)
{
    size_t i;
    json_t *v;
    const char *k;
    void *tmp;

    if (json_is_object(j)) {
        json_object_del(j, "metadata");
        json_object_del(j, "href");
        json_object_del(j, "_links");
        json_object_foreach_safe(j, tmp, k, v)
            strip(v);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            strip(v);
    }
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0700);
        *p = '/';
    }
}

/* Logs a change of state once: <key> "" is "the API answers". */
static void log_state(struct sl_sync *s, const char *key, const char *msg)
{
    if (!strcmp(s->state_key, key))
        return;
    if (!key[0])
        sl_log(SL_LOG_INFO, "sync: %s answers again", s->alb_url);
    else
        sl_log(SL_LOG_WARN, "sync: %s; the running config stays; retrying with backoff", msg);
    snprintf(s->state_key, sizeof(s->state_key), "%s", key);
}

static void schedule(struct sl_sync *s, bool failed)
{
    uint64_t ms = (uint64_t)s->interval_s * 1000;
    struct timeval tv;

    if (failed) {
        /* 1 s, 2 s, 4 s ... up to the interval, each somewhere in its upper half */
        unsigned n = s->api_failures > 20 ? 20 : s->api_failures;
        uint64_t b = (uint64_t)BACKOFF_FIRST_MS << (n ? n - 1 : 0);

        if (b > ms)
            b = ms;
        ms = b / 2 + sl_xorshift64s(&s->rng) % (b / 2 + 1);
        if (s->retry_after_s > 0 && (uint64_t)s->retry_after_s * 1000 > ms) {
            /* honoured, within reason: a far-future one must not stop syncing for days */
            uint64_t cap = (uint64_t)(s->interval_s > RETRY_AFTER_MAX_S ? s->interval_s
                                                                        : RETRY_AFTER_MAX_S);

            ms = (uint64_t)(s->retry_after_s < (long)cap ? s->retry_after_s : (long)cap) * 1000;
        }
    }
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    evtimer_add(s->poll_timer, &tv);
}

/* The poll's end: hand the document over when it changed. */
static int by_id(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));

    return strcmp(x ? x : "", y ? y : "");
}

/* The groups in id order: they arrive in whatever order their requests finish, and an order
 * is no change. */
static void sort_groups(json_t *groups)
{
    size_t n = json_array_size(groups);
    json_t **v = malloc((n ? n : 1) * sizeof(*v));

    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(groups, i));
    qsort(v, n, sizeof(*v), by_id);
    json_array_clear(groups);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(groups, v[i]);
    free(v);
}

static void poll_done(struct sl_sync *s)
{
    bool failed = s->err_key[0] != '\0';

    s->phase = IDLE;
    if (s->stopped)
        return;
    s->st.last_attempt_ms = sl_clock_ms(CLOCK_REALTIME);
    if (!failed) {
        json_t *doc = json_object(), *canon;
        char *text = NULL;

        sort_groups(s->groups);
        json_object_set(doc, "applicationLoadBalancer", s->alb);
        json_object_set(doc, "targetGroups", s->groups);
        if (s->local)
            json_object_set_new(doc, "sluice", json_deep_copy(s->local));
        canon = json_deep_copy(doc);
        strip(canon);
        text = json_dumps(canon, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(canon);
        if (!text) {
            fail(s, "memory", "out of memory");
        } else if (s->last_bad && !strcmp(text, s->last_bad)) {
            fail(s, "invalid", "the API's config is invalid (%s)", s->last_bad_why);
        } else if (!s->last_doc || strcmp(text, s->last_doc)) {
            char why[200] = "";

            int prc = s->publish(doc, s->origin, why, sizeof(why), s->arg);

            if (prc == 0) {
                char *pretty = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
                const char *step = "build";

                free(s->last_doc);
                s->last_doc = text;
                text = NULL;
                s->st.updates++;
                s->st.from_cache = false;
                mkdirs(s->cache);
                /* 0600: the whole config, no credentials, still nobody else's business */
                if (!pretty || sl_write_file_atomic(s->cache, pretty, strlen(pretty), 0600,
                                                    &step) == -1)
                    sl_log(SL_LOG_WARN, "sync: cannot %s the cache %s: %s", step, s->cache,
                           strerror(errno));
                free(pretty);
            } else if (prc == -2) {
                /* Valid, but it could not be applied now (a port in use): tried again. */
                fail(s, "apply", "the API's config cannot be applied now (%s)", why);
            } else {
                /* The API answered; what it said is not a config we can run. Refused once,
                 * logged once: the same document is not offered again. */
                fail(s, "invalid", "the API's config is invalid (%s)", why);
                snprintf(s->last_bad_why, sizeof(s->last_bad_why), "%s", why);
                free(s->last_bad);
                s->last_bad = text;
                text = NULL;
            }
        }
        free(text);
        json_decref(doc);
        failed = s->err_key[0] != '\0';
    }
    s->st.polls++;
    if (failed) {
        s->st.ok = false;
        s->st.failures++;
        s->st.consecutive_failures++;
        if (strcmp(s->err_key, "invalid"))
            s->api_failures++;
        snprintf(s->st.last_error, sizeof(s->st.last_error), "%s", s->err_msg);
        log_state(s, s->err_key, s->err_msg);
    } else {
        s->st.ok = true;
        s->st.from_cache = false; /* the API has spoken: what runs is what it says */
        s->st.consecutive_failures = 0;
        s->api_failures = 0;
        s->st.last_error[0] = '\0';
        s->st.last_success_ms = s->st.last_attempt_ms;
        log_state(s, "", "");
    }
    /* An invalid config is the API's content, not its health: poll at the interval. */
    schedule(s, failed && strcmp(s->err_key, "invalid"));
    s->first_done = true;
}

static void xfer_free(struct sl_sync *s, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        s->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    curl_multi_remove_handle(s->multi, x->e);
    curl_easy_cleanup(x->e);
    free(x->buf);
    free(x);
}

static void check_done(struct sl_sync *s)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(s->multi, &left))) {
        struct xfer *x = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        finished(s, x, m->data.result);
        xfer_free(s, x);
        s->in_flight--;
    }
    if (s->phase == POLLING && s->in_flight == 0)
        poll_done(s);
}

static void poll_start(struct sl_sync *s)
{
    if (s->phase != IDLE)
        return;
    s->phase = POLLING;
    s->err_key[0] = s->err_msg[0] = '\0';
    s->retry_after_s = 0;
    json_decref(s->alb);
    s->alb = NULL;
    json_array_clear(s->groups);
    if (start_get(s, s->alb_url, false) == -1) {
        fail(s, "memory", "out of memory");
        poll_done(s);
    }
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_start(arg);
}

/* ---- setup --------------------------------------------------------------------------------- */

static char *api_base(const char *given)
{
    const char *u = given ? given : getenv("IONOS_API_URL");
    size_t n;
    char *out;

    if (!u || !*u)
        u = DEFAULT_API;
    n = strlen(u);
    while (n && u[n - 1] == '/')
        n--;
    /* As the IONOS SDKs do: a URL without the base path gets it. */
    if (n >= 12 && !memcmp(u + n - 12, "/cloudapi/v6", 12))
        return strndup(u, n);
    if (asprintf(&out, "%.*s/cloudapi/v6", (int)n, u) == -1)
        return NULL;
    return out;
}

static bool simple_id(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

static char *default_cache(const struct sl_sync_opts *o)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *out;
    int n;

    if (xdg && *xdg)
        n = asprintf(&out, "%s/sluice/sync-%s-%s.json", xdg, o->datacenter_id, o->alb_id);
    else
        n = asprintf(&out, "%s/.cache/sluice/sync-%s-%s.json", home && *home ? home : ".",
                     o->datacenter_id, o->alb_id);
    return n == -1 ? NULL : out;
}

struct sl_sync *sl_sync_new(struct event_base *base, const struct sl_sync_opts *o,
                            sl_sync_publish_cb publish, void *arg)
{
    struct sl_sync *s;
    const char *token = getenv("IONOS_TOKEN"), *user = getenv("IONOS_USERNAME");
    char *auth = NULL;

    if (!simple_id(o->datacenter_id) || !simple_id(o->alb_id)) {
        sl_log(SL_LOG_ERR, "sync: \"%s/%s\" is not DATACENTER_ID/ALB_ID (ids are UUIDs)",
               o->datacenter_id ? o->datacenter_id : "", o->alb_id ? o->alb_id : "");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s) {
        curl_global_cleanup();
        return NULL;
    }
    s->base = base;
    s->publish = publish;
    s->arg = arg;
    s->interval_s = o->interval_s ? o->interval_s : 10;
    s->ca_file = o->ca_file;
    s->insecure = o->insecure;
    s->local = o->local ? json_incref(o->local) : NULL;
    s->groups = json_array();
    s->rng = sl_seed64((uintptr_t)s);
    s->api = api_base(o->api_url);
    s->cache = o->cache_file ? strdup(o->cache_file) : default_cache(o);
    if (!s->api || !s->cache || !s->groups)
        goto fail;
    if (asprintf(&s->alb_url, "%s/datacenters/%s/applicationloadbalancers/%s?depth=2", s->api,
                 o->datacenter_id, o->alb_id) == -1) {
        s->alb_url = NULL;
        goto fail;
    }
    if (asprintf(&s->origin, "IONOS API %s/datacenters/%s/applicationloadbalancers/%s",
                 s->api, o->datacenter_id, o->alb_id) == -1) {
        s->origin = NULL;
        goto fail;
    }
    s->st.url = s->alb_url;
    s->headers = curl_slist_append(NULL, "Accept: application/json");
    if (token && *token) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) == -1)
            goto fail;
        s->headers = curl_slist_append(s->headers, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    } else if (user && *user) {
        const char *pw = getenv("IONOS_PASSWORD");

        s->user = strdup(user);
        s->password = strdup(pw ? pw : "");
        if (!s->user || !s->password)
            goto fail;
    } else {
        sl_log(SL_LOG_INFO, "sync: no IONOS_TOKEN (nor IONOS_USERNAME): requests carry no "
               "credentials (fine for `sluice emu` without --token)");
    }
    if (s->insecure)
        sl_log(SL_LOG_WARN, "sync: --insecure: the API's TLS certificate is NOT verified; "
               "anyone on the path can feed this balancer its config. Use it only with a local "
               "emulator");
    s->multi = curl_multi_init();
    s->curl_timer = evtimer_new(base, on_curl_timer, s);
    s->poll_timer = evtimer_new(base, on_poll, s);
    if (!s->headers || !s->multi || !s->curl_timer || !s->poll_timer)
        goto fail;
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    sl_log(SL_LOG_INFO, "sync: %s every %u s (cache %s)", s->alb_url, s->interval_s, s->cache);
    return s;
fail:
    sl_log(SL_LOG_ERR, "sync: out of memory");
    sl_sync_free(s);
    return NULL;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sl_sync *s = arg;

    (void)fd;
    (void)what;
    s->first_done = true; /* stop waiting; the poll carries on in the background */
}

int sl_sync_first(struct sl_sync *s, unsigned timeout_s)
{
    struct timeval tv = {timeout_s, 0};
    json_error_t je;
    json_t *doc;
    char why[200] = "";

    s->deadline = evtimer_new(s->base, on_deadline, s);
    if (s->deadline)
        evtimer_add(s->deadline, &tv);
    poll_start(s);
    while (!s->first_done && !s->stopped)
        event_base_loop(s->base, EVLOOP_ONCE);
    if (s->stopped) {
        if (s->deadline) {
            event_free(s->deadline);
            s->deadline = NULL;
        }
        return -1;
    }
    if (s->deadline) {
        event_free(s->deadline);
        s->deadline = NULL;
    }
    if (s->st.ok && s->st.updates)
        return 0;
    if (s->phase != IDLE && !s->err_key[0])
        sl_log(SL_LOG_WARN, "sync: no answer from the API within %u s", timeout_s);
    doc = json_load_file(s->cache, 0, &je);
    if (!doc) {
        sl_log(SL_LOG_ERR, "sync: no config: the API failed (%s) and the cache %s cannot be "
               "read (%s)", s->err_msg[0] ? s->err_msg : "no answer", s->cache, je.text);
        return -1;
    }
    /* the local block is this run's, not the one the cache was written with */
    if (s->local)
        json_object_set_new(doc, "sluice", json_deep_copy(s->local));
    else
        json_object_del(doc, "sluice");
    if (s->publish(doc, s->cache, why, sizeof(why), s->arg) != 0) {
        sl_log(SL_LOG_ERR, "sync: the cached config %s is invalid (%s)", s->cache, why);
        json_decref(doc);
        return -1;
    }
    /* The API's same document later is no change. */
    {
        json_t *canon = json_deep_copy(doc);

        strip(canon);
        free(s->last_doc);
        s->last_doc = json_dumps(canon, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(canon);
    }
    sl_log(SL_LOG_WARN, "sync: serving the cached config %s until the API answers", s->cache);
    s->st.from_cache = true;
    json_decref(doc);
    return 1;
}

void sl_sync_stop(struct sl_sync *s)
{
    s->stopped = true;
    evtimer_del(s->poll_timer);
}

void sl_sync_poll_now(struct sl_sync *s)
{
    if (s->phase != IDLE || s->stopped)
        return;
    /* an operator asking again gets the document offered again, refused or not */
    free(s->last_bad);
    s->last_bad = NULL;
    evtimer_del(s->poll_timer);
    poll_start(s);
}

void sl_sync_set_local(struct sl_sync *s, json_t *local)
{
    json_decref(s->local);
    s->local = local ? json_incref(local) : NULL;
    /* (SIGHUP) the next document is handed over even if unchanged, so that the files it
     * names, renewed certificates, are read again */
    free(s->last_doc);
    s->last_doc = NULL;
}

const struct sl_sync_status *sl_sync_status(const struct sl_sync *s)
{
    return &s->st;
}

void sl_sync_free(struct sl_sync *s)
{
    if (!s)
        return;
    /* Transfers in flight end here; their sockets' events are freed with them. */
    while (s->xfers)
        xfer_free(s, s->xfers);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    while (s->socks) {
        struct sockev *se = s->socks;

        s->socks = se->next;
        event_free(se->ev);
        free(se);
    }
    if (s->curl_timer)
        event_free(s->curl_timer);
    if (s->poll_timer)
        event_free(s->poll_timer);
    if (s->deadline)
        event_free(s->deadline);
    curl_slist_free_all(s->headers); /* holds the token */
    free(s->user);
    if (s->password) {
        explicit_bzero(s->password, strlen(s->password));
        free(s->password);
    }
    free(s->api);
    free(s->alb_url);
    free(s->origin);
    free(s->cache);
    free(s->last_doc);
    free(s->last_bad);
    json_decref(s->alb);
    json_decref(s->groups);
    json_decref(s->local);
    free(s);
    curl_global_cleanup();
}
