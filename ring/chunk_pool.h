/*
 * ring/chunk_pool.h - per-thread pools of fixed-size chunks (ring/chunk.h).
 *
 * A pool belongs to one thread, its owner (a shard, the agent loop).  At
 * creation it carves <n> chunks out of a single allocation; after that it
 * never allocates.  Only the owner takes chunks out; a chunk may then travel
 * to other threads (as a struct ring_desc through a ring) and whoever drops
 * the last reference sends it home:
 *
 *   owner thread                           any other thread
 *   ------------                           ----------------
 *   c = chunk_pool_get(p)   refs = 1
 *   fill c, push desc  -------------------> pop desc, use c
 *                                          chunk_put(c): refs 1 -> 0
 *   free list <-- chunk_pool_reclaim <---- return ring (MPSC, one slot per chunk)
 *
 *   a chunk put by the owner itself goes straight onto the free list.
 *
 * The return ring has a slot for every chunk of the pool, so a return can
 * never fail or block (proof in ring/mpsc.c).  chunk_pool_get drains the
 * return ring by itself when the free list runs dry; an owner can also call
 * chunk_pool_reclaim once per loop turn to keep returns flowing in batches.
 *
 * "Owner" is recorded as the owner's pthread_t, compared with pthread_self()
 * in chunk_put.  We prefer it to a thread-local "my pool id": it costs one
 * thread-pointer read, allows any number of pools per thread, and needs no
 * registration in the threads that only put chunks.  Its one trap is that
 * glibc reuses the pthread_t of a thread that has exited, so a pool must be
 * freed, or adopted by its next owner (chunk_pool_adopt), before its owner
 * thread exits.
 *
 * Usage (owner):
 *	int err;
 *	struct chunk_pool *p = chunk_pool_new(3, 1024, 64 * 1024, NULL, &err);
 *	struct chunk *c = chunk_pool_get(p);   // NULL when exhausted
 *	memcpy(chunk_ptr(c), payload, n); c->len = n;
 *	hdr = chunk_push_front(c, 8);          // frame header in the headroom
 *	... hand c to another thread; it calls chunk_put(c) when done ...
 *	chunk_pool_reclaim(p);                 // once per loop turn
 *	chunk_pool_free(p);                    // after every chunk came back
 */
#ifndef SW_RING_CHUNK_POOL_H
#define SW_RING_CHUNK_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "ring/chunk.h"

struct chunk_pool;

/*
 * Optional source of the pool's chunk memory (one block per pool), e.g. the
 * shard's own heap.  alloc returns <size> bytes aligned to <align> (a power
 * of two) or NULL; free gets back the pointer and size alloc returned/got.
 */
struct chunk_pool_allocator {
	void *(*alloc)(void *ctx, size_t size, size_t align);
	void (*free)(void *ctx, void *p, size_t size);
	void *ctx; /* passed to both */
};

/* Counters of one pool, read by its owner (chunk_pool_read_stats). */
struct chunk_pool_stats {
	size_t total;	    /* chunks created */
	size_t free;	    /* on the owner's free list */
	size_t returning;   /* put by other threads, waiting in the return ring */
	size_t in_use;	    /* total - free - returning: held by someone */
	uint64_t exhausted; /* chunk_pool_get calls that found no chunk */
};

/*
 * Create a pool of <nchunks> (>= 1) chunks of <data_cap> bytes each (data[]
 * size, > CHUNK_HEADROOM), every chunk tagged with <pool_id>.  Chunk memory
 * comes from <alloc>, or aligned_alloc/free when <alloc> is NULL; data[] of
 * each chunk starts on a 64-byte boundary.  The calling thread becomes the
 * owner.  Returns the pool, or NULL with *<err> = -EINVAL (bad size or
 * count) or -ENOMEM.
 */
struct chunk_pool *chunk_pool_new(uint16_t pool_id, size_t nchunks, uint32_t data_cap,
	const struct chunk_pool_allocator *alloc, int *err);

/*
 * Release <pool> and all its chunks (NULL is a no-op, returns 0).  Reclaims
 * returns first; if any chunk is still held, frees nothing and returns
 * -EBUSY.  Returns 0 when freed.  Owner thread only.
 */
int chunk_pool_free(struct chunk_pool *pool);

/*
 * Make the calling thread the owner of <pool> (e.g. a pool created at boot,
 * handed to its shard thread).  The caller MUST make sure that no other
 * thread can call chunk_put on this pool's chunks, nor any pool function,
 * until it receives <pool> or a chunk through something that synchronizes
 * with this call (a ring push, thread creation, a mutex).
 */
void chunk_pool_adopt(struct chunk_pool *pool);

/*
 * Take a chunk: refs = 1, off = CHUNK_HEADROOM, len = 0, flags = 0, next and
 * user NULL, data[] contents undefined.  When the free list is empty, drains the return ring first.
 * Returns NULL when no chunk is free (counted in exhausted).  Owner only.
 */
struct chunk *chunk_pool_get(struct chunk_pool *pool);

/*
 * Move every chunk that other threads have returned onto the free list.
 * Returns how many were moved.  Bounded: at most the chunks that were out
 * when it started.  Owner thread only.
 */
size_t chunk_pool_reclaim(struct chunk_pool *pool);

/* Fill *<st> with the current counters of <pool>.  Owner thread only. */
void chunk_pool_read_stats(const struct chunk_pool *pool, struct chunk_pool_stats *st);

/* Id given to chunk_pool_new(), also in every chunk's pool_id.  Any thread. */
uint16_t chunk_pool_id(const struct chunk_pool *pool);

/*
 * Add a reference to <c> for fan-out.  The caller MUST already hold one
 * (so the chunk cannot go home meanwhile).  Any thread.
 */
void chunk_ref(struct chunk *c);

/*
 * Drop a reference to <c>.  On the last one the chunk goes back to its
 * pool: onto the free list if the caller is the pool's owner, else into the
 * pool's return ring, which cannot be full.  The caller MUST NOT touch <c>
 * afterwards.  Any thread.
 */
void chunk_put(struct chunk *c);

#endif /* SW_RING_CHUNK_POOL_H */
