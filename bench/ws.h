/* RFC 6455 pieces shared by the sluice-bench echo server and its clients: frame headers,
 * masking, the handshake's accept key, and a minimal HTTP/1.1 head reader (sluice-bench is
 * its own peer: it parses what it and well-behaved clients send, not arbitrary input). Also
 * the few process helpers every mode needs. */
#ifndef SLUICE_BENCH_WS_H
#define SLUICE_BENCH_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xA
#define WS_FIN 0x80

#define WS_HDR_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_ACCEPT_LEN 28
#define WS_KEY_LEN 24
#define WS_CONTROL_MAX 125

/* One frame header as read from the wire. */
struct ws_frame {
    bool fin;
    bool masked;
    uint8_t rsv; /* RSV1-3 bits, shifted down; nonzero is an error without extensions */
    uint8_t opcode;
    uint8_t key[4]; /* mask key when masked */
    size_t hlen;    /* header bytes, mask key included */
    uint64_t len;   /* payload bytes */
};

/* Parses the frame header at <p> (<n> bytes available). Returns 1 when complete, 0 when more
 * bytes are needed, -1 when the 64-bit length has its top bit set (RFC 6455 5.2). */
int ws_frame_parse(const uint8_t *p, size_t n, struct ws_frame *f);

/* Bytes a header for <len> takes, without (<masked> false) or with a mask key. */
size_t ws_frame_hlen(uint64_t len, bool masked);

/* Writes a header (first byte <b0>: FIN | opcode) for <len> payload bytes at <out>, masked with
 * <key> unless it is NULL. Returns the header length (ws_frame_hlen). */
size_t ws_frame_header(uint8_t *out, uint8_t b0, uint64_t len, const uint8_t *key);

/* dst[i] = src[i] ^ key[(phase + i) % 4] for n bytes, 8 bytes at a time; <dst> may be <src>.
 * Returns the phase after the last byte, for the next chunk of the same payload. */
unsigned ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], unsigned phase);

/* Sec-WebSocket-Accept for the client's key: base64(SHA-1(key GUID)), NUL-terminated in <out>. */
void ws_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* Base64 of 16 random bytes from <rnd>, NUL-terminated: a Sec-WebSocket-Key. */
void ws_make_key(const uint8_t rnd[16], char out[WS_KEY_LEN + 1]);

/* Offset just past the "\r\n\r\n" that ends an HTTP head in p[0, n), or 0 when not there yet.
 * <from> is where to resume a previous search (0 the first time). */
size_t ws_head_end(const char *p, size_t n, size_t from);

/* One header field of a head; <name> and <val> point into the head, <val> trimmed. */
struct ws_hdr {
    const char *name, *val;
    size_t name_len, val_len;
};

/* Reads the header line at *<cur> (the start of a line, before <end>, the end of the head)
 * and moves *<cur> to the next. Returns 1 with <h> set, 0 at the blank line that ends the
 * head, -1 on a malformed line. */
int ws_head_next(const char **cur, const char *end, struct ws_hdr *h);

/* Whether <h>'s name is <name> (ASCII case-insensitive). */
bool ws_hdr_is(const struct ws_hdr *h, const char *name);

/* Whether the comma-separated list v[0, n) has the token <tok> (case-insensitive). */
bool ws_list_has(const char *v, size_t n, const char *tok);

/* The first member of the comma-separated list v[0, n): sets *<len> and returns its start. */
const char *ws_list_first(const char *v, size_t n, size_t *len);

/* Process helpers for every mode. */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the soft limit now in force. */
unsigned long bench_raise_nofile(void);

/* Parses a byte count with an optional binary suffix (k, K, KiB, m, M, MiB, g, G, GiB);
 * -1 if <s> is not one or exceeds <max>. */
int bench_parse_size(const char *s, uint64_t max, uint64_t *out);

/* Parses a positive number of seconds (fractions allowed) up to <max>; -1 if invalid. */
int bench_parse_seconds(const char *s, double max, double *out);

/* Parses an unsigned integer in [min, max]; -1 if invalid. */
int bench_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);


/* Subcommands (server.c, client.c); <argv>[0] is the subcommand's name. Exit codes. */
int bench_server_main(int argc, char **argv);
int bench_client_main(int argc, char **argv);

/* Prints the usage text to stderr with an optional reason; returns 2. */
int bench_usage(const char *why);

#endif
