/*
 * tests/ring/test_wake.c - the eventfd wake helper and its armed protocol,
 * including a two-thread sleep/wake run in which a lost wake makes the
 * consumer time out with an item pending, which fails the test.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "ring/mpsc.h"
#include "ring/wake.h"

static void init_wake(struct ring_wake *w)
{
	int ret = ring_wake_init(w);

	cr_assert_eq(ret, 0, "ring_wake_init: %d", ret);
}

static int readable(const struct ring_wake *w)
{
	struct pollfd pfd = {.fd = ring_wake_fd(w), .events = POLLIN};

	return poll(&pfd, 1, 0);
}

Test(ring_wake, fd_is_a_nonblocking_cloexec_eventfd_that_starts_unsignalled)
{
	struct ring_wake w;
	int fd;

	init_wake(&w);
	fd = ring_wake_fd(&w);
	cr_assert_geq(fd, 0);
	cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	cr_assert_eq(readable(&w), 0);
	cr_assert_eq(ring_wake_drain(&w), 0);
	ring_wake_destroy(&w);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "fd still open after destroy");
}

Test(ring_wake, drain_returns_the_number_of_signals_and_resets)
{
	struct ring_wake w;

	init_wake(&w);
	cr_assert_eq(ring_wake_signal(&w), 0);
	cr_assert_eq(ring_wake_signal(&w), 0);
	cr_assert_eq(ring_wake_signal(&w), 0);
	cr_assert_eq(readable(&w), 1);
	cr_assert_eq(ring_wake_drain(&w), 3);
	cr_assert_eq(readable(&w), 0);
	cr_assert_eq(ring_wake_drain(&w), 0);
	ring_wake_destroy(&w);
}

Test(ring_wake, notify_does_not_signal_an_awake_consumer)
{
	struct ring_wake w;

	init_wake(&w);
	cr_assert_eq(ring_wake_notify(&w), 0);
	cr_assert_eq(ring_wake_notify(&w), 0);
	cr_assert_eq(readable(&w), 0);
	/* armed then disarmed (the re-check found work): still no signal */
	ring_wake_arm(&w);
	ring_wake_disarm(&w);
	cr_assert_eq(ring_wake_notify(&w), 0);
	cr_assert_eq(ring_wake_drain(&w), 0);
	ring_wake_destroy(&w);
}

Test(ring_wake, notify_signals_an_armed_consumer_exactly_once)
{
	struct ring_wake w;

	init_wake(&w);
	ring_wake_arm(&w);
	cr_assert_eq(ring_wake_notify(&w), 1);
	/* the first notify took the flag: later producers need no write */
	cr_assert_eq(ring_wake_notify(&w), 0);
	cr_assert_eq(ring_wake_drain(&w), 1);
	ring_wake_destroy(&w);
}

Test(ring_wake, wait_times_out_without_signal_and_returns_at_once_with_one)
{
	struct ring_wake w;
	struct timespec t0, t1;
	long ms;

	init_wake(&w);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(ring_wake_wait(&w, 50), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_geq(ms, 45, "wait returned after %ld ms", ms);
	cr_assert_eq(ring_wake_signal(&w), 0);
	cr_assert_eq(ring_wake_wait(&w, 5000), 1);
	/* wait drained the counter */
	cr_assert_eq(readable(&w), 0);
	ring_wake_destroy(&w);
}

/*
 * Ping-pong through an MPSC ring: the producer pushes one item, notifies,
 * and waits until the consumer has taken it, so the consumer runs out of
 * work and goes to sleep before almost every item.  Every few items the
 * producer pushes right away instead, to hit the window where the consumer
 * is arming.  A lost wake leaves the consumer blocked with an item queued
 * until its timeout, and the test fails on that timeout.
 */
#define PINGPONG_ITEMS 20000u
#define LOST_WAKE_TIMEOUT_MS 5000

struct pingpong {
	struct ring_mpsc *ring;
	struct ring_wake wake;
	atomic_uint consumed; /* items taken by the consumer */
	atomic_int abort;     /* consumer failed: producer stops waiting */
	unsigned int signals; /* producer only: notifies that wrote the fd */
	int notify_err;	      /* producer only: first negative notify result */
};

static void *pingpong_producer(void *arg)
{
	struct pingpong *pp = arg;
	unsigned int i, k, spins;
	int ret;

	for (i = 0; i < PINGPONG_ITEMS; i++) {
		while (ring_mpsc_push(pp->ring, (struct ring_desc){.ptr = pp, .aux = i}) != 0) {
			/* relaxed: only a give-up flag */
			if (atomic_load_explicit(&pp->abort, memory_order_relaxed))
				return NULL;
			sched_yield();
		}
		ret = ring_wake_notify(&pp->wake);
		if (ret < 0 && pp->notify_err == 0)
			pp->notify_err = ret;
		pp->signals += ret == 1;
		if (i % 8 == 7)
			continue;
		/* relaxed: pacing and give-up only, no data rides on these; spin, then yield */
		for (spins = 0; atomic_load_explicit(&pp->consumed, memory_order_relaxed) <= i &&
				!atomic_load_explicit(&pp->abort, memory_order_relaxed);
			spins++) {
			if (spins > 2000)
				sched_yield();
		}
		/*
		 * then a delay of 0..63 steps, sweeping the window where the
		 * consumer arms (a compiler-only barrier keeps the empty loop)
		 */
		for (k = 0; k < i % 64; k++)
			atomic_signal_fence(memory_order_seq_cst);
	}
	return NULL;
}

Test(ring_wake, consumer_blocked_in_poll_never_misses_a_wake)
{
	struct pingpong pp = {0};
	struct ring_desc d;
	unsigned int expect = 0, sleeps = 0, timeouts = 0;
	pthread_t th;
	int err, ret;

	pp.ring = ring_mpsc_new(64, &err);
	cr_assert_not_null(pp.ring);
	init_wake(&pp.wake);
	cr_assert_eq(pthread_create(&th, NULL, pingpong_producer, &pp), 0);

	while (expect < PINGPONG_ITEMS) {
		if (ring_mpsc_pop(pp.ring, &d) == 0) {
			if (d.aux != expect)
				break;
			/* relaxed: pacing only (the item came through the ring) */
			atomic_store_explicit(&pp.consumed, ++expect, memory_order_relaxed);
			continue;
		}
		ring_wake_arm(&pp.wake);
		if (ring_mpsc_size(pp.ring) > 0) {
			ring_wake_disarm(&pp.wake);
			continue;
		}
		sleeps++;
		ret = ring_wake_wait(&pp.wake, LOST_WAKE_TIMEOUT_MS);
		ring_wake_disarm(&pp.wake);
		if (ret == 0) {
			timeouts++;
			break;
		}
		cr_assert_eq(ret, 1, "ring_wake_wait: %d", ret);
	}
	/* relaxed: only a give-up flag */
	atomic_store_explicit(&pp.abort, 1, memory_order_relaxed);
	pthread_join(th, NULL);

	cr_assert_eq(timeouts, 0, "lost wake: consumer timed out at item %u of %u (queued: %zu)",
		expect, PINGPONG_ITEMS, ring_mpsc_size(pp.ring));
	cr_assert_eq(expect, PINGPONG_ITEMS, "item %u arrived out of order (aux %llu)", expect,
		(unsigned long long)d.aux);
	cr_assert_eq(pp.notify_err, 0);
	/* the run must really have exercised sleeping, and every sleep needed a signal */
	cr_assert_gt(sleeps, PINGPONG_ITEMS / 4, "consumer slept only %u times", sleeps);
	cr_assert_geq(pp.signals, sleeps, "%u sleeps ended by only %u signals", sleeps, pp.signals);
	cr_log_info("%u items, %u sleeps, %u signals", PINGPONG_ITEMS, sleeps, pp.signals);
	ring_wake_destroy(&pp.wake);
	ring_mpsc_free(pp.ring);
}
