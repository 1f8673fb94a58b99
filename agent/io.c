/*
 * agent/io.c - output sources and input sinks of the agent's sessions.
 *
 * A source (exec stdout/stderr/PTY, a TCP socket) reads straight into a
 * chunk's payload area; the frame header is written into the chunk's
 * headroom and the chunk joins the console tx queue: no payload copy.  A
 * source with AGENT_OUT_BUDGET chunks queued stops reading until the
 * console takes them (wire.md F9); an exec source of a session under the
 * "credit" extension also reads only within the window the host returned,
 * which stdout and stderr share (struct agent_xcredit).  A socket waits for
 * readiness (a poll) before it takes a chunk for a read, so idle streams
 * hold no buffer: thousands of open streams cost no pool.
 *
 * A sink (exec stdin, a TCP socket) receives host payload parsed out of the
 * console receive buffer.  That buffer is reused on the next read, so the
 * payload is copied once into chunks (counted in stats.copies) and written
 * with one io_uring write at a time.  The payload of a raw record of a bulk
 * flow is mostly read by the console reader straight into chunks, which the
 * sink takes as they are (agent_sink_push_chunks, stats.zero_copy_bytes).  A sink holding more than
 * AGENT_IN_QUEUE_MAX bytes pauses the console reader (the reference's
 * backpressure, F8) while every other session's output keeps flowing.
 * For a generation-9 host, each data frame a sink takes counts toward the
 * aggregate input credit (protocol-gen9.md G6) as consumed once the sink
 * has written its payload, or dropped it (sink_claim, sink_release_marks).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/internal.h"
#include "proto/bulk.h"
#include "proto/data.h"

void agent_src_init(struct agent_src *src, struct agent_sess *s, int fd, enum proto_type type,
	bool is_socket)
{
	memset(src, 0, sizeof(*src));
	src->op.kind = AGENT_OP_SRC_READ;
	src->sess = s;
	src->fd = fd;
	src->type = type;
	src->is_socket = is_socket;
	src->poll_first = is_socket; /* no chunk is held until data is there */
	src->limit = UINT64_MAX;
	src->eof = fd < 0;
}

void agent_src_arm(struct agent *a, struct agent_src *src)
{
	struct io_uring_sqe *sqe;
	struct chunk *c;
	unsigned want = AGENT_CHUNK_PAYLOAD;

	if (src->reading || src->eof || src->waiting || src->sess->done ||
		src->queued >= AGENT_OUT_BUDGET)
		return;
	if (src->limit < want)
		want = (unsigned)src->limit;
	if (src->bulk) {
		/* No record passes the host's credit: no credit, no read (re-armed on credit). */
		uint32_t room = proto_bulk_tx_room(src->bulk);

		if (room == 0)
			return;
		if (room < want)
			want = room;
	}
	if (src->xc) {
		/* Exec credit: stdout and stderr share the host's window (wire.md). */
		uint64_t room = agent_xcredit_room(src->xc);

		if (room == 0)
			return;
		if (room < want)
			want = (unsigned)room;
	}
	if (src->poll_first) {
		sqe = agent_sqe(a);
		io_uring_prep_poll_add(sqe, src->fd, POLLIN);
		io_uring_sqe_set_data(sqe, &src->op);
		src->polling = true;
		src->reading = true;
		src->sess->refs++;
		return;
	}
	c = agent_chunk_get(a, false);
	if (!c) {
		/* Pool low: wait for the console to give chunks back. */
		src->waiting = true;
		src->wait_next = a->src_waiting;
		a->src_waiting = src;
		src->sess->refs++; /* held by the waiting list */
		return;
	}
	sqe = agent_sqe(a);
	if (src->is_socket)
		io_uring_prep_recv(sqe, src->fd, chunk_ptr(c), want, 0);
	else
		io_uring_prep_read(sqe, src->fd, chunk_ptr(c), want, (__u64)-1);
	io_uring_sqe_set_data(sqe, &src->op);
	src->buf = c;
	src->reading = true;
	src->sess->refs++;
	if (src->xc) {
		src->held = want;
		src->xc->out_held += want;
	}
}

/* Re-arm sources that found the pool empty. */
void agent_sources_retry(struct agent *a)
{
	struct agent_src *list = a->src_waiting;

	a->src_waiting = NULL;
	while (list) {
		struct agent_src *src = list;

		list = src->wait_next;
		src->waiting = false;
		agent_src_arm(a, src);
		agent_sess_put(a, src->sess); /* the waiting list held a reference */
	}
}

static void src_finished(struct agent *a, struct agent_src *src, int err)
{
	struct agent_sess *s = src->sess;

	src->eof = true;
	if (s->kind == AGENT_SESS_EXEC)
		agent_exec_src_eof(a, (struct agent_exec *)s);
	else if (s->kind == AGENT_SESS_TCP)
		agent_tcp_src_eof(a, (struct agent_tcp *)s, err);
	else
		agent_fs_src_eof(a, s, err);
}

void agent_src_complete(struct agent *a, struct agent_src *src, int res)
{
	struct chunk *c = src->buf;
	struct agent_sess *s = src->sess;

	src->reading = false;
	src->buf = NULL;
	if (src->polling) { /* readable (or hung up / failed: the read will say) */
		src->polling = false;
		src->poll_first = false;
		if (res >= 0 || res == -EINTR || res == -EAGAIN)
			agent_src_arm(a, src);
		else if (!s->done)
			src_finished(a, src, -res);
		agent_sess_put(a, s);
		return;
	}
	/*
	 * A socket waits for readiness before every read: a read armed on an idle
	 * socket would hold a chunk for as long as the stream stays quiet.  So
	 * does an exec source under credit: an idle read would hold window bytes
	 * its sibling may need.
	 */
	src->poll_first = src->is_socket || src->xc;
	if (src->xc) {
		src->xc->out_held -= src->held;
		src->held = 0;
		if (res > 0 && !s->done)
			src->xc->out_sent += (uint64_t)res;
	}
	if (res > 0 && !s->done) {
		c->len = (uint32_t)res;
		if (src->bulk) {
			uint64_t off;

			/* The read was bounded by the room: admission cannot fail. */
			proto_bulk_tx_admit(src->bulk, (size_t)res, &off);
			proto_bulk_frame_prepend(c, s->id, src->bulk->kind, src->bulk->flow, off);
		} else {
			proto_data_frame_prepend(c, src->type, s->id);
		}
		c->user = src;
		src->queued++;
		s->refs++; /* held by the queued chunk */
		agent_tx_chunk(a, c);
		if (src->type == PROTO_T_TCP_DATA)
			a->act.tcp_bytes += (uint64_t)res;
		else if (src->type == PROTO_T_FS_DATA)
			a->act.fs_bytes += (uint64_t)res;
		else
			a->act.exec_output_bytes += (uint64_t)res;
		if (src->limit != UINT64_MAX)
			src->limit -= (uint64_t)res;
		if (src->limit == 0)
			src_finished(a, src, 0);
		else
			agent_src_arm(a, src);
	} else {
		agent_chunk_release(a, c);
		if (res == -EINTR || res == -EAGAIN)
			agent_src_arm(a, src);
		else if (!s->done)
			/* 0 is EOF; a PTY master reports EIO once every slave fd closed. */
			src_finished(a, src, res == -EIO && s->kind == AGENT_SESS_EXEC ? 0 : -res);
	}
	if (src->xc && !s->done)
		agent_exec_out_room(a, (struct agent_exec *)s); /* what this read held is free */
	agent_sess_put(a, s); /* the read's reference */
}

void agent_src_chunk_sent(struct agent *a, struct agent_src *src)
{
	src->queued--;
	agent_src_arm(a, src);
}

void agent_sink_init(struct agent_sink *k, struct agent_sess *s, int fd, bool is_socket)
{
	memset(k, 0, sizeof(*k));
	k->op.kind = AGENT_OP_SINK_WRITE;
	k->sess = s;
	k->fd = fd;
	k->is_socket = is_socket;
	k->closed = fd < 0;
}

static bool sink_over_limit(const struct agent_sink *k)
{
	return !k->credit_bounded && k->bytes > AGENT_IN_QUEUE_MAX;
}

void agent_sink_kick(struct agent *a, struct agent_sink *k)
{
	struct io_uring_sqe *sqe;

	if (k->writing || k->closed || k->hold || k->fd < 0)
		return;
	if (k->head) {
		sqe = agent_sqe(a);
		if (k->is_socket)
			io_uring_prep_send(sqe, k->fd, chunk_ptr(k->head), k->head->len, MSG_NOSIGNAL);
		else
			io_uring_prep_write(sqe, k->fd, chunk_ptr(k->head), k->head->len, (__u64)-1);
		io_uring_sqe_set_data(sqe, &k->op);
		k->writing = true;
		k->sess->refs++;
		return;
	}
	if (k->close_after) {
		k->closed = true;
		if (k->sess->kind == AGENT_SESS_TCP) {
			agent_tcp_sink_drained(a, (struct agent_tcp *)k->sess);
		} else if (k->sess->kind == AGENT_SESS_FS) {
			agent_fs_sink_drained(a, k->sess);
		} else if (k->fd >= 0) {
			close(k->fd);
			k->fd = -1;
		}
	}
}

/*
 * Attach the host data frame being handled to <k> (G6): it counts as
 * consumed once <k> has written everything queued so far, at once when
 * nothing is queued.  Past AGENT_SINK_MARKS waiting marks it joins the
 * newest one.
 */
static void sink_claim(struct agent *a, struct agent_sink *k)
{
	struct agent_credit_mark *m;

	if (!a->wt_cur_data)
		return;
	a->wt_cur_data = false;
	if (k->written >= k->pushed) {
		agent_credit_release(a, true, a->wt_cur_wire, 1);
		return;
	}
	if (k->mark_n < AGENT_SINK_MARKS) {
		m = &k->marks[(k->mark_head + k->mark_n++) % AGENT_SINK_MARKS];
		*m = (struct agent_credit_mark){0};
	} else {
		m = &k->marks[(k->mark_head + k->mark_n - 1) % AGENT_SINK_MARKS];
	}
	m->end = k->pushed;
	m->bytes += a->wt_cur_wire;
	m->frames++;
}

/* Release the marks <k> has written past, or all of them (<all>: the queue was dropped). */
static void sink_release_marks(struct agent *a, struct agent_sink *k, bool all)
{
	while (k->mark_n > 0) {
		struct agent_credit_mark *m = &k->marks[k->mark_head];

		if (!all && m->end > k->written)
			break;
		agent_credit_release(a, true, m->bytes, m->frames);
		k->mark_head = (k->mark_head + 1) % AGENT_SINK_MARKS;
		k->mark_n--;
	}
}

/* Link chunk <c> at the tail of <k>'s queue (its bytes are counted by the caller). */
static void sink_append(struct agent_sink *k, struct chunk *c)
{
	c->user = NULL;
	c->next = NULL;
	if (k->tail)
		k->tail->next = c;
	else
		k->head = c;
	k->tail = c;
}

/* Adjust the console pause count when a sink crosses its limit. */
static void sink_account(struct agent *a, struct agent_sink *k, bool was_over)
{
	bool over = sink_over_limit(k);

	if (over && !was_over)
		a->rx_paused++;
	else if (!over && was_over)
		a->rx_paused--;
}

int agent_sink_push(struct agent *a, struct agent_sink *k, const uint8_t *p, size_t n)
{
	bool was_over = sink_over_limit(k);

	if (k->closed || k->close_after)
		return -EPIPE;
	while (n > 0) {
		struct chunk *c = k->tail;
		size_t room, take;

		/* Append to the last chunk while it is not being written. */
		if (!c || (k->writing && c == k->head) || chunk_tailroom(c) == 0) {
			c = agent_chunk_get(a, true);
			if (!c)
				return -ENOMEM;
			sink_append(k, c);
		}
		room = chunk_tailroom(c);
		take = n < room ? n : room;
		memcpy(chunk_ptr(c) + c->len, p, take);
		c->len += (uint32_t)take;
		k->bytes += take;
		k->pushed += take;
		p += take;
		n -= take;
		a->st.copied_bytes += take;
	}
	a->st.copies++;
	sink_claim(a, k);
	sink_account(a, k, was_over);
	agent_sink_kick(a, k);
	return 0;
}

/*
 * Queue the <n> chunks of <v> (payload at chunk_ptr, c->len bytes each)
 * toward <k> as they are, with the accounting of agent_sink_push.  The
 * chunks are <k>'s either way: -EPIPE (released) when it takes no more.
 */
int agent_sink_push_chunks(struct agent *a, struct agent_sink *k, struct chunk **v, unsigned n)
{
	bool was_over = sink_over_limit(k);
	unsigned i;

	if (k->closed || k->close_after) {
		for (i = 0; i < n; i++)
			agent_chunk_release(a, v[i]);
		return -EPIPE;
	}
	for (i = 0; i < n; i++) {
		sink_append(k, v[i]);
		k->bytes += v[i]->len;
		k->pushed += v[i]->len;
		a->st.zero_copy_bytes += v[i]->len;
	}
	sink_claim(a, k);
	sink_account(a, k, was_over);
	agent_sink_kick(a, k);
	return 0;
}

void agent_bulk_record_error(char *buf, size_t cap, const char *op, int rc,
	const struct proto_bulk_rx *rx, const struct proto_bulk_rec *r)
{
	if (rc == PROTO_E_BULK_OFFSET)
		snprintf(buf, cap, "invalid %s bulk record: bulk record offset %llu does not match "
			"expected %llu", op, (unsigned long long)r->offset,
			(unsigned long long)rx->next_expected);
	else if (rc == PROTO_E_BULK_CREDIT)
		snprintf(buf, cap, "invalid %s bulk record: bulk record end %llu exceeds credit limit "
			"%llu", op, (unsigned long long)(r->offset + r->len),
			(unsigned long long)rx->credit_limit);
	else if (rc == PROTO_E_BULK_MISMATCH)
		snprintf(buf, cap, "invalid %s bulk record: bulk kind or flow does not match the "
			"correlation", op);
	else
		snprintf(buf, cap, "invalid %s bulk record: %s", op, proto_strerror(rc));
}

void agent_sink_close(struct agent *a, struct agent_sink *k)
{
	if (k->closed)
		return;
	k->close_after = true;
	sink_claim(a, k); /* an EOF frame: consumed once what came before is written */
	agent_sink_kick(a, k);
}

/*
 * Drop everything queued (session ending or write error) and refuse more.
 * A chunk under a write in flight stays until that write completes.
 */
void agent_sink_drop(struct agent *a, struct agent_sink *k)
{
	bool was_over = sink_over_limit(k);
	struct chunk *keep = k->writing ? k->head : NULL;
	struct chunk *c = keep ? keep->next : k->head;

	while (c) {
		struct chunk *nx = c->next;

		k->bytes -= c->len;
		agent_chunk_release(a, c);
		c = nx;
	}
	if (keep)
		keep->next = NULL;
	k->head = k->tail = keep;
	k->closed = true;
	sink_release_marks(a, k, true); /* dropped input counts as consumed */
	sink_account(a, k, was_over);
}

void agent_sink_complete(struct agent *a, struct agent_sink *k, int res)
{
	struct agent_sess *s = k->sess;
	bool was_over = sink_over_limit(k);
	struct chunk *c = k->head;

	k->writing = false;
	if (k->closed) {
		/* Dropped while this write was in flight: discard its chunk too. */
		if (c) {
			k->bytes -= c->len;
			k->head = k->tail = NULL;
			agent_chunk_release(a, c);
		}
		sink_account(a, k, was_over);
	} else if (res > 0 && c) {
		chunk_pull_front(c, (uint32_t)res);
		k->bytes -= (size_t)res;
		k->written += (uint64_t)res;
		sink_release_marks(a, k, false);
		if (s->kind == AGENT_SESS_TCP) {
			a->act.tcp_bytes += (uint64_t)res;
			agent_tcp_sink_wrote(a, (struct agent_tcp *)s, (size_t)res);
		}
		else if (s->kind == AGENT_SESS_FS) {
			a->act.fs_bytes += (uint64_t)res;
			agent_fs_sink_wrote(a, s, (size_t)res);
		}
		else if (s->kind == AGENT_SESS_EXEC)
			agent_exec_stdin_wrote(a, (struct agent_exec *)s);
		if (c->len == 0) {
			k->head = c->next;
			if (!k->head)
				k->tail = NULL;
			agent_chunk_release(a, c);
		}
		sink_account(a, k, was_over);
		agent_sink_kick(a, k);
	} else if (res == -EINTR || res == -EAGAIN) {
		agent_sink_kick(a, k);
	} else {
		agent_sink_fail(a, k, res < 0 ? -res : EIO);
	}
	agent_sess_put(a, s); /* the write's reference */
}

/* <k> cannot go on (errno <err>): drop what it holds and let its session fail. */
void agent_sink_fail(struct agent *a, struct agent_sink *k, int err)
{
	struct agent_sess *s = k->sess;

	agent_sink_drop(a, k);
	if (s->kind == AGENT_SESS_EXEC)
		agent_exec_sink_error(a, (struct agent_exec *)s, err);
	else if (s->kind == AGENT_SESS_TCP)
		agent_tcp_sink_error(a, (struct agent_tcp *)s, err);
	else
		agent_fs_sink_error(a, s, err);
}

/* Give back the chunks a source or sink still holds (agent teardown). */
void agent_src_release(struct agent *a, struct agent_src *src)
{
	if (src->buf)
		agent_chunk_release(a, src->buf);
	src->buf = NULL;
	src->reading = false;
}

void agent_sink_release(struct agent *a, struct agent_sink *k)
{
	struct chunk *c = k->head;

	while (c) {
		struct chunk *nx = c->next;

		agent_chunk_release(a, c);
		c = nx;
	}
	k->head = k->tail = NULL;
	k->bytes = 0;
	k->writing = false;
	sink_release_marks(a, k, true);
}
