/* Bump allocator owning everything in one config snapshot: freed in one call. */
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stddef.h>

struct sl_arena_chunk;

struct sl_arena {
    struct sl_arena_chunk *head;
};

void sl_arena_init(struct sl_arena *a);
void sl_arena_deinit(struct sl_arena *a);
/* Zeroed, 16-byte aligned memory; aborts on out-of-memory (config loading only). */
void *sl_arena_alloc(struct sl_arena *a, size_t size);
void *sl_arena_calloc(struct sl_arena *a, size_t n, size_t size);
char *sl_arena_strdup(struct sl_arena *a, const char *s);
char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n);
char *sl_arena_printf(struct sl_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
