/*
 * tests/shard/test_shard.c - the shard runtime: pin parsing, start/stop
 * without leftovers, pinning, cross-shard calls and wakes (MSG_RING and
 * eventfd), multishot recv into chunks (with -ENOBUFS back-pressure),
 * multishot accept, timers, deferred items, stop with ops in flight.
 *
 * A lost wake shows as a deadline passing (the test fails, it does not
 * hang): the receiving shards in the wake tests have no timers at all, so
 * nothing but the wake can get them out of io_uring_enter.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ring/chunk.h"
#include "ring/chunk_pool.h"
#include "tests/shard/shard_test.h"

#define MAXN 8

static struct st_log quiet_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void quiet_config(struct shard_config *cfg, unsigned n)
{
	shard_config_init(cfg, n);
	cfg->pool_chunks = 64;
	cfg->buf_entries = 16;
	cfg->buf_reserve = 8;
	cfg->chunk_size = CHUNK_HEADROOM + 16384;
	cfg->log = st_log_sink;
	cfg->log_ctx = &quiet_log;
}

/* ---- pin ------------------------------------------------------------------- */

Test(shard_pin, parses_none_auto_and_cpu_lists)
{
	struct shard_pin p;

	cr_assert_eq(shard_parse_pin("none", &p), 0);
	cr_assert_eq(p.mode, SHARD_PIN_NONE);
	cr_assert_eq(shard_parse_pin("auto", &p), 0);
	cr_assert_eq(p.mode, SHARD_PIN_AUTO);
	cr_assert_eq(shard_parse_pin("3", &p), 0);
	cr_assert_eq(p.mode, SHARD_PIN_LIST);
	cr_assert_eq(p.ncpus, 1);
	cr_assert_eq(p.cpus[0], 3);
	cr_assert_eq(shard_parse_pin("0-3,8,10-11", &p), 0);
	cr_assert_eq(p.ncpus, 7);
	uint16_t want[] = {0, 1, 2, 3, 8, 10, 11};
	for (unsigned i = 0; i < 7; i++)
		cr_assert_eq(p.cpus[i], want[i], "entry %u", i);
	cr_assert_eq(shard_parse_pin("1023", &p), 0);
	cr_assert_eq(p.cpus[0], 1023);
}

Test(shard_pin, rejects_bad_specs_and_leaves_the_output_alone)
{
	static const char *bad[] = {"", ",", "1,", ",1", "1-", "-1", "3-1", "a", "1 ,2", "1,,2",
		"auto,1", "0x1", "1-2-3"};
	struct shard_pin p;

	p.mode = SHARD_PIN_AUTO;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(shard_parse_pin(bad[i], &p), -EINVAL, "spec \"%s\"", bad[i]);
	cr_assert_eq(shard_parse_pin("1024", &p), -ERANGE);
	cr_assert_eq(shard_parse_pin("0-1024", &p), -ERANGE);
	cr_assert_eq(p.mode, SHARD_PIN_AUTO);
}

/* ---- start and stop ----------------------------------------------------------- */

static atomic_uint_fast64_t started, stopped;

static int count_start(struct shard *s, void *user)
{
	cr_assert_eq(shard_self(), s);
	atomic_fetch_add_explicit(&started, 1, memory_order_relaxed);
	return 0;
}

static void count_stop(struct shard *s, void *user)
{
	cr_assert_eq(shard_self(), s);
	cr_assert_not(shard_stopping(s));
	atomic_fetch_add_explicit(&stopped, 1, memory_order_relaxed);
}

Test(shard_group, starts_and_stops_repeatedly_leaving_no_fd_or_thread, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int fds = st_count_fds(), threads = st_count_threads(), err;

	quiet_config(&cfg, 3);
	cfg.on_start = count_start;
	cfg.on_stop = count_stop;
	for (int round = 0; round < 10; round++) {
		g = shard_group_start(&cfg, &err);
		cr_assert_not_null(g, "start: %s", strerror(-err));
		cr_assert_eq(shard_group_size(g), 3);
		cr_assert_gt(st_count_fds(), fds, "each shard holds a ring and an eventfd");
		cr_assert_eq(shard_group_stop(g), 0);
		cr_assert_eq(st_count_fds(), fds, "round %d", round);
		cr_assert_eq(st_threads_settle(threads), threads, "round %d", round);
	}
	cr_assert_eq(atomic_load(&started), 30);
	cr_assert_eq(atomic_load(&stopped), 30);
}

static int cpu_seen[MAXN * 2];

static int record_cpu(struct shard *s, void *user)
{
	cpu_set_t set;

	cpu_seen[shard_id(s)] = -1;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				cpu_seen[shard_id(s)] = c;
	return 0;
}

Test(shard_group, pins_each_shard_to_its_cpu)
{
	struct shard_config cfg;
	struct shard_group *g;
	int avail[MAXN], navail = 0, err, len = 0;
	char spec[128];
	cpu_set_t set;

	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (int c = 0; c < CPU_SETSIZE && navail < MAXN; c++)
		if (CPU_ISSET(c, &set))
			avail[navail++] = c;
	/* the list in reverse, so that shard i is not trivially on CPU i */
	for (int i = navail - 1; i >= 0; i--)
		len += snprintf(spec + len, sizeof(spec) - (size_t)len, "%s%d",
			i == navail - 1 ? "" : ",", avail[i]);
	quiet_config(&cfg, (unsigned)navail * 2);
	cfg.on_start = record_cpu;
	cr_assert_eq(shard_parse_pin(spec, &cfg.pin), 0);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g, "start: %s", strerror(-err));
	cr_assert_eq(shard_group_stop(g), 0);
	for (int i = 0; i < navail * 2; i++)
		cr_assert_eq(cpu_seen[i], avail[navail - 1 - i % navail], "shard %d", i);

	cr_assert_eq(shard_parse_pin("auto", &cfg.pin), 0);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g, "start: %s", strerror(-err));
	cr_assert_eq(shard_group_stop(g), 0);
	for (int i = 0; i < navail * 2; i++)
		cr_assert_eq(cpu_seen[i], avail[i % navail], "auto, shard %d", i);
}

Test(shard_group, rejects_bad_configuration_and_unavailable_cpus)
{
	struct shard_config cfg;
	int fds = st_count_fds(), err;

	quiet_config(&cfg, 0);
	cr_assert_null(shard_group_start(&cfg, &err));
	cr_assert_eq(err, -EINVAL);
	quiet_config(&cfg, 2);
	cfg.buf_entries = 12;
	cr_assert_null(shard_group_start(&cfg, &err));
	cr_assert_eq(err, -EINVAL);
	quiet_config(&cfg, 2);
	cfg.buf_entries = 128; /* more than pool_chunks */
	cr_assert_null(shard_group_start(&cfg, &err));
	cr_assert_eq(err, -EINVAL);
	quiet_config(&cfg, 2);
	cr_assert_eq(shard_parse_pin("1023", &cfg.pin), 0);
	cr_assert_null(shard_group_start(&cfg, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_eq(st_count_fds(), fds);
}

static int fail_on_shard_1(struct shard *s, void *user)
{
	atomic_fetch_add_explicit(&started, 1, memory_order_relaxed);
	return shard_id(s) == 1 ? -EADDRINUSE : 0;
}

Test(shard_group, failed_on_start_fails_start_and_still_runs_on_stop)
{
	struct shard_config cfg;
	int fds = st_count_fds(), err;

	quiet_config(&cfg, 3);
	cfg.on_start = fail_on_shard_1;
	cfg.on_stop = count_stop;
	cr_assert_null(shard_group_start(&cfg, &err));
	cr_assert_eq(err, -EADDRINUSE);
	cr_assert_eq(atomic_load(&started), 3);
	cr_assert_eq(atomic_load(&stopped), 3);
	cr_assert_eq(st_count_fds(), fds);
}

/* ---- cross-shard calls: all to all -------------------------------------------- */

struct a2a_shard {
	struct shard_timer t;
	uint32_t next_seq[MAXN]; /* next seq to send to each target */
	uint32_t expect[MAXN];	 /* next seq expected from each sender */
	uint32_t bad;		 /* out-of-order or duplicate arrivals */
	bool done;
	struct shard_stats st; /* copied in on_stop */
};

static struct a2a {
	unsigned n;
	uint32_t k; /* messages per (sender, target) pair */
	struct a2a_shard sh[MAXN];
	atomic_uint_fast64_t received;
} a2a;

static void a2a_recv(struct shard *s, void *arg)
{
	uint64_t v = (uint64_t)(uintptr_t)arg;
	unsigned from = (unsigned)(v >> 32);
	struct a2a_shard *me = &a2a.sh[shard_id(s)];

	if ((uint32_t)v != me->expect[from])
		me->bad++;
	me->expect[from] = (uint32_t)v + 1;
	atomic_fetch_add_explicit(&a2a.received, 1, memory_order_release);
}

/* One round: up to 64 messages to each other shard, then pause 1 ms so that targets sleep. */
static void a2a_round(struct shard *s, struct shard_timer *t)
{
	unsigned me = shard_id(s), j, sent;
	struct a2a_shard *sh = &a2a.sh[me];
	bool all = true;

	for (j = 0; j < a2a.n; j++) {
		if (j == me)
			continue;
		for (sent = 0; sent < 64 && sh->next_seq[j] < a2a.k; sent++) {
			uint64_t v = ((uint64_t)me << 32) | sh->next_seq[j];

			if (shard_call(shard_group_get(shard_get_group(s), j), a2a_recv,
				    (void *)(uintptr_t)v) != 0)
				break;
			sh->next_seq[j]++;
		}
		if (sh->next_seq[j] < a2a.k)
			all = false;
	}
	if (!all)
		shard_timer_arm(s, t, shard_now_ns() + 1000000);
	else
		sh->done = true;
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

static void a2a_run(unsigned n, uint32_t k, unsigned flags)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	memset(&a2a, 0, sizeof(a2a));
	a2a.n = n;
	a2a.k = k;
	quiet_config(&cfg, n);
	cfg.flags = flags;
	cfg.inbox_entries = 256; /* small: senders meet -EAGAIN and retry */
	cfg.on_start = a2a_start;
	cfg.on_stop = a2a_stop;
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g, "start: %s", strerror(-err));
	cr_assert(st_wait_u64(&a2a.received, (uint64_t)n * (n - 1) * k, 30000),
		"only %llu of %llu messages arrived: a lost wake?",
		(unsigned long long)atomic_load(&a2a.received),
		(unsigned long long)n * (n - 1) * k);
	cr_assert_eq(shard_group_stop(g), 0);
	for (unsigned i = 0; i < n; i++) {
		cr_assert(a2a.sh[i].done, "shard %u did not finish sending", i);
		cr_assert_eq(a2a.sh[i].bad, 0, "shard %u saw reordering or duplicates", i);
		for (unsigned j = 0; j < n; j++)
			if (j != i)
				cr_assert_eq(a2a.sh[i].expect[j], k, "shard %u from %u", i, j);
	}
}

Test(shard_call, all_to_all_arrive_once_in_order_with_msg_ring_wakes, .timeout = 60)
{
	uint64_t msg = 0, woken = 0, full = 0;

	a2a_run(3, 5000, 0);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert(a2a.sh[i].st.msg_ring, "kernel 6.18 has MSG_RING");
		cr_assert(a2a.sh[i].st.ring_flags & IORING_SETUP_DEFER_TASKRUN);
		msg += a2a.sh[i].st.wakes_msg_ring;
		woken += a2a.sh[i].st.woken_msg_ring;
		full += a2a.sh[i].st.calls_full;
		cr_assert_eq(a2a.sh[i].st.wakes_failed, 0);
	}
	cr_log_info("msg_ring wakes sent %llu, received %llu; inbox full %llu times",
		(unsigned long long)msg, (unsigned long long)woken, (unsigned long long)full);
	cr_assert_gt(msg, 0);
	cr_assert_gt(woken, 0);
}

Test(shard_call, all_to_all_arrive_once_in_order_with_eventfd_wakes, .timeout = 60)
{
	uint64_t efd = 0, woken = 0;

	a2a_run(3, 5000, SHARD_F_NO_MSG_RING);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_not(a2a.sh[i].st.msg_ring);
		cr_assert_eq(a2a.sh[i].st.wakes_msg_ring, 0);
		cr_assert_eq(a2a.sh[i].st.woken_msg_ring, 0);
		efd += a2a.sh[i].st.wakes_eventfd;
		woken += a2a.sh[i].st.woken_eventfd;
	}
	cr_assert_gt(efd, 0);
	cr_assert_gt(woken, 0);
}

Test(shard_call, works_on_the_fallback_ring_without_defer_taskrun, .timeout = 60)
{
	quiet_log.len = 0;
	a2a_run(2, 3000, SHARD_F_NO_DEFER_TASKRUN);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_not(a2a.sh[i].st.ring_flags & IORING_SETUP_DEFER_TASKRUN);
		cr_assert(a2a.sh[i].st.ring_flags & IORING_SETUP_SINGLE_ISSUER);
	}
	cr_assert_not_null(strstr(quiet_log.text, "DEFER_TASKRUN off by configuration"), "log: %s",
		quiet_log.text);
}

/* ---- wakes: ping-pong with idle shards -------------------------------------------- */

static struct pp {
	struct shard_timer pause; /* shard 0: time between pong and next ping */
	unsigned rounds, target;
	atomic_uint_fast64_t pongs;
	struct shard_stats st[2];
} pp;

static void pp_pong(struct shard *s, void *arg)
{
	/* shard 0 has no timer armed while it waits for this: only the wake gets it here */
	atomic_fetch_add_explicit(&pp.pongs, 1, memory_order_release);
	pp.rounds++;
	if (pp.rounds < pp.target)
		shard_timer_arm(s, &pp.pause, shard_now_ns() + 300000);
}

static void pp_ping(struct shard *s, void *arg)
{
	/* shard 1 never arms a timer: it sleeps until a wake */
	cr_assert_eq(shard_call(shard_group_get(shard_get_group(s), 0), pp_pong, NULL), 0);
}

static void pp_send(struct shard *s, struct shard_timer *t)
{
	cr_assert_eq(shard_call(shard_group_get(shard_get_group(s), 1), pp_ping, NULL), 0);
}

static int pp_start(struct shard *s, void *user)
{
	if (shard_id(s) == 0) {
		shard_timer_init(&pp.pause, pp_send);
		shard_timer_arm(s, &pp.pause, shard_now_ns() + 1000000);
	}
	return 0;
}

static void pp_stop(struct shard *s, void *user)
{
	shard_read_stats(s, &pp.st[shard_id(s)]);
}

static void pp_run(unsigned flags)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	memset(&pp, 0, sizeof(pp));
	pp.target = 300;
	quiet_config(&cfg, 2);
	cfg.flags = flags;
	cfg.on_start = pp_start;
	cfg.on_stop = pp_stop;
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g, "start: %s", strerror(-err));
	cr_assert(st_wait_u64(&pp.pongs, pp.target, 20000), "ping-pong stalled after %llu rounds",
		(unsigned long long)atomic_load(&pp.pongs));
	cr_assert_eq(shard_group_stop(g), 0);
}

Test(shard_call, wakes_a_sleeping_shard_every_time_by_msg_ring, .timeout = 60)
{
	pp_run(0);
	/* each ping finds shard 1 asleep (nearly always) */
	cr_assert_gt(pp.st[0].wakes_msg_ring, pp.target / 2);
	cr_assert_gt(pp.st[1].woken_msg_ring, pp.target / 2);
	cr_assert_gt(pp.st[1].wakes_msg_ring, 0, "pongs wake shard 0 too");
	cr_assert_gt(pp.st[1].sleeps, pp.target / 2);
}

Test(shard_call, wakes_a_sleeping_shard_every_time_by_eventfd, .timeout = 60)
{
	pp_run(SHARD_F_NO_MSG_RING);
	cr_assert_eq(pp.st[0].wakes_msg_ring, 0);
	cr_assert_gt(pp.st[0].wakes_eventfd, pp.target / 2);
	cr_assert_gt(pp.st[1].woken_eventfd, pp.target / 2);
}

static atomic_uint_fast64_t main_calls_run;

static void main_call(struct shard *s, void *arg)
{
	atomic_fetch_add_explicit(&main_calls_run, 1, memory_order_release);
}

static struct shard_stats main_st;

static void main_stop(struct shard *s, void *user)
{
	shard_read_stats(s, &main_st);
}

Test(shard_call, from_a_non_shard_thread_wakes_the_target_by_eventfd, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	quiet_config(&cfg, 1);
	cfg.on_stop = main_stop;
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	for (unsigned i = 1; i <= 200; i++) {
		cr_assert_eq(shard_call(shard_group_get(g, 0), main_call, NULL), 0);
		cr_assert(st_wait_u64(&main_calls_run, i, 5000), "call %u never ran", i);
		st_sleep_us(300);
	}
	shard_group_request_stop(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), main_call, NULL), -ESHUTDOWN);
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_gt(main_st.woken_eventfd, 100);
	cr_assert_eq(main_st.calls_run, 200);
}

/* calls made in on_stop still run; calls after it are refused */
static atomic_uint_fast64_t stop_calls_run, stop_calls_refused;
static struct shard_defer after_stop[4];

static void stop_call(struct shard *s, void *arg)
{
	atomic_fetch_add_explicit(&stop_calls_run, 1, memory_order_relaxed);
}

static void call_after_stop(struct shard *s, struct shard_defer *d)
{
	cr_assert(shard_stopping(s));
	if (shard_call(s, stop_call, NULL) == -ESHUTDOWN)
		atomic_fetch_add_explicit(&stop_calls_refused, 1, memory_order_relaxed);
}

static void stop_send_all(struct shard *s, void *user)
{
	struct shard_group *g = shard_get_group(s);

	for (unsigned j = 0; j < shard_group_size(g); j++)
		if (j != shard_id(s))
			cr_assert_eq(shard_call(shard_group_get(g, j), stop_call, NULL), 0);
	shard_defer_init(&after_stop[shard_id(s)], call_after_stop);
	shard_defer(s, &after_stop[shard_id(s)]);
}

Test(shard_call, made_in_on_stop_still_run_once, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	quiet_config(&cfg, 4);
	cfg.on_stop = stop_send_all;
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_eq(atomic_load(&stop_calls_run), 12);
	cr_assert_eq(atomic_load(&stop_calls_refused), 4);
}

/* ---- multishot recv ----------------------------------------------------------------- */

struct rx {
	int fd;
	bool close_fd; /* close fd when the receiver ends */
	struct shard_recv r;
	uint64_t off, bad, chunks;
	int start_rc, end_res;
	atomic_int done;
	/* hold mode: keep chunks, ship them to shard 1 every 500 us to be put there */
	bool hold;
	struct chunk *held;
	struct shard_timer ship;
	struct chunk_pool_stats pool; /* read by rx_check */
	struct shard_stats st;
	atomic_int checked;
};

static void rx_put_list(struct shard *s, void *arg)
{
	struct chunk *c = arg, *next;

	for (; c; c = next) {
		next = c->next;
		chunk_put(c); /* not the owner: through the pool's return ring */
	}
}

static void rx_ship(struct shard *s, struct shard_timer *t)
{
	struct rx *x = (struct rx *)((char *)t - offsetof(struct rx, ship));

	if (x->held &&
		shard_call(shard_group_get(shard_get_group(s), 1), rx_put_list, x->held) == 0)
		x->held = NULL;
	if (x->held || !atomic_load_explicit(&x->done, memory_order_relaxed))
		shard_timer_arm(s, t, shard_now_ns() + 500000);
}

static void rx_data(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	struct rx *x = (struct rx *)((char *)r - offsetof(struct rx, r));
	const uint8_t *p;

	if (!c) {
		x->end_res = res;
		if (x->close_fd)
			close(x->fd);
		atomic_store_explicit(&x->done, 1, memory_order_release);
		return;
	}
	cr_assert_eq(c->len, (uint32_t)res);
	cr_assert_eq(c->off, CHUNK_HEADROOM);
	p = chunk_ptr(c);
	for (int i = 0; i < res; i++)
		if (p[i] != st_pattern(x->off + (uint64_t)i))
			x->bad++;
	x->off += (uint64_t)res;
	x->chunks++;
	if (x->hold) {
		c->next = x->held;
		x->held = c;
	} else {
		chunk_put(c);
	}
}

static void rx_start(struct shard *s, void *arg)
{
	struct rx *x = arg;

	x->start_rc = shard_recv_start(s, &x->r, x->fd, rx_data);
	if (x->start_rc != 0) {
		atomic_store_explicit(&x->done, 1, memory_order_release);
		return;
	}
	if (x->hold) {
		shard_timer_init(&x->ship, rx_ship);
		shard_timer_arm(s, &x->ship, shard_now_ns() + 500000);
	}
}

static void rx_check(struct shard *s, void *arg)
{
	struct rx *x = arg;

	chunk_pool_read_stats(shard_pool(s), &x->pool);
	shard_read_stats(s, &x->st);
	atomic_store_explicit(&x->checked, 1, memory_order_release);
}

struct writer {
	int fd;
	uint64_t total;
	bool connect_port; /* connect to 127.0.0.1:port first, fd is made here */
	uint16_t port;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	static _Thread_local uint8_t buf[65536];
	uint64_t off = 0;

	if (w->connect_port) {
		struct sockaddr_in a = {.sin_family = AF_INET,
			.sin_port = htons(w->port),
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

		w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(w->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			return (void *)1;
	}
	while (off < w->total) {
		size_t n = w->total - off < sizeof(buf) ? (size_t)(w->total - off) : sizeof(buf);
		ssize_t k;

		for (size_t i = 0; i < n; i++)
			buf[i] = st_pattern(off + i);
		for (size_t done = 0; done < n; done += (size_t)k) {
			k = write(w->fd, buf + done, n - done);
			if (k <= 0)
				return (void *)1;
		}
		off += n;
	}
	close(w->fd);
	return NULL;
}

static void wait_flag(atomic_int *f, unsigned timeout_ms, const char *what)
{
	uint64_t end = shard_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (!atomic_load_explicit(f, memory_order_acquire)) {
		cr_assert(shard_now_ns() < end, "timed out waiting for %s", what);
		st_sleep_us(500);
	}
}

Test(shard_recv, socketpair_stream_lands_in_chunks_intact, .timeout = 60)
{
	static struct rx x;
	struct writer w;
	struct shard_config cfg;
	struct shard_group *g;
	pthread_t th;
	void *wr;
	int sv[2], fds = st_count_fds(), err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	quiet_config(&cfg, 2);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	x.fd = sv[0];
	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_start, &x), 0);
	w = (struct writer){.fd = sv[1], .total = 64u << 20};
	cr_assert_eq(pthread_create(&th, NULL, writer_main, &w), 0);
	pthread_join(th, &wr);
	cr_assert_null(wr, "writer failed");
	wait_flag(&x.done, 30000, "EOF");
	cr_assert_eq(x.start_rc, 0);
	cr_assert_eq(x.end_res, 0, "ended with %d", x.end_res);
	cr_assert_eq(x.off, w.total);
	cr_assert_eq(x.bad, 0, "%llu bytes differ", (unsigned long long)x.bad);
	cr_log_info("64 MiB in %llu chunks", (unsigned long long)x.chunks);

	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_check, &x), 0);
	wait_flag(&x.checked, 5000, "pool check");
	cr_assert_eq(x.st.bytes_received, w.total);
	cr_assert_eq(x.pool.in_use, x.st.bufs_posted, "only the posted buffers are out");
	cr_assert_eq(x.st.bufs_posted, 16);
	cr_assert_eq(shard_group_stop(g), 0);
	close(sv[0]);
	cr_assert_eq(st_count_fds(), fds);
}

Test(shard_recv, enobufs_parks_the_receiver_until_chunks_come_back, .timeout = 60)
{
	static struct rx x;
	struct writer w;
	struct shard_config cfg;
	struct shard_group *g;
	pthread_t th;
	void *wr;
	int sv[2], err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	quiet_config(&cfg, 2);
	cfg.pool_chunks = 4;
	cfg.buf_entries = 2;
	cfg.buf_reserve = 0;
	cfg.chunk_size = CHUNK_HEADROOM + 4096;
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	x.fd = sv[0];
	x.hold = true;
	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_start, &x), 0);
	w = (struct writer){.fd = sv[1], .total = 2u << 20};
	cr_assert_eq(pthread_create(&th, NULL, writer_main, &w), 0);
	pthread_join(th, &wr);
	cr_assert_null(wr, "writer failed");
	wait_flag(&x.done, 30000, "EOF");
	cr_assert_eq(x.end_res, 0, "ended with %d", x.end_res);
	cr_assert_eq(x.off, w.total);
	cr_assert_eq(x.bad, 0);
	/* let the last shipment come home */
	st_sleep_us(20000);
	cr_assert_eq(shard_call(shard_group_get(g, 0), rx_check, &x), 0);
	wait_flag(&x.checked, 5000, "pool check");
	cr_log_info("2 MiB through 2 buffers: %llu chunks, %llu parks on ENOBUFS",
		(unsigned long long)x.chunks, (unsigned long long)x.st.enobufs);
	cr_assert_gt(x.st.enobufs, 0, "the tiny ring never ran dry");
	cr_assert_gt(x.st.rearms, 0);
	cr_assert_eq(x.pool.in_use, x.st.bufs_posted);
	cr_assert_eq(shard_group_stop(g), 0);
	close(sv[0]);
}

/* ---- multishot accept ------------------------------------------------------------------- */

struct acc {
	int lfd;
	struct shard_accept a;
	atomic_uint_fast64_t accepted;
	atomic_int ended;
	int end_res;
	int start_rc;
	struct rx *rx; /* if set: the first connection feeds this receiver */
};

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 1024), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void acc_fn(struct shard *s, struct shard_accept *a, int res)
{
	struct acc *x = (struct acc *)((char *)a - offsetof(struct acc, a));

	if (res < 0) {
		x->end_res = res;
		atomic_store_explicit(&x->ended, 1, memory_order_release);
		return;
	}
	if (x->rx && atomic_load_explicit(&x->accepted, memory_order_relaxed) == 0) {
		x->rx->fd = res;
		x->rx->close_fd = true;
		rx_start(s, x->rx);
	} else {
		close(res);
	}
	atomic_fetch_add_explicit(&x->accepted, 1, memory_order_release);
}

static void acc_start(struct shard *s, void *arg)
{
	struct acc *x = arg;

	x->start_rc = shard_accept_start(s, &x->a, x->lfd, acc_fn);
}

static void acc_stop(struct shard *s, void *arg)
{
	struct acc *x = arg;

	cr_assert_eq(shard_accept_stop(s, &x->a), 0);
}

Test(shard_accept, accepts_many_connections_then_stops_on_request, .timeout = 60)
{
	static struct acc x;
	struct shard_config cfg;
	struct shard_group *g;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uint16_t port;
	int fds = st_count_fds(), err;

	x.lfd = listen_loopback(&port);
	a.sin_port = htons(port);
	quiet_config(&cfg, 2);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 1), acc_start, &x), 0);
	for (int i = 0; i < 500; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0, "connect %d", i);
		close(c);
	}
	cr_assert(st_wait_u64(&x.accepted, 500, 10000), "accepted %llu of 500",
		(unsigned long long)atomic_load(&x.accepted));
	cr_assert_eq(x.start_rc, 0);
	cr_assert_eq(shard_call(shard_group_get(g, 1), acc_stop, &x), 0);
	wait_flag(&x.ended, 5000, "accept end");
	cr_assert_eq(x.end_res, -ECANCELED);
	cr_assert_eq(atomic_load(&x.accepted), 500);
	cr_assert_eq(shard_group_stop(g), 0);
	close(x.lfd);
	cr_assert_eq(st_count_fds(), fds);
}

Test(shard_recv, tcp_stream_from_an_accepted_connection_arrives_intact, .timeout = 60)
{
	static struct acc x;
	static struct rx rx;
	struct writer w;
	struct shard_config cfg;
	struct shard_group *g;
	pthread_t th;
	void *wr;
	uint16_t port;
	int fds = st_count_fds(), err;

	x.lfd = listen_loopback(&port);
	x.rx = &rx;
	quiet_config(&cfg, 2);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), acc_start, &x), 0);
	w = (struct writer){.total = 32u << 20, .connect_port = true, .port = port};
	cr_assert_eq(pthread_create(&th, NULL, writer_main, &w), 0);
	pthread_join(th, &wr);
	cr_assert_null(wr, "writer failed");
	wait_flag(&rx.done, 30000, "EOF");
	cr_assert_eq(rx.start_rc, 0);
	cr_assert_eq(rx.end_res, 0);
	cr_assert_eq(rx.off, w.total);
	cr_assert_eq(rx.bad, 0);
	/* the group's stop ends the accept with -ECANCELED */
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_eq(x.end_res, -ECANCELED);
	close(x.lfd);
	cr_assert_eq(st_count_fds(), fds);
}

/* ---- timers ---------------------------------------------------------------------------- */

#define NTIMERS 64

static struct tmr {
	struct shard_timer t[NTIMERS];
	uint64_t base;
	int order[NTIMERS]; /* indexes in firing order */
	uint64_t fired_at[NTIMERS];
	unsigned nfired;
	atomic_uint_fast64_t fired;
	struct shard_timer periodic;
	uint64_t periodic_first; /* deadline of the first tick; tick k is due 2 ms * k later */
	uint64_t periodic_at[10];
	unsigned nperiodic;
	atomic_int periodic_done;
} tmr;

static void tm_fire(struct shard *s, struct shard_timer *t)
{
	int i = (int)(t - tmr.t);

	cr_assert_not(shard_timer_armed(t));
	tmr.fired_at[i] = shard_now_ns();
	tmr.order[tmr.nfired++] = i;
	atomic_fetch_add_explicit(&tmr.fired, 1, memory_order_release);
}

static void tm_tick(struct shard *s, struct shard_timer *t)
{
	tmr.periodic_at[tmr.nperiodic++] = shard_now_ns();
	if (tmr.nperiodic < 10)
		shard_timer_arm(s, t, t->deadline + 2000000);
	else
		atomic_store_explicit(&tmr.periodic_done, 1, memory_order_release);
}

static void tm_arm_all(struct shard *s, void *arg)
{
	tmr.base = shard_now_ns() + 5000000;
	for (int i = 0; i < NTIMERS; i++) {
		shard_timer_init(&tmr.t[i], tm_fire);
		/* scattered deadlines 5 .. 131 ms ahead; 60..63 share one to check arming order */
		shard_timer_arm(s, &tmr.t[i],
			tmr.base + (i >= 60 ? 40 : (uint64_t)((i * 37) % 64)) * 2000000u);
	}
	/* cancel every 8th, and move #1 from its slot to the very end */
	for (int i = 0; i < NTIMERS; i += 8)
		shard_timer_cancel(s, &tmr.t[i]);
	shard_timer_arm(s, &tmr.t[1], tmr.base + 140000000u);
	shard_timer_init(&tmr.periodic, tm_tick);
	tmr.periodic_first = shard_now_ns() + 2000000;
	shard_timer_arm(s, &tmr.periodic, tmr.periodic_first);
}

Test(shard_timer, fire_in_deadline_order_never_early_and_cancelled_never, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err, want = NTIMERS - NTIMERS / 8;

	quiet_config(&cfg, 1);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), tm_arm_all, NULL), 0);
	cr_assert(st_wait_u64(&tmr.fired, (uint64_t)want, 10000));
	wait_flag(&tmr.periodic_done, 5000, "periodic timer");
	st_sleep_us(30000); /* a cancelled timer would have fired by now */
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_eq(tmr.nfired, (unsigned)want);
	for (unsigned k = 0; k < tmr.nfired; k++) {
		int i = tmr.order[k];

		cr_assert_neq(i % 8, 0, "cancelled timer %d fired", i);
		cr_assert_geq(tmr.fired_at[i], tmr.t[i].deadline, "timer %d early", i);
		cr_assert_lt(tmr.fired_at[i] - tmr.t[i].deadline, 100000000u,
			"timer %d late by %llu ns", i,
			(unsigned long long)(tmr.fired_at[i] - tmr.t[i].deadline));
		if (k > 0) {
			int p = tmr.order[k - 1];

			cr_assert(tmr.t[p].deadline < tmr.t[i].deadline ||
					  (tmr.t[p].deadline == tmr.t[i].deadline && p < i),
				"timer %d fired before %d", p, i);
		}
	}
	cr_assert_eq(tmr.order[tmr.nfired - 1], 1, "the re-armed timer fires last");
	/* re-armed from its own deadline, so a late tick does not delay the ones after it */
	for (unsigned k = 0; k < 10; k++)
		cr_assert_geq(tmr.periodic_at[k], tmr.periodic_first + k * 2000000ull,
			"tick %u early", k);
	cr_assert_lt(tmr.periodic_at[9], tmr.periodic_first + 18000000ull + 100000000ull);
}

/* ---- deferred items ------------------------------------------------------------------------ */

static struct dq {
	struct shard_defer once, again, victim;
	unsigned once_runs, again_runs, victim_runs;
	uint64_t again_turns[3];
	atomic_int done;
} dq;

static void dq_once(struct shard *s, struct shard_defer *d)
{
	dq.once_runs++;
	/* cancel one still queued behind us in this very phase */
	shard_defer_cancel(s, &dq.victim);
}

static void dq_victim(struct shard *s, struct shard_defer *d)
{
	dq.victim_runs++;
}

static void dq_again(struct shard *s, struct shard_defer *d)
{
	struct shard_stats st;

	shard_read_stats(s, &st);
	dq.again_turns[dq.again_runs++] = st.turns;
	if (dq.again_runs < 3)
		shard_defer(s, d); /* runs next turn, which must not sleep */
	else
		atomic_store_explicit(&dq.done, 1, memory_order_release);
}

static void dq_queue(struct shard *s, void *arg)
{
	shard_defer_init(&dq.once, dq_once);
	shard_defer_init(&dq.again, dq_again);
	shard_defer_init(&dq.victim, dq_victim);
	shard_defer(s, &dq.once);
	shard_defer(s, &dq.once);
	shard_defer(s, &dq.again);
	shard_defer(s, &dq.victim);
	cr_assert(shard_defer_queued(&dq.once));
	shard_defer(s, &dq.once);
}

Test(shard_defer, runs_once_per_queueing_at_the_end_of_the_turn, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	quiet_config(&cfg, 1);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), dq_queue, NULL), 0);
	wait_flag(&dq.done, 5000, "deferred items");
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_eq(dq.once_runs, 1);
	cr_assert_eq(dq.victim_runs, 0);
	cr_assert_eq(dq.again_runs, 3);
	cr_assert_eq(dq.again_turns[1], dq.again_turns[0] + 1);
	cr_assert_eq(dq.again_turns[2], dq.again_turns[1] + 1);
}

/* ---- stop with everything in flight ------------------------------------------------------------
 */

static struct inflight {
	struct rx rx;
	struct acc acc;
	struct shard_timer far[2];
	struct shard_op nop_op;
	int nop_res;
	unsigned timer_runs;
} fl;

static void fl_timer(struct shard *s, struct shard_timer *t)
{
	fl.timer_runs++;
}

static void fl_nop_done(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	fl.nop_res = cqe->res;
	cr_assert_eq(op->inflight, 0);
}

static void fl_arm(struct shard *s, void *arg)
{
	struct io_uring_sqe *sqe;
	static struct __kernel_timespec ts = {.tv_sec = 3600};

	shard_timer_init(&fl.far[shard_id(s)], fl_timer);
	shard_timer_arm(s, &fl.far[shard_id(s)], shard_now_ns() + 3600ull * 1000000000u);
	if (shard_id(s) == 0) {
		rx_start(s, &fl.rx);
		/* a one-hour io_uring timeout: the stop must cancel it */
		shard_op_init(&fl.nop_op, fl_nop_done);
		sqe = shard_sqe(s);
		cr_assert_not_null(sqe);
		io_uring_prep_timeout(sqe, &ts, 0, 0);
		shard_submit(s, sqe, &fl.nop_op);
		cr_assert_eq(fl.nop_op.inflight, 1);
	} else {
		acc_start(s, &fl.acc);
	}
}

Test(shard_group, stop_cancels_ops_in_flight_and_ends_them_through_their_callbacks, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	uint16_t port;
	int sv[2], fds = st_count_fds(), err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fl.rx.fd = sv[0];
	fl.acc.lfd = listen_loopback(&port);
	quiet_config(&cfg, 2);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), fl_arm, NULL), 0);
	cr_assert_eq(shard_call(shard_group_get(g, 1), fl_arm, NULL), 0);
	st_sleep_us(20000);
	cr_assert_eq(shard_group_stop(g), 0);
	cr_assert_eq(fl.rx.start_rc, 0);
	cr_assert_eq(fl.rx.end_res, -ECANCELED);
	cr_assert_eq(fl.acc.start_rc, 0);
	cr_assert_eq(fl.acc.end_res, -ECANCELED);
	cr_assert_eq(fl.nop_res, -ECANCELED);
	cr_assert_eq(fl.nop_op.inflight, 0);
	cr_assert_eq(fl.timer_runs, 0, "pending timers are dropped, not run");
	close(sv[0]);
	close(sv[1]);
	close(fl.acc.lfd);
	cr_assert_eq(st_count_fds(), fds);
}

static struct chunk *leaked;

static void take_chunk(struct shard *s, void *arg)
{
	leaked = chunk_pool_get(shard_pool(s));
}

Test(shard_group, stop_reports_a_chunk_never_returned, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	int err;

#ifdef SW_SANITIZER_BUILD
	cr_skip_test("leaks a pool on purpose; LeakSanitizer would flag it");
#endif
	quiet_config(&cfg, 1);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), take_chunk, NULL), 0);
	st_sleep_us(20000);
	cr_assert_eq(shard_group_stop(g), -EBUSY);
	cr_assert_not_null(leaked);
}

static void self_stop(struct shard *s, void *arg)
{
	atomic_int *seen = arg;

	cr_assert_eq(shard_group_stop(shard_get_group(s)), -EDEADLK);
	shard_group_request_stop(shard_get_group(s));
	atomic_store_explicit(seen, 1, memory_order_release);
}

Test(shard_group, stop_from_a_shard_is_refused_but_request_works, .timeout = 60)
{
	static atomic_int rc_seen;
	struct shard_config cfg;
	struct shard_group *g;
	int err;

	quiet_config(&cfg, 1);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), self_stop, &rc_seen), 0);
	wait_flag(&rc_seen, 5000, "self stop");
	cr_assert_eq(shard_group_stop(g), 0);
}

/* ---- timers: many, shuffled ------------------------------------------------------------------ */

#define NRAND 2000

static struct {
	struct shard_timer t[NRAND];
	bool cancelled[NRAND];
	uint64_t armed_as[NRAND]; /* arming order, the tie-break among equal deadlines */
	uint64_t narmed;
	uint64_t last_deadline, last_seq;
	unsigned fired, bad_order, early, fired_cancelled;
	atomic_int done;
} rt;

static void rt_fire(struct shard *s, struct shard_timer *t)
{
	int i = (int)(t - rt.t);

	if (rt.cancelled[i])
		rt.fired_cancelled++;
	if (t->deadline < rt.last_deadline ||
		(t->deadline == rt.last_deadline && rt.armed_as[i] < rt.last_seq))
		rt.bad_order++;
	if (shard_now_ns() < t->deadline)
		rt.early++;
	rt.last_deadline = t->deadline;
	rt.last_seq = rt.armed_as[i];
	rt.fired++;
}

static void rt_end(struct shard *s, struct shard_timer *t)
{
	atomic_store_explicit(&rt.done, 1, memory_order_release);
}

static void rt_arm(struct shard *s, void *arg)
{
	static struct shard_timer end;
	uint64_t x = 88172645463325252ull, now = shard_now_ns();

	for (int i = 0; i < NRAND; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		shard_timer_init(&rt.t[i], rt_fire);
		/* 20 distinct deadlines 10 .. 48 ms ahead: many ties */
		shard_timer_arm(s, &rt.t[i], now + 10000000u + (x % 20) * 2000000u);
		rt.armed_as[i] = rt.narmed++;
	}
	for (int i = 0; i < NRAND; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (x % 3 == 0) {
			shard_timer_cancel(s, &rt.t[i]);
			rt.cancelled[i] = true;
		} else if (x % 3 == 1) {
			shard_timer_arm(s, &rt.t[i], now + 10000000u + (x % 17) * 2000000u);
			rt.armed_as[i] = rt.narmed++;
		}
	}
	shard_timer_init(&end, rt_end);
	shard_timer_arm(s, &end, now + 80000000u);
}

Test(shard_timer, thousands_armed_moved_and_cancelled_fire_sorted, .timeout = 60)
{
	struct shard_config cfg;
	struct shard_group *g;
	unsigned want = 0;
	int err;

	quiet_config(&cfg, 1);
	g = shard_group_start(&cfg, &err);
	cr_assert_not_null(g);
	cr_assert_eq(shard_call(shard_group_get(g, 0), rt_arm, NULL), 0);
	wait_flag(&rt.done, 10000, "timers");
	cr_assert_eq(shard_group_stop(g), 0);
	for (int i = 0; i < NRAND; i++)
		want += !rt.cancelled[i];
	cr_assert_eq(rt.fired, want);
	cr_assert_eq(rt.fired_cancelled, 0);
	cr_assert_eq(rt.bad_order, 0);
	cr_assert_eq(rt.early, 0);
}
