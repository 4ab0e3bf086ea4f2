/* Source addresses for connections to targets (proxied requests and health checks alike):
 * the ALB's lbPrivateIps that are local to this machine, one per address family; and the
 * delayed-ACK switch both sides of a proxied connection use. */
#ifndef SLUICE_SOURCE_H
#define SLUICE_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/common.h"
#include "sluice/config-t.h"

struct sl_source {
    bool v4, v6;
    struct sl_addr a4, a6;
};

/* Fills <src> from <cfg>'s lbPrivateIps: the first local one of each family. With <log>, says
 * (at info level) which ones are not local and so leave the choice to the kernel. */
void sl_source_find(const struct sl_config *cfg, struct sl_source *src, bool log);

/* Starts a non-blocking TCP connect to <addr>:<port> from <src>'s address of that family (if
 * any), with TCP_NODELAY. <sends_first>: the caller writes as soon as the connect completes,
 * so the socket starts with delayed ACKs (TCP_QUICKACK 0) and the handshake's last ACK leaves
 * with those bytes; the caller turns quick ACKs back on once they are out. Returns the socket
 * (the connect is under way or done), or -1 with errno set (ECONNREFUSED, EMFILE,
 * EADDRNOTAVAIL, ...) and nothing left open. */
int sl_source_connect(const struct sl_source *src, const struct sl_addr *addr, uint16_t port,
                      bool sends_first);

/* Delayed ACKs: listeners are set TCP_QUICKACK 0 (accepted sockets inherit it) and a target
 * connection starts that way (sl_source_connect's <sends_first>), so the ACK of a request
 * head, or of the handshake, rides on the answer sent right after it instead of a packet of
 * its own. That only holds while an answer follows at once: where the peer may wait on our
 * ACK (a client whose head or body comes in pieces, a target whose 101 may be followed by
 * frames, both under Nagle) the socket goes back to quick ACKs (<on>), which also sends a
 * pending ACK now. A tunnel's client socket is left as it is: the kernel's own heuristic
 * puts it in delayed-ACK mode after a request and its quick answer anyway, and a quick ACK
 * there costs a packet per upgrade (measured 2.5 % of upgrades/s); HAProxy leaves it the
 * same way. Best effort: a failure only costs a packet or a delay. */
void sl_tcp_quickack(int fd, bool on);

/* What a connect's errno says: SL_ERR_CONNECT_REFUSED, SL_ERR_CONNECT_TIMEOUT,
 * SL_ERR_RESOURCES (our own shortage of fds, ports or memory: not the target's fault, so no
 * health verdict) or SL_ERR_CONNECT_ERROR. */
enum sl_err sl_connect_err(int e);

#endif
