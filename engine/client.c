/*
 * engine/client.c - client connections of the daemon socket and of the
 * per-sandbox agent.sock: management requests, then (after attach) the
 * relay: frames checked against the client's id range and forwarded to
 * the console by reference, frames from the console written back with one
 * vectored write.
 *
 * owner: the shard the connection was given to.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/sender.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"

#define CL_SESSIONS_MAX 65536u /* live session ids tracked per client (open addressing) */
#define CL_PEND_MAX 256u       /* frames held while an attach is answered */
#define CL_IDS_WINDOW 65536u   /* session ids remembered above the retired floor (G7.1) */
#define CL_GEN_NO_REUSE 9u     /* from generation 9 a relay rejects reused ids (G7.1) */

enum cl_mode {
	CL_MGMT = 0,  /* engine requests */
	CL_ATTACHING, /* attach asked; frames are held */
	CL_RELAY,     /* attached: agent-protocol frames */
};

/* Session ids the client opened and that have not ended (for errors if the sandbox goes). */
struct idset {
	uint32_t *v; /* 0 empty, UINT32_MAX deleted */
	uint32_t cap, n, used;
};

/*
 * The ids a client started sessions on, for the generation-9 rule that a
 * client never reuses an id within one connection (protocol-gen9.md G7.1).
 * Every id below <floor> counts as used; a bitmap remembers the window
 * above it.  A start further than the window ahead moves the floor up and
 * retires the ids skipped: a client counting up, as the reference's does,
 * never notices.  8 KiB per client, allocated on its first session.
 */
struct idseen {
	uint64_t *bits; /* CL_IDS_WINDOW bits, bit id % CL_IDS_WINDOW */
	uint32_t floor;
};

/* owner: its shard. */
struct client {
	struct client *next, *prev; /* eshard->clients */
	struct eshard *es;
	int fd;
	enum cl_mode mode;
	struct shard_recv rx;
	bool rx_running, rx_want;
	struct framer fr;
	struct sender out;
	struct link *link;
	bool relay;		  /* agent.sock client: attached at once, no management */
	uint32_t attach_id;	  /* request id of the attach being answered */
	unsigned pending;	  /* mreqs at the control thread */
	uint32_t refused;
	bool closing, close_when_flushed;
	struct idset live;
	struct idseen seen;	  /* gen-9 sandboxes: ids used on this connection */
	struct segq held;	  /* frames received while attaching */
	uint32_t held_ids[CL_PEND_MAX];
	uint8_t held_flags[CL_PEND_MAX];
	uint32_t held_len[CL_PEND_MAX];
	int held_type[CL_PEND_MAX];
	uint32_t nheld;
};

static void cl_close(struct client *cl, const char *why);
static void cl_maybe_free(struct client *cl);

/* ---- id set --------------------------------------------------------------- */

static uint32_t idset_hash(uint32_t id)
{
	return id * 2654435761u;
}

static bool idset_add(struct idset *s, uint32_t id)
{
	if (s->used + 1 > s->cap / 2) {
		uint32_t cap = s->cap ? s->cap * 2 : 64;
		uint32_t *v, *old = s->v, ocap = s->cap;

		if (s->n + 1 > CL_SESSIONS_MAX || !(v = calloc(cap, sizeof(*v))))
			return false;
		s->v = v;
		s->cap = cap;
		s->n = s->used = 0;
		for (uint32_t i = 0; i < ocap; i++)
			if (old[i] && old[i] != UINT32_MAX)
				idset_add(s, old[i]);
		free(old);
	}
	for (uint32_t i = idset_hash(id) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == id)
			return true;
		if (!s->v[i]) {
			s->v[i] = id;
			s->n++;
			s->used++;
			return true;
		}
	}
}

static void idset_del(struct idset *s, uint32_t id)
{
	if (!s->cap)
		return;
	for (uint32_t i = idset_hash(id) & (s->cap - 1); s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == id) {
			s->v[i] = UINT32_MAX;
			s->n--;
			return;
		}
}

/*
 * Note a session start on <id> (the client's ids begin at <lo>): false when
 * the id was used before on this connection.  Without memory for the
 * bitmap the check is skipped (true).
 */
static bool idseen_first_use(struct idseen *u, uint32_t lo, uint32_t id)
{
	uint32_t k;

	if (!u->bits) {
		if (!(u->bits = calloc(CL_IDS_WINDOW / 64, sizeof(*u->bits))))
			return true;
		u->floor = lo;
	}
	if (id < u->floor)
		return false;
	if (id - u->floor >= CL_IDS_WINDOW) {
		uint32_t nf = id - CL_IDS_WINDOW + 1;

		if (nf - u->floor >= CL_IDS_WINDOW)
			memset(u->bits, 0, CL_IDS_WINDOW / 8);
		else
			for (uint32_t x = u->floor; x != nf; x++)
				u->bits[(x % CL_IDS_WINDOW) / 64] &= ~(1ull << (x % 64));
		u->floor = nf;
	}
	k = id % CL_IDS_WINDOW;
	if (u->bits[k / 64] & (1ull << (k % 64)))
		return false;
	u->bits[k / 64] |= 1ull << (k % 64);
	return true;
}

/* ---- writing ------------------------------------------------------------------ */

static void cl_kick_write(struct client *cl);

static void cl_write_done(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	struct client *cl = (struct client *)((char *)op - offsetof(struct client, out.op));

	(void)s;
	if (sender_done(&cl->out, cqe) < 0) {
		cl->close_when_flushed = false;
		cl_close(cl, "write failed");
		cl_maybe_free(cl);
		return;
	}
	if (cl->closing && !cl->close_when_flushed) {
		cl_maybe_free(cl);
		return;
	}
	cl_kick_write(cl);
}

/* Write what is queued; a client closing after its last words is shut once they are out. */
static void cl_kick_write(struct client *cl)
{
	if (cl->closing && !cl->close_when_flushed)
		return;
	if (!sender_kick(&cl->out) && !cl->out.q.n && cl->close_when_flushed) {
		cl->close_when_flushed = false;
		shutdown(cl->fd, SHUT_RDWR);
		cl_maybe_free(cl);
	}
}

static void cl_wdefer(struct shard *s, struct shard_defer *d)
{
	(void)s;
	cl_kick_write((struct client *)((char *)d - offsetof(struct client, out.retry)));
}

/* Queue bytes the engine wrote (a heap copy). */
static void cl_send_own(struct client *cl, const void *p, size_t n)
{
	sender_push_copy(&cl->out, p, n);
}

static void cl_send_result_err(struct client *cl, uint32_t id, const char *err)
{
	uint8_t buf[1024];
	long n = engine_result(buf, sizeof(buf), id, err, NULL, NULL);

	if (n > 0)
		cl_send_own(cl, buf, (size_t)n);
}

static void cl_send_core_error(struct client *cl, uint32_t id, bool terminal, const char *text)
{
	uint8_t buf[600];
	struct proto_msg m = {.type = PROTO_T_ERROR};
	long n;

	m.u.error.kind = PROTO_ERROR_INVALID_SESSION;
	m.u.error.message = (struct proto_str){text, strlen(text)};
	n = proto_frame_encode(buf, sizeof(buf), id, &m);
	if (n <= 0)
		return;
	if (terminal)
		buf[8] |= PROTO_FLAG_TERMINAL;
	cl_send_own(cl, buf, (size_t)n);
}

/* ---- relay --------------------------------------------------------------------- */

/*
 * The type the relay needs to know of a client frame: session starts (exec
 * tracking) and, when the agent meters input, every frame (its class);
 * PROTO_T_UNKNOWN otherwise.
 */
static int cl_frame_type(const struct client *cl, const struct seg_frame *fr)
{
	bool window = cl->link && atomic_load_explicit(&cl->link->sb->window, memory_order_relaxed);

	return (fr->flags & PROTO_FLAG_SESSION_START) || window ? seg_frame_type(fr) : PROTO_T_UNKNOWN;
}

/* Check one frame of an attached client (<type>: cl_frame_type) and forward it. */
static void cl_relay_frame(struct client *cl, uint32_t id, uint8_t flags, int type, struct segq *q)
{
	struct link *l = cl->link;
	struct shard *s = cl->es->s;

	if (!(id >= l->id_lo && id < l->id_hi) && !(id == 0 && (flags & PROTO_FLAG_SHUTDOWN))) {
		char text[160];

		stat_add(&cl->es->st.refused, 1);
		segq_clear(q);
		snprintf(text, sizeof(text),
			"id %u is not this client's: its ids are %u..%u (frame refused)", id, l->id_lo,
			l->id_hi - 1);
		cl_send_core_error(cl, id, false, text);
		if (++cl->refused == 1)
			shard_log(s, SHARD_LOG_WARN, "sandbox %s: client sent a frame on id %u outside %u..%u",
				l->sb->name, id, l->id_lo, l->id_hi - 1);
		if (cl->refused >= ENGINE_REFUSED_KICK)
			cl_close(cl, "too many frames on ids that are not the client's");
		return;
	}
	if ((flags & PROTO_FLAG_SESSION_START) &&
		atomic_load_explicit(&l->sb->generation, memory_order_relaxed) >= CL_GEN_NO_REUSE &&
		!idseen_first_use(&cl->seen, l->id_lo, id)) {
		char text[200];

		stat_add(&cl->es->st.refused, 1);
		segq_clear(q);
		snprintf(text, sizeof(text),
			"id %u was already used on this connection; a generation-9 relay rejects reused "
			"ids (start each session on a fresh id): disconnecting",
			id);
		shard_log(s, SHARD_LOG_WARN, "sandbox %s: client %s", l->sb->name, text);
		cl_send_core_error(cl, id, true, text);
		cl->close_when_flushed = true;
		cl_close(cl, text);
		return;
	}
	if (flags & PROTO_FLAG_SESSION_START) {
		if (type == PROTO_T_EXEC_REQUEST)
			link_note_event(l, id, XEV_EXEC_START);
		idset_add(&cl->live, id);
	}
	if (flags & PROTO_FLAG_TERMINAL) {
		link_note_event(l, id, XEV_TERMINAL);
		idset_del(&cl->live, id);
	}
	stat_add(&cl->es->st.frames_out, 1);
	atomic_fetch_add_explicit(&l->sb->frames_out, 1, memory_order_relaxed);
	link_note_frame(l, (uint32_t)q->bytes,
		flags == PROTO_FLAG_BULK || proto_type_is_input_data((enum proto_type)type));
	link_send_to_console(s, l, q);
	if (cl->rx_want && link_should_pause(s, l)) {
		cl->rx_want = false;
		if (cl->rx_running)
			shard_recv_stop(s, &cl->rx);
	}
}

static void cl_resume(struct shard *s, struct link *l)
{
	struct client *cl = l->ep;

	if (!cl || cl->closing || cl->rx_want)
		return;
	cl->rx_want = true;
	if (!cl->rx_running && shard_recv_start(s, &cl->rx, cl->fd, cl->rx.fn) == 0)
		cl->rx_running = true;
}

static void cl_attached(struct shard *s, struct link *l)
{
	struct client *cl = l->ep;
	uint8_t hs[8];

	if (!cl || cl->closing) {
		if (l->attach_rc == 0)
			link_call_console(s, l, console_detach);
		return;
	}
	if (l->attach_rc < 0) {
		segq_clear(&cl->held);
		cl->nheld = 0;
		cl->mode = CL_MGMT; /* not attached: nothing to detach */
		if (cl->relay) {
			/* The reference relay closes without a word (spec 5.2); say why in the log. */
			shard_log(s, SHARD_LOG_WARN, "agent.sock client refused: %s", l->why);
			cl_close(cl, l->why);
			return;
		}
		cl_send_result_err(cl, cl->attach_id, l->why);
		cl->link->ep = NULL;
		link_put(cl->link);
		cl->link = NULL;
		return;
	}
	if (!cl->relay) {
		uint8_t buf[256];
		long n = engine_result(buf, sizeof(buf), cl->attach_id, NULL, NULL, NULL);

		if (n > 0)
			cl_send_own(cl, buf, (size_t)n);
	}
	for (int i = 0; i < 4; i++) {
		hs[i] = (uint8_t)(l->id_lo >> (24 - 8 * i));
		hs[4 + i] = (uint8_t)(l->id_hi >> (24 - 8 * i));
	}
	cl_send_own(cl, hs, sizeof(hs));
	sender_push_heap(&cl->out, l->ready_copy, l->ready_len);
	l->ready_copy = NULL;
	cl->mode = CL_RELAY;
	/* Frames that came while the attach was answered, in order. */
	for (uint32_t i = 0; i < cl->nheld && !cl->closing; i++) {
		struct segq q;
		uint32_t left = cl->held_len[i];

		segq_init(&q);
		while (left && cl->held.n) {
			struct seg sg = cl->held.v[cl->held.head];

			cl->held.head = (cl->held.head + 1) & (cl->held.cap - 1);
			cl->held.n--;
			cl->held.bytes -= sg.len;
			left -= sg.len;
			if (segq_push(&q, &sg) < 0)
				seg_release(&sg);
		}
		cl_relay_frame(cl, cl->held_ids[i], cl->held_flags[i], cl->held_type[i], &q);
	}
	segq_clear(&cl->held);
	cl->nheld = 0;
}

/* Frames from the console: tag each segment with the link for the queue accounting. */
static void cl_deliver(struct shard *s, struct link *l, struct xfer *x)
{
	struct client *cl = l->ep;

	(void)s;
	if (!cl || cl->closing || cl->mode != CL_RELAY) {
		atomic_fetch_sub(&l->to_ep, x->q.bytes);
		xfer_drop(x);
		return;
	}
	for (uint32_t i = 0; i < x->nev; i++)
		idset_del(&cl->live, x->ev[i].id);
	sender_take_xfer(&cl->out, x);
	xfer_drop(x);
	cl_kick_write(cl);
}

/* The sandbox went away: an error on every session the client has open, then close. */
static void cl_gone(struct shard *s, struct link *l)
{
	struct client *cl = l->ep;
	char text[420];

	(void)s;
	if (!cl || cl->closing)
		return;
	snprintf(text, sizeof(text), "sandbox %s: %s; the session is lost", l->sb->name, l->why);
	for (uint32_t i = 0; i < cl->live.cap; i++)
		if (cl->live.v[i] && cl->live.v[i] != UINT32_MAX)
			cl_send_core_error(cl, cl->live.v[i], true, text);
	cl_send_core_error(cl, 0, false, text);
	cl->close_when_flushed = true;
	cl_close(cl, l->why);
}

static const struct link_ops client_link_ops = {
	.attached = cl_attached,
	.deliver = cl_deliver,
	.gone = cl_gone,
	.resume = cl_resume,
};

/* Start attaching to <sb> (a reference moves in); <req_id> answers a management request. */
static void cl_attach(struct client *cl, struct sandbox *sb, uint32_t req_id)
{
	struct link *l = link_new(LINK_CLIENT, &client_link_ops, cl->es->s, cl, sb);

	sandbox_put(sb);
	if (!l) {
		cl_close(cl, "out of memory");
		return;
	}
	cl->link = l;
	cl->mode = CL_ATTACHING;
	cl->attach_id = req_id;
	if (link_call_console(cl->es->s, l, console_attach) < 0)
		cl_close(cl, "out of memory");
}

/* ---- management ----------------------------------------------------------------- */

static void cl_mgmt_frame(struct client *cl, struct seg_frame *fr)
{
	size_t n = (size_t)fr->len + PROTO_LEN_SIZE;
	uint8_t *flat = NULL;
	struct proto_env env;
	struct mreq *m = NULL;
	enum engine_verb v;
	char err[200];

	if (n > ENGINE_REQ_MAX) {
		snprintf(err, sizeof(err), "request of %zu bytes is over the limit of %u", n,
			ENGINE_REQ_MAX);
		cl_send_result_err(cl, fr->id, err);
		goto out;
	}
	flat = malloc(n);
	if (!flat)
		goto out;
	seg_frame_peek(fr, flat, n); /* a request, not payload: not a counted copy */
	if (proto_env_decode(flat + PROTO_HDR_SIZE, n - PROTO_HDR_SIZE, NULL, &env, NULL) < 0 &&
		!env.t.len) {
		cl_send_result_err(cl, fr->id, "undecodable request: not a {v, t, p} CBOR envelope");
		goto out;
	}
	v = engine_verb_lookup(env.t.ptr, env.t.len);
	if (v == ENGINE_V_UNKNOWN) {
		snprintf(err, sizeof(err),
			"unknown request type \"%.*s\": this connection is not attached; send "
			"sandwire.engine.* requests (attach first to talk to an agent)",
			(int)(env.t.len > 64 ? 64 : env.t.len), env.t.ptr);
		cl_send_result_err(cl, fr->id, err);
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->payload = malloc(env.p_len ? env.p_len : 1))) {
		free(m);
		goto out;
	}
	memcpy(m->payload, env.p, env.p_len);
	m->payload_len = env.p_len;
	m->cl = cl;
	m->shard = cl->es->s;
	m->id = fr->id;
	m->verb = v;
	cl->pending++;
	if (v == ENGINE_V_ATTACH)
		cl->mode = CL_ATTACHING;
	control_post(cl->es->e, m);
out:
	free(flat);
	seg_frame_release(fr);
}

void client_mreq_done(struct shard *s, void *arg)
{
	struct mreq *m = arg;
	struct client *cl = m->cl;

	(void)s;
	cl->pending--;
	if (cl->closing) {
		mreq_free(m);
		cl_maybe_free(cl);
		return;
	}
	if (m->verb == ENGINE_V_ATTACH && m->sb) {
		struct sandbox *sb = m->sb;

		m->sb = NULL;
		cl_attach(cl, sb, m->id);
	} else {
		if (m->verb == ENGINE_V_ATTACH) {
			cl->mode = CL_MGMT;
			segq_clear(&cl->held);
			cl->nheld = 0;
		}
		if (m->reply) {
			sender_push_heap(&cl->out, m->reply, m->reply_len);
			m->reply = NULL;
		}
	}
	mreq_free(m);
}

/* ---- reading ---------------------------------------------------------------------- */

static void cl_hold(struct client *cl, struct seg_frame *fr)
{
	if (cl->nheld == CL_PEND_MAX) {
		seg_frame_release(fr);
		cl_close(cl, "too many frames sent before the attach was answered");
		return;
	}
	cl->held_ids[cl->nheld] = fr->id;
	cl->held_flags[cl->nheld] = fr->flags;
	cl->held_len[cl->nheld] = fr->len + PROTO_LEN_SIZE;
	/* sized as a session start or as input when replayed (the window is known by then) */
	cl->held_type[cl->nheld] = seg_frame_type(fr);
	cl->nheld++;
	for (uint32_t i = 0; i < fr->nseg; i++)
		if (segq_push(&cl->held, &fr->seg[i]) < 0)
			seg_release(&fr->seg[i]);
}

static void cl_frame(void *ctx, struct seg_frame *fr)
{
	struct client *cl = ctx;
	struct segq q;

	if (cl->closing) {
		seg_frame_release(fr);
		return;
	}
	switch (cl->mode) {
	case CL_MGMT:
		cl_mgmt_frame(cl, fr);
		return;
	case CL_ATTACHING:
		cl_hold(cl, fr);
		return;
	case CL_RELAY:
		break;
	}
	segq_init(&q);
	for (uint32_t i = 0; i < fr->nseg; i++)
		if (segq_push(&q, &fr->seg[i]) < 0)
			seg_release(&fr->seg[i]);
	cl_relay_frame(cl, fr->id, fr->flags, cl_frame_type(cl, fr), &q);
}

static void cl_rx(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	struct client *cl = (struct client *)((char *)r - offsetof(struct client, rx));
	int rc;

	if (c) {
		if (cl->closing) {
			chunk_put(c);
			return;
		}
		rc = framer_feed(&cl->fr, c, cl_frame, cl);
		if (rc < 0)
			cl_close(cl, rc == -ENOMEM ? "out of memory" : proto_strerror(rc));
		return;
	}
	cl->rx_running = false;
	if (res == -ECANCELED && !cl->closing) {
		if (cl->rx_want && shard_recv_start(s, &cl->rx, cl->fd, cl_rx) == 0)
			cl->rx_running = true;
		return;
	}
	if (!cl->closing)
		cl_close(cl, res == 0 ? "closed by the client" : strerror(-res));
	cl_maybe_free(cl);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void cl_close(struct client *cl, const char *why)
{
	struct shard *s = cl->es->s;

	if (cl->closing)
		return;
	cl->closing = true;
	shard_log(s, SHARD_LOG_DEBUG, "client fd %d: %s", cl->fd, why);
	cl->rx_want = false;
	if (cl->rx_running)
		shard_recv_stop(s, &cl->rx);
	if (cl->link) {
		cl->link->ep = NULL;
		if (cl->mode != CL_MGMT)
			link_call_console(s, cl->link, console_detach);
		link_put(cl->link);
		cl->link = NULL;
	}
	if (!cl->close_when_flushed)
		sender_cancel(&cl->out);
	segq_clear(&cl->held);
	cl->nheld = 0;
	cl_kick_write(cl);
}

static void cl_maybe_free(struct client *cl)
{
	struct eshard *es = cl->es;

	if (!cl->closing || cl->rx_running || sender_busy(&cl->out) || cl->pending ||
		cl->close_when_flushed)
		return;
	sender_destroy(&cl->out);
	framer_destroy(&cl->fr);
	free(cl->live.v);
	free(cl->seen.bits);
	close(cl->fd);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		es->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	stat_add(&es->st.clients, (uint64_t)-1);
	free(cl);
}

static struct client *cl_new(struct shard *s, int fd)
{
	struct eshard *es = eshard_of(s);
	struct client *cl = calloc(1, sizeof(*cl));

	if (!cl) {
		close(fd);
		return NULL;
	}
	cl->es = es;
	cl->fd = fd;
	framer_init(&cl->fr, PROTO_MAX_FRAME_LEN);
	segq_init(&cl->held);
	sender_init(&cl->out, s, fd, false, cl_write_done, cl_wdefer);
	cl->next = es->clients;
	if (es->clients)
		es->clients->prev = cl;
	es->clients = cl;
	stat_add(&es->st.clients, 1);
	cl->rx.fn = cl_rx;
	cl->rx_want = true;
	if (shard_recv_start(s, &cl->rx, fd, cl_rx) == 0)
		cl->rx_running = true;
	else
		cl_close(cl, "cannot start receiving");
	return cl;
}

void client_adopt(struct shard *s, int fd)
{
	struct client *cl = cl_new(s, fd);

	if (cl)
		cl_maybe_free(cl);
}

void client_adopt_relay(struct shard *s, int fd, struct sandbox *sb)
{
	struct client *cl = cl_new(s, fd);

	if (!cl || cl->closing) {
		sandbox_put(sb);
		if (cl)
			cl_maybe_free(cl);
		return;
	}
	cl->relay = true;
	cl_attach(cl, sb, 0);
}

void client_close_all(struct eshard *es)
{
	struct client *cl, *next;

	for (cl = es->clients; cl; cl = next) {
		next = cl->next;
		cl->close_when_flushed = false;
		cl_close(cl, "the daemon is stopping");
		cl_maybe_free(cl);
	}
}
