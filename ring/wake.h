/*
 * ring/wake.h - wake a consumer that sleeps on an eventfd, only when needed.
 *
 * A consumer (a shard loop, an agent loop) polls its rings and, when they
 * are all empty, blocks: in poll() on ring_wake_fd(), or with a read of the
 * fd queued on its io_uring.  Producers push, then call ring_wake_notify(),
 * which costs one atomic exchange and issues the write(2) only when the
 * consumer announced that it may be asleep.
 *
 * The armed protocol (consumer on the left, any producer on the right):
 *
 *	for (;;) {
 *		if (drain rings did work)               push(ring, d);
 *			continue;                       ring_wake_notify(w);
 *		ring_wake_arm(w);
 *		if (rings not empty) {  // re-check
 *			ring_wake_disarm(w);
 *			continue;
 *		}
 *		ring_wake_wait(w, timeout);  // or poll/io_uring on the fd
 *		ring_wake_disarm(w);
 *	}
 *
 * Why it cannot lose a wake.  Each side writes one location and then reads
 * the other's: the consumer writes "sleeping" and reads the ring, the
 * producer writes the ring and reads "sleeping".  That is the store-load
 * pattern, which release/acquire alone does not order: both sides may read
 * the old value (on x86 each store can still sit in its store buffer while
 * the following load runs), the producer sees "awake", the consumer sees
 * "empty", and it sleeps on a pushed descriptor.  Some single order over
 * the two sides' steps is needed: seq_cst fences (or seq_cst accesses) on
 * both sides, or, as here, read-modify-writes of one flag on both sides.
 *
 * Every access to "sleeping" is an exchange: the consumer's arm (1) and
 * disarm (0) with acquire, the producers' notify (0) with release.  The
 * RMWs of one object form a single total order in which each reads the
 * value right before it, and a release RMW's value reaches every later
 * RMW (release sequence).  Take a producer's exchange P, after its push:
 *  - the value right before P is 1: an arm with no disarm since.  P
 *    signals; the consumer, blocked or about to block, wakes.
 *  - the value is 0: the consumer is awake, or an earlier producer
 *    exchange since the last arm read the 1 and signalled.  Either way the
 *    consumer will exchange again (re-arm, or disarm after the wake) and
 *    that exchange, after P in the order, acquires P's release: the push
 *    happens-before the consumer's next drain or re-check, which sees it.
 * We use RMWs rather than fences because ThreadSanitizer models RMWs but
 * not fences, and on x86 an exchange is a full barrier anyway (the cost of
 * an mfence).  The disarm must be an RMW as well: a plain store of 0 would
 * cut the release sequence, so the consumer could miss a push whose
 * producer found 0 and did not signal.  And there must be no plain-load
 * "fast path" before the producer's exchange: that load is exactly the
 * unordered read described above.
 *
 * Spurious wakeups happen (a producer may signal after the re-check found
 * work); consumers simply re-check.
 */
#ifndef SW_RING_WAKE_H
#define SW_RING_WAKE_H

#include <stdatomic.h>

/*
 * owner: the consumer (it arms, waits, drains, destroys); producers on any
 * thread call ring_wake_notify / ring_wake_signal.  Caller-provided storage.
 */
struct ring_wake {
	int fd;		     /* eventfd (EFD_NONBLOCK | EFD_CLOEXEC); read-only after init */
	atomic_int sleeping; /* 1: consumer may be blocked, producers must signal (atomic) */
};

/*
 * Create the eventfd of <w> and mark the consumer awake.  Returns 0 or
 * -errno from eventfd(2).  Consumer thread, before sharing <w>.
 */
int ring_wake_init(struct ring_wake *w);

/* Close the eventfd.  Consumer thread, once no producer can use <w>. */
void ring_wake_destroy(struct ring_wake *w);

/* The eventfd, to poll or to read through io_uring.  Any thread. */
int ring_wake_fd(const struct ring_wake *w);

/*
 * Add 1 to the eventfd counter, unconditionally.  Returns 0 (also when the
 * counter is saturated, which already reads as "signalled") or -errno from
 * write(2).  Any thread.
 */
int ring_wake_signal(struct ring_wake *w);

/*
 * Reset the eventfd counter.  Returns the number of signals it held
 * (clamped to INT_MAX), 0 when none were pending, or -errno from read(2).
 * Consumer thread.
 */
int ring_wake_drain(struct ring_wake *w);

/*
 * Announce that the consumer is about to block.  The caller MUST re-check
 * everything it waits for after this call, then either block (on the fd)
 * or call ring_wake_disarm.  Consumer thread.
 */
void ring_wake_arm(struct ring_wake *w);

/* Announce that the consumer is awake again.  Consumer thread. */
void ring_wake_disarm(struct ring_wake *w);

/*
 * After publishing work for the consumer (push), wake it if it is armed.
 * Returns 1 if this call signalled the fd, 0 if no signal was needed, or
 * -errno from write(2).  Any thread.
 */
int ring_wake_notify(struct ring_wake *w);

/*
 * Block in poll(2) until the fd is signalled or <timeout_ms> passes (< 0:
 * no limit), then drain the counter.  Returns 1 when signalled, 0 on
 * timeout or when a signal handler interrupted the wait, or -errno.  Call
 * between ring_wake_arm (plus the re-check) and ring_wake_disarm.
 * Consumer thread.
 */
int ring_wake_wait(struct ring_wake *w, int timeout_ms);

#endif /* SW_RING_WAKE_H */
