/*
 * tests/ring/test_spsc.c - single-threaded semantics of the SPSC ring:
 * capacity rules, empty/full, FIFO order with exact values, wrap-around,
 * batches.  The two-thread run lives in test_ring_stress.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "ring/spsc.h"

/* Descriptor whose both words are derived from <v>, so a mix-up shows. */
static struct ring_desc desc_of(uint64_t v)
{
	return (struct ring_desc){.ptr = (void *)(uintptr_t)(0x1000 + 16 * v), .aux = v ^ 0xa5a5u};
}

static void expect_desc(struct ring_desc d, uint64_t v)
{
	cr_assert_eq((uintptr_t)d.ptr, 0x1000 + 16 * v, "ptr of item %llu", (unsigned long long)v);
	cr_assert_eq(d.aux, v ^ 0xa5a5u, "aux of item %llu", (unsigned long long)v);
}

static struct ring_spsc *new_ring(size_t cap)
{
	int err = 1;
	struct ring_spsc *r = ring_spsc_new(cap, &err);

	cr_assert_not_null(r, "ring_spsc_new(%zu) failed: %d", cap, err);
	cr_assert_eq(err, 0);
	return r;
}

Test(ring_spsc, rejects_capacity_that_is_not_a_power_of_two_of_at_least_two)
{
	size_t bad[] = {0, 1, 3, 6, 1000, ((size_t)1 << 40) + 1};
	size_t i;
	int err;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = 0;
		cr_assert_null(ring_spsc_new(bad[i], &err), "capacity %zu accepted", bad[i]);
		cr_assert_eq(err, -EINVAL, "capacity %zu: err %d", bad[i], err);
	}
}

Test(ring_spsc, rejects_capacity_whose_size_overflows)
{
	int err = 0;

	cr_assert_null(ring_spsc_new((size_t)1 << (sizeof(size_t) * 8 - 1), &err));
	cr_assert_eq(err, -EINVAL);
}

Test(ring_spsc, reports_the_capacity_it_was_created_with)
{
	struct ring_spsc *r2 = new_ring(2), *r = new_ring(1024);

	cr_assert_eq(ring_spsc_capacity(r2), 2);
	cr_assert_eq(ring_spsc_capacity(r), 1024);
	cr_assert_eq(ring_spsc_size(r), 0);
	ring_spsc_free(r2);
	ring_spsc_free(r);
}

Test(ring_spsc, pop_on_empty_ring_returns_eagain_and_leaves_out_untouched)
{
	struct ring_spsc *r = new_ring(4);
	struct ring_desc out = desc_of(77);

	cr_assert_eq(ring_spsc_pop(r, &out), -EAGAIN);
	expect_desc(out, 77);
	cr_assert_eq(ring_spsc_pop_batch(r, &out, 1), 0);
	expect_desc(out, 77);
	ring_spsc_free(r);
}

Test(ring_spsc, holds_exactly_capacity_items_then_reports_full)
{
	struct ring_spsc *r = new_ring(8);
	struct ring_desc out;
	uint64_t i;

	for (i = 0; i < 8; i++) {
		cr_assert_eq(ring_spsc_push(r, desc_of(i)), 0, "push %llu", (unsigned long long)i);
		cr_assert_eq(ring_spsc_size(r), i + 1);
	}
	cr_assert_eq(ring_spsc_push(r, desc_of(8)), -EAGAIN);
	cr_assert_eq(ring_spsc_size(r), 8);
	/* one pop frees exactly one slot */
	cr_assert_eq(ring_spsc_pop(r, &out), 0);
	expect_desc(out, 0);
	cr_assert_eq(ring_spsc_push(r, desc_of(8)), 0);
	cr_assert_eq(ring_spsc_push(r, desc_of(9)), -EAGAIN);
	for (i = 1; i <= 8; i++) {
		cr_assert_eq(ring_spsc_pop(r, &out), 0);
		expect_desc(out, i);
	}
	cr_assert_eq(ring_spsc_pop(r, &out), -EAGAIN);
	cr_assert_eq(ring_spsc_size(r), 0);
	ring_spsc_free(r);
}

Test(ring_spsc, wraps_around_many_laps_in_fifo_order)
{
	struct ring_spsc *r = new_ring(4);
	struct ring_desc out;
	uint64_t next_in = 0, next_out = 0;
	unsigned round, k, burst;

	/* bursts of 1..4 walk the indices across every slot offset many times */
	for (round = 0; round < 1000; round++) {
		burst = 1 + round % 4;
		for (k = 0; k < burst; k++)
			cr_assert_eq(ring_spsc_push(r, desc_of(next_in++)), 0);
		cr_assert_eq(ring_spsc_size(r), burst);
		for (k = 0; k < burst; k++) {
			cr_assert_eq(ring_spsc_pop(r, &out), 0);
			expect_desc(out, next_out++);
		}
		cr_assert_eq(ring_spsc_pop(r, &out), -EAGAIN);
	}
	cr_assert_eq(next_out, 2500);
	ring_spsc_free(r);
}

Test(ring_spsc, push_batch_stops_at_capacity_and_returns_the_count)
{
	struct ring_spsc *r = new_ring(8);
	struct ring_desc in[6], out[16];
	size_t i;

	for (i = 0; i < 5; i++)
		cr_assert_eq(ring_spsc_push(r, desc_of(i)), 0);
	for (i = 0; i < 6; i++)
		in[i] = desc_of(5 + i);
	cr_assert_eq(ring_spsc_push_batch(r, in, 6), 3);
	cr_assert_eq(ring_spsc_push_batch(r, in, 6), 0);
	cr_assert_eq(ring_spsc_size(r), 8);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 16), 8);
	for (i = 0; i < 8; i++)
		expect_desc(out[i], i);
	ring_spsc_free(r);
}

Test(ring_spsc, pop_batch_takes_at_most_max_oldest_first)
{
	struct ring_spsc *r = new_ring(16);
	struct ring_desc out[16];
	size_t i;

	for (i = 0; i < 10; i++)
		cr_assert_eq(ring_spsc_push(r, desc_of(i)), 0);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 4), 4);
	for (i = 0; i < 4; i++)
		expect_desc(out[i], i);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 0), 0);
	cr_assert_eq(ring_spsc_size(r), 6);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 16), 6);
	for (i = 0; i < 6; i++)
		expect_desc(out[i], 4 + i);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 16), 0);
	ring_spsc_free(r);
}

Test(ring_spsc, batches_wrap_around_the_end_of_the_slot_array)
{
	struct ring_spsc *r = new_ring(8);
	struct ring_desc in[8], out[8];
	size_t i;

	/* move both indices to 6, so the next batch spans slots 6,7,0,1,... */
	for (i = 0; i < 6; i++)
		cr_assert_eq(ring_spsc_push(r, desc_of(100)), 0);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 8), 6);
	for (i = 0; i < 8; i++)
		in[i] = desc_of(i);
	cr_assert_eq(ring_spsc_push_batch(r, in, 8), 8);
	cr_assert_eq(ring_spsc_push(r, desc_of(99)), -EAGAIN);
	cr_assert_eq(ring_spsc_pop_batch(r, out, 3), 3);
	cr_assert_eq(ring_spsc_pop_batch(r, out + 3, 8), 5);
	for (i = 0; i < 8; i++)
		expect_desc(out[i], i);
	ring_spsc_free(r);
}
