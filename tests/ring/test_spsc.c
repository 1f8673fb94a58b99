/*
 * tests/ring/test_spsc.c - single-threaded semantics of the SPSC ring:
 * capacity rules, empty/full, FIFO order with exact values, wrap-around
 * (ring_test.h, shared with the MPSC ring), batches.  The two-thread run
 * lives in test_ring_stress.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "ring/spsc.h"

#define RING_T ring_spsc
#include "tests/ring/ring_test.h"

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
