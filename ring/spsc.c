/*
 * ring/spsc.c - bounded single-producer single-consumer descriptor ring.
 *
 * Two free-running indices, each written by one side only: tail by the
 * producer (release: "slots below tail are filled"), head by the consumer
 * (release: "slots below head may be reused").  Each side reads the other's
 * index with acquire, and only when its cached copy says it cannot proceed.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "ring/spsc.h"

#define RING_SPSC_LINE 64 /* cache line size in bytes on the targets we care about */

/*
 * owner: none, shared by exactly two threads.  Fields are grouped by the
 * side that writes them, one cache line per group, so the producer's
 * stores never invalidate the consumer's line and vice versa.
 */
struct ring_spsc {
	/* read-only after ring_spsc_new() */
	size_t mask; /* capacity - 1 */

	/* consumer's line: head written by the consumer, read by the producer */
	alignas(RING_SPSC_LINE) atomic_size_t head; /* next index to pop (atomic) */
	size_t tail_cache;			    /* consumer only: last tail it loaded */

	/* producer's line: tail written by the producer, read by the consumer */
	alignas(RING_SPSC_LINE) atomic_size_t tail; /* next index to push (atomic) */
	size_t head_cache;			    /* producer only: last head it loaded */

	/* slot i & mask: written by the producer below tail, read by the consumer below it */
	alignas(RING_SPSC_LINE) struct ring_desc slots[];
};

struct ring_spsc *ring_spsc_new(size_t capacity, int *err)
{
	struct ring_spsc *r;
	size_t bytes;

	if (capacity < 2 || (capacity & (capacity - 1)) != 0 ||
		capacity > (SIZE_MAX - sizeof(*r) - RING_SPSC_LINE) / sizeof(r->slots[0])) {
		*err = -EINVAL;
		return NULL;
	}
	bytes = sizeof(*r) + capacity * sizeof(r->slots[0]);
	/* aligned_alloc wants a multiple of the alignment */
	bytes = (bytes + RING_SPSC_LINE - 1) & ~(size_t)(RING_SPSC_LINE - 1);
	r = aligned_alloc(RING_SPSC_LINE, bytes);
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	r->mask = capacity - 1;
	r->tail_cache = 0;
	r->head_cache = 0;
	/* not atomic: not shared yet; whatever hands <r> to another thread orders these */
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	*err = 0;
	return r;
}

void ring_spsc_free(struct ring_spsc *r)
{
	free(r);
}

/*
 * Room for how many more descriptors, refreshing the producer's copy of
 * head when the copy shows less than <want>.
 */
static size_t ring_spsc_room(struct ring_spsc *r, size_t t, size_t want)
{
	size_t room = r->mask + 1 - (t - r->head_cache);

	if (room >= want)
		return room;
	/*
	 * acquire: pairs with the consumer's release store of head, so its
	 * reads of the slots we are about to overwrite have completed.
	 */
	r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
	return r->mask + 1 - (t - r->head_cache);
}

int ring_spsc_push(struct ring_spsc *r, struct ring_desc d)
{
	/* relaxed: tail is written by this thread only */
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

	if (ring_spsc_room(r, t, 1) == 0)
		return -EAGAIN;
	r->slots[t & r->mask] = d;
	/* release: publishes the slot written above to the consumer's acquire load of tail */
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return 0;
}

size_t ring_spsc_push_batch(struct ring_spsc *r, const struct ring_desc *d, size_t n)
{
	/* relaxed: tail is written by this thread only */
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t room = ring_spsc_room(r, t, n);
	size_t i;

	if (n > room)
		n = room;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		r->slots[(t + i) & r->mask] = d[i];
	/* release: publishes all <n> slots at once to the consumer's acquire load of tail */
	atomic_store_explicit(&r->tail, t + n, memory_order_release);
	return n;
}

/*
 * How many descriptors are ready, refreshing the consumer's copy of tail
 * when the copy shows fewer than <want>.
 */
static size_t ring_spsc_ready(struct ring_spsc *r, size_t h, size_t want)
{
	size_t ready = r->tail_cache - h;

	if (ready >= want)
		return ready;
	/* acquire: pairs with the producer's release store of tail: slots below it are filled */
	r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
	return r->tail_cache - h;
}

int ring_spsc_pop(struct ring_spsc *r, struct ring_desc *out)
{
	/* relaxed: head is written by this thread only */
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);

	if (ring_spsc_ready(r, h, 1) == 0)
		return -EAGAIN;
	*out = r->slots[h & r->mask];
	/* release: our read of the slot completes before the producer may overwrite it */
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return 0;
}

size_t ring_spsc_pop_batch(struct ring_spsc *r, struct ring_desc *out, size_t max)
{
	/* relaxed: head is written by this thread only */
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t n = ring_spsc_ready(r, h, max);
	size_t i;

	if (n > max)
		n = max;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		out[i] = r->slots[(h + i) & r->mask];
	/* release: our reads of the <n> slots complete before the producer may overwrite them */
	atomic_store_explicit(&r->head, h + n, memory_order_release);
	return n;
}

size_t ring_spsc_size(const struct ring_spsc *r)
{
	/*
	 * acquire: the consumer loaded a tail >= this head before storing it,
	 * and that load happens-before our tail load below, so coherence makes
	 * our tail >= head (no underflow).
	 */
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	/* relaxed: a snapshot; it only has to be no older than the one the consumer saw */
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

	/* the producer may have pushed a lap's worth between the two loads */
	return t - h > r->mask + 1 ? r->mask + 1 : t - h;
}

size_t ring_spsc_capacity(const struct ring_spsc *r)
{
	return r->mask + 1;
}
