/*
 * ring/chunk_pool.c - fixed-size chunk pools with cross-thread return.
 *
 * Memory of a pool of n chunks, one block, every data[] 64-byte aligned:
 *
 *   | lead | struct chunk | data[cap, rounded up to 64] | lead | struct chunk | data ...
 *   ^block  ^chunk 0       ^64-aligned                         ^chunk 1
 *   |<------------------------ stride ------------------------>|
 *
 * The owner keeps a LIFO free list (the most recently used chunk is the one
 * most likely still in cache).  Returns from other threads go through an
 * MPSC ring whose capacity is >= the number of chunks.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ring/chunk_pool.h"
#include "ring/mpsc.h"

#define CHUNK_POOL_LINE 64     /* cache line and data[] alignment, bytes */
#define CHUNK_POOL_RECLAIM 32u /* descriptors popped per batch when reclaiming */

/* lead bytes before each struct chunk so that its data[] starts a line */
_Static_assert(offsetof(struct chunk, data) % alignof(struct chunk) == 0,
	"chunk header must end on its own alignment");

/*
 * owner: the owner thread.  Other threads call only chunk_put, which reads
 * the read-only group and pushes into <returns>; the owner-only group sits
 * on its own cache line so those reads do not bounce with the owner's writes.
 */
struct chunk_pool {
	/* read-only after chunk_pool_new() (owner: also chunk_pool_adopt) */
	pthread_t owner;		   /* thread allowed to get, reclaim, free */
	struct ring_mpsc *returns;	   /* other threads push returned chunks; the owner pops */
	unsigned char *mem;		   /* the block holding every chunk */
	size_t mem_bytes;		   /* its size, for the allocator's free */
	size_t stride;			   /* bytes from one chunk to the next */
	size_t lead;			   /* bytes from a stride's start to its struct chunk */
	size_t total;			   /* chunks in the pool */
	uint16_t id;			   /* copied into every chunk's pool_id */
	struct chunk_pool_allocator alloc; /* source of <mem> */

	/* owner only, on its own cache line */
	alignas(CHUNK_POOL_LINE) size_t nfree; /* chunks on free_list */
	struct chunk *free_list;	       /* LIFO, linked by chunk->next */
	uint64_t exhausted;		       /* chunk_pool_get calls that returned NULL */
};

static void *chunk_pool_default_alloc(void *ctx, size_t size, size_t align)
{
	return aligned_alloc(align, size);
}

static void chunk_pool_default_free(void *ctx, void *p, size_t size)
{
	free(p);
}

static size_t chunk_pool_round_line(size_t n)
{
	return (n + CHUNK_POOL_LINE - 1) & ~(size_t)(CHUNK_POOL_LINE - 1);
}

static struct chunk *chunk_pool_chunk(const struct chunk_pool *pool, size_t i)
{
	return (struct chunk *)(void *)(pool->mem + i * pool->stride + pool->lead);
}

struct chunk_pool *chunk_pool_new(uint16_t pool_id, size_t nchunks, uint32_t data_cap,
	const struct chunk_pool_allocator *alloc, int *err)
{
	size_t hdr = offsetof(struct chunk, data);
	size_t ring_cap = 2, i;
	struct chunk_pool *pool;
	struct chunk *c;
	int ret;

	if (nchunks == 0 || data_cap <= CHUNK_HEADROOM) {
		ret = -EINVAL;
		goto err;
	}
	pool = aligned_alloc(CHUNK_POOL_LINE, chunk_pool_round_line(sizeof(*pool)));
	if (!pool) {
		ret = -ENOMEM;
		goto err;
	}
	pool->owner = pthread_self();
	pool->id = pool_id;
	pool->total = nchunks;
	pool->lead = chunk_pool_round_line(hdr) - hdr;
	pool->stride = chunk_pool_round_line(hdr) + chunk_pool_round_line(data_cap);
	if (nchunks > SIZE_MAX / 2 / pool->stride) {
		ret = -EINVAL;
		goto err_free_pool;
	}
	pool->mem_bytes = nchunks * pool->stride;
	if (alloc) {
		pool->alloc = *alloc;
	} else {
		pool->alloc.alloc = chunk_pool_default_alloc;
		pool->alloc.free = chunk_pool_default_free;
		pool->alloc.ctx = NULL;
	}

	/* every chunk fits in the return ring at once, so returns never fail */
	while (ring_cap < nchunks)
		ring_cap <<= 1;
	pool->returns = ring_mpsc_new(ring_cap, &ret);
	if (!pool->returns)
		goto err_free_pool;

	pool->mem = pool->alloc.alloc(pool->alloc.ctx, pool->mem_bytes, CHUNK_POOL_LINE);
	if (!pool->mem) {
		ret = -ENOMEM;
		goto err_free_ring;
	}

	/* link in reverse so that the free list hands out chunk 0 first */
	pool->free_list = NULL;
	for (i = nchunks; i-- > 0;) {
		c = chunk_pool_chunk(pool, i);
		c->pool = pool;
		c->cap = data_cap;
		c->pool_id = pool_id;
		chunk_reset(c);
		/* not atomic: no other thread can see the chunk yet */
		atomic_init(&c->refs, 0);
		c->next = pool->free_list;
		pool->free_list = c;
	}
	pool->nfree = nchunks;
	pool->exhausted = 0;
	*err = 0;
	return pool;

err_free_ring:
	ring_mpsc_free(pool->returns);
err_free_pool:
	free(pool);
err:
	*err = ret;
	return NULL;
}

int chunk_pool_free(struct chunk_pool *pool)
{
	if (!pool)
		return 0;
	chunk_pool_reclaim(pool);
	if (pool->nfree != pool->total)
		return -EBUSY;
	pool->alloc.free(pool->alloc.ctx, pool->mem, pool->mem_bytes);
	ring_mpsc_free(pool->returns);
	free(pool);
	return 0;
}

void chunk_pool_adopt(struct chunk_pool *pool)
{
	pool->owner = pthread_self();
}

/* Put <c> (refs 0) on the free list.  Owner only. */
static void chunk_pool_push_free(struct chunk_pool *pool, struct chunk *c)
{
	c->next = pool->free_list;
	pool->free_list = c;
	pool->nfree++;
}

size_t chunk_pool_reclaim(struct chunk_pool *pool)
{
	struct ring_desc batch[CHUNK_POOL_RECLAIM];
	size_t moved = 0, n, i;

	/*
	 * Ends: while we run, the owner hands nothing out, so at most the
	 * chunks out at the start can come back, then pop_batch returns 0.
	 */
	while ((n = ring_mpsc_pop_batch(pool->returns, batch, CHUNK_POOL_RECLAIM)) > 0) {
		for (i = 0; i < n; i++)
			chunk_pool_push_free(pool, batch[i].ptr);
		moved += n;
	}
	return moved;
}

struct chunk *chunk_pool_get(struct chunk_pool *pool)
{
	struct chunk *c = pool->free_list;

	if (!c) {
		chunk_pool_reclaim(pool);
		c = pool->free_list;
		if (!c) {
			pool->exhausted++;
			return NULL;
		}
	}
	pool->free_list = c->next;
	pool->nfree--;
	/* the new holder starts clean: no stale link, owner data or flags */
	c->next = NULL;
	c->user = NULL;
	c->flags = 0;
	/*
	 * relaxed: the chunk is private to this thread until it is handed
	 * over, and the hand-over (a ring's release store) publishes it.
	 */
	atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
	chunk_reset(c);
	return c;
}

void chunk_pool_read_stats(const struct chunk_pool *pool, struct chunk_pool_stats *st)
{
	st->total = pool->total;
	st->free = pool->nfree;
	st->returning = ring_mpsc_size(pool->returns);
	st->in_use = pool->total - pool->nfree - st->returning;
	st->exhausted = pool->exhausted;
}

uint16_t chunk_pool_id(const struct chunk_pool *pool)
{
	return pool->id;
}

void chunk_ref(struct chunk *c)
{
	/*
	 * relaxed: the caller holds a reference, so the count cannot reach 0
	 * meanwhile; the new reference reaches its holder through a ring (or
	 * other hand-over) that orders everything itself.  Only atomicity is
	 * needed, as for any reference count increment.
	 */
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void chunk_put(struct chunk *c)
{
	struct chunk_pool *pool = c->pool;
	/*
	 * acq_rel: release so that our reads and writes of the chunk happen
	 * before its reuse by whoever drops the last reference; acquire so
	 * that the last dropper, which recycles it, sees every other holder's
	 * accesses as done (they all released into this count).
	 */
	unsigned int old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);

	assert(old != 0 && "chunk_put on a chunk with no reference");
	if (old != 1)
		return;
	if (pthread_equal(pthread_self(), pool->owner)) {
		chunk_pool_push_free(pool, c);
		return;
	}
	/*
	 * Cannot fail: the ring has a slot for every chunk of the pool (see
	 * "-EAGAIN means full" in ring/mpsc.c).  Were it to fail anyway, the
	 * chunk would leak without a trace, so stop loudly.
	 */
	if (ring_mpsc_push(pool->returns, (struct ring_desc){.ptr = c, .aux = 0}) != 0)
		abort();
}
