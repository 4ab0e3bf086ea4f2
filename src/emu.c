/* `sluice emu`: the IONOS CloudAPI v6 emulator (see emu.h). One process, one libevent loop,
 * one evhttp server. The whole state is one jansson tree: a write deep-copies it, applies the
 * change, checks the ALBs it touches with the loader `sluice check` uses, writes the copy to
 * the state file (temp file, fsync, rename, fsync of the directory) and only then adopts it,
 * so a refused or failed write changes nothing. hrefs are built per request from its Host
 * header; the state stores paths and ids only. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "sluice/addr.h"
#include "sluice/config.h"
#include "sluice/diag.h"
#include "sluice/emu.h"
#include "sluice/json.h"
#include "sluice/log.h"

#define BASE_PATH "/cloudapi/v6"
#define STATE_FORMAT "sluice-emu-state/1"
#define MAX_BODY (4u << 20)
#define MAX_REQUESTS 500 /* request records kept for /requests; the oldest go first */
#define MAX_SEGS 8
#define MAX_DEPTH 10
#define EMU_USER "emu@sluice.invalid"
#define EMU_USER_ID "00000000-0000-4000-8000-000000000000"
#define DUMP_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

/* errorCode values. 309, 315 and 200 are the ones the real API is seen to send for 404, 401
 * and 422; the 1xx and 300 codes are this emulator's own picks in the same style. */
#define EC_MALFORMED "100"   /* 400: the body is not JSON, or the query string is broken */
#define EC_METHOD "101"      /* 405 */
#define EC_MEDIA "102"       /* 415: a Content-Type that is not JSON */
#define EC_VALIDATION "200"  /* 422: a field or query parameter refused */
#define EC_INTERNAL "300"    /* 500: the state file could not be written */
#define EC_NOT_FOUND "309"   /* 404: unknown resource or path */
#define EC_UNAUTHORIZED "315" /* 401 */

struct emu {
    struct event_base *base;
    struct evhttp *http;
    struct event *sig_term, *sig_int;
    json_t *state;
    const char *state_path;
    const char *token;
    char listen[SL_ADDR_STRLEN + 8]; /* host for hrefs when a request has no usable Host */
};

enum kind { K_ALB = 0, K_FR, K_TG, K_REQ };

static const char *const kind_type[] = { "applicationloadbalancer", "forwarding-rule",
                                         "target-group", "request" };

enum route {
    R_NONE = 0,
    R_TG_COLL,
    R_TG,
    R_ALB_COLL,
    R_ALB,
    R_FR_COLL,
    R_FR,
    R_REQ_COLL,
    R_REQ,
    R_REQ_STATUS,
};

/* One HTTP request being answered. */
struct call {
    struct emu *e;
    struct evhttp_request *req;
    enum evhttp_cmd_type cmd;
    const char *method;
    char *base;    /* "http://HOST/cloudapi/v6" */
    char *pathbuf; /* the path below the base, split in place into seg[] */
    char *seg[MAX_SEGS];
    int nseg;
    struct evkeyvalq query;
    long depth;
    bool depth_given, pretty;
    struct page {
        long offset, limit;
    } pg;
    int status;
};

struct apierr {
    int status;
    const char *code;
    json_t *msgs;
};

/* ---- small helpers ----------------------------------------------------------------------- */

static char *SL_PRINTF(1, 2) xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n == -1)
        abort();
    return s;
}

static json_t *xj(json_t *v)
{
    if (!v)
        abort(); /* jansson fails only on out-of-memory (or a bug in a pack format) */
    return v;
}

static void random_bytes(void *p, size_t n)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t r = getrandom(b, n, 0);

        if (r == -1) {
            if (errno == EINTR)
                continue;
            sl_log(SL_LOG_ERR, "emu: getrandom: %s", strerror(errno));
            abort();
        }
        b += r;
        n -= (size_t)r;
    }
}

static void uuid4(char out[37])
{
    uint8_t b[16];

    random_bytes(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

static void new_etag(char out[33])
{
    uint8_t b[16];

    random_bytes(b, sizeof(b));
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void iso_ms(uint64_t ms, char buf[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&s, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + 19, 13, ".%03uZ", (unsigned)(ms % 1000));
}

/* Milliseconds of "YYYY-MM-DDTHH:MM:SS[.mmm]Z"; 0 if it is not that. */
static uint64_t parse_iso(const char *s)
{
    struct tm tm = { 0 };
    int ms = 0, n = 0;

    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return 0;
    if (s[n] == '.' && sscanf(s + n, ".%3d", &ms) != 1)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t < 0 ? 0 : (uint64_t)t * 1000 + (uint64_t)ms;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void setdef(json_t *o, const char *key, json_t *v)
{
    if (!json_object_get(o, key))
        json_object_set_new(o, key, v);
    else
        json_decref(v);
}

/* ---- answers ----------------------------------------------------------------------------- */

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    default: return "Internal Server Error";
    }
}

static void add_header(struct call *c, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(c->req), name, value);
}

/* Sends <body> (stolen) as the answer. */
static void send_json(struct call *c, int code, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    char *s = json_dumps(body, JSON_PRESERVE_ORDER | (c->pretty ? JSON_INDENT(2) : JSON_COMPACT));

    if (!b || !s)
        abort();
    evbuffer_add(b, s, strlen(s));
    evbuffer_add(b, "\n", 1);
    add_header(c, "Content-Type", "application/json");
    evhttp_send_reply(c->req, code, reason(code), b);
    c->status = code;
    free(s);
    evbuffer_free(b);
    json_decref(body);
}

static void err_init(struct apierr *x, int status, const char *code)
{
    x->status = status;
    x->code = code;
    x->msgs = xj(json_array());
}

/* A message may quote what the client sent, cut short: bytes that would not make valid UTF-8
 * (jansson refuses it) become '?'. */
static json_t *json_text(char *s)
{
    json_t *v = json_string(s);

    if (!v) {
        for (char *q = s; *q; q++)
            if ((unsigned char)*q >= 0x80 || (unsigned char)*q < 0x20)
                *q = '?';
        v = xj(json_string(s));
    }
    return v;
}

static void SL_PRINTF(2, 3) err_add(struct apierr *x, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) == -1)
        abort();
    va_end(ap);
    json_array_append_new(x->msgs, xj(json_pack("{s:s, s:o}", "errorCode", x->code, "message",
                                                json_text(s))));
    free(s);
}

/* Answers the error in the API's shape and frees it. */
static void err_send(struct call *c, struct apierr *x)
{
    send_json(c, x->status, xj(json_pack("{s:i, s:o}", "httpStatus", x->status, "messages",
                                         x->msgs)));
    x->msgs = NULL;
}

static void SL_PRINTF(4, 5) fail(struct call *c, int status, const char *code, const char *fmt,
                                 ...)
{
    struct apierr x;
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) == -1)
        abort();
    va_end(ap);
    err_init(&x, status, code);
    err_add(&x, "%s", s);
    free(s);
    err_send(c, &x);
}

/* ---- the state --------------------------------------------------------------------------- */

/* Layout (one JSON document, pretty-printed):
 *   { "format": "sluice-emu-state/1",
 *     "targetgroups": [ {id, metadata, properties}, ... ],
 *     "datacenters": { "<dc id>": { "applicationloadbalancers": [
 *          {id, metadata, properties, "forwardingrules": [ {id, metadata, properties} ]} ] } },
 *     "requests": [ {id, createdDate, etag, method, url, targets: [{id, type, path}]} ] }
 * Resources keep creation order; request records the newest MAX_REQUESTS. */
static json_t *state_new(void)
{
    return xj(json_pack("{s:s, s:[], s:{}, s:[]}", "format", STATE_FORMAT, "targetgroups",
                        "datacenters", "requests"));
}

static json_t *find_id(const json_t *arr, const char *id, size_t *idx)
{
    size_t i;
    json_t *r;

    json_array_foreach(arr, i, r) {
        const char *rid = jstr(r, "id");

        if (rid && !strcmp(rid, id)) {
            if (idx)
                *idx = i;
            return r;
        }
    }
    return NULL;
}

/* The ALB array of data center <dc>; created when <create>, else NULL when it has none. */
static json_t *dc_albs(json_t *st, const char *dc, bool create)
{
    json_t *dcs = json_object_get(st, "datacenters"), *d = json_object_get(dcs, dc);

    if (!d && create) {
        d = xj(json_pack("{s:[]}", "applicationloadbalancers"));
        json_object_set_new(dcs, dc, d);
    }
    return d ? json_object_get(d, "applicationloadbalancers") : NULL;
}

static int check_resource(const json_t *r, const char *what, char *err, size_t n)
{
    if (!json_is_object(r) || !json_is_string(json_object_get(r, "id")) ||
        !json_is_object(json_object_get(r, "metadata")) ||
        !json_is_object(json_object_get(r, "properties"))) {
        snprintf(err, n, "%s: each must be an object with \"id\" (a string), \"metadata\" and "
                 "\"properties\" (objects)", what);
        return -1;
    }
    return 0;
}

/* Checks the layout of a loaded state (not the resources' fields: writes check those) and adds
 * the members a hand-written file may lack. */
static int state_check(json_t *st, char *err, size_t n)
{
    const char *fmt = jstr(st, "format"), *dc;
    json_t *v, *d, *alb, *r;
    size_t i, j, k;
    static const char *const arrays[] = { "targetgroups", "requests" };

    if (!json_is_object(st)) {
        snprintf(err, n, "must be a JSON object");
        return -1;
    }
    if (fmt && strcmp(fmt, STATE_FORMAT)) {
        snprintf(err, n, "format: \"%s\" is not \"%s\"", fmt, STATE_FORMAT);
        return -1;
    }
    json_object_set_new(st, "format", json_string(STATE_FORMAT));
    for (i = 0; i < 2; i++) {
        if (!(v = json_object_get(st, arrays[i])))
            json_object_set_new(st, arrays[i], xj(json_array()));
        else if (!json_is_array(v)) {
            snprintf(err, n, "%s: must be an array", arrays[i]);
            return -1;
        }
    }
    json_array_foreach(json_object_get(st, "targetgroups"), i, r)
        if (check_resource(r, "targetgroups", err, n) == -1)
            return -1;
    json_array_foreach(json_object_get(st, "requests"), i, r) {
        if (!json_is_object(r) || !jstr(r, "id")) {
            snprintf(err, n, "requests: each must be an object with an \"id\"");
            return -1;
        }
    }
    if (!(v = json_object_get(st, "datacenters")))
        json_object_set_new(st, "datacenters", v = xj(json_object()));
    if (!json_is_object(v)) {
        snprintf(err, n, "datacenters: must be an object keyed by data center id");
        return -1;
    }
    json_object_foreach(v, dc, d) {
        json_t *albs = json_object_get(d, "applicationloadbalancers");

        if (!json_is_object(d) || !json_is_array(albs)) {
            snprintf(err, n, "datacenters.%s: must be an object with an "
                     "\"applicationloadbalancers\" array", dc);
            return -1;
        }
        json_array_foreach(albs, j, alb) {
            json_t *frs;

            if (check_resource(alb, "applicationloadbalancers", err, n) == -1)
                return -1;
            if (!(frs = json_object_get(alb, "forwardingrules")))
                json_object_set_new(alb, "forwardingrules", frs = xj(json_array()));
            if (!json_is_array(frs)) {
                snprintf(err, n, "datacenters.%s: forwardingrules: must be an array", dc);
                return -1;
            }
            json_array_foreach(frs, k, r)
                if (check_resource(r, "forwardingrules", err, n) == -1)
                    return -1;
        }
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replaces the state file with <st>: a temp file in the same directory, fsync, rename, fsync of
 * the directory, so the file is always either the old or the new document. Returns 0, or -1
 * with the reason in <err> (the old file left as it was). */
static int state_save(const char *path, const json_t *st, char *err, size_t n)
{
    char *text = json_dumps(st, DUMP_FLAGS), *tmp = xasprintf("%s.tmp", path), *dir;
    const char *slash = strrchr(path, '/');
    int fd = -1, rc = -1;

    if (!text)
        abort();
    dir = slash ? xasprintf("%.*s", (int)(slash == path ? 1 : slash - path), path)
                : xasprintf(".");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        snprintf(err, n, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (write_all(fd, text, strlen(text)) == -1 || write_all(fd, "\n", 1) == -1 ||
        fsync(fd) == -1) {
        snprintf(err, n, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) == -1) {
        fd = -1;
        snprintf(err, n, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) == -1) {
        snprintf(err, n, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    /* The rename is durable only once the directory is. */
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1 || fsync(fd) == -1) {
        snprintf(err, n, "cannot sync directory %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd != -1)
        close(fd);
    if (rc == -1)
        unlink(tmp);
    free(text);
    free(tmp);
    free(dir);
    return rc;
}

/* Loads <path> into e->state: a missing file is an empty state (written at once, so that a
 * state file that cannot be created is found at start). Returns 0, or -1 after saying why. */
static int state_load(struct emu *e, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, err[512];
    size_t len = 0, cap = 0, nr;
    struct sl_diags d;
    json_t *st;

    if (!f && errno == ENOENT) {
        e->state = state_new();
        if (state_save(path, e->state, err, sizeof(err)) == -1) {
            sl_log(SL_LOG_ERR, "emu: state file %s: %s", path, err);
            return -1;
        }
        sl_log(SL_LOG_INFO, "emu: state file %s did not exist: starting empty", path);
        return 0;
    }
    if (!f) {
        sl_log(SL_LOG_ERR, "emu: state file %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    do {
        if (len == cap && !(buf = realloc(buf, cap = cap ? 2 * cap : 65536)))
            abort();
        nr = fread(buf + len, 1, cap - len, f);
        len += nr;
    } while (nr > 0);
    if (ferror(f)) {
        sl_log(SL_LOG_ERR, "emu: state file %s: cannot read: %s", path, strerror(errno));
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    sl_diags_init(&d, path);
    st = sl_json_parse(buf, len, NULL, &d);
    free(buf);
    if (!st) {
        char line[1024];

        sl_log(SL_LOG_ERR, "emu: state file %s is not valid JSON; it is left as it is (fix it, "
               "or move it away to start empty):", path);
        for (size_t i = 0; i < d.n; i++) {
            sl_diag_format(&d, &d.v[i], line, sizeof(line));
            sl_log(SL_LOG_ERR, "emu: %s", line);
        }
        sl_diags_deinit(&d);
        return -1;
    }
    sl_diags_deinit(&d);
    if (state_check(st, err, sizeof(err)) == -1) {
        sl_log(SL_LOG_ERR, "emu: state file %s: %s; it is left as it is", path, err);
        json_decref(st);
        return -1;
    }
    e->state = st;
    return 0;
}

/* ---- metadata ---------------------------------------------------------------------------- */

static json_t *meta_new(uint64_t now)
{
    char etag[33], date[32];

    new_etag(etag);
    iso_ms(now, date);
    return xj(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "etag", etag, "createdDate",
                        date, "createdBy", EMU_USER, "createdByUserId", EMU_USER_ID,
                        "lastModifiedDate", date, "lastModifiedBy", EMU_USER,
                        "lastModifiedByUserId", EMU_USER_ID, "state", "AVAILABLE"));
}

/* A write: new etag, and a lastModifiedDate later than the previous one even within one ms. */
static void meta_touch(json_t *m, uint64_t now)
{
    uint64_t prev = parse_iso(jstr(m, "lastModifiedDate"));
    char etag[33], date[32];

    if (now <= prev)
        now = prev + 1;
    new_etag(etag);
    iso_ms(now, date);
    json_object_set_new(m, "etag", json_string(etag));
    json_object_set_new(m, "lastModifiedDate", json_string(date));
    json_object_set_new(m, "lastModifiedBy", json_string(EMU_USER));
    json_object_set_new(m, "lastModifiedByUserId", json_string(EMU_USER_ID));
    json_object_set_new(m, "state", json_string("AVAILABLE"));
}

/* ---- rendering --------------------------------------------------------------------------- */

static json_t *render_ref(enum kind k, const char *id, const char *href)
{
    return xj(json_pack("{s:s, s:s, s:s}", "id", id, "type", kind_type[k], "href", href));
}

static json_t *render_res(struct call *c, enum kind k, json_t *r, const char *href, long depth);

/* A collection of <arr>'s resources at <href>. <r> is the depth left for it: -1 = no items
 * (an ALB's entities at depth 0), 0 = items as references, n = items rendered at depth n-1.
 * <pg>: a top-level collection with offset, limit and _links; NULL for an embedded one. */
static json_t *render_coll(struct call *c, enum kind k, const char *cid, const char *href,
                           const json_t *arr, long r, const struct page *pg)
{
    json_t *o = xj(json_pack("{s:s, s:s, s:s}", "id", cid, "type", "collection", "href", href));
    json_t *items;
    size_t n = json_array_size(arr), start = pg ? (size_t)pg->offset : 0, end = n;

    if (pg && (size_t)pg->limit < n - (start < n ? start : n))
        end = start + (size_t)pg->limit;
    if (r >= 0) {
        items = xj(json_array());
        for (size_t i = start; i < end; i++) {
            /* requests: the newest first */
            json_t *x = json_array_get(arr, k == K_REQ ? n - 1 - i : i);
            char *ih = xasprintf("%s/%s", href, jstr(x, "id"));

            json_array_append_new(items, r == 0 ? render_ref(k, jstr(x, "id"), ih)
                                                : render_res(c, k, x, ih, r - 1));
            free(ih);
        }
        json_object_set_new(o, "items", items);
    }
    if (pg) {
        json_t *links = xj(json_object());
        char *u;

        json_object_set_new(o, "offset", json_integer(pg->offset));
        json_object_set_new(o, "limit", json_integer(pg->limit));
        if (pg->offset > 0) {
            u = xasprintf("%s?offset=%ld&limit=%ld", href,
                          pg->offset > pg->limit ? pg->offset - pg->limit : 0, pg->limit);
            json_object_set_new(links, "prev", json_string(u));
            free(u);
        }
        u = xasprintf("%s?offset=%ld&limit=%ld", href, pg->offset, pg->limit);
        json_object_set_new(links, "self", json_string(u));
        free(u);
        if ((size_t)pg->offset + (size_t)pg->limit < n) {
            u = xasprintf("%s?offset=%ld&limit=%ld", href, pg->offset + pg->limit, pg->limit);
            json_object_set_new(links, "next", json_string(u));
            free(u);
        }
        json_object_set_new(o, "_links", links);
    }
    return o;
}

static json_t *render_status(struct call *c, const json_t *rq)
{
    char *href = xasprintf("%s/requests/%s/status", c->base, jstr(rq, "id"));
    json_t *targets = xj(json_array()), *t;
    size_t i;

    json_array_foreach(json_object_get(rq, "targets"), i, t) {
        char *th = xasprintf("%s%s", c->base, jstr(t, "path") ? jstr(t, "path") : "");

        json_array_append_new(targets, xj(json_pack("{s:{s:s?, s:s?, s:s}, s:s}", "target",
                                                    "id", jstr(t, "id"), "type",
                                                    jstr(t, "type"), "href", th, "status",
                                                    "DONE")));
        free(th);
    }
    json_t *o = xj(json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s?, s:o}}", "id", jstr(rq, "id"),
                             "type", "request-status", "href", href, "metadata", "status",
                             "DONE", "message", "Request has been successfully executed",
                             "etag", jstr(rq, "etag"), "targets", targets));
    free(href);
    return o;
}

static json_t *render_request(struct call *c, const json_t *rq, const char *href, long depth)
{
    char *sh = xasprintf("%s/status", href), *url;
    json_t *st = depth >= 1 ? render_status(c, rq)
                            : xj(json_pack("{s:s, s:s, s:s}", "id", jstr(rq, "id"), "type",
                                           "request-status", "href", sh));
    json_t *o;

    url = xasprintf("%s%s", c->base, jstr(rq, "url") ? jstr(rq, "url") : "");
    o = xj(json_pack("{s:s, s:s, s:s, s:{s:s?, s:s, s:s?, s:o}, s:{s:s?, s:s}}", "id",
                     jstr(rq, "id"), "type", "request", "href", href, "metadata", "createdDate",
                     jstr(rq, "createdDate"), "createdBy", EMU_USER, "etag", jstr(rq, "etag"),
                     "requestStatus", st, "properties", "method", jstr(rq, "method"), "url",
                     url));
    free(sh);
    free(url);
    return o;
}

/* A resource as the API returns it. For an ALB, entities.forwardingrules is a collection
 * whose items appear from depth 1 (as references) and are full from depth 2. */
static json_t *render_res(struct call *c, enum kind k, json_t *r, const char *href, long depth)
{
    json_t *o;

    if (k == K_REQ)
        return render_request(c, r, href, depth);
    o = xj(json_pack("{s:O, s:s, s:s, s:O, s:O}", "id", json_object_get(r, "id"), "type",
                     kind_type[k], "href", href, "metadata", json_object_get(r, "metadata"),
                     "properties", json_object_get(r, "properties")));
    if (k == K_ALB) {
        char *fh = xasprintf("%s/forwardingrules", href);
        char *cid = xasprintf("%s/forwardingrules", jstr(r, "id"));

        json_object_set_new(o, "entities",
                            xj(json_pack("{s:o}", "forwardingrules",
                                         render_coll(c, K_FR, cid, fh,
                                                     json_object_get(r, "forwardingrules"),
                                                     depth - 1, NULL))));
        free(fh);
        free(cid);
    }
    return o;
}

/* ---- request bodies: known fields, defaults ---------------------------------------------- */

enum fkind { FK_NONE = 0, FK_ALB, FK_FR, FK_RULE, FK_COND, FK_TG, FK_TARGET, FK_HC, FK_HHC };

struct fdef {
    const char *key;
    enum fkind child; /* an object of that kind, or an array of them */
};

static const struct fdef f_alb[] = { { "name", 0 }, { "listenerLan", 0 }, { "ips", 0 },
                                     { "targetLan", 0 }, { "lbPrivateIps", 0 },
                                     { "centralLogging", 0 }, { "loggingFormat", 0 },
                                     { NULL, 0 } };
static const struct fdef f_fr[] = { { "name", 0 }, { "protocol", 0 }, { "listenerIp", 0 },
                                    { "listenerPort", 0 }, { "clientTimeout", 0 },
                                    { "serverCertificates", 0 }, { "httpRules", FK_RULE },
                                    { NULL, 0 } };
static const struct fdef f_rule[] = { { "name", 0 }, { "type", 0 }, { "targetGroup", 0 },
                                      { "dropQuery", 0 }, { "location", 0 }, { "statusCode", 0 },
                                      { "responseMessage", 0 }, { "contentType", 0 },
                                      { "conditions", FK_COND }, { NULL, 0 } };
static const struct fdef f_cond[] = { { "type", 0 }, { "condition", 0 }, { "negate", 0 },
                                      { "key", 0 }, { "value", 0 }, { NULL, 0 } };
static const struct fdef f_tg[] = { { "name", 0 }, { "algorithm", 0 }, { "protocol", 0 },
                                    { "protocolVersion", 0 }, { "targets", FK_TARGET },
                                    { "healthCheck", FK_HC }, { "httpHealthCheck", FK_HHC },
                                    { NULL, 0 } };
static const struct fdef f_target[] = { { "ip", 0 }, { "port", 0 }, { "weight", 0 },
                                        { "proxyProtocol", 0 }, { "healthCheckEnabled", 0 },
                                        { "maintenanceEnabled", 0 }, { NULL, 0 } };
static const struct fdef f_hc[] = { { "checkTimeout", 0 }, { "checkInterval", 0 },
                                    { "retries", 0 }, { NULL, 0 } };
static const struct fdef f_hhc[] = { { "path", 0 }, { "method", 0 }, { "matchType", 0 },
                                     { "response", 0 }, { "regex", 0 }, { "negate", 0 },
                                     { NULL, 0 } };
static const struct fdef *const schema[] = { NULL, f_alb, f_fr, f_rule, f_cond, f_tg, f_target,
                                             f_hc, f_hhc };

/* Drops members that are null (the API reads null as absent) and members the API's model does
 * not have (as the API would: it returns only its model's fields), noting the latter's paths
 * in <ignored>. Values of the wrong type stay, for validation to report. */
static void filter(json_t *o, enum fkind fk, struct sl_jpath *p, json_t *ignored)
{
    const char *k;
    json_t *v;
    void *tmp;

    json_object_foreach_safe(o, tmp, k, v) {
        const struct fdef *f = schema[fk];
        size_t old = sl_jpath_push_key(p, k);

        while (f->key && strcmp(f->key, k))
            f++;
        if (json_is_null(v)) {
            json_object_del(o, k);
        } else if (!f->key) {
            json_array_append_new(ignored, json_string(p->buf));
            json_object_del(o, k);
        } else if (f->child && json_is_object(v)) {
            filter(v, f->child, p, ignored);
        } else if (f->child && json_is_array(v)) {
            size_t i;
            json_t *x;

            json_array_foreach(v, i, x) {
                size_t o2 = sl_jpath_push_index(p, i);

                if (json_is_object(x))
                    filter(x, f->child, p, ignored);
                sl_jpath_pop(p, o2);
            }
        }
        sl_jpath_pop(p, old);
    }
}

/* The defaults ionos-alb-api.md §2 documents, filled in as the API does on a write. */
static void fill_defaults(enum kind k, json_t *p)
{
    size_t i, j;
    json_t *x, *y, *hc;

    switch (k) {
    case K_ALB:
        setdef(p, "centralLogging", json_false());
        break;
    case K_FR:
        setdef(p, "clientTimeout", json_integer(50000));
        json_array_foreach(json_object_get(p, "httpRules"), i, x) {
            const char *t = jstr(x, "type");

            if (t && !strcmp(t, "REDIRECT")) {
                setdef(x, "dropQuery", json_false());
                setdef(x, "statusCode", json_integer(301));
            } else if (t && !strcmp(t, "STATIC")) {
                setdef(x, "statusCode", json_integer(503));
            }
            json_array_foreach(json_object_get(x, "conditions"), j, y)
                setdef(y, "negate", json_false());
        }
        break;
    case K_TG:
        json_array_foreach(json_object_get(p, "targets"), i, x) {
            setdef(x, "weight", json_integer(1));
            setdef(x, "proxyProtocol", json_string("none"));
            setdef(x, "healthCheckEnabled", json_true());
            setdef(x, "maintenanceEnabled", json_false());
        }
        if (!(hc = json_object_get(p, "healthCheck")))
            json_object_set_new(p, "healthCheck", hc = xj(json_object()));
        setdef(hc, "checkInterval", json_integer(2000));
        setdef(hc, "retries", json_integer(3));
        if ((hc = json_object_get(p, "httpHealthCheck"))) {
            setdef(hc, "path", json_string("/"));
            setdef(hc, "regex", json_false());
            setdef(hc, "negate", json_false());
        }
        break;
    case K_REQ:
        break;
    }
}

static bool is_json_type(const char *ct)
{
    size_t n = strcspn(ct, ";");

    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return (n == 16 && !strncasecmp(ct, "application/json", 16)) ||
           (n > 5 && !strncasecmp(ct + n - 5, "+json", 5) && strchr(ct, '/'));
}

/* Parses the request body; NULL after answering 415 or 400. */
static json_t *read_body(struct call *c)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                        "Content-Type");
    struct evbuffer *b = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(b);
    struct sl_diags d;
    json_t *root;

    if (ct && !is_json_type(ct)) {
        fail(c, 415, EC_MEDIA, "Content-Type \"%.100s\" is not JSON: send the body as JSON with "
             "Content-Type: application/json", ct);
        return NULL;
    }
    if (len == 0) {
        fail(c, 400, EC_MALFORMED, "the request has no body: %s needs a JSON object",
             c->method);
        return NULL;
    }
    sl_diags_init(&d, "");
    root = sl_json_parse((const char *)evbuffer_pullup(b, -1), len, NULL, &d);
    if (!root) {
        struct apierr x;

        err_init(&x, 400, EC_MALFORMED);
        for (size_t i = 0; i < d.n; i++)
            err_add(&x, "malformed JSON at line %u, column %u%s%s%s: %s", d.v[i].line,
                    d.v[i].col, d.v[i].path[0] ? " (" : "", d.v[i].path,
                    d.v[i].path[0] ? ")" : "", d.v[i].msg);
        if (!d.n)
            err_add(&x, "malformed JSON");
        err_send(c, &x);
    }
    sl_diags_deinit(&d);
    return root;
}

static void log_ignored(struct call *c, const json_t *ignored)
{
    size_t i;
    json_t *v;

    json_array_foreach(ignored, i, v)
        sl_log(SL_LOG_WARN, "emu: %s %s: ignored %s: not a field of this resource", c->method,
               evhttp_request_get_uri(c->req), json_string_value(v));
}

/* The properties a write asks for: for POST and PUT, body.properties; for PATCH, <stored>
 * merged with the body (a bare properties object; null removes a field). Unknown fields are
 * dropped. Returns a new object, or NULL after answering. */
static json_t *write_props(struct call *c, enum fkind fk, const json_t *stored)
{
    bool patch = c->cmd == EVHTTP_REQ_PATCH;
    json_t *body = read_body(c), *p, *ignored = xj(json_array());
    struct sl_jpath path;
    const char *k;
    json_t *v;

    if (!body)
        goto fail;
    sl_jpath_init(&path);
    if (!json_is_object(body)) {
        fail(c, 422, EC_VALIDATION, "[(root)] must be an object: %s", patch ?
             "PATCH takes the bare properties object with the fields to change" :
             "{\"properties\": {...}}");
        goto fail;
    }
    if (patch) {
        if (json_object_size(body) == 1 && json_is_object(json_object_get(body, "properties"))) {
            fail(c, 422, EC_VALIDATION, "[properties] PATCH takes the bare properties object "
                 "(the fields to change, without {\"properties\": ...}); PUT takes "
                 "{\"properties\": {...}}");
            goto fail;
        }
        p = xj(json_deep_copy(stored));
        /* null removes a field (filter drops nulls, so remove those first) */
        json_object_foreach(body, k, v)
            if (json_is_null(v))
                json_object_del(p, k);
        filter(body, fk, &path, ignored);
        json_object_foreach(body, k, v)
            json_object_set(p, k, v);
    } else {
        json_object_foreach(body, k, v) {
            if (strcmp(k, "properties") && strcmp(k, "id") && strcmp(k, "type") &&
                strcmp(k, "href") && strcmp(k, "metadata"))
                json_array_append_new(ignored, json_string(k));
        }
        p = json_object_get(body, "properties");
        if (!p || json_is_null(p)) {
            fail(c, 422, EC_VALIDATION, "[properties] missing; required: an object with the %s's "
                 "properties", fk == FK_ALB ? "application load balancer" :
                 fk == FK_FR ? "forwarding rule" : "target group");
            goto fail;
        }
        if (!json_is_object(p)) {
            fail(c, 422, EC_VALIDATION, "[properties] must be an object, not %s",
                 json_is_array(p) ? "an array" : json_is_string(p) ? "a string" : "a scalar");
            goto fail;
        }
        p = xj(json_deep_copy(p));
        sl_jpath_push_key(&path, "properties");
        filter(p, fk, &path, ignored);
    }
    log_ignored(c, ignored);
    json_decref(ignored);
    json_decref(body);
    return p;
fail:
    json_decref(ignored);
    json_decref(body);
    return NULL;
}

/* ---- validation: the loader `sluice check` uses ------------------------------------------ */

struct check {
    struct apierr *err;
    char wprefix[64]; /* the written resource in the candidate: "forwardingRules[2]" */
    bool bare;        /* PATCH: body paths are relative to the properties object */
    const json_t *doc;
    json_t *skip;     /* candidate paths already reported (an object used as a set) */
    json_t *scope;    /* more resources whose lint warnings concern this write (a set) */
};

static bool under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);

    return !strncmp(path, prefix, n) && (path[n] == '.' || path[n] == '\0');
}

/* Lint warnings worth logging for a write: those about the resource written, and about the
 * resources in k->scope (an ALB's rules; the target groups a rule forwards to, where the
 * guide's WebSocket pitfall, an HTTP health check, shows). The rest were said when written. */
static bool in_scope(const struct check *k, const char *path)
{
    const char *p;
    json_t *v;

    if (under(path, k->wprefix))
        return true;
    json_object_foreach(k->scope, p, v)
        if (under(path, p))
            return true;
    return false;
}

static json_t *doc_entry(const json_t *r)
{
    return xj(json_pack("{s:O, s:O}", "id", json_object_get(r, "id"), "properties",
                        json_object_get(r, "properties")));
}

/* The document `sluice check` would load for ALB <alb>: it, its forwarding rules and every
 * target group. Certificates live in the Certificate Manager, which is not emulated: each id a
 * rule names gets a placeholder entry in sluice.certificates so that it passes. */
static json_t *alb_doc(const json_t *st, const json_t *alb)
{
    json_t *frs = xj(json_array()), *tgs = xj(json_array()), *certs = xj(json_object()), *r, *s;
    json_t *doc;
    size_t i, j;

    json_array_foreach(json_object_get(alb, "forwardingrules"), i, r) {
        json_array_append_new(frs, doc_entry(r));
        json_array_foreach(json_object_get(json_object_get(r, "properties"),
                                           "serverCertificates"), j, s)
            if (json_is_string(s) && json_string_length(s) > 0)
                json_object_set_new(certs, json_string_value(s),
                                    xj(json_pack("{s:s, s:s}", "cert", "(certificate manager)",
                                                 "key", "(certificate manager)")));
    }
    json_array_foreach(json_object_get(st, "targetgroups"), i, r)
        json_array_append_new(tgs, doc_entry(r));
    doc = xj(json_pack("{s:o, s:o, s:o}", "applicationLoadBalancer", doc_entry(alb),
                       "forwardingRules", frs, "targetGroups", tgs));
    if (json_object_size(certs))
        json_object_set_new(doc, "sluice", xj(json_pack("{s:o}", "certificates", certs)));
    else
        json_decref(certs);
    return doc;
}

/* Where candidate path <path> stands for the client: relative to the request body when it is
 * in the written resource, else "<collection>/<id>: <path in that resource>". */
static char *map_path(const struct check *k, const char *path)
{
    size_t n = strlen(k->wprefix);
    const char *rest, *id = NULL, *coll = "";
    unsigned idx;
    int used = 0;

    if (under(path, k->wprefix)) {
        rest = path + n + (path[n] == '.');
        if (k->bare && !strncmp(rest, "properties", 10) &&
            (rest[10] == '.' || rest[10] == '\0'))
            rest += 10 + (rest[10] == '.');
        return xasprintf("%s", rest[0] ? rest : "(root)");
    }
    if (!strncmp(path, "applicationLoadBalancer", 23)) {
        coll = "applicationloadbalancers";
        id = jstr(json_object_get(k->doc, "applicationLoadBalancer"), "id");
        used = 23;
    } else if (sscanf(path, "forwardingRules[%u]%n", &idx, &used) == 1 && used) {
        coll = "forwardingrules";
        id = jstr(json_array_get(json_object_get(k->doc, "forwardingRules"), idx), "id");
    } else if (sscanf(path, "targetGroups[%u]%n", &idx, &used) == 1 && used) {
        coll = "targetgroups";
        id = jstr(json_array_get(json_object_get(k->doc, "targetGroups"), idx), "id");
    }
    if (!id)
        return xasprintf("%s", path[0] ? path : "(root)");
    rest = path + used + (path[used] == '.');
    return xasprintf("%s/%s: %s", coll, id, rest[0] ? rest : "(root)");
}

/* Loads <doc> as `sluice check` does: each error becomes one message of k->err. When <lint>
 * and the write has no error at all, lint warnings (which never refuse it) are logged. */
static void check_doc(struct call *c, json_t *doc, struct check *k, bool lint)
{
    struct sl_diags d;
    struct sl_config *cfg;

    k->doc = doc;
    sl_diags_init(&d, "");
    cfg = sl_config_load_json("emu", doc, NULL, NULL, &d);
    for (size_t i = 0; i < d.n; i++) {
        char *p;

        if (d.v[i].level != SL_DIAG_ERROR || json_object_get(k->skip, d.v[i].path))
            continue;
        p = map_path(k, d.v[i].path);
        err_add(k->err, "[%s] %s", p, d.v[i].msg);
        free(p);
    }
    sl_diags_deinit(&d);
    if (cfg && lint && !json_array_size(k->err->msgs)) {
        sl_diags_init(&d, "");
        sl_config_lint(cfg, &d);
        for (size_t i = 0; i < d.n; i++) {
            char *p;

            if (!in_scope(k, d.v[i].path))
                continue;
            p = map_path(k, d.v[i].path);
            sl_log(SL_LOG_WARN, "emu: %s %s: lint (not refused): [%s] %s", c->method,
                   evhttp_request_get_uri(c->req), p, d.v[i].msg);
            free(p);
        }
        sl_diags_deinit(&d);
    }
    sl_config_unref(cfg);
}

/* The API refers to target groups by id (the loader also takes names): each FORWARD rule of
 * <props> must name an existing target group's id. Those it names join k->scope. */
static void check_tg_refs(const json_t *st, const json_t *props, struct check *k)
{
    const json_t *tgs = json_object_get(st, "targetgroups");
    size_t i, j;
    json_t *r, *g;

    json_array_foreach(json_object_get(props, "httpRules"), i, r) {
        const char *ref = jstr(r, "targetGroup"), *t = jstr(r, "type"), *named = NULL;
        char *cp;
        size_t gi;

        if (!ref || !ref[0] || !t || strcmp(t, "FORWARD"))
            continue;
        if (find_id(tgs, ref, &gi)) {
            cp = xasprintf("targetGroups[%zu]", gi);
            json_object_set_new(k->scope, cp, json_true());
            free(cp);
            continue;
        }
        json_array_foreach(tgs, j, g) {
            const char *name = jstr(json_object_get(g, "properties"), "name");

            if (name && !strcmp(name, ref))
                named = jstr(g, "id");
        }
        if (named)
            err_add(k->err, "[%shttpRules[%zu].targetGroup] \"%s\" is the name of target group "
                    "%s; an http rule refers to a target group by its id", k->bare ? "" :
                    "properties.", i, ref, named);
        else
            err_add(k->err, "[%shttpRules[%zu].targetGroup] \"%s\" is not the id of a target "
                    "group (GET /cloudapi/v6/targetgroups lists them)", k->bare ? "" :
                    "properties.", i, ref);
        cp = xasprintf("%s.properties.httpRules[%zu].targetGroup", k->wprefix, i);
        json_object_set_new(k->skip, cp, json_true());
        free(cp);
    }
}

static bool refers_to(const json_t *fr, const char *tg_id, size_t *rule)
{
    size_t i;
    json_t *r;

    json_array_foreach(json_object_get(json_object_get(fr, "properties"), "httpRules"), i, r) {
        const char *ref = jstr(r, "targetGroup");

        if (ref && !strcmp(ref, tg_id)) {
            *rule = i;
            return true;
        }
    }
    return false;
}

/* ---- writes ------------------------------------------------------------------------------ */

/* Records the write as a request in <next>, saves <next> and adopts it, and answers 202 with
 * the request's status URL in Location and <res> (at <path> below the base; NULL after a
 * DELETE). On a failed save nothing changes and the answer is 500. Takes <next>. */
static void commit(struct call *c, json_t *next, enum kind k, const char *id, const char *path,
                   json_t *res)
{
    json_t *reqs = json_object_get(next, "requests");
    const char *uri = evhttp_request_get_uri(c->req);
    char rid[37], etag[33], date[32], err[512];
    char *loc, *href;

    uuid4(rid);
    new_etag(etag);
    iso_ms(now_ms(), date);
    if (!strncmp(uri, BASE_PATH, strlen(BASE_PATH)))
        uri += strlen(BASE_PATH);
    json_array_append_new(reqs, xj(json_pack("{s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}]}",
                                             "id", rid, "createdDate", date, "etag", etag,
                                             "method", c->method, "url", uri, "targets", "id",
                                             id, "type", kind_type[k], "path", path)));
    while (json_array_size(reqs) > MAX_REQUESTS)
        json_array_remove(reqs, 0);
    if (state_save(c->e->state_path, next, err, sizeof(err)) == -1) {
        sl_log(SL_LOG_ERR, "emu: state file %s: %s", c->e->state_path, err);
        fail(c, 500, EC_INTERNAL, "the change was not applied: the state file could not be "
             "written (%s)", err);
        json_decref(next);
        return;
    }
    json_decref(c->e->state);
    c->e->state = next;
    loc = xasprintf("%s/requests/%s/status", c->base, rid);
    add_header(c, "Location", loc);
    free(loc);
    if (res) {
        href = xasprintf("%s%s", c->base, path);
        send_json(c, 202, render_res(c, k, res, href, c->depth));
        free(href);
    } else {
        evhttp_send_reply(c->req, 202, reason(202), NULL);
        c->status = 202;
    }
}

/* Turns the write of <res> (kind <k>) in <next> into stored form and commits it, or answers
 * 422 with <er>'s messages. */
static void finish_write(struct call *c, json_t *next, enum kind k, json_t *res,
                         const char *path, struct apierr *er, bool created)
{
    uint64_t now = now_ms();

    if (json_array_size(er->msgs)) {
        err_send(c, er);
        json_decref(next);
        return;
    }
    json_decref(er->msgs);
    fill_defaults(k, json_object_get(res, "properties"));
    if (created)
        json_object_set_new(res, "metadata", meta_new(now));
    else
        meta_touch(json_object_get(res, "metadata"), now);
    commit(c, next, k, jstr(res, "id"), path, res);
}

static const char *wprefix_of(struct check *k, const char *fmt, size_t i)
{
    snprintf(k->wprefix, sizeof(k->wprefix), fmt, i);
    return k->wprefix;
}

static void tg_write(struct call *c, const char *id)
{
    json_t *next, *tgs, *res, *p, *stored = NULL;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH };
    char nid[37], *path;
    size_t idx = 0;
    const char *dc;
    json_t *d, *alb, *fr;
    size_t i, j, rule;

    if (id && !(stored = find_id(json_object_get(c->e->state, "targetgroups"), id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", id);
        return;
    }
    if (!(p = write_props(c, FK_TG, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    tgs = json_object_get(next, "targetgroups");
    if (id) {
        res = json_array_get(tgs, idx);
        json_object_set_new(res, "properties", p);
    } else {
        uuid4(nid);
        id = nid;
        idx = json_array_size(tgs);
        res = xj(json_pack("{s:s, s:{}, s:o}", "id", nid, "metadata", "properties", p));
        json_array_append_new(tgs, res);
    }
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    {
        json_t *doc = xj(json_pack("{s:[o]}", "targetGroups", doc_entry(res)));

        wprefix_of(&k, "targetGroups[%zu]", 0);
        check_doc(c, doc, &k, false);
        json_decref(doc);
    }
    /* and every ALB that uses it */
    json_object_foreach(json_object_get(next, "datacenters"), dc, d) {
        json_array_foreach(json_object_get(d, "applicationloadbalancers"), i, alb) {
            bool uses = false;

            json_array_foreach(json_object_get(alb, "forwardingrules"), j, fr)
                uses |= refers_to(fr, id, &rule);
            if (uses && !json_array_size(er.msgs)) {
                json_t *doc = alb_doc(next, alb);

                wprefix_of(&k, "targetGroups[%zu]", idx);
                check_doc(c, doc, &k, true);
                json_decref(doc);
            }
        }
    }
    json_decref(k.skip);
    path = xasprintf("/targetgroups/%s", id);
    finish_write(c, next, K_TG, res, path, &er, !stored);
    free(path);
}

static void alb_write(struct call *c, const char *dc, const char *id)
{
    json_t *albs = dc_albs(c->e->state, dc, false), *next, *res, *p, *stored = NULL, *doc;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH };
    char nid[37], *path;
    size_t idx = 0;

    if (id && !(stored = find_id(albs, id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", id, dc);
        return;
    }
    if (!(p = write_props(c, FK_ALB, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    albs = dc_albs(next, dc, true);
    if (id) {
        res = json_array_get(albs, idx);
        json_object_set_new(res, "properties", p);
    } else {
        uuid4(nid);
        id = nid;
        res = xj(json_pack("{s:s, s:{}, s:o, s:[]}", "id", nid, "metadata", "properties", p,
                           "forwardingrules"));
        json_array_append_new(albs, res);
    }
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    doc = alb_doc(next, res);
    snprintf(k.wprefix, sizeof(k.wprefix), "applicationLoadBalancer");
    k.scope = xj(json_object());
    for (size_t i = 0; i < json_array_size(json_object_get(res, "forwardingrules")); i++) {
        char *fp = xasprintf("forwardingRules[%zu]", i);

        json_object_set_new(k.scope, fp, json_true());
        free(fp);
    }
    check_doc(c, doc, &k, true);
    json_decref(doc);
    json_decref(k.skip);
    json_decref(k.scope);
    path = xasprintf("/datacenters/%s/applicationloadbalancers/%s", dc, id);
    finish_write(c, next, K_ALB, res, path, &er, !stored);
    free(path);
}

static void fr_write(struct call *c, const char *dc, const char *alb_id, const char *id)
{
    json_t *alb = find_id(dc_albs(c->e->state, dc, false), alb_id, NULL), *next, *res, *p, *doc;
    json_t *stored = NULL, *frs;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH };
    char nid[37], *path;
    size_t idx = 0;

    if (!alb) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", alb_id, dc);
        return;
    }
    if (id && !(stored = find_id(json_object_get(alb, "forwardingrules"), id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
             "application load balancer %s", id, alb_id);
        return;
    }
    if (!(p = write_props(c, FK_FR, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    alb = find_id(dc_albs(next, dc, false), alb_id, NULL);
    frs = json_object_get(alb, "forwardingrules");
    if (id) {
        res = json_array_get(frs, idx);
        json_object_set_new(res, "properties", p);
    } else {
        uuid4(nid);
        id = nid;
        idx = json_array_size(frs);
        res = xj(json_pack("{s:s, s:{}, s:o}", "id", nid, "metadata", "properties", p));
        json_array_append_new(frs, res);
    }
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    wprefix_of(&k, "forwardingRules[%zu]", idx);
    k.scope = xj(json_object());
    check_tg_refs(next, p, &k);
    doc = alb_doc(next, alb);
    check_doc(c, doc, &k, true);
    json_decref(doc);
    json_decref(k.skip);
    json_decref(k.scope);
    path = xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s", dc,
                     alb_id, id);
    finish_write(c, next, K_FR, res, path, &er, !stored);
    free(path);
}

static void tg_delete(struct call *c, const char *id)
{
    json_t *next, *d, *alb, *fr;
    const char *dc;
    struct apierr er;
    size_t idx, i, j, rule;
    char *path;

    if (!find_id(json_object_get(c->e->state, "targetgroups"), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", id);
        return;
    }
    err_init(&er, 422, EC_VALIDATION);
    json_object_foreach(json_object_get(c->e->state, "datacenters"), dc, d) {
        json_array_foreach(json_object_get(d, "applicationloadbalancers"), i, alb) {
            json_array_foreach(json_object_get(alb, "forwardingrules"), j, fr) {
                if (refers_to(fr, id, &rule))
                    err_add(&er, "target group %s is in use: forwarding rule %s (\"%s\") of "
                            "application load balancer %s in data center %s forwards to it "
                            "(httpRules[%zu]); change or delete that rule first", id,
                            jstr(fr, "id"), jstr(json_object_get(fr, "properties"), "name"),
                            jstr(alb, "id"), dc, rule);
            }
        }
    }
    if (json_array_size(er.msgs)) {
        err_send(c, &er);
        return;
    }
    json_decref(er.msgs);
    next = xj(json_deep_copy(c->e->state));
    json_array_remove(json_object_get(next, "targetgroups"), idx);
    path = xasprintf("/targetgroups/%s", id);
    commit(c, next, K_TG, id, path, NULL);
    free(path);
}

static void alb_delete(struct call *c, const char *dc, const char *id)
{
    json_t *next, *albs;
    size_t idx;
    char *path;

    if (!find_id(dc_albs(c->e->state, dc, false), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", id, dc);
        return;
    }
    next = xj(json_deep_copy(c->e->state));
    albs = dc_albs(next, dc, false);
    json_array_remove(albs, idx); /* its forwarding rules go with it */
    if (!json_array_size(albs))
        json_object_del(json_object_get(next, "datacenters"), dc);
    path = xasprintf("/datacenters/%s/applicationloadbalancers/%s", dc, id);
    commit(c, next, K_ALB, id, path, NULL);
    free(path);
}

static void fr_delete(struct call *c, const char *dc, const char *alb_id, const char *id)
{
    json_t *alb = find_id(dc_albs(c->e->state, dc, false), alb_id, NULL), *next;
    size_t idx;
    char *path;

    if (!alb) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", alb_id, dc);
        return;
    }
    if (!find_id(json_object_get(alb, "forwardingrules"), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
             "application load balancer %s", id, alb_id);
        return;
    }
    next = xj(json_deep_copy(c->e->state));
    alb = find_id(dc_albs(next, dc, false), alb_id, NULL);
    json_array_remove(json_object_get(alb, "forwardingrules"), idx);
    path = xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s", dc,
                     alb_id, id);
    commit(c, next, K_FR, id, path, NULL);
    free(path);
}

/* ---- reads ------------------------------------------------------------------------------- */

/* Parses query parameter <name> as an integer in [min, max] (<def> when absent). Returns 0, or
 * -1 after adding a message to <er>. */
static int query_long(struct call *c, const char *name, long min, long max, long def, long *out,
                      bool *given, struct apierr *er)
{
    const char *v = evhttp_find_header(&c->query, name);
    char *end;
    long x;

    *out = def;
    if (given)
        *given = v != NULL;
    if (!v)
        return 0;
    errno = 0;
    x = strtol(v, &end, 10);
    if (!*v || *end || errno || strspn(v, "-0123456789") != strlen(v)) {
        err_add(er, "[%s] \"%.40s\" is not an integer; allowed: %ld to %ld", name, v, min, max);
        return -1;
    }
    if (x < min || x > max) {
        err_add(er, "[%s] %ld is out of range; allowed: %ld to %ld", name, x, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

static void get_coll(struct call *c, enum kind k, const json_t *arr, const char *cid,
                     const char *rel)
{
    char *href = xasprintf("%s%s", c->base, rel);

    send_json(c, 200, render_coll(c, k, cid, href, arr, c->depth, &c->pg));
    free(href);
}

static void get_one(struct call *c, enum kind k, json_t *r, const char *rel)
{
    char *href = xasprintf("%s%s", c->base, rel);

    /* The API sends the etag as a header too when depth is not given. */
    if (!c->depth_given && k != K_REQ && jstr(json_object_get(r, "metadata"), "etag")) {
        char *et = xasprintf("\"%s\"", jstr(json_object_get(r, "metadata"), "etag"));

        add_header(c, "ETag", et);
        free(et);
    }
    send_json(c, 200, render_res(c, k, r, href, c->depth));
    free(href);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const char paths_help[] =
    "the emulator serves /cloudapi/v6/datacenters/{datacenterId}/applicationloadbalancers"
    "[/{id}[/forwardingrules[/{id}]]], /cloudapi/v6/targetgroups[/{id}] and "
    "/cloudapi/v6/requests[/{id}[/status]]";

static enum route route_of(const struct call *c)
{
    char *const *s = c->seg;

    switch (c->nseg) {
    case 1:
        return !strcmp(s[0], "targetgroups") ? R_TG_COLL
               : !strcmp(s[0], "requests")   ? R_REQ_COLL
                                             : R_NONE;
    case 2:
        return !strcmp(s[0], "targetgroups") ? R_TG : !strcmp(s[0], "requests") ? R_REQ : R_NONE;
    case 3:
        if (!strcmp(s[0], "requests") && !strcmp(s[2], "status"))
            return R_REQ_STATUS;
        return !strcmp(s[0], "datacenters") && !strcmp(s[2], "applicationloadbalancers")
                   ? R_ALB_COLL
                   : R_NONE;
    case 4:
    case 5:
    case 6:
        if (strcmp(s[0], "datacenters") || strcmp(s[2], "applicationloadbalancers"))
            return R_NONE;
        if (c->nseg == 4)
            return R_ALB;
        return strcmp(s[4], "forwardingrules") ? R_NONE : c->nseg == 5 ? R_FR_COLL : R_FR;
    default:
        return R_NONE;
    }
}

/* Splits the path below BASE_PATH into c->seg; -1 when it is not below it or has empty or
 * too many segments. */
static int split_path(struct call *c, const char *path)
{
    size_t n = strlen(BASE_PATH), len;
    char *p;

    if (!path || strncmp(path, BASE_PATH, n) || (path[n] != '/' && path[n] != '\0'))
        return -1;
    c->pathbuf = xasprintf("%s", path + n);
    len = strlen(c->pathbuf);
    if (len > 0 && c->pathbuf[len - 1] == '/')
        c->pathbuf[--len] = '\0';
    for (p = len ? c->pathbuf : NULL; p; p = strchr(p, '/')) {
        *p++ = '\0';
        if (c->nseg == MAX_SEGS || *p == '\0' || *p == '/')
            return -1;
        c->seg[c->nseg++] = p;
    }
    return 0;
}

static bool authorized(struct call *c, const char **why)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->req),
                                       "Authorization");
    const char *tok = c->e->token;
    size_t lt, lh;
    unsigned char diff;

    if (!tok)
        return true;
    if (!h) {
        *why = "no Authorization header: this emulator was started with --token; send "
               "Authorization: Bearer <token>";
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7)) {
        *why = "only Authorization: Bearer <token> is accepted here (HTTP Basic is not "
               "emulated)";
        return false;
    }
    h += 7;
    while (*h == ' ')
        h++;
    /* compare in constant time over the token's length */
    lt = strlen(tok);
    lh = strlen(h);
    diff = lt != lh;
    for (size_t i = 0; i < lt; i++)
        diff |= (unsigned char)(tok[i] ^ (i < lh ? h[i] : 0));
    *why = "the bearer token is not the one this emulator was started with";
    return diff == 0;
}

/* "http://HOST/cloudapi/v6" from the Host header when it looks like a host[:port]. */
static char *base_url(struct call *c)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Host");

    if (!h || !*h || strlen(h) > 255 ||
        strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]") !=
            strlen(h))
        h = c->e->listen;
    return xasprintf("http://%s%s", h, BASE_PATH);
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    default: return "?";
    }
}

/* Answers a GET on route <r>. */
static void read_route(struct call *c, enum route r)
{
    char *const *s = c->seg;
    json_t *st = c->e->state, *alb = NULL, *x;
    char *rel;

    switch (r) {
    case R_TG_COLL:
        get_coll(c, K_TG, json_object_get(st, "targetgroups"), "targetgroups", "/targetgroups");
        return;
    case R_TG:
        if (!(x = find_id(json_object_get(st, "targetgroups"), s[1], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", s[1]);
            return;
        }
        rel = xasprintf("/targetgroups/%s", s[1]);
        get_one(c, K_TG, x, rel);
        free(rel);
        return;
    case R_ALB_COLL: {
        /* Any data center id works: one without ALBs has an empty collection. */
        json_t *albs = dc_albs(st, s[1], false), *empty = NULL;
        char *cid = xasprintf("%s/applicationloadbalancers", s[1]);

        if (!albs)
            albs = empty = xj(json_array());
        rel = xasprintf("/datacenters/%s/applicationloadbalancers", s[1]);
        get_coll(c, K_ALB, albs, cid, rel);
        json_decref(empty);
        free(rel);
        free(cid);
        return;
    }
    case R_ALB:
    case R_FR_COLL:
    case R_FR:
        if (!(alb = find_id(dc_albs(st, s[1], false), s[3], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer "
                 "%s in data center %s", s[3], s[1]);
            return;
        }
        if (r == R_ALB) {
            rel = xasprintf("/datacenters/%s/applicationloadbalancers/%s", s[1], s[3]);
            get_one(c, K_ALB, alb, rel);
        } else if (r == R_FR_COLL) {
            char *cid = xasprintf("%s/forwardingrules", s[3]);

            rel = xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules", s[1],
                            s[3]);
            get_coll(c, K_FR, json_object_get(alb, "forwardingrules"), cid, rel);
            free(cid);
        } else if (!(x = find_id(json_object_get(alb, "forwardingrules"), s[5], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
                 "application load balancer %s", s[5], s[3]);
            return;
        } else {
            rel = xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s",
                            s[1], s[3], s[5]);
            get_one(c, K_FR, x, rel);
        }
        free(rel);
        return;
    case R_REQ_COLL:
        get_coll(c, K_REQ, json_object_get(st, "requests"), "requests", "/requests");
        return;
    case R_REQ:
    case R_REQ_STATUS:
        if (!(x = find_id(json_object_get(st, "requests"), s[1], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no request %s (the emulator "
                 "keeps the last %d)", s[1], MAX_REQUESTS);
        } else if (r == R_REQ_STATUS) {
            send_json(c, 200, render_status(c, x));
        } else {
            rel = xasprintf("/requests/%s", s[1]);
            get_one(c, K_REQ, x, rel);
            free(rel);
        }
        return;
    case R_NONE:
        return;
    }
}

/* Checks the method against route <r> and answers. */
static void dispatch(struct call *c, enum route r)
{
    char *const *s = c->seg;
    bool coll = r == R_TG_COLL || r == R_ALB_COLL || r == R_FR_COLL;
    bool reqs = r == R_REQ_COLL || r == R_REQ || r == R_REQ_STATUS;
    int allowed = reqs ? EVHTTP_REQ_GET
                  : coll ? EVHTTP_REQ_GET | EVHTTP_REQ_POST
                         : EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                               EVHTTP_REQ_DELETE;

    if (!((int)c->cmd & allowed)) {
        const char *allow = reqs ? "GET" : coll ? "GET, POST" : "GET, PUT, PATCH, DELETE";

        add_header(c, "Allow", allow);
        fail(c, 405, EC_METHOD, "%s is not allowed on %s; allowed: %s", c->method,
             evhttp_uri_get_path(evhttp_request_get_evhttp_uri(c->req)), allow);
        return;
    }
    if (c->cmd != EVHTTP_REQ_GET) {
        bool del = c->cmd == EVHTTP_REQ_DELETE;

        if (r == R_TG_COLL || r == R_TG) {
            if (del)
                tg_delete(c, s[1]);
            else
                tg_write(c, r == R_TG ? s[1] : NULL);
        } else if (r == R_ALB_COLL || r == R_ALB) {
            if (del)
                alb_delete(c, s[1], s[3]);
            else
                alb_write(c, s[1], r == R_ALB ? s[3] : NULL);
        } else if (r == R_FR_COLL || r == R_FR) {
            if (del)
                fr_delete(c, s[1], s[3], s[5]);
            else
                fr_write(c, s[1], s[3], r == R_FR ? s[5] : NULL);
        }
        return;
    }
    read_route(c, r);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct call c = { .e = arg, .req = req, .pretty = true };
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *why = NULL;
    const char *pretty;
    struct apierr er;
    enum route r = R_NONE;

    TAILQ_INIT(&c.query);
    c.cmd = evhttp_request_get_command(req);
    c.method = method_name(c.cmd);
    c.base = base_url(&c);
    if (!authorized(&c, &why)) {
        add_header(&c, "WWW-Authenticate", "Bearer realm=\"sluice emu\"");
        fail(&c, 401, EC_UNAUTHORIZED, "Unauthorized: %s", why);
        goto out;
    }
    /* Ids and paths go into JSON and the state file as they are: printable ASCII only. */
    for (const char *u = evhttp_request_get_uri(req); *u; u++) {
        if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f) {
            fail(&c, 400, EC_MALFORMED, "the request target has a byte that is not printable "
                 "ASCII (0x%02x): percent-encode it", (unsigned char)*u);
            goto out;
        }
    }
    if (query && evhttp_parse_query_str(query, &c.query) == -1) {
        fail(&c, 400, EC_MALFORMED, "malformed query string");
        goto out;
    }
    pretty = evhttp_find_header(&c.query, "pretty");
    if (pretty && strcmp(pretty, "true") && strcmp(pretty, "false")) {
        fail(&c, 422, EC_VALIDATION, "[pretty] \"%.40s\" is not true or false", pretty);
        goto out;
    }
    c.pretty = !pretty || !strcmp(pretty, "true");
    if (split_path(&c, path) == -1 || (r = route_of(&c)) == R_NONE) {
        fail(&c, 404, EC_NOT_FOUND, "Resource does not exist: no such path %.200s; %s",
             path ? path : "", paths_help);
        goto out;
    }
    /* Query parameters: all of their errors in one answer. Paging: the target group list
     * documents limit 1..200 (default 100), the ALB list 1..10000 (default 1000); the other
     * lists document none and take the ALB list's. */
    err_init(&er, 422, EC_VALIDATION);
    query_long(&c, "depth", 0, MAX_DEPTH, 0, &c.depth, &c.depth_given, &er);
    if (r == R_TG_COLL || r == R_ALB_COLL || r == R_FR_COLL || r == R_REQ_COLL) {
        query_long(&c, "offset", 0, 2147483647L, 0, &c.pg.offset, NULL, &er);
        query_long(&c, "limit", 1, r == R_TG_COLL ? 200 : 10000, r == R_TG_COLL ? 100 : 1000,
                   &c.pg.limit, NULL, &er);
    }
    if (json_array_size(er.msgs)) {
        err_send(&c, &er);
        goto out;
    }
    json_decref(er.msgs);
    dispatch(&c, r);
out:
    sl_log(SL_LOG_INFO, "emu: %s %.300s %d", c.method, evhttp_request_get_uri(req), c.status);
    evhttp_clear_headers(&c.query);
    free(c.base);
    free(c.pathbuf);
}

/* ---- the process ------------------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct emu *e = arg;

    (void)what;
    sl_log(SL_LOG_INFO, "emu: %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    event_base_loopexit(e->base, NULL);
}

static void count(const json_t *st, size_t *n_tg, size_t *n_alb, size_t *n_fr)
{
    const char *dc;
    json_t *d, *alb;
    size_t i;

    *n_tg = json_array_size(json_object_get(st, "targetgroups"));
    *n_alb = *n_fr = 0;
    json_object_foreach(json_object_get(st, "datacenters"), dc, d) {
        json_array_foreach(json_object_get(d, "applicationloadbalancers"), i, alb) {
            (*n_alb)++;
            *n_fr += json_array_size(json_object_get(alb, "forwardingrules"));
        }
    }
}

int sl_emu_main(const char *listen, const char *state_path, const char *token)
{
    struct emu e = { .state_path = state_path, .token = token };
    struct sl_addr ip;
    uint16_t port;
    char host[SL_ADDR_STRLEN];
    size_t n_tg, n_alb, n_fr;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an EPIPE, not a death */
    if (sl_addr_parse_port(listen, &ip, &port) == -1) {
        sl_log(SL_LOG_ERR, "emu: --listen %s: expected IP:PORT", listen);
        return 1;
    }
    sl_addr_format_port(&ip, port, e.listen);
    if (state_load(&e, state_path) == -1)
        return 1;
    if (!(e.base = event_base_new()) || !(e.http = evhttp_new(e.base)))
        goto out;
    evhttp_set_max_headers_size(e.http, 64 * 1024);
    evhttp_set_max_body_size(e.http, MAX_BODY);
    evhttp_set_timeout(e.http, 60);
    evhttp_set_default_content_type(e.http, NULL);
    /* HEAD stays out: evhttp would send a body with it. Others get a 405 in the API's shape. */
    evhttp_set_allowed_methods(e.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE);
    evhttp_set_gencb(e.http, on_request, &e);
    errno = 0;
    if (!evhttp_bind_socket_with_handle(e.http, sl_addr_format(&ip, host), port)) {
        sl_log(SL_LOG_ERR, "emu: cannot listen on %s: %s", listen,
               errno ? strerror(errno) : "bind failed");
        goto out;
    }
    e.sig_term = evsignal_new(e.base, SIGTERM, on_signal, &e);
    e.sig_int = evsignal_new(e.base, SIGINT, on_signal, &e);
    if (!e.sig_term || !e.sig_int || event_add(e.sig_term, NULL) == -1 ||
        event_add(e.sig_int, NULL) == -1)
        goto out;
    count(e.state, &n_tg, &n_alb, &n_fr);
    sl_log(SL_LOG_INFO, "emu: IONOS CloudAPI v6 emulator on http://%s%s (state %s: %zu target "
           "group%s, %zu application load balancer%s, %zu forwarding rule%s); %s", e.listen,
           BASE_PATH, state_path, n_tg, n_tg == 1 ? "" : "s", n_alb, n_alb == 1 ? "" : "s",
           n_fr, n_fr == 1 ? "" : "s",
           token ? "requests need Authorization: Bearer <the --token>"
                 : "no --token: every request is accepted, with or without Authorization");
    if (event_base_dispatch(e.base) == -1)
        goto out;
    sl_log(SL_LOG_INFO, "emu: stopped");
    rc = 0;
out:
    if (rc)
        sl_log(SL_LOG_ERR, "emu: stopped on an error");
    if (e.sig_term)
        event_free(e.sig_term);
    if (e.sig_int)
        event_free(e.sig_int);
    if (e.http)
        evhttp_free(e.http);
    if (e.base)
        event_base_free(e.base);
    json_decref(e.state);
    libevent_global_shutdown();
    return rc;
}
