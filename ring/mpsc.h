/*
 * ring/mpsc.h - bounded many-producer single-consumer ring of descriptors.
 *
 * The inbox of a shard: any thread may push, one thread (the owner) pops.
 * No locks, no allocation after ring_mpsc_new(), capacity a power of two.
 * This is D. Vyukov's bounded queue with one sequence number per slot; the
 * sequence says whose turn the slot is, so producers never wait for each
 * other and the consumer never writes a shared index.
 *
 * For the slot of free-running index i (slot i & mask), capacity cap:
 *
 *   seq == i          free: the producer that claims index i may fill it
 *   seq == i + 1      full: filled for index i, the consumer may take it
 *   seq == i + cap    taken: free again, for index i + cap (next lap)
 *
 *   push: pos = tail; if slot(pos).seq == pos, claim pos by CAS tail
 *         pos -> pos + 1, write the descriptor, store seq = pos + 1.
 *   pop:  if slot(head).seq == head + 1, read it, store seq = head + cap,
 *         head++ (head is private to the consumer).
 *
 * Properties and limits:
 *  - Each producer's descriptors are popped in the order it pushed them.
 *    Between producers, the order is that of their claims on tail.
 *  - A producer that has claimed a slot but not yet filled it (preempted
 *    between the CAS and the seq store) holds back the consumer: pop then
 *    reports "empty" although later slots may be full.  The consumer loses
 *    no data; it sees them once that producer runs again.
 *  - -EAGAIN from push means the ring really is full: every slot holds a
 *    descriptor the consumer has not taken yet, as far as the pushing
 *    thread can know (see the ordering notes in mpsc.c).  A pool that sizes
 *    a ring for all of its objects can therefore rely on pushes succeeding.
 */
#ifndef SW_RING_MPSC_H
#define SW_RING_MPSC_H

#include <stddef.h>

#include "ring/desc.h"

struct ring_mpsc;

/*
 * Allocate a ring of <capacity> descriptors (a power of two >= 2).
 * Returns the ring, or NULL with *<err> set to -EINVAL (bad capacity) or
 * -ENOMEM.  Any thread; the thread that will pop is the ring's owner.
 */
struct ring_mpsc *ring_mpsc_new(size_t capacity, int *err);

/*
 * Release <r> (NULL is a no-op).  Queued descriptors are dropped unseen:
 * drain first if they own something.  Owner thread, once no producer can
 * touch the ring any more.
 */
void ring_mpsc_free(struct ring_mpsc *r);

/*
 * Append <d>.  Returns 0, or -EAGAIN when the ring is full (nothing
 * changes).  Any thread.
 */
int ring_mpsc_push(struct ring_mpsc *r, struct ring_desc d);

/*
 * Take the oldest descriptor into *<out>.  Returns 0, or -EAGAIN when the
 * ring is empty or its oldest slot is claimed but not yet filled (*<out>
 * untouched).  Owner (consumer) thread only.
 */
int ring_mpsc_pop(struct ring_mpsc *r, struct ring_desc *out);

/*
 * Take up to <max> descriptors into <out>[0..], oldest first, stopping at
 * the first slot not yet filled.  Returns how many were taken (0 .. max).
 * Owner (consumer) thread only.
 */
size_t ring_mpsc_pop_batch(struct ring_mpsc *r, struct ring_desc *out, size_t max);

/*
 * Number of claimed, not yet popped slots (0 .. capacity), including slots
 * a producer is still filling.  A snapshot: producers may push meanwhile.
 * Owner (consumer) thread only.
 */
size_t ring_mpsc_size(const struct ring_mpsc *r);

/* Capacity given to ring_mpsc_new().  Any thread. */
size_t ring_mpsc_capacity(const struct ring_mpsc *r);

#endif /* SW_RING_MPSC_H */
