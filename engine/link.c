/*
 * engine/link.c - links between an endpoint (client or published-port
 * connection) and a console, and the per-turn batches that carry frames
 * between their shards (see internal.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

struct link *link_new(enum link_kind kind, const struct link_ops *ops, struct shard *s, void *ep,
	struct sandbox *sb)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	atomic_init(&l->refs, 1);
	l->kind = kind;
	l->ops = ops;
	l->shard = s;
	l->ep = ep;
	l->sb = sb;
	l->slot = -1;
	sandbox_get(sb);
	return l;
}

void link_get(struct link *l)
{
	atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void link_put(struct link *l)
{
	if (!l || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
		return;
	segq_clear(&l->out_c);
	segq_clear(&l->out_e);
	free(l->ev);
	free(l->evc);
	free(l->ready_copy);
	sandbox_put(l->sb);
	free(l);
}

void xfer_drop(struct xfer *x)
{
	segq_clear(&x->q);
	free(x->ev);
	link_put(x->l);
	free(x);
}

static void xfer_run(struct shard *s, void *arg)
{
	struct xfer *x = arg;

	stat_add(&eshard_of(s)->st.calls_run, 1);
	if (x->to_console)
		console_take_xfer(s, x);
	else
		x->l->ops->deliver(s, x->l, x);
}

/* ---- the outbox: every cross-shard message of a shard, in order ---------- */

struct outmsg {
	struct outmsg *next;
	struct shard *to;
	shard_call_fn fn;
	void (*drop)(void *arg); /* when the group is stopping */
	void *arg;
};

static void outbox_drain(struct eshard *es)
{
	struct outmsg *m;

	while ((m = es->out_head)) {
		int rc = shard_call(m->to, m->fn, m->arg);

		if (rc == -EAGAIN) { /* the target's inbox is full: keep the order, retry next turn */
			shard_defer(es->s, &es->flush);
			return;
		}
		if (rc == 0)
			stat_add(&es->st.calls_sent, 1);
		else
			m->drop(m->arg);
		es->out_head = m->next;
		if (!es->out_head)
			es->out_tail = NULL;
		free(m);
	}
}

int eshard_send(struct eshard *es, struct shard *to, shard_call_fn fn, void (*drop)(void *arg),
	void *arg)
{
	struct outmsg *m = malloc(sizeof(*m));

	if (!m)
		return -ENOMEM;
	*m = (struct outmsg){.to = to, .fn = fn, .drop = drop, .arg = arg};
	if (es->out_tail)
		es->out_tail->next = m;
	else
		es->out_head = m;
	es->out_tail = m;
	shard_defer(es->s, &es->flush);
	return 0;
}

void link_account(struct shard *s, struct seg *sg, uint32_t n, bool to_guest)
{
	struct link *l = sg->tag;

	if (to_guest) {
		uint64_t left = atomic_fetch_sub(&l->to_guest, n) - n;

		if (left < ENGINE_QUEUE_LOW && atomic_load(&l->ep_paused) &&
			atomic_exchange(&l->ep_paused, false))
			link_call_endpoint(s, l, l->ops->resume);
	} else {
		uint64_t left = atomic_fetch_sub(&l->to_ep, n) - n;

		if (left < ENGINE_QUEUE_LOW && atomic_load(&l->c_paused) &&
			atomic_exchange(&l->c_paused, false))
			link_call_console(s, l, console_ep_drained);
	}
	if (n == sg->len) {
		sg->tag = NULL;
		link_put(l);
	}
}

bool link_should_pause(struct shard *s, struct link *l)
{
	if (atomic_load(&l->to_guest) <= ENGINE_QUEUE_HIGH)
		return false;
	/* Dekker with link_account: either it sees the flag, or we see its drain. */
	atomic_store(&l->ep_paused, true);
	if (atomic_load(&l->to_guest) <= ENGINE_QUEUE_LOW && atomic_exchange(&l->ep_paused, false))
		return false;
	stat_add(&eshard_of(s)->st.stalls, 1);
	return true;
}

static void xfer_drop_arg(void *arg)
{
	xfer_drop(arg);
}

/* Move the batch of <l> in one direction into the outbox. */
static void link_flush_one(struct eshard *es, struct link *l, bool to_console)
{
	struct segq *q = to_console ? &l->out_e : &l->out_c;
	struct xfer *x;

	if (!q->n && !(to_console ? l->nev : l->nevc))
		return;
	x = calloc(1, sizeof(*x));
	if (!x)
		goto fail;
	link_get(l);
	x->l = l;
	x->to_console = to_console;
	x->q = *q;
	segq_init(q);
	if (to_console) {
		x->ev = l->ev;
		x->nev = l->nev;
		l->ev = NULL;
		l->nev = l->capev = 0;
	} else {
		x->ev = l->evc;
		x->nev = l->nevc;
		l->evc = NULL;
		l->nevc = l->capevc = 0;
	}
	if (eshard_send(es, to_console ? l->sb->home : l->shard, xfer_run, xfer_drop_arg, x) < 0)
		xfer_drop(x);
	return;
fail:
	stat_add(&es->st.drops, 1);
	segq_clear(q);
}

void link_flush(struct shard *s, struct link *l, bool to_console)
{
	struct eshard *es = eshard_of(s);

	if (to_console ? !l->flush_e : !l->flush_c)
		return;
	/* Left on the flush list; an empty batch is skipped there. */
	link_flush_one(es, l, to_console);
}

static void link_flush_all(struct shard *s, struct shard_defer *d)
{
	struct eshard *es = eshard_of(s);
	struct link *l, *next;

	(void)d;
	for (l = es->flush_c, es->flush_c = NULL; l; l = next) {
		next = l->flush_next_c;
		link_flush_one(es, l, false);
		l->flush_c = false;
		link_put(l);
	}
	for (l = es->flush_e, es->flush_e = NULL; l; l = next) {
		next = l->flush_next_e;
		link_flush_one(es, l, true);
		l->flush_e = false;
		link_put(l);
	}
	outbox_drain(es);
}

void eshard_init_flush(struct eshard *es)
{
	shard_defer_init(&es->flush, link_flush_all);
}

/* Put <l> on its shard's flush list for one direction (a reference while listed). */
static void link_mark(struct shard *s, struct link *l, bool to_console)
{
	struct eshard *es = eshard_of(s);

	if (to_console ? l->flush_e : l->flush_c)
		return;
	link_get(l);
	if (to_console) {
		l->flush_e = true;
		l->flush_next_e = es->flush_e;
		es->flush_e = l;
	} else {
		l->flush_c = true;
		l->flush_next_c = es->flush_c;
		es->flush_c = l;
	}
	shard_defer(s, &es->flush);
}

void link_send_to_console(struct shard *s, struct link *l, struct segq *frames)
{
	atomic_fetch_add(&l->to_guest, frames->bytes);
	if (segq_splice(&l->out_e, frames) < 0) {
		atomic_fetch_sub(&l->to_guest, frames->bytes);
		stat_add(&eshard_of(s)->st.drops, 1);
		segq_clear(frames);
		return;
	}
	link_mark(s, l, true);
}

void link_send_to_endpoint(struct shard *s, struct link *l, struct segq *frames)
{
	atomic_fetch_add(&l->to_ep, frames->bytes);
	if (segq_splice(&l->out_c, frames) < 0) {
		atomic_fetch_sub(&l->to_ep, frames->bytes);
		stat_add(&eshard_of(s)->st.drops, 1);
		segq_clear(frames);
		return;
	}
	link_mark(s, l, false);
}

int link_send_frame_to_console(struct shard *s, struct link *l, const void *p, size_t n)
{
	struct seg sg = seg_heap_copy(p, n);
	struct segq q;

	if (!sg.p)
		return -ENOMEM;
	segq_init(&q);
	if (segq_push(&q, &sg) < 0) {
		seg_release(&sg);
		return -ENOMEM;
	}
	link_send_to_console(s, l, &q);
	return 0;
}

static int xev_push(struct xev **v, uint32_t *n, uint32_t *cap, uint32_t id, enum xev_kind kind)
{
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 16;
		struct xev *nv = realloc(*v, sizeof(*nv) * c);

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = (struct xev){.id = id, .kind = (uint8_t)kind};
	return 0;
}

int link_note_event(struct link *l, uint32_t id, enum xev_kind kind)
{
	return xev_push(&l->ev, &l->nev, &l->capev, id, kind);
}

void link_note_frame(struct link *l, uint32_t size, bool data)
{
	if (atomic_load_explicit(&l->sb->window, memory_order_relaxed))
		link_note_event(l, size, data ? XEV_FRAME_DATA : XEV_FRAME_CONTROL);
}

int link_note_event_c(struct link *l, uint32_t id, enum xev_kind kind)
{
	return xev_push(&l->evc, &l->nevc, &l->capevc, id, kind);
}

struct link_call {
	struct link *l;
	void (*fn)(struct shard *s, struct link *l);
};

static void link_call_run(struct shard *s, void *arg)
{
	struct link_call *c = arg;

	stat_add(&eshard_of(s)->st.calls_run, 1);
	c->fn(s, c->l);
	link_put(c->l);
	free(c);
}

static void link_call_drop(void *arg)
{
	struct link_call *c = arg;

	link_put(c->l);
	free(c);
}

/* Queue fn(l) on <to> behind every batch <l> already has for that side. */
static int link_call(struct shard *s, struct link *l, struct shard *to, bool to_console,
	void (*fn)(struct shard *s, struct link *l))
{
	struct link_call *c = malloc(sizeof(*c));

	if (!c)
		return -ENOMEM;
	link_flush(s, l, to_console);
	link_get(l);
	c->l = l;
	c->fn = fn;
	if (eshard_send(eshard_of(s), to, link_call_run, link_call_drop, c) < 0) {
		link_call_drop(c);
		return -ENOMEM;
	}
	return 0;
}

int link_call_endpoint(struct shard *s, struct link *l, void (*fn)(struct shard *s, struct link *l))
{
	return link_call(s, l, l->shard, false, fn);
}

int link_call_console(struct shard *s, struct link *l, void (*fn)(struct shard *s, struct link *l))
{
	return link_call(s, l, l->sb->home, true, fn);
}
