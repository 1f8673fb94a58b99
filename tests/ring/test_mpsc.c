/*
 * tests/ring/test_mpsc.c - semantics of the MPSC ring: capacity rules,
 * empty/full, FIFO order with exact values, wrap-around, batch pop, and a
 * short two-producer run.  The long multi-producer run is in
 * test_ring_stress.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "ring/mpsc.h"

/* Descriptor whose both words are derived from <v>, so a mix-up shows. */
static struct ring_desc desc_of(uint64_t v)
{
	return (struct ring_desc){.ptr = (void *)(uintptr_t)(0x2000 + 16 * v), .aux = ~v};
}

static void expect_desc(struct ring_desc d, uint64_t v)
{
	cr_assert_eq((uintptr_t)d.ptr, 0x2000 + 16 * v, "ptr of item %llu", (unsigned long long)v);
	cr_assert_eq(d.aux, ~v, "aux of item %llu", (unsigned long long)v);
}

static struct ring_mpsc *new_ring(size_t cap)
{
	int err = 1;
	struct ring_mpsc *r = ring_mpsc_new(cap, &err);

	cr_assert_not_null(r, "ring_mpsc_new(%zu) failed: %d", cap, err);
	cr_assert_eq(err, 0);
	return r;
}

Test(ring_mpsc, rejects_capacity_that_is_not_a_power_of_two_of_at_least_two)
{
	size_t bad[] = {0, 1, 3, 12, 1023, ((size_t)1 << 33) - 1};
	size_t i;
	int err;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = 0;
		cr_assert_null(ring_mpsc_new(bad[i], &err), "capacity %zu accepted", bad[i]);
		cr_assert_eq(err, -EINVAL, "capacity %zu: err %d", bad[i], err);
	}
}

Test(ring_mpsc, rejects_capacity_whose_size_overflows)
{
	int err = 0;

	cr_assert_null(ring_mpsc_new((size_t)1 << (sizeof(size_t) * 8 - 2), &err));
	cr_assert_eq(err, -EINVAL);
}

Test(ring_mpsc, reports_the_capacity_it_was_created_with)
{
	struct ring_mpsc *r2 = new_ring(2), *r = new_ring(4096);

	cr_assert_eq(ring_mpsc_capacity(r2), 2);
	cr_assert_eq(ring_mpsc_capacity(r), 4096);
	cr_assert_eq(ring_mpsc_size(r), 0);
	ring_mpsc_free(r2);
	ring_mpsc_free(r);
}

Test(ring_mpsc, pop_on_empty_ring_returns_eagain_and_leaves_out_untouched)
{
	struct ring_mpsc *r = new_ring(4);
	struct ring_desc out = desc_of(5);

	cr_assert_eq(ring_mpsc_pop(r, &out), -EAGAIN);
	expect_desc(out, 5);
	cr_assert_eq(ring_mpsc_pop_batch(r, &out, 4), 0);
	expect_desc(out, 5);
	ring_mpsc_free(r);
}

Test(ring_mpsc, holds_exactly_capacity_items_then_reports_full)
{
	struct ring_mpsc *r = new_ring(8);
	struct ring_desc out;
	uint64_t i;

	for (i = 0; i < 8; i++) {
		cr_assert_eq(ring_mpsc_push(r, desc_of(i)), 0, "push %llu", (unsigned long long)i);
		cr_assert_eq(ring_mpsc_size(r), i + 1);
	}
	cr_assert_eq(ring_mpsc_push(r, desc_of(8)), -EAGAIN);
	cr_assert_eq(ring_mpsc_size(r), 8);
	/* one pop frees exactly one slot, for the next lap */
	cr_assert_eq(ring_mpsc_pop(r, &out), 0);
	expect_desc(out, 0);
	cr_assert_eq(ring_mpsc_push(r, desc_of(8)), 0);
	cr_assert_eq(ring_mpsc_push(r, desc_of(9)), -EAGAIN);
	for (i = 1; i <= 8; i++) {
		cr_assert_eq(ring_mpsc_pop(r, &out), 0);
		expect_desc(out, i);
	}
	cr_assert_eq(ring_mpsc_pop(r, &out), -EAGAIN);
	cr_assert_eq(ring_mpsc_size(r), 0);
	ring_mpsc_free(r);
}

Test(ring_mpsc, wraps_around_many_laps_in_fifo_order)
{
	struct ring_mpsc *r = new_ring(4);
	struct ring_desc out;
	uint64_t next_in = 0, next_out = 0;
	unsigned round, k, burst;

	/* bursts of 1..4: every slot sees thousands of laps of sequence numbers */
	for (round = 0; round < 1000; round++) {
		burst = 1 + round % 4;
		for (k = 0; k < burst; k++)
			cr_assert_eq(ring_mpsc_push(r, desc_of(next_in++)), 0);
		if (burst == 4)
			cr_assert_eq(ring_mpsc_push(r, desc_of(999999)), -EAGAIN);
		for (k = 0; k < burst; k++) {
			cr_assert_eq(ring_mpsc_pop(r, &out), 0);
			expect_desc(out, next_out++);
		}
		cr_assert_eq(ring_mpsc_pop(r, &out), -EAGAIN);
	}
	cr_assert_eq(next_out, 2500);
	ring_mpsc_free(r);
}

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
