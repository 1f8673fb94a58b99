/*
 * agent/uring_fallback.h - a poll(2) interpreter of io_uring SQEs, for
 * kernels where io_uring_setup fails (io_uring disabled by sysctl or
 * seccomp, an old kernel).  The agent keeps preparing SQEs with liburing's
 * io_uring_prep_* helpers (they only fill the struct) and consumes the
 * same {user_data, res} completions, so its handlers do not know which
 * engine runs them.
 *
 *   sqe = uring_fallback_get_sqe(fb);      prepare it as for io_uring
 *   uring_fallback_submit_and_wait(fb);    run until >= 1 completion
 *   while (uring_fallback_cqe_pop(fb, &cqe)) handle(&cqe);
 *
 * Supported, exactly the set the agent uses:
 *   READ, READV, WRITE, WRITEV  at an offset, or at the file position for -1;
 *   RECV, SEND            MSG_DONTWAIT is added to the caller's flags;
 *   POLL_ADD              single shot; res = the events that fired;
 *   TIMEOUT               relative, count 0; completes with -ETIME;
 *   CONNECT               non-blocking connect(2), then POLLOUT and SO_ERROR;
 *   LINK_TIMEOUT          right after an op flagged IOSQE_IO_LINK: at the
 *                         deadline the op completes with -ECANCELED and the
 *                         timeout with -ETIME; if the op ends first the
 *                         timeout completes with -ECANCELED (as io_uring);
 *   ASYNC_CANCEL          by user_data, first match: the target completes
 *                         with -ECANCELED (its link timeout too), the
 *                         cancel with 0, or -ENOENT when nothing matched.
 * Anything else (other opcodes, SQE flags but IOSQE_IO_LINK, links to
 * anything but a LINK_TIMEOUT, absolute or counting timeouts, multishot
 * polls, cancel flags) completes with -EINVAL.
 *
 * How it runs.  Submit moves prepared SQEs to a pending list in order;
 * cancels, link timeouts and connect(2) are handled there.  A wait builds
 * one pollfd per descriptor with the events of its pending ops (POLLIN for
 * READ/READV/RECV, POLLOUT for the writes and a connect in progress, the mask of
 * a POLL_ADD), with the nearest deadline as poll's timeout, then performs
 * each ready op, in submission order, with one non-blocking call.  EAGAIN
 * keeps an op pending, and then the later ops on the same descriptor and
 * direction wait for the next round, so each descriptor's reads and writes
 * complete in FIFO order.
 * Reads and writes may be short (a 64 KiB write to a pipe with less room
 * returns what fitted); io_uring's callers handle short counts already.
 *
 * Descriptors become non-blocking.  A blocking write(2) of 64 KiB to a pipe
 * with less room would stall the whole loop after poll said "writable", so
 * READ, READV, WRITE, WRITEV and CONNECT set O_NONBLOCK on their
 * descriptor when submitted (one fcntl F_GETFL each, F_SETFL when missing) and leave it
 * set.  The flag belongs to the open file description: another process
 * sharing it (an inherited console) sees it too.  RECV and SEND change no
 * flag.  Regular files poll as always ready and their reads still wait for
 * the disk, as they do in io_uring's worker threads.
 *
 * Memory: ops come in slabs of 64 that are kept until destroy; get_sqe
 * fails only when a new slab cannot be allocated.  The poll set and a
 * small per-descriptor table (indexed by fd number) grow as needed.
 * owner: one thread (the agent's loop); nothing here is shared.
 */
#ifndef SW_AGENT_URING_FALLBACK_H
#define SW_AGENT_URING_FALLBACK_H

#include <liburing.h>
#include <poll.h>
#include <stdbool.h>

struct uring_fallback_op;
struct uring_fallback_fd;
struct uring_fallback_slab;

struct uring_fallback_list {
	struct uring_fallback_op *head, *tail;
	unsigned n;
};

/* Embedded in its owner (struct agent); the fields are private. */
struct uring_fallback {
	struct uring_fallback_list _sq;      /* prepared, not submitted */
	struct uring_fallback_list _pending; /* submitted, waiting for their fd or deadline */
	struct uring_fallback_list _cq;      /* completed, not popped yet */
	struct uring_fallback_op *_free;
	struct uring_fallback_slab *_slabs;
	struct pollfd *_pfd;                 /* poll set of one round, one per descriptor */
	unsigned _pfd_cap;
	struct uring_fallback_fd *_fds;      /* by descriptor number: its pollfd this round */
	unsigned _fds_cap;
	unsigned _round;
};

/* Start empty (allocates nothing). */
void uring_fallback_init(struct uring_fallback *fb);
/* Free everything; ops still pending are dropped without completions. */
void uring_fallback_destroy(struct uring_fallback *fb);
/*
 * A zeroed SQE to prepare with io_uring_prep_* and io_uring_sqe_set_data.
 * It stays valid until the next submit.  Returns NULL only when out of
 * memory.
 */
struct io_uring_sqe *uring_fallback_get_sqe(struct uring_fallback *fb);
/*
 * Submit the prepared SQEs, then wait until at least one completion is
 * ready (without blocking when some already are).  Returns 0, -EINTR when
 * poll(2) was interrupted, -ENOMEM when the poll set cannot grow, or
 * -ENOENT when nothing is pending or completed (the wait would never end).
 */
int uring_fallback_submit_and_wait(struct uring_fallback *fb);
/* Take the oldest completion into <cqe> (flags 0).  Returns false when there is none. */
bool uring_fallback_cqe_pop(struct uring_fallback *fb, struct io_uring_cqe *cqe);

#endif /* SW_AGENT_URING_FALLBACK_H */
