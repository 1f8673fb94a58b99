/*
 * ring/mpsc.c - bounded many-producer single-consumer descriptor ring
 * (Vyukov's bounded queue, per-slot sequence numbers; see mpsc.h).
 *
 * Orderings in one place:
 *  - slot seq carries the descriptor both ways: the producer's release
 *    store (seq = pos + 1) publishes the descriptor to the consumer's
 *    acquire load; the consumer's release store (seq = pos + cap) says its
 *    read is done, and the next lap's producer acquires it before writing.
 *  - tail only hands out indices.  The CAS alone would not need ordering,
 *    but tail is loaded with acquire and claimed with release so that
 *    "-EAGAIN means full" holds for the pushing thread.  So when at most
 *    cap distinct objects ever go through the ring, each coming back to a
 *    producer only after the consumer popped it (a chunk pool's return
 *    ring), a push never fails.  Argument: producer P, pushing object Y,
 *    reads tail == p.  Give index p to Y; then the cap + 1 indices
 *    p - cap .. p carry at most cap objects, so two of them, q < q', carry
 *    the same object X, and X went from q to q' through the consumer: pop
 *    of q (release store of slot seq), then whatever handed X out again,
 *    then the put that pushed it at q' (P itself when q' == p; otherwise a
 *    release CAS on tail that P's acquire load of tail synchronizes with,
 *    as every later change of tail is a CAS too).  The consumer pops in
 *    order, so its store freeing index p - cap came no later than the pop
 *    of q, and thus happens-before P's load of slot(p).seq, which cannot
 *    return the stale "still full" value.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ring/mpsc.h"

#define RING_MPSC_LINE 64 /* cache line size in bytes */

struct ring_mpsc_slot {
	atomic_size_t seq;  /* turn of this slot, see mpsc.h (atomic) */
	struct ring_desc d; /* written by the claiming producer, read by the consumer */
};

/*
 * owner: the consumer thread (it allocates, pops and frees); producers on
 * any thread touch only tail and the slots they claim.
 */
struct ring_mpsc {
	/* read-only after ring_mpsc_new() */
	size_t mask; /* capacity - 1 */

	/* producers (any thread), atomic */
	alignas(RING_MPSC_LINE) atomic_size_t tail; /* next index to claim */

	/* consumer only */
	alignas(RING_MPSC_LINE) size_t head; /* next index to pop */

	/* slots: seq atomic, descriptor handed over by seq (see above) */
	alignas(RING_MPSC_LINE) struct ring_mpsc_slot slots[];
};

struct ring_mpsc *ring_mpsc_new(size_t capacity, int *err)
{
	struct ring_mpsc *r;
	size_t bytes, i;

	if (capacity < 2 || (capacity & (capacity - 1)) != 0 ||
		capacity > (SIZE_MAX - sizeof(*r) - RING_MPSC_LINE) / sizeof(r->slots[0])) {
		*err = -EINVAL;
		return NULL;
	}
	bytes = sizeof(*r) + capacity * sizeof(r->slots[0]);
	/* aligned_alloc wants a multiple of the alignment */
	bytes = (bytes + RING_MPSC_LINE - 1) & ~(size_t)(RING_MPSC_LINE - 1);
	r = aligned_alloc(RING_MPSC_LINE, bytes);
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	r->mask = capacity - 1;
	r->head = 0;
	/* not atomic: the ring is not shared yet; whatever hands <r> to producers orders these */
	atomic_init(&r->tail, 0);
	for (i = 0; i < capacity; i++)
		atomic_init(&r->slots[i].seq, i);
	*err = 0;
	return r;
}

void ring_mpsc_free(struct ring_mpsc *r)
{
	free(r);
}

int ring_mpsc_push(struct ring_mpsc *r, struct ring_desc d)
{
	struct ring_mpsc_slot *s;
	size_t pos, seq;

	/* acquire: inherit the claims before ours, see "-EAGAIN means full" above */
	pos = atomic_load_explicit(&r->tail, memory_order_acquire);
	for (;;) {
		s = &r->slots[pos & r->mask];
		/*
		 * acquire: pairs with the consumer's release store that freed
		 * the slot, so its read of the old descriptor is done before we
		 * overwrite it.
		 */
		seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (seq == pos) {
			/*
			 * acq_rel on success: release lets later producers inherit
			 * our view through tail (see above), acquire as for the
			 * load of tail.  acquire on failure: pos is reloaded.
			 */
			if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1,
				    memory_order_acq_rel, memory_order_acquire))
				break;
			/* another producer took pos (or a spurious failure): pos is the new tail */
		} else if ((ptrdiff_t)(seq - pos) < 0) {
			/* slot still holds the descriptor of index pos - cap: full */
			return -EAGAIN;
		} else {
			/* another producer claimed pos since we loaded tail: catch up */
			/* acquire: as for the first load of tail */
			pos = atomic_load_explicit(&r->tail, memory_order_acquire);
		}
	}
	s->d = d;
	/* release: publishes the descriptor written above to the consumer's acquire load of seq */
	atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
	return 0;
}

/* Take the slot of index head if a producer has filled it.  Consumer only. */
static int ring_mpsc_take(struct ring_mpsc *r, struct ring_desc *out)
{
	struct ring_mpsc_slot *s = &r->slots[r->head & r->mask];
	/* acquire: pairs with the producer's release store of seq, so its descriptor is visible */
	size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);

	if (seq != r->head + 1)
		return -EAGAIN;
	*out = s->d;
	/*
	 * release: our read of the descriptor completes before the producer
	 * of index head + cap, which acquires seq, overwrites the slot.
	 */
	atomic_store_explicit(&s->seq, r->head + r->mask + 1, memory_order_release);
	r->head++;
	return 0;
}

int ring_mpsc_pop(struct ring_mpsc *r, struct ring_desc *out)
{
	return ring_mpsc_take(r, out);
}

size_t ring_mpsc_pop_batch(struct ring_mpsc *r, struct ring_desc *out, size_t max)
{
	size_t n = 0;

	while (n < max && ring_mpsc_take(r, &out[n]) == 0)
		n++;
	return n;
}

size_t ring_mpsc_size(const struct ring_mpsc *r)
{
	/*
	 * relaxed: a snapshot.  It cannot be below head: our acquire loads of
	 * seq for every popped index happen-after the claims that moved tail
	 * past them, so coherence gives tail >= head.
	 */
	return atomic_load_explicit(&r->tail, memory_order_relaxed) - r->head;
}

size_t ring_mpsc_capacity(const struct ring_mpsc *r)
{
	return r->mask + 1;
}
