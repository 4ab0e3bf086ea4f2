/* struct sl_conn: one client connection in its HTTP phase, shared by front.c (client side)
 * and upstream.c (target side). After a 101 the sockets move to a tunnel and the conn is
 * freed. */
#ifndef SLUICE_CONN_INT_H
#define SLUICE_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "sluice/balancer.h"
#include "sluice/common.h"
#include "sluice/http.h"
#include "sluice/metrics.h"
#include "sluice/source.h"
#include "sluice/worker.h"

enum conn_state {
    CS_HEAD = 0, /* waiting for (the rest of) a request head */
    CS_CONNECT,  /* connecting to a target; the request head waits in c->fwd */
    CS_FORWARD,  /* request and response flowing */
    CS_CLOSING,  /* a final response is being written; then lingering close */
};

#define CF_CLOSE_AFTER 0x01 /* close the client after the current response */
#define CF_HEAD_REQ 0x02    /* the request's method is HEAD: its response has no body */
#define CF_WEBSOCKET 0x04   /* the request asks for a WebSocket upgrade */
#define CF_REQ_DONE 0x08    /* the whole request (head and body) went to the target */
#define CF_RESP_HEAD 0x10   /* the response head went to the client */
#define CF_LINGER 0x20      /* write side shut; reading and discarding until EOF */
#define CF_HEAD_TIMER 0x40  /* the header timeout is armed for this request */
#define CF_QUICKACK 0x80    /* the client's socket is back to quick ACKs (sl_tcp_quickack) */
#define CF_UP_QUICKACK 0x100 /* the target's socket is back to quick ACKs */

/* Bytes above which one side stops reading until the other drains to half (le-proxy). */
#define CONN_HIGH_WATER (256 * 1024)

struct sl_conn {
    struct sl_worker *w;
    struct sl_conn *prev, *next;        /* w->conns */
    struct sl_gen *gen;                 /* one ref: the config it started with */
    struct sl_config *cfg;              /* gen->cfg */
    const struct sl_listener *ln;
    struct bufferevent *cb;             /* client */
    struct ssl_st *ssl;                 /* the client's TLS session (ours), or NULL: plain */
    bool tls_up;                        /* its handshake is done */
    struct bufferevent *ub;             /* target; NULL when none */
    struct event *timer;                /* header timeout, linger */
    int cfd, ufd;
    enum conn_state state;
    unsigned flags;                     /* CF_* */
    uint64_t id;
    struct sl_addr peer;
    uint16_t peer_port;

    /* The current request. */
    const struct sl_http_rule *rule;
    struct sl_http_body reqb, respb;
    struct sl_tried tried;
    struct sl_pick pick;
    bool counted;                       /* pick.state->active was incremented */
    struct evbuffer *fwd;               /* rewritten request head, kept for retries */
    enum sl_err err;                    /* why the last connect failed */
    struct timeval t0;                  /* request start */
    int status;
    uint64_t req_bytes, resp_bytes;     /* from and to the client, for the access log */
    uint64_t up_bytes, down_bytes;      /* to and from the target, for its counters */
    char method[16];
    char path[200];                     /* for the access log, truncated */
};

/* Quick ACKs on <fd> once per request (see sl_tcp_quickack): <flag> (CF_QUICKACK or
 * CF_UP_QUICKACK) says it is done; finish_request clears the flags, as the kernel may have
 * gone back to delayed ACKs by the next request. */
static inline void conn_quickack_once(struct sl_conn *c, unsigned flag, int fd)
{
    if (!(c->flags & flag)) {
        c->flags |= flag;
        sl_tcp_quickack(fd, true);
    }
}

/* front.c */
void front_reply(struct sl_conn *c, int status, const char *body, bool close);
void front_reply_error(struct sl_conn *c, int status, enum sl_err why);
/* The same with <detail> instead of the reason's stock phrase in the one-line body. */
void front_reply_error_detail(struct sl_conn *c, int status, enum sl_err why,
                              const char *detail);
void front_request_done(struct sl_conn *c);
void front_close(struct sl_conn *c);
void front_log_request(struct sl_conn *c, const char *action);
void front_pump_request_body(struct sl_conn *c);
void front_client_drained(struct sl_conn *c);

/* upstream.c */
void upstream_start(struct sl_conn *c);
void upstream_release(struct sl_conn *c);
int upstream_build_head(struct sl_conn *c, const struct sl_http_head *h);

/* Starts an access-log line: {"time":"…","type":"<type>", */
void conn_log_start(struct evbuffer *b, const char *type);
/* Appends s to an access-log line as a JSON string (quoted, escaped). */
void conn_json_str(struct evbuffer *b, const char *s, size_t n);
struct sl_tls_note;
/* Appends ,"tls":{...} (version, cipher, resumed, sni) to an access-log line. */
void conn_log_tls(struct evbuffer *b, const struct sl_tls_note *n);

#endif
