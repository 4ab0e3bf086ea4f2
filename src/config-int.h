/* config internals shared by its two files: the loading context, JSON path bookkeeping and the
 * field readers (config_read.c), used by the resource loaders (config.c). Not a public API. */
#ifndef SLUICE_CONFIG_INT_H
#define SLUICE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sluice/config.h"

#define PATH_DEPTH 64
#define INT32_MAXV 2147483647LL

struct ld {
    struct sl_config *cfg;
    struct sl_arena *a;
    struct sl_diags *d;
    const struct sl_jpos *pos;
    struct sl_jpath path;
    size_t stack[PATH_DEPTH]; /* path lengths, for locating a missing field at its parent */
    int depth;
    size_t n_regex_cap;
    const struct sl_load_opts *opts;
    /* target groups while loading: names and ids for reference errors */
    struct sl_target_group *tg;
    size_t n_tg;
};

/* Readers push the key on the path, report at it, and pop. They return 1 when the field was
 * read, 0 when absent (and not required), -1 after reporting an error. A missing field is
 * reported at the object that lacks it. */
void cfg_push_key(struct ld *ld, const char *key);
void cfg_push_index(struct ld *ld, size_t i);
void cfg_pop(struct ld *ld);
void SL_PRINTF(3, 4) cfg_diag(struct ld *ld, enum sl_diag_level lv, const char *fmt, ...);
void cfg_bad_type(struct ld *ld, const json_t *v, const char *want);
json_t *cfg_member(const json_t *obj, const char *key);
int cfg_get_str(struct ld *ld, const json_t *obj, const char *key, bool required,
                const char *what, const char **out);
int cfg_get_int(struct ld *ld, const json_t *obj, const char *key, bool required, long long min,
                long long max, const char *unit, long long *out);
int cfg_get_bool(struct ld *ld, const json_t *obj, const char *key, bool *out);
int cfg_get_enum(struct ld *ld, const json_t *obj, const char *key, bool required,
                 const char *const *names, size_t n, int *out);
json_t *cfg_get_obj(struct ld *ld, const json_t *obj, const char *key, bool required,
                    const char *what);
json_t *cfg_get_arr(struct ld *ld, const json_t *obj, const char *key);
struct sl_srcloc cfg_here(struct ld *ld);
struct sl_srcloc cfg_here_key(struct ld *ld, const char *key);
sl_regex *cfg_compile_at(struct ld *ld, const char *key, const char *pat, bool caseless);
int cfg_parse_map_side(const char *s, struct sl_addr *a, uint16_t *port);
void cfg_map_addr(const struct sl_local *l, struct sl_addr *a, uint16_t *port);

#define err(ld, ...) cfg_diag((ld), SL_DIAG_ERROR, __VA_ARGS__)
#define warn(ld, ...) cfg_diag((ld), SL_DIAG_WARNING, __VA_ARGS__)

#endif
