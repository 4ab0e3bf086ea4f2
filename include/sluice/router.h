/* Rule routing: forwarding rule by listener, then http rules in IONOS order, each condition
 * evaluated against a parsed request. Pure: no I/O and no allocation per request (the caller
 * owns one struct sl_router_scratch per thread).
 *
 * Matching semantics. IONOS documents the names of conditions and operators but not these
 * details; every choice below is ours, made for what an ALB user expects, and is listed in the
 * README ("Rule semantics"). They live here and in router.c only.
 *
 *  - Order: all STATIC and REDIRECT rules in array order, then all FORWARD rules in array
 *    order; first rule whose conditions all hold wins; no conditions = always holds.
 *  - No rule matches (or the forwarding rule has no http rules): SL_ROUTER_NOMATCH_STATUS (503),
 *    as an HAProxy-based balancer without a default backend answers, and the IONOS STATIC
 *    default status.
 *  - HEADER: the name (key) is case-insensitive. Every field line with that name is a
 *    candidate, and so is their comma-joined value when the header repeats. For list headers
 *    (Connection, Upgrade, Accept, …, see router.c) each comma-separated member is a candidate
 *    too, with optional whitespace trimmed. A condition holds if any candidate satisfies the
 *    operator. Values compare case-sensitively except for headers whose tokens RFC 9110 /
 *    RFC 6455 define as case-insensitive (Connection, Upgrade, Transfer-Encoding, TE,
 *    Accept-Encoding, Content-Encoding, Sec-WebSocket-Version… see router.c). So Firefox's
 *    "Connection: keep-alive, Upgrade" satisfies Connection EQUALS upgrade, and
 *    "Upgrade: WebSocket" satisfies Upgrade EQUALS websocket.
 *  - EXISTS: HEADER/QUERY/COOKIE: the key is present (even with an empty value); PATH, METHOD:
 *    always; HOST: a non-empty Host.
 *  - PATH: the path without the query, normalised as RFC 3986 §6.2.2 allows without changing
 *    meaning (percent-encoded unreserved characters decoded, dot segments removed) and with
 *    runs of '/' merged, as nginx does. So "/%61dmin", "//admin" and "/public/../admin" are
 *    "/admin" for a rule, as such targets see them. Case-sensitive. Servers that give ';' or
 *    "%2F" a meaning of their own (Tomcat's "/..;/", encoded slashes) can see another path:
 *    guard those with MATCHES or refuse them at the target.
 *  - QUERY: parameters split on '&'; key and value percent-decoded, '+' read as a space;
 *    the key matches exactly (case-sensitive); a repeated key gives several candidates;
 *    values case-sensitive.
 *  - METHOD: exact and case-sensitive (RFC 9110 §9.1).
 *  - HOST: the Host header (or an absolute-form target's authority) without the port and
 *    without IPv6 brackets; case-insensitive (DNS names are); a trailing dot ignored.
 *  - COOKIE: every "name=value" pair of every Cookie header; the name matches exactly
 *    (case-sensitive); values case-sensitive; a repeated name gives several candidates.
 *  - SOURCE_IP: the client address is in the CIDR (IPv4-mapped IPv6 counts as IPv4).
 *  - MATCHES: PCRE2 (Perl syntax), unanchored (use ^…$ to anchor), case-sensitive unless the
 *    case-insensitive rule above applies; compiled and JIT-compiled at load.
 *  - negate inverts the condition's final result (so a negated HEADER condition holds when no
 *    candidate satisfies the operator, including when the header is absent).
 *  - REDIRECT location (see sl_router_redirect_location): a location with a scheme is used as
 *    written; one without ("www.ionos.com", the IONOS example) gets the request's scheme.
 *    When the location has no path, the request's path is appended (a host move keeps paths).
 *    dropQuery=false (the default) keeps the request's query; dropQuery=true drops it.
 *    A relative location ("/maintenance", "//cdn.example.com") is used as written, query
 *    rules as above.
 *  - Listener: an exact listenerIp:listenerPort first, then 0.0.0.0 / :: on that port; an
 *    IPv4-mapped local address (a dual-stack socket) counts as its IPv4 address.
 *  - List members are split on every comma, quoted strings included (no list header that a
 *    rule would test carries quoted commas in practice; Forwarded's for="…" would be split).
 */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/config-t.h"

#define SL_ROUTER_NOMATCH_STATUS 503

struct sl_header {
    const char *name;
    size_t name_len;
    const char *value; /* without leading/trailing whitespace */
    size_t value_len;
};

/* A parsed request as the router sees it: spans into the caller's buffer. */
struct sl_request {
    const char *method;
    size_t method_len;
    const char *path;   /* origin-form path without the query ("/" if the target had none) */
    size_t path_len;
    const char *query;  /* after '?', without '#…'; NULL when there was no '?' */
    size_t query_len;
    const char *host;   /* without port and brackets; NULL when absent */
    size_t host_len;
    const struct sl_header *headers;
    size_t n_headers;
    struct sl_addr source; /* client address */
    bool tls;              /* arrived on a TLS listener (scheme https) */
};

struct sl_router_scratch;

/* One per thread; NULL on out-of-memory. */
struct sl_router_scratch *sl_router_scratch_new(void);
void sl_router_scratch_free(struct sl_router_scratch *s);

/* HOT: the forwarding rule listening on <local>:<port>: an exact address match first, then a
 * rule on the wildcard address (0.0.0.0 or ::) of the same family and port. NULL if none. */
const struct sl_forwarding_rule *sl_router_find_frule(const struct sl_config *cfg,
                                                      const struct sl_addr *local, uint16_t port);

/* SL_COND_F_* flags for a condition of <type> on <key> (HEADER: list and case rules by header
 * name; HOST: case-insensitive). The config loader stores them in sl_condition.flags and
 * compiles MATCHES patterns caseless when SL_COND_F_NOCASE is set. */
unsigned sl_router_cond_flags(enum sl_cond_type type, const char *key, size_t key_len);

/* Whether one condition holds for <req> (negate applied). */
bool sl_router_cond_holds(const struct sl_condition *c, const struct sl_request *req,
                          struct sl_router_scratch *s);

/* Whether all conditions of <rule> hold. */
bool sl_router_rule_holds(const struct sl_http_rule *rule, const struct sl_request *req,
                          struct sl_router_scratch *s);

/* HOT: the first rule in evaluation order (fr->order) that holds; NULL when none does
 * (answer SL_ROUTER_NOMATCH_STATUS). */
const struct sl_http_rule *sl_router_match(const struct sl_forwarding_rule *fr,
                                           const struct sl_request *req,
                                           struct sl_router_scratch *s);

/* Writes the Location header value a REDIRECT <rule> sends for <req> into <buf> (NUL-terminated).
 * Returns its length, or -1 if it does not fit in <len>. */
int sl_router_redirect_location(const struct sl_http_rule *rule, const struct sl_request *req,
                                char *buf, size_t len);


#endif
