/* config field readers: the loading context's JSON path, diagnostics located at it (or at the
 * nearest ancestor with a position), typed readers for every field kind, regex compilation and
 * the address map. config.c walks the IONOS resources with them. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config-int.h"
#include "sluice/regex.h"

/* ---- path and diagnostics -------------------------------------------------------------- */

void cfg_push_key(struct ld *ld, const char *key)
{
    size_t old = sl_jpath_push_key(&ld->path, key);

    if (ld->depth < PATH_DEPTH)
        ld->stack[ld->depth] = old;
    ld->depth++;
}

void cfg_push_index(struct ld *ld, size_t i)
{
    size_t old = sl_jpath_push_index(&ld->path, i);

    if (ld->depth < PATH_DEPTH)
        ld->stack[ld->depth] = old;
    ld->depth++;
}

void cfg_pop(struct ld *ld)
{
    ld->depth--;
    if (ld->depth < PATH_DEPTH)
        sl_jpath_pop(&ld->path, ld->stack[ld->depth]);
}

/* Position of the current path, or of its nearest ancestor that has one (a missing field is
 * reported at the object that lacks it). */
static void locate(const struct ld *ld, unsigned *line, unsigned *col)
{
    char buf[SL_JPATH_MAX];
    int i;

    *line = *col = 0;
    if (!ld->pos)
        return;
    if (sl_jpos_get(ld->pos, ld->path.buf, line, col))
        return;
    for (i = (ld->depth < PATH_DEPTH ? ld->depth : PATH_DEPTH) - 1; i >= 0; i--) {
        size_t n = ld->stack[i];

        memcpy(buf, ld->path.buf, n);
        buf[n] = '\0';
        if (sl_jpos_get(ld->pos, buf, line, col))
            return;
    }
}

void SL_PRINTF(3, 4) cfg_diag(struct ld *ld, enum sl_diag_level lv, const char *fmt, ...)
{
    unsigned line, col;
    va_list ap;

    locate(ld, &line, &col);
    va_start(ap, fmt);
    sl_diag_vadd(ld->d, lv, line, col, ld->path.buf, fmt, ap);
    va_end(ap);
}


static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Compact JSON text of <v>, cut to fit a one-line message. */
static const char *jshow(const json_t *v, char *buf, size_t n)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

    if (!s) {
        snprintf(buf, n, "(%s)", jtype(v));
        return buf;
    }
    if (strlen(s) >= n && n > 4)
        snprintf(buf, n, "%.*s...", (int)(n - 4), s);
    else
        snprintf(buf, n, "%s", s);
    free(s);
    return buf;
}

void cfg_bad_type(struct ld *ld, const json_t *v, const char *want)
{
    char b[80];

    err(ld, "must be %s, not %s (%s)", want, jtype(v), jshow(v, b, sizeof(b)));
}

/* ---- field readers: each pushes the key, reports at its path and pops ------------------ */

/* Returns the member, or NULL when absent or null (null reads as absent: the API sends it). */
json_t *cfg_member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return v && !json_is_null(v) ? v : NULL;
}

static void cfg_missing(struct ld *ld, const char *key, const char *what)
{
    cfg_push_key(ld, key);
    err(ld, "missing; required: %s", what);
    cfg_pop(ld);
}

/* 1 = read, 0 = absent (and not required), -1 = error reported. */
int cfg_get_str(struct ld *ld, const json_t *obj, const char *key, bool required,
                   const char *what, const char **out)
{
    json_t *v = cfg_member(obj, key);
    int rc = 1;

    if (!v) {
        if (required)
            cfg_missing(ld, key, what);
        return required ? -1 : 0;
    }
    cfg_push_key(ld, key);
    if (!json_is_string(v)) {
        char want[200];

        snprintf(want, sizeof(want), "a string (%s)", what);
        cfg_bad_type(ld, v, want);
        rc = -1;
    } else if (required && json_string_length(v) == 0) {
        err(ld, "must not be empty; required: %s", what);
        rc = -1;
    } else {
        *out = sl_arena_strndup(ld->a, json_string_value(v), json_string_length(v));
    }
    cfg_pop(ld);
    return rc;
}

int cfg_get_int(struct ld *ld, const json_t *obj, const char *key, bool required,
                   long long min, long long max, const char *unit, long long *out)
{
    json_t *v = cfg_member(obj, key);
    int rc = 1;
    char b[80];

    if (!v) {
        if (required) {
            cfg_push_key(ld, key);
            err(ld, "missing; required: an integer from %lld to %lld%s%s", min, max,
                unit ? " " : "", unit ? unit : "");
            cfg_pop(ld);
        }
        return required ? -1 : 0;
    }
    cfg_push_key(ld, key);
    if (json_is_string(v) && json_string_length(v) > 0 &&
        strspn(json_string_value(v), "0123456789-") == json_string_length(v) &&
        strpbrk(json_string_value(v), "0123456789")) {
        err(ld, "must be an integer, not a string (%s); write it without quotes",
            jshow(v, b, sizeof(b)));
        rc = -1;
    } else if (!json_is_integer(v)) {
        cfg_bad_type(ld, v, "an integer");
        rc = -1;
    } else if (json_integer_value(v) < min || json_integer_value(v) > max) {
        err(ld, "%lld is out of range; allowed: %lld to %lld%s%s", (long long)json_integer_value(v),
            min, max, unit ? " " : "", unit ? unit : "");
        rc = -1;
    } else {
        *out = json_integer_value(v);
    }
    cfg_pop(ld);
    return rc;
}

int cfg_get_bool(struct ld *ld, const json_t *obj, const char *key, bool *out)
{
    json_t *v = cfg_member(obj, key);

    if (!v)
        return 0;
    cfg_push_key(ld, key);
    if (!json_is_boolean(v)) {
        if (json_is_string(v) && (!strcmp(json_string_value(v), "true") ||
                                  !strcmp(json_string_value(v), "false")))
            err(ld, "must be a boolean, not the string \"%s\"; write it without quotes",
                json_string_value(v));
        else
            cfg_bad_type(ld, v, "true or false");
        cfg_pop(ld);
        return -1;
    }
    *out = json_is_true(v);
    cfg_pop(ld);
    return 1;
}

/* Enum values are case-sensitive, as the API's are; a case slip gets a "did you mean". */
int cfg_get_enum(struct ld *ld, const json_t *obj, const char *key, bool required,
                    const char *const *names, size_t n, int *out)
{
    char allowed[256] = "";
    const char *s;
    json_t *v = cfg_member(obj, key);
    size_t i, off = 0;

    for (i = 0; i < n; i++)
        off += (size_t)snprintf(allowed + off, sizeof(allowed) - off, "%s%s", i ? ", " : "",
                                names[i]);
    if (!v) {
        if (required) {
            cfg_push_key(ld, key);
            err(ld, "missing; required: one of %s", allowed);
            cfg_pop(ld);
        }
        return required ? -1 : 0;
    }
    cfg_push_key(ld, key);
    if (!json_is_string(v)) {
        char what[300];

        snprintf(what, sizeof(what), "one of %s", allowed);
        cfg_bad_type(ld, v, what);
        cfg_pop(ld);
        return -1;
    }
    s = json_string_value(v);
    for (i = 0; i < n; i++) {
        if (!strcmp(s, names[i])) {
            *out = (int)i;
            cfg_pop(ld);
            return 1;
        }
    }
    for (i = 0; i < n; i++)
        if (!strcasecmp(s, names[i]))
            break;
    if (i < n)
        err(ld, "\"%s\" is not one of %s (values are case-sensitive: did you mean \"%s\"?)", s,
            allowed, names[i]);
    else
        err(ld, "\"%s\" is not one of %s", s, allowed);
    cfg_pop(ld);
    return -1;
}

json_t *cfg_get_obj(struct ld *ld, const json_t *obj, const char *key, bool required,
                       const char *what)
{
    json_t *v = cfg_member(obj, key);

    if (!v) {
        if (required)
            cfg_missing(ld, key, what);
        return NULL;
    }
    if (!json_is_object(v)) {
        cfg_push_key(ld, key);
        cfg_bad_type(ld, v, "an object");
        cfg_pop(ld);
        return NULL;
    }
    return v;
}

json_t *cfg_get_arr(struct ld *ld, const json_t *obj, const char *key)
{
    json_t *v = cfg_member(obj, key);

    if (!v)
        return NULL;
    if (!json_is_array(v)) {
        cfg_push_key(ld, key);
        cfg_bad_type(ld, v, "an array");
        cfg_pop(ld);
        return NULL;
    }
    return v;
}

struct sl_srcloc cfg_here(struct ld *ld)
{
    struct sl_srcloc l = { .path = sl_arena_strdup(ld->a, ld->path.buf) };

    locate(ld, &l.line, &l.col);
    return l;
}

/* Where member <key> of the current object stands (the object itself when it is absent). */
struct sl_srcloc cfg_here_key(struct ld *ld, const char *key)
{
    struct sl_srcloc l;

    cfg_push_key(ld, key);
    l = cfg_here(ld);
    cfg_pop(ld);
    return l;
}

static void keep_regex(struct ld *ld, sl_regex *re)
{
    struct sl_config *c = ld->cfg;

    if (c->n_regexes == ld->n_regex_cap) {
        ld->n_regex_cap = ld->n_regex_cap ? 2 * ld->n_regex_cap : 8;
        c->regexes = realloc(c->regexes, ld->n_regex_cap * sizeof(*c->regexes));
        if (!c->regexes)
            abort();
    }
    c->regexes[c->n_regexes++] = re;
}

/* Compiles a regex found at key <key> of the current object; reports PCRE2's error. */
sl_regex *cfg_compile_at(struct ld *ld, const char *key, const char *pat, bool caseless)
{
    char msg[160];
    size_t off = 0;
    sl_regex *re = sl_regex_compile(pat, strlen(pat), caseless, msg, sizeof(msg), &off);

    if (!re) {
        cfg_push_key(ld, key);
        err(ld, "\"%s\" is not a valid PCRE2 regular expression: %s at offset %zu", pat, msg,
            off);
        cfg_pop(ld);
        return NULL;
    }
    keep_regex(ld, re);
    return re;
}

/* ---- address map ----------------------------------------------------------------------- */

int cfg_parse_map_side(const char *s, struct sl_addr *a, uint16_t *port)
{
    *port = 0;
    if (sl_addr_parse(s, a) == 0)
        return 0;
    return sl_addr_parse_port(s, a, port);
}

int sl_map_entry_parse(const char *s, struct sl_map_entry *out)
{
    char buf[160];
    const char *eq = strchr(s, '=');

    if (!eq || (size_t)(eq - s) >= sizeof(buf) || strlen(eq + 1) >= sizeof(buf))
        return -1;
    memcpy(buf, s, (size_t)(eq - s));
    buf[eq - s] = '\0';
    memset(out, 0, sizeof(*out));
    if (cfg_parse_map_side(buf, &out->from, &out->from_port) == -1 ||
        cfg_parse_map_side(eq + 1, &out->to, &out->to_port) == -1 ||
        out->from.family != out->to.family) /* an IPv4 listener cannot become IPv6 */
        return -1;
    return 0;
}

/* Maps <a>:<port> in place. Any --map entry wins over the file's addressMap (they come after
 * l->n_map_file); within one source an entry for the exact ip:port wins over one for the ip. */
void cfg_map_addr(const struct sl_local *l, struct sl_addr *a, uint16_t *port)
{
    const struct sl_map_entry *best = NULL;
    int best_rank = 0;
    size_t i;

    for (i = 0; i < l->n_map; i++) {
        const struct sl_map_entry *m = &l->map[i];
        int rank;

        if (!sl_addr_equal(&m->from, a) || (m->from_port && m->from_port != *port))
            continue;
        rank = (i >= l->n_map_file ? 2 : 0) + (m->from_port ? 1 : 0) + 1;
        if (rank >= best_rank) {
            best = m;
            best_rank = rank;
        }
    }
    if (!best)
        return;
    *a = best->to;
    if (best->to_port)
        *port = best->to_port;
}
