/*
 * shard/shard.h - the thread-per-core runtime of sandwired.
 *
 * A shard group is N threads ("shards"), each optionally pinned to one CPU
 * and each owning, alone and without locks:
 *   - an io_uring (SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN |
 *     TASKRUN_FLAG where the kernel has them, falling back with a log line);
 *   - a chunk pool (ring/chunk_pool.h, memory from a per-shard mimalloc
 *     heap) and a provided-buffer ring fed from it, so that multishot recv
 *     lands straight in chunks: a received buffer IS a chunk;
 *   - timers (a pairing heap; the loop sleeps until the earliest one);
 *   - an inbox (ring/mpsc.h) through which any thread runs a function on the
 *     shard (shard_call), with an edge-triggered wake: IORING_OP_MSG_RING from
 *     a shard's own ring, an eventfd from any other thread.
 * The runtime knows nothing of sandboxes; the engine builds on this API.
 *
 * Threads.  Unless a comment says "any thread", a function taking a
 * struct shard must run on that shard's thread (its "owner"), i.e. inside a
 * callback the runtime called on it: on_start, on_stop, a completion, a
 * timer, a deferred item or a shard_call function.  Every object below
 * (ops, timers, receivers ...) belongs to the shard it was started on.
 *
 * One turn of a shard's loop (the phase order, as libuv's uv_run):
 *   1. submit queued SQEs; block in io_uring_enter only when nothing is
 *      pending, until a completion, a wake or the earliest timer;
 *   2. completions: each CQE goes to its op's callback;
 *   3. inbox: run up to SHARD_INBOX_BUDGET shard_call functions;
 *   4. timers: run the due ones, earliest first (at most SHARD_TIMER_BUDGET);
 *   5. buffers: reclaim chunks other threads returned, refill the
 *      provided-buffer ring, re-arm receivers parked on -ENOBUFS;
 *   6. deferred items (shard_defer): the once-per-turn flush hooks;
 *   7. wakes: one wake per shard this turn's shard_calls went to, if asleep;
 *   8. stop: when a stop was requested, the stop sequence below.
 *
 * user_data.  An SQE submitted through shard_submit carries a pointer to a
 * struct shard_op, which the caller embeds in its own object (as liburing's
 * examples/proxy.c and sandwire-agent do): the op names its callback, and
 * the runtime counts the op's SQEs still in flight (op->inflight), so an
 * object knows when its last completion has come and it may be freed
 * (anchors 9).  We chose pointers over packed (kind, slot, generation)
 * words: no global table, one indirect call, and the in-flight count makes
 * the lifetime rule checkable.  The runtime's own completions carry small
 * tagged words with the low bit set (an op is at least 8-byte aligned).
 *
 * Stop sequence.  shard_group_request_stop (any thread) sets the group's
 * stop flag and wakes every shard.  Each shard, at the end of its turn:
 *   a. calls cfg->on_stop once; it may still shard_call other shards;
 *   b. from then on its own shard_calls fail with -ESHUTDOWN (calls from
 *      non-shard threads fail as soon as the stop flag is set);
 *   c. cancels every op still in flight (again each turn while new ones
 *      appear), ends receivers parked on -ENOBUFS, and keeps turning - ops
 *      complete (with -ECANCELED), accepted calls run - until all shards
 *      are past (b), no call is half-made, its inbox is empty and nothing
 *      of its own is in flight;
 *   d. waits for every shard to get there, then frees its buffer ring,
 *      its pool (every chunk must be back: else the pool is leaked and
 *      shard_group_stop returns -EBUSY), its ring and heap, and exits.
 * Every shard_call that returned 0 has run exactly once.  Timers and
 * deferred items still pending at (d) are dropped without being called.
 *
 * Usage:
 *	struct shard_config cfg;
 *	shard_config_init(&cfg, 4);
 *	shard_parse_pin("auto", &cfg.pin);
 *	cfg.on_start = my_start;         // e.g. open this shard's listener
 *	cfg.on_stop = my_stop;           // close this shard's objects
 *	g = shard_group_start(&cfg, &err);
 *	... shard_call(shard_group_get(g, 2), fn, arg) from any thread ...
 *	shard_group_stop(g);             // from a non-shard thread
 */
#ifndef SW_SHARD_SHARD_H
#define SW_SHARD_SHARD_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shard;
struct shard_group;
struct chunk;
struct chunk_pool;

#define SHARD_MAX 1024u		 /* shards per group */
#define SHARD_PIN_MAX 1024u	 /* CPUs in a pin list (CPU_SETSIZE) */
#define SHARD_INBOX_BUDGET 1024u /* shard_call functions run per turn */
#define SHARD_TIMER_BUDGET 1024u /* timer callbacks run per turn */
#define SHARD_BUF_MAX 32768u	 /* provided buffers per shard (kernel limit) */

/* ---- configuration ------------------------------------------------------ */

enum shard_log_level {
	SHARD_LOG_ERR = 0,
	SHARD_LOG_WARN,
	SHARD_LOG_INFO,
	SHARD_LOG_DEBUG,
};

/*
 * Log sink: one line <msg> (no trailing newline) at <level>.  Called from
 * any shard thread and from the thread that starts or stops the group, so
 * it must be thread-safe.
 */
typedef void (*shard_log_fn)(void *ctx, int level, const char *msg);

enum shard_pin_mode {
	SHARD_PIN_NONE = 0, /* threads float (the scheduler places them) */
	SHARD_PIN_AUTO,	    /* shard i -> i-th CPU of the starter's affinity mask (mod count) */
	SHARD_PIN_LIST,	    /* shard i -> cpus[i % ncpus] */
};

struct shard_pin {
	enum shard_pin_mode mode;
	unsigned ncpus;		      /* LIST: entries in cpus[] */
	uint16_t cpus[SHARD_PIN_MAX]; /* LIST: CPU numbers, in shard order */
};

/* Flags of struct shard_config (tests and diagnostics). */
#define SHARD_F_NO_MSG_RING 0x1u      /* wake other shards by eventfd only, never MSG_RING */
#define SHARD_F_NO_DEFER_TASKRUN 0x2u /* start the ring-flag fallback below DEFER_TASKRUN */

/* Set by shard_config_init to the defaults noted; the caller adjusts. */
struct shard_config {
	unsigned nshards;	/* threads, 1 .. SHARD_MAX */
	struct shard_pin pin;	/* NONE */
	unsigned flags;		/* SHARD_F_*; 0 */
	unsigned ring_entries;	/* SQ entries (power of two <= 16384); the CQ gets 4x. 1024 */
	uint32_t chunk_size;	/* bytes of a chunk's data[], headroom included. 64 KiB + 64 */
	uint32_t pool_chunks;	/* chunks per shard. 512 */
	uint32_t buf_entries;	/* provided buffers per shard: power of two <= SHARD_BUF_MAX and
				   <= pool_chunks, or 0 for no buffer ring (no shard_recv). 128 */
	uint32_t buf_reserve;	/* chunks the buffer ring never takes from the pool. 64 */
	uint32_t inbox_entries; /* inbox slots (power of two >= 2). 4096 */
	shard_log_fn log;	/* NULL: stderr */
	void *log_ctx;
	/*
	 * Called on each shard before its loop starts, all shards' rings being
	 * up (shard_call works).  Nonzero (a negative errno) fails
	 * shard_group_start, which then stops the group: on_stop still runs.
	 */
	int (*on_start)(struct shard *s, void *user);
	/* Called once on each shard when the stop sequence starts (see above). */
	void (*on_stop)(struct shard *s, void *user);
	void *user; /* passed to on_start and on_stop */
};

/* Fill <cfg> with the defaults above for <nshards> shards.  Any thread. */
void shard_config_init(struct shard_config *cfg, unsigned nshards);

/*
 * Parse a pin spec into *<out>: "none", "auto", or a CPU list such as
 * "0-3,8,10-11" (shard i takes the i-th CPU listed, wrapping around).
 * Returns 0, -EINVAL (syntax, empty list, a range going down) or -ERANGE
 * (a CPU >= SHARD_PIN_MAX, or more than SHARD_PIN_MAX entries); *<out> is
 * unchanged on error.  Whether the CPUs exist is checked at start.  Any
 * thread.
 */
int shard_parse_pin(const char *spec, struct shard_pin *out);

/* ---- the group ---------------------------------------------------------- */

/*
 * Start cfg->nshards shard threads (signals blocked in them) and return when
 * every shard is set up and has run cfg->on_start.  <cfg> is copied.
 * Returns the group, or NULL with *<err> = -EINVAL (bad configuration or
 * pin CPU), -ENOMEM, a negative errno from io_uring setup or thread
 * creation, or on_start's error; nothing is left behind then.  Any thread
 * that is not a shard of a group being stopped.
 */
struct shard_group *shard_group_start(const struct shard_config *cfg, int *err);

/*
 * Ask every shard to stop (the stop sequence above); returns at once.
 * Idempotent.  Any thread, also a shard of <g>; async-signal-safe.
 */
void shard_group_request_stop(struct shard_group *g);

/*
 * Stop <g> (requesting it if needed), wait for every shard thread to end,
 * free everything.  Returns 0, or -EBUSY when a shard's pool still had
 * chunks out (it is leaked, and logged), or -EDEADLK when called from a
 * shard of <g> (nothing happens; use shard_group_request_stop there).
 * Not to be called concurrently with shard_call on <g> from threads other
 * than its shards (such calls may race with the free).  Any other thread.
 */
int shard_group_stop(struct shard_group *g);

/* Number of shards.  Any thread. */
unsigned shard_group_size(const struct shard_group *g);

/* Shard <i> (< size) of <g>, e.g. a shard_call target.  Any thread. */
struct shard *shard_group_get(struct shard_group *g, unsigned i);

/* The calling thread's shard, or NULL on a thread that is no shard.  Any thread. */
struct shard *shard_self(void);

/* Index of <s> in its group.  Any thread. */
unsigned shard_id(const struct shard *s);

/* The group of <s>.  Any thread. */
struct shard_group *shard_get_group(const struct shard *s);

/* The owner's per-shard pointer (NULL until set), e.g. set in on_start. */
void *shard_data(const struct shard *s);
void shard_set_data(struct shard *s, void *data);

/* True once this shard's stop sequence has started (after on_stop). */
bool shard_stopping(const struct shard *s);

/*
 * The shard's io_uring, for registering files or buffers.  The caller
 * MUST NOT reap completions from it nor submit on it except through
 * shard_sqe/shard_submit.
 */
struct io_uring *shard_ring(struct shard *s);

/*
 * The shard's chunk pool: chunk_pool_get from here on the owner; any thread
 * may chunk_put.  The provided-buffer ring draws from the same pool, leaving
 * it cfg->buf_reserve chunks.
 */
struct chunk_pool *shard_pool(struct shard *s);

/* CLOCK_MONOTONIC in ns, the clock of the timers.  Any thread. */
uint64_t shard_now_ns(void);

/*
 * Write a log line through the group's sink, prefixed "shard <id>: ".
 * Any thread.
 */
void shard_log(const struct shard *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- io_uring operations ------------------------------------------------ */

struct shard_op;

/*
 * Called for each CQE of <op>.  When it runs, op->inflight already counts
 * this CQE out if it was the op's last (no IORING_CQE_F_MORE), so
 * "op->inflight == 0" means no completion of <op> is still to come.
 */
typedef void (*shard_cqe_fn)(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe);

/* owner: the shard it is submitted on.  Embed it in the object it works for. */
struct shard_op {
	shard_cqe_fn fn;   /* completion callback */
	unsigned inflight; /* SQEs submitted whose last CQE has not come yet (runtime-maintained) */
};

/* Initialise <op> with callback <fn>, nothing in flight.  Any thread. */
void shard_op_init(struct shard_op *op, shard_cqe_fn fn);

/*
 * A free SQE of <s>'s ring (queued SQEs are flushed to the kernel first if
 * the queue is full).  Prepare it with io_uring_prep_*, then hand it to
 * shard_submit.  Returns NULL only when the kernel refuses a submit
 * (e.g. -EBUSY under CQ overflow): retry at a later turn.
 */
struct io_uring_sqe *shard_sqe(struct shard *s);

/*
 * Attach the prepared <sqe> to <op> (user_data = op, op->inflight++).  The
 * SQE goes to the kernel at the end of the turn, or earlier when the queue
 * fills.  Do not set IOSQE_CQE_SKIP_SUCCESS: every SQE must complete.
 */
void shard_submit(struct shard *s, struct io_uring_sqe *sqe, struct shard_op *op);

/*
 * Cancel every in-flight SQE of <op> (IORING_ASYNC_CANCEL_ALL on its
 * user_data); each still completes, usually with -ECANCELED.  Returns 0 or
 * -EAGAIN when no SQE was free (retry at a later turn).
 */
int shard_cancel(struct shard *s, struct shard_op *op);

/* ---- cross-shard calls ---------------------------------------------------- */

typedef void (*shard_call_fn)(struct shard *s, void *arg);

/*
 * Run <fn>(<target>, <arg>) on <target>'s thread, at its inbox phase.  The
 * runtime never looks at <arg>; ownership of what it points to moves with
 * the call.  Calls from one thread run in the order they were made; a call
 * to the calling shard itself runs at its next inbox phase.  A sleeping
 * target is woken (from a shard: once per turn, by MSG_RING or eventfd;
 * from any other thread: by eventfd, at once).
 * Returns 0 (<fn> will run exactly once), -EAGAIN (the inbox is full: the
 * caller keeps <arg> and retries later, e.g. from shard_defer), or
 * -ESHUTDOWN (the group is stopping: see the stop sequence).  Any thread.
 */
int shard_call(struct shard *target, shard_call_fn fn, void *arg);

/* ---- deferred items: the once-per-turn flush hooks ----------------------- */

struct shard_defer;
typedef void (*shard_defer_fn)(struct shard *s, struct shard_defer *d);

/*
 * owner: its shard.  Queued with shard_defer, run once at the turn's
 * deferred phase (e.g. a console queues its flush when it gets its first
 * frame of the turn, and writes all of them with one writev at the end).
 */
struct shard_defer {
	shard_defer_fn fn;
	struct shard_defer *_next, *_prev; /* private: queue links, NULL when not queued */
};

/* Initialise <d> with callback <fn>, not queued.  Any thread. */
void shard_defer_init(struct shard_defer *d, shard_defer_fn fn);

/*
 * Queue <d> to run at this turn's deferred phase, or at the next turn's if
 * that phase is running now.  No-op when already queued.
 */
void shard_defer(struct shard *s, struct shard_defer *d);

/* Unqueue <d> (no-op when not queued); required before freeing a queued <d>. */
void shard_defer_cancel(struct shard *s, struct shard_defer *d);

/* True while <d> is queued.  Owner. */
static inline bool shard_defer_queued(const struct shard_defer *d)
{
	return d->_next != NULL;
}

/* ---- timers --------------------------------------------------------------- */

struct shard_timer;
typedef void (*shard_timer_fn)(struct shard *s, struct shard_timer *t);

/*
 * owner: its shard.  Timers fire in deadline order (equal deadlines in
 * arming order), never before their deadline, at the turn's timer phase.
 * Arming and cancelling never allocate (the heap is intrusive).
 */
struct shard_timer {
	shard_timer_fn fn;
	uint64_t deadline; /* ns, CLOCK_MONOTONIC (shard_now_ns); valid while armed */
	uint64_t _seq;	   /* private: arming order, breaks deadline ties */
	struct shard_timer *_child, *_next, *_prev; /* private: pairing-heap links */
	bool _armed;
};

/* Initialise <t> with callback <fn>, not armed.  Any thread. */
void shard_timer_init(struct shard_timer *t, shard_timer_fn fn);

/* Arm (or move) <t> to fire at <deadline_ns> (shard_now_ns clock). */
void shard_timer_arm(struct shard *s, struct shard_timer *t, uint64_t deadline_ns);

/* Disarm <t> (no-op when not armed); required before freeing an armed <t>. */
void shard_timer_cancel(struct shard *s, struct shard_timer *t);

/* True while <t> is armed.  Owner. */
static inline bool shard_timer_armed(const struct shard_timer *t)
{
	return t->_armed;
}

/* ---- multishot recv into provided buffers (chunks) ------------------------ */

struct shard_recv;

/*
 * Data: <c> != NULL holds <res> > 0 bytes at chunk_ptr(c) (off =
 * CHUNK_HEADROOM, len = res); the callee owns <c> and chunk_puts it when
 * done, from any thread: that is what feeds the buffer ring again.
 * End: <c> == NULL, <res> 0 (peer closed), -ECANCELED (shard_recv_stop or
 * group stop) or another negative errno.  After the end the runtime no
 * longer touches the receiver; the caller may free it and close the fd.
 */
typedef void (*shard_recv_fn)(struct shard *s, struct shard_recv *r, struct chunk *c, int res);

/*
 * owner: its shard.  One multishot recv on a stream socket, re-armed when
 * the kernel ends it early; -ENOBUFS (every buffer is out) parks it until
 * the buffer ring holds enough chunks again: back-pressure, not an error.
 */
struct shard_recv {
	struct shard_op _op; /* private: the multishot SQE */
	shard_recv_fn fn;
	int fd;			    /* the socket; the caller owns it */
	uint8_t _state;		    /* private: SHARD_RECV_* in buf.c */
	struct shard_recv *_parked; /* private: next on the parked list */
};

/*
 * Start receiving from <fd> into <r> (which must not be running: new, or
 * ended), delivering to <fn>.  Returns 0, -EOPNOTSUPP (no buffer ring:
 * buf_entries 0 or the kernel lacks it), -ESHUTDOWN (stopping) or -EAGAIN
 * (no SQE).
 */
int shard_recv_start(struct shard *s, struct shard_recv *r, int fd, shard_recv_fn fn);

/*
 * Stop <r>: it ends with -ECANCELED (or 0 / an error that raced), always
 * through its callback, never inside this call.  Returns 0 (also when not
 * running or already stopping) or -EAGAIN (no SQE for the cancel: retry).
 */
int shard_recv_stop(struct shard *s, struct shard_recv *r);

/* ---- multishot accept ----------------------------------------------------- */

struct shard_accept;

/*
 * <res> >= 0: a new connection (SOCK_CLOEXEC), owned by the callee.
 * <res> < 0: the end: -ECANCELED (shard_accept_stop or group stop) or the
 * kernel's error (e.g. -EMFILE); restart with shard_accept_start if wanted.
 */
typedef void (*shard_accept_fn)(struct shard *s, struct shard_accept *a, int res);

/* owner: its shard.  One multishot accept, re-armed when the kernel ends it early. */
struct shard_accept {
	struct shard_op _op; /* private: the multishot SQE */
	shard_accept_fn fn;
	int fd;		/* the listening socket; the caller owns it */
	uint8_t _state; /* private: SHARD_ACCEPT_* in buf.c */
};

/*
 * Start accepting on <fd> into <a> (which must not be running: new, or
 * ended).  Returns 0, -ESHUTDOWN (stopping) or -EAGAIN (no SQE).
 */
int shard_accept_start(struct shard *s, struct shard_accept *a, int fd, shard_accept_fn fn);

/* Stop <a> (ends through its callback with -ECANCELED).  Returns 0 or -EAGAIN. */
int shard_accept_stop(struct shard *s, struct shard_accept *a);

/* ---- statistics ------------------------------------------------------------ */

/* Counters of one shard since it started (all monotonic but the snapshots). */
struct shard_stats {
	uint64_t turns;		 /* loop turns */
	uint64_t sleeps;	 /* turns that blocked in io_uring_enter */
	uint64_t cqes;		 /* completions handled */
	uint64_t calls_run;	 /* shard_call functions run here */
	uint64_t calls_sent;	 /* shard_calls made by this shard that were accepted */
	uint64_t calls_full;	 /* shard_calls made by this shard refused with -EAGAIN */
	uint64_t wakes_msg_ring; /* wakes sent by this shard with MSG_RING */
	uint64_t wakes_eventfd;	 /* wakes sent by this shard with an eventfd write */
	uint64_t wakes_failed;	 /* MSG_RING wakes that failed (then sent by eventfd) */
	uint64_t woken_msg_ring; /* MSG_RING wakes received */
	uint64_t woken_eventfd;	 /* eventfd wakes received */
	uint64_t bufs_received;	 /* recv completions that carried a provided buffer */
	uint64_t bytes_received; /* bytes in those */
	uint64_t enobufs;	 /* receivers parked on -ENOBUFS */
	uint64_t rearms;	 /* multishot ops re-armed after the kernel ended them */
	uint64_t timers_fired;	 /* timer callbacks run */
	uint64_t enter_errors;	 /* io_uring_enter failures other than timeout/interrupt */
	uint32_t bufs_posted;	 /* snapshot: chunks in the buffer ring now */
	uint32_t inbox_depth;	 /* snapshot: inbox slots claimed, not yet run */
	uint32_t ring_flags;	 /* IORING_SETUP_* the ring runs with */
	bool msg_ring;		 /* this shard wakes others with MSG_RING */
};

/* Fill *<st> with <s>'s counters.  Owner. */
void shard_read_stats(const struct shard *s, struct shard_stats *st);

#endif /* SW_SHARD_SHARD_H */
