/*
 * shard/loop.c - a shard's event loop: ops and their completions, the
 * inbox and cross-shard wakes, deferred items, and the stop sequence.
 *
 * Phase order of one turn (shard_loop; see shard.h for what each does):
 *   1 wait   2 completions   3 inbox   4 timers   5 buffers
 *   6 deferred items   7 wakes owed   8 stop check
 * Each inner drain is bounded: completions by the CQ size, the inbox by
 * SHARD_INBOX_BUDGET, timers by SHARD_TIMER_BUDGET, deferred items by what
 * was queued when the phase began.  Whatever is left keeps phase 1 from
 * sleeping, so the next turn picks it up.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "shard/internal.h"

#define SHARD_INBOX_BATCH 64u /* descriptors popped at once */

/* ---- ops -------------------------------------------------------------------- */

void shard_op_init(struct shard_op *op, shard_cqe_fn fn)
{
	op->fn = fn;
	op->inflight = 0;
}

struct io_uring_sqe *shard_sqe(struct shard *s)
{
	struct io_uring_sqe *sqe;

	SHARD_BUG_ON(shard_tls_self != s);
	sqe = io_uring_get_sqe(&s->ring);
	if (sqe)
		return sqe;
	/* full: hand the queue to the kernel; if it refuses (-EBUSY), NULL below */
	io_uring_submit(&s->ring);
	return io_uring_get_sqe(&s->ring);
}

void shard_submit(struct shard *s, struct io_uring_sqe *sqe, struct shard_op *op)
{
	SHARD_BUG_ON(((uintptr_t)op & 1u) != 0);
	SHARD_BUG_ON((sqe->flags & IOSQE_CQE_SKIP_SUCCESS) != 0);
	io_uring_sqe_set_data(sqe, op);
	op->inflight++;
	s->inflight++;
}

/* Queue a runtime SQE with the tagged user_data <ud>; it counts as in flight. */
void shard_submit_internal(struct shard *s, struct io_uring_sqe *sqe, uint64_t ud)
{
	sqe->user_data = ud;
	s->inflight++;
}

int shard_cancel(struct shard *s, struct shard_op *op)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, IORING_ASYNC_CANCEL_ALL);
	shard_submit_internal(s, sqe, SHARD_UD(SHARD_UD_CANCEL, 0));
	return 0;
}

/*
 * Arm the multishot poll on our eventfd: how non-shard threads (and shards
 * without MSG_RING) wake us.  Returns 0 or -EAGAIN (no SQE; retried at the
 * next wait).  Owner, while running.
 */
int shard_efd_arm(struct shard *s)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_poll_multishot(sqe, ring_wake_fd(&s->wake), POLLIN);
	shard_submit_internal(s, sqe, SHARD_UD(SHARD_UD_EVENTFD, 0));
	s->efd_armed = true;
	return 0;
}

/* ---- completions ------------------------------------------------------------ */

static void shard_cqe_internal(struct shard *s, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	bool last = !(cqe->flags & IORING_CQE_F_MORE);
	struct shard *t;

	switch (SHARD_UD_KIND(ud)) {
	case SHARD_UD_WAKE:
		/* posted by another shard's MSG_RING, not our SQE: nothing to count */
		s->st.woken_msg_ring++;
		return;
	case SHARD_UD_WAKE_SENT:
		if (cqe->res < 0) {
			/* the target may sleep on: wake it the other way */
			t = &s->group->shards[SHARD_UD_ARG(ud)];
			ring_wake_signal(&t->wake);
			s->st.wakes_failed++;
			s->st.wakes_eventfd++;
		}
		break;
	case SHARD_UD_EVENTFD:
		if (cqe->res > 0) {
			s->st.woken_eventfd++;
			/* reset the counter so the next write is a new edge for the poll */
			ring_wake_drain(&s->wake);
		}
		if (last)
			s->efd_armed = false; /* re-armed by the next wait while running */
		break;
	case SHARD_UD_CANCEL:
		break;
	case SHARD_UD_CANCEL_ALL:
		s->cancel_all_inflight = false;
		break;
	default:
		/* LIBURING_UDATA_TIMEOUT: liburing's own wait timeout, not ours */
		return;
	}
	if (last)
		s->inflight--;
}

static void shard_cqe(struct shard *s, const struct io_uring_cqe *cqe)
{
	struct shard_op *op;

	if (cqe->user_data & 1u) {
		shard_cqe_internal(s, cqe);
		return;
	}
	op = (struct shard_op *)(uintptr_t)cqe->user_data;
	SHARD_BUG_ON(op == NULL || op->inflight == 0);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		op->inflight--;
		s->inflight--;
	}
	op->fn(s, op, cqe);
}

/* Phase 2: every completion there is, at most a CQ's worth. */
static void shard_reap(struct shard *s)
{
	unsigned budget = s->ring.cq.ring_entries, head, n = 0;
	struct io_uring_cqe *cqe;

	io_uring_for_each_cqe(&s->ring, head, cqe)
	{
		shard_cqe(s, cqe);
		if (++n == budget)
			break;
	}
	if (n) {
		io_uring_cq_advance(&s->ring, n);
		s->st.cqes += n;
	}
}

/* ---- inbox, calls and wakes ------------------------------------------------- */

/* Phase 3: run at most SHARD_INBOX_BUDGET queued calls. */
static void shard_inbox_run(struct shard *s)
{
	struct ring_desc batch[SHARD_INBOX_BATCH];
	size_t total = 0, want, n, i;
	shard_call_fn fn;

	while (total < SHARD_INBOX_BUDGET) {
		want = SHARD_INBOX_BUDGET - total;
		n = ring_mpsc_pop_batch(
			s->inbox, batch, want < SHARD_INBOX_BATCH ? want : SHARD_INBOX_BATCH);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			fn = (shard_call_fn)(uintptr_t)batch[i].aux;
			fn(s, batch[i].ptr);
		}
		total += n;
	}
	s->st.calls_run += total;
}

int shard_call(struct shard *target, shard_call_fn fn, void *arg)
{
	struct ring_desc d = {.ptr = arg, .aux = (uint64_t)(uintptr_t)fn};
	struct shard *self = shard_tls_self;
	struct shard_group *g = target->group;
	int rc;

	if (self && self->group == g) {
		/*
		 * A shard of the group: no shared counter.  Its pushes end when it
		 * sets <stopping> and then bumps stop_seen (release), which the
		 * stop sequence waits for, so none can come after a target's last
		 * inbox check.
		 */
		if (self->stopping)
			return -ESHUTDOWN;
		if (ring_mpsc_push(target->inbox, d) < 0) {
			self->st.calls_full++;
			return -EAGAIN;
		}
		self->st.calls_sent++;
		/* the wake decision waits for the end of our turn (phase 7): one per target */
		if (target != self && !self->wake_mark[target->id]) {
			self->wake_mark[target->id] = 1;
			self->wake_list[self->wake_n++] = (uint16_t)target->id;
		}
		return 0;
	}
	/*
	 * Any other thread.  Dekker with shard_group_request_stop and the stop
	 * sequence: we write calls_active then read stop; they write stop then
	 * (later) read calls_active.  seq_cst on all four puts them in one
	 * order, so either we see stop and back out, or the stopping shards see
	 * us in calls_active and wait until we are done pushing.
	 */
	atomic_fetch_add_explicit(&g->calls_active, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&g->stop, memory_order_seq_cst)) {
		rc = -ESHUTDOWN;
		goto out;
	}
	rc = ring_mpsc_push(target->inbox, d);
	if (rc == 0)
		ring_wake_notify(&target->wake); /* eventfd write only if the target is armed */
out:
	/* release: our push (and the wake) happen before a stopping shard reads 0 here */
	atomic_fetch_sub_explicit(&g->calls_active, 1, memory_order_release);
	return rc;
}

/* Wake <t> (its flag said it may sleep): MSG_RING from our ring, else its eventfd. */
static void shard_wake_send(struct shard *s, struct shard *t)
{
	struct io_uring_sqe *sqe = s->msg_ring ? shard_sqe(s) : NULL;

	if (sqe) {
		/* posts a CQE (user_data SHARD_UD_WAKE) on t's ring, which wakes its wait */
		io_uring_prep_msg_ring(sqe, t->ring_fd, 0, SHARD_UD(SHARD_UD_WAKE, 0), 0);
		shard_submit_internal(s, sqe, SHARD_UD(SHARD_UD_WAKE_SENT, t->id));
		s->st.wakes_msg_ring++;
		return;
	}
	ring_wake_signal(&t->wake);
	s->st.wakes_eventfd++;
}

/* Phase 7: for each shard this turn's calls went to, wake it if it may sleep. */
static void shard_wakes_flush(struct shard *s)
{
	struct shard *t;
	unsigned i;

	for (i = 0; i < s->wake_n; i++) {
		t = &s->group->shards[s->wake_list[i]];
		s->wake_mark[t->id] = 0;
		/*
		 * release RMW, exactly ring_wake_notify's (wake.h): publishes our
		 * pushes to t's next arm or disarm (acquire RMWs); reading 1 means
		 * t may be blocked or about to block, and only we will wake it.
		 */
		if (atomic_exchange_explicit(&t->wake.sleeping, 0, memory_order_release) == 0)
			continue;
		shard_wake_send(s, t);
	}
	s->wake_n = 0;
}

/* ---- deferred items ------------------------------------------------------------ */

void shard_defer_init(struct shard_defer *d, shard_defer_fn fn)
{
	d->fn = fn;
	d->_next = d->_prev = NULL;
}

void shard_defer(struct shard *s, struct shard_defer *d)
{
	SHARD_BUG_ON(shard_tls_self != s);
	if (d->_next)
		return;
	d->_next = &s->defer;
	d->_prev = s->defer._prev;
	s->defer._prev->_next = d;
	s->defer._prev = d;
}

void shard_defer_cancel(struct shard *s, struct shard_defer *d)
{
	if (!d->_next)
		return;
	/* works on s->defer and on the phase's private list alike */
	d->_prev->_next = d->_next;
	d->_next->_prev = d->_prev;
	d->_next = d->_prev = NULL;
}

/* Phase 6: run what is queued now; what callbacks queue runs next turn. */
static void shard_defer_run(struct shard *s)
{
	struct shard_defer run, *d;

	if (s->defer._next == &s->defer)
		return;
	run._next = s->defer._next;
	run._prev = s->defer._prev;
	run._next->_prev = &run;
	run._prev->_next = &run;
	s->defer._next = s->defer._prev = &s->defer;
	while (run._next != &run) {
		d = run._next;
		shard_defer_cancel(s, d);
		d->fn(s, d);
	}
}

/* ---- waiting ------------------------------------------------------------------- */

static void shard_enter_error(struct shard *s, int rc)
{
	if (s->st.enter_errors++ == 0)
		shard_log(s, SHARD_LOG_ERR, "io_uring_enter: %s", strerror(-rc));
}

static uint64_t shard_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * Phase 1: submit, and block if there is nothing to do, until a
 * completion, a wake or the earliest timer.  The sleep uses wake.h's armed
 * protocol: arm, re-check the inbox, block, disarm.  It is capped while
 * receivers are parked (chunks come back through the pools' return rings,
 * which wake nobody) and while stopping (other shards' progress wakes
 * nobody either).
 */
static void shard_wait(struct shard *s)
{
	struct __kernel_timespec ts, *tsp = NULL;
	uint64_t wait_ns = UINT64_MAX, now;
	struct io_uring_cqe *cqe;
	struct shard_timer *t;
	int rc;

	if (s->state == SHARD_RUNNING && !s->efd_armed && shard_efd_arm(s) < 0)
		wait_ns = SHARD_PARKED_WAIT_NS;
	if (io_uring_cq_ready(&s->ring) || s->defer._next != &s->defer ||
		ring_mpsc_size(s->inbox) != 0)
		goto busy;
	t = shard_timer_first(s);
	if (t) {
		now = shard_now_ns();
		if (t->deadline <= now)
			goto busy;
		wait_ns = shard_min(wait_ns, t->deadline - now);
	}
	if (s->parked)
		wait_ns = shard_min(wait_ns, SHARD_PARKED_WAIT_NS);
	if (s->state == SHARD_DRAINING)
		wait_ns = shard_min(wait_ns, SHARD_DRAIN_WAIT_NS);

	ring_wake_arm(&s->wake);
	/* re-check after arming: a push we missed above is seen here, or its sender wakes us */
	if (ring_mpsc_size(s->inbox) != 0) {
		ring_wake_disarm(&s->wake);
		goto busy;
	}
	if (wait_ns != UINT64_MAX) {
		ts.tv_sec = (long long)(wait_ns / 1000000000u);
		ts.tv_nsec = (long long)(wait_ns % 1000000000u);
		tsp = &ts;
	}
	rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, tsp, NULL);
	ring_wake_disarm(&s->wake);
	s->st.sleeps++;
	if (rc < 0 && rc != -ETIME && rc != -EINTR)
		shard_enter_error(s, rc);
	return;
busy:
	/* no syscall unless SQEs wait or the kernel flagged task work (TASKRUN_FLAG) */
	rc = io_uring_submit(&s->ring);
	if (rc < 0 && rc != -EINTR && rc != -EAGAIN)
		shard_enter_error(s, rc);
}

/* ---- the stop sequence ---------------------------------------------------------- */

/*
 * Phase 8 (see shard.h for steps a-d).  Returns true once this shard has
 * passed step (d)'s handshake and may tear down.
 *
 * Why step (c)'s checks are enough for "no more pushes to my inbox":
 *  - shards: each bumps stop_seen (release) after its last push; our
 *    acquire load reading n makes every such push visible to the size check;
 *  - other threads: a caller either sees stop and pushes nothing, or we see
 *    it in calls_active (seq_cst, see shard_call) and wait; its decrement
 *    (release) comes after its push, which our load then sees.
 * So once stop_seen == n and calls_active == 0, the inbox only drains.
 */
static bool shard_stop_step(struct shard *s)
{
	struct shard_group *g = s->group;
	struct io_uring_sqe *sqe;

	if (s->state == SHARD_RUNNING) {
		/* seq_cst: in the single order with shard_call's (see there) */
		if (!atomic_load_explicit(&g->stop, memory_order_seq_cst))
			return false;
		if (g->cfg.on_stop)
			g->cfg.on_stop(s, g->cfg.user);
		s->stopping = true;
		s->state = SHARD_DRAINING;
		shard_wakes_flush(s); /* on_stop's calls */
		/* release: every push we made happens-before the load that reads n */
		atomic_fetch_add_explicit(&g->stop_seen, 1, memory_order_release);
	}
	/* cancel whatever is in flight, again while new ops appear */
	if (!s->cancel_all_inflight && s->inflight > 0) {
		sqe = shard_sqe(s);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			shard_submit_internal(s, sqe, SHARD_UD(SHARD_UD_CANCEL_ALL, 0));
			s->cancel_all_inflight = true;
		}
	}
	/* acquire: pairs with each shard's release increment (their pushes) */
	if (atomic_load_explicit(&g->stop_seen, memory_order_acquire) != g->n)
		return false;
	/* seq_cst: see shard_call; a 0 read also acquires the callers' decrements */
	if (atomic_load_explicit(&g->calls_active, memory_order_seq_cst) != 0)
		return false;
	if (ring_mpsc_size(s->inbox) != 0 || s->inflight != 0 || s->parked || s->wake_n ||
		s->defer._next != &s->defer)
		return false;
	shard_sync_stop_arrive(s);
	return true;
}

void shard_loop(struct shard *s)
{
	for (;;) {
		s->st.turns++;
		shard_wait(s);
		shard_reap(s);
		shard_inbox_run(s);
		if (shard_timer_first(s))
			shard_timers_run(s, shard_now_ns());
		shard_bufs_turn(s);
		shard_defer_run(s);
		shard_wakes_flush(s);
		if (shard_stop_step(s))
			return;
	}
}

void shard_read_stats(const struct shard *s, struct shard_stats *st)
{
	*st = s->st;
	st->bufs_posted = s->bufs.br ? s->bufs.entries - s->bufs.nfree : 0;
	st->inbox_depth = (uint32_t)ring_mpsc_size(s->inbox);
	st->ring_flags = s->ring.flags;
	st->msg_ring = s->msg_ring;
}
