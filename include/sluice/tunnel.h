/* The WebSocket tunnel: once a target has answered 101, one sl_tunnel owns the client and
 * target sockets and moves bytes both ways with splice(2) through pipes taken from the
 * worker's pool only while data is in flight (an idle tunnel holds no pipe), or with a small
 * copy buffer when splice or a pipe is unavailable. Half-close, resets, idle timeout and byte
 * counters live here. Single-threaded: a tunnel and its pool belong to one worker's
 * event_base. */
#ifndef SLUICE_TUNNEL_H
#define SLUICE_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "sluice/common.h"

struct event_base;
struct ssl_st;
struct sl_tunnel;
struct sl_pipe_pool;

/* After one side's EOF has been passed on, the other direction gets at most this long (ms)
 * before the tunnel ends: a WebSocket half-closed is a WebSocket closing. */
#define SL_TUNNEL_FIN_TIMEOUT_MS 10000
/* The same while sluice is stopping: the drain period is for conversations still going. */
#define SL_TUNNEL_DRAIN_FIN_MS 1000

struct sl_pipe_pool_stats {
    unsigned idle;      /* pipes in the pool, empty */
    unsigned in_use;    /* pipes attached to a tunnel direction */
    unsigned max;       /* limit on idle + in_use */
    uint64_t created;   /* pipes made since start */
    uint64_t exhausted; /* times a tunnel wanted a pipe and fell back to copying */
};

/* A worker's pool of at most <max_pipes> pipes (each costs two fds), each sized <pipe_size>
 * bytes with F_SETPIPE_SZ (0 = the kernel default). NULL on out-of-memory. */
struct sl_pipe_pool *sl_pipe_pool_new(unsigned max_pipes, unsigned pipe_size);
/* Closes every idle pipe and frees the pool; every tunnel using it must be gone. NULL ok. */
void sl_pipe_pool_free(struct sl_pipe_pool *p);
/* <eager>: the tunnels of this pool splice every read while a pipe is free, instead of only
 * large streams (tunnel.c); for tests of the pipe path and for comparisons. */
void sl_pipe_pool_set_eager(struct sl_pipe_pool *p, bool eager);
void sl_pipe_pool_stats(const struct sl_pipe_pool *p, struct sl_pipe_pool_stats *out);

/* What a tunnel has done: readable while it lives and passed to its done callback. */
struct sl_tunnel_info {
    uint64_t bytes_up;    /* client -> target, including the bytes handed over at start */
    uint64_t bytes_down;  /* target -> client, likewise */
    struct timeval start; /* when sl_tunnel_new ran (gettimeofday) */
    uint64_t duration_us; /* so far, or in total once ended */
    enum sl_err end;      /* SL_ERR_NONE while it lives */
    bool spliced;         /* at least one byte went through a pipe */
};

/* Called once when the tunnel has ended, after both fds are closed; the tunnel is freed right
 * after the callback returns (do not keep the pointer). */
typedef void (*sl_tunnel_done_cb)(struct sl_tunnel *t, const struct sl_tunnel_info *info,
                                  void *arg);

/* Every live tunnel of a worker, for status, counting and shutdown. Zero-initialise. */
struct sl_tunnel_list {
    struct sl_tunnel *head;
    size_t n;
    bool draining; /* set by sl_tunnel_list_drain */
};

/* Makes a tunnel between connected, non-blocking sockets <client_fd> and <target_fd> and
 * starts it: first the <to_target_len> bytes at <to_target> are written to the target and the
 * <to_client_len> bytes at <to_client> to the client (bytes read past the HTTP heads; copied,
 * the caller keeps its buffers), then bytes flow both ways. <pool> NULL = copy only.
 * <idle_ms> (> 0): with no byte either way for that long, the tunnel ends with
 * SL_ERR_IDLE_TIMEOUT. <client_tls> (or NULL): the client side's TLS session, established on
 * <client_fd>: bytes to and from the client go through it (splice only where kTLS lets the
 * kernel encrypt). The tunnel joins <list>. Takes ownership of both fds (and the session) in
 * every case:
 * on failure (NULL, out of memory) they are closed and <done> is not called. */
struct sl_tunnel *sl_tunnel_new(struct event_base *base, struct sl_pipe_pool *pool,
                                struct sl_tunnel_list *list, int client_fd,
                                struct ssl_st *client_tls, int target_fd, const void *to_target,
                                size_t to_target_len, const void *to_client, size_t to_client_len,
                                uint32_t idle_ms, sl_tunnel_done_cb done, void *arg);
/* Fills <out> with the tunnel's counters so far. */
void sl_tunnel_get_info(const struct sl_tunnel *t, struct sl_tunnel_info *out);
/* Ends the tunnel now with reason <why> (both fds closed, done called, tunnel freed). Not to be
 * called from within the tunnel's own done callback. */
void sl_tunnel_close(struct sl_tunnel *t, enum sl_err why);
/* Shutdown has begun: tunnels of <list> already half-closed end now (their conversation is
 * over, only a peer's FIN is missing), and later half-closes wait at most
 * SL_TUNNEL_DRAIN_FIN_MS instead of SL_TUNNEL_FIN_TIMEOUT_MS. */
void sl_tunnel_list_drain(struct sl_tunnel_list *list);
/* Calls <fn> for every live tunnel of <list> with its byte counters so far (the other fields
 * of <info> are zero: cheap enough to run over every tunnel each second) and the <arg> it was
 * made with (the done callback's). <fn> may close the tunnel it is given, and no other. */
typedef void (*sl_tunnel_visit_cb)(struct sl_tunnel *t, const struct sl_tunnel_info *info,
                                   void *arg, void *ud);
void sl_tunnel_list_foreach(struct sl_tunnel_list *list, sl_tunnel_visit_cb fn, void *ud);
/* Ends every tunnel in <list> with reason <why>. */
void sl_tunnel_close_all(struct sl_tunnel_list *list, enum sl_err why);

#endif
