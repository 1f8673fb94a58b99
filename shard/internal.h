/*
 * shard/internal.h - what the files of shard/ share (shard/ only).
 *
 *   group.c  configuration, start and stop, a shard's setup and teardown
 *   loop.c   the loop, op dispatch, inbox and wakes, deferred items, the stop sequence
 *   timer.c  the pairing heap of timers
 *   buf.c    the provided-buffer ring, multishot recv and accept
 *   pin.c    shard_parse_pin
 *
 * Wake paths (shard T asleep in io_uring_enter, its wake flag armed):
 *
 *   sender on shard S of T's group            sender on any other thread
 *   -------------------------------           --------------------------
 *   push to T's inbox                         calls_active++, check stop
 *   mark T in S's wake list                   push to T's inbox
 *   ... end of S's turn:                      ring_wake_notify(T): if armed,
 *   exchange(T.sleeping, 0) == 1 ?              write T's eventfd
 *     MSG_RING from S's ring to T's ring      calls_active--
 *     (or write T's eventfd: no MSG_RING,
 *      SHARD_F_NO_MSG_RING, or it failed)
 *                          \                   /
 *   T: CQE (MSG_RING data, or its multishot poll on the eventfd) -> wakes,
 *      disarms, drains the inbox.
 *
 * Both paths use ring/wake.h's armed protocol on T's flag (wake.sleeping):
 * the sender's release exchange after its push, T's acquire exchanges
 * around its re-check; wake.h has the proof.  A shard sender performs the
 * very exchange ring_wake_notify does, then picks the wake itself.
 */
#ifndef SW_SHARD_INTERNAL_H
#define SW_SHARD_INTERNAL_H

#include <liburing.h>
#include <mimalloc.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ring/chunk_pool.h"
#include "ring/desc.h"
#include "ring/mpsc.h"
#include "ring/wake.h"
#include "shard/shard.h"

#define SHARD_LINE 64			/* cache line, bytes */
#define SHARD_BGID 0			/* buffer group id of each shard's provided-buffer ring */
#define SHARD_DRAIN_WAIT_NS 5000000ull	/* longest sleep while stopping (5 ms): see loop.c */
#define SHARD_PARKED_WAIT_NS 1000000ull /* longest sleep with receivers parked (1 ms) */

/* Invariant checks: abort in debug and sanitizer builds, compiled out otherwise. */
#if !defined(NDEBUG) || defined(SW_SANITIZER_BUILD)
#define SHARD_BUG_ON(cond)                                                                         \
	do {                                                                                       \
		if (cond) {                                                                        \
			fprintf(stderr, "%s:%d: BUG: %s\n", __FILE__, __LINE__, #cond);            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
#else
#define SHARD_BUG_ON(cond) ((void)0)
#endif

/*
 * Runtime-internal user_data: low bit 1 (a struct shard_op is at least
 * 8-byte aligned, so its address has it 0), kind in bits 1..7, an argument
 * above.  LIBURING_UDATA_TIMEOUT (all ones) decodes to kind 127: ignored.
 */
enum shard_ud_kind {
	SHARD_UD_WAKE = 1,   /* MSG_RING arrived from another shard (not our SQE) */
	SHARD_UD_WAKE_SENT,  /* our MSG_RING to shard <arg> completed */
	SHARD_UD_EVENTFD,    /* multishot poll on our eventfd fired */
	SHARD_UD_CANCEL,     /* a shard_cancel completed (result ignored) */
	SHARD_UD_CANCEL_ALL, /* the stop sequence's cancel-any completed */
};
#define SHARD_UD(kind, arg) (((uint64_t)(arg) << 8) | ((uint64_t)(kind) << 1) | 1u)
#define SHARD_UD_KIND(ud) ((unsigned)((ud) >> 1) & 0x7fu)
#define SHARD_UD_ARG(ud) ((ud) >> 8)

enum shard_state {
	SHARD_RUNNING = 0, /* normal turns */
	SHARD_DRAINING,	   /* stop sequence (b)-(c): cancelling, running what is queued */
};

/* The provided-buffer ring: every posted buffer is the payload area of a chunk. */
struct shard_bufs {
	struct io_uring_buf_ring *br; /* ring memory we mmap'd; NULL: no buffer ring */
	size_t br_bytes;	      /* its size */
	unsigned entries;	      /* power of two */
	struct chunk **chunk_of;      /* bid -> chunk posted under it, NULL when the bid is free */
	uint16_t *free_bids;	      /* stack of bids with no chunk posted */
	unsigned nfree;		      /* entries on free_bids; posted = entries - nfree */
	unsigned rearm_at;	      /* posted count at which parked receivers re-arm */
	uint32_t reserve;	      /* chunks left in the pool for other uses */
};

/*
 * owner: the shard's thread, except the groups marked otherwise.  Other
 * threads reach a shard only through shard_call (inbox + wake) and, for
 * MSG_RING, ring_fd.
 */
struct shard {
	/* read-only for every thread once the start handshake published them */
	struct shard_group *group;
	unsigned id;
	int ring_fd;		 /* MSG_RING target; set at setup, valid until the stop handshake */
	struct ring_mpsc *inbox; /* producers: any thread; consumer: this shard */
	pthread_t thread;	 /* written and read by the starting/stopping thread only */

	/* handshake results, written by the shard, read by the starter after the handshake */
	int setup_err; /* 0 or the setup's negative errno */
	int start_err; /* on_start's result */
	int exit_err;  /* 0 or -EBUSY (pool leaked); read after pthread_join */

	/* shared: the wake flag (atomic, see internal.h's head) and the eventfd (read-only) */
	alignas(SHARD_LINE) struct ring_wake wake;

	/* owner only, from here on */
	alignas(SHARD_LINE) struct io_uring ring;
	bool msg_ring;	/* wake other shards by MSG_RING */
	bool efd_armed; /* multishot poll on wake.fd in flight */
	enum shard_state state;
	bool stopping;		  /* on_stop ran: own shard_calls refused */
	bool cancel_all_inflight; /* the stop sequence's cancel-any is in flight */
	unsigned inflight;	  /* our SQEs whose last CQE has not come yet */
	mi_heap_t *heap;	  /* per-shard heap: pool memory, tables */
	struct chunk_pool *pool;
	struct shard_bufs bufs;
	struct shard_recv *parked; /* receivers waiting for buffers (or to end) */
	void *data;		   /* shard_set_data */

	/* deferred items: circular list through a sentinel */
	struct shard_defer defer;

	/* timers: pairing heap */
	struct shard_timer *timer_root;
	uint64_t timer_seq;

	/* wakes owed at the end of this turn: shards this turn's calls went to */
	uint16_t *wake_list; /* ids, wake_n of them */
	uint8_t *wake_mark;  /* per target id: 1 when on wake_list */
	unsigned wake_n;

	struct shard_stats st;
};

/*
 * The start/stop handshake, owner: none (shared), every field under <mu>.
 *   starter: spawn -> wait arrived == spawned -> go (or abort) ->
 *            wait arrived == 2n -> phase 2 (loops start)
 *   shard:   setup -> arrive -> wait go -> on_start -> arrive -> wait phase 2
 *            ... stop sequence (c) done -> stop_arrived++ -> wait == n -> teardown
 */
struct shard_sync {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned arrived;      /* shards past setup, then past on_start (counts both) */
	int phase;	       /* 0 wait, 1 go (run on_start), 2 run loops, -1 abort */
	unsigned stop_arrived; /* shards done with stop step (c) */
};

/*
 * owner: the thread that started it (it frees it); shards read the
 * read-only part; the atomic part is shared.
 */
struct shard_group {
	/* read-only after shard_group_start spawned the threads */
	struct shard_config cfg; /* copy; cfg.pin resolved into cpu[] */
	unsigned n;
	struct shard *shards; /* n of them, each cache-line aligned */
	int *cpu;	      /* per shard: CPU it is pinned to, or -1 */

	struct shard_sync sync;

	/* shared, atomic */
	alignas(SHARD_LINE) atomic_bool stop; /* set once by request_stop; read every turn */
	atomic_uint stop_seen;		      /* shards past stop step (b): they push no more */
	/* non-shard threads inside shard_call (see shard_call) */
	alignas(SHARD_LINE) atomic_uint calls_active;
};

/* The calling thread's shard (NULL on other threads). */
extern _Thread_local struct shard *shard_tls_self;

/* group.c */
void shard_glog(const struct shard_group *g, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void shard_sync_stop_arrive(struct shard *s);

/* loop.c */
void shard_loop(struct shard *s);
int shard_efd_arm(struct shard *s);
void shard_submit_internal(struct shard *s, struct io_uring_sqe *sqe, uint64_t ud);

/* timer.c */
void shard_timers_run(struct shard *s, uint64_t now);
struct shard_timer *shard_timer_first(const struct shard *s);

/* buf.c */
int shard_bufs_setup(struct shard *s);
void shard_bufs_teardown(struct shard *s);
void shard_bufs_turn(struct shard *s);

#endif /* SW_SHARD_INTERNAL_H */
