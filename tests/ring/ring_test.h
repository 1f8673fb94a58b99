/*
 * tests/ring/ring_test.h - the single-threaded semantics the SPSC and MPSC
 * descriptor rings share, written once: capacity rules, empty/full, FIFO
 * order with exact values, wrap-around.
 *
 * Include it after the ring's header, with RING_T defined as the ring's
 * type and function prefix (ring_spsc or ring_mpsc), which also names the
 * Criterion suite.  It defines desc_of(), expect_desc(), new_ring() and the
 * shared Test()s; the including file adds the tests of what only its ring
 * does (batch push, several producers).
 */
#ifndef SW_TESTS_RING_TEST_H
#define SW_TESTS_RING_TEST_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#ifndef RING_T
#error "define RING_T (ring_spsc or ring_mpsc) before including ring_test.h"
#endif

/* RING_FN(push) is ring_spsc_push or ring_mpsc_push. */
#define RING_FN_PASTE(t, op) t##_##op
#define RING_FN_EXPAND(t, op) RING_FN_PASTE(t, op)
#define RING_FN(op) RING_FN_EXPAND(RING_T, op)
/* "ring_spsc" or "ring_mpsc", for messages. */
#define RING_STR_QUOTE(t) #t
#define RING_STR_EXPAND(t) RING_STR_QUOTE(t)
#define RING_NAME RING_STR_EXPAND(RING_T)

/* Descriptor whose both words are derived from <v>, so a mix-up shows. */
static struct ring_desc desc_of(uint64_t v)
{
	return (struct ring_desc){.ptr = (void *)(uintptr_t)(0x1000 + 16 * v), .aux = ~v};
}

static void expect_desc(struct ring_desc d, uint64_t v)
{
	cr_assert_eq((uintptr_t)d.ptr, 0x1000 + 16 * v, "ptr of item %llu", (unsigned long long)v);
	cr_assert_eq(d.aux, ~v, "aux of item %llu", (unsigned long long)v);
}

static struct RING_T *new_ring(size_t cap)
{
	int err = 1;
	struct RING_T *r = RING_FN(new)(cap, &err);

	cr_assert_not_null(r, "%s_new(%zu) failed: %d", RING_NAME, cap, err);
	cr_assert_eq(err, 0);
	return r;
}

/* Each of the <n> capacities <caps> is refused with -EINVAL. */
static void expect_refused(const size_t *caps, size_t n)
{
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		err = 0;
		cr_assert_null(RING_FN(new)(caps[i], &err), "capacity %zu accepted", caps[i]);
		cr_assert_eq(err, -EINVAL, "capacity %zu: err %d", caps[i], err);
	}
}

Test(RING_T, rejects_capacity_that_is_not_a_power_of_two_of_at_least_two)
{
	static const size_t bad[] = {
		0, 1, 3, 6, 12, 1000, 1023, ((size_t)1 << 33) - 1, ((size_t)1 << 40) + 1};

	expect_refused(bad, sizeof(bad) / sizeof(bad[0]));
}

Test(RING_T, rejects_capacity_whose_size_overflows)
{
	static const size_t big[] = {
		(size_t)1 << (sizeof(size_t) * 8 - 2), (size_t)1 << (sizeof(size_t) * 8 - 1)};

	expect_refused(big, sizeof(big) / sizeof(big[0]));
}

Test(RING_T, reports_the_capacity_it_was_created_with)
{
	size_t caps[] = {2, 1024, 4096};
	struct RING_T *r;
	size_t i;

	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		r = new_ring(caps[i]);
		cr_assert_eq(RING_FN(capacity)(r), caps[i]);
		cr_assert_eq(RING_FN(size)(r), 0);
		RING_FN(free)(r);
	}
}

Test(RING_T, pop_on_empty_ring_returns_eagain_and_leaves_out_untouched)
{
	struct RING_T *r = new_ring(4);
	struct ring_desc out[4];
	size_t i;

	for (i = 0; i < 4; i++)
		out[i] = desc_of(77 + i);
	cr_assert_eq(RING_FN(pop)(r, &out[0]), -EAGAIN);
	expect_desc(out[0], 77);
	cr_assert_eq(RING_FN(pop_batch)(r, out, 1), 0);
	cr_assert_eq(RING_FN(pop_batch)(r, out, 4), 0);
	for (i = 0; i < 4; i++)
		expect_desc(out[i], 77 + i);
	RING_FN(free)(r);
}

Test(RING_T, holds_exactly_capacity_items_then_reports_full)
{
	struct RING_T *r = new_ring(8);
	struct ring_desc out;
	uint64_t i;

	for (i = 0; i < 8; i++) {
		cr_assert_eq(RING_FN(push)(r, desc_of(i)), 0, "push %llu", (unsigned long long)i);
		cr_assert_eq(RING_FN(size)(r), i + 1);
	}
	cr_assert_eq(RING_FN(push)(r, desc_of(8)), -EAGAIN);
	cr_assert_eq(RING_FN(size)(r), 8);
	/* one pop frees exactly one slot, for the next lap */
	cr_assert_eq(RING_FN(pop)(r, &out), 0);
	expect_desc(out, 0);
	cr_assert_eq(RING_FN(push)(r, desc_of(8)), 0);
	cr_assert_eq(RING_FN(push)(r, desc_of(9)), -EAGAIN);
	for (i = 1; i <= 8; i++) {
		cr_assert_eq(RING_FN(pop)(r, &out), 0);
		expect_desc(out, i);
	}
	cr_assert_eq(RING_FN(pop)(r, &out), -EAGAIN);
	cr_assert_eq(RING_FN(size)(r), 0);
	RING_FN(free)(r);
}

Test(RING_T, wraps_around_many_laps_in_fifo_order)
{
	struct RING_T *r = new_ring(4);
	struct ring_desc out;
	uint64_t next_in = 0, next_out = 0;
	unsigned round, k, burst;

	/* bursts of 1..4: every slot sees thousands of laps of sequence numbers */
	for (round = 0; round < 1000; round++) {
		burst = 1 + round % 4;
		for (k = 0; k < burst; k++)
			cr_assert_eq(RING_FN(push)(r, desc_of(next_in++)), 0);
		cr_assert_eq(RING_FN(size)(r), burst);
		if (burst == 4)
			cr_assert_eq(RING_FN(push)(r, desc_of(999999)), -EAGAIN);
		for (k = 0; k < burst; k++) {
			cr_assert_eq(RING_FN(pop)(r, &out), 0);
			expect_desc(out, next_out++);
		}
		cr_assert_eq(RING_FN(pop)(r, &out), -EAGAIN);
	}
	cr_assert_eq(next_out, 2500);
	RING_FN(free)(r);
}

#endif /* SW_TESTS_RING_TEST_H */
