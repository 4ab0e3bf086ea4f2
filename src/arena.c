/* Arena: a chunked bump allocator for one config snapshot. Memory comes zeroed and 16-byte
 * aligned from chunks of ~16 KiB; an allocation too big for that gets a chunk of its own, so
 * it wastes nothing of the current one. Nothing is freed before sl_arena_deinit. Out of memory
 * aborts: the arena only serves config loading, where there is nothing sensible to fall back on. */
#include "sluice/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16
#define CHUNK_SIZE ((size_t)16 * 1024)
#define BIG_SIZE (CHUNK_SIZE / 4)

struct sl_arena_chunk {
    struct sl_arena_chunk *next;
    unsigned char *data; /* first aligned byte after the header */
    size_t used, size;
};

static void oom(size_t size)
{
    fprintf(stderr, "sluice: out of memory (arena allocation of %zu bytes)\n", size);
    abort();
}

static struct sl_arena_chunk *chunk_new(size_t size)
{
    struct sl_arena_chunk *c;
    uintptr_t p;

    if (size > SIZE_MAX - sizeof(*c) - ALIGN)
        oom(size);
    /* calloc: bump allocations are never reused, so the chunk stays zeroed */
    c = calloc(1, sizeof(*c) + ALIGN + size);
    if (c == NULL)
        oom(size);
    p = (uintptr_t)(c + 1);
    p = (p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    c->data = (unsigned char *)p;
    c->size = size;
    return c;
}

void sl_arena_init(struct sl_arena *a)
{
    a->head = NULL;
}

void sl_arena_deinit(struct sl_arena *a)
{
    struct sl_arena_chunk *c = a->head;

    while (c != NULL) {
        struct sl_arena_chunk *next = c->next;

        free(c);
        c = next;
    }
    a->head = NULL;
}

void *sl_arena_alloc(struct sl_arena *a, size_t size)
{
    struct sl_arena_chunk *c = a->head;
    size_t rounded;

    if (size == 0)
        size = 1; /* distinct pointers for distinct calls */
    if (size > SIZE_MAX - ALIGN)
        oom(size);
    rounded = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);

    if (rounded > BIG_SIZE) {
        /* Own chunk, linked behind the head so the head keeps serving small requests. */
        struct sl_arena_chunk *big = chunk_new(rounded);

        big->used = rounded;
        if (c != NULL) {
            big->next = c->next;
            c->next = big;
        } else {
            a->head = big;
        }
        return big->data;
    }
    if (c == NULL || c->size - c->used < rounded) {
        c = chunk_new(CHUNK_SIZE);
        c->next = a->head;
        a->head = c;
    }
    c->used += rounded;
    return c->data + c->used - rounded;
}

void *sl_arena_calloc(struct sl_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        oom(SIZE_MAX);
    return sl_arena_alloc(a, n * size);
}

char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = sl_arena_alloc(a, len + 1);

    memcpy(p, s, len);
    return p; /* already NUL-terminated: arena memory is zeroed */
}

char *sl_arena_strdup(struct sl_arena *a, const char *s)
{
    return sl_arena_strndup(a, s, strlen(s));
}

char *sl_arena_printf(struct sl_arena *a, const char *fmt, ...)
{
    va_list ap;
    char *tmp, *p;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&tmp, fmt, ap);
    va_end(ap);
    if (n == -1)
        oom(0);
    p = sl_arena_alloc(a, (size_t)n + 1);
    memcpy(p, tmp, (size_t)n + 1);
    free(tmp);
    return p;
}
