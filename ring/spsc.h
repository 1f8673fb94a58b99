/*
 * ring/spsc.h - bounded single-producer single-consumer ring of descriptors.
 *
 * Exactly one thread pushes and exactly one thread pops (they may be the
 * same thread).  No locks, no allocation after ring_spsc_new(), capacity a
 * power of two.  Indices run freely (they are never wrapped); a slot is
 * index & (capacity - 1):
 *
 *             head (consumer)          tail (producer)
 *                  v                        v
 *   slots: [ free | d0 | d1 | d2 | ... | dk | free | free ]
 *
 *   empty: head == tail         full: tail - head == capacity
 *
 * The producer keeps a private copy of head and rereads the shared one only
 * when its copy says "full"; the consumer does the same with tail.  So in
 * steady state each side touches the other side's cache line once per lap,
 * not once per descriptor.
 *
 * Usage:
 *	int err;
 *	struct ring_spsc *r = ring_spsc_new(1024, &err);
 *	producer: if (ring_spsc_push(r, (struct ring_desc){ c, len }) == -EAGAIN) back off;
 *	consumer: n = ring_spsc_pop_batch(r, out, 32);
 *	ring_spsc_free(r);
 */
#ifndef SW_RING_SPSC_H
#define SW_RING_SPSC_H

#include <stddef.h>

#include "ring/desc.h"

struct ring_spsc;

/*
 * Allocate a ring of <capacity> descriptors (a power of two >= 2).
 * Returns the ring, or NULL with *<err> set to -EINVAL (bad capacity) or
 * -ENOMEM.  Any thread; the ring is then shared by its two ends.
 */
struct ring_spsc *ring_spsc_new(size_t capacity, int *err);

/*
 * Release <r> (NULL is a no-op).  Descriptors still queued are dropped
 * without being looked at: drain first if they own something.  Call only
 * once neither end can touch the ring any more.
 */
void ring_spsc_free(struct ring_spsc *r);

/*
 * Append <d>.  Returns 0, or -EAGAIN when the ring is full (nothing
 * changes).  Producer thread only.
 */
int ring_spsc_push(struct ring_spsc *r, struct ring_desc d);

/*
 * Append up to <n> descriptors from <d>, in order, publishing them to the
 * consumer at once.  Returns how many were appended (0 .. n; fewer than
 * <n> when the ring fills).  Producer thread only.
 */
size_t ring_spsc_push_batch(struct ring_spsc *r, const struct ring_desc *d, size_t n);

/*
 * Take the oldest descriptor into *<out>.  Returns 0, or -EAGAIN when the
 * ring is empty (*<out> untouched).  Consumer thread only.
 */
int ring_spsc_pop(struct ring_spsc *r, struct ring_desc *out);

/*
 * Take up to <max> of the oldest descriptors into <out>[0..], oldest first.
 * Returns how many were taken (0 when empty).  Consumer thread only.
 */
size_t ring_spsc_pop_batch(struct ring_spsc *r, struct ring_desc *out, size_t max);

/*
 * Number of queued descriptors (0 .. capacity).  Exact when called by
 * either end while the other is idle; otherwise a snapshot that may be
 * stale by the time it returns.  Any thread.
 */
size_t ring_spsc_size(const struct ring_spsc *r);

/* Capacity given to ring_spsc_new().  Any thread. */
size_t ring_spsc_capacity(const struct ring_spsc *r);

#endif /* SW_RING_SPSC_H */
