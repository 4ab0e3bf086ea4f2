/* TLS termination with OpenSSL 3 (see tls.h). Contexts belong to a config snapshot: a reload
 * loads the files again and new connections get the new contexts, while connections and
 * tunnels keep the SSL they have (it holds its own reference on its context). Session-ticket
 * keys are process-wide instead, so a client resumes across reloads. */
#include "sluice/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sluice/common.h"
#include "sluice/log.h"

/* Mozilla's "intermediate" TLS 1.2 suites without DHE (TLS 1.3 keeps OpenSSL's defaults). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* A ticket key encrypts new tickets for this long, then only decrypts (and asks for a new
 * ticket) for TICKET_KEYS - 1 more periods: a ticket resumes for 2 to 3 hours. */
#define TICKET_PERIOD_S 3600
#define TICKET_KEYS 3
#define SESSION_TIMEOUT_S (2 * TICKET_PERIOD_S)
#define LOG_EVERY_MS 60000
#define OCSP_MAX (64 * 1024)

struct tls_cert {
    const struct sl_certificate_ref *ref;
    SSL_CTX *ctx;
    unsigned char *ocsp; /* DER response to staple, or NULL */
    long ocsp_len;
};

/* The certificates of one forwarding rule, in serverCertificates order. */
struct tls_rule {
    struct tls_cert **certs;
    size_t n;
};

struct sl_tls {
    struct tls_cert *certs; /* one per sluice.certificates entry in use */
    size_t n_certs;
    struct tls_rule *rules; /* indexed like cfg->frules */
    size_t n_rules;
};

static int rule_idx = -1; /* SSL ex_data: the struct tls_rule a connection came in on */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static struct {
    atomic_uint_fast64_t handshakes, resumed, sni_unknown;
    atomic_uint_fast64_t failed[SL_TLS_N_FAIL];
    /* log slots: one per failure cause, then the unknown SNI */
    atomic_uint_fast64_t logged_ms[SL_TLS_N_FAIL + 1], logged_n[SL_TLS_N_FAIL + 1];
    atomic_bool ktls_send, ktls_recv;
} stats;

static const char *const fail_names[SL_TLS_N_FAIL] = {
    "plain_http", "not_tls", "timeout", "no_shared_cipher", "alpn", "closed", "other",
};
static const char *const fail_text[SL_TLS_N_FAIL] = {
    "plain HTTP sent to a TLS port",
    "not a TLS handshake",
    "handshake timed out (sluice.headerTimeout)",
    "no TLS version or cipher in common",
    "the client does not speak http/1.1 (ALPN)",
    "client closed during the handshake",
    "handshake failed",
};

static void init_once(void)
{
    rule_idx = SSL_get_ex_new_index(0, "sluice rule", NULL, NULL, NULL);
}

/* ---- session tickets ---- */

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    uint64_t period; /* the TICKET_PERIOD_S slot it was made for; 0 = unset */
};

static pthread_mutex_t tk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key tk[TICKET_KEYS]; /* [0] encrypts, newest first */

/* Under tk_lock: makes [0] the key of the current period, shifting the older ones down. */
static int ticket_rotate(void)
{
    uint64_t now = (uint64_t)time(NULL) / TICKET_PERIOD_S;
    struct ticket_key k;

    if (tk[0].period == now)
        return 0;
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return -1;
    k.period = now;
    memmove(&tk[1], &tk[0], sizeof(tk[0]) * (TICKET_KEYS - 1));
    tk[0] = k;
    return 0;
}

/* OpenSSL's ticket callback: 1 = use this key, 2 = it decrypts but issue a new ticket, 0 = no
 * such key (a full handshake), -1 = error. */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    struct ticket_key k;
    int rc = 0, i;

    pthread_mutex_lock(&tk_lock);
    if (enc) {
        if (ticket_rotate() == 0) {
            k = tk[0];
            rc = 1;
        }
    } else {
        uint64_t oldest = (uint64_t)time(NULL) / TICKET_PERIOD_S - (TICKET_KEYS - 1);

        for (i = 0; i < TICKET_KEYS; i++)
            if (tk[i].period && tk[i].period >= oldest && !memcmp(tk[i].name, name, 16)) {
                k = tk[i];
                /* 2: issue a new ticket. TLS 1.3 tickets are single-use (RFC 8446 8.1), and
                 * with 1 OpenSSL sends none after a resumption: a client would resume twice
                 * on the two tickets of a full handshake, then need a full one again. */
                rc = i == 0 && k.period == (uint64_t)time(NULL) / TICKET_PERIOD_S &&
                             SSL_version(s) != TLS1_3_VERSION
                         ? 1
                         : 2;
                break;
            }
    }
    pthread_mutex_unlock(&tk_lock);
    if (rc == 0)
        return enc ? -1 : 0;
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && EVP_MAC_init(hctx, k.hmac, sizeof(k.hmac), params) != 1)
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- per-handshake callbacks ---- */

static bool log_slot(int slot, uint64_t *missed);

/* SNI: the first certificate of the rule that covers the name (OpenSSL's host matching,
 * wildcards included); none does: the first one, counted. */
static int sni_cb(SSL *s, int *alert, void *arg)
{
    const struct tls_rule *r = SSL_get_ex_data(s, rule_idx);
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    uint64_t missed;

    (void)alert;
    (void)arg;
    if (!r || !name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < r->n; i++) {
        X509 *x = SSL_CTX_get0_certificate(r->certs[i]->ctx);

        if (x && X509_check_host(x, name, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(s, r->certs[i]->ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    atomic_fetch_add_explicit(&stats.sni_unknown, 1, memory_order_relaxed);
    if (log_slot(SL_TLS_N_FAIL, &missed))
        sl_log(SL_LOG_INFO,
               "tls: SNI \"%.100s\" matches no certificate of its listener: served "
               "the first (\"%s\"); logged once a minute: %llu more since the last line",
               name, r->certs[0]->ref->ref, (unsigned long long)missed);
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";

    (void)s;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
}

static int ocsp_cb(SSL *s, void *arg)
{
    const struct tls_cert *c = arg;
    unsigned char *copy;

    /* arg is the context's own certificate: after an SNI switch, that of the new one */
    if (!c || !c->ocsp || !(copy = OPENSSL_memdup(c->ocsp, (size_t)c->ocsp_len)))
        return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(s, copy, c->ocsp_len);
    return SSL_TLSEXT_ERR_OK;
}

static int no_password(char *buf, int size, int rw, void *u)
{
    (void)buf;
    (void)size;
    (void)rw;
    (void)u;
    return 0; /* never prompt on a terminal: an encrypted key is a config error */
}

/* ---- loading ---- */

static void diag_at(struct sl_diags *d, enum sl_diag_level lv, const struct sl_srcloc *at,
                    const char *fmt, ...) SL_PRINTF(4, 5);
static void diag_at(struct sl_diags *d, enum sl_diag_level lv, const struct sl_srcloc *at,
                    const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sl_diag_vadd(d, lv, at->line, at->col, at->path, fmt, ap);
    va_end(ap);
}

/* The last OpenSSL error as text, queue cleared; <fallback> if there is none. */
static const char *ossl_err(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();

    if (!e)
        snprintf(buf, len, "%s", fallback);
    else
        snprintf(buf, len, "%s",
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown OpenSSL error");
    ERR_clear_error();
    return buf;
}

/* Whether <file> can be opened; if not, the error names it. */
static bool readable(struct sl_diags *d, const struct sl_srcloc *at, const char *what,
                     const char *file)
{
    FILE *f = fopen(file, "rb");

    if (f) {
        fclose(f);
        return true;
    }
    diag_at(d, SL_DIAG_ERROR, at, "cannot open the %s \"%s\": %s", what, file, strerror(errno));
    return false;
}

static void fmt_time(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) == 1)
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
    else
        snprintf(buf, len, "(unreadable date)");
}

/* Expired: error. Within SL_TLS_EXPIRY_WARN_DAYS, or not valid yet: warning. */
static int check_dates(struct sl_diags *d, const struct sl_certificate_ref *r, X509 *x)
{
    time_t now = time(NULL), soon = now + SL_TLS_EXPIRY_WARN_DAYS * 86400;
    char when[64];

    fmt_time(X509_get0_notAfter(x), when, sizeof(when));
    if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0) {
        diag_at(d, SL_DIAG_ERROR, &r->cert_loc, "certificate \"%s\" (%s) expired on %s", r->ref,
                r->cert, when);
        return -1;
    }
    if (X509_cmp_time(X509_get0_notAfter(x), &soon) < 0)
        diag_at(d, SL_DIAG_WARNING, &r->cert_loc,
                "certificate \"%s\" (%s) expires on %s, within %d days", r->ref, r->cert, when,
                SL_TLS_EXPIRY_WARN_DAYS);
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0) {
        fmt_time(X509_get0_notBefore(x), when, sizeof(when));
        diag_at(d, SL_DIAG_WARNING, &r->cert_loc,
                "certificate \"%s\" (%s) is not valid before %s: clients will refuse it", r->ref,
                r->cert, when);
    }
    return 0;
}

/* Whether <basic> answers for <ctx>'s certificate. Decidable only when its issuer is in the
 * chain; without it, assumed. */
static bool ocsp_names_leaf(SSL_CTX *ctx, OCSP_BASICRESP *basic)
{
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    STACK_OF(X509) *chain = NULL;
    bool ok = true;

    SSL_CTX_get0_chain_certs(ctx, &chain);
    for (int i = 0; leaf && i < sk_X509_num(chain); i++) {
        X509 *ca = sk_X509_value(chain, i);
        OCSP_CERTID *id;

        if (X509_check_issued(ca, leaf) != X509_V_OK)
            continue;
        id = OCSP_cert_to_id(NULL, leaf, ca);
        ok = id && OCSP_resp_find(basic, id, -1) >= 0;
        OCSP_CERTID_free(id);
        break;
    }
    return ok;
}

/* The OCSP response to staple: r->ocsp, else <cert>.ocsp when it exists (HAProxy's naming). A
 * response that is not "successful" or is past its nextUpdate is not stapled (warning). */
static int load_ocsp(struct sl_diags *d, struct tls_cert *c)
{
    const struct sl_certificate_ref *r = c->ref;
    char *auto_name = NULL;
    const char *file = r->ocsp;
    FILE *f;
    unsigned char *buf = NULL;
    const unsigned char *p;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *basic = NULL;
    long n;
    int rc = 0;

    if (!file) {
        if (asprintf(&auto_name, "%s.ocsp", r->cert) < 0)
            return 0;
        file = auto_name;
    }
    if (!(f = fopen(file, "rb"))) {
        if (r->ocsp) {
            diag_at(d, SL_DIAG_ERROR, &r->ocsp_loc, "cannot open the OCSP response \"%s\": %s",
                    file, strerror(errno));
            rc = -1;
        }
        free(auto_name);
        return rc;
    }
    buf = malloc(OCSP_MAX);
    n = buf ? (long)fread(buf, 1, OCSP_MAX, f) : 0;
    fclose(f);
    p = buf;
    if (n <= 0 || n == OCSP_MAX || !(resp = d2i_OCSP_RESPONSE(NULL, &p, n))) {
        diag_at(d, SL_DIAG_ERROR, r->ocsp ? &r->ocsp_loc : &r->cert_loc,
                "\"%s\" is not a DER OCSP response", file);
        rc = -1;
    } else if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
               !(basic = OCSP_response_get1_basic(resp))) {
        diag_at(d, SL_DIAG_WARNING, r->ocsp ? &r->ocsp_loc : &r->cert_loc,
                "the OCSP response \"%s\" is not successful: not stapled", file);
    } else {
        ASN1_GENERALIZEDTIME *next = NULL;
        OCSP_SINGLERESP *one = OCSP_resp_get0(basic, 0);
        time_t now = time(NULL);

        if (one)
            OCSP_single_get0_status(one, NULL, NULL, NULL, &next);
        if (!ocsp_names_leaf(c->ctx, basic)) {
            diag_at(d, SL_DIAG_WARNING, r->ocsp ? &r->ocsp_loc : &r->cert_loc,
                    "the OCSP response \"%s\" is about another certificate: not stapled", file);
        } else if (!one || (next && X509_cmp_time(next, &now) < 0)) {
            diag_at(d, SL_DIAG_WARNING, r->ocsp ? &r->ocsp_loc : &r->cert_loc,
                    "the OCSP response \"%s\" is out of date: not stapled", file);
        } else {
            c->ocsp = buf;
            c->ocsp_len = n;
            buf = NULL;
        }
    }
    ERR_clear_error();
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
    free(buf);
    free(auto_name);
    return rc;
}

static SSL_CTX *new_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    /* kTLS: the kernel takes the record keys where it can (a `tls` module); else no-op. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_ENABLE_KTLS);
    /* Idle tunnels should not hold 2 x 16 KiB of record buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read-ahead (wss tunnels) fills this in one read(2): four records, as the tunnel's
     * buffer takes. Released while idle (SSL_MODE_RELEASE_BUFFERS). */
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice", 6);
    SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT_S);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    return ctx;
}

/* Why the key of <r> did not load or match, in words (OpenSSL's queue only says "PEM lib"
 * for an encrypted key and for junk alike). Clears the queue. */
static const char *key_problem(const struct sl_certificate_ref *r, char *buf, size_t len)
{
    char head[4096] = "";
    FILE *f = fopen(r->key, "rb");
    unsigned long e;
    bool mismatch = false;

    if (f) {
        head[fread(head, 1, sizeof(head) - 1, f)] = '\0';
        fclose(f);
    }
    while ((e = ERR_get_error()))
        /* a key of another type loads beside the certificate: "no certificate assigned" */
        mismatch |=
            (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) ||
            (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_NO_CERTIFICATE_ASSIGNED);
    if (strstr(head, "ENCRYPTED"))
        snprintf(buf, len,
                 "\"%s\" is an encrypted private key: sluice needs it unencrypted "
                 "(readable only by its user), e.g. openssl pkey -in KEY -out KEY.plain",
                 r->key);
    else if (mismatch)
        snprintf(buf, len, "the key \"%s\" does not match the certificate \"%s\"", r->key, r->cert);
    else if (strstr(head, "PRIVATE KEY-----"))
        snprintf(buf, len, "\"%s\": the private key in it cannot be read", r->key);
    else
        snprintf(buf, len, "\"%s\" holds no PEM private key", r->key);
    return buf;
}

static int load_cert(struct sl_diags *d, struct tls_cert *c)
{
    const struct sl_certificate_ref *r = c->ref;
    char e[200];
    X509 *x;

    if (!readable(d, &r->cert_loc, "certificate", r->cert) ||
        !readable(d, &r->key_loc, "private key", r->key) ||
        (r->chain && !readable(d, &r->chain_loc, "chain", r->chain)))
        return -1;
    if (!(c->ctx = new_ctx())) {
        diag_at(d, SL_DIAG_ERROR, &r->loc, "OpenSSL: %s", ossl_err(e, sizeof(e), "out of memory"));
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, r->cert) != 1) {
        diag_at(d, SL_DIAG_ERROR, &r->cert_loc, "\"%s\" holds no PEM certificate (%s)", r->cert,
                ossl_err(e, sizeof(e), "no certificate found"));
        return -1;
    }
    if (r->chain) {
        BIO *b = BIO_new_file(r->chain, "r");
        X509 *ca;
        int n = 0;

        while (b && (ca = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            if (SSL_CTX_add0_chain_cert(c->ctx, ca) != 1)
                X509_free(ca);
            n++;
        }
        BIO_free(b);
        ERR_clear_error(); /* the end of the file reads as an error */
        if (n == 0) {
            diag_at(d, SL_DIAG_ERROR, &r->chain_loc, "\"%s\" holds no PEM certificate", r->chain);
            return -1;
        }
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, r->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        diag_at(d, SL_DIAG_ERROR, &r->key_loc, "%s", key_problem(r, e, sizeof(e)));
        return -1;
    }
    x = SSL_CTX_get0_certificate(c->ctx);
    if (check_dates(d, r, x) != 0 || load_ocsp(d, c) != 0)
        return -1;
    SSL_CTX_set_tlsext_status_cb(c->ctx, ocsp_cb);
    SSL_CTX_set_tlsext_status_arg(c->ctx, c);
    return 0;
}

static void tls_free(void *p)
{
    struct sl_tls *t = p;

    if (!t)
        return;
    for (size_t i = 0; i < t->n_certs; i++) {
        SSL_CTX_free(t->certs[i].ctx);
        free(t->certs[i].ocsp);
    }
    for (size_t i = 0; i < t->n_rules; i++)
        free(t->rules[i].certs);
    free(t->certs);
    free(t->rules);
    free(t);
}

/* An entry no forwarding rule uses yet (a sync may bring its rule later): loaded all the same,
 * so that a wrong file shows now, as a warning rather than an error that refuses the config. */
static void check_unused(struct sl_diags *d, struct tls_cert *c)
{
    struct sl_diags u;

    sl_diags_init(&u, d->origin);
    load_cert(&u, c);
    for (size_t i = 0; i < u.n; i++)
        sl_diag_add(d, SL_DIAG_WARNING, u.v[i].line, u.v[i].col, u.v[i].path,
                    "%s (no forwarding rule uses this entry yet)", u.v[i].msg);
    sl_diags_deinit(&u);
}

int sl_tls_attach(struct sl_config *cfg, struct sl_diags *d)
{
    const struct sl_local *l = &cfg->local;
    struct sl_tls *t;
    bool any = l->n_certificates > 0, ok = true;
    size_t i, k, j;

    for (i = 0; i < cfg->n_frules; i++)
        any |= cfg->frules[i].n_server_certificates > 0;
    if (!any)
        return 0;
    pthread_once(&once, init_once);
    t = calloc(1, sizeof(*t));
    if (!t || !(t->certs = calloc(l->n_certificates, sizeof(*t->certs))) ||
        !(t->rules = calloc(cfg->n_frules, sizeof(*t->rules)))) {
        sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "sluice.certificates", "out of memory");
        tls_free(t);
        return -1;
    }
    t->n_rules = cfg->n_frules;
    cfg->tls = t;
    cfg->tls_free = tls_free;
    /* Each entry is loaded once, in sluice.certificates order. */
    for (k = 0; k < l->n_certificates; k++) {
        bool used = false;

        for (i = 0; i < cfg->n_frules; i++)
            for (j = 0; j < cfg->frules[i].n_server_certificates; j++)
                used |= !strcmp(cfg->frules[i].server_certificates[j], l->certificates[k].ref);
        t->certs[k].ref = &l->certificates[k];
        t->n_certs = k + 1;
        if (!used)
            check_unused(d, &t->certs[k]);
        else if (load_cert(d, &t->certs[k]) != 0)
            ok = false;
    }
    for (i = 0; i < cfg->n_frules && ok; i++) {
        const struct sl_forwarding_rule *f = &cfg->frules[i];
        struct tls_rule *r = &t->rules[i];

        if (!f->n_server_certificates)
            continue;
        if (!(r->certs = calloc(f->n_server_certificates, sizeof(*r->certs)))) {
            sl_diag_add(d, SL_DIAG_ERROR, 0, 0, "sluice.certificates", "out of memory");
            return -1;
        }
        for (j = 0; j < f->n_server_certificates; j++)
            for (k = 0; k < l->n_certificates; k++)
                if (t->certs[k].ctx && !strcmp(f->server_certificates[j], l->certificates[k].ref))
                    r->certs[r->n++] = &t->certs[k];
    }
    return ok ? 0 : -1;
}

bool sl_tls_on(const struct sl_config *cfg, const struct sl_forwarding_rule *fr)
{
    const struct sl_tls *t = cfg->tls;

    return t && t->rules[fr - cfg->frules].n > 0;
}

/* ---- connections ---- */

struct bufferevent *sl_tls_bev_new(struct event_base *base, int fd, const struct sl_config *cfg,
                                   const struct sl_forwarding_rule *fr, SSL **ssl)
{
    const struct sl_tls *t = cfg->tls;
    struct tls_rule *r = &t->rules[fr - cfg->frules];
    struct bufferevent *bev;
    SSL *s = SSL_new(r->certs[0]->ctx);

    *ssl = NULL;
    if (!s)
        goto fail;
    SSL_set_ex_data(s, rule_idx, r);
    /* Deferred callbacks: libevent's read loop touches the SSL after running a callback
     * directly, and ours may free it or give it to a tunnel. */
    bev = bufferevent_openssl_socket_new(base, fd, s, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_DEFER_CALLBACKS);
    if (!bev)
        goto fail;
    /* A client that closes without close_notify has still sent what it sent. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    *ssl = s;
    return bev;
fail:
    SSL_free(s);
    ERR_clear_error();
    return NULL;
}

void sl_tls_detach(struct bufferevent *bev)
{
    /* What bufferevent_setfd(bev, -1) does for a socket bufferevent, which cannot be used
     * here: on an SSL bufferevent it also resets the SSL (SSL_clear) for a new handshake. */
    event_del(&bev->ev_read);
    event_del(&bev->ev_write);
}

bool sl_tls_untouched(const SSL *ssl)
{
    return BIO_number_read(SSL_get_rbio(ssl)) == 0;
}

void sl_tls_close_notify(SSL *ssl)
{
    if (SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(ssl);
    ERR_clear_error();
}

void sl_tls_free_ssl(SSL *ssl)
{
    SSL_free(ssl);
}

const char *sl_tls_fail_name(enum sl_tls_fail why)
{
    return why < SL_TLS_N_FAIL ? fail_names[why] : "?";
}

enum sl_tls_fail sl_tls_classify(struct bufferevent *bev, bool eof, char *detail, size_t len)
{
    enum sl_tls_fail why = SL_TLS_OTHER;
    unsigned long e, first = 0;

    detail[0] = '\0';
    while ((e = bufferevent_get_openssl_error(bev))) {
        if (!first)
            first = e;
        switch (ERR_GET_REASON(e)) {
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
            why = SL_TLS_PLAIN_HTTP;
            break;
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_UNKNOWN_PROTOCOL:
        case SSL_R_PACKET_LENGTH_TOO_LONG:
        case SSL_R_RECORD_LENGTH_MISMATCH:
        case SSL_R_UNEXPECTED_MESSAGE:
        case SSL_R_UNEXPECTED_RECORD:
        case SSL_R_LENGTH_MISMATCH:
        case SSL_R_BAD_PACKET_LENGTH:
            why = why == SL_TLS_OTHER ? SL_TLS_NOT_TLS : why;
            break;
        case SSL_R_NO_SHARED_CIPHER:
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_NO_SHARED_GROUPS:
        case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
            why = SL_TLS_NO_SHARED;
            break;
        case SSL_R_NO_APPLICATION_PROTOCOL:
            why = SL_TLS_ALPN;
            break;
        default:
            break;
        }
    }
    /* No TLS error, or one that only says the bytes stopped: the client went away. */
    if (!first || (eof && why == SL_TLS_OTHER))
        why = SL_TLS_CLOSED;
    snprintf(detail, len, "%s",
             !first                           ? (eof ? "" : "reset")
             : ERR_reason_error_string(first) ? ERR_reason_error_string(first)
                                              : "");
    ERR_clear_error();
    return why;
}

/* Whether log slot <slot> may log now: once a minute each; *<missed> is how many were not
 * logged since its last line. */
static bool log_slot(int slot, uint64_t *missed)
{
    uint64_t now = sl_clock_ms(CLOCK_MONOTONIC);
    uint64_t last = atomic_load_explicit(&stats.logged_ms[slot], memory_order_relaxed);

    if ((last && now - last < LOG_EVERY_MS) ||
        !atomic_compare_exchange_strong(&stats.logged_ms[slot], &last, now)) {
        atomic_fetch_add_explicit(&stats.logged_n[slot], 1, memory_order_relaxed);
        return false;
    }
    *missed = atomic_exchange(&stats.logged_n[slot], 0);
    return true;
}

void sl_tls_failed(enum sl_tls_fail why, const char *peer, const char *detail)
{
    uint64_t missed;

    atomic_fetch_add_explicit(&stats.failed[why], 1, memory_order_relaxed);
    if (log_slot(why, &missed))
        sl_log(SL_LOG_INFO,
               "tls: %s, from %s%s%s (cause \"%s\", logged once a minute: %llu "
               "more since the last line)",
               fail_text[why], peer, detail && detail[0] ? ": " : "", detail ? detail : "",
               fail_names[why], (unsigned long long)missed);
}

void sl_tls_handshake_done(SSL *ssl)
{
    atomic_fetch_add_explicit(&stats.handshakes, 1, memory_order_relaxed);
    if (SSL_session_reused(ssl))
        atomic_fetch_add_explicit(&stats.resumed, 1, memory_order_relaxed);
    if (BIO_get_ktls_send(SSL_get_wbio(ssl)))
        atomic_store_explicit(&stats.ktls_send, true, memory_order_relaxed);
    if (BIO_get_ktls_recv(SSL_get_rbio(ssl)))
        atomic_store_explicit(&stats.ktls_recv, true, memory_order_relaxed);
}

void sl_tls_get_stats(struct sl_tls_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->handshakes = atomic_load_explicit(&stats.handshakes, memory_order_relaxed);
    out->resumed = atomic_load_explicit(&stats.resumed, memory_order_relaxed);
    out->sni_unknown = atomic_load_explicit(&stats.sni_unknown, memory_order_relaxed);
    for (int i = 0; i < SL_TLS_N_FAIL; i++)
        out->failed[i] = atomic_load_explicit(&stats.failed[i], memory_order_relaxed);
    out->ktls_send = atomic_load_explicit(&stats.ktls_send, memory_order_relaxed);
    out->ktls_recv = atomic_load_explicit(&stats.ktls_recv, memory_order_relaxed);
}

void sl_tls_note(const SSL *ssl, struct sl_tls_note *out)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    out->version = SSL_get_version(ssl);
    out->cipher = SSL_get_cipher_name(ssl);
    out->resumed = SSL_session_reused(ssl);
    snprintf(out->sni, sizeof(out->sni), "%s", sni ? sni : "");
}
