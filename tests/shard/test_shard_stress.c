/*
 * tests/shard/test_shard_stress.c - the shard runtime with many threads at
 * once (CTest label "threads": also run under ThreadSanitizer through the
 * in-process Criterion stand-in, so only Test/cr_assert/cr_log_info here).
 *
 *  - all-to-all calls among 4 shards (more shards than CPUs) plus a
 *    non-shard sender, by MSG_RING and by eventfd: each arrives once, in
 *    its sender's order;
 *  - a stop in the middle of heavy traffic, shards and an outside thread
 *    sending: every call that was accepted runs exactly once;
 *  - start/stop cycles under traffic leave no fd and no thread;
 *  - multishot recv whose chunks are released on another shard.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ring/chunk.h"
#include "ring/chunk_pool.h"
#include "tests/shard/shard_test.h"

#define NS 4		 /* shards */
#define SENDERS (NS + 1) /* the shards and one outside thread */

static struct st_log quiet_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void stress_config(struct shard_config *cfg, unsigned n, unsigned flags)
{
	shard_config_init(cfg, n);
	cfg->flags = flags;
	cfg->pool_chunks = 32;
	cfg->buf_entries = 8;
	cfg->buf_reserve = 4;
	cfg->chunk_size = CHUNK_HEADROOM + 4096;
	cfg->inbox_entries = 512;
	cfg->log = st_log_sink;
	cfg->log_ctx = &quiet_log;
}

/* ---- all to all, plus an outside sender ---------------------------------------- */

struct a2a_shard {
	struct shard_timer t;
	uint32_t next_seq[NS];
	uint32_t expect[SENDERS];
	uint32_t bad;
	struct shard_stats st;
};

static struct {
	uint32_t k;
	struct a2a_shard sh[NS];
	atomic_uint_fast64_t received;
} a2a;

static void a2a_recv(struct shard *s, void *arg)
{
	uint64_t v = (uint64_t)(uintptr_t)arg;
	struct a2a_shard *me = &a2a.sh[shard_id(s)];
	unsigned from = (unsigned)(v >> 32);

	if ((uint32_t)v != me->expect[from])
		me->bad++;
	me->expect[from] = (uint32_t)v + 1;
	atomic_fetch_add_explicit(&a2a.received, 1, memory_order_release);
}

static void a2a_round(struct shard *s, struct shard_timer *t)
{
	unsigned me = shard_id(s);
	struct a2a_shard *sh = &a2a.sh[me];
	bool all = true;

	for (unsigned j = 0; j < NS; j++) {
		if (j == me)
			continue;
		for (unsigned n = 0; n < 128 && sh->next_seq[j] < a2a.k; n++) {
			uint64_t v = ((uint64_t)me << 32) | sh->next_seq[j];

			if (shard_call(shard_group_get(shard_get_group(s), j), a2a_recv,
				    (void *)(uintptr_t)v) != 0)
				break;
			sh->next_seq[j]++;
		}
		all = all && sh->next_seq[j] == a2a.k;
	}
	if (!all)
		shard_timer_arm(s, t, shard_now_ns() + 200000);
}

static int a2a_start(struct shard *s, void *user)
{
	shard_timer_init(&a2a.sh[shard_id(s)].t, a2a_round);
	shard_timer_arm(s, &a2a.sh[shard_id(s)].t, shard_now_ns());
	return 0;
}

static void a2a_stop(struct shard *s, void *user)
{
	shard_timer_cancel(s, &a2a.sh[shard_id(s)].t);
	shard_read_stats(s, &a2a.sh[shard_id(s)].st);
}

static void a2a_run(uint32_t k, unsigned flags)
{
	struct shard_config cfg;
	struct shard_group *g;
	uint32_t out_seq[NS] = {0};
	uint64_t want = (uint64_t)NS * (NS - 1) * k + (uint64_t)NS * k;
	bool all;
	int err;

	memset(&a2a, 0, sizeof(a2a));
	a2a.k = k;
	stress_config(&cfg, NS, flags);
	cfg.on_start = a2a_start;
	cfg.on_stop = a2a_stop;
	g = shard_group_start(&cfg, &err);
	cr_assert(g != NULL, "start: %s", strerror(-err));
	/* this thread is sender NS: k calls to each shard, retrying when an inbox is full */
	do {
		all = true;
		for (unsigned j = 0; j < NS; j++) {
			for (unsigned n = 0; n < 64 && out_seq[j] < k; n++) {
				uint64_t v = ((uint64_t)NS << 32) | out_seq[j];

				if (shard_call(shard_group_get(g, j), a2a_recv,
					    (void *)(uintptr_t)v) != 0)
					break;
				out_seq[j]++;
			}
			all = all && out_seq[j] == k;
		}
		if (!all)
			st_sleep_us(100);
	} while (!all);
	cr_assert(st_wait_u64(&a2a.received, want, 60000), "%llu of %llu arrived: a lost wake?",
		(unsigned long long)atomic_load(&a2a.received), (unsigned long long)want);
	cr_assert_eq(shard_group_stop(g), 0);
	for (unsigned i = 0; i < NS; i++) {
		cr_assert_eq(a2a.sh[i].bad, 0, "shard %u saw reordering or duplicates", i);
		for (unsigned j = 0; j < SENDERS; j++)
			if (j != i)
				cr_assert_eq(a2a.sh[i].expect[j], k, "shard %u from %u", i, j);
		cr_assert_eq(a2a.sh[i].st.calls_run, (uint64_t)NS * k);
	}
}

Test(shard_stress, all_to_all_plus_an_outside_sender_by_msg_ring)
{
	uint64_t msg = 0;

	a2a_run(3000, 0);
	for (unsigned i = 0; i < NS; i++)
		msg += a2a.sh[i].st.wakes_msg_ring;
	cr_log_info("MSG_RING wakes: %llu", (unsigned long long)msg);
	cr_assert(msg > 0);
}

Test(shard_stress, all_to_all_plus_an_outside_sender_by_eventfd)
{
	uint64_t efd = 0, woken = 0;

	a2a_run(3000, SHARD_F_NO_MSG_RING);
	for (unsigned i = 0; i < NS; i++) {
		cr_assert_eq(a2a.sh[i].st.wakes_msg_ring, 0);
		efd += a2a.sh[i].st.wakes_eventfd;
		woken += a2a.sh[i].st.woken_eventfd;
	}
	cr_assert(efd > 0 && woken > 0);
}

/* ---- stop in the middle of traffic: accepted == run ------------------------------------ */

struct tok_shard {
	uint64_t accepted; /* this shard's shard_calls that returned 0 */
	uint64_t run;	   /* calls run here */
	uint64_t refused;  /* -ESHUTDOWN after on_stop */
};

static struct {
	unsigned n;
	struct tok_shard sh[NS];
	struct shard_group *g;
	uint64_t outside_accepted;
	_Atomic uint64_t outside_progress; /* outside_accepted, readable while the thread runs */
	atomic_int outside_stop;
} tok;

static void tok_fwd(struct shard *s, void *arg)
{
	unsigned me = shard_id(s);
	uintptr_t hops = (uintptr_t)arg;
	int rc;

	tok.sh[me].run++;
	/* pass the token on (and sometimes split it in two, to keep inboxes busy) */
	for (int copies = (hops % 7 == 0) ? 2 : 1; copies > 0; copies--) {
		rc = shard_call(
			shard_group_get(shard_get_group(s), (me + (unsigned)copies) % tok.n),
			tok_fwd, (void *)(hops + 1));
		if (rc == 0)
			tok.sh[me].accepted++;
		else if (rc == -ESHUTDOWN)
			tok.sh[me].refused++;
	}
}

static int tok_start(struct shard *s, void *user)
{
	for (uintptr_t i = 1; i <= 32; i++)
		if (shard_call(s, tok_fwd, (void *)i) == 0)
			tok.sh[shard_id(s)].accepted++;
	return 0;
}

static void *tok_outside(void *arg)
{
	unsigned i = 0;

	while (!atomic_load_explicit(&tok.outside_stop, memory_order_acquire)) {
		int rc = shard_call(
			shard_group_get(tok.g, i++ % tok.n), tok_fwd, (void *)(uintptr_t)1);

		if (rc == 0)
			atomic_store_explicit(&tok.outside_progress, ++tok.outside_accepted,
				memory_order_relaxed);
		else if (rc == -ESHUTDOWN)
			break;
		if (i % 64 == 0)
			st_sleep_us(50);
	}
	return NULL;
}

static void tok_run(unsigned n, unsigned flags, unsigned run_ms)
{
	struct shard_config cfg;
	uint64_t accepted, run = 0, refused = 0;
	pthread_t th;
	int err;

	memset(tok.sh, 0, sizeof(tok.sh));
	tok.n = n;
	tok.outside_accepted = 0;
	atomic_store(&tok.outside_progress, 0);
	atomic_store(&tok.outside_stop, 0);
	stress_config(&cfg, n, flags);
	cfg.on_start = tok_start;
	tok.g = shard_group_start(&cfg, &err);
	cr_assert(tok.g != NULL, "start: %s", strerror(-err));
	cr_assert_eq(pthread_create(&th, NULL, tok_outside, NULL), 0);
	st_sleep_us(run_ms * 1000);
	/* On a busy machine <run_ms> may not be enough: wait (5 s at most) for real traffic. */
	for (int waited = 0; waited < 5000 &&
		atomic_load_explicit(&tok.outside_progress, memory_order_relaxed) < 1000; waited++)
		st_sleep_us(1000);
	/* the outside thread races the stop request; shard_group_stop must not race it */
	shard_group_request_stop(tok.g);
	st_sleep_us(2000);
	atomic_store_explicit(&tok.outside_stop, 1, memory_order_release);
	pthread_join(th, NULL);
	cr_assert_eq(shard_group_stop(tok.g), 0);
	accepted = tok.outside_accepted;
	for (unsigned i = 0; i < n; i++) {
		accepted += tok.sh[i].accepted;
		run += tok.sh[i].run;
		refused += tok.sh[i].refused;
	}
	cr_log_info("%u shards: %llu calls accepted, %llu run, %llu refused while stopping", n,
		(unsigned long long)accepted, (unsigned long long)run, (unsigned long long)refused);
	cr_assert_eq(accepted, run, "an accepted call was lost or run twice");
	cr_assert(run > 1000, "too little traffic to mean anything");
}

Test(shard_stress, stop_in_heavy_traffic_runs_every_accepted_call_once)
{
	tok_run(NS, 0, 150);
	tok_run(NS, SHARD_F_NO_MSG_RING, 150);
	tok_run(NS, SHARD_F_NO_DEFER_TASKRUN, 150);
}

Test(shard_stress, start_stop_cycles_under_traffic_leave_nothing_behind)
{
	int fds = st_count_fds(), threads = st_count_threads();

	for (int i = 0; i < 6; i++)
		tok_run(2 + (unsigned)i % 3, i % 2 ? SHARD_F_NO_MSG_RING : 0, 20);
	cr_assert_eq(st_count_fds(), fds);
	cr_assert_eq(st_threads_settle(threads), threads);
}

/* ---- recv, chunks released on another shard ------------------------------------------------ */

static struct {
	int fd;
	struct shard_recv r;
	uint64_t off, bad;
	int end_res;
	atomic_int done;
	struct chunk_pool_stats pool;
	struct shard_stats st;
	atomic_int checked;
} rx;

static void rx_put(struct shard *s, void *arg)
{
	chunk_put(arg); /* shard 1 drops shard 0's chunk: home through the return ring */
}

static void rx_data(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	const uint8_t *p;

	if (!c) {
		rx.end_res = res;
		atomic_store_explicit(&rx.done, 1, memory_order_release);
		return;
	}
	p = chunk_ptr(c);
	for (int i = 0; i < res; i++)
		if (p[i] != st_pattern(rx.off + (uint64_t)i))
			rx.bad++;
	rx.off += (uint64_t)res;
	if (shard_call(shard_group_get(shard_get_group(s), 1), rx_put, c) != 0)
		chunk_put(c);
}

static void rx_begin(struct shard *s, void *arg)
{
	cr_assert_eq(shard_recv_start(s, &rx.r, rx.fd, rx_data), 0);
}

static void rx_check(struct shard *s, void *arg)
{
	chunk_pool_read_stats(shard_pool(s), &rx.pool);
	shard_read_stats(s, &rx.st);
	atomic_store_explicit(&rx.checked, 1, memory_order_release);
}

static void *rx_writer(void *arg)
{
	static uint8_t buf[16384];
	int fd = *(int *)arg;

	for (uint64_t off = 0; off < (4u << 20); off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = st_pattern(off + i);
		for (size_t done = 0; done < sizeof(buf);) {
			ssize_t k = write(fd, buf + done, sizeof(buf) - done);

			if (k <= 0)
				return (void *)1;
			done += (size_t)k;
		}
	}
	close(fd);
	return NULL;
}

Test(shard_stress, recv_with_chunks_released_on_another_shard)
{
	struct shard_config cfg;
	struct shard_group *g;
	pthread_t th;
	void *wr;
	int sv[2], err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	stress_config(&cfg, 2, 0);
	g = shard_group_start(&cfg, &err);
	cr_assert(g != NULL);
	rx.fd = sv[0];
	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_begin, NULL), 0);
	cr_assert_eq(pthread_create(&th, NULL, rx_writer, &sv[1]), 0);
	pthread_join(th, &wr);
	cr_assert(wr == NULL, "writer failed");
	for (int i = 0; i < 30000 && !atomic_load_explicit(&rx.done, memory_order_acquire); i++)
		st_sleep_us(1000);
	cr_assert(atomic_load_explicit(&rx.done, memory_order_acquire), "no EOF");
	cr_assert_eq(rx.end_res, 0);
	cr_assert_eq(rx.off, 4u << 20);
	cr_assert_eq(rx.bad, 0);
	st_sleep_us(10000);
	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_check, NULL), 0);
	for (int i = 0; i < 5000 && !atomic_load_explicit(&rx.checked, memory_order_acquire); i++)
		st_sleep_us(1000);
	cr_assert(atomic_load_explicit(&rx.checked, memory_order_acquire));
	cr_assert_eq(rx.pool.in_use, rx.st.bufs_posted);
	cr_log_info("4 MiB, %llu parks on ENOBUFS", (unsigned long long)rx.st.enobufs);
	cr_assert_eq(shard_group_stop(g), 0);
	close(sv[0]);
}
