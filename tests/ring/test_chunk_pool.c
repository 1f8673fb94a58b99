/*
 * tests/ring/test_chunk_pool.c - chunk pools: creation rules, exhaustion,
 * returns from other threads, fan-out refcounts, headroom, ownership
 * hand-over, the optional allocator.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "ring/chunk_pool.h"

#define POOL_ID 7u
#define NCHUNKS 16u
#define DATA_CAP 4096u

static struct chunk_pool *new_pool(size_t n, uint32_t cap)
{
	int err = 1;
	struct chunk_pool *p = chunk_pool_new(POOL_ID, n, cap, NULL, &err);

	cr_assert_not_null(p, "chunk_pool_new failed: %d", err);
	cr_assert_eq(err, 0);
	return p;
}

static void expect_stats(
	struct chunk_pool *p, size_t free, size_t returning, size_t in_use, uint64_t exhausted)
{
	struct chunk_pool_stats st;

	chunk_pool_read_stats(p, &st);
	cr_assert_eq(st.total, NCHUNKS);
	cr_assert_eq(st.free, free, "free %zu, expected %zu", st.free, free);
	cr_assert_eq(
		st.returning, returning, "returning %zu, expected %zu", st.returning, returning);
	cr_assert_eq(st.in_use, in_use, "in_use %zu, expected %zu", st.in_use, in_use);
	cr_assert_eq(st.exhausted, exhausted, "exhausted %llu, expected %llu",
		(unsigned long long)st.exhausted, (unsigned long long)exhausted);
}

static unsigned int refs_of(struct chunk *c)
{
	/* relaxed: the test thread reads a count no other thread is changing */
	return atomic_load_explicit(&c->refs, memory_order_relaxed);
}

/* Put every chunk of <cs> from a thread that does not own the pool. */
struct put_job {
	struct chunk **cs;
	size_t n;
};

static void *put_all(void *arg)
{
	struct put_job *job = arg;
	size_t i;

	for (i = 0; i < job->n; i++)
		chunk_put(job->cs[i]);
	return NULL;
}

static void put_from_other_thread(struct chunk **cs, size_t n)
{
	struct put_job job = {cs, n};
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, put_all, &job), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
}

Test(chunk_pool, rejects_zero_chunks_and_data_cap_not_above_headroom)
{
	int err = 0;

	cr_assert_null(chunk_pool_new(1, 0, DATA_CAP, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	err = 0;
	cr_assert_null(chunk_pool_new(1, 4, CHUNK_HEADROOM, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	err = 0;
	cr_assert_null(chunk_pool_new(1, SIZE_MAX / 64, DATA_CAP, NULL, &err));
	cr_assert_eq(err, -EINVAL);
}

Test(chunk_pool, new_pool_has_every_chunk_free)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);

	cr_assert_eq(chunk_pool_id(p), POOL_ID);
	expect_stats(p, NCHUNKS, 0, 0, 0);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, get_returns_a_reset_chunk_with_one_reference)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p);

	cr_assert_not_null(c);
	cr_assert_eq(refs_of(c), 1);
	cr_assert_eq(c->pool, p);
	cr_assert_eq(c->pool_id, POOL_ID);
	cr_assert_eq(c->cap, DATA_CAP);
	cr_assert_eq(c->off, CHUNK_HEADROOM);
	cr_assert_eq(c->len, 0);
	cr_assert_eq(c->flags, 0);
	cr_assert_null(c->user);
	cr_assert_null(c->next);
	cr_assert_eq(chunk_headroom(c), CHUNK_HEADROOM);
	cr_assert_eq(chunk_tailroom(c), DATA_CAP - CHUNK_HEADROOM);
	cr_assert_eq(chunk_ptr(c), c->data + CHUNK_HEADROOM);
	cr_assert_eq((uintptr_t)c->data % 64, 0, "data[] not 64-byte aligned");
	expect_stats(p, NCHUNKS - 1, 0, 1, 0);
	chunk_put(c);
	expect_stats(p, NCHUNKS, 0, 0, 0);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, chunks_are_distinct_and_do_not_overlap)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *cs[NCHUNKS];
	size_t i, j;

	for (i = 0; i < NCHUNKS; i++) {
		cs[i] = chunk_pool_get(p);
		cr_assert_not_null(cs[i]);
		memset(cs[i]->data, (int)i + 1, cs[i]->cap);
	}
	for (i = 0; i < NCHUNKS; i++) {
		cr_assert_eq(cs[i]->cap, DATA_CAP, "chunk %zu header overwritten", i);
		cr_assert_eq(cs[i]->pool, p, "chunk %zu header overwritten", i);
		for (j = 0; j < DATA_CAP; j++)
			cr_assert_eq(cs[i]->data[j], i + 1, "chunk %zu byte %zu", i, j);
	}
	for (i = 0; i < NCHUNKS; i++)
		chunk_put(cs[i]);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, exhausted_pool_returns_null_and_counts_each_miss)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *cs[NCHUNKS], *c;
	size_t i;

	for (i = 0; i < NCHUNKS; i++)
		cs[i] = chunk_pool_get(p);
	cr_assert_null(chunk_pool_get(p));
	cr_assert_null(chunk_pool_get(p));
	expect_stats(p, 0, 0, NCHUNKS, 2);
	/* the owner's own put makes the chunk available at once, LIFO */
	chunk_put(cs[3]);
	expect_stats(p, 1, 0, NCHUNKS - 1, 2);
	c = chunk_pool_get(p);
	cr_assert_eq(c, cs[3]);
	cr_assert_null(chunk_pool_get(p));
	expect_stats(p, 0, 0, NCHUNKS, 3);
	for (i = 0; i < NCHUNKS; i++)
		chunk_put(cs[i]);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, returns_from_another_thread_arrive_back_through_reclaim)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *cs[NCHUNKS];
	size_t i;

	for (i = 0; i < NCHUNKS; i++)
		cs[i] = chunk_pool_get(p);
	put_from_other_thread(cs, NCHUNKS);
	/* every chunk waits in the return ring: the ring holds the whole pool */
	expect_stats(p, 0, NCHUNKS, 0, 0);
	cr_assert_eq(chunk_pool_reclaim(p), NCHUNKS);
	expect_stats(p, NCHUNKS, 0, 0, 0);
	cr_assert_eq(chunk_pool_reclaim(p), 0);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, get_reclaims_by_itself_when_the_free_list_is_empty)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *cs[NCHUNKS], *c;
	size_t i;

	for (i = 0; i < NCHUNKS; i++)
		cs[i] = chunk_pool_get(p);
	put_from_other_thread(&cs[5], 2);
	expect_stats(p, 0, 2, NCHUNKS - 2, 0);
	c = chunk_pool_get(p);
	cr_assert(c == cs[5] || c == cs[6]);
	cr_assert_eq(refs_of(c), 1);
	expect_stats(p, 1, 0, NCHUNKS - 1, 0);
	for (i = 0; i < NCHUNKS; i++) {
		if (i != 5 && i != 6)
			chunk_put(cs[i]);
	}
	chunk_put(c);
	expect_stats(p, NCHUNKS, 0, 0, 0);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, fan_out_returns_the_chunk_only_on_the_last_put)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p);

	chunk_ref(c);
	cr_assert_eq(refs_of(c), 2);
	chunk_put(c);
	cr_assert_eq(refs_of(c), 1);
	expect_stats(p, NCHUNKS - 1, 0, 1, 0);
	chunk_put(c);
	expect_stats(p, NCHUNKS, 0, 0, 0);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, fan_out_across_threads_returns_once_whoever_puts_last)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p);
	struct chunk *copies[2] = {c, c};

	chunk_ref(c);
	chunk_ref(c);
	cr_assert_eq(refs_of(c), 3);
	/* two readers elsewhere drop theirs: the owner's reference keeps it out */
	put_from_other_thread(copies, 2);
	cr_assert_eq(refs_of(c), 1);
	expect_stats(p, NCHUNKS - 1, 0, 1, 0);
	/* the owner's last put lands straight on the free list */
	chunk_put(c);
	expect_stats(p, NCHUNKS, 0, 0, 0);

	/* and the other way round: the foreign last put goes through the ring */
	c = chunk_pool_get(p);
	chunk_ref(c);
	chunk_put(c);
	copies[0] = c;
	put_from_other_thread(copies, 1);
	expect_stats(p, NCHUNKS - 1, 1, 0, 0);
	cr_assert_eq(chunk_pool_reclaim(p), 1);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, headroom_takes_a_frame_header_in_front_of_the_payload)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p);
	unsigned char *payload = chunk_ptr(c), *hdr;

	memcpy(payload, "hello", 5);
	c->len = 5;
	hdr = chunk_push_front(c, 8);
	cr_assert_eq(hdr, payload - 8);
	memset(hdr, 0xee, 8);
	cr_assert_eq(chunk_ptr(c), hdr);
	cr_assert_eq(c->len, 13);
	cr_assert_eq(chunk_headroom(c), CHUNK_HEADROOM - 8);
	cr_assert_eq(chunk_tailroom(c), DATA_CAP - CHUNK_HEADROOM - 5);
	cr_assert_eq(memcmp(chunk_ptr(c) + 8, "hello", 5), 0);
	/* more than the remaining headroom: refused, nothing moves */
	cr_assert_null(chunk_push_front(c, CHUNK_HEADROOM - 7));
	cr_assert_eq(chunk_ptr(c), hdr);
	cr_assert_eq(c->len, 13);
	chunk_pull_front(c, 8);
	cr_assert_eq(chunk_ptr(c), payload);
	cr_assert_eq(c->len, 5);
	/* exactly the whole headroom fits */
	cr_assert_eq(chunk_push_front(c, CHUNK_HEADROOM), c->data);
	cr_assert_eq(chunk_headroom(c), 0);
	cr_assert_eq(c->len, CHUNK_HEADROOM + 5);
	chunk_put(c);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, reused_chunk_comes_back_reset)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p), *again;

	c->len = 100;
	cr_assert_not_null(chunk_push_front(c, 16));
	c->flags = 0x5a;
	c->user = p;
	c->next = c;
	chunk_put(c);
	again = chunk_pool_get(p);
	cr_assert_eq(again, c);
	cr_assert_eq(again->off, CHUNK_HEADROOM);
	cr_assert_eq(again->len, 0);
	cr_assert_eq(again->flags, 0);
	cr_assert_null(again->user);
	cr_assert_null(again->next);
	cr_assert_eq(refs_of(again), 1);
	chunk_put(again);
	cr_assert_eq(chunk_pool_free(p), 0);
}

Test(chunk_pool, free_refuses_while_a_chunk_is_held)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct chunk *c = chunk_pool_get(p);

	cr_assert_eq(chunk_pool_free(p), -EBUSY);
	expect_stats(p, NCHUNKS - 1, 0, 1, 0);
	chunk_put(c);
	cr_assert_eq(chunk_pool_free(p), 0);
}

/* Thread that adopts the pool, frees one chunk locally and hands one out. */
struct adopt_job {
	struct chunk_pool *pool;
	struct chunk *handed;
	size_t free_after_local_put;
};

static void *adopt_and_use(void *arg)
{
	struct adopt_job *job = arg;
	struct chunk_pool_stats st;
	struct chunk *local;

	chunk_pool_adopt(job->pool);
	local = chunk_pool_get(job->pool);
	job->handed = chunk_pool_get(job->pool);
	chunk_put(local);
	chunk_pool_read_stats(job->pool, &st);
	job->free_after_local_put = st.free;
	return NULL;
}

Test(chunk_pool, adopt_makes_the_calling_thread_the_owner)
{
	struct chunk_pool *p = new_pool(NCHUNKS, DATA_CAP);
	struct adopt_job job = {p, NULL, 0};
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, adopt_and_use, &job), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	/* the adopter's own put went straight onto its free list */
	cr_assert_eq(job.free_after_local_put, NCHUNKS - 1);
	cr_assert_not_null(job.handed);
	/* we are no longer the owner: our put goes through the return ring */
	chunk_put(job.handed);
	chunk_pool_adopt(p);
	expect_stats(p, NCHUNKS - 1, 1, 0, 0);
	cr_assert_eq(chunk_pool_reclaim(p), 1);
	cr_assert_eq(chunk_pool_free(p), 0);
}

/* Allocator that records its calls. */
struct counting_alloc {
	int allocs, frees;
	size_t size, align, freed_size;
	void *block, *freed;
};

static void *counting_alloc_fn(void *ctx, size_t size, size_t align)
{
	struct counting_alloc *ca = ctx;

	ca->allocs++;
	ca->size = size;
	ca->align = align;
	ca->block = aligned_alloc(align, size);
	return ca->block;
}

static void counting_free_fn(void *ctx, void *p, size_t size)
{
	struct counting_alloc *ca = ctx;

	ca->frees++;
	ca->freed = p;
	ca->freed_size = size;
	free(p);
}

Test(chunk_pool, chunk_memory_comes_from_the_given_allocator_in_one_block)
{
	struct counting_alloc ca = {0};
	struct chunk_pool_allocator a = {counting_alloc_fn, counting_free_fn, &ca};
	struct chunk *cs[NCHUNKS];
	int err = 1;
	struct chunk_pool *p = chunk_pool_new(POOL_ID, NCHUNKS, DATA_CAP, &a, &err);
	unsigned char *lo, *hi;
	size_t i;

	cr_assert_not_null(p);
	cr_assert_eq(ca.allocs, 1);
	cr_assert_eq(ca.align, 64);
	cr_assert_geq(ca.size, (size_t)NCHUNKS * DATA_CAP);
	lo = ca.block;
	hi = lo + ca.size;
	for (i = 0; i < NCHUNKS; i++) {
		cs[i] = chunk_pool_get(p);
		cr_assert((unsigned char *)cs[i] >= lo && cs[i]->data + cs[i]->cap <= hi,
			"chunk %zu outside the allocated block", i);
	}
	cr_assert_eq(chunk_pool_free(p), -EBUSY);
	cr_assert_eq(ca.frees, 0);
	put_from_other_thread(cs, NCHUNKS);
	/* free reclaims the returns itself, then gives the block back */
	cr_assert_eq(chunk_pool_free(p), 0);
	cr_assert_eq(ca.frees, 1);
	cr_assert_eq(ca.freed, ca.block);
	cr_assert_eq(ca.freed_size, ca.size);
}

static void *null_alloc_fn(void *ctx, size_t size, size_t align)
{
	int *calls = ctx;

	(*calls)++;
	return NULL;
}

static void never_free_fn(void *ctx, void *p, size_t size)
{
	cr_assert_fail("free called for a block that was never allocated");
}

Test(chunk_pool, failed_chunk_allocation_reports_enomem)
{
	int calls = 0, err = 0;
	struct chunk_pool_allocator a = {null_alloc_fn, never_free_fn, &calls};

	cr_assert_null(chunk_pool_new(POOL_ID, NCHUNKS, DATA_CAP, &a, &err));
	cr_assert_eq(err, -ENOMEM);
	cr_assert_eq(calls, 1);
}
