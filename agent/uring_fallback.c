/*
 * agent/uring_fallback.c - the poll(2) interpreter of io_uring SQEs (see
 * uring_fallback.h).
 *
 * Every op lives on exactly one list: free, sq, pending or cq.  A link
 * timeout is on none while it is bound to its op (op->link); it joins the
 * cq with that op.
 */
#include "agent/uring_fallback.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define FB_SLAB_OPS 64u
#define FB_NO_DEADLINE UINT64_MAX
#define FB_MAX_TIMEOUT_S (100ull * 365 * 24 * 3600) /* clamp: no overflow of the deadline */

struct uring_fallback_op {
	struct io_uring_sqe sqe;         /* as the caller prepared it */
	struct uring_fallback_op *next;  /* on the list it is on */
	struct uring_fallback_op *link;  /* the LINK_TIMEOUT bound to this op, or NULL */
	uint64_t deadline_ns;            /* CLOCK_MONOTONIC, or FB_NO_DEADLINE */
	short events;                    /* what it polls for; 0 = a pure timer */
	int res;                         /* the completion's result, once on the cq */
};

/* Per descriptor, valid in the round it is stamped with. */
struct uring_fallback_fd {
	unsigned round;
	int pfd;                         /* its pollfd */
	short held;                      /* directions where an op got EAGAIN this round */
};

struct uring_fallback_slab {
	struct uring_fallback_slab *next;
	struct uring_fallback_op ops[FB_SLAB_OPS];
};

static uint64_t fb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fb_list_push(struct uring_fallback_list *l, struct uring_fallback_op *op)
{
	op->next = NULL;
	if (l->tail)
		l->tail->next = op;
	else
		l->head = op;
	l->tail = op;
	l->n++;
}

static struct uring_fallback_op *fb_list_pop(struct uring_fallback_list *l)
{
	struct uring_fallback_op *op = l->head;

	if (op) {
		l->head = op->next;
		if (!l->head)
			l->tail = NULL;
		l->n--;
	}
	return op;
}

/* Remove <op>, which follows <prev> (NULL: <op> is the head). */
static void fb_list_unlink(struct uring_fallback_list *l, struct uring_fallback_op *prev,
	struct uring_fallback_op *op)
{
	if (prev)
		prev->next = op->next;
	else
		l->head = op->next;
	if (l->tail == op)
		l->tail = prev;
	l->n--;
}

/* Complete <op> with <res> and its link timeout, if any, with <link_res>. */
static void fb_finish(struct uring_fallback *fb, struct uring_fallback_op *op, int res,
	int link_res)
{
	struct uring_fallback_op *lt = op->link;

	op->res = res;
	fb_list_push(&fb->_cq, op);
	if (lt) {
		lt->res = link_res;
		fb_list_push(&fb->_cq, lt);
	}
}

/* O_NONBLOCK on <fd>'s open file description (see the header).  Returns 0 or -errno. */
static int fb_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* The deadline of a relative TIMEOUT or LINK_TIMEOUT SQE.  Returns 0 or -EINVAL. */
static int fb_deadline(const struct io_uring_sqe *sqe, uint64_t now, uint64_t *deadline)
{
	const struct __kernel_timespec *ts = (const void *)(uintptr_t)sqe->addr;
	uint64_t sec;

	if (!ts || sqe->len != 1 || sqe->timeout_flags != 0 || ts->tv_sec < 0 || ts->tv_nsec < 0 ||
		ts->tv_nsec >= 1000000000)
		return -EINVAL;
	sec = (uint64_t)ts->tv_sec < FB_MAX_TIMEOUT_S ? (uint64_t)ts->tv_sec : FB_MAX_TIMEOUT_S;
	*deadline = now + sec * 1000000000ull + (uint64_t)ts->tv_nsec;
	return 0;
}

/* A POLL_ADD's mask (liburing swaps its halves on big-endian hosts). */
static short fb_poll_mask(const struct io_uring_sqe *sqe)
{
	uint32_t m = sqe->poll32_events;

#if __BYTE_ORDER == __BIG_ENDIAN
	m = m << 16 | m >> 16;
#endif
	return (short)(m & 0xffff);
}

/* Start a non-blocking connect.  Returns 0, -EINPROGRESS or -errno. */
static int fb_connect_start(const struct io_uring_sqe *sqe)
{
	int rc = fb_nonblock(sqe->fd);

	if (rc < 0)
		return rc;
	if (connect(sqe->fd, (const struct sockaddr *)(uintptr_t)sqe->addr, (socklen_t)sqe->off) == 0)
		return 0;
	/* EINTR: a non-blocking connect goes on in the background (POSIX). */
	return errno == EINPROGRESS || errno == EINTR ? -EINPROGRESS : -errno;
}

/* ASYNC_CANCEL of the first pending op with <user_data>.  Returns 0 or -ENOENT. */
static int fb_cancel(struct uring_fallback *fb, uint64_t user_data)
{
	struct uring_fallback_op *prev = NULL, *op;

	for (op = fb->_pending.head; op; prev = op, op = op->next) {
		if (op->sqe.user_data == user_data) {
			fb_list_unlink(&fb->_pending, prev, op);
			fb_finish(fb, op, -ECANCELED, -ECANCELED);
			return 0;
		}
	}
	return -ENOENT;
}

/* Validate one submitted op and put it on the pending list, or complete it at once. */
static void fb_start(struct uring_fallback *fb, struct uring_fallback_op *op, uint64_t now)
{
	const struct io_uring_sqe *sqe = &op->sqe;
	int rc = 0;

	if (sqe->flags & ~IOSQE_IO_LINK) {
		fb_finish(fb, op, -EINVAL, -ECANCELED);
		return;
	}
	switch (sqe->opcode) {
	case IORING_OP_READ:
	case IORING_OP_READV:
		op->events = POLLIN;
		rc = fb_nonblock(sqe->fd);
		break;
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
		op->events = POLLOUT;
		rc = fb_nonblock(sqe->fd);
		break;
	case IORING_OP_RECV:
		op->events = POLLIN;
		rc = sqe->fd < 0 ? -EBADF : 0;
		break;
	case IORING_OP_SEND:
		op->events = POLLOUT;
		rc = sqe->fd < 0 ? -EBADF : 0;
		break;
	case IORING_OP_POLL_ADD:
		op->events = fb_poll_mask(sqe) | POLLERR; /* POLLERR: never 0, which means "no fd" */
		rc = sqe->fd < 0 ? -EBADF : sqe->len != 0 ? -EINVAL : 0; /* len: multishot */
		break;
	case IORING_OP_TIMEOUT:
		rc = sqe->off != 0 ? -EINVAL : fb_deadline(sqe, now, &op->deadline_ns);
		break;
	case IORING_OP_CONNECT:
		op->events = POLLOUT;
		rc = fb_connect_start(sqe);
		if (rc == -EINPROGRESS)
			rc = 0;
		else if (rc == 0) {
			fb_finish(fb, op, 0, -ECANCELED);
			return;
		}
		break;
	case IORING_OP_ASYNC_CANCEL:
		fb_finish(fb, op, sqe->cancel_flags ? -EINVAL : fb_cancel(fb, sqe->addr), -ECANCELED);
		return;
	default:
		rc = -EINVAL; /* including a LINK_TIMEOUT without an op to bind to */
		break;
	}
	if (rc < 0)
		fb_finish(fb, op, rc, -ECANCELED);
	else
		fb_list_push(&fb->_pending, op);
}

/* Move the sq to the pending list, binding each LINK_TIMEOUT to the op before it. */
static void fb_submit(struct uring_fallback *fb)
{
	uint64_t now = fb_now_ns();
	struct uring_fallback_op *op;

	while ((op = fb_list_pop(&fb->_sq))) {
		struct uring_fallback_op *lt = fb->_sq.head;
		int rc;

		op->deadline_ns = FB_NO_DEADLINE;
		/* A link flag on the last SQE of a submission ends the chain, as in the kernel. */
		if ((op->sqe.flags & IOSQE_IO_LINK) && lt) {
			if (lt->sqe.opcode != IORING_OP_LINK_TIMEOUT) {
				fb_finish(fb, op, -EINVAL, -ECANCELED); /* chains: not supported */
				continue;
			}
			fb_list_pop(&fb->_sq);
			rc = fb_deadline(&lt->sqe, now, &op->deadline_ns);
			op->link = lt;
			if (rc < 0) {
				/* The kernel fails a bad link timeout and cancels its op. */
				fb_finish(fb, op, -ECANCELED, rc);
				continue;
			}
		}
		fb_start(fb, op, now);
	}
}

/*
 * Perform a ready op with one non-blocking call.  Returns its result, or
 * -EAGAIN to keep it pending.
 */
static int fb_perform(const struct uring_fallback_op *op, short revents)
{
	const struct io_uring_sqe *sqe = &op->sqe;
	void *buf = (void *)(uintptr_t)sqe->addr;
	struct iovec iov = {buf, sqe->len};
	socklen_t len = sizeof(int);
	ssize_t n;
	int err;

	switch (sqe->opcode) {
	case IORING_OP_READ:
		n = preadv2(sqe->fd, &iov, 1, (off_t)sqe->off, (int)sqe->rw_flags);
		break;
	case IORING_OP_READV:
		n = preadv2(sqe->fd, buf, (int)sqe->len, (off_t)sqe->off, (int)sqe->rw_flags);
		break;
	case IORING_OP_WRITE:
		n = pwritev2(sqe->fd, &iov, 1, (off_t)sqe->off, (int)sqe->rw_flags);
		break;
	case IORING_OP_WRITEV:
		n = pwritev2(sqe->fd, buf, (int)sqe->len, (off_t)sqe->off, (int)sqe->rw_flags);
		break;
	case IORING_OP_RECV:
		n = recv(sqe->fd, buf, sqe->len, (int)sqe->msg_flags | MSG_DONTWAIT);
		break;
	case IORING_OP_SEND:
		n = send(sqe->fd, buf, sqe->len, (int)sqe->msg_flags | MSG_DONTWAIT);
		break;
	case IORING_OP_POLL_ADD:
		return revents & (op->events | POLLERR | POLLHUP | POLLNVAL);
	default: /* IORING_OP_CONNECT in progress: writable or failed */
		if (getsockopt(sqe->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			return -errno;
		return -err;
	}
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
	return n > INT_MAX ? INT_MAX : (int)n;
}

/* The poll(2) timeout for the nearest deadline: rounded up to whole ms, -1 for none. */
static int fb_timeout_ms(uint64_t deadline, uint64_t now)
{
	uint64_t ms;

	if (deadline == FB_NO_DEADLINE)
		return -1;
	if (deadline <= now)
		return 0;
	ms = (deadline - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Room for <n> pollfds and a slot for every descriptor up to <max_fd>.  Returns 0 or -ENOMEM. */
static int fb_reserve(struct uring_fallback *fb, unsigned n, int max_fd)
{
	if (n > fb->_pfd_cap) {
		unsigned cap = n + 64;
		struct pollfd *p = realloc(fb->_pfd, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		fb->_pfd = p;
		fb->_pfd_cap = cap;
	}
	if ((unsigned)max_fd >= fb->_fds_cap) {
		unsigned cap = (unsigned)max_fd + 1 > 2 * fb->_fds_cap ? (unsigned)max_fd + 1 :
			2 * fb->_fds_cap;
		struct uring_fallback_fd *f = realloc(fb->_fds, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		memset(f + fb->_fds_cap, 0, (cap - fb->_fds_cap) * sizeof(*f));
		fb->_fds = f;
		fb->_fds_cap = cap;
	}
	return 0;
}

/*
 * One round: poll the pending ops' descriptors (no blocking when
 * <nowait>), then perform the ready ops and expire the late ones, in
 * submission order.  Returns 0, -EINTR or -ENOMEM.
 */
static int fb_round(struct uring_fallback *fb, bool nowait)
{
	struct uring_fallback_op *op, *prev = NULL, *next;
	uint64_t now = fb_now_ns(), nearest = FB_NO_DEADLINE;
	int max_fd = 0, rc;
	nfds_t n = 0;

	for (op = fb->_pending.head; op; op = op->next)
		if (op->events && op->sqe.fd > max_fd)
			max_fd = op->sqe.fd;
	rc = fb_reserve(fb, fb->_pending.n, max_fd);
	if (rc < 0)
		return rc;
	if (++fb->_round == 0) { /* wrapped: forget every stamp */
		memset(fb->_fds, 0, fb->_fds_cap * sizeof(*fb->_fds));
		fb->_round = 1;
	}
	/* One pollfd per descriptor (poll refuses more than RLIMIT_NOFILE entries). */
	for (op = fb->_pending.head; op; op = op->next) {
		struct uring_fallback_fd *f;

		if (op->deadline_ns < nearest)
			nearest = op->deadline_ns;
		if (!op->events)
			continue;
		f = &fb->_fds[op->sqe.fd];
		if (f->round != fb->_round) {
			f->round = fb->_round;
			f->pfd = (int)n;
			f->held = 0;
			fb->_pfd[n++] = (struct pollfd){.fd = op->sqe.fd};
		}
		fb->_pfd[f->pfd].events |= op->events;
	}
	if (poll(fb->_pfd, n, nowait ? 0 : fb_timeout_ms(nearest, now)) < 0)
		return errno == EINTR ? -EINTR : -errno;
	now = fb_now_ns();
	for (op = fb->_pending.head; op; op = next) {
		struct uring_fallback_fd *f = op->events ? &fb->_fds[op->sqe.fd] : NULL;
		short ready = 0;
		int res = -EAGAIN;

		next = op->next;
		if (f)
			ready = fb->_pfd[f->pfd].revents & (op->events | POLLERR | POLLHUP | POLLNVAL);
		/* After an EAGAIN, later ops of that direction wait: none may overtake it. */
		if (ready && !(f->held & op->events)) {
			res = fb_perform(op, ready);
			if (res == -EAGAIN && op->sqe.opcode != IORING_OP_POLL_ADD)
				f->held |= op->events;
		}
		if (res != -EAGAIN) {
			fb_list_unlink(&fb->_pending, prev, op);
			fb_finish(fb, op, res, -ECANCELED);
		} else if (op->deadline_ns <= now) {
			fb_list_unlink(&fb->_pending, prev, op);
			if (op->sqe.opcode == IORING_OP_TIMEOUT)
				fb_finish(fb, op, -ETIME, -ECANCELED);
			else
				fb_finish(fb, op, -ECANCELED, -ETIME); /* its link timeout fired */
		} else {
			prev = op;
		}
	}
	return 0;
}

void uring_fallback_init(struct uring_fallback *fb)
{
	memset(fb, 0, sizeof(*fb));
}

void uring_fallback_destroy(struct uring_fallback *fb)
{
	while (fb->_slabs) {
		struct uring_fallback_slab *s = fb->_slabs;

		fb->_slabs = s->next;
		free(s);
	}
	free(fb->_pfd);
	free(fb->_fds);
	memset(fb, 0, sizeof(*fb));
}

struct io_uring_sqe *uring_fallback_get_sqe(struct uring_fallback *fb)
{
	struct uring_fallback_op *op;

	if (!fb->_free) {
		struct uring_fallback_slab *s = malloc(sizeof(*s));

		if (!s)
			return NULL;
		s->next = fb->_slabs;
		fb->_slabs = s;
		for (unsigned i = 0; i < FB_SLAB_OPS; i++) {
			s->ops[i].next = fb->_free;
			fb->_free = &s->ops[i];
		}
	}
	op = fb->_free;
	fb->_free = op->next;
	memset(op, 0, sizeof(*op));
	fb_list_push(&fb->_sq, op);
	return &op->sqe;
}

int uring_fallback_submit_and_wait(struct uring_fallback *fb)
{
	int rc;

	fb_submit(fb);
	if (!fb->_cq.n && !fb->_pending.n)
		return -ENOENT;
	/* Each round either completes an op or sleeps until the fd or deadline that will. */
	do {
		rc = fb_round(fb, fb->_cq.n > 0);
	} while (rc == 0 && !fb->_cq.n);
	return rc;
}

bool uring_fallback_cqe_pop(struct uring_fallback *fb, struct io_uring_cqe *cqe)
{
	struct uring_fallback_op *op = fb_list_pop(&fb->_cq);

	if (!op)
		return false;
	cqe->user_data = op->sqe.user_data;
	cqe->res = op->res;
	cqe->flags = 0;
	op->next = fb->_free;
	fb->_free = op;
	return true;
}
