/* emu internals shared by its two files: the HTTP side (emu.c: routing, request bodies,
 * rendering, errors, the writes) and the state it serves (emu_state.c: the jansson model and
 * its file, ids and dates, fields and defaults, validation with the loader `sluice check`
 * uses). emu_state.c has no libevent in it: a request reaches it only as strings for log
 * lines. Not a public API. */
#ifndef SLUICE_EMU_INT_H
#define SLUICE_EMU_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include <jansson.h>

#include "sluice/common.h"
#include "sluice/json.h"

#define MAX_REQUESTS 500 /* request records kept for /requests; the oldest go first */
#define EMU_USER "emu@sluice.invalid"
#define EMU_USER_ID "00000000-0000-4000-8000-000000000000"

enum kind { K_ALB = 0, K_FR, K_TG, K_REQ };

/* Whose fields an object of a request body may have: a resource's properties, or an object
 * nested in them. */
enum fkind { FK_NONE = 0, FK_ALB, FK_FR, FK_RULE, FK_COND, FK_TG, FK_TARGET, FK_HC, FK_HHC };

/* An error answer in the API's shape while it is built: validation adds to it, emu.c sends
 * it. */
struct apierr {
    int status;
    const char *code;
    json_t *msgs;
};

/* One write's validation: the candidate document, and where its diagnostics go. */
struct check {
    struct apierr *err;
    char wprefix[64]; /* the written resource in the candidate: "forwardingRules[2]" */
    bool bare;        /* PATCH: body paths are relative to the properties object */
    const json_t *doc;
    json_t *skip;     /* candidate paths already reported (an object used as a set) */
    json_t *scope;    /* more resources whose lint warnings concern this write (a set) */
    const char *method, *uri; /* the request, for the lint log lines */
};

static inline json_t *xj(json_t *v)
{
    if (!v)
        abort(); /* jansson fails only on out-of-memory (or a bug in a pack format) */
    return v;
}

static inline const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* emu.c */
char *SL_PRINTF(1, 2) emu_xasprintf(const char *fmt, ...); /* aborts when out of memory */
void SL_PRINTF(2, 3) emu_err_add(struct apierr *x, const char *fmt, ...);

/* emu_state.c: the model */
void emu_uuid4(char out[37]);
json_t *emu_find_id(const json_t *arr, const char *id, size_t *idx);
json_t *emu_dc_albs(json_t *st, const char *dc, bool create);
int emu_state_load(const char *path, json_t **state);
int emu_state_save(const char *path, const json_t *st, char *err, size_t n);
void emu_add_request(json_t *st, char rid[37], const char *method, const char *url,
                     const char *id, const char *type, const char *path);
void emu_filter(json_t *o, enum fkind fk, struct sl_jpath *p, json_t *ignored);
void emu_stamp(enum kind k, json_t *res, bool created);

/* emu_state.c: validation by the loader `sluice check` uses; each error found becomes one
 * message of k->err. */
json_t *emu_doc_entry(const json_t *r);
json_t *emu_alb_doc(const json_t *st, const json_t *alb);
void emu_check_doc(json_t *doc, struct check *k, bool lint);
void emu_check_tg_refs(const json_t *st, const json_t *props, struct check *k);
bool emu_refers_to(const json_t *fr, const char *tg_id, size_t *rule);

#endif
