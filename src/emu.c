/* `sluice emu`: the IONOS CloudAPI v6 emulator (see emu.h). One process, one libevent loop,
 * one evhttp server. This file is its HTTP side: routing, request bodies, rendering, errors,
 * auth and the writes; the state they work on is emu_state.c's. The whole state is one jansson
 * tree: a write deep-copies it, applies the change, checks the ALBs it touches with the loader
 * `sluice check` uses, writes the copy to the state file (temp file, fsync, rename, fsync of
 * the directory) and only then adopts it, so a refused or failed write changes nothing. hrefs
 * are built per request from its Host header; the state stores paths and ids only. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "emu-int.h"
#include "sluice/addr.h"
#include "sluice/diag.h"
#include "sluice/emu.h"
#include "sluice/json.h"
#include "sluice/log.h"

#define BASE_PATH "/cloudapi/v6"
#define MAX_BODY (4u << 20)
#define MAX_SEGS 8
#define MAX_DEPTH 10

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

/* ---- small helpers ----------------------------------------------------------------------- */

/* vasprintf that cannot fail: out of memory ends the emulator (a test tool). */
static char *SL_PRINTF(1, 0) emu_vxasprintf(const char *fmt, va_list ap)
{
    char *s;

    if (vasprintf(&s, fmt, ap) == -1)
        abort();
    return s;
}

char *SL_PRINTF(1, 2) emu_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = emu_vxasprintf(fmt, ap);
    va_end(ap);
    return s;
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

static void SL_PRINTF(2, 0) err_vadd(struct apierr *x, const char *fmt, va_list ap)
{
    char *s = emu_vxasprintf(fmt, ap);

    json_array_append_new(
        x->msgs, xj(json_pack("{s:s, s:o}", "errorCode", x->code, "message", json_text(s))));
    free(s);
}

void SL_PRINTF(2, 3) emu_err_add(struct apierr *x, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vadd(x, fmt, ap);
    va_end(ap);
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

    err_init(&x, status, code);
    va_start(ap, fmt);
    err_vadd(&x, fmt, ap);
    va_end(ap);
    err_send(c, &x);
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
            char *ih = emu_xasprintf("%s/%s", href, jstr(x, "id"));

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
            u = emu_xasprintf("%s?offset=%ld&limit=%ld", href,
                              pg->offset > pg->limit ? pg->offset - pg->limit : 0, pg->limit);
            json_object_set_new(links, "prev", json_string(u));
            free(u);
        }
        u = emu_xasprintf("%s?offset=%ld&limit=%ld", href, pg->offset, pg->limit);
        json_object_set_new(links, "self", json_string(u));
        free(u);
        if ((size_t)pg->offset + (size_t)pg->limit < n) {
            u = emu_xasprintf("%s?offset=%ld&limit=%ld", href, pg->offset + pg->limit, pg->limit);
            json_object_set_new(links, "next", json_string(u));
            free(u);
        }
        json_object_set_new(o, "_links", links);
    }
    return o;
}

static json_t *render_status(struct call *c, const json_t *rq)
{
    char *href = emu_xasprintf("%s/requests/%s/status", c->base, jstr(rq, "id"));
    json_t *targets = xj(json_array()), *t;
    size_t i;

    json_array_foreach(json_object_get(rq, "targets"), i, t) {
        char *th = emu_xasprintf("%s%s", c->base, jstr(t, "path") ? jstr(t, "path") : "");

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
    char *sh = emu_xasprintf("%s/status", href), *url;
    json_t *st = depth >= 1 ? render_status(c, rq)
                            : xj(json_pack("{s:s, s:s, s:s}", "id", jstr(rq, "id"), "type",
                                           "request-status", "href", sh));
    json_t *o;

    url = emu_xasprintf("%s%s", c->base, jstr(rq, "url") ? jstr(rq, "url") : "");
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
        char *fh = emu_xasprintf("%s/forwardingrules", href);
        char *cid = emu_xasprintf("%s/forwardingrules", jstr(r, "id"));

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

/* ---- request bodies ---------------------------------------------------------------------- */

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
            emu_err_add(&x, "malformed JSON at line %u, column %u%s%s%s: %s", d.v[i].line,
                        d.v[i].col, d.v[i].path[0] ? " (" : "", d.v[i].path,
                        d.v[i].path[0] ? ")" : "", d.v[i].msg);
        if (!d.n)
            emu_err_add(&x, "malformed JSON");
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
        /* null removes a field (emu_filter drops nulls, so remove those first) */
        json_object_foreach(body, k, v)
            if (json_is_null(v))
                json_object_del(p, k);
        emu_filter(body, fk, &path, ignored);
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
        emu_filter(p, fk, &path, ignored);
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

/* ---- writes ------------------------------------------------------------------------------ */

/* Records the write as a request in <next>, saves <next> and adopts it, and answers 202 with
 * the request's status URL in Location and <res> (at <path> below the base; NULL after a
 * DELETE). On a failed save nothing changes and the answer is 500. Takes <next>. */
static void commit(struct call *c, json_t *next, enum kind k, const char *id, const char *path,
                   json_t *res)
{
    const char *uri = evhttp_request_get_uri(c->req);
    char rid[37], err[512];
    char *loc, *href;

    if (!strncmp(uri, BASE_PATH, strlen(BASE_PATH)))
        uri += strlen(BASE_PATH);
    emu_add_request(next, rid, c->method, uri, id, kind_type[k], path);
    if (emu_state_save(c->e->state_path, next, err, sizeof(err)) == -1) {
        sl_log(SL_LOG_ERR, "emu: state file %s: %s", c->e->state_path, err);
        fail(c, 500, EC_INTERNAL, "the change was not applied: the state file could not be "
             "written (%s)", err);
        json_decref(next);
        return;
    }
    json_decref(c->e->state);
    c->e->state = next;
    loc = emu_xasprintf("%s/requests/%s/status", c->base, rid);
    add_header(c, "Location", loc);
    free(loc);
    if (res) {
        href = emu_xasprintf("%s%s", c->base, path);
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
    if (json_array_size(er->msgs)) {
        err_send(c, er);
        json_decref(next);
        return;
    }
    json_decref(er->msgs);
    emu_stamp(k, res, created);
    commit(c, next, k, jstr(res, "id"), path, res);
}

static const char *wprefix_of(struct check *k, const char *fmt, size_t i)
{
    snprintf(k->wprefix, sizeof(k->wprefix), fmt, i);
    return k->wprefix;
}

/* The resource a write lands on in <arr>: the one at <*idx> given properties <p> when <*id> is
 * set (an update), else a new one appended with a fresh id (written to <nid>, 37 bytes, and
 * <*id>, <*idx> set to it), with an empty <children> collection when that is not NULL. */
static json_t *upsert(json_t *arr, const char **id, size_t *idx, json_t *p, char *nid,
                      const char *children)
{
    json_t *res;

    if (*id) {
        res = json_array_get(arr, *idx);
        json_object_set_new(res, "properties", p);
        return res;
    }
    emu_uuid4(nid);
    *id = nid;
    *idx = json_array_size(arr);
    res = xj(json_pack("{s:s, s:{}, s:o}", "id", nid, "metadata", "properties", p));
    if (children)
        json_object_set_new(res, children, xj(json_array()));
    json_array_append_new(arr, res);
    return res;
}

static void tg_write(struct call *c, const char *id)
{
    json_t *next, *tgs, *res, *p, *stored = NULL;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH, .method = c->method,
                       .uri = evhttp_request_get_uri(c->req) };
    char nid[37], *path;
    size_t idx = 0;
    const char *dc;
    json_t *d, *alb, *fr;
    size_t i, j, rule;

    if (id && !(stored = emu_find_id(json_object_get(c->e->state, "targetgroups"), id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", id);
        return;
    }
    if (!(p = write_props(c, FK_TG, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    tgs = json_object_get(next, "targetgroups");
    res = upsert(tgs, &id, &idx, p, nid, NULL);
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    {
        json_t *doc = xj(json_pack("{s:[o]}", "targetGroups", emu_doc_entry(res)));

        wprefix_of(&k, "targetGroups[%zu]", 0);
        emu_check_doc(doc, &k, false);
        json_decref(doc);
    }
    /* and every ALB that uses it */
    json_object_foreach(json_object_get(next, "datacenters"), dc, d) {
        json_array_foreach(json_object_get(d, "applicationloadbalancers"), i, alb) {
            bool uses = false;

            json_array_foreach(json_object_get(alb, "forwardingrules"), j, fr)
                uses |= emu_refers_to(fr, id, &rule);
            if (uses && !json_array_size(er.msgs)) {
                json_t *doc = emu_alb_doc(next, alb);

                wprefix_of(&k, "targetGroups[%zu]", idx);
                emu_check_doc(doc, &k, true);
                json_decref(doc);
            }
        }
    }
    json_decref(k.skip);
    path = emu_xasprintf("/targetgroups/%s", id);
    finish_write(c, next, K_TG, res, path, &er, !stored);
    free(path);
}

static void alb_write(struct call *c, const char *dc, const char *id)
{
    json_t *albs = emu_dc_albs(c->e->state, dc, false), *next, *res, *p, *stored = NULL, *doc;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH, .method = c->method,
                       .uri = evhttp_request_get_uri(c->req) };
    char nid[37], *path;
    size_t idx = 0;

    if (id && !(stored = emu_find_id(albs, id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", id, dc);
        return;
    }
    if (!(p = write_props(c, FK_ALB, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    albs = emu_dc_albs(next, dc, true);
    res = upsert(albs, &id, &idx, p, nid, "forwardingrules");
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    doc = emu_alb_doc(next, res);
    snprintf(k.wprefix, sizeof(k.wprefix), "applicationLoadBalancer");
    k.scope = xj(json_object());
    for (size_t i = 0; i < json_array_size(json_object_get(res, "forwardingrules")); i++) {
        char *fp = emu_xasprintf("forwardingRules[%zu]", i);

        json_object_set_new(k.scope, fp, json_true());
        free(fp);
    }
    emu_check_doc(doc, &k, true);
    json_decref(doc);
    json_decref(k.skip);
    json_decref(k.scope);
    path = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s", dc, id);
    finish_write(c, next, K_ALB, res, path, &er, !stored);
    free(path);
}

static void fr_write(struct call *c, const char *dc, const char *alb_id, const char *id)
{
    json_t *alb = emu_find_id(emu_dc_albs(c->e->state, dc, false), alb_id, NULL), *next, *res;
    json_t *p, *doc, *stored = NULL, *frs;
    struct apierr er;
    struct check k = { .err = &er, .bare = c->cmd == EVHTTP_REQ_PATCH, .method = c->method,
                       .uri = evhttp_request_get_uri(c->req) };
    char nid[37], *path;
    size_t idx = 0;

    if (!alb) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", alb_id, dc);
        return;
    }
    if (id && !(stored = emu_find_id(json_object_get(alb, "forwardingrules"), id, &idx))) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
             "application load balancer %s", id, alb_id);
        return;
    }
    if (!(p = write_props(c, FK_FR, stored ? json_object_get(stored, "properties") : NULL)))
        return;
    next = xj(json_deep_copy(c->e->state));
    alb = emu_find_id(emu_dc_albs(next, dc, false), alb_id, NULL);
    frs = json_object_get(alb, "forwardingrules");
    res = upsert(frs, &id, &idx, p, nid, NULL);
    err_init(&er, 422, EC_VALIDATION);
    k.skip = xj(json_object());
    wprefix_of(&k, "forwardingRules[%zu]", idx);
    k.scope = xj(json_object());
    emu_check_tg_refs(next, p, &k);
    doc = emu_alb_doc(next, alb);
    emu_check_doc(doc, &k, true);
    json_decref(doc);
    json_decref(k.skip);
    json_decref(k.scope);
    path = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s", dc,
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

    if (!emu_find_id(json_object_get(c->e->state, "targetgroups"), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", id);
        return;
    }
    err_init(&er, 422, EC_VALIDATION);
    json_object_foreach(json_object_get(c->e->state, "datacenters"), dc, d) {
        json_array_foreach(json_object_get(d, "applicationloadbalancers"), i, alb) {
            json_array_foreach(json_object_get(alb, "forwardingrules"), j, fr) {
                if (emu_refers_to(fr, id, &rule))
                    emu_err_add(&er, "target group %s is in use: forwarding rule %s (\"%s\") "
                                "of application load balancer %s in data center %s forwards to "
                                "it (httpRules[%zu]); change or delete that rule first", id,
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
    path = emu_xasprintf("/targetgroups/%s", id);
    commit(c, next, K_TG, id, path, NULL);
    free(path);
}

static void alb_delete(struct call *c, const char *dc, const char *id)
{
    json_t *next, *albs;
    size_t idx;
    char *path;

    if (!emu_find_id(emu_dc_albs(c->e->state, dc, false), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", id, dc);
        return;
    }
    next = xj(json_deep_copy(c->e->state));
    albs = emu_dc_albs(next, dc, false);
    json_array_remove(albs, idx); /* its forwarding rules go with it */
    if (!json_array_size(albs))
        json_object_del(json_object_get(next, "datacenters"), dc);
    path = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s", dc, id);
    commit(c, next, K_ALB, id, path, NULL);
    free(path);
}

static void fr_delete(struct call *c, const char *dc, const char *alb_id, const char *id)
{
    json_t *alb = emu_find_id(emu_dc_albs(c->e->state, dc, false), alb_id, NULL), *next;
    size_t idx;
    char *path;

    if (!alb) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer %s "
             "in data center %s", alb_id, dc);
        return;
    }
    if (!emu_find_id(json_object_get(alb, "forwardingrules"), id, &idx)) {
        fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
             "application load balancer %s", id, alb_id);
        return;
    }
    next = xj(json_deep_copy(c->e->state));
    alb = emu_find_id(emu_dc_albs(next, dc, false), alb_id, NULL);
    json_array_remove(json_object_get(alb, "forwardingrules"), idx);
    path = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s", dc,
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
        emu_err_add(er, "[%s] \"%.40s\" is not an integer; allowed: %ld to %ld", name, v, min, max);
        return -1;
    }
    if (x < min || x > max) {
        emu_err_add(er, "[%s] %ld is out of range; allowed: %ld to %ld", name, x, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

static void get_coll(struct call *c, enum kind k, const json_t *arr, const char *cid,
                     const char *rel)
{
    char *href = emu_xasprintf("%s%s", c->base, rel);

    send_json(c, 200, render_coll(c, k, cid, href, arr, c->depth, &c->pg));
    free(href);
}

static void get_one(struct call *c, enum kind k, json_t *r, const char *rel)
{
    char *href = emu_xasprintf("%s%s", c->base, rel);

    /* The API sends the etag as a header too when depth is not given. */
    if (!c->depth_given && k != K_REQ && jstr(json_object_get(r, "metadata"), "etag")) {
        char *et = emu_xasprintf("\"%s\"", jstr(json_object_get(r, "metadata"), "etag"));

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
    c->pathbuf = emu_xasprintf("%s", path + n);
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
    return emu_xasprintf("http://%s%s", h, BASE_PATH);
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
        if (!(x = emu_find_id(json_object_get(st, "targetgroups"), s[1], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no target group %s", s[1]);
            return;
        }
        rel = emu_xasprintf("/targetgroups/%s", s[1]);
        get_one(c, K_TG, x, rel);
        free(rel);
        return;
    case R_ALB_COLL: {
        /* Any data center id works: one without ALBs has an empty collection. */
        json_t *albs = emu_dc_albs(st, s[1], false), *empty = NULL;
        char *cid = emu_xasprintf("%s/applicationloadbalancers", s[1]);

        if (!albs)
            albs = empty = xj(json_array());
        rel = emu_xasprintf("/datacenters/%s/applicationloadbalancers", s[1]);
        get_coll(c, K_ALB, albs, cid, rel);
        json_decref(empty);
        free(rel);
        free(cid);
        return;
    }
    case R_ALB:
    case R_FR_COLL:
    case R_FR:
        if (!(alb = emu_find_id(emu_dc_albs(st, s[1], false), s[3], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no application load balancer "
                 "%s in data center %s", s[3], s[1]);
            return;
        }
        if (r == R_ALB) {
            rel = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s", s[1], s[3]);
            get_one(c, K_ALB, alb, rel);
        } else if (r == R_FR_COLL) {
            char *cid = emu_xasprintf("%s/forwardingrules", s[3]);

            rel = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules",
                                s[1], s[3]);
            get_coll(c, K_FR, json_object_get(alb, "forwardingrules"), cid, rel);
            free(cid);
        } else if (!(x = emu_find_id(json_object_get(alb, "forwardingrules"), s[5], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no forwarding rule %s in "
                 "application load balancer %s", s[5], s[3]);
            return;
        } else {
            rel = emu_xasprintf("/datacenters/%s/applicationloadbalancers/%s/forwardingrules/%s",
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
        if (!(x = emu_find_id(json_object_get(st, "requests"), s[1], NULL))) {
            fail(c, 404, EC_NOT_FOUND, "Resource does not exist: no request %s (the emulator "
                 "keeps the last %d)", s[1], MAX_REQUESTS);
        } else if (r == R_REQ_STATUS) {
            send_json(c, 200, render_status(c, x));
        } else {
            rel = emu_xasprintf("/requests/%s", s[1]);
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
    if (emu_state_load(state_path, &e.state) == -1)
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
