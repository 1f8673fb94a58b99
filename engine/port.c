/*
 * engine/port.c - published ports: one SO_REUSEPORT listener per shard for
 * each [IP:]HOST_PORT:GUEST_PORT; every accepted connection becomes a
 * core.tcp.connect stream to 127.0.0.1:GUEST_PORT dialled by the agent.
 *
 * Host -> guest: the kernel receives into a chunk; the tcp.data header is
 * written into the chunk's headroom and the chunk goes to the console by
 * reference.  Guest -> host: the payload of a canonical tcp.data frame is
 * written to the socket straight from the console's receive chunks (the
 * prefix is skipped); a non-canonical frame is decoded and copied (counted).
 * Half-close travels both ways as core.tcp.eof.
 *
 * With a generation-8+ agent the connect offers raw bulk (G5.1) and, once
 * accepted, both directions move as raw records under absolute credit:
 * host bytes become records by writing the 21-byte prefix into the
 * receive chunk's headroom, the chunks of one turn gathered into records
 * of up to the negotiated limit, sent only as far as the agent's grant
 * reaches (past it they wait and reading stops); guest records are
 * written from the console's chunks and credit is granted back as the
 * host peer's socket takes the bytes.  Finish replaces tcp.eof both ways;
 * a bad record or credit fails only this stream (bulk.cancel reason 5).
 *
 * owner: struct port, the control thread (counters are atomics); a
 * listener and a connection, the shard they run on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/sender.h"
#include "proto/bulk.h"
#include "proto/data.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"

#define PORT_BACKLOG 1024

/* owner: its shard. */
struct port_listener {
	struct port_listener *next;
	struct eshard *es;
	struct port *p; /* a reference */
	int fd;
	struct shard_accept acc;
};

/* How the stream's bytes travel. */
enum pc_data {
	PC_DATA_CBOR,	 /* core.tcp.data / core.tcp.eof (a gen-7 agent, or one that ignored the offer) */
	PC_DATA_OFFERED, /* bulk offered, tcp.connected seen, waiting for core.bulk.accepted */
	PC_DATA_BULK,	 /* raw records and core.bulk.* only */
};

/* owner: its shard. */
struct pconn {
	struct pconn *next, *prev;
	struct eshard *es;
	int fd;
	struct port *p; /* a reference */
	struct link *link;
	struct shard_recv rx;
	bool rx_running, rx_want;
	bool connected;	 /* tcp.connected seen */
	bool rd_eof;	 /* the host peer half-closed (a read returned 0) */
	bool host_eof;	 /* ... and tcp.eof or bulk.finish went to the guest */
	bool guest_eof;	 /* tcp.eof from the guest: shut our write side once flushed */
	bool wr_shut;	 /* ... done: both directions finished once host_eof too */
	bool ended;	 /* the stream is over (closed, failed, error) */
	bool closing;
	struct framer fr;
	struct sender out; /* payload toward the host peer */
	enum pc_data data;
	struct proto_bulk_tx h2g; /* PC_DATA_BULK: host bytes -> records, within the agent's grant */
	struct proto_bulk_rx g2h; /* PC_DATA_BULK: records -> host peer, granted as it takes them */
	struct segq wait;	  /* host bytes received, not yet sent as records */
	struct shard_defer bulk_flush; /* sends <wait> once a turn: records up to the limit */
};

static void port_get(struct port *p)
{
	atomic_fetch_add(&p->refs, 1);
}

static void port_put(struct port *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	sandbox_put(p->sb);
	free(p->fds);
	free(p);
}

static void pc_close(struct pconn *pc, bool reset);
static void pc_maybe_free(struct pconn *pc);
static void pc_kick_write(struct pconn *pc);
static void pc_bulk_grant(struct pconn *pc);
static void pc_send_msg(struct pconn *pc, const struct proto_msg *m);

/* ---- writing to the host peer --------------------------------------------------- */

static void pc_write_done(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	struct pconn *pc = (struct pconn *)((char *)op - offsetof(struct pconn, out.op));

	(void)s;
	if (sender_done(&pc->out, cqe) < 0) {
		pc_close(pc, true);
		pc_maybe_free(pc);
		return;
	}
	pc_bulk_grant(pc);
	pc_kick_write(pc);
	if (pc->closing)
		pc_maybe_free(pc);
}

/* Write what is queued; once it is all out, half-close or close as the guest asked. */
static void pc_kick_write(struct pconn *pc)
{
	if (pc->closing || sender_kick(&pc->out) || pc->out.q.n)
		return;
	if (pc->guest_eof && !pc->wr_shut) {
		shutdown(pc->fd, SHUT_WR);
		pc->wr_shut = true;
	}
	/* Both ways finished (the agent then waits for tcp.close: spec 4.6), or ended. */
	if (pc->ended || (pc->wr_shut && pc->host_eof))
		pc_close(pc, false);
}

static void pc_wdefer(struct shard *s, struct shard_defer *d)
{
	struct pconn *pc = (struct pconn *)((char *)d - offsetof(struct pconn, out.retry));

	(void)s;
	pc_kick_write(pc);
	if (pc->closing)
		pc_maybe_free(pc);
}

/* ---- frames from the guest ------------------------------------------------------------- */

/*
 * Bytes in front of the payload when <fr> is a canonical core.tcp.data
 * frame (what the reference and sandwire-agent write), else 0.
 */
static size_t data_prefix(const struct seg_frame *fr, const uint8_t *head, size_t nhead)
{
	size_t total = (size_t)fr->len + PROTO_LEN_SIZE;
	uint8_t want[64];

	for (size_t p = 24; p <= 60 && p <= total && p <= nhead; p++) {
		size_t pl = total - p;
		long n;

		if (proto_data_prefix_size(PROTO_T_TCP_DATA, pl) != p)
			continue;
		n = proto_data_prefix_write(want, sizeof(want), PROTO_T_TCP_DATA, fr->id, pl);
		/* any generation in "v" (one byte after a3 61 76): 0.7 agents write 9 */
		if (n == (long)p && head[PROTO_HDR_SIZE + 3] <= 0x17)
			want[PROTO_HDR_SIZE + 3] = head[PROTO_HDR_SIZE + 3];
		if (n == (long)p && !memcmp(want, head, p))
			return p;
	}
	return 0;
}

/* Queue the payload of data frame <fr> (segments after <skip> bytes) for the socket. */
static void pc_queue_payload(struct pconn *pc, struct seg_frame *fr, size_t skip)
{
	for (uint32_t i = 0; i < fr->nseg; i++) {
		struct seg *sg = &fr->seg[i];

		if (skip >= sg->len) {
			skip -= sg->len;
			atomic_fetch_sub(&pc->link->to_ep, sg->len);
			seg_release(sg);
			continue;
		}
		sg->p += skip;
		atomic_fetch_sub(&pc->link->to_ep, skip);
		sg->len -= (uint32_t)skip;
		skip = 0;
		link_get(pc->link);
		sg->tag = pc->link;
		if (segq_push(&pc->out.q, sg) < 0) {
			link_account(pc->es->s, sg, sg->len, false);
			seg_release(sg);
		}
	}
}

/* True when the host bytes waiting already fill the agent's grant. */
static bool pc_bulk_blocked(const struct pconn *pc)
{
	return pc->data == PC_DATA_BULK &&
	       pc->wait.bytes >= pc->h2g.credit_limit - pc->h2g.next_offset;
}

/* Read the host peer, unless its bytes could not go anywhere yet (no acceptance, no credit). */
static void pc_start_reading(struct pconn *pc)
{
	struct shard *s = pc->es->s;

	if (pc->closing || pc->rd_eof || pc->data == PC_DATA_OFFERED || pc_bulk_blocked(pc))
		return;
	pc->rx_want = true;
	if (!pc->rx_running && shard_recv_start(s, &pc->rx, pc->fd, pc->rx.fn) == 0)
		pc->rx_running = true;
}

/* CBOR data from the guest before any acceptance: an agent that ignored the offer (G4.8). */
static void pc_cbor_data_seen(struct pconn *pc)
{
	if (pc->data != PC_DATA_OFFERED)
		return;
	pc->data = PC_DATA_CBOR;
	pc_start_reading(pc);
}

/* ---- raw bulk (protocol-gen9.md G4, G5.1) ------------------------------------------------ */

/* A fault on the stream's bulk flows: cancel with reason 5 and reset; only this stream ends. */
static void pc_bulk_fail(struct pconn *pc, const char *what, int rc)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL};
	char msg[160];

	snprintf(msg, sizeof(msg), "%s: %s", what, proto_strerror(rc));
	shard_log(pc->es->s, SHARD_LOG_WARN, "published port %u -> guest %u: %s; stream reset",
		pc->p->spec.host_port, pc->p->spec.guest_port, msg);
	stat_add(&pc->es->st.drops, 1);
	m.u.bulk_cancel = (struct proto_bulk_cancel){
		PROTO_BULK_KIND_TCP, PROTO_BULK_CANCEL_PROTOCOL, {msg, strlen(msg)}};
	pc_send_msg(pc, &m);
	pc->ended = true;
	pc_close(pc, true);
}

/* core.bulk.accepted: check it against the console's offer (G4.2) and open both flows. */
static void pc_bulk_open(struct pconn *pc, const struct proto_bulk_accepted *a)
{
	const struct proto_bulk_offer offer = ENGINE_PORT_BULK_OFFER;
	int rc = pc->data == PC_DATA_OFFERED ? 0 : PROTO_E_BULK_MISMATCH;

	if (!rc)
		rc = proto_bulk_accepted_check(a, &offer, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP);
	if (!rc)
		rc = proto_bulk_tx_init(&pc->h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			a->max_record_payload, a->host_to_guest_credit_limit);
	if (!rc)
		rc = proto_bulk_rx_init(&pc->g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H,
			a->max_record_payload, offer.guest_to_host_credit_limit, ENGINE_PORT_BULK_WINDOW);
	if (rc < 0) {
		pc_bulk_fail(pc, "bulk acceptance", rc);
		return;
	}
	pc->data = PC_DATA_BULK;
	stat_add(&pc->es->st.bulk_streams, 1);
	pc_start_reading(pc);
}

/* Tell the guest the host peer is done sending: bulk.finish after the last record, or tcp.eof. */
static void pc_send_eof(struct pconn *pc)
{
	struct proto_msg m = {.type = PROTO_T_TCP_EOF};

	if (pc->host_eof || (pc->data == PC_DATA_BULK && pc->wait.n))
		return; /* sent, or the records before it still wait for credit */
	if (pc->data == PC_DATA_BULK) {
		m.type = PROTO_T_BULK_FINISH;
		proto_bulk_tx_finish(&pc->h2g, &m.u.bulk_finish);
	}
	pc->host_eof = true;
	pc_send_msg(pc, &m);
}

/*
 * Send the host bytes waiting in <wait> as records of up to the record
 * limit, as far as the agent's credit reaches: a record is one prefix and
 * the receive chunks (or parts of them) its payload spans.  When it starts
 * with an untouched chunk the prefix goes into that chunk's headroom, else
 * it is a small segment of its own: payload is never copied.  Then the
 * finish, once nothing waits and the host peer half-closed.
 */
static void pc_bulk_flush(struct pconn *pc)
{
	struct shard *s = pc->es->s;
	struct link *l = pc->link;
	struct segq q;
	uint32_t room;

	segq_init(&q);
	while (pc->wait.n && (room = proto_bulk_tx_room(&pc->h2g)) > 0) {
		uint32_t n = pc->wait.bytes < room ? (uint32_t)pc->wait.bytes : room, left = n;
		struct proto_bulk_rec r = {l->id_lo, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, n};
		struct seg *w = segq_head(&pc->wait), sg;

		proto_bulk_tx_admit(&pc->h2g, n, &r.offset);
		if (w->p == chunk_ptr(w->c) && w->len <= n &&
			chunk_headroom(w->c) >= PROTO_BULK_PREFIX_SIZE) {
			segq_shift(&pc->wait, &sg);
			left -= sg.len;
			proto_bulk_prefix_write(
				chunk_push_front(sg.c, PROTO_BULK_PREFIX_SIZE), PROTO_BULK_PREFIX_SIZE, &r);
			sg.p = chunk_ptr(sg.c);
			sg.len = sg.c->len;
		} else {
			uint8_t prefix[PROTO_BULK_PREFIX_SIZE];

			proto_bulk_prefix_write(prefix, sizeof(prefix), &r);
			if (!(sg = seg_heap_copy(prefix, sizeof(prefix))).p)
				goto nomem;
		}
		for (;;) {
			if (segq_push(&q, &sg) < 0) {
				seg_release(&sg);
				goto nomem;
			}
			if (!left)
				break;
			w = segq_head(&pc->wait);
			if (w->len <= left) {
				segq_shift(&pc->wait, &sg);
			} else { /* the record ends inside this chunk: the rest waits */
				chunk_ref(w->c);
				sg = (struct seg){.c = w->c, .p = w->p, .len = left};
				w->p += left;
				w->len -= left;
				pc->wait.bytes -= left;
			}
			left -= sg.len;
		}
		link_note_frame(l, PROTO_BULK_PREFIX_SIZE + n, true);
		stat_add(&pc->es->st.frames_out, 1);
		atomic_fetch_add_explicit(&l->sb->frames_out, 1, memory_order_relaxed);
	}
	if (q.n)
		link_send_to_console(s, l, &q);
	if (pc->rd_eof)
		pc_send_eof(pc);
	return;
nomem:
	/* The stream's offsets moved past bytes that cannot be sent: it cannot go on. */
	segq_clear(&q);
	pc_close(pc, true);
}

static void pc_bulk_flush_deferred(struct shard *s, struct shard_defer *d)
{
	struct pconn *pc = (struct pconn *)((char *)d - offsetof(struct pconn, bulk_flush));

	(void)s;
	if (!pc->closing)
		pc_bulk_flush(pc);
	if (pc->closing)
		pc_maybe_free(pc);
}

/* Grant the guest more room as the host peer's socket takes its bytes (G4.4). */
static void pc_bulk_grant(struct pconn *pc)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT};

	if (pc->closing || pc->data != PC_DATA_BULK || pc->g2h.finished)
		return;
	/* Everything queued for the socket is record payload: what left it is consumed. */
	if (proto_bulk_rx_consume(&pc->g2h, pc->g2h.next_expected - pc->out.q.bytes,
		    &m.u.bulk_credit) == 1)
		pc_send_msg(pc, &m);
}

/* A raw record from the guest: check it against the g2h flow and queue its payload. */
static void pc_bulk_record(struct pconn *pc, struct seg_frame *fr, const uint8_t *head, size_t nhead)
{
	struct proto_bulk_rec r;
	int rc = proto_bulk_prefix_parse(head, nhead, &r);

	if (rc == PROTO_BULK_PREFIX_SIZE)
		rc = pc->data == PC_DATA_BULK ? proto_bulk_rx_record(&pc->g2h, &r) :
						PROTO_E_BULK_MISMATCH;
	if (rc < 0) {
		atomic_fetch_sub(&pc->link->to_ep, (size_t)fr->len + PROTO_LEN_SIZE);
		seg_frame_release(fr);
		pc_bulk_fail(pc, "raw record from the guest", rc);
		return;
	}
	pc_queue_payload(pc, fr, PROTO_BULK_PREFIX_SIZE);
	pc_kick_write(pc);
}

/* A core.bulk.* frame from the guest. */
static void pc_bulk_control(struct pconn *pc, const struct proto_msg *m)
{
	int rc = pc->data == PC_DATA_BULK ? 0 : PROTO_E_BULK_MISMATCH;

	switch (m->type) {
	case PROTO_T_BULK_ACCEPTED:
		pc_bulk_open(pc, &m->u.bulk_accepted);
		return;
	case PROTO_T_BULK_CREDIT:
		if (!rc)
			rc = proto_bulk_tx_credit(&pc->h2g, &m->u.bulk_credit);
		if (rc < 0)
			break;
		pc_bulk_flush(pc);
		if (!pc->closing && !atomic_load(&pc->link->ep_paused))
			pc_start_reading(pc);
		return;
	case PROTO_T_BULK_FINISH: /* the guest's destination sent FIN */
		if (!rc)
			rc = proto_bulk_rx_finish(&pc->g2h, &m->u.bulk_finish);
		if (rc < 0)
			break;
		pc->guest_eof = true;
		return;
	default: /* PROTO_T_BULK_CANCEL */
		shard_log(pc->es->s, SHARD_LOG_INFO, "published port %u -> guest %u: agent cancelled: %.*s",
			pc->p->spec.host_port, pc->p->spec.guest_port,
			(int)m->u.bulk_cancel.message.len, m->u.bulk_cancel.message.ptr);
		pc->ended = true;
		pc_close(pc, true);
		return;
	}
	pc_bulk_fail(pc, proto_type_name(m->type), rc);
}

static void pc_frame(void *ctx, struct seg_frame *fr)
{
	struct pconn *pc = ctx;
	struct shard *s = pc->es->s;
	size_t total = (size_t)fr->len + PROTO_LEN_SIZE, skip;
	uint8_t head[64], *flat = NULL;
	struct proto_frame f;
	struct proto_msg m;
	size_t nhead = seg_frame_peek(fr, head, sizeof(head));

	if (pc->closing) {
		atomic_fetch_sub(&pc->link->to_ep, total);
		seg_frame_release(fr);
		return;
	}
	if (fr->flags & PROTO_FLAG_BULK) {
		pc_bulk_record(pc, fr, head, nhead);
		return;
	}
	if (pc->data != PC_DATA_BULK && (skip = data_prefix(fr, head, nhead)) > 0) {
		pc_cbor_data_seen(pc);
		pc_queue_payload(pc, fr, skip);
		pc_kick_write(pc);
		return;
	}
	/* Control frames (small) and non-canonical data frames: decode a flat copy. */
	atomic_fetch_sub(&pc->link->to_ep, total);
	flat = malloc(total);
	if (!flat) {
		seg_frame_release(fr);
		pc_close(pc, true);
		return;
	}
	seg_frame_peek(fr, flat, total);
	seg_frame_release(fr);
	if (proto_frame_parse(flat, total, &f) <= 0 || proto_frame_decode(&f, &m, NULL, NULL) < 0) {
		stat_add(&pc->es->st.drops, 1);
		goto out;
	}
	switch (m.type) {
	case PROTO_T_TCP_CONNECTED:
		pc->connected = true;
		pc->data = pc->link->bulk_offer ? PC_DATA_OFFERED : PC_DATA_CBOR;
		pc_start_reading(pc);
		break;
	case PROTO_T_TCP_DATA:
	case PROTO_T_TCP_EOF:
		if (pc->data == PC_DATA_BULK) {
			pc_bulk_fail(pc, "CBOR TCP data after the raw bulk acceptance", PROTO_E_BULK_MISMATCH);
			goto out;
		}
		pc_cbor_data_seen(pc);
		if (m.type == PROTO_T_TCP_EOF) {
			pc->guest_eof = true;
			break;
		}
		stat_add(&pc->es->st.copies, 1);
		stat_add(&pc->es->st.copy_bytes, m.u.data.len);
		sender_push_copy(&pc->out, m.u.data.ptr, m.u.data.len);
		break;
	case PROTO_T_BULK_ACCEPTED:
	case PROTO_T_BULK_CREDIT:
	case PROTO_T_BULK_FINISH:
	case PROTO_T_BULK_CANCEL:
		pc_bulk_control(pc, &m);
		if (pc->closing)
			goto out;
		break;
	case PROTO_T_TCP_FAILED:
		shard_log(s, SHARD_LOG_INFO, "published port %u -> guest %u: %.*s", pc->p->spec.host_port,
			pc->p->spec.guest_port, (int)m.u.tcp_failed.error.len, m.u.tcp_failed.error.ptr);
		pc->ended = true;
		pc_close(pc, true);
		goto out;
	case PROTO_T_TCP_CLOSED:
	case PROTO_T_ERROR:
		pc->ended = true;
		break;
	default:
		stat_add(&pc->es->st.drops, 1);
		break;
	}
	pc_kick_write(pc);
out:
	free(flat);
}

static void pc_deliver(struct shard *s, struct link *l, struct xfer *x)
{
	struct pconn *pc = l->ep;

	(void)s;
	if (!pc || pc->closing) {
		atomic_fetch_sub(&l->to_ep, x->q.bytes);
		xfer_drop(x);
		return;
	}
	while (x->q.n) {
		struct seg sg;

		segq_shift(&x->q, &sg);
		if (framer_feed_seg(&pc->fr, &sg, pc_frame, pc) < 0) {
			pc_close(pc, true);
			break;
		}
	}
	if (x->q.n)
		atomic_fetch_sub(&l->to_ep, x->q.bytes);
	xfer_drop(x);
	if (pc->closing)
		pc_maybe_free(pc);
}

/* ---- frames to the guest ------------------------------------------------------------------- */

/* A frame of the engine's own (tcp.eof, core.bulk.*) on the stream's id. */
static void pc_send_msg(struct pconn *pc, const struct proto_msg *m)
{
	uint8_t buf[256];
	long n = proto_frame_encode(buf, sizeof(buf), pc->link->id_lo, m);

	if (n <= 0)
		return;
	link_note_frame(pc->link, (uint32_t)n, proto_type_is_input_data(m->type));
	link_send_frame_to_console(pc->es->s, pc->link, buf, (size_t)n);
}

static void pc_rx(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	struct pconn *pc = (struct pconn *)((char *)r - offsetof(struct pconn, rx));
	struct link *l = pc->link;
	struct segq q;
	struct seg sg;

	if (c) {
		if (pc->closing) {
			chunk_put(c);
			return;
		}
		sg = (struct seg){.c = c, .p = chunk_ptr(c), .len = c->len};
		if (pc->data == PC_DATA_BULK) {
			if (segq_push(&pc->wait, &sg) < 0) {
				chunk_put(c);
				pc_close(pc, true);
				return;
			}
			shard_defer(s, &pc->bulk_flush); /* the turn's chunks go out together */
		} else {
			segq_init(&q);
			if (proto_data_frame_prepend(c, PROTO_T_TCP_DATA, l->id_lo) < 0 ||
				(sg.p = chunk_ptr(c), sg.len = c->len, segq_push(&q, &sg) < 0)) {
				chunk_put(c);
				return;
			}
			stat_add(&pc->es->st.frames_out, 1);
			atomic_fetch_add_explicit(&l->sb->frames_out, 1, memory_order_relaxed);
			link_note_frame(l, c->len, true);
			link_send_to_console(s, l, &q);
		}
		/* Past the agent's grant, or too much queued toward the guest: stop reading. */
		if (pc->rx_want && (pc_bulk_blocked(pc) || link_should_pause(s, l))) {
			pc->rx_want = false;
			shard_recv_stop(s, &pc->rx);
		}
		return;
	}
	pc->rx_running = false;
	if (pc->closing) {
		pc_maybe_free(pc);
		return;
	}
	if (res == -ECANCELED) {
		if (pc->rx_want)
			pc_start_reading(pc);
		return;
	}
	if (res == 0) { /* the host peer half-closed */
		pc->rd_eof = true;
		pc_send_eof(pc);
		pc_kick_write(pc);
		if (pc->closing)
			pc_maybe_free(pc);
		return;
	}
	pc_close(pc, true); /* reset: the console detach sends tcp.close */
	pc_maybe_free(pc);
}

static void pc_resume(struct shard *s, struct link *l)
{
	struct pconn *pc = l->ep;

	(void)s;
	if (pc && !pc->rx_want && pc->connected)
		pc_start_reading(pc);
}

static void pc_attached(struct shard *s, struct link *l)
{
	struct pconn *pc = l->ep;

	if (!pc || pc->closing) {
		if (l->attach_rc == 0)
			link_call_console(s, l, console_detach);
		return;
	}
	if (l->attach_rc < 0) {
		shard_log(s, SHARD_LOG_WARN, "published port %u: %s", pc->p->spec.host_port, l->why);
		pc_close(pc, true);
		pc_maybe_free(pc);
	}
}

static void pc_gone(struct shard *s, struct link *l)
{
	struct pconn *pc = l->ep;

	(void)s;
	if (!pc || pc->closing)
		return;
	pc_close(pc, true);
	pc_maybe_free(pc);
}

const struct link_ops pconn_link_ops = {
	.attached = pc_attached,
	.deliver = pc_deliver,
	.gone = pc_gone,
	.resume = pc_resume,
};

/* ---- connection lifecycle -------------------------------------------------------------------- */

static void pc_close(struct pconn *pc, bool reset)
{
	struct shard *s = pc->es->s;

	if (pc->closing)
		return;
	pc->closing = true;
	if (reset) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(pc->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	pc->rx_want = false;
	if (pc->rx_running)
		shard_recv_stop(s, &pc->rx);
	sender_cancel(&pc->out);
	pc->link->ep = NULL;
	link_call_console(s, pc->link, console_detach);
}

static void pc_maybe_free(struct pconn *pc)
{
	struct eshard *es = pc->es;

	if (!pc->closing || pc->rx_running || sender_busy(&pc->out))
		return;
	sender_destroy(&pc->out);
	shard_defer_cancel(es->s, &pc->bulk_flush);
	segq_clear(&pc->wait);
	framer_destroy(&pc->fr);
	link_put(pc->link);
	close(pc->fd);
	atomic_fetch_sub(&pc->p->active, 1);
	port_put(pc->p);
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		es->pconns = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	stat_add(&es->st.port_conns, (uint64_t)-1);
	free(pc);
}

static void pc_new(struct eshard *es, struct port *p, int fd)
{
	struct shard *s = es->s;
	struct pconn *pc = calloc(1, sizeof(*pc));

	if (!pc || !(pc->link = link_new(LINK_PORT, &pconn_link_ops, s, pc, p->sb))) {
		free(pc);
		close(fd);
		atomic_fetch_add(&p->refused, 1);
		return;
	}
	port_get(p);
	atomic_fetch_add(&p->active, 1);
	atomic_fetch_add(&p->accepted, 1);
	pc->es = es;
	pc->fd = fd;
	pc->p = p;
	framer_init(&pc->fr, PROTO_MAX_FRAME_LEN);
	sender_init(&pc->out, s, fd, false, pc_write_done, pc_wdefer);
	shard_defer_init(&pc->bulk_flush, pc_bulk_flush_deferred);
	pc->rx.fn = pc_rx;
	snprintf(pc->link->port_host, sizeof(pc->link->port_host), "127.0.0.1");
	pc->link->port_guest = p->spec.guest_port;
	pc->next = es->pconns;
	if (es->pconns)
		es->pconns->prev = pc;
	es->pconns = pc;
	stat_add(&es->st.port_conns, 1);
	if (link_call_console(s, pc->link, console_attach) < 0) {
		pc_close(pc, true);
		pc_maybe_free(pc);
	}
}

/* ---- listeners ------------------------------------------------------------------------------------ */

static void pl_accept(struct shard *s, struct shard_accept *a, int res)
{
	struct port_listener *pl = (struct port_listener *)((char *)a - offsetof(struct port_listener, acc));
	struct port *p = pl->p;

	if (res >= 0) {
		if (atomic_load(&p->active) >= p->spec.limit) {
			struct linger lg = {.l_onoff = 1, .l_linger = 0};

			setsockopt(res, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(res);
			if (atomic_fetch_add(&p->refused, 1) == 0)
				shard_log(s, SHARD_LOG_WARN,
					"published port %u: connection limit %u reached; refusing (counted)",
					p->spec.host_port, p->spec.limit);
			return;
		}
		pc_new(pl->es, p, res);
		return;
	}
	if (res != -ECANCELED && !pl->es->stopping) {
		shard_log(s, SHARD_LOG_WARN, "published port %u: accept: %s; listening again",
			p->spec.host_port, strerror(-res));
		if (shard_accept_start(s, &pl->acc, pl->fd, pl_accept) == 0)
			return;
	}
	/* Ended: unlink and free. */
	for (struct port_listener **pp = &pl->es->listeners; *pp; pp = &(*pp)->next)
		if (*pp == pl) {
			*pp = pl->next;
			break;
		}
	close(pl->fd);
	port_put(p);
	free(pl);
}

struct pl_start {
	struct port *p; /* a reference */
	int fd;
};

static void pl_start_on_shard(struct shard *s, void *arg)
{
	struct pl_start *st = arg;
	struct eshard *es = eshard_of(s);
	struct port_listener *pl = calloc(1, sizeof(*pl));

	if (!pl || shard_accept_start(s, &pl->acc, st->fd, pl_accept) < 0) {
		shard_log(s, SHARD_LOG_ERR, "published port %u: cannot start accepting",
			st->p->spec.host_port);
		free(pl);
		close(st->fd);
		port_put(st->p);
		free(st);
		return;
	}
	pl->es = es;
	pl->p = st->p;
	pl->fd = st->fd;
	pl->next = es->listeners;
	es->listeners = pl;
	free(st);
}

static void pl_stop_on_shard(struct shard *s, void *arg)
{
	struct port *p = arg;

	for (struct port_listener *pl = eshard_of(s)->listeners; pl; pl = pl->next)
		if (pl->p == p)
			shard_accept_stop(s, &pl->acc);
	port_put(p);
}

void port_close_all_on_shard(struct eshard *es)
{
	for (struct port_listener *pl = es->listeners; pl; pl = pl->next)
		shard_accept_stop(es->s, &pl->acc);
	for (struct pconn *pc = es->pconns, *next; pc; pc = next) {
		next = pc->next;
		pc_close(pc, true);
		pc_maybe_free(pc);
	}
}

static int port_bind_one(const struct engine_port *spec, uint16_t port, char *err, size_t cap)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	int fd, one = 1, fam;

	if (strchr(spec->host_ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		fam = AF_INET6;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		if (inet_pton(AF_INET6, spec->host_ip, &a->sin6_addr) != 1)
			goto bad_ip;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		fam = AF_INET;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		if (inet_pton(AF_INET, spec->host_ip, &a->sin_addr) != 1)
			goto bad_ip;
		sl = sizeof(*a);
	}
	fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, cap, "socket: %s", strerror(errno));
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, PORT_BACKLOG) < 0) {
		int e = errno;

		snprintf(err, cap, "cannot listen on %s:%u: %s%s", spec->host_ip, port, strerror(e),
			e == EADDRINUSE ? " (the port is in use: pick another host port, or stop what "
					  "holds it)" :
			e == EACCES	? " (ports below 1024 need privileges)" :
					  "");
		close(fd);
		return -e;
	}
	return fd;
bad_ip:
	snprintf(err, cap, "bad host address \"%s\" (want a numeric IPv4 or IPv6 address)",
		spec->host_ip);
	return -EINVAL;
}

int port_open(struct engine *e, struct sandbox *sb, const struct engine_port *spec,
	struct port **out, char *err, size_t cap)
{
	struct port *p = calloc(1, sizeof(*p));
	unsigned i;
	int rc = -ENOMEM;

	if (!p || !(p->fds = calloc(e->nshards, sizeof(int)))) {
		free(p);
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&p->refs, 1);
	p->spec = *spec;
	if (!p->spec.host_ip[0])
		snprintf(p->spec.host_ip, sizeof(p->spec.host_ip), "127.0.0.1");
	if (!p->spec.limit)
		p->spec.limit = ENGINE_PORT_LIMIT_DEF;
	for (i = 0; i < e->nshards; i++) {
		rc = port_bind_one(&p->spec, p->spec.host_port, err, cap);
		if (rc < 0)
			goto fail;
		p->fds[i] = rc;
		p->nfds++;
		if (!p->spec.host_port) { /* the kernel picked one: the others share it */
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);

			getsockname(rc, (struct sockaddr *)&ss, &sl);
			p->spec.host_port = ntohs(ss.ss_family == AF_INET6 ?
					((struct sockaddr_in6 *)&ss)->sin6_port :
					((struct sockaddr_in *)&ss)->sin_port);
		}
	}
	p->sb = sb;
	sandbox_get(sb);
	for (i = 0; i < e->nshards; i++) {
		struct pl_start *st = malloc(sizeof(*st));

		if (!st) {
			close(p->fds[i]);
			continue;
		}
		port_get(p);
		st->p = p;
		st->fd = p->fds[i];
		while ((rc = shard_call(shard_group_get(e->g, i), pl_start_on_shard, st)) == -EAGAIN)
			sleep_ms(1);
		if (rc < 0) {
			close(st->fd);
			port_put(p);
			free(st);
		}
	}
	*out = p;
	return 0;
fail:
	for (unsigned k = 0; k < p->nfds; k++)
		close(p->fds[k]);
	free(p->fds);
	free(p);
	return rc;
}

void port_close(struct engine *e, struct port *p)
{
	for (unsigned i = 0; i < e->nshards; i++) {
		int rc;

		port_get(p);
		while ((rc = shard_call(shard_group_get(e->g, i), pl_stop_on_shard, p)) == -EAGAIN)
			sleep_ms(1);
		if (rc < 0)
			port_put(p);
	}
	port_put(p);
}

void port_info(const struct port *p, struct engine_port_info *out)
{
	out->port = p->spec;
	out->accepted = atomic_load(&p->accepted);
	out->refused = atomic_load(&p->refused);
	out->active = atomic_load(&p->active);
}
