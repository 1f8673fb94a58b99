/*
 * engine/sender.h - a queue of segments written to one socket, one
 * vectored sendmsg in flight: the write side of a console, a client
 * connection and a published-port connection.
 *
 * Segments tagged with a link (sender_take_xfer) hold a link reference
 * each; as their bytes are written the link's queued-byte count for that
 * direction goes down, and the far side is told to read again once it is
 * below ENGINE_QUEUE_LOW (link_account).
 *
 *	sender_init(&w, s, fd, to_guest, my_done, my_retry);
 *	sender_push_heap(&w, frame, n);  ... sender_kick(&w);
 *	my_done(s, op, cqe):  res = sender_done(&w, cqe);  (< 0: the socket failed)
 *	my_retry(s, d):       sender_kick(&w);              (no SQE was free)
 *
 * owner: the shard it was initialised on.
 */
#ifndef SW_ENGINE_SENDER_H
#define SW_ENGINE_SENDER_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "engine/segq.h"
#include "shard/shard.h"

#define SENDER_IOV_MAX 256u /* iovecs per sendmsg */

struct xfer;

struct sender {
	struct segq q;
	struct shard_op op;	 /* the sendmsg; its callback is the owner's */
	struct shard_defer retry; /* the owner's: calls sender_kick when no SQE was free */
	struct shard *s;
	struct msghdr msg;
	struct iovec iov[SENDER_IOV_MAX];
	int fd;
	bool writing;
	bool to_guest; /* tags count against link->to_guest (a console) or link->to_ep */
};

void sender_init(struct sender *w, struct shard *s, int fd, bool to_guest, shard_cqe_fn done,
	shard_defer_fn retry);

/* Send what is queued if no write is in flight.  True when a write is in flight after. */
bool sender_kick(struct sender *w);

/*
 * The owner's completion calls this first: the write is over; its bytes
 * leave the queue (and are accounted).  Returns cqe->res.
 */
int sender_done(struct sender *w, const struct io_uring_cqe *cqe);

/* Queue a heap copy of <p>/<n> (a frame the engine wrote); sent at the end of the turn. */
int sender_push_copy(struct sender *w, const void *p, size_t n);

/* Queue heap block <p> of <n> bytes, which the sender now owns. */
int sender_push_heap(struct sender *w, void *p, size_t n);

/* Queue the frames of <x> tagged with its link (one reference per segment); x is emptied. */
void sender_take_xfer(struct sender *w, struct xfer *x);

/* Cancel the write in flight, if any (it still completes). */
void sender_cancel(struct sender *w);

/* True while a write or its completion is outstanding. */
static inline bool sender_busy(const struct sender *w)
{
	return w->writing || w->op.inflight;
}

/* Drop everything queued (accounted as gone) and the retry hook; the sender must not be busy. */
void sender_destroy(struct sender *w);

#endif /* SW_ENGINE_SENDER_H */
