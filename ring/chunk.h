/*
 * ring/chunk.h - the data-path buffer: a fixed-size chunk with headroom.
 *
 *   data[0]          data[off]                 data[off+len]        data[cap]
 *   |<-- headroom -->|<======== valid bytes ==========>|<-- tailroom -->|
 *
 * Payload is normally received at data[CHUNK_HEADROOM]; a frame header is
 * then written into the headroom right in front of it (chunk_push_front),
 * so the frame goes out from the same memory with no payload copy.
 *
 * A chunk belongs to exactly one pool (one shard or agent loop).  Only the
 * pool's owner thread allocates from it; any thread may drop its reference,
 * and the last reference hands the chunk back to its pool (chunk_pool.h).
 * The refcount exists for fan-out only; a chunk with one reader has refs 1.
 */
#ifndef SW_RING_CHUNK_H
#define SW_RING_CHUNK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNK_HEADROOM 64u /* bytes before the payload, enough for any data-frame header */

struct chunk_pool;

/*
 * owner: the thread holding the (single) reference moves off/len; refs is
 * shared (atomic) once fanned out.  pool and pool_id never change.
 */
struct chunk {
	struct chunk_pool *pool; /* pool to return to; fixed at creation */
	uint32_t off;            /* offset of the first valid byte in data[] */
	uint32_t len;            /* valid bytes from off */
	uint32_t cap;            /* size of data[] in bytes */
	uint16_t pool_id;        /* id of the owning shard/pool, for return routing */
	uint16_t flags;          /* free for the current owner's use */
	atomic_uint refs;        /* references; the chunk returns to its pool at 0 */
	struct chunk *next;      /* free-list / queue link, for the current owner's use */
	void *user;              /* current owner's use (e.g. the session that filled it) */
	unsigned char data[];    /* cap bytes */
};

/* First valid byte. */
static inline unsigned char *chunk_ptr(const struct chunk *c)
{
	return (unsigned char *)c->data + c->off;
}

/* Bytes free in front of the valid data. */
static inline uint32_t chunk_headroom(const struct chunk *c)
{
	return c->off;
}

/* Bytes free after the valid data. */
static inline uint32_t chunk_tailroom(const struct chunk *c)
{
	return c->cap - c->off - c->len;
}

/* Empty the chunk and place the payload start at CHUNK_HEADROOM. */
static inline void chunk_reset(struct chunk *c)
{
	c->off = CHUNK_HEADROOM;
	c->len = 0;
}

/*
 * Grow the valid region by <n> bytes at the front and return a pointer to
 * them, or NULL when the headroom is smaller than <n> (nothing changes).
 */
static inline unsigned char *chunk_push_front(struct chunk *c, uint32_t n)
{
	if (n > c->off)
		return NULL;
	c->off -= n;
	c->len += n;
	return c->data + c->off;
}

/* Drop <n> bytes from the front of the valid region (n <= len). */
static inline void chunk_pull_front(struct chunk *c, uint32_t n)
{
	c->off += n;
	c->len -= n;
}

#endif /* SW_RING_CHUNK_H */
