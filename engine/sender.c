/*
 * engine/sender.c - see sender.h.
 */
#include "engine/sender.h"

#include <errno.h>
#include <stdlib.h>

#include "engine/internal.h"

void sender_init(struct sender *w, struct shard *s, int fd, bool to_guest, shard_cqe_fn done,
	shard_defer_fn retry)
{
	segq_init(&w->q);
	shard_op_init(&w->op, done);
	shard_defer_init(&w->retry, retry);
	w->s = s;
	w->fd = fd;
	w->writing = false;
	w->to_guest = to_guest;
}

bool sender_kick(struct sender *w)
{
	struct io_uring_sqe *sqe;

	if (w->writing)
		return true;
	if (!w->q.n)
		return false;
	sqe = shard_sqe(w->s);
	if (!sqe) {
		shard_defer(w->s, &w->retry);
		return false;
	}
	w->msg = (struct msghdr){.msg_iov = w->iov};
	w->msg.msg_iovlen = segq_iov(&w->q, w->iov, SENDER_IOV_MAX);
	io_uring_prep_sendmsg(sqe, w->fd, &w->msg, MSG_NOSIGNAL);
	shard_submit(w->s, sqe, &w->op);
	w->writing = true;
	return true;
}

/* segq_consume callback: the written share of a tagged segment. */
static void sender_account(void *ctx, struct seg *sg, uint32_t n)
{
	struct sender *w = ctx;

	if (sg->tag)
		link_account(w->s, sg, n, w->to_guest);
}

int sender_done(struct sender *w, const struct io_uring_cqe *cqe)
{
	w->writing = false;
	if (cqe->res > 0)
		segq_consume(&w->q, (size_t)cqe->res, sender_account, w);
	return cqe->res;
}

int sender_push_heap(struct sender *w, void *p, size_t n)
{
	struct seg sg = {.heap = p, .p = p, .len = (uint32_t)n};

	if (segq_push(&w->q, &sg) < 0) {
		free(p);
		return -ENOMEM;
	}
	shard_defer(w->s, &w->retry);
	return 0;
}

int sender_push_copy(struct sender *w, const void *p, size_t n)
{
	struct seg sg = seg_heap_copy(p, n);

	if (!sg.p)
		return -ENOMEM;
	return sender_push_heap(w, sg.heap, n);
}

void sender_take_xfer(struct sender *w, struct xfer *x)
{
	for (uint32_t i = 0; i < x->q.n; i++) {
		struct seg *sg = &x->q.v[(x->q.head + i) & (x->q.cap - 1)];

		link_get(x->l);
		sg->tag = x->l;
	}
	if (segq_splice(&w->q, &x->q) < 0) { /* out of memory: the frames are lost, accounted */
		segq_consume(&x->q, x->q.bytes, sender_account, w);
		stat_add(&eshard_of(w->s)->st.drops, 1);
	}
}

void sender_cancel(struct sender *w)
{
	if (w->writing)
		shard_cancel(w->s, &w->op);
}

void sender_destroy(struct sender *w)
{
	shard_defer_cancel(w->s, &w->retry);
	segq_consume(&w->q, w->q.bytes, sender_account, w);
	segq_clear(&w->q);
}
