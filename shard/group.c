/*
 * shard/group.c - a shard group: configuration, start, stop, and each
 * shard's setup and teardown on its own thread.
 *
 * Everything a shard owns is created on the shard's thread: the io_uring
 * must be (SINGLE_ISSUER makes its creator the only task allowed to submit
 * and register), and so are the mimalloc heap (a heap belongs to the thread
 * that made it), the chunk pool (its owner is its creator) and the buffer
 * ring.  The inbox and the eventfd are made by the starter, before the
 * threads exist, so that every shard can address every other from its
 * first instruction; pthread_create publishes them.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "shard/internal.h"

_Thread_local struct shard *shard_tls_self;

/* ---- logging -------------------------------------------------------------- */

static void shard_log_stderr(void *ctx, int level, const char *msg)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if (level >= SHARD_LOG_DEBUG)
		return;
	fprintf(stderr, "sandwired: %s: %s\n", names[level < 0 ? 0 : level], msg);
}

static void shard_vlog(
	const struct shard_config *cfg, int id, int level, const char *fmt, va_list ap)
{
	char msg[512];
	int n = 0;

	if (id >= 0)
		n = snprintf(msg, sizeof(msg), "shard %d: ", id);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	(cfg->log ? cfg->log : shard_log_stderr)(cfg->log_ctx, level, msg);
}

void shard_glog(const struct shard_group *g, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shard_vlog(&g->cfg, -1, level, fmt, ap);
	va_end(ap);
}

/* Log against a configuration, before the group exists. */
static void shard_clog(const struct shard_config *cfg, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void shard_clog(const struct shard_config *cfg, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shard_vlog(cfg, -1, level, fmt, ap);
	va_end(ap);
}

void shard_log(const struct shard *s, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shard_vlog(&s->group->cfg, (int)s->id, level, fmt, ap);
	va_end(ap);
}

/* ---- small accessors ------------------------------------------------------- */

void shard_config_init(struct shard_config *cfg, unsigned nshards)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nshards = nshards;
	cfg->pin.mode = SHARD_PIN_NONE;
	cfg->ring_entries = 1024;
	cfg->chunk_size = CHUNK_HEADROOM + 65536;
	cfg->pool_chunks = 512;
	cfg->buf_entries = 128;
	cfg->buf_reserve = 64;
	cfg->inbox_entries = 4096;
}

unsigned shard_group_size(const struct shard_group *g)
{
	return g->n;
}

struct shard *shard_group_get(struct shard_group *g, unsigned i)
{
	return i < g->n ? &g->shards[i] : NULL;
}

struct shard *shard_self(void)
{
	return shard_tls_self;
}

unsigned shard_id(const struct shard *s)
{
	return s->id;
}

struct shard_group *shard_get_group(const struct shard *s)
{
	return s->group;
}

void *shard_data(const struct shard *s)
{
	return s->data;
}

void shard_set_data(struct shard *s, void *data)
{
	s->data = data;
}

bool shard_stopping(const struct shard *s)
{
	return s->stopping;
}

struct io_uring *shard_ring(struct shard *s)
{
	return &s->ring;
}

struct chunk_pool *shard_pool(struct shard *s)
{
	return s->pool;
}

uint64_t shard_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- a shard's own resources (on its thread) ---------------------------- */

static void *shard_pool_alloc(void *ctx, size_t size, size_t align)
{
	return mi_heap_malloc_aligned(ctx, size, align);
}

static void shard_pool_free(void *ctx, void *p, size_t size)
{
	mi_free(p);
}

/*
 * Ring set-ups, best first; on -EINVAL (flag unknown to the kernel) the
 * next one is tried.  Every one gets IORING_SETUP_CQSIZE (a CQ of 4x the
 * SQ: multishot ops post many CQEs per SQE).
 *  - SINGLE_ISSUER (6.0): only this thread submits; the kernel skips the
 *    locking for several submitters.
 *  - DEFER_TASKRUN (6.1): completion work runs only when we enter the
 *    kernel to wait or reap, never interrupting the thread mid-turn.
 *  - COOP_TASKRUN + TASKRUN_FLAG (5.19): no IPI for completions; the
 *    kernel sets IORING_SQ_TASKRUN when work waits, and liburing's submit
 *    then enters to run it (our non-sleeping turns rely on that).
 *  - SUBMIT_ALL (5.18): a bad SQE does not stop the rest of the batch.
 * There is no rung without COOP_TASKRUN: a kernel older than 5.19 lacks
 * what the runtime cannot do without (IORING_ASYNC_CANCEL_ANY for the stop
 * sequence, provided-buffer rings, multishot accept), so it is refused with
 * a clear message.  Multishot recv needs 6.0; on 5.19 a receiver ends with
 * -EINVAL through its callback.
 */
static const struct shard_ring_mode {
	unsigned flags;
	const char *name;
} shard_ring_modes[] = {
	{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
			IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		"SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|TASKRUN_FLAG"},
	{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
			IORING_SETUP_SUBMIT_ALL,
		"SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG"},
	{IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		"COOP_TASKRUN|TASKRUN_FLAG"},
};

static int shard_ring_setup(struct shard *s)
{
	const struct shard_config *cfg = &s->group->cfg;
	size_t first = (cfg->flags & SHARD_F_NO_DEFER_TASKRUN) ? 1 : 0;
	size_t nmodes = sizeof(shard_ring_modes) / sizeof(shard_ring_modes[0]);
	struct io_uring_params p;
	struct io_uring_probe *probe;
	int rc = -EINVAL;
	size_t i;

	for (i = first; i < nmodes; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = shard_ring_modes[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = cfg->ring_entries * 4;
		rc = io_uring_queue_init_params(cfg->ring_entries, &s->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	if (rc == -EINVAL) {
		shard_log(s, SHARD_LOG_ERR,
			"io_uring_setup refused %s: the shard runtime needs "
			"Linux 5.19 or later",
			shard_ring_modes[nmodes - 1].name);
		return rc;
	}
	if (rc < 0) {
		shard_log(s, SHARD_LOG_ERR,
			"io_uring_setup: %s (is io_uring disabled by "
			"kernel.io_uring_disabled or a seccomp policy?)",
			strerror(-rc));
		return rc;
	}
	s->ring_fd = s->ring.ring_fd;
	/* the kernel is the same for every shard: let shard 0 say it once */
	if (s->id == 0 && i > first)
		shard_log(s, SHARD_LOG_WARN, "io_uring: %s refused by the kernel, running with %s",
			shard_ring_modes[first].name, shard_ring_modes[i].name);
	else if (s->id == 0 && first > 0)
		shard_log(s, SHARD_LOG_INFO,
			"io_uring: DEFER_TASKRUN off by configuration, running "
			"with %s",
			shard_ring_modes[i].name);
	/* enter through the registered ring index: saves an fd lookup per enter (5.18) */
	if (io_uring_register_ring_fd(&s->ring) < 0)
		shard_log(s, SHARD_LOG_DEBUG, "io_uring: cannot register the ring fd");

	s->msg_ring = false;
	probe = io_uring_get_probe_ring(&s->ring);
	if (probe) {
		s->msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
		io_uring_free_probe(probe);
	}
	if (cfg->flags & SHARD_F_NO_MSG_RING) {
		if (s->id == 0)
			shard_log(s, SHARD_LOG_INFO,
				"cross-shard wakes by eventfd (MSG_RING off by "
				"configuration)");
		s->msg_ring = false;
	} else if (!s->msg_ring && s->id == 0) {
		shard_log(s, SHARD_LOG_WARN,
			"io_uring: no IORING_OP_MSG_RING; cross-shard wakes "
			"fall back to eventfd");
	}
	return 0;
}

/*
 * Set up everything <s> owns.  Returns 0, or a negative errno with nothing
 * left allocated.  Shard thread.
 */
static int shard_setup(struct shard *s)
{
	const struct shard_config *cfg = &s->group->cfg;
	struct chunk_pool_allocator alloc;
	unsigned n = s->group->n;
	int rc;

	s->heap = mi_heap_new();
	if (!s->heap) {
		shard_log(s, SHARD_LOG_ERR, "cannot create a heap");
		return -ENOMEM;
	}
	rc = shard_ring_setup(s);
	if (rc < 0)
		goto err_heap;
	s->wake_list = mi_heap_calloc(s->heap, n, sizeof(*s->wake_list));
	s->wake_mark = mi_heap_calloc(s->heap, n, sizeof(*s->wake_mark));
	if (!s->wake_list || !s->wake_mark) {
		rc = -ENOMEM;
		goto err_ring;
	}
	alloc = (struct chunk_pool_allocator){shard_pool_alloc, shard_pool_free, s->heap};
	s->pool = chunk_pool_new((uint16_t)s->id, cfg->pool_chunks, cfg->chunk_size, &alloc, &rc);
	if (!s->pool) {
		shard_log(s, SHARD_LOG_ERR, "cannot create a pool of %u chunks of %u bytes: %s",
			cfg->pool_chunks, cfg->chunk_size, strerror(-rc));
		goto err_ring;
	}
	rc = shard_bufs_setup(s);
	if (rc < 0)
		goto err_pool;
	s->defer._next = s->defer._prev = &s->defer;
	s->defer.fn = NULL;
	/* queued only: the first turn submits it (no SQE can be missing this early) */
	rc = shard_efd_arm(s);
	if (rc < 0)
		goto err_bufs;
	return 0;

err_bufs:
	shard_bufs_teardown(s);
err_pool:
	chunk_pool_free(s->pool);
	s->pool = NULL;
err_ring:
	mi_free(s->wake_list);
	mi_free(s->wake_mark);
	io_uring_queue_exit(&s->ring);
err_heap:
	mi_heap_delete(s->heap);
	s->heap = NULL;
	return rc;
}

/*
 * Free what shard_setup made.  Nothing of ours is in flight (after the stop
 * sequence) or nothing was ever submitted (start aborted).  Shard thread.
 */
static void shard_teardown(struct shard *s)
{
	struct chunk_pool_stats st;

	shard_bufs_teardown(s);
	if (chunk_pool_free(s->pool) < 0) {
		chunk_pool_read_stats(s->pool, &st);
		shard_log(
			s, SHARD_LOG_ERR, "%zu chunks still held at stop: pool leaked", st.in_use);
		s->exit_err = -EBUSY;
	}
	s->pool = NULL;
	mi_free(s->wake_list);
	mi_free(s->wake_mark);
	io_uring_queue_exit(&s->ring);
	/* blocks still allocated (a leaked pool) move to the default heap */
	mi_heap_delete(s->heap);
	s->heap = NULL;
}

/* ---- the start/stop handshake (struct shard_sync) ------------------------ */

/* Shard: count in, then wait until the starter's phase reaches <want> or aborts. */
static int shard_sync_arrive(struct shard_group *g, int want)
{
	int phase;

	pthread_mutex_lock(&g->sync.mu);
	g->sync.arrived++;
	pthread_cond_broadcast(&g->sync.cv);
	while (g->sync.phase >= 0 && g->sync.phase < want)
		pthread_cond_wait(&g->sync.cv, &g->sync.mu);
	phase = g->sync.phase;
	pthread_mutex_unlock(&g->sync.mu);
	return phase;
}

/* Starter: wait until <count> arrivals. */
static void shard_sync_wait(struct shard_group *g, unsigned count)
{
	pthread_mutex_lock(&g->sync.mu);
	while (g->sync.arrived < count)
		pthread_cond_wait(&g->sync.cv, &g->sync.mu);
	pthread_mutex_unlock(&g->sync.mu);
}

/* Starter: announce <phase>. */
static void shard_sync_set(struct shard_group *g, int phase)
{
	pthread_mutex_lock(&g->sync.mu);
	g->sync.phase = phase;
	pthread_cond_broadcast(&g->sync.cv);
	pthread_mutex_unlock(&g->sync.mu);
}

/*
 * Stop step (d): count in and wait for every shard.  After it no shard
 * runs user code, pushes, wakes or puts a chunk, so each may free its pool
 * and ring.  Shard thread.
 */
void shard_sync_stop_arrive(struct shard *s)
{
	struct shard_group *g = s->group;

	pthread_mutex_lock(&g->sync.mu);
	g->sync.stop_arrived++;
	pthread_cond_broadcast(&g->sync.cv);
	while (g->sync.stop_arrived < g->n)
		pthread_cond_wait(&g->sync.cv, &g->sync.mu);
	pthread_mutex_unlock(&g->sync.mu);
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;
	struct shard_group *g = s->group;
	char name[16];

	shard_tls_self = s;
	snprintf(name, sizeof(name), "shard-%u", s->id);
	pthread_setname_np(pthread_self(), name);

	s->setup_err = shard_setup(s);
	if (shard_sync_arrive(g, 1) < 0) {
		if (s->setup_err == 0)
			shard_teardown(s);
		goto out;
	}
	s->start_err = g->cfg.on_start ? g->cfg.on_start(s, g->cfg.user) : 0;
	shard_sync_arrive(g, 2);
	shard_loop(s);
	shard_teardown(s);
out:
	shard_tls_self = NULL;
	return NULL;
}

/* ---- start and stop ---------------------------------------------------------- */

static int shard_config_check(const struct shard_config *cfg)
{
	const char *why = NULL;

	if (cfg->nshards < 1 || cfg->nshards > SHARD_MAX)
		why = "nshards must be 1 .. 1024";
	else if (cfg->ring_entries < 8 || cfg->ring_entries > 16384 ||
		 (cfg->ring_entries & (cfg->ring_entries - 1)))
		/* the CQ gets 4x, and the kernel's CQ limit is 65536 */
		why = "ring_entries must be a power of two in 8 .. 16384";
	else if (cfg->chunk_size <= CHUNK_HEADROOM)
		why = "chunk_size must exceed the chunk headroom";
	else if (cfg->pool_chunks < 1)
		why = "pool_chunks must be at least 1";
	else if (cfg->buf_entries > SHARD_BUF_MAX || (cfg->buf_entries & (cfg->buf_entries - 1)) ||
		 cfg->buf_entries > cfg->pool_chunks)
		why = "buf_entries must be 0 or a power of two <= 32768 and <= pool_chunks";
	else if (cfg->inbox_entries < 2 || (cfg->inbox_entries & (cfg->inbox_entries - 1)))
		why = "inbox_entries must be a power of two >= 2";
	else if (cfg->pin.mode == SHARD_PIN_LIST && cfg->pin.ncpus == 0)
		why = "pin list is empty";
	if (!why)
		return 0;
	shard_clog(cfg, SHARD_LOG_ERR, "bad configuration: %s", why);
	return -EINVAL;
}

/* Fill g->cpu[] from cfg.pin and the starter's affinity.  Returns 0 or -EINVAL. */
static int shard_pin_resolve(struct shard_group *g)
{
	const struct shard_pin *pin = &g->cfg.pin;
	int avail[SHARD_PIN_MAX];
	unsigned navail = 0, i;
	cpu_set_t allowed;

	if (pin->mode == SHARD_PIN_NONE) {
		for (i = 0; i < g->n; i++)
			g->cpu[i] = -1;
		return 0;
	}
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0) {
		int rc = -errno;

		shard_glog(g, SHARD_LOG_ERR, "pin: sched_getaffinity: %s", strerror(-rc));
		return rc;
	}
	for (i = 0; i < SHARD_PIN_MAX && i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &allowed))
			avail[navail++] = (int)i;
	if (pin->mode == SHARD_PIN_AUTO) {
		if (navail == 0)
			return -EINVAL;
		for (i = 0; i < g->n; i++)
			g->cpu[i] = avail[i % navail];
		return 0;
	}
	for (i = 0; i < pin->ncpus; i++) {
		if (!CPU_ISSET(pin->cpus[i], &allowed)) {
			shard_glog(g, SHARD_LOG_ERR, "pin: CPU %u is not available to this process",
				pin->cpus[i]);
			return -EINVAL;
		}
	}
	for (i = 0; i < g->n; i++)
		g->cpu[i] = pin->cpus[i % pin->ncpus];
	return 0;
}

/* Free the group's memory; no shard thread runs.  Starter/stopper thread. */
static void shard_group_free(struct shard_group *g)
{
	unsigned i;

	for (i = 0; i < g->n; i++) {
		if (g->shards[i].inbox) {
			SHARD_BUG_ON(ring_mpsc_size(g->shards[i].inbox) != 0);
			ring_mpsc_free(g->shards[i].inbox);
		}
		if (g->shards[i].wake.fd >= 0)
			ring_wake_destroy(&g->shards[i].wake);
	}
	pthread_cond_destroy(&g->sync.cv);
	pthread_mutex_destroy(&g->sync.mu);
	free(g->shards);
	free(g->cpu);
	free(g);
}

/* Allocate the group and each shard's inbox and eventfd.  Returns 0 or -errno. */
static int shard_group_alloc(const struct shard_config *cfg, struct shard_group **out)
{
	size_t gbytes = (sizeof(struct shard_group) + SHARD_LINE - 1) & ~(size_t)(SHARD_LINE - 1);
	struct shard_group *g;
	unsigned i;
	int rc;

	g = aligned_alloc(SHARD_LINE, gbytes);
	if (!g)
		return -ENOMEM;
	memset(g, 0, gbytes);
	g->cfg = *cfg;
	g->n = cfg->nshards;
	pthread_mutex_init(&g->sync.mu, NULL);
	pthread_cond_init(&g->sync.cv, NULL);
	/* not atomic: no other thread sees the group yet; pthread_create publishes it */
	atomic_init(&g->stop, false);
	atomic_init(&g->stop_seen, 0);
	atomic_init(&g->calls_active, 0);
	g->cpu = calloc(g->n, sizeof(*g->cpu));
	/* sizeof(struct shard) is a multiple of SHARD_LINE (its alignment) */
	g->shards = aligned_alloc(SHARD_LINE, g->n * sizeof(struct shard));
	if (g->shards) {
		memset(g->shards, 0, g->n * sizeof(struct shard));
		for (i = 0; i < g->n; i++) {
			g->shards[i].wake.fd = -1;
			g->shards[i].ring_fd = -1;
		}
	}
	if (!g->cpu || !g->shards) {
		rc = -ENOMEM;
		goto err;
	}
	for (i = 0; i < g->n; i++) {
		struct shard *s = &g->shards[i];

		s->group = g;
		s->id = i;
		s->inbox = ring_mpsc_new(cfg->inbox_entries, &rc);
		if (!s->inbox)
			goto err;
		rc = ring_wake_init(&s->wake);
		if (rc < 0) {
			s->wake.fd = -1;
			goto err;
		}
	}
	*out = g;
	return 0;
err:
	if (g->shards) {
		shard_group_free(g);
	} else {
		pthread_cond_destroy(&g->sync.cv);
		pthread_mutex_destroy(&g->sync.mu);
		free(g->cpu);
		free(g);
	}
	return rc;
}

struct shard_group *shard_group_start(const struct shard_config *cfg, int *err)
{
	struct shard_group *g = NULL;
	sigset_t all, old;
	pthread_attr_t attr;
	unsigned spawned = 0, i;
	int rc;

	rc = shard_config_check(cfg);
	if (rc < 0)
		goto err;
	rc = shard_group_alloc(cfg, &g);
	if (rc < 0) {
		shard_clog(cfg, SHARD_LOG_ERR, "cannot allocate the group: %s", strerror(-rc));
		goto err;
	}
	rc = shard_pin_resolve(g);
	if (rc < 0)
		goto err_free;

	/* shard threads inherit a fully blocked mask: signals go to the daemon's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < g->n; i++) {
		struct shard *s = &g->shards[i];
		cpu_set_t set;

		pthread_attr_init(&attr);
		if (g->cpu[i] >= 0) {
			CPU_ZERO(&set);
			CPU_SET(g->cpu[i], &set);
			rc = -pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		if (rc == 0)
			rc = -pthread_create(&s->thread, &attr, shard_main, s);
		pthread_attr_destroy(&attr);
		if (rc < 0) {
			shard_glog(g, SHARD_LOG_ERR, "cannot start shard thread %u: %s", i,
				strerror(-rc));
			break;
		}
		spawned++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	shard_sync_wait(g, spawned);
	for (i = 0; i < spawned && rc == 0; i++)
		rc = g->shards[i].setup_err;
	if (rc < 0) {
		shard_sync_set(g, -1);
		for (i = 0; i < spawned; i++)
			pthread_join(g->shards[i].thread, NULL);
		goto err_free;
	}
	shard_sync_set(g, 1);
	shard_sync_wait(g, 2 * g->n);
	shard_sync_set(g, 2);
	for (i = 0; i < g->n && rc == 0; i++)
		rc = g->shards[i].start_err;
	if (rc < 0) {
		shard_glog(g, SHARD_LOG_ERR, "on_start failed: %s; stopping", strerror(-rc));
		shard_group_stop(g);
		goto err;
	}
	*err = 0;
	return g;

err_free:
	shard_group_free(g);
err:
	*err = rc;
	return NULL;
}

void shard_group_request_stop(struct shard_group *g)
{
	unsigned i;

	/*
	 * seq_cst: pairs with shard_call's seq_cst increment of calls_active and
	 * load of stop (a store-load pair on each side: see shard_call).
	 */
	atomic_store_explicit(&g->stop, true, memory_order_seq_cst);
	/* unconditional: a sleeping shard wakes on its eventfd poll and sees the flag */
	for (i = 0; i < g->n; i++)
		ring_wake_signal(&g->shards[i].wake);
}

int shard_group_stop(struct shard_group *g)
{
	struct shard *self = shard_tls_self;
	int rc = 0;
	unsigned i;

	if (self && self->group == g)
		return -EDEADLK;
	shard_group_request_stop(g);
	for (i = 0; i < g->n; i++) {
		pthread_join(g->shards[i].thread, NULL);
		if (rc == 0)
			rc = g->shards[i].exit_err;
	}
	/*
	 * Non-shard callers that saw the stop flag may still be backing out of
	 * shard_call (decrementing calls_active): let them leave the group's
	 * memory first.  acquire: their accesses happen before our free.
	 */
	while (atomic_load_explicit(&g->calls_active, memory_order_acquire) != 0)
		sched_yield();
	shard_group_free(g);
	return rc;
}
