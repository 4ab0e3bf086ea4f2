/* `sluice emu`'s state (see emu.c for the HTTP side): the whole model is one jansson tree,
 * loaded from and saved to the state file (temp file, fsync, rename, fsync of the directory, so
 * the file is always a whole document). Here too: the ids, etags and dates the API hands out,
 * the fields each resource has and the defaults a write fills in, and the validation of a write
 * with the loader `sluice check` uses, its diagnostics mapped back to the client's paths. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "emu-int.h"
#include "sluice/config.h"
#include "sluice/diag.h"
#include "sluice/file.h"
#include "sluice/json.h"
#include "sluice/log.h"

#define STATE_MAX (256u << 20) /* a state file larger than this is refused */

#define STATE_FORMAT "sluice-emu-state/1"
#define DUMP_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

/* ---- ids, etags, dates ------------------------------------------------------------------- */

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

void emu_uuid4(char out[37])
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

static void setdef(json_t *o, const char *key, json_t *v)
{
    if (!json_object_get(o, key))
        json_object_set_new(o, key, v);
    else
        json_decref(v);
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

json_t *emu_find_id(const json_t *arr, const char *id, size_t *idx)
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
json_t *emu_dc_albs(json_t *st, const char *dc, bool create)
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

/* Replaces the state file with <st>: a temp file in the same directory, fsync, rename, fsync of
 * the directory, so the file is always either the old or the new document. Returns 0, or -1
 * with the reason in <err> (the old file left as it was). */
int emu_state_save(const char *path, const json_t *st, char *err, size_t n)
{
    char *text = json_dumps(st, DUMP_FLAGS);
    const char *step;
    size_t len;
    int rc;

    if (!text)
        abort();
    len = strlen(text);
    text[len] = '\n'; /* the NUL's place: one line feed at the end of the file */
    rc = sl_write_file_atomic(path, text, len + 1, 0644, &step);
    if (rc == -1)
        snprintf(err, n, "cannot %s %s: %s", step, path, strerror(errno));
    free(text);
    return rc;
}

/* Loads <path> into *<state>: a missing file is an empty state (written at once, so that a
 * state file that cannot be created is found at start). Returns 0, or -1 after saying why. */
int emu_state_load(const char *path, json_t **state)
{
    FILE *f = fopen(path, "rb");
    char *buf, err[512];
    size_t len;
    bool more;
    struct sl_diags d;
    json_t *st;

    if (!f && errno == ENOENT) {
        *state = state_new();
        if (emu_state_save(path, *state, err, sizeof(err)) == -1) {
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
    buf = sl_read_stream(f, STATE_MAX, &len, &more);
    fclose(f);
    if (!buf || more) {
        sl_log(SL_LOG_ERR, "emu: state file %s: %s", path,
               buf ? "larger than 256 MiB" : strerror(errno));
        free(buf);
        return -1;
    }
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
    *state = st;
    return 0;
}

/* ---- metadata, request records ----------------------------------------------------------- */

static json_t *meta_new(uint64_t now)
{
    char etag[33], date[32];

    new_etag(etag);
    sl_iso_ms(now, date);
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
    sl_iso_ms(now, date);
    json_object_set_new(m, "etag", json_string(etag));
    json_object_set_new(m, "lastModifiedDate", json_string(date));
    json_object_set_new(m, "lastModifiedBy", json_string(EMU_USER));
    json_object_set_new(m, "lastModifiedByUserId", json_string(EMU_USER_ID));
    json_object_set_new(m, "state", json_string("AVAILABLE"));
}

/* Records a write in <st> for /requests: a new request id (also in <rid>), the <method>, the
 * <url> below the base and the resource written (<id>, its API <type>, its <path> below the
 * base). Only the newest MAX_REQUESTS are kept. */
void emu_add_request(json_t *st, char rid[37], const char *method, const char *url,
                     const char *id, const char *type, const char *path)
{
    json_t *reqs = json_object_get(st, "requests");
    char etag[33], date[32];

    emu_uuid4(rid);
    new_etag(etag);
    sl_iso_ms(sl_clock_ms(CLOCK_REALTIME), date);
    json_array_append_new(reqs, xj(json_pack("{s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}]}",
                                             "id", rid, "createdDate", date, "etag", etag,
                                             "method", method, "url", url, "targets", "id", id,
                                             "type", type, "path", path)));
    while (json_array_size(reqs) > MAX_REQUESTS)
        json_array_remove(reqs, 0);
}

/* ---- the resources' fields, defaults ----------------------------------------------------- */

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
void emu_filter(json_t *o, enum fkind fk, struct sl_jpath *p, json_t *ignored)
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
            emu_filter(v, f->child, p, ignored);
        } else if (f->child && json_is_array(v)) {
            size_t i;
            json_t *x;

            json_array_foreach(v, i, x) {
                size_t o2 = sl_jpath_push_index(p, i);

                if (json_is_object(x))
                    emu_filter(x, f->child, p, ignored);
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

/* Turns a written resource that passed validation into stored form: the defaults in its
 * properties, and new metadata when <created>, else the old one touched. */
void emu_stamp(enum kind k, json_t *res, bool created)
{
    uint64_t now = sl_clock_ms(CLOCK_REALTIME);

    fill_defaults(k, json_object_get(res, "properties"));
    if (created)
        json_object_set_new(res, "metadata", meta_new(now));
    else
        meta_touch(json_object_get(res, "metadata"), now);
}

/* ---- validation: the loader `sluice check` uses ------------------------------------------ */

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

json_t *emu_doc_entry(const json_t *r)
{
    return xj(json_pack("{s:O, s:O}", "id", json_object_get(r, "id"), "properties",
                        json_object_get(r, "properties")));
}

/* The document `sluice check` would load for ALB <alb>: it, its forwarding rules and every
 * target group. Certificates live in the Certificate Manager, which is not emulated: each id a
 * rule names gets a placeholder entry in sluice.certificates so that it passes. */
json_t *emu_alb_doc(const json_t *st, const json_t *alb)
{
    json_t *frs = xj(json_array()), *tgs = xj(json_array()), *certs = xj(json_object()), *r, *s;
    json_t *doc;
    size_t i, j;

    json_array_foreach(json_object_get(alb, "forwardingrules"), i, r) {
        json_array_append_new(frs, emu_doc_entry(r));
        json_array_foreach(json_object_get(json_object_get(r, "properties"),
                                           "serverCertificates"), j, s)
            if (json_is_string(s) && json_string_length(s) > 0)
                json_object_set_new(certs, json_string_value(s),
                                    xj(json_pack("{s:s, s:s}", "cert", "(certificate manager)",
                                                 "key", "(certificate manager)")));
    }
    json_array_foreach(json_object_get(st, "targetgroups"), i, r)
        json_array_append_new(tgs, emu_doc_entry(r));
    doc = xj(json_pack("{s:o, s:o, s:o}", "applicationLoadBalancer", emu_doc_entry(alb),
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
        return emu_xasprintf("%s", rest[0] ? rest : "(root)");
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
        return emu_xasprintf("%s", path[0] ? path : "(root)");
    rest = path + used + (path[used] == '.');
    return emu_xasprintf("%s/%s: %s", coll, id, rest[0] ? rest : "(root)");
}

/* Loads <doc> as `sluice check` does: each error becomes one message of k->err. When <lint>
 * and the write has no error at all, lint warnings (which never refuse it) are logged. */
void emu_check_doc(json_t *doc, struct check *k, bool lint)
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
        emu_err_add(k->err, "[%s] %s", p, d.v[i].msg);
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
            sl_log(SL_LOG_WARN, "emu: %s %s: lint (not refused): [%s] %s", k->method, k->uri, p,
                   d.v[i].msg);
            free(p);
        }
        sl_diags_deinit(&d);
    }
    sl_config_unref(cfg);
}

/* The API refers to target groups by id (the loader also takes names): each FORWARD rule of
 * <props> must name an existing target group's id. Those it names join k->scope. */
void emu_check_tg_refs(const json_t *st, const json_t *props, struct check *k)
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
        if (emu_find_id(tgs, ref, &gi)) {
            cp = emu_xasprintf("targetGroups[%zu]", gi);
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
            emu_err_add(k->err, "[%shttpRules[%zu].targetGroup] \"%s\" is the name of target "
                        "group %s; an http rule refers to a target group by its id", k->bare ?
                        "" : "properties.", i, ref, named);
        else
            emu_err_add(k->err, "[%shttpRules[%zu].targetGroup] \"%s\" is not the id of a "
                        "target group (GET /cloudapi/v6/targetgroups lists them)", k->bare ?
                        "" : "properties.", i, ref);
        cp = emu_xasprintf("%s.properties.httpRules[%zu].targetGroup", k->wprefix, i);
        json_object_set_new(k->skip, cp, json_true());
        free(cp);
    }
}

bool emu_refers_to(const json_t *fr, const char *tg_id, size_t *rule)
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
