/* Shared return codes and small helpers used by every module. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Steps that may wait return one of these (nginx-style); plain calls return 0 or -1. */
enum sl_status {
    SL_OK = 0,
    SL_ERROR = -1,
    SL_AGAIN = -2,    /* would block; try again when the fd is ready */
    SL_DECLINED = -3, /* this target refused; try another */
    SL_BUSY = -4,     /* no target left */
};

#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Invariants only, never peer input. */
#define SL_BUG_ON(cond)                                                                   \
    do {                                                                                  \
        if (SL_UNLIKELY(cond)) {                                                          \
            fprintf(stderr, "sluice: BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Why a connection or tunnel ended (haproxy CO_ER_*): shown in the access log and in the
 * one-line body of a 502/503/504. sl_err_str() gives the text. */
enum sl_err {
    SL_ERR_NONE = 0,
    SL_ERR_CLIENT_CLOSED,   /* the client closed (FIN) */
    SL_ERR_TARGET_CLOSED,   /* the target closed (FIN) */
    SL_ERR_CLIENT_RESET,    /* the client reset the connection or a write to it failed */
    SL_ERR_TARGET_RESET,    /* the target reset the connection or a write to it failed */
    SL_ERR_IDLE_TIMEOUT,    /* no bytes either way for the idle timeout */
    SL_ERR_CONNECT_REFUSED, /* every target tried refused the connection */
    SL_ERR_CONNECT_TIMEOUT, /* connecting to the target timed out */
    SL_ERR_CONNECT_ERROR,   /* connect failed otherwise (unreachable, no source address) */
    SL_ERR_NO_TARGET,       /* the group has no target that may take a connection */
    SL_ERR_TARGET_TIMEOUT,  /* the target did not answer within the timeout */
    SL_ERR_BAD_RESPONSE,    /* the target's response could not be parsed */
    SL_ERR_BAD_REQUEST,     /* the client's request was refused (4xx) */
    SL_ERR_SHUTDOWN,        /* sluice stopped and the drain period ended */
    SL_ERR_RESOURCES,       /* out of memory, fds or pipes */
    SL_ERR_TARGET_DOWN,     /* the health checker marked the target down (closeOnTargetDown) */
    SL_ERR_TARGET_REMOVED,  /* a reload removed the target and sluice.drainTimeout passed */
    SL_ERR_COUNT
};

/* Microseconds and milliseconds of <clk>: CLOCK_MONOTONIC for durations and deadlines,
 * CLOCK_REALTIME for timestamps (since the epoch). */
static inline uint64_t sl_clock_us(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static inline uint64_t sl_clock_ms(clockid_t clk)
{
    return sl_clock_us(clk) / 1000u;
}

/* xorshift64* (Vigna) on <*state>, which must not be 0: fast and good enough to spread
 * connections by weight, first health checks and retry jitter; nothing secret. */
static inline uint64_t sl_xorshift64s(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* A seed for sl_xorshift64s, never 0: getrandom, else the clock, the pid and <salt>. */
uint64_t sl_seed64(uint64_t salt);

/* "2026-11-24T03:39:19.991Z" for <ms> since the epoch, into <buf> (SL_ISO_LEN bytes). */
#define SL_ISO_LEN 32
char *sl_iso_ms(uint64_t ms, char *buf);

/* The reason as a short lower-case phrase ("target refused the connection"). */
const char *sl_err_str(enum sl_err e);

#if defined(__GNUC__)
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SL_PRINTF(f, a)
#endif

#endif
