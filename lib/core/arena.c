/* Bump arenas: a tape's temporaries come from one, so a whole recording is
 * freed in O(1) and steady-state training makes no allocator calls. */
#include <string.h>

#include "core/core_internal.h"

#define HDR_SIZE ((sizeof(mnas_arena_chunk) + MNAS_ALIGN - 1) & ~(size_t)(MNAS_ALIGN - 1))

static unsigned char *chunk_data(mnas_arena_chunk *c) { return (unsigned char *)c + HDR_SIZE; }

void mnas__arena_init(mnas_arena *a, mnas_ctx *ctx, size_t min_chunk)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->min_chunk = min_chunk < 4096 ? 4096 : min_chunk;
}

static mnas_arena_chunk *new_chunk(mnas_arena *a, size_t need)
{
    size_t size = a->min_chunk;
    /* Grow geometrically with what is already reserved, so the number of
     * chunks stays logarithmic in the peak size. */
    if (a->reserved > size) size = a->reserved;
    if (size < need) size = need;
    if (size > SIZE_MAX - HDR_SIZE - MNAS_ALIGN) return NULL;
    mnas_arena_chunk *c = mnas__alloc_aligned(a->ctx, HDR_SIZE + size);
    if (!c) return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    a->reserved += size;
    return c;
}

void *mnas__arena_alloc(mnas_arena *a, size_t size)
{
    if (size > SIZE_MAX - MNAS_ALIGN) return NULL;
    size = (size + MNAS_ALIGN - 1) & ~(size_t)(MNAS_ALIGN - 1);
    if (size == 0) size = MNAS_ALIGN;
    mnas_arena_chunk *c = a->cur;
    while (c && c->size - c->used < size) {
        /* Move on to the next kept chunk (after a reset), if it is empty. */
        mnas_arena_chunk *n = c->next;
        if (n && n->size >= size) {
            n->used = 0;
            a->cur = c = n;
            break;
        }
        if (n) {
            /* Too small for this request: put a fresh chunk in front of it. */
            mnas_arena_chunk *f = new_chunk(a, size);
            if (!f) return NULL;
            f->next = n;
            c->next = f;
            a->cur = c = f;
            break;
        }
        mnas_arena_chunk *f = new_chunk(a, size);
        if (!f) return NULL;
        c->next = f;
        a->cur = c = f;
        break;
    }
    if (!c) {
        c = new_chunk(a, size);
        if (!c) return NULL;
        a->first = a->cur = c;
    }
    void *p = chunk_data(c) + c->used;
    c->used += size;
    a->in_use += size;
    if (a->in_use > a->high_water) a->high_water = a->in_use;
    return p;
}

void mnas__arena_reset(mnas_arena *a)
{
    a->cur = a->first;
    if (a->first) a->first->used = 0;
    a->in_use = 0;
}

mnas_arena_mark mnas__arena_mark(const mnas_arena *a)
{
    mnas_arena_mark m = { a->cur, a->cur ? a->cur->used : 0, a->in_use };
    return m;
}

void mnas__arena_rewind(mnas_arena *a, mnas_arena_mark m)
{
    if (!m.chunk) {
        /* nothing was allocated at the mark: the whole arena is free */
        mnas__arena_reset(a);
        return;
    }
    a->cur = m.chunk;
    m.chunk->used = m.used;
    a->in_use = m.in_use;
}

void mnas__arena_release(mnas_arena *a)
{
    mnas_arena_chunk *c = a->first;
    while (c) {
        mnas_arena_chunk *n = c->next;
        mnas__free_aligned(a->ctx, c);
        c = n;
    }
    a->first = a->cur = NULL;
    a->reserved = a->in_use = 0;
}
