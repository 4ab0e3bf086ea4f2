/* TLS termination: the certificates of sluice.certificates, loaded and checked with the config
 * they belong to, one OpenSSL server context per certificate, SNI choosing among those of a
 * forwarding rule, session tickets under process-wide rotating keys, OCSP stapling, and the
 * glue between an SSL and the front's bufferevent. Handshake failures are counted per cause
 * and logged at most once a minute per cause. */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/config-t.h"
#include "sluice/diag.h"

struct ssl_st;
struct bufferevent;
struct event_base;

/* A certificate expiring within this many days is a warning (sluice check, reloads). */
#define SL_TLS_EXPIRY_WARN_DAYS 14

/* Loads every certificate the forwarding rules of <cfg> name (serverCertificates through
 * sluice.certificates) and makes their contexts into cfg->tls (freed with the snapshot).
 * Errors go to <d> at the entry's position: a file that cannot be read or parsed, a key that
 * does not match, an encrypted key, an expired certificate; warnings: expiry within
 * SL_TLS_EXPIRY_WARN_DAYS, not yet valid, a stale OCSP response. 0, or -1 with errors in <d>.
 * A config without TLS rules costs nothing. */
int sl_tls_attach(struct sl_config *cfg, struct sl_diags *d);
/* Whether forwarding rule <fr> of <cfg> terminates TLS (after sl_tls_attach). */
bool sl_tls_on(const struct sl_config *cfg, const struct sl_forwarding_rule *fr);

/* The client side of a TLS connection accepted on <fr>'s listener: a new SSL in the
 * accepting state inside a bufferevent on <fd> (callbacks deferred, so that the SSL can be
 * freed or handed to a tunnel from any callback). *<ssl> is ours: free it with
 * sl_tls_free_ssl after the bufferevent, or hand it over after sl_tls_detach. NULL when out of
 * memory. */
struct bufferevent *sl_tls_bev_new(struct event_base *base, int fd, const struct sl_config *cfg,
                                   const struct sl_forwarding_rule *fr, struct ssl_st **ssl);
/* Takes the events of TLS bufferevent <bev> off its fd at once, so that it can be freed while
 * its fd and SSL live on (in a tunnel, or until closed): its SSL keeps its session and socket
 * BIO (and with it kTLS, when the kernel took the keys). */
void sl_tls_detach(struct bufferevent *bev);
/* Whether <ssl> has not received a byte yet (a connection that closes so was a probe). */
bool sl_tls_untouched(const struct ssl_st *ssl);
/* Sends close_notify if the connection can take it now (never blocks). */
void sl_tls_close_notify(struct ssl_st *ssl);
void sl_tls_free_ssl(struct ssl_st *ssl);

/* Why a handshake did not complete. */
enum sl_tls_fail {
    SL_TLS_PLAIN_HTTP = 0, /* an HTTP request on a TLS port (answered with a plain 400) */
    SL_TLS_NOT_TLS,        /* bytes that are not a TLS ClientHello */
    SL_TLS_TIMEOUT,        /* no complete handshake within sluice.headerTimeout */
    SL_TLS_NO_SHARED,      /* no protocol version or cipher in common */
    SL_TLS_ALPN,           /* the client offered ALPN protocols but not http/1.1 */
    SL_TLS_CLOSED,         /* the client closed or reset during the handshake */
    SL_TLS_OTHER,          /* any other handshake error */
    SL_TLS_N_FAIL
};
const char *sl_tls_fail_name(enum sl_tls_fail why); /* "plain_http", ... for metrics */

/* After the front's bufferevent reported an error or EOF before the handshake completed:
 * the cause, from the OpenSSL errors queued on <bev> (consumed). */
enum sl_tls_fail sl_tls_classify(struct bufferevent *bev, bool eof, char *detail, size_t len);
/* Counts a failed handshake of cause <why> and logs it (with <peer> and <detail>) unless this
 * cause was logged in the last minute; the next line says how many were not. Any thread. */
void sl_tls_failed(enum sl_tls_fail why, const char *peer, const char *detail);
/* Counts a completed handshake (and whether it resumed a session). Any thread. */
void sl_tls_handshake_done(struct ssl_st *ssl);

struct sl_tls_stats {
    uint64_t handshakes, resumed;
    uint64_t sni_unknown; /* SNI named none of the rule's certificates: the first one served */
    uint64_t failed[SL_TLS_N_FAIL];
    bool ktls_send, ktls_recv; /* a connection got kTLS this way since start */
};
void sl_tls_get_stats(struct sl_tls_stats *out);

/* What the PROXY protocol v2 SSL TLVs and the access log say of a TLS connection. Kept apart
 * from the SSL because a tunnel logs at its end, after its SSL is freed: version and cipher
 * are OpenSSL's static names. */
struct sl_tls_note {
    const char *version, *cipher; /* "TLSv1.3", "TLS_AES_256_GCM_SHA384" */
    bool resumed;
    char sni[256]; /* "" if the client sent none */
};
void sl_tls_note(const struct ssl_st *ssl, struct sl_tls_note *out);

#endif
