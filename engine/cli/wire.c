/*
 * engine/cli/wire.c - the attached relay connection, non-blocking (cli.h).
 *
 * Sending never blocks: frames are encoded into the output queue and
 * written when poll() says the socket has room, so a command can keep
 * reading the daemon while the daemon is slow to read it (the relay
 * applies backpressure both ways; a client that only writes could wedge
 * against one that only reads).  Callers bound the queue themselves by not
 * reading more local input while wire_pending() is high.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

#define WIRE_ARENA (1u << 20)
#define WIRE_IN_CAP (PROTO_MAX_WIRE_SIZE + 65536u)
#define WIRE_READ_MAX (256u * 1024u) /* bytes read per wire_io */
#define WIRE_CTRL_MAX 4096u	     /* room reserved for a control frame */

int wire_init(struct wire *w, int fd, uint32_t lo, uint32_t hi)
{
	int fl = fcntl(fd, F_GETFL);

	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->id_lo = lo;
	w->id_hi = hi;
	w->next_id = lo ? lo : 1;
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	w->in_cap = WIRE_IN_CAP;
	w->in = malloc(w->in_cap);
	w->arena_mem = malloc(WIRE_ARENA);
	if (!w->in || !w->arena_mem) {
		wire_destroy(w);
		return -ENOMEM;
	}
	return 0;
}

void wire_destroy(struct wire *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	free(w->in);
	free(w->out);
	free(w->arena_mem);
	w->in = w->out = w->arena_mem = NULL;
}

uint32_t wire_new_id(struct wire *w)
{
	uint32_t id = w->next_id++;

	if (w->next_id >= w->id_hi || w->next_id == 0)
		w->next_id = w->id_lo ? w->id_lo : 1;
	return id;
}

/* Make room for <n> more bytes at the end of the output queue. */
static int wire_reserve(struct wire *w, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (w->out_off && w->out_off == w->out_len)
		w->out_off = w->out_len = 0;
	if (w->out_len + n <= w->out_cap)
		return 0;
	if (w->out_off) {
		memmove(w->out, w->out + w->out_off, w->out_len - w->out_off);
		w->out_len -= w->out_off;
		w->out_off = 0;
		if (w->out_len + n <= w->out_cap)
			return 0;
	}
	cap = w->out_cap ? w->out_cap : 65536;
	while (cap < w->out_len + n)
		cap *= 2;
	p = realloc(w->out, cap);
	if (!p)
		return -ENOMEM;
	w->out = p;
	w->out_cap = cap;
	return 0;
}

int wire_send(struct wire *w, uint32_t id, const struct proto_msg *m)
{
	size_t need = WIRE_CTRL_MAX;
	long n;
	int rc;

	for (;;) {
		if ((rc = wire_reserve(w, need)) < 0)
			return rc;
		n = proto_frame_encode(w->out + w->out_len, w->out_cap - w->out_len, id, m);
		if (n != PROTO_E_NOSPACE || need >= PROTO_MAX_WIRE_SIZE)
			break;
		need = PROTO_MAX_WIRE_SIZE;
	}
	if (n < 0)
		return (int)n;
	w->out_len += (size_t)n;
	return 0;
}

void wire_set_ready(struct wire *w, const uint8_t *ready, size_t n)
{
	struct proto_frame f;
	struct proto_msg m;

	w->agent_gen = 0;
	w->agent_credit = false;
	if (proto_frame_parse(ready, n, &f) <= 0)
		return;
	proto_arena_init(&w->arena, w->arena_mem, WIRE_ARENA);
	if (proto_frame_decode(&f, &m, &w->arena, NULL) == 0 && m.type == PROTO_T_READY) {
		w->agent_gen = m.v;
		w->agent_credit = proto_ext_named(m.u.ready.ext, m.u.ready.n_ext, PROTO_EXT_CREDIT);
	}
}

uint8_t *wire_record_room(struct wire *w, size_t n)
{
	if (wire_reserve(w, PROTO_BULK_PREFIX_SIZE + n) < 0)
		return NULL;
	return w->out + w->out_len + PROTO_BULK_PREFIX_SIZE;
}

int wire_record_commit(struct wire *w, const struct proto_bulk_rec *r)
{
	int rc = proto_bulk_prefix_write(w->out + w->out_len, PROTO_BULK_PREFIX_SIZE, r);

	if (rc < 0)
		return rc;
	w->out_len += PROTO_BULK_PREFIX_SIZE + r->len;
	return 0;
}

int wire_send_data(struct wire *w, enum proto_type t, uint32_t id, const void *p, size_t n)
{
	size_t pre = proto_data_prefix_size(t, n);
	long got;
	int rc;

	if (!pre)
		return PROTO_E_BAD_VALUE;
	if ((rc = wire_reserve(w, pre + n)) < 0)
		return rc;
	got = proto_data_prefix_write(w->out + w->out_len, pre, t, id, n);
	if (got < 0)
		return (int)got;
	if (n)
		memcpy(w->out + w->out_len + got, p, n);
	w->out_len += (size_t)got + n;
	return 0;
}

size_t wire_pending(const struct wire *w)
{
	return w->out_len - w->out_off;
}

short wire_events(const struct wire *w)
{
	return (short)((w->eof ? 0 : POLLIN) | (wire_pending(w) ? POLLOUT : 0));
}

/* Write what the socket takes now. */
static int wire_write_some(struct wire *w)
{
	ssize_t put;

	while (wire_pending(w)) {
		put = send(w->fd, w->out + w->out_off, wire_pending(w), MSG_NOSIGNAL);
		if (put < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		w->out_off += (size_t)put;
	}
	return 0;
}

/* Read what the socket holds (up to WIRE_READ_MAX); EOF sets w->eof. */
static int wire_read_some(struct wire *w)
{
	size_t total = 0;
	ssize_t got;

	if (w->in_off && w->in_off == w->in_len)
		w->in_off = w->in_len = 0;
	if (w->in_off && w->in_cap - w->in_len < 65536) {
		memmove(w->in, w->in + w->in_off, w->in_len - w->in_off);
		w->in_len -= w->in_off;
		w->in_off = 0;
	}
	while (total < WIRE_READ_MAX && w->in_len < w->in_cap) {
		got = read(w->fd, w->in + w->in_len, w->in_cap - w->in_len);
		if (got == 0) {
			w->eof = true;
			break;
		}
		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			if (errno == ECONNRESET) {
				w->eof = true;
				break;
			}
			return -errno;
		}
		w->in_len += (size_t)got;
		total += (size_t)got;
	}
	return 0;
}

int wire_io(struct wire *w, short revents)
{
	int rc;

	if (revents & POLLOUT) {
		rc = wire_write_some(w);
		if (rc < 0)
			return rc;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR))
		return wire_read_some(w);
	return 0;
}

int wire_next(struct wire *w)
{
	int n = proto_frame_parse(w->in + w->in_off, w->in_len - w->in_off, &w->frame);

	if (n < 0) {
		w->eof = true;
		w->in_off = w->in_len;
		return -EPROTO;
	}
	if (n == 0) {
		/* a frame that cannot fit behind in_off: move it to the front */
		if (w->in_off && w->frame.need > w->in_cap - w->in_off) {
			memmove(w->in, w->in + w->in_off, w->in_len - w->in_off);
			w->in_len -= w->in_off;
			w->in_off = 0;
		}
		return 0;
	}
	w->in_off += (size_t)n;
	proto_arena_init(&w->arena, w->arena_mem, WIRE_ARENA);
	n = proto_frame_decode(&w->frame, &w->msg, &w->arena, NULL);
	return n == PROTO_E_BULK_RECORD ? n : n < 0 ? PROTO_E_CBOR : 1;
}

int wire_recv(struct wire *w, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : cli_now_ms() + timeout_ms;
	struct pollfd p = {.fd = w->fd};
	int rc, left;

	for (;;) {
		rc = wire_next(w);
		if (rc != 0)
			return rc;
		if (w->eof)
			return -EPIPE;
		left = deadline < 0 ? -1 : (int)(deadline - cli_now_ms());
		if (deadline >= 0 && left <= 0)
			return 0;
		p.events = wire_events(w);
		rc = poll(&p, 1, left);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc > 0 && (rc = wire_io(w, p.revents)) < 0)
			return rc;
	}
}

int wire_drain(struct wire *w, size_t below)
{
	struct pollfd p = {.fd = w->fd};
	int rc;

	while (wire_pending(w) > below) {
		if (w->eof)
			return -EPIPE;
		/* stop reading when the input buffer is full: its frames wait for the caller */
		p.events = (short)(POLLOUT | (w->in_len - w->in_off < w->in_cap ? POLLIN : 0));
		rc = poll(&p, 1, -1);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc > 0 && (rc = wire_io(w, p.revents)) < 0)
			return rc;
	}
	return 0;
}
