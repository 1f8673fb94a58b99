/*
 * tests/ring/test_mpsc.c - semantics of the MPSC ring: capacity rules,
 * empty/full, FIFO order with exact values, wrap-around (ring_test.h, shared
 * with the SPSC ring), batch pop, and a short two-producer run.  The long
 * multi-producer run is in test_ring_stress.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "ring/mpsc.h"

#define RING_T ring_mpsc
#include "tests/ring/ring_test.h"

Test(ring_mpsc, pop_batch_takes_at_most_max_oldest_first_across_the_wrap)
{
	struct ring_mpsc *r = new_ring(8);
	struct ring_desc out[8];
	size_t i;

	/* move the indices to 5 so the batch spans slots 5,6,7,0,1,... */
	for (i = 0; i < 5; i++)
		cr_assert_eq(ring_mpsc_push(r, desc_of(100 + i)), 0);
	cr_assert_eq(ring_mpsc_pop_batch(r, out, 8), 5);
	for (i = 0; i < 5; i++)
		expect_desc(out[i], 100 + i);
	for (i = 0; i < 8; i++)
		cr_assert_eq(ring_mpsc_push(r, desc_of(i)), 0);
	cr_assert_eq(ring_mpsc_pop_batch(r, out, 3), 3);
	cr_assert_eq(ring_mpsc_pop_batch(r, out + 3, 0), 0);
	cr_assert_eq(ring_mpsc_size(r), 5);
	cr_assert_eq(ring_mpsc_pop_batch(r, out + 3, 8), 5);
	for (i = 0; i < 8; i++)
		expect_desc(out[i], i);
	cr_assert_eq(ring_mpsc_pop_batch(r, out, 8), 0);
	ring_mpsc_free(r);
}

#define TWO_PRODUCER_ITEMS 50000u

struct producer {
	struct ring_mpsc *ring;
	uint64_t id;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	uint64_t i;

	for (i = 0; i < TWO_PRODUCER_ITEMS; i++) {
		/* aux = producer id in the top bits, sequence number below */
		while (ring_mpsc_push(
			       p->ring, (struct ring_desc){.ptr = p, .aux = p->id << 32 | i}) != 0)
			sched_yield();
	}
	return NULL;
}

Test(ring_mpsc, two_producers_each_keep_their_order)
{
	struct ring_mpsc *r = new_ring(64);
	struct producer prod[2] = {{r, 0}, {r, 1}};
	pthread_t th[2];
	uint64_t next[2] = {0, 0}, id, seq, got = 0;
	struct ring_desc out[16];
	size_t n, i;

	for (i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, produce, &prod[i]), 0);
	while (got < 2 * TWO_PRODUCER_ITEMS) {
		n = ring_mpsc_pop_batch(r, out, 16);
		if (n == 0)
			sched_yield();
		for (i = 0; i < n; i++) {
			id = out[i].aux >> 32;
			seq = out[i].aux & 0xffffffffu;
			cr_assert(id < 2, "bad producer id %llu", (unsigned long long)id);
			cr_assert_eq(out[i].ptr, &prod[id]);
			cr_assert_eq(seq, next[id], "producer %llu: got %llu, expected %llu",
				(unsigned long long)id, (unsigned long long)seq,
				(unsigned long long)next[id]);
			next[id]++;
		}
		got += n;
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(next[0], TWO_PRODUCER_ITEMS);
	cr_assert_eq(next[1], TWO_PRODUCER_ITEMS);
	cr_assert_eq(ring_mpsc_pop_batch(r, out, 16), 0);
	ring_mpsc_free(r);
}
