/* Source addresses for target connections (see source.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice/source.h"

/* Whether <a> can be a source address here (it is assigned to a local interface). */
static bool bindable(const struct sl_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sl_addr_to_sockaddr(a, 0, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd == -1)
        return false;
    ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
    close(fd);
    return ok;
}

void sl_source_find(const struct sl_config *cfg, struct sl_source *src, bool log)
{
    memset(src, 0, sizeof(*src));
    for (size_t i = 0; i < cfg->alb.n_lb_private_ips; i++) {
        const struct sl_addr *a = &cfg->alb.lb_private[i].addr;
        char buf[SL_ADDR_STRLEN];

        if ((a->family == AF_INET && src->v4) || (a->family == AF_INET6 && src->v6))
            continue;
        if (!bindable(a)) {
            if (log)
                sl_log(SL_LOG_INFO, "lbPrivateIp %s is not a local address: target "
                       "connections use the kernel's choice of source", sl_addr_format(a, buf));
            continue;
        }
        if (a->family == AF_INET) {
            src->v4 = true;
            src->a4 = *a;
        } else {
            src->v6 = true;
            src->a6 = *a;
        }
    }
}

enum sl_err sl_connect_err(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return SL_ERR_CONNECT_REFUSED;
    case ETIMEDOUT:
        return SL_ERR_CONNECT_TIMEOUT;
    case EMFILE:
    case ENFILE:
    case EADDRNOTAVAIL:
    case ENOBUFS:
    case ENOMEM:
        return SL_ERR_RESOURCES;
    default:
        return SL_ERR_CONNECT_ERROR;
    }
}

void sl_tcp_quickack(int fd, bool on)
{
    int v = on;

    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &v, sizeof(v));
}

int sl_source_connect(const struct sl_source *src, const struct sl_addr *addr, uint16_t port,
                      bool sends_first)
{
    struct sockaddr_storage ss;
    socklen_t len = sl_addr_to_sockaddr(addr, port, &ss);
    int fd, one = 1, e;

    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((ss.ss_family == AF_INET && src->v4) || (ss.ss_family == AF_INET6 && src->v6)) {
        struct sockaddr_storage sa;
        socklen_t sl = sl_addr_to_sockaddr(ss.ss_family == AF_INET ? &src->a4 : &src->a6, 0, &sa);

        /* Port chosen at connect time, so a source address is not limited to 28k ports
         * across all targets (Linux >= 4.2). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sl) == -1)
            goto fail;
    }
    if (sends_first)
        sl_tcp_quickack(fd, false); /* the handshake's last ACK leaves with our first bytes */
    if (connect(fd, (struct sockaddr *)&ss, len) == -1 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}
