/* Config loading: IONOS JSON (file, buffer or jansson tree) into an immutable, refcounted
 * snapshot, with every error reported as file:line:col: JSON.path: message. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <jansson.h>

#include "sluice/config-t.h"
#include "sluice/diag.h"
#include "sluice/json.h"

struct sl_load_opts {
    const struct sl_map_entry *map; /* --map entries; override sluice.addressMap */
    size_t n_map;
    /* Relative file names in sluice (certificates) are joined to this directory; NULL: the
     * config file's own directory (sl_config_load_file), else the current one. */
    const char *base_dir;
};

/* Each returns a snapshot holding one reference, or NULL with the errors in <d>.
 * Warnings from lint are not added here (see sl_config_lint). */
struct sl_config *sl_config_load_file(const char *file, const struct sl_load_opts *o,
                                      struct sl_diags *d);
struct sl_config *sl_config_load_buffer(const char *origin, const char *buf, size_t len,
                                        const struct sl_load_opts *o, struct sl_diags *d);
/* <pos> may be NULL (a tree from the API has no positions). */
struct sl_config *sl_config_load_json(const char *origin, json_t *root, const struct sl_jpos *pos,
                                      const struct sl_load_opts *o, struct sl_diags *d);

/* Only ref a snapshot you already hold a reference to. */
struct sl_config *sl_config_ref(struct sl_config *c);
void sl_config_unref(struct sl_config *c);

/* Parses "FROM=TO" as given to --map (each side IP or IP:PORT, IPv6 in brackets with a port). */
int sl_map_entry_parse(const char *s, struct sl_map_entry *out);

/* Adds lint warnings for a valid snapshot to <d> (level SL_DIAG_WARNING), each naming the JSON
 * path of what it is about. Returns the number added. */
size_t sl_config_lint(const struct sl_config *c, struct sl_diags *d);

/* Names for output, from the same tables the loader parses with: "HEADER", "EQUALS",
 * "FORWARD", "ROUND_ROBIN", "v2"; sl_cond_op_name(SL_OP_NONE) is "NONE"; "?" if out of range. */
const char *sl_cond_type_name(enum sl_cond_type t);
const char *sl_cond_op_name(enum sl_cond_op op);
const char *sl_rule_type_name(enum sl_rule_type t);
const char *sl_algorithm_name(enum sl_algorithm a);
const char *sl_proxy_protocol_name(enum sl_proxy_protocol p);
const char *sl_http_method_name(enum sl_http_method m);   /* httpHealthCheck.method */
const char *sl_match_type_name(enum sl_match_type t);     /* httpHealthCheck.matchType */

#endif
