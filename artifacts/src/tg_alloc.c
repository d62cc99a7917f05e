/*
 * tg_alloc.c -- the library's own allocator: a first-fit free list with coalescing.
 *
 * WASM has no libc, so memory comes from memory.grow (64 KiB pages appended after the current
 * end of linear memory, which keeps the heap contiguous). The native build runs the SAME
 * allocator over large malloc'd chunks, so native tests exercise the code WASM relies on.
 *
 * Layout: every block starts with a 16-byte header holding its total size (header included,
 * a multiple of 16); the payload follows, so payloads are 16-byte aligned. Free blocks form a
 * singly linked list sorted by address, which makes coalescing with both neighbours a single
 * walk on free.
 */
#include "tg_internal.h"

/* Under emscripten the module has a libc whose malloc owns memory.grow (sbrk): growing memory
 * behind its back would corrupt its heap, so emscripten builds take the malloc'd-chunk path. */
#if defined(__wasm__) && !defined(__EMSCRIPTEN__)
#define TG_OWN_MEMORY 1
#endif

#ifndef TG_OWN_MEMORY
#include <stdlib.h>
#endif

#define TG_ALIGN 16u
#define TG_HDR 16u
#define TG_MIN_BLOCK 32u /* header + 16 bytes, so a split never leaves an unusable sliver */

typedef struct tg_block {
    size_t size;           /* total bytes of this block, header included */
    struct tg_block *next; /* next free block by address; meaningful only while free */
} tg_block;

_Static_assert(sizeof(tg_block) <= TG_HDR, "block header must fit in 16 bytes");

static tg_block *free_list; /* sorted by address */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

/* Insert a free block in address order and merge it with touching neighbours. */
static void insert_free(tg_block *b) {
    tg_block *prev = 0;
    tg_block *cur = free_list;
    while (cur && cur < b) {
        prev = cur;
        cur = cur->next;
    }
    b->next = cur;
    if (cur && (char *)b + b->size == (char *)cur) {
        b->size += cur->size;
        b->next = cur->next;
    }
    if (prev) {
        prev->next = b;
        if ((char *)prev + prev->size == (char *)b) {
            prev->size += b->size;
            prev->next = b->next;
        }
    } else {
        free_list = b;
    }
}

#ifdef TG_OWN_MEMORY
extern unsigned char __heap_base;
static int heap_started;

/* Hand the allocator at least `need` more bytes; returns 0 when memory cannot grow. */
static int add_memory(size_t need) {
    const size_t page = 65536u;
    if (!heap_started) {
        /* First use: everything between the linker's heap base and the current end. */
        heap_started = 1;
        size_t start = round_up((size_t)&__heap_base, TG_ALIGN);
        size_t end = __builtin_wasm_memory_size(0) * page;
        if (end > start + TG_MIN_BLOCK) {
            tg_block *b = (tg_block *)start;
            b->size = (end - start) & ~(size_t)(TG_ALIGN - 1);
            insert_free(b);
            if (b->size >= need) return 1;
        }
    }
    size_t pages = (need + page - 1) / page;
    size_t old = __builtin_wasm_memory_grow(0, pages);
    if (old == (size_t)-1) return 0;
    tg_block *b = (tg_block *)(old * page);
    b->size = pages * page;
    insert_free(b); /* merges with a free block that ended at the old end of memory */
    return 1;
}
#else
static int add_memory(size_t need) {
    const size_t chunk = (size_t)4 << 20;
    size_t bytes = need + TG_ALIGN > chunk ? need + TG_ALIGN : chunk;
    unsigned char *raw = malloc(bytes);
    if (!raw) return 0;
    size_t start = round_up((size_t)raw, TG_ALIGN);
    tg_block *b = (tg_block *)start;
    b->size = (bytes - (start - (size_t)raw)) & ~(size_t)(TG_ALIGN - 1);
    insert_free(b); /* chunks are never returned to the OS; the process owns them */
    return 1;
}
#endif

TG_API void *tg_alloc(size_t nbytes) {
    if (nbytes > (size_t)-1 - 2 * TG_MIN_BLOCK) return 0;
    size_t need = round_up(nbytes ? nbytes : 1, TG_ALIGN) + TG_HDR;
    for (int attempt = 0; attempt < 2; attempt++) {
        tg_block *prev = 0;
        for (tg_block *b = free_list; b; prev = b, b = b->next) {
            if (b->size < need) continue;
            if (b->size - need >= TG_MIN_BLOCK) {
                /* Split: keep the tail free in the same list position. */
                tg_block *rest = (tg_block *)((char *)b + need);
                rest->size = b->size - need;
                rest->next = b->next;
                b->size = need;
                if (prev) prev->next = rest;
                else free_list = rest;
            } else if (prev) {
                prev->next = b->next;
            } else {
                free_list = b->next;
            }
            b->next = 0;
            return (char *)b + TG_HDR;
        }
        if (!add_memory(need)) return 0;
    }
    return 0;
}

TG_API void tg_free(void *p) {
    if (!p) return;
    insert_free((tg_block *)((char *)p - TG_HDR));
}

void tg_zero_bytes(void *p, size_t nbytes) {
    unsigned char *c = p;
    for (size_t i = 0; i < nbytes; i++) c[i] = 0;
}

void tg_zero(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = 0.0f;
}

void tg_copy(float *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}
