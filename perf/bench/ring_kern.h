/*
 * perf/bench/ring_kern.h - benchmark kernels for the descriptor rings.
 *
 * Three queues behind one interface, all of the same capacity and carrying
 * the same 16-byte descriptor: the lock-free MPSC and SPSC rings, and a
 * plain mutex + condition-variable ring as the baseline a lock-free queue
 * has to beat.  C linkage, no project headers (they use stdatomic.h, which
 * C++ cannot include).
 */
#ifndef SW_PERF_BENCH_RING_KERN_H
#define SW_PERF_BENCH_RING_KERN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ring_kern_kind {
	RING_KERN_MPSC,	 /* ring/mpsc.h */
	RING_KERN_SPSC,	 /* ring/spsc.h (one producer only) */
	RING_KERN_MUTEX, /* mutex + condvar baseline, in ring_kern.c */
};

struct ring_kern_q;

/*
 * Create a queue of <kind> holding <capacity> descriptors (power of two),
 * with <prefill> descriptors already in it (so push + pop pairs can run at
 * a standing depth).  Returns NULL on failure.
 */
struct ring_kern_q *ring_kern_q_new(enum ring_kern_kind kind, size_t capacity, size_t prefill);

void ring_kern_q_free(struct ring_kern_q *q);

/*
 * One thread: <n> times push one descriptor and pop one (the oldest).
 * Returns 0, or -1 if a push or pop failed or a popped value was wrong.
 */
int ring_kern_pushpop(struct ring_kern_q *q, size_t n);

/*
 * <producers> new threads push <items> descriptors each while the calling
 * thread pops them all (in batches of up to 32).  The queue must be empty.
 * Lock-free queues, when full or empty, retry 64 times with a CPU pause and
 * then with sched_yield; the mutex queue blocks on its condition variables.  Returns 0, or -1 if an
 * item was lost, duplicated, reordered within its producer, or a thread could not start.
 */
int ring_kern_transfer(struct ring_kern_q *q, unsigned int producers, size_t items);

#ifdef __cplusplus
}
#endif

#endif /* SW_PERF_BENCH_RING_KERN_H */
