/* IP addresses and CIDR prefixes, independent of sockets. */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_ADDR_STRLEN 46 /* INET6_ADDRSTRLEN */

struct sl_addr {
    uint8_t family; /* AF_INET or AF_INET6; 0 = unset */
    uint8_t bytes[16];
};

struct sl_cidr {
    struct sl_addr addr; /* masked to the prefix */
    uint8_t prefix;      /* 0..32 or 0..128 */
};

/* Parses a bare IPv4 or IPv6 address; -1 if <s> is not one. */
int sl_addr_parse(const char *s, struct sl_addr *out);
/* Parses "ADDR/N" or a bare address (full-length prefix); -1 if invalid. */
int sl_cidr_parse(const char *s, struct sl_cidr *out);
/* IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 prefixes. */
bool sl_cidr_contains(const struct sl_cidr *c, const struct sl_addr *a);
bool sl_addr_equal(const struct sl_addr *a, const struct sl_addr *b);
bool sl_addr_is_any(const struct sl_addr *a);
/* Writes the text form into <buf> (at least SL_ADDR_STRLEN bytes); returns <buf>. */
char *sl_addr_format(const struct sl_addr *a, char *buf);
/* "ip:port", IPv6 as "[ip]:port"; <buf> at least SL_ADDR_STRLEN + 8 bytes. */
char *sl_addr_format_port(const struct sl_addr *a, uint16_t port, char *buf);
/* "<ip>:<port>" for an address as written in a config ("[<ip>]:<port>" for IPv6), into <buf>
 * (SL_ADDR_STRLEN + 8 bytes); returns <buf>. For labels that name what the operator wrote. */
char *sl_hostport(const char *ip, uint16_t port, char *buf);
/* Parses "IP:PORT" or "[IPv6]:PORT"; -1 if invalid. */
int sl_addr_parse_port(const char *s, struct sl_addr *out, uint16_t *port);
/* Conversion from and to socket addresses. */
int sl_addr_from_sockaddr(const struct sockaddr *sa, struct sl_addr *out, uint16_t *port);
socklen_t sl_addr_to_sockaddr(const struct sl_addr *a, uint16_t port, struct sockaddr_storage *ss);

#endif
