/* The config snapshot's types: the IONOS ALB, its forwarding rules and http rules, target
 * groups, and sluice's local settings. Everything is immutable once loaded. */
#ifndef SLUICE_CONFIG_T_H
#define SLUICE_CONFIG_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/arena.h"

typedef struct pcre2_real_code_8 sl_regex; /* pcre2_code (8-bit) */

/* Where a config object stood in its source, for lint warnings and explain. */
struct sl_srcloc {
    const char *path;   /* JSON path; never NULL ("" for the root) */
    unsigned line, col; /* 0 when unknown */
};

enum sl_cond_type {
    SL_COND_HEADER = 0,
    SL_COND_PATH,
    SL_COND_QUERY,
    SL_COND_METHOD,
    SL_COND_HOST,
    SL_COND_COOKIE,
    SL_COND_SOURCE_IP,
};

enum sl_cond_op {
    SL_OP_NONE = 0, /* SOURCE_IP only: condition absent or null */
    SL_OP_EXISTS,
    SL_OP_CONTAINS,
    SL_OP_EQUALS,
    SL_OP_MATCHES,
    SL_OP_STARTS_WITH,
    SL_OP_ENDS_WITH,
};

/* Precomputed at load for the router (see router.c "matching semantics"). */
#define SL_COND_F_LIST 0x1   /* HEADER: the header is a comma-separated list; members match too */
#define SL_COND_F_NOCASE 0x2 /* values compare ignoring ASCII case */

struct sl_condition {
    enum sl_cond_type type;
    enum sl_cond_op op;
    bool negate;
    unsigned flags;  /* SL_COND_F_* */
    const char *key; /* HEADER, QUERY, COOKIE; NULL otherwise */
    size_t key_len;
    const char *value; /* NULL for EXISTS */
    size_t value_len;
    sl_regex *re;        /* MATCHES: compiled (and JIT-compiled) at load */
    struct sl_cidr cidr; /* SOURCE_IP */
    struct sl_srcloc loc;
};

enum sl_rule_type {
    SL_RULE_FORWARD = 0,
    SL_RULE_STATIC,
    SL_RULE_REDIRECT,
};

struct sl_target_group;

struct sl_http_rule {
    const char *name;
    enum sl_rule_type type;
    unsigned index; /* position in httpRules */
    /* FORWARD */
    const char *target_group_ref;        /* as written */
    const struct sl_target_group *group; /* resolved */
    /* STATIC and REDIRECT */
    int status_code;              /* defaults: STATIC 503, REDIRECT 301 */
    const char *response_message; /* STATIC */
    const char *content_type;     /* STATIC; NULL if absent */
    const char *location;         /* REDIRECT */
    bool drop_query;              /* REDIRECT */
    const struct sl_condition *conds;
    size_t n_conds;
    struct sl_srcloc loc;
};

struct sl_forwarding_rule {
    const char *id; /* may be NULL in a request-body style file */
    const char *name;
    const char *listener_ip;                /* as written */
    struct sl_addr listen;                  /* after the address map */
    uint16_t port;                          /* after the address map */
    uint16_t port_orig;                     /* as written */
    uint32_t client_timeout_ms;             /* default 50000 */
    const char *const *server_certificates; /* ids or names */
    size_t n_server_certificates;
    const struct sl_http_rule *rules; /* array order */
    size_t n_rules;
    /* IONOS evaluation order: every STATIC/REDIRECT rule, then every FORWARD rule */
    const struct sl_http_rule *const *order;
    struct sl_srcloc loc;
    struct sl_srcloc listener_ip_loc, listener_port_loc; /* for warnings about them */
};

enum sl_algorithm {
    SL_ALG_ROUND_ROBIN = 0,
    SL_ALG_LEAST_CONNECTION,
    SL_ALG_RANDOM,
    SL_ALG_SOURCE_IP,
};

enum sl_proxy_protocol {
    SL_PROXY_NONE = 0,
    SL_PROXY_V1,
    SL_PROXY_V2,
    SL_PROXY_V2SSL,
};

struct sl_target {
    const char *ip;      /* as written */
    struct sl_addr addr; /* after the address map */
    uint16_t port;       /* after the address map */
    uint16_t port_orig;
    uint16_t weight; /* 0..256, default 1 */
    enum sl_proxy_protocol proxy_protocol;
    bool health_check_enabled; /* default true */
    bool maintenance_enabled;  /* default false */
    struct sl_srcloc loc;
};

struct sl_health_check {
    uint32_t check_interval_ms; /* default 2000 */
    uint32_t check_timeout_ms;  /* default 2000 (ionosctl; IONOS has none), capped by interval */
    uint32_t retries;           /* default 3 */
};

enum sl_http_method {
    SL_METHOD_GET = 0,
    SL_METHOD_HEAD,
    SL_METHOD_PUT,
    SL_METHOD_POST,
    SL_METHOD_TRACE,
    SL_METHOD_PATCH,
    SL_METHOD_OPTIONS,
};

enum sl_match_type {
    SL_MATCH_STATUS_CODE = 0,
    SL_MATCH_RESPONSE_BODY,
};

struct sl_http_health_check {
    const char *path;           /* default "/" */
    enum sl_http_method method; /* default GET */
    enum sl_match_type match_type;
    const char *response;
    bool regex;
    bool negate;
    sl_regex *re; /* when regex */
    struct sl_srcloc loc;
};

enum sl_protocol_version {
    SL_HTTP1 = 0,
    SL_HTTP2,
};

struct sl_target_group {
    const char *id; /* may be NULL in a request-body style file */
    const char *name;
    enum sl_algorithm algorithm;
    enum sl_protocol_version protocol_version;
    const struct sl_target *targets;
    size_t n_targets;
    struct sl_health_check health;
    const struct sl_http_health_check *http_check; /* NULL when absent */
    struct sl_srcloc loc;
    struct sl_srcloc targets_loc; /* of properties.targets (the group's loc when absent) */
};

struct sl_alb {
    const char *id;
    const char *name;
    int listener_lan, target_lan;
    const char *const *ips;         /* as written */
    const struct sl_addr *ip_addrs; /* after the address map */
    size_t n_ips;
    const char *const *lb_private_ips; /* as written, with mask */
    const struct sl_cidr *lb_private;  /* after the address map */
    size_t n_lb_private_ips;
    bool central_logging;
    const char *logging_format;
    bool present; /* the file had an applicationLoadBalancer */
    struct sl_srcloc loc;
};

/* One address-map entry: FROM[:port] -> TO[:port]; port 0 = any / unchanged. */
struct sl_map_entry {
    struct sl_addr from, to;
    uint16_t from_port, to_port;
};

/* One sluice.certificates entry. File names are as written, or joined to the config file's
 * directory when relative (sl_load_opts.base_dir). */
struct sl_certificate_ref {
    const char *ref;   /* certificate id or name */
    const char *cert;  /* PEM file: the certificate, optionally followed by its chain */
    const char *key;   /* PEM file */
    const char *chain; /* optional PEM file of intermediates */
    const char *ocsp;  /* optional DER OCSP response to staple; NULL: <cert>.ocsp if present */
    struct sl_srcloc loc, cert_loc, key_loc, chain_loc, ocsp_loc;
};

struct sl_local {
    unsigned threads;               /* 0 = CPU count */
    const char *admin;              /* "IP:PORT" or "off"; NULL = default (127.0.0.1:9900) */
    const struct sl_map_entry *map; /* sluice.addressMap, then --map (which wins) */
    size_t n_map;
    size_t n_map_file; /* map[0..n_map_file) are the file's, the rest --map */
    const struct sl_certificate_ref *certificates;
    size_t n_certificates;
    const char *sync_datacenter_id;
    const char *sync_alb_id;
    unsigned sync_interval_s;    /* default 10 */
    const char *sync_api_url;    /* NULL = $IONOS_API_URL or the IONOS default */
    const char *sync_ca_file;    /* NULL = the system's CAs */
    const char *sync_cache_file; /* NULL = ~/.cache/sluice/sync-DC-ALB.json */
    uint32_t tunnel_timeout_ms;  /* 0 = clientTimeout */
    uint32_t drain_timeout_ms;   /* SIGTERM grace for open tunnels; default 30000, 0 = none */
    bool drain_timeout_set;      /* written in the file: tunnels to a target a reload removes
                                  * then close after it too (else they finish on their own) */
    uint32_t header_timeout_ms;  /* default 10000 */
    bool close_on_target_down;   /* default false */
    bool splice;                 /* default false: tunnels may splice large streams */
    uint32_t connect_timeout_ms; /* default 5000 */
    const char *access_log;      /* "-" = stdout (default), "off" = none, else a file */
    uint32_t pipe_size;          /* splice pipe size in bytes; default 256 KiB, 0 = kernel's */
    uint32_t busy_poll_us;       /* default 0: a worker may sleep as soon as nothing is ready */
};

/* sluice.busyPoll's upper bound (µs): a spin that long already costs a CPU at a few
 * wakeups a second. */
#define SL_BUSY_POLL_MAX_US 100000

struct sl_config {
    atomic_uint refcnt;
    char *origin; /* file name or source description */
    struct sl_alb alb;
    const struct sl_forwarding_rule *frules;
    size_t n_frules;
    const struct sl_target_group *tgroups;
    size_t n_tgroups;
    struct sl_local local;
    struct sl_arena arena; /* owns every string and array above */
    sl_regex **regexes;    /* every compiled regex, freed with the snapshot */
    size_t n_regexes;
    /* The loaded certificates and TLS contexts (tls.h), made after the load by those who
     * serve or check TLS; freed with the snapshot by <tls_free>. */
    void *tls;
    void (*tls_free)(void *tls);
};

#endif
