/*
 * perf/bench/ring_kern.c - ring benchmark kernels and the mutex + condvar
 * baseline queue (see ring_kern.h).
 *
 * All three queues are driven through the same small table of function
 * pointers, so each pays the same indirect call per operation and the
 * difference measured is the queue itself.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "perf/bench/ring_kern.h"
#include "ring/mpsc.h"
#include "ring/spsc.h"

#define RING_KERN_BATCH 32u /* consumer pops up to this many per call in transfers */

/* ---- baseline: bounded ring under one mutex, two condition variables ---- */

/* owner: none, shared; every field under <lock>. */
struct mutexq {
	pthread_mutex_t lock;
	pthread_cond_t not_empty; /* signalled after a push */
	pthread_cond_t not_full;  /* broadcast after a pop */
	size_t head, tail, mask;  /* free-running indices, capacity - 1 */
	struct ring_desc *slots;
};

static struct mutexq *mutexq_new(size_t capacity)
{
	struct mutexq *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->slots = calloc(capacity, sizeof(m->slots[0]));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	m->mask = capacity - 1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->not_empty, NULL);
	pthread_cond_init(&m->not_full, NULL);
	return m;
}

static void mutexq_free(struct mutexq *m)
{
	pthread_cond_destroy(&m->not_full);
	pthread_cond_destroy(&m->not_empty);
	pthread_mutex_destroy(&m->lock);
	free(m->slots);
	free(m);
}

/* Append <d>; -EAGAIN when full (or, with <wait>, block until there is room). */
static int mutexq_push_mode(struct mutexq *m, struct ring_desc d, int wait)
{
	pthread_mutex_lock(&m->lock);
	while (m->tail - m->head > m->mask) {
		if (!wait) {
			pthread_mutex_unlock(&m->lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&m->not_full, &m->lock);
	}
	m->slots[m->tail++ & m->mask] = d;
	pthread_cond_signal(&m->not_empty);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* Take up to <max>; 0 when empty (or, with <wait>, block until non-empty). */
static size_t mutexq_pop_mode(struct mutexq *m, struct ring_desc *out, size_t max, int wait)
{
	size_t n = 0;

	pthread_mutex_lock(&m->lock);
	while (wait && m->tail == m->head)
		pthread_cond_wait(&m->not_empty, &m->lock);
	while (n < max && m->head != m->tail)
		out[n++] = m->slots[m->head++ & m->mask];
	if (n > 0)
		pthread_cond_broadcast(&m->not_full);
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* ---- one interface over the three queues ---- */

#define RING_KERN_SPINS 64u /* busy retries before a lock-free side yields the CPU */

/* One busy-wait step: tell the CPU we are spinning (saves power, frees the sibling thread). */
static void ring_kern_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* Back off after the <tries>-th failed attempt: spin first, then yield. */
static void ring_kern_backoff(unsigned int tries)
{
	if (tries < RING_KERN_SPINS)
		ring_kern_relax();
	else
		sched_yield();
}

struct ring_kern_ops {
	int (*push)(void *q, struct ring_desc d);			/* 0 or -EAGAIN */
	int (*pop)(void *q, struct ring_desc *out);			/* 0 or -EAGAIN */
	void (*push_wait)(void *q, struct ring_desc d);			/* until pushed */
	size_t (*pop_wait)(void *q, struct ring_desc *out, size_t max); /* until >= 1 */
};

static int mpsc_push(void *q, struct ring_desc d)
{
	return ring_mpsc_push(q, d);
}

static int mpsc_pop(void *q, struct ring_desc *out)
{
	return ring_mpsc_pop(q, out);
}

static void mpsc_push_wait(void *q, struct ring_desc d)
{
	unsigned int tries = 0;

	while (ring_mpsc_push(q, d) != 0)
		ring_kern_backoff(tries++);
}

static size_t mpsc_pop_wait(void *q, struct ring_desc *out, size_t max)
{
	unsigned int tries = 0;
	size_t n;

	while ((n = ring_mpsc_pop_batch(q, out, max)) == 0)
		ring_kern_backoff(tries++);
	return n;
}

static int spsc_push(void *q, struct ring_desc d)
{
	return ring_spsc_push(q, d);
}

static int spsc_pop(void *q, struct ring_desc *out)
{
	return ring_spsc_pop(q, out);
}

static void spsc_push_wait(void *q, struct ring_desc d)
{
	unsigned int tries = 0;

	while (ring_spsc_push(q, d) != 0)
		ring_kern_backoff(tries++);
}

static size_t spsc_pop_wait(void *q, struct ring_desc *out, size_t max)
{
	unsigned int tries = 0;
	size_t n;

	while ((n = ring_spsc_pop_batch(q, out, max)) == 0)
		ring_kern_backoff(tries++);
	return n;
}

static int mutexq_push(void *q, struct ring_desc d)
{
	return mutexq_push_mode(q, d, 0);
}

static int mutexq_pop(void *q, struct ring_desc *out)
{
	return mutexq_pop_mode(q, out, 1, 0) == 1 ? 0 : -EAGAIN;
}

static void mutexq_push_wait(void *q, struct ring_desc d)
{
	mutexq_push_mode(q, d, 1);
}

static size_t mutexq_pop_wait(void *q, struct ring_desc *out, size_t max)
{
	return mutexq_pop_mode(q, out, max, 1);
}

static const struct ring_kern_ops ring_kern_ops[] = {
	[RING_KERN_MPSC] = {mpsc_push, mpsc_pop, mpsc_push_wait, mpsc_pop_wait},
	[RING_KERN_SPSC] = {spsc_push, spsc_pop, spsc_push_wait, spsc_pop_wait},
	[RING_KERN_MUTEX] = {mutexq_push, mutexq_pop, mutexq_push_wait, mutexq_pop_wait},
};

struct ring_kern_q {
	enum ring_kern_kind kind;
	const struct ring_kern_ops *ops;
	void *q;
	uint64_t next_in, next_out; /* pushpop: values pushed and expected, in order */
};

struct ring_kern_q *ring_kern_q_new(enum ring_kern_kind kind, size_t capacity, size_t prefill)
{
	struct ring_kern_q *k = calloc(1, sizeof(*k));
	int err = 0;

	if (!k)
		return NULL;
	k->kind = kind;
	k->ops = &ring_kern_ops[kind];
	switch (kind) {
	case RING_KERN_MPSC:
		k->q = ring_mpsc_new(capacity, &err);
		break;
	case RING_KERN_SPSC:
		k->q = ring_spsc_new(capacity, &err);
		break;
	case RING_KERN_MUTEX:
		k->q = mutexq_new(capacity);
		break;
	}
	if (!k->q)
		goto err_free;
	for (; k->next_in < prefill; k->next_in++) {
		if (k->ops->push(k->q, (struct ring_desc){k, k->next_in}) != 0)
			goto err_free_q;
	}
	return k;

err_free_q:
	ring_kern_q_free(k);
	return NULL;
err_free:
	free(k);
	return NULL;
}

void ring_kern_q_free(struct ring_kern_q *k)
{
	switch (k->kind) {
	case RING_KERN_MPSC:
		ring_mpsc_free(k->q);
		break;
	case RING_KERN_SPSC:
		ring_spsc_free(k->q);
		break;
	case RING_KERN_MUTEX:
		mutexq_free(k->q);
		break;
	}
	free(k);
}

int ring_kern_pushpop(struct ring_kern_q *k, size_t n)
{
	const struct ring_kern_ops *ops = k->ops;
	struct ring_desc d;
	size_t i;

	for (i = 0; i < n; i++) {
		if (ops->push(k->q, (struct ring_desc){k, k->next_in++}) != 0)
			return -1;
		if (ops->pop(k->q, &d) != 0 || d.aux != k->next_out++)
			return -1;
	}
	return 0;
}

struct ring_kern_producer {
	struct ring_kern_q *k;
	unsigned int id;
	size_t items;
};

static void *ring_kern_produce(void *arg)
{
	struct ring_kern_producer *p = arg;
	void (*push_wait)(void *, struct ring_desc) = p->k->ops->push_wait;
	void *q = p->k->q;
	size_t i;

	for (i = 0; i < p->items; i++)
		push_wait(q, (struct ring_desc){p, (uint64_t)p->id << 48 | i});
	return NULL;
}

#define RING_KERN_MAX_PRODUCERS 8u

int ring_kern_transfer(struct ring_kern_q *k, unsigned int producers, size_t items)
{
	struct ring_kern_producer prod[RING_KERN_MAX_PRODUCERS];
	pthread_t th[RING_KERN_MAX_PRODUCERS];
	uint64_t next[RING_KERN_MAX_PRODUCERS] = {0}, id;
	struct ring_desc out[RING_KERN_BATCH];
	size_t got = 0, total = producers * items, n, i;
	unsigned int started;
	int ret = 0;

	if (producers == 0 || producers > RING_KERN_MAX_PRODUCERS ||
		(k->kind == RING_KERN_SPSC && producers != 1))
		return -1;
	for (started = 0; started < producers; started++) {
		prod[started] = (struct ring_kern_producer){k, started, items};
		if (pthread_create(&th[started], NULL, ring_kern_produce, &prod[started]) != 0) {
			/* the consumer cannot wait for items that will never come */
			total = started * items;
			ret = -1;
			break;
		}
	}
	while (got < total) {
		n = k->ops->pop_wait(k->q, out, RING_KERN_BATCH);
		for (i = 0; i < n; i++) {
			id = out[i].aux >> 48;
			if (id >= started || out[i].ptr != &prod[id] ||
				(out[i].aux & ((1ull << 48) - 1)) != next[id])
				ret = -1;
			else
				next[id]++;
		}
		got += n;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return ret;
}
