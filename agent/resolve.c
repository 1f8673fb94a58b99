/*
 * agent/resolve.c - the name resolver thread and its two queues (see resolve.h).
 *
 * Lookup records are the AGENT_RESOLVE_MAX slots of one table allocated
 * with the resolver; a free slot is the credit for one lookup in flight,
 * so the rings (the same capacity) can never be full when pushed.  A slot
 * is handed between the threads only by the rings: a push (release)
 * publishes what its holder wrote, the matching pop (acquire) sees it.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/internal.h"
#include "agent/resolve.h"
#include "ring/mpsc.h"
#include "ring/wake.h"

#define RESOLVE_POP_BATCH 16u

/*
 * One lookup.  owner: whoever holds its descriptor (the loop, or the thread
 * between its pop of req and its push to done), with the exceptions noted.
 */
struct agent_lookup {
	/* loop only, also while the thread holds the slot (the thread never reads these) */
	struct agent_tcp *t;            /* stream waiting, holding a reference; NULL: slot free */
	uint64_t deadline_ms;
	struct agent_lookup *free_next;
	/* request: the loop writes it before pushing to req */
	char host[AGENT_RESOLVE_HOST_MAX];
	char port[8];
	/* answer: the thread writes it before pushing to done */
	struct addrinfo *list;          /* getaddrinfo's list, or NULL */
	int gai_err;                    /* getaddrinfo's code, 0 on success */
	int sys_err;                    /* errno when gai_err is EAI_SYSTEM */
	/* shared */
	atomic_bool cancelled;          /* set by the loop when the stream ends; read by the thread */
};

/*
 * owner: the agent loop, except the fields marked "thread" and the shared
 * ones.  The rings and wakes are made for exactly this producer/consumer use.
 */
struct agent_resolver {
	/* loop only */
	struct agent_op op;             /* AGENT_OP_RESOLVED: POLL_ADD on done_wake's eventfd */
	bool polling;                   /* that poll is in flight */
	bool poll_broken;               /* a poll failed: answers are taken on the tick only */
	unsigned inflight;              /* slots out of the free list */
	struct agent_lookup *free;
	pthread_t thread;
	/* shared */
	struct ring_mpsc *req;          /* loop pushes, thread pops */
	struct ring_mpsc *done;         /* thread pushes, loop pops */
	struct ring_wake req_wake;      /* the thread sleeps on it */
	struct ring_wake done_wake;     /* the loop polls its eventfd */
	atomic_bool stop;               /* set once by agent_resolve_destroy */
	struct agent_lookup slots[AGENT_RESOLVE_MAX];
};

/* ---- the thread ----------------------------------------------------------- */

static void lookup_run(struct agent_lookup *lk)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV,
	};
	int rc;

	lk->list = NULL;
	lk->gai_err = 0;
	lk->sys_err = 0;
	/*
	 * relaxed: a hint that publishes nothing; a stale "false" costs one
	 * lookup whose answer the loop drops anyway.  Skipped: empty answer.
	 */
	if (atomic_load_explicit(&lk->cancelled, memory_order_relaxed))
		return;
	rc = getaddrinfo(lk->host, lk->port, &hints, &lk->list);
	if (rc != 0) {
		lk->gai_err = rc;
		lk->sys_err = rc == EAI_SYSTEM ? errno : 0;
		lk->list = NULL;
	}
}

/* The resolver thread: take a request, look it up, answer, sleep when idle. */
static void *resolver_main(void *arg)
{
	struct agent_resolver *r = arg;
	struct ring_desc d;

	for (;;) {
		/* acquire: pairs with the release store in agent_resolve_destroy */
		if (atomic_load_explicit(&r->stop, memory_order_acquire))
			break;
		if (ring_mpsc_pop(r->req, &d) == 0) {
			lookup_run(d.ptr);
			/* Cannot be full: a slot in flight is a free place in done (file comment). */
			(void)ring_mpsc_push(r->done, d);
			/* A failed write(2) loses no answer: the loop also drains done every tick. */
			(void)ring_wake_notify(&r->done_wake);
			continue;
		}
		/* Idle: arm, re-check the queue and the stop flag, then sleep (ring/wake.h). */
		ring_wake_arm(&r->req_wake);
		/* acquire: as above; destroy signals the eventfd after its store, so no wake is lost */
		if (ring_mpsc_size(r->req) == 0 && !atomic_load_explicit(&r->stop, memory_order_acquire))
			ring_wake_wait(&r->req_wake, -1);
		ring_wake_disarm(&r->req_wake);
	}
	return NULL;
}

/* ---- the loop's side ------------------------------------------------------- */

static void poll_arm(struct agent *a, struct agent_resolver *r)
{
	struct io_uring_sqe *sqe;

	if (r->polling || r->poll_broken)
		return;
	sqe = agent_sqe(a);
	io_uring_prep_poll_add(sqe, ring_wake_fd(&r->done_wake), POLLIN);
	io_uring_sqe_set_data(sqe, &r->op);
	r->polling = true;
}

/* Hand one answer to its stream (which drops it if the stream has ended). */
static void answer(struct agent *a, struct agent_resolver *r, struct agent_lookup *lk)
{
	struct agent_tcp *t = lk->t;
	struct addrinfo *list = lk->list;
	int gai_err = lk->gai_err, sys_err = lk->sys_err;

	lk->t = NULL;
	lk->list = NULL;
	lk->free_next = r->free;
	r->free = lk;
	r->inflight--;
	t->lookup = NULL;
	agent_tcp_resolved(a, t, list, gai_err, sys_err); /* takes <list> */
	agent_sess_put(a, &t->s); /* the lookup's reference */
}

/*
 * Take every answer in done.  Bounded: only lookups in flight come back
 * (at most AGENT_RESOLVE_MAX) and answering one starts no lookup.
 */
static void drain(struct agent *a, struct agent_resolver *r)
{
	struct ring_desc d[RESOLVE_POP_BATCH];
	size_t n;

	while ((n = ring_mpsc_pop_batch(r->done, d, RESOLVE_POP_BATCH)) > 0)
		for (size_t i = 0; i < n; i++)
			answer(a, r, d[i].ptr);
}

static void resolver_free(struct agent_resolver *r)
{
	ring_mpsc_free(r->req);
	ring_mpsc_free(r->done);
	if (r->req_wake.fd >= 0)
		ring_wake_destroy(&r->req_wake);
	if (r->done_wake.fd >= 0)
		ring_wake_destroy(&r->done_wake);
	free(r);
}

/* Allocate the resolver and start its thread.  Returns 0 or a negative errno. */
static int resolver_new(struct agent *a)
{
	struct agent_resolver *r = calloc(1, sizeof(*r));
	static const int sync_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
	sigset_t block, old;
	int err = 0, rc;

	if (!r)
		return -ENOMEM;
	r->op.kind = AGENT_OP_RESOLVED;
	r->req_wake.fd = r->done_wake.fd = -1;
	atomic_init(&r->stop, false); /* not shared yet: pthread_create orders it */
	for (unsigned i = AGENT_RESOLVE_MAX; i-- > 0;) {
		atomic_init(&r->slots[i].cancelled, false); /* not shared yet, as above */
		r->slots[i].free_next = r->free;
		r->free = &r->slots[i];
	}
	r->req = ring_mpsc_new(AGENT_RESOLVE_MAX, &err);
	if (r->req)
		r->done = ring_mpsc_new(AGENT_RESOLVE_MAX, &err);
	if (!r->done) {
		rc = err;
		goto err_free;
	}
	rc = ring_wake_init(&r->req_wake);
	if (rc == 0)
		rc = ring_wake_init(&r->done_wake);
	if (rc < 0)
		goto err_free;
	/*
	 * The thread takes no asynchronous signal: SIGCHLD, SIGTERM and SIGINT
	 * must stay pending for the loop's signalfd, never be consumed here.
	 */
	sigfillset(&block);
	for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]); i++)
		sigdelset(&block, sync_signals[i]);
	pthread_sigmask(SIG_SETMASK, &block, &old);
	rc = -pthread_create(&r->thread, NULL, resolver_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto err_free;
	a->resolver = r;
	/* The loop counts as asleep on done while its poll is in flight; nothing is queued yet. */
	ring_wake_arm(&r->done_wake);
	poll_arm(a, r);
	agent_log(a, 3, "name resolver thread started");
	return 0;

err_free:
	resolver_free(r);
	return rc;
}

int agent_resolve_start(struct agent *a, struct agent_tcp *t, const char *host, uint16_t port,
	uint64_t deadline_ms)
{
	struct agent_resolver *r;
	struct agent_lookup *lk;
	size_t len = strlen(host);
	int rc;

	if (len >= AGENT_RESOLVE_HOST_MAX)
		return -ENAMETOOLONG;
	if (!a->resolver) {
		rc = resolver_new(a);
		if (rc < 0)
			return rc;
	}
	r = a->resolver;
	lk = r->free;
	if (!lk)
		return -ENOBUFS;
	memcpy(lk->host, host, len + 1);
	snprintf(lk->port, sizeof(lk->port), "%u", port);
	/* relaxed: the push below (release) publishes it with the request */
	atomic_store_explicit(&lk->cancelled, false, memory_order_relaxed);
	if (ring_mpsc_push(r->req, (struct ring_desc){.ptr = lk}) < 0)
		return -ENOBUFS; /* not reached: a free slot is a free place in req */
	r->free = lk->free_next;
	r->inflight++;
	lk->t = t;
	lk->deadline_ms = deadline_ms;
	t->lookup = lk;
	t->s.refs++; /* held by the lookup until its answer is taken */
	rc = ring_wake_notify(&r->req_wake);
	if (rc < 0)
		agent_log(a, 0, "name resolver: wake: %s (the lookup waits for the next one)",
			strerror(-rc));
	return 0;
}

void agent_resolve_cancel(struct agent_lookup *lk)
{
	/* relaxed: a hint for the thread (lookup_run); the answer is dropped by the loop anyway */
	atomic_store_explicit(&lk->cancelled, true, memory_order_relaxed);
}

void agent_resolve_complete(struct agent *a, int res)
{
	struct agent_resolver *r = a->resolver;

	r->polling = false;
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		agent_log(a, 0, "name resolver: poll: %s; answers are taken every tick",
			strerror(-res));
		r->poll_broken = true;
	}
	ring_wake_disarm(&r->done_wake);
	ring_wake_drain(&r->done_wake);
	drain(a, r);
	if (r->poll_broken)
		return; /* stays disarmed: the thread stops signalling, the tick drains */
	/* Arm, then re-check: an answer pushed before the arm signalled nobody (ring/wake.h). */
	ring_wake_arm(&r->done_wake);
	drain(a, r);
	poll_arm(a, r);
}

void agent_resolve_tick(struct agent *a, uint64_t now_ms)
{
	struct agent_resolver *r = a->resolver;

	if (!r || r->inflight == 0)
		return;
	drain(a, r);
	for (unsigned i = 0; i < AGENT_RESOLVE_MAX && r->inflight > 0; i++) {
		struct agent_tcp *t = r->slots[i].t;

		if (t && !t->s.done && now_ms >= r->slots[i].deadline_ms)
			agent_tcp_lookup_expired(a, t);
	}
}

void agent_resolve_destroy(struct agent *a)
{
	struct agent_resolver *r = a->resolver;
	struct ring_desc d;
	int rc;

	if (!r)
		return;
	/* release: pairs with the thread's acquire loads; the signal below wakes it */
	atomic_store_explicit(&r->stop, true, memory_order_release);
	rc = ring_wake_signal(&r->req_wake);
	if (rc < 0)
		agent_log(a, 0, "name resolver: wake for stop: %s", strerror(-rc));
	rc = pthread_join(r->thread, NULL);
	if (rc != 0)
		agent_log(a, 0, "name resolver: join: %s", strerror(rc));
	/* Answers nobody took: free their lists; their streams are not touched. */
	while (ring_mpsc_pop(r->done, &d) == 0) {
		struct agent_lookup *lk = d.ptr;

		if (lk->list)
			freeaddrinfo(lk->list);
	}
	resolver_free(r);
	a->resolver = NULL;
}
