/* Shared return codes and small helpers used by every module. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

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

#if defined(__GNUC__)
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SL_PRINTF(f, a)
#endif

#endif
