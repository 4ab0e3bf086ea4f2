/* sluice-bench server: an RFC 6455 echo server (and a tiny HTTP responder) on libevent, the
 * target of the throughput benchmarks, so it echoes with as little work as the protocol allows:
 * frames are unmasked in place in the read buffer and written back from it with writev, each
 * server header written over the tail of the client's (4 bytes shorter: no mask key). A message
 * is echoed frame by frame, as it arrives, so its size is unbounded and memory is one buffer per
 * connection. One event_base and one SO_REUSEPORT listener per thread. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "sluice/addr.h"
#include "sluice/common.h"
#include "ws.h"

#define SRV_BUF (256 * 1024) /* read buffer: one per connection, taken at first read */
#define SRV_HEAD_MAX (16 * 1024)
#define SRV_IOV 64         /* pending output segments per connection */
#define SRV_LINGER_MS 2000 /* after our FIN, how long to wait for the peer's */
#define SRV_ACCEPT_BATCH 64
#define SRV_MAX_THREADS 64
#define SRV_MAX_XF 8 /* X-Forwarded-* lines echoed in a plain HTTP answer */

enum srv_state {
    SRV_ST_HTTP = 0, /* reading requests */
    SRV_ST_WS,       /* upgraded: echoing frames */
    SRV_ST_LINGER,   /* our FIN is sent: discard input until EOF or timeout */
};

struct srv_worker;

struct srv_conn {
    struct srv_conn *prev, *next;
    struct srv_worker *w;
    int fd;
    enum srv_state st;
    struct event *rev, *wev;
    uint8_t *buf;
    size_t rpos, wlen; /* buf[0, rpos) is processed, buf[rpos, wlen) is not yet */
    size_t head_scan;  /* HTTP: bytes of buf[rpos..] already searched for the head's end */
    uint64_t discard;  /* HTTP: request body bytes still to skip */
    struct iovec iov[SRV_IOV];
    unsigned ih, it; /* output still to write: iov[ih, it) */
    char *resp;      /* heap HTTP response referenced by iov, freed once written */
    /* WebSocket parser state */
    uint64_t remain; /* payload bytes of the current data frame still to come */
    uint8_t key[4];
    unsigned phase;
    bool in_payload, frag_open;
    bool close_after_flush; /* stop reading input; FIN once the output is written */
    bool rd_paused;         /* read event removed while the buffer is full */
    bool eof;
};

struct srv_worker {
    struct srv *srv;
    pthread_t tid;
    struct event_base *base;
    int lfd;
    struct event *lev, *retry;
    struct srv_conn *conns;
    bool emfile_logged;
};

struct srv {
    char name[256];
    unsigned n_threads;
    struct srv_worker *w;
};

/* Close frames are static segments: the answer to a protocol error does not fit in place. */
static const uint8_t close_1002[] = {WS_FIN | WS_OP_CLOSE, 2, 0x03, 0xea};

static void srv_free(struct srv_conn *c)
{
    struct srv_worker *w = c->w;

    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    free(c->buf);
    free(c->resp);
    free(c);
}

/* Queues buf-relative or static output; merges with the last segment when contiguous, which
 * is the common case of a large frame arriving over several reads. */
static void srv_push(struct srv_conn *c, const void *p, size_t n)
{
    struct iovec *last = c->it > c->ih ? &c->iov[c->it - 1] : NULL;

    if (n == 0)
        return;
    if (last && (const uint8_t *)last->iov_base + last->iov_len == p) {
        last->iov_len += n;
        return;
    }
    SL_BUG_ON(c->it == SRV_IOV);
    c->iov[c->it].iov_base = (void *)p;
    c->iov[c->it].iov_len = n;
    c->it++;
}

/* Room for at least <n> more segments, shifting the queue down if that gives it. */
static bool srv_iov_room(struct srv_conn *c, unsigned n)
{
    if (SRV_IOV - c->it >= n)
        return true;
    if (c->ih == 0)
        return false;
    memmove(c->iov, c->iov + c->ih, (c->it - c->ih) * sizeof(c->iov[0]));
    c->it -= c->ih;
    c->ih = 0;
    return SRV_IOV - c->it >= n;
}

static void srv_fail(struct srv_conn *c)
{
    srv_push(c, close_1002, sizeof(close_1002));
    c->close_after_flush = true;
}

static bool close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Echoes what frames buf[rpos, wlen) holds. Returns whether it consumed anything. */
static bool srv_ws(struct srv_conn *c)
{
    bool progress = false;

    while (!c->close_after_flush && srv_iov_room(c, 2)) {
        uint8_t *p = c->buf + c->rpos, *pl, *h;
        size_t avail = c->wlen - c->rpos, hs;
        struct ws_frame f;
        int r;

        if (c->in_payload) {
            size_t n = avail < c->remain ? avail : (size_t)c->remain;

            if (n == 0)
                break;
            c->phase = ws_mask(p, p, n, c->key, c->phase);
            srv_push(c, p, n);
            c->rpos += n;
            c->remain -= n;
            c->in_payload = c->remain > 0;
            progress = true;
            continue;
        }
        r = ws_frame_parse(p, avail, &f);
        if (r == 0)
            break;
        if (r < 0 || !f.masked || f.rsv) {
            srv_fail(c);
            return true;
        }
        if (f.opcode >= WS_OP_CLOSE) {
            if (f.opcode > WS_OP_PONG || !f.fin || f.len > WS_CONTROL_MAX) {
                srv_fail(c);
                return true;
            }
            if (avail < f.hlen + f.len)
                break;
            progress = true;
            pl = p + f.hlen;
            ws_mask(pl, pl, (size_t)f.len, f.key, 0);
            c->rpos += f.hlen + (size_t)f.len;
            if (f.opcode == WS_OP_PING) {
                pl[-2] = WS_FIN | WS_OP_PONG;
                pl[-1] = (uint8_t)f.len;
                srv_push(c, pl - 2, 2 + (size_t)f.len);
            } else if (f.opcode == WS_OP_CLOSE) {
                unsigned code = f.len >= 2 ? (unsigned)pl[0] << 8 | pl[1] : 0;

                if (f.len == 1 || (f.len >= 2 && !close_code_ok(code))) {
                    srv_fail(c);
                    return true;
                }
                /* Echo the code (the reason is the peer's business), as RFC 6455 5.5.1 asks. */
                pl[-2] = WS_FIN | WS_OP_CLOSE;
                pl[-1] = f.len ? 2 : 0;
                srv_push(c, pl - 2, f.len ? 4 : 2);
                c->close_after_flush = true;
            }
            continue;
        }
        if (f.opcode > WS_OP_BINARY || (f.opcode == WS_OP_CONT) != c->frag_open) {
            srv_fail(c);
            return true;
        }
        progress = true;
        c->frag_open = !f.fin;
        hs = ws_frame_hlen(f.len, false);
        h = p + f.hlen - hs; /* hs <= f.hlen - 4, even for a non-minimal length encoding */
        ws_frame_header(h, (uint8_t)((f.fin ? WS_FIN : 0) | f.opcode), f.len, NULL);
        srv_push(c, h, hs);
        memcpy(c->key, f.key, 4);
        c->phase = 0;
        c->remain = f.len;
        c->in_payload = f.len > 0;
        c->rpos += f.hlen;
    }
    return progress;
}

/* Sets c->resp to a complete response and queues it. */
static void srv_respond(struct srv_conn *c, const char *status, const char *extra, const char *body,
                        size_t body_len, bool head_only, bool close)
{
    struct srv *s = c->w->srv;
    size_t cap = strlen(status) + strlen(extra) + strlen(s->name) + body_len + 160;
    int n;

    free(c->resp);
    c->resp = malloc(cap);
    if (!c->resp) {
        c->close_after_flush = true;
        return;
    }
    n = snprintf(c->resp, cap,
                 "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "X-Served-By: %s\r\n%s%s\r\n",
                 status, body_len, s->name, extra, close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= cap) {
        c->close_after_flush = true;
        return;
    }
    if (!head_only) {
        memcpy(c->resp + n, body, body_len);
        n += (int)body_len;
    }
    srv_push(c, c->resp, (size_t)n);
    if (close)
        c->close_after_flush = true;
}

static void srv_bad(struct srv_conn *c, const char *status, const char *why, const char *extra)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%s\n", why);

    srv_respond(c, status, extra, body, (size_t)n, false, true);
}

/* What the request head tells us; pointers into the head. */
struct srv_req {
    const char *method, *target;
    size_t method_len, target_len;
    int minor; /* HTTP/1.<minor> */
    bool conn_close, conn_keepalive, conn_upgrade;
    bool upgrade_ws, has_upgrade, has_te;
    const char *key, *version, *proto;
    size_t key_len, version_len, proto_len;
    uint64_t content_length;
    struct ws_hdr xf[SRV_MAX_XF];
    unsigned n_xf;
};

static int srv_parse_head(const char *p, const char *end, struct srv_req *q)
{
    const char *sp1, *sp2, *eol = memchr(p, '\n', (size_t)(end - p));
    struct ws_hdr h;
    int r;

    memset(q, 0, sizeof(*q));
    if (!eol)
        return -1;
    sp1 = memchr(p, ' ', (size_t)(eol - p));
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1 || eol - sp2 < 9 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    q->method = p;
    q->method_len = (size_t)(sp1 - p);
    q->target = sp1 + 1;
    q->target_len = (size_t)(sp2 - sp1 - 1);
    q->minor = sp2[8] - '0';
    p = eol + 1;
    while ((r = ws_head_next(&p, end, &h)) == 1) {
        if (ws_hdr_is(&h, "Connection")) {
            q->conn_close |= ws_list_has(h.val, h.val_len, "close");
            q->conn_keepalive |= ws_list_has(h.val, h.val_len, "keep-alive");
            q->conn_upgrade |= ws_list_has(h.val, h.val_len, "upgrade");
        } else if (ws_hdr_is(&h, "Upgrade")) {
            q->has_upgrade = true;
            q->upgrade_ws |= ws_list_has(h.val, h.val_len, "websocket");
        } else if (ws_hdr_is(&h, "Sec-WebSocket-Key")) {
            q->key = h.val;
            q->key_len = h.val_len;
        } else if (ws_hdr_is(&h, "Sec-WebSocket-Version")) {
            q->version = h.val;
            q->version_len = h.val_len;
        } else if (ws_hdr_is(&h, "Sec-WebSocket-Protocol")) {
            if (!q->proto)
                q->proto = ws_list_first(h.val, h.val_len, &q->proto_len);
        } else if (ws_hdr_is(&h, "Content-Length")) {
            char num[24];

            if (h.val_len == 0 || h.val_len >= sizeof(num) ||
                strspn(h.val, "0123456789") < h.val_len)
                return -1;
            memcpy(num, h.val, h.val_len);
            num[h.val_len] = '\0';
            q->content_length = strtoull(num, NULL, 10);
        } else if (ws_hdr_is(&h, "Transfer-Encoding")) {
            q->has_te = true;
        } else if ((ws_hdr_is(&h, "X-Forwarded-For") || ws_hdr_is(&h, "X-Forwarded-Proto") ||
                    ws_hdr_is(&h, "X-Forwarded-Port")) &&
                   q->n_xf < SRV_MAX_XF) {
            q->xf[q->n_xf++] = h;
        }
    }
    return r;
}

/* Why an upgrade request is refused (RFC 6455 4.2.1), or NULL when it is acceptable. */
static const char *srv_upgrade_refusal(const struct srv_req *q)
{
    if (q->method_len != 3 || memcmp(q->method, "GET", 3) != 0)
        return "websocket upgrade needs GET";
    if (q->minor != 1)
        return "websocket upgrade needs HTTP/1.1";
    if (!q->upgrade_ws)
        return "Upgrade is not websocket";
    if (!q->conn_upgrade)
        return "Connection lacks the upgrade token";
    if (!q->key || q->key_len != WS_KEY_LEN)
        return "bad or missing Sec-WebSocket-Key";
    if (!q->version || q->version_len != 2 || memcmp(q->version, "13", 2) != 0)
        return "Sec-WebSocket-Version must be 13";
    if (q->content_length || q->has_te)
        return "websocket upgrade with a body";
    return NULL;
}

static void srv_upgrade(struct srv_conn *c, const struct srv_req *q)
{
    const char *why = srv_upgrade_refusal(q), *s;
    char accept[WS_ACCEPT_LEN + 1], extra[512];
    int n;

    if (why) {
        /* RFC 6455 4.4: tell a client with another version which one we speak. */
        srv_bad(c, "400 Bad Request", why, "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    ws_accept(q->key, q->key_len, accept);

    c->resp = malloc(768);
    if (!c->resp) {
        c->close_after_flush = true;
        return;
    }
    n = 0;
    extra[0] = '\0';
    if (q->proto && q->proto_len && q->proto_len < 256)
        n = snprintf(extra, sizeof(extra), "Sec-WebSocket-Protocol: %.*s\r\n", (int)q->proto_len,
                     q->proto);
    s = c->w->srv->name;
    n = snprintf(c->resp, 768,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n%sX-Served-By: %s\r\n\r\n",
                 accept, extra, s);
    if (n < 0 || n >= 768) {
        c->close_after_flush = true;
        return;
    }
    srv_push(c, c->resp, (size_t)n);
    c->st = SRV_ST_WS;
}

/* Serves at most one request: the next waits until this answer is written, which keeps a
 * single response buffer and the answers in order. Returns whether it consumed anything. */
static bool srv_http(struct srv_conn *c)
{
    char *p = (char *)c->buf + c->rpos, body[SRV_MAX_XF * 300 + 300];
    size_t avail = c->wlen - c->rpos, end, bl;
    struct srv_req q;
    bool keep;

    if (c->close_after_flush || c->it > c->ih)
        return false;
    if (c->discard) {
        size_t n = avail < c->discard ? avail : (size_t)c->discard;

        c->rpos += n;
        c->discard -= n;
        return n > 0;
    }
    if (avail == 0)
        return false;
    end = ws_head_end(p, avail, c->head_scan);
    if (end == 0 || end > SRV_HEAD_MAX) {
        c->head_scan = avail;
        if (end > SRV_HEAD_MAX || avail > SRV_HEAD_MAX) {
            srv_bad(c, "431 Request Header Fields Too Large", "request head too large", "");
            return true;
        }
        return false;
    }
    c->head_scan = 0;
    c->rpos += end;
    if (srv_parse_head(p, p + end, &q) < 0) {
        srv_bad(c, "400 Bad Request", "malformed request", "");
        return true;
    }
    if (q.upgrade_ws || q.key) {
        srv_upgrade(c, &q);
        return true;
    }
    if (q.has_te) {
        srv_bad(c, "501 Not Implemented", "Transfer-Encoding is not supported", "");
        return true;
    }
    c->discard = q.content_length;
    keep = q.minor == 1 ? !q.conn_close : q.conn_keepalive && !q.conn_close;
    bl = (size_t)snprintf(body, sizeof(body), "sluice-bench %s\n", c->w->srv->name);
    for (unsigned i = 0; i < q.n_xf && bl < sizeof(body); i++)
        bl += (size_t)snprintf(
            body + bl, sizeof(body) - bl, "%.*s: %.*s\n", (int)q.xf[i].name_len, q.xf[i].name,
            (int)q.xf[i].val_len > 256 ? 256 : (int)q.xf[i].val_len, q.xf[i].val);
    if (bl > sizeof(body))
        bl = sizeof(body);
    srv_respond(c, "200 OK", keep && q.minor == 0 ? "Connection: keep-alive\r\n" : "", body, bl,
                q.method_len == 4 && memcmp(q.method, "HEAD", 4) == 0, !keep);
    return true;
}

static bool srv_process(struct srv_conn *c)
{
    bool progress = false;

    if (c->st == SRV_ST_HTTP)
        progress = srv_http(c);
    if (c->st == SRV_ST_WS)
        progress |= srv_ws(c);
    return progress;
}

/* Writes pending output. Returns -1 if <c> was freed, 0 while output is pending or the
 * connection lingers, 1 once all is written (and the buffer compacted). */
static int srv_flush(struct srv_conn *c)
{
    while (c->ih < c->it) {
        unsigned cnt = c->it - c->ih;
        ssize_t n = writev(c->fd, c->iov + c->ih, (int)(cnt < IOV_MAX ? cnt : IOV_MAX));

        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                event_add(c->wev, NULL);
                if (c->wlen == SRV_BUF && !c->rd_paused) {
                    /* Backpressure: no room to read into until the peer takes our echo. */
                    event_del(c->rev);
                    c->rd_paused = true;
                }
                return 0;
            }
            srv_free(c);
            return -1;
        }
        while (n > 0) {
            struct iovec *v = &c->iov[c->ih];

            if ((size_t)n >= v->iov_len) {
                n -= (ssize_t)v->iov_len;
                c->ih++;
            } else {
                v->iov_base = (uint8_t *)v->iov_base + n;
                v->iov_len -= (size_t)n;
                n = 0;
            }
        }
    }
    event_del(c->wev);
    c->ih = c->it = 0;
    free(c->resp);
    c->resp = NULL;
    /* Nothing refers to the buffer now: move the unprocessed tail (a partial header or
     * control frame, usually) to the front. */
    if (c->rpos == c->wlen) {
        c->rpos = c->wlen = 0;
    } else if (c->rpos > 0) {
        memmove(c->buf, c->buf + c->rpos, c->wlen - c->rpos);
        c->wlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->close_after_flush) {
        shutdown(c->fd, SHUT_WR);
        c->st = SRV_ST_LINGER;
        c->rpos = c->wlen = 0;
        {
            struct timeval tv = {SRV_LINGER_MS / 1000, (SRV_LINGER_MS % 1000) * 1000};

            event_del(c->rev);
            event_add(c->rev, &tv);
        }
        c->rd_paused = false;
        return 0;
    }
    if (c->rd_paused) {
        event_add(c->rev, NULL);
        c->rd_paused = false;
    }
    return 1;
}

/* Processes and writes until output is pending or nothing is left to do; a half-closed
 * connection (pipelined requests, then FIN) ends once every answer is written. */
static void srv_step(struct srv_conn *c)
{
    for (;;) {
        bool progress = srv_process(c);
        int r = srv_flush(c);

        if (r <= 0)
            return;
        if (!progress)
            break;
    }
    if (c->eof)
        srv_free(c);
}

static void srv_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct srv_conn *c = arg;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        srv_free(c); /* lingering ended */
        return;
    }
    if (!c->buf) {
        c->buf = malloc(SRV_BUF);
        if (!c->buf) {
            srv_free(c);
            return;
        }
    }
    if (c->st == SRV_ST_LINGER) {
        n = read(fd, c->buf, SRV_BUF);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
            srv_free(c);
        return;
    }
    if (c->wlen == SRV_BUF) {
        event_del(c->rev);
        c->rd_paused = true;
        return;
    }
    n = read(fd, c->buf + c->wlen, SRV_BUF - c->wlen);
    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR)
            srv_free(c);
        return;
    }
    if (n == 0) {
        if (c->it == c->ih) {
            srv_free(c);
            return;
        }
        /* Half-closed with an answer still to write: write it, then close. */
        c->eof = true;
        event_del(c->rev);
        return;
    }
    c->wlen += (size_t)n;
    if (c->close_after_flush)
        c->rpos = c->wlen; /* past a close: ignore the rest */
    srv_step(c);
}

static void srv_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    srv_step(arg);
}

static void srv_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct srv_worker *w = arg;

    (void)fd;
    (void)what;
    event_add(w->lev, NULL);
}

static void srv_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct srv_worker *w = arg;

    (void)what;
    for (int i = 0; i < SRV_ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
        struct srv_conn *c;

        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of fds: stop accepting for a moment rather than spin on the listener. */
                struct timeval tv = {0, 100000};

                if (!w->emfile_logged)
                    fprintf(stderr, "sluice-bench server: accept: %s (pausing accepts)\n",
                            strerror(errno));
                w->emfile_logged = true;
                event_del(w->lev);
                evtimer_add(w->retry, &tv);
            }
            return;
        }
        w->emfile_logged = false;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->w = w;
        c->fd = fd;
        c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, srv_on_read, c);
        c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, srv_on_write, c);
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        if (!c->rev || !c->wev) {
            srv_free(c);
            continue;
        }
        event_add(c->rev, NULL);
    }
}

static int srv_listen(const struct sockaddr_storage *ss, socklen_t len, char *err, size_t errsz)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd == -1) {
        snprintf(err, errsz, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) == -1 || listen(fd, 4096) == -1) {
        snprintf(err, errsz, "bind/listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void *srv_thread(void *arg)
{
    struct srv_worker *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

/* sl_addr_parse_port, plus port 0 (the kernel picks; the listening line tells which). */
static int parse_listen(const char *s, struct sl_addr *addr, uint16_t *port)
{
    size_t n = strlen(s);
    char tmp[SL_ADDR_STRLEN + 8];

    if (n >= 2 && n < sizeof(tmp) && strcmp(s + n - 2, ":0") == 0) {
        snprintf(tmp, sizeof(tmp), "%.*s:1", (int)(n - 2), s);
        if (sl_addr_parse_port(tmp, addr, port) < 0)
            return -1;
        *port = 0;
        return 0;
    }
    return sl_addr_parse_port(s, addr, port);
}

static const char server_usage[] =
    "sluice-bench server --listen IP:PORT [--threads N] [--name NAME]\n";

int bench_server_main(int argc, char **argv)
{
    struct srv s = {.n_threads = 1};
    const char *listen_arg = NULL, *name = NULL;
    struct sockaddr_storage ss;
    struct sl_addr addr;
    uint16_t port;
    socklen_t sslen;
    sigset_t set;
    char err[256], where[SL_ADDR_STRLEN + 8];
    int sig, rc = 0;
    unsigned i;

    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;

        if (!strcmp(argv[a], "--listen") && v) {
            listen_arg = v;
        } else if (!strcmp(argv[a], "--threads") && v) {
            if (bench_parse_uint(v, 1, SRV_MAX_THREADS, &s.n_threads) < 0)
                return bench_usage("--threads wants 1..64");
        } else if (!strcmp(argv[a], "--name") && v) {
            name = v;
        } else {
            fprintf(stderr, "usage: %s", server_usage);
            return bench_usage(NULL);
        }
        a++;
    }
    if (!listen_arg || parse_listen(listen_arg, &addr, &port) < 0)
        return bench_usage("server needs --listen IP:PORT");
    sslen = sl_addr_to_sockaddr(&addr, port, &ss);

    bench_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* Only the main thread takes SIGINT/SIGTERM (sigwait); workers inherit the blocked mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    evthread_use_pthreads();

    s.w = calloc(s.n_threads, sizeof(*s.w));
    if (!s.w)
        return 1;
    for (i = 0; i < s.n_threads; i++)
        s.w[i].lfd = -1;
    for (i = 0; i < s.n_threads; i++) {
        struct srv_worker *w = &s.w[i];

        w->srv = &s;
        w->lfd = srv_listen(&ss, sslen, err, sizeof(err));
        if (w->lfd == -1) {
            fprintf(stderr, "sluice-bench server: %s: %s\n", listen_arg, err);
            rc = 1;
            break;
        }
        if (i == 0) {
            /* Port 0: the kernel chose; the other threads' listeners join that port. */
            sslen = sizeof(ss);
            getsockname(w->lfd, (struct sockaddr *)&ss, &sslen);
            sl_addr_from_sockaddr((struct sockaddr *)&ss, &addr, &port);
            sl_addr_format_port(&addr, port, where);
        }
        w->base = event_base_new();
        if (!w->base) {
            rc = 1;
            break;
        }
        w->lev = event_new(w->base, w->lfd, EV_READ | EV_PERSIST, srv_on_accept, w);
        w->retry = evtimer_new(w->base, srv_on_retry, w);
        event_add(w->lev, NULL);
    }
    if (rc == 0) {
        snprintf(s.name, sizeof(s.name), "%s", name ? name : where);
        for (i = 0; i < s.n_threads; i++) {
            if (pthread_create(&s.w[i].tid, NULL, srv_thread, &s.w[i]) != 0) {
                fprintf(stderr, "sluice-bench server: cannot start threads\n");
                exit(1);
            }
        }
        fprintf(stderr, "sluice-bench server listening on %s\n", where);
        sigwait(&set, &sig);
        for (i = 0; i < s.n_threads; i++)
            event_base_loopbreak(s.w[i].base);
        for (i = 0; i < s.n_threads; i++)
            pthread_join(s.w[i].tid, NULL);
    }
    for (i = 0; i < s.n_threads; i++) {
        struct srv_worker *w = &s.w[i];

        while (w->conns)
            srv_free(w->conns);
        if (w->lev)
            event_free(w->lev);
        if (w->retry)
            event_free(w->retry);
        if (w->lfd != -1)
            close(w->lfd);
        if (w->base)
            event_base_free(w->base);
    }
    free(s.w);
    return rc;
}
