/*
 * perf/bench/shard_kern.h - benchmark kernels for the shard runtime.
 *
 * Two measurements, each against a plain-threads baseline run the same way:
 *  - ping-pong: round trips between two threads that sleep between
 *    messages (what a cross-shard call costs when the target is idle):
 *    shard_call with MSG_RING wakes, shard_call with eventfd wakes, and two
 *    plain threads blocking in read(2) on eventfds;
 *  - stream: bytes from a writer thread through a Unix socketpair into the
 *    receiver: multishot recv into provided-buffer chunks on a shard, and a
 *    plain thread in a read(2) loop into one 64 KiB buffer.
 * C linkage, no project headers (they use stdatomic.h, which C++ cannot
 * include).
 */
#ifndef SW_PERF_BENCH_SHARD_KERN_H
#define SW_PERF_BENCH_SHARD_KERN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum shard_kern_kind {
	SHARD_KERN_MSG_RING, /* a shard group, cross-shard wakes by MSG_RING */
	SHARD_KERN_EVENTFD,  /* a shard group, wakes by eventfd (SHARD_F_NO_MSG_RING) */
	SHARD_KERN_THREADS,  /* baseline: plain threads blocking in read(2) */
};

struct shard_kern;

/* Set up <kind> (threads, rings, the socketpair).  Returns NULL on failure. */
struct shard_kern *shard_kern_new(enum shard_kern_kind kind);

/* Stop and free everything.  Returns 0, or -1 if the shard group reported a problem. */
int shard_kern_free(struct shard_kern *k);

/* <rounds> round trips between the two threads.  Returns 0 or -1. */
int shard_kern_pingpong(struct shard_kern *k, size_t rounds);

/*
 * Write <bytes> (a multiple of 64 KiB) into the socketpair from the calling
 * thread and wait until the receiver has taken them all.  Returns 0 or -1.
 */
int shard_kern_stream(struct shard_kern *k, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* SW_PERF_BENCH_SHARD_KERN_H */
