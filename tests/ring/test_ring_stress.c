/*
 * tests/ring/test_ring_stress.c - many-thread runs of the rings, the chunk
 * pool's cross-thread return path and the wake protocol.  Every item
 * carries (producer, sequence number); the consumer checks that each
 * producer's items arrive in order with no gap, which proves each arrived
 * exactly once.  Runs under ThreadSanitizer in CI (CTest label "threads").
 *
 * Item counts: 4 producers x 1,000,000 into one MPSC ring, and 4,000,000
 * through an SPSC ring, in every build, sanitizers included: measured on 2
 * busy cores (gcc 12), the whole file takes about 1 s normally, 2 s under
 * ASan+UBSan (-O0) and 3.5 to 5.5 s under TSan, far below the 60 s budget,
 * so no count is reduced.  SW_RING_STRESS_ITEMS=<n> in the environment sets
 * the per-producer count (SPSC moves 4 x n) for longer soak runs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring/chunk_pool.h"
#include "ring/mpsc.h"
#include "ring/spsc.h"
#include "ring/wake.h"

#define STRESS_ITEMS_DEFAULT 1000000u
#define MPSC_PRODUCERS 4u

static uint64_t stress_items(void)
{
	const char *env = getenv("SW_RING_STRESS_ITEMS");
	unsigned long long n;
	char *end;

	if (!env || !*env)
		return STRESS_ITEMS_DEFAULT;
	n = strtoull(env, &end, 10);
	cr_assert(*end == '\0' && n > 0 && n < (1ull << 32), "bad SW_RING_STRESS_ITEMS `%s`", env);
	return n;
}

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* aux layout of a stress item: producer id in the top 16 bits, sequence below */
#define ITEM_AUX(id, seq) ((uint64_t)(id) << 48 | (uint64_t)(seq))
#define ITEM_ID(aux) ((aux) >> 48)
#define ITEM_SEQ(aux) ((aux) & ((1ull << 48) - 1))

/* ---- MPSC: 4 producers, 1 consumer ---- */

struct mpsc_run {
	struct ring_mpsc *ring;
	uint64_t items;		 /* per producer */
	pthread_barrier_t start; /* producers and consumer begin together */
	atomic_int stop;	 /* consumer gave up: producers stop pushing */
};

struct mpsc_producer {
	struct mpsc_run *run;
	unsigned int id;
	uint64_t full; /* pushes refused because the ring was full */
};

static void *mpsc_produce(void *arg)
{
	struct mpsc_producer *p = arg;
	struct mpsc_run *run = p->run;
	struct ring_desc d = {.ptr = p};
	uint64_t i;

	pthread_barrier_wait(&run->start);
	for (i = 0; i < run->items; i++) {
		d.aux = ITEM_AUX(p->id, i);
		while (ring_mpsc_push(run->ring, d) != 0) {
			p->full++;
			/* relaxed: a give-up flag; nothing is published through it */
			if (atomic_load_explicit(&run->stop, memory_order_relaxed))
				return NULL;
			sched_yield();
		}
	}
	return NULL;
}

Test(ring_stress, mpsc_four_producers_deliver_each_item_once_in_producer_order)
{
	struct mpsc_run run = {.items = stress_items()};
	struct mpsc_producer prod[MPSC_PRODUCERS];
	pthread_t th[MPSC_PRODUCERS];
	uint64_t next[MPSC_PRODUCERS] = {0}, got = 0, total, id = 0, seq = 0, empty = 0;
	struct ring_desc out[64];
	struct timespec t0;
	const char *bad = NULL;
	size_t n, i;
	int err;

	run.ring = ring_mpsc_new(1024, &err);
	cr_assert_not_null(run.ring);
	total = run.items * MPSC_PRODUCERS;
	cr_assert_eq(pthread_barrier_init(&run.start, NULL, MPSC_PRODUCERS + 1), 0);
	for (i = 0; i < MPSC_PRODUCERS; i++) {
		prod[i] = (struct mpsc_producer){.run = &run, .id = (unsigned int)i};
		cr_assert_eq(pthread_create(&th[i], NULL, mpsc_produce, &prod[i]), 0);
	}
	pthread_barrier_wait(&run.start);
	clock_gettime(CLOCK_MONOTONIC, &t0);

	while (got < total && !bad) {
		/* alternate single pops and batches of 1..64 */
		if (got % 3 == 0)
			n = ring_mpsc_pop(run.ring, &out[0]) == 0;
		else
			n = ring_mpsc_pop_batch(run.ring, out, 1 + got % 64);
		if (n == 0) {
			empty++;
			sched_yield();
			continue;
		}
		for (i = 0; i < n; i++) {
			id = ITEM_ID(out[i].aux);
			seq = ITEM_SEQ(out[i].aux);
			if (id >= MPSC_PRODUCERS) {
				bad = "producer id out of range";
				break;
			}
			if (out[i].ptr != &prod[id]) {
				bad = "ptr does not match the producer";
				break;
			}
			if (seq != next[id]) {
				bad = seq < next[id] ? "duplicate or reordered item"
						     : "missing item";
				break;
			}
			next[id]++;
		}
		got += n;
	}
	/* relaxed: only a give-up flag (set on failure so producers do not spin) */
	atomic_store_explicit(&run.stop, 1, memory_order_relaxed);
	for (i = 0; i < MPSC_PRODUCERS; i++)
		pthread_join(th[i], NULL);

	cr_assert_null(bad, "%s: producer %llu item %llu, expected %llu", bad,
		(unsigned long long)id, (unsigned long long)seq,
		(unsigned long long)(id < MPSC_PRODUCERS ? next[id] : 0));
	for (i = 0; i < MPSC_PRODUCERS; i++)
		cr_assert_eq(next[i], run.items, "producer %zu: %llu of %llu items", i,
			(unsigned long long)next[i], (unsigned long long)run.items);
	cr_assert_eq(ring_mpsc_pop_batch(run.ring, out, 64), 0, "items beyond the count");
	cr_log_info("mpsc: %llu items in %.2f s; consumer found it empty %llu times, "
		    "producers found it full %llu/%llu/%llu/%llu times",
		(unsigned long long)total, elapsed_s(&t0), (unsigned long long)empty,
		(unsigned long long)prod[0].full, (unsigned long long)prod[1].full,
		(unsigned long long)prod[2].full, (unsigned long long)prod[3].full);
	pthread_barrier_destroy(&run.start);
	ring_mpsc_free(run.ring);
}

/* ---- SPSC: 1 producer, 1 consumer ---- */

struct spsc_run {
	struct ring_spsc *ring;
	uint64_t items;
	atomic_int stop; /* consumer gave up */
};

static void *spsc_produce(void *arg)
{
	struct spsc_run *run = arg;
	struct ring_desc batch[16];
	uint64_t i = 0;
	size_t k, n, want;

	while (i < run->items) {
		/* alternate single pushes (want 0) and batches of 1..16 */
		want = (size_t)(i % 17);
		if (want > run->items - i)
			want = (size_t)(run->items - i);
		for (k = 0; k < want || k == 0; k++)
			batch[k] = (struct ring_desc){.ptr = run, .aux = i + k};
		if (want == 0) {
			want = 1;
			n = ring_spsc_push(run->ring, batch[0]) == 0;
		} else {
			n = ring_spsc_push_batch(run->ring, batch, want);
		}
		i += n;
		if (n == want)
			continue;
		/* relaxed: only a give-up flag */
		if (atomic_load_explicit(&run->stop, memory_order_relaxed))
			return NULL;
		sched_yield();
	}
	return NULL;
}

Test(ring_stress, spsc_delivers_millions_of_items_once_in_order)
{
	struct spsc_run run = {.items = 4 * stress_items()};
	struct ring_desc out[32];
	uint64_t next = 0;
	struct timespec t0;
	const char *bad = NULL;
	pthread_t th;
	size_t n, i = 0;
	int err;

	run.ring = ring_spsc_new(512, &err);
	cr_assert_not_null(run.ring);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(pthread_create(&th, NULL, spsc_produce, &run), 0);
	while (next < run.items && !bad) {
		if (next % 5 == 0)
			n = ring_spsc_pop(run.ring, &out[0]) == 0;
		else
			n = ring_spsc_pop_batch(run.ring, out, 1 + next % 32);
		if (n == 0)
			sched_yield();
		for (i = 0; i < n; i++) {
			if (out[i].ptr != &run || out[i].aux != next) {
				bad = "wrong item";
				break;
			}
			next++;
		}
	}
	/* relaxed: only a give-up flag */
	atomic_store_explicit(&run.stop, 1, memory_order_relaxed);
	pthread_join(th, NULL);
	cr_assert_null(bad, "%s at %llu: aux %llu", bad, (unsigned long long)next,
		(unsigned long long)out[i].aux);
	cr_assert_eq(next, run.items);
	cr_assert_eq(ring_spsc_pop(run.ring, &out[0]), -EAGAIN);
	cr_assert_eq(ring_spsc_size(run.ring), 0);
	cr_log_info("spsc: %llu items in %.2f s", (unsigned long long)run.items, elapsed_s(&t0));
	ring_spsc_free(run.ring);
}

/* ---- chunk pool: fan-out to two reader threads, returns from both ---- */

#define POOL_CHUNKS 16u
#define POOL_ROUNDS 200000u
#define POOL_READERS 2u
#define POOL_DEADLINE_S 60.0 /* a lost chunk shows as the pool running dry for good */

struct pool_reader {
	struct ring_spsc *in; /* chunks from the owner */
	atomic_int *stop;
	uint64_t seen;	  /* chunks read and put */
	uint64_t corrupt; /* payload not matching the descriptor */
};

static void *pool_read(void *arg)
{
	struct pool_reader *rd = arg;
	struct ring_desc d;
	struct chunk *c;
	uint64_t v;

	while (rd->seen < POOL_ROUNDS) {
		if (ring_spsc_pop(rd->in, &d) != 0) {
			/* relaxed: only a give-up flag */
			if (atomic_load_explicit(rd->stop, memory_order_relaxed))
				return NULL;
			sched_yield();
			continue;
		}
		c = d.ptr;
		memcpy(&v, chunk_ptr(c), sizeof(v));
		if (c->len != sizeof(v) || v != d.aux || c->pool_id != 9)
			rd->corrupt++;
		rd->seen++;
		chunk_put(c);
	}
	return NULL;
}

Test(ring_stress, chunk_pool_gets_every_chunk_back_from_two_reader_threads)
{
	struct pool_reader rd[POOL_READERS];
	pthread_t th[POOL_READERS];
	struct chunk_pool_stats st;
	struct chunk_pool *pool;
	atomic_int stop = 0;
	uint64_t round, waits = 0;
	const char *bad = NULL;
	struct timespec t0;
	struct chunk *c;
	size_t i;
	int err;

	pool = chunk_pool_new(9, POOL_CHUNKS, 256, NULL, &err);
	cr_assert_not_null(pool);
	for (i = 0; i < POOL_READERS; i++) {
		rd[i] = (struct pool_reader){.stop = &stop};
		rd[i].in = ring_spsc_new(16, &err);
		cr_assert_not_null(rd[i].in);
		cr_assert_eq(pthread_create(&th[i], NULL, pool_read, &rd[i]), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (round = 0; round < POOL_ROUNDS && !bad; round++) {
		while (!(c = chunk_pool_get(pool))) {
			waits++;
			if (waits % 1024 == 0 && elapsed_s(&t0) > POOL_DEADLINE_S) {
				bad = "chunks stopped coming back";
				break;
			}
			sched_yield();
		}
		if (bad)
			break;
		memcpy(chunk_ptr(c), &round, sizeof(round));
		c->len = sizeof(round);
		/* one reference per reader, plus one the owner keeps for a while on every third */
		chunk_ref(c);
		if (round % 3 == 0)
			chunk_ref(c);
		for (i = 0; i < POOL_READERS; i++) {
			while (ring_spsc_push(
				       rd[i].in, (struct ring_desc){.ptr = c, .aux = round}) != 0)
				sched_yield();
		}
		/* the owner's put is sometimes the last one: then it skips the return ring */
		if (round % 3 == 0)
			chunk_put(c);
		if (round % 64 == 0)
			chunk_pool_reclaim(pool);
	}
	if (bad)
		/* relaxed: only a give-up flag */
		atomic_store_explicit(&stop, 1, memory_order_relaxed);
	for (i = 0; i < POOL_READERS; i++)
		pthread_join(th[i], NULL);
	cr_assert_null(bad, "%s (round %llu)", bad, (unsigned long long)round);
	chunk_pool_reclaim(pool);
	chunk_pool_read_stats(pool, &st);
	for (i = 0; i < POOL_READERS; i++) {
		cr_assert_eq(rd[i].seen, POOL_ROUNDS, "reader %zu saw %llu", i,
			(unsigned long long)rd[i].seen);
		cr_assert_eq(rd[i].corrupt, 0, "reader %zu: %llu corrupt chunks", i,
			(unsigned long long)rd[i].corrupt);
	}
	cr_assert_eq(st.free, POOL_CHUNKS, "%zu of %u chunks came back", st.free, POOL_CHUNKS);
	cr_assert_eq(st.in_use, 0);
	cr_assert_eq(st.returning, 0);
	cr_assert_eq(st.exhausted, waits);
	cr_log_info("chunk pool: %u rounds in %.2f s, owner waited for a chunk %llu times",
		POOL_ROUNDS, elapsed_s(&t0), (unsigned long long)waits);
	for (i = 0; i < POOL_READERS; i++)
		ring_spsc_free(rd[i].in);
	cr_assert_eq(chunk_pool_free(pool), 0);
}

/* ---- MPSC + armed wake: the consumer sleeps whenever the inbox is empty ---- */

#define WAKE_PRODUCERS 2u
#define WAKE_ITEMS 100000u
#define WAKE_TIMEOUT_MS 5000

struct wake_run {
	struct ring_mpsc *ring;
	struct ring_wake wake;
	atomic_int stop;
};

struct wake_producer {
	struct wake_run *run;
	unsigned int id;
	int err; /* first failed notify */
};

static void *wake_produce(void *arg)
{
	struct wake_producer *p = arg;
	struct timespec pause = {0, 20000};
	uint64_t i;
	int ret;

	for (i = 0; i < WAKE_ITEMS; i++) {
		while (ring_mpsc_push(p->run->ring, (struct ring_desc){p, ITEM_AUX(p->id, i)}) !=
			0) {
			/* relaxed: only a give-up flag */
			if (atomic_load_explicit(&p->run->stop, memory_order_relaxed))
				return NULL;
			sched_yield();
		}
		ret = ring_wake_notify(&p->run->wake);
		if (ret < 0 && p->err == 0)
			p->err = ret;
		/* let the consumer run dry now and then, so it goes to sleep */
		if (i % 256 == 255)
			nanosleep(&pause, NULL);
	}
	return NULL;
}

Test(ring_stress, mpsc_consumer_sleeping_on_wake_loses_no_item)
{
	struct wake_run run = {0};
	struct wake_producer prod[WAKE_PRODUCERS];
	pthread_t th[WAKE_PRODUCERS];
	uint64_t next[WAKE_PRODUCERS] = {0}, got = 0, id, sleeps = 0;
	struct ring_desc out[32];
	const char *bad = NULL;
	size_t n, i;
	int err, ret = 1;

	run.ring = ring_mpsc_new(256, &err);
	cr_assert_not_null(run.ring);
	cr_assert_eq(ring_wake_init(&run.wake), 0);
	for (i = 0; i < WAKE_PRODUCERS; i++) {
		prod[i] = (struct wake_producer){.run = &run, .id = (unsigned int)i};
		cr_assert_eq(pthread_create(&th[i], NULL, wake_produce, &prod[i]), 0);
	}
	while (got < (uint64_t)WAKE_PRODUCERS * WAKE_ITEMS && !bad) {
		n = ring_mpsc_pop_batch(run.ring, out, 32);
		for (i = 0; i < n; i++) {
			id = ITEM_ID(out[i].aux);
			if (id >= WAKE_PRODUCERS || out[i].ptr != &prod[id] ||
				ITEM_SEQ(out[i].aux) != next[id]) {
				bad = "wrong, duplicate or missing item";
				break;
			}
			next[id]++;
		}
		got += n;
		if (n > 0)
			continue;
		ring_wake_arm(&run.wake);
		if (ring_mpsc_size(run.ring) > 0) {
			ring_wake_disarm(&run.wake);
			continue;
		}
		sleeps++;
		ret = ring_wake_wait(&run.wake, WAKE_TIMEOUT_MS);
		ring_wake_disarm(&run.wake);
		if (ret != 1)
			bad = ret == 0 ? "lost wake: timed out with producers still running"
				       : "ring_wake_wait failed";
	}
	/* relaxed: only a give-up flag */
	atomic_store_explicit(&run.stop, 1, memory_order_relaxed);
	for (i = 0; i < WAKE_PRODUCERS; i++)
		pthread_join(th[i], NULL);
	cr_assert_null(bad, "%s (got %llu, wait %d)", bad, (unsigned long long)got, ret);
	for (i = 0; i < WAKE_PRODUCERS; i++) {
		cr_assert_eq(next[i], WAKE_ITEMS);
		cr_assert_eq(prod[i].err, 0);
	}
	cr_assert_gt(sleeps, 0, "the consumer never slept: the wake path was not exercised");
	cr_log_info("wake: %u items, consumer slept %llu times", WAKE_PRODUCERS * WAKE_ITEMS,
		(unsigned long long)sleeps);
	ring_wake_destroy(&run.wake);
	ring_mpsc_free(run.ring);
}
