/*
 * engine/console.c - a sandbox's console on its home shard: the host half
 * of the boot sequence, routing of guest frames to endpoints by header,
 * one vectored write per turn of everything queued for the agent, the
 * relay slots and the client disconnect policy (docs/engine.md).
 *
 * owner: the sandbox's home shard; nothing here is touched elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/internal.h"
#include "engine/sender.h"
#include "proto/lease.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"

#define CON_PTAB 1024u		   /* published-port id table buckets */
#define CON_QUARANTINE_EXTRA_NS (10ull * 1000000000ull)

enum con_state {
	CON_BOOT = 0, /* bootstrap sent, waiting for init.resolved, then ready */
	CON_UP,
	CON_DEAD,
};

/* A departed client's exec sessions, to SIGKILL when the grace period ends. */
struct con_kill {
	struct con_kill *next;
	unsigned slot;
	uint64_t at;
};

/* One frame waiting for input credit. */
struct con_frame {
	uint32_t size;
	bool data;
};

/* owner: the home shard. */
struct console {
	struct console *next, *prev; /* eshard->consoles */
	struct sandbox *sb;	     /* a reference */
	struct eshard *es;
	int fd;
	enum con_state st;
	struct shard_recv rx;
	bool rx_running, rx_want;
	struct framer fr;
	struct sender out; /* whole frames for the agent; seg tag = link (a reference) or NULL */
	/* relay leases (G7.1): slot owners announced with an incarnation, reuse after the ack */
	bool lease;
	struct proto_id16 slot_inc[ENGINE_SLOTS];
	/* the agent's aggregate input window (G6): frames wait in held until credit covers them */
	bool window;
	struct proto_workload_transport used, grant;
	struct segq held;
	struct con_frame *hf; /* sizes and classes of the frames in held, a ring */
	uint32_t hf_head, hf_n, hf_cap;
	struct shard_timer boot_timer, kill_timer, full_timer;
	uint8_t *ready;
	size_t ready_len;
	struct engine_slots slots;
	struct link *slot_link[ENGINE_SLOTS];
	struct link *ptab[CON_PTAB];
	uint32_t nport, next_port_id;
	struct link *links; /* attached links (cnext/cprev) */
	unsigned nlinks, nfull;
	struct con_kill *kills;
	bool stopping;
	char why[256];
};

static void con_maybe_free(struct console *con);
static void console_fail(struct console *con, const char *why);

static struct engine *con_engine(const struct console *con)
{
	return con->sb->e;
}

/* ---- writing ----------------------------------------------------------------- */

static void con_write_done(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	struct console *con = (struct console *)((char *)op - offsetof(struct console, out.op));
	int res = sender_done(&con->out, cqe);

	(void)s;
	if (res < 0) {
		if (con->st != CON_DEAD) {
			char why[128];

			snprintf(why, sizeof(why), "writing to the agent's console: %s", strerror(-res));
			console_fail(con, why);
		}
		con_maybe_free(con);
		return;
	}
	stat_add(&con->es->st.bytes_out, (uint64_t)res);
	atomic_fetch_add_explicit(&con->sb->bytes_out, (uint64_t)res, memory_order_relaxed);
	if (con->st == CON_DEAD) {
		con_maybe_free(con);
		return;
	}
	sender_kick(&con->out);
}

static void con_kick_write(struct shard *s, struct shard_defer *d)
{
	struct console *con = (struct console *)((char *)d - offsetof(struct console, out.retry));

	(void)s;
	if (con->st != CON_DEAD)
		sender_kick(&con->out);
}

/* ---- the aggregate input window (G6) ------------------------------------------------------ */

/* Queue the frame made of the first <size> bytes of <q> (whole segments) behind the held ones. */
static int con_hold(struct console *con, struct segq *q, uint32_t size, bool data)
{
	if (con->hf_n == con->hf_cap) {
		uint32_t cap = con->hf_cap ? con->hf_cap * 2 : 64;
		struct con_frame *v = malloc(sizeof(*v) * cap);

		if (!v)
			return -ENOMEM;
		for (uint32_t i = 0; i < con->hf_n; i++)
			v[i] = con->hf[(con->hf_head + i) & (con->hf_cap - 1)];
		free(con->hf);
		con->hf = v;
		con->hf_cap = cap;
		con->hf_head = 0;
	}
	for (uint32_t got = 0; got < size && q->n;) {
		struct seg sg;

		segq_shift(q, &sg);
		got += sg.len;
		if (segq_push(&con->held, &sg) < 0) {
			if (sg.tag)
				link_account(con->es->s, &sg, sg.len, true);
			seg_release(&sg);
		}
	}
	con->hf[(con->hf_head + con->hf_n++) & (con->hf_cap - 1)] = (struct con_frame){size, data};
	return 0;
}

/* Move held frames to the writer while the agent's credit covers them (whole frames, in order). */
static void con_release(struct console *con)
{
	while (con->hf_n) {
		struct con_frame f = con->hf[con->hf_head];
		uint64_t *bytes = f.data ? &con->used.bulk_bytes : &con->used.control_bytes;
		uint64_t *frames = f.data ? &con->used.bulk_frames : &con->used.control_frames;
		uint64_t gb = f.data ? con->grant.bulk_bytes : con->grant.control_bytes;
		uint64_t gf = f.data ? con->grant.bulk_frames : con->grant.control_frames;

		if (*bytes + f.size > gb || *frames + 1 > gf)
			break;
		*bytes += f.size;
		*frames += 1;
		con->hf_head = (con->hf_head + 1) & (con->hf_cap - 1);
		con->hf_n--;
		for (uint32_t got = 0; got < f.size && con->held.n;) {
			struct seg sg = con->held.v[con->held.head];

			con->held.head = (con->held.head + 1) & (con->held.cap - 1);
			con->held.n--;
			con->held.bytes -= sg.len;
			got += sg.len;
			if (segq_push(&con->out.q, &sg) < 0) {
				if (sg.tag)
					link_account(con->es->s, &sg, sg.len, true);
				seg_release(&sg);
			}
		}
	}
	sender_kick(&con->out);
}

/* A grant from the agent (core.workload.transport.credit): limits only grow. */
static void con_grant(struct console *con, struct seg_frame *fr)
{
	size_t n = (size_t)fr->len + PROTO_LEN_SIZE;
	uint8_t buf[256];
	struct proto_frame f;
	struct proto_msg m;
	const struct proto_workload_transport *g = &m.u.workload_transport_credit;

	if (n > sizeof(buf) || seg_frame_peek(fr, buf, n) != n || proto_frame_parse(buf, n, &f) <= 0 ||
		proto_frame_decode(&f, &m, NULL, NULL) < 0 || m.type != PROTO_T_WORKLOAD_TRANSPORT_CREDIT) {
		stat_add(&con->es->st.drops, 1);
		return;
	}
	if (g->control_bytes > con->grant.control_bytes)
		con->grant.control_bytes = g->control_bytes;
	if (g->control_frames > con->grant.control_frames)
		con->grant.control_frames = g->control_frames;
	if (g->bulk_bytes > con->grant.bulk_bytes)
		con->grant.bulk_bytes = g->bulk_bytes;
	if (g->bulk_frames > con->grant.bulk_frames)
		con->grant.bulk_frames = g->bulk_frames;
	con_release(con);
}

/* Drop what waits for credit (the console is going away). */
static void con_held_drop(struct console *con)
{
	while (con->held.n) {
		struct seg *sg = &con->held.v[con->held.head];

		if (sg->tag)
			link_account(con->es->s, sg, sg->len, true);
		seg_release(sg);
		con->held.head = (con->held.head + 1) & (con->held.cap - 1);
		con->held.n--;
	}
	segq_clear(&con->held);
	free(con->hf);
	con->hf = NULL;
	con->hf_n = con->hf_cap = 0;
}

/* Queue one whole frame the engine wrote (copied), behind the agent's input credit if any. */
static int con_send_bytes(struct console *con, const uint8_t *buf, size_t n, bool data)
{
	struct segq q;
	struct seg sg;

	if (!con->window || con->st != CON_UP)
		return sender_push_copy(&con->out, buf, n);
	sg = seg_heap_copy(buf, n);
	segq_init(&q);
	if (!sg.p || segq_push(&q, &sg) < 0) {
		seg_release(&sg);
		return -ENOMEM;
	}
	con_hold(con, &q, (uint32_t)n, data);
	segq_clear(&q);
	con_release(con);
	return 0;
}

static int con_send_msg(struct console *con, uint32_t id, const struct proto_msg *m)
{
	uint8_t buf[512];
	long n = proto_frame_encode(buf, sizeof(buf), id, m);

	if (n < 0)
		return (int)n;
	return con_send_bytes(con, buf, (size_t)n, proto_type_is_input_data(m->type));
}

/* An MSBL lease record for slot <k> (G7.1). */
static int con_send_lease(struct console *con, unsigned k, enum proto_lease_event ev)
{
	struct proto_lease l = {
		.event = ev,
		.id_start = engine_slot_start(k),
		.id_end_exclusive = engine_slot_end(k),
		.incarnation = con->slot_inc[k],
	};
	uint8_t buf[PROTO_LEASE_SIZE];
	int n = proto_lease_write(buf, sizeof(buf), &l);

	return n < 0 ? n : con_send_bytes(con, buf, (size_t)n, false);
}

/* A frame on id 0 from the agent that is a lease record: the disconnect acknowledgement. */
static bool con_lease_frame(struct console *con, struct seg_frame *fr)
{
	uint8_t buf[PROTO_LEASE_SIZE];
	struct proto_lease l;
	unsigned k;

	if (fr->id != 0 || fr->len + PROTO_LEN_SIZE != PROTO_LEASE_SIZE ||
		seg_frame_peek(fr, buf, sizeof(buf)) != sizeof(buf) ||
		memcmp(buf + PROTO_HDR_SIZE, PROTO_LEASE_MAGIC, PROTO_LEASE_MAGIC_SIZE))
		return false;
	if (proto_lease_parse(buf, sizeof(buf), &l) < 0 || l.event != PROTO_LEASE_DISCONNECT_ACK ||
		!proto_lease_range_canonical(l.id_start, l.id_end_exclusive) ||
		(k = engine_slot_route(l.id_start)) >= ENGINE_SLOT_ENGINE ||
		memcmp(&l.incarnation, &con->slot_inc[k], sizeof(l.incarnation))) {
		stat_add(&con->es->st.drops, 1);
		shard_log(con->es->s, SHARD_LOG_WARN, "sandbox %s: an unexpected lease record from the agent",
			con->sb->name);
		return true;
	}
	engine_slots_lease_acked(&con->slots, k);
	return true;
}

static void con_send_signal(struct console *con, uint32_t id, int sig)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_SIGNAL, .u.exec_signal.signal = sig};

	con_send_msg(con, id, &m);
}

/* ---- published-port ids (slot 127) ------------------------------------------------- */

static struct link **ptab_slot(struct console *con, uint32_t id)
{
	struct link **pp = &con->ptab[id % CON_PTAB];

	while (*pp && (*pp)->id_lo != id)
		pp = &(*pp)->pnext;
	return pp;
}

static void ptab_remove(struct console *con, uint32_t id)
{
	struct link **pp = ptab_slot(con, id);

	if (*pp) {
		*pp = (*pp)->pnext;
		con->nport--;
	}
}

/* ---- lifecycle ------------------------------------------------------------------------- */

struct console_down {
	struct sandbox *sb;
	char why[256];
};

static void con_tell_gone(struct console *con, struct link *l)
{
	snprintf(l->why, sizeof(l->why), "%s", con->why);
	link_call_endpoint(con->es->s, l, l->ops->gone);
}

static void console_fail(struct console *con, const char *why)
{
	struct shard *s = con->es->s;

	if (con->st == CON_DEAD)
		return;
	snprintf(con->why, sizeof(con->why), "%s", why);
	con->st = CON_DEAD;
	shard_log(s, con->stopping ? SHARD_LOG_INFO : SHARD_LOG_WARN, "sandbox %s: console closed: %s",
		con->sb->name, why);
	for (struct link *l = con->links; l; l = l->cnext)
		con_tell_gone(con, l);
	shard_timer_cancel(s, &con->boot_timer);
	shard_timer_cancel(s, &con->full_timer);
	shard_timer_cancel(s, &con->kill_timer);
	con->rx_want = false;
	if (con->rx_running)
		shard_recv_stop(s, &con->rx);
	sender_cancel(&con->out);
	control_console_down(con_engine(con), con->sb, con->why);
}

static void con_maybe_free(struct console *con)
{
	if (con->st != CON_DEAD || con->rx_running || sender_busy(&con->out) || con->nlinks)
		return;
	sender_destroy(&con->out);
	con_held_drop(con);
	framer_destroy(&con->fr);
	engine_slots_destroy(&con->slots);
	while (con->kills) {
		struct con_kill *k = con->kills;

		con->kills = k->next;
		free(k);
	}
	free(con->ready);
	close(con->fd);
	if (con->prev)
		con->prev->next = con->next;
	else
		con->es->consoles = con->next;
	if (con->next)
		con->next->prev = con->prev;
	stat_add(&con->es->st.consoles, (uint64_t)-1);
	if (con->sb->con == con)
		con->sb->con = NULL;
	sandbox_put(con->sb);
	free(con);
}

static void con_boot_timeout(struct shard *s, struct shard_timer *t)
{
	struct console *con = (struct console *)((char *)t - offsetof(struct console, boot_timer));
	char why[160];

	(void)s;
	snprintf(why, sizeof(why),
		"the agent did not say core.ready within %u ms (see its log; raise --boot-timeout)",
		con->sb->boot_timeout_ms);
	console_fail(con, why);
	con_maybe_free(con);
}

/* ---- guest -> host ---------------------------------------------------------------------------- */

static void con_boot_frame(struct console *con, struct seg_frame *fr)
{
	struct shard *s = con->es->s;
	uint8_t *flat = NULL;
	struct proto_frame f;
	struct proto_msg m;
	uint8_t arena_mem[4096];
	struct proto_arena a;
	size_t n = (size_t)fr->len + PROTO_LEN_SIZE;

	if (n > ENGINE_CTRL_FRAME_MAX) {
		shard_log(s, SHARD_LOG_WARN, "sandbox %s: boot: skipping a %zu-byte frame", con->sb->name, n);
		goto out;
	}
	flat = malloc(n);
	if (!flat)
		goto out;
	seg_frame_peek(fr, flat, n);
	proto_arena_init(&a, arena_mem, sizeof(arena_mem));
	if (proto_frame_parse(flat, n, &f) <= 0 || proto_frame_decode(&f, &m, &a, NULL) < 0) {
		shard_log(s, SHARD_LOG_WARN, "sandbox %s: boot: skipping an undecodable frame",
			con->sb->name);
		goto out;
	}
	if (m.type == PROTO_T_INIT_RESOLVED) {
		struct proto_msg ack = {.type = PROTO_T_INIT_ACK};

		con_send_msg(con, 0, &ack);
	} else if (m.type == PROTO_T_READY) {
		struct sandbox *sb = con->sb;
		size_t vl = m.u.ready.agent_version.len;

		con->ready = flat;
		con->ready_len = n;
		flat = NULL;
		if (vl >= sizeof(sb->agent_version))
			vl = sizeof(sb->agent_version) - 1;
		memcpy(sb->agent_version, m.u.ready.agent_version.ptr, vl);
		sb->agent_version[vl] = '\0';
		atomic_store(&sb->generation, m.v);
		/* G6: an agent announcing barrier version 2 meters input from here on. */
		con->window = m.u.ready.workload_transport_barrier_version.set &&
			      m.u.ready.workload_transport_barrier_version.v == 2;
		con->grant = (struct proto_workload_transport){PROTO_WORKLOAD_CONTROL_BYTES,
			PROTO_WORKLOAD_CONTROL_FRAMES, PROTO_WORKLOAD_DATA_BYTES, PROTO_WORKLOAD_DATA_FRAMES};
		atomic_store(&sb->window, con->window);
		con->lease = m.u.ready.relay_lease.set && m.u.ready.relay_lease.v.max_format >= 1;
		atomic_store(&sb->boot_ms, (shard_now_ns() - sb->t_start) / 1000000);
		shard_timer_cancel(s, &con->boot_timer);
		con->st = CON_UP;
		shard_log(s, SHARD_LOG_INFO, "sandbox %s: agent ready (%s, generation %u)", sb->name,
			sb->agent_version[0] ? sb->agent_version : "no version", m.v);
		control_console_up(con_engine(con), sb);
	} else {
		shard_log(s, SHARD_LOG_INFO, "sandbox %s: boot: skipping %.*s", con->sb->name,
			(int)m.tname.len, m.tname.ptr);
	}
out:
	free(flat);
	seg_frame_release(fr);
}

static void con_pause_for(struct console *con, struct link *l)
{
	struct shard *s = con->es->s;

	l->c_full = true;
	atomic_store(&l->c_paused, true);
	if (atomic_load(&l->to_ep) < ENGINE_QUEUE_LOW && atomic_exchange(&l->c_paused, false)) {
		l->c_full = false; /* drained meanwhile */
		return;
	}
	stat_add(&con->es->st.stalls, 1);
	if (con->nfull++ == 0) {
		con->rx_want = false;
		if (con->rx_running)
			shard_recv_stop(s, &con->rx);
		shard_timer_arm(s, &con->full_timer, shard_now_ns() + ENGINE_STUCK_NS);
	}
}

static void con_unpause_for(struct console *con, struct link *l)
{
	struct shard *s = con->es->s;

	if (!l->c_full)
		return;
	l->c_full = false;
	if (--con->nfull > 0 || con->st == CON_DEAD)
		return;
	shard_timer_cancel(s, &con->full_timer);
	con->rx_want = true;
	if (!con->rx_running && shard_recv_start(s, &con->rx, con->fd, con->rx.fn) == 0)
		con->rx_running = true;
}

static void con_route(void *ctx, struct seg_frame *fr)
{
	struct console *con = ctx;
	struct eshard *es = con->es;
	struct link *l;
	struct segq q;
	unsigned k;
	bool terminal;

	if (con->st == CON_BOOT) {
		con_boot_frame(con, fr);
		return;
	}
	if (con->st == CON_DEAD) {
		seg_frame_release(fr);
		return;
	}
	stat_add(&es->st.frames_in, 1);
	atomic_fetch_add_explicit(&con->sb->frames_in, 1, memory_order_relaxed);
	if (con->lease && con_lease_frame(con, fr)) { /* the agent's, not a client's (G7.1) */
		seg_frame_release(fr);
		return;
	}
	if (fr->id == PROTO_WORKLOAD_CREDIT_ID) { /* the agent's, not a client's (G6) */
		con_grant(con, fr);
		seg_frame_release(fr);
		return;
	}
	terminal = (fr->flags & PROTO_FLAG_TERMINAL) && seg_frame_type(fr) != PROTO_T_ERROR;
	engine_slots_frame(&con->slots, fr->id, false, false, terminal);
	k = engine_slot_route(fr->id);
	l = k == ENGINE_SLOT_ENGINE ? *ptab_slot(con, fr->id) : con->slot_link[k];
	if (!l) {
		stat_add(&es->st.drops, 1);
		seg_frame_release(fr);
		return;
	}
	if (terminal) {
		link_note_event_c(l, fr->id, XEV_TERMINAL);
		if (k == ENGINE_SLOT_ENGINE)
			ptab_remove(con, fr->id);
	}
	segq_init(&q);
	for (uint32_t i = 0; i < fr->nseg; i++)
		if (segq_push(&q, &fr->seg[i]) < 0)
			seg_release(&fr->seg[i]);
	link_send_to_endpoint(es->s, l, &q);
	/* A port stream that gets raw records is held by the engine's own grant (its window is
	 * not above the bound; prefixes and control frames in flight may pass it a little); the
	 * endpoint fails the stream on any record or CBOR data outside that grant. */
	if (l->bulk_offer && (fr->flags & PROTO_FLAG_BULK))
		l->c_records = true;
	if (!l->c_full && !l->c_records && atomic_load(&l->to_ep) > ENGINE_QUEUE_HIGH)
		con_pause_for(con, l);
}

static void con_rx(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	struct console *con = (struct console *)((char *)r - offsetof(struct console, rx));
	char why[160];
	int rc;

	if (c) {
		stat_add(&con->es->st.bytes_in, (uint64_t)res);
		atomic_fetch_add_explicit(&con->sb->bytes_in, (uint64_t)res, memory_order_relaxed);
		if (con->st == CON_DEAD) {
			chunk_put(c);
			return;
		}
		rc = framer_feed(&con->fr, c, con_route, con);
		if (rc < 0) {
			snprintf(why, sizeof(why), "framing error from the agent: %s",
				rc == -ENOMEM ? "out of memory" : proto_strerror(rc));
			console_fail(con, why);
		}
		return;
	}
	con->rx_running = false;
	if (res == -ECANCELED && con->rx_want && con->st != CON_DEAD) {
		if (shard_recv_start(s, &con->rx, con->fd, con_rx) == 0)
			con->rx_running = true;
		return;
	}
	if (res == -ECANCELED && con->st != CON_DEAD)
		return; /* paused */
	if (con->st != CON_DEAD) {
		if (res == 0)
			snprintf(why, sizeof(why), "%s",
				con->stopping ? "stopped" : "the agent closed its console (it exited)");
		else
			snprintf(why, sizeof(why), "reading the agent's console: %s", strerror(-res));
		console_fail(con, why);
	}
	con_maybe_free(con);
}

/* ---- host -> guest: batches from endpoints ---------------------------------------------------- */

void console_take_xfer(struct shard *s, struct xfer *x)
{
	struct link *l = x->l;
	struct console *con = l->c_attached ? l->con : NULL;

	(void)s;
	if (!con || con->st != CON_UP) {
		atomic_fetch_sub(&l->to_guest, x->q.bytes);
		stat_add(&eshard_of(s)->st.drops, 1);
		xfer_drop(x);
		return;
	}
	if (con->window) /* each segment holds a link reference, as in the sender */
		for (uint32_t i = 0; i < x->q.n; i++) {
			link_get(l);
			x->q.v[(x->q.head + i) & (x->q.cap - 1)].tag = l;
		}
	for (uint32_t i = 0; i < x->nev; i++) {
		const struct xev *ev = &x->ev[i];

		if (ev->kind == XEV_PORT_CLOSE)
			ptab_remove(con, ev->id);
		else if (ev->kind == XEV_FRAME_CONTROL || ev->kind == XEV_FRAME_DATA)
			con_hold(con, &x->q, ev->id, ev->kind == XEV_FRAME_DATA);
		else
			engine_slots_frame(&con->slots, ev->id, true, ev->kind == XEV_EXEC_START,
				ev->kind == XEV_TERMINAL);
	}
	if (con->window) {
		if (x->q.n) /* frames the endpoint did not size (it cannot happen): hold as control */
			con_hold(con, &x->q, (uint32_t)x->q.bytes, false);
		xfer_drop(x);
		con_release(con);
		return;
	}
	sender_take_xfer(&con->out, x);
	xfer_drop(x);
	sender_kick(&con->out);
}

/* ---- attach / detach ------------------------------------------------------------------------------------ */

static void con_attach_answer(struct shard *s, struct link *l, int rc, const char *why)
{
	l->attach_rc = rc;
	snprintf(l->why, sizeof(l->why), "%s", why ? why : "");
	link_call_endpoint(s, l, l->ops->attached);
}

static int con_attach_port(struct console *con, struct link *l)
{
	uint32_t lo = engine_slot_start(ENGINE_SLOT_ENGINE), hi = engine_slot_end(ENGINE_SLOT_ENGINE);
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	uint32_t id = 0;

	if (con->nport >= ENGINE_PORT_ID_LIVE_MAX)
		return -EBUSY;
	for (uint32_t tries = 0; tries < ENGINE_PORT_ID_LIVE_MAX + 1; tries++) {
		if (con->next_port_id < lo || con->next_port_id >= hi)
			con->next_port_id = lo;
		id = con->next_port_id++;
		if (!*ptab_slot(con, id))
			break;
	}
	l->id_lo = id;
	l->id_hi = id + 1;
	l->pnext = con->ptab[id % CON_PTAB];
	con->ptab[id % CON_PTAB] = l;
	con->nport++;
	m.u.tcp_connect.host = (struct proto_str){l->port_host, strlen(l->port_host)};
	m.u.tcp_connect.port = l->port_guest;
	/* A gen-8+ agent moves the stream's bytes as raw records (G5.1); the offer needs v >= 8,
	 * which the encoder writes for it (F34). */
	l->bulk_offer = atomic_load(&con->sb->generation) >= PROTO_GEN_BULK;
	if (l->bulk_offer)
		m.u.tcp_connect.bulk = (struct proto_opt_bulk_offer){true, ENGINE_PORT_BULK_OFFER};
	return con_send_msg(con, id, &m);
}

void console_attach(struct shard *s, struct link *l)
{
	struct sandbox *sb = l->sb;
	struct console *con = sb->con;
	char why[300];
	int rc;

	if (!con || con->st != CON_UP) {
		snprintf(why, sizeof(why), "sandbox %s is not running (state: %s)", sb->name,
			con ? "booting" : "stopped");
		con_attach_answer(s, l, -ENOTCONN, why);
		return;
	}
	if (l->kind == LINK_CLIENT) {
		rc = engine_slots_attach(&con->slots, l, shard_now_ns());
		if (rc < 0) {
			snprintf(why, sizeof(why),
				"sandbox %s has all %u client slots in use (or quarantined): detach a client "
				"or wait for departed clients' sessions to end",
				sb->name, ENGINE_SLOTS - 1);
			con_attach_answer(s, l, rc, why);
			return;
		}
		l->ready_copy = malloc(con->ready_len);
		if (!l->ready_copy) {
			engine_slots_detach(&con->slots, (unsigned)rc, 0, NULL, 0);
			con_attach_answer(s, l, -ENOMEM, "out of memory");
			return;
		}
		memcpy(l->ready_copy, con->ready, con->ready_len);
		l->ready_len = con->ready_len;
		if (con->lease) { /* before any frame of the client: a fresh incarnation */
			if (getrandom(con->slot_inc[rc].b, sizeof(con->slot_inc[rc].b), 0) !=
				(ssize_t)sizeof(con->slot_inc[rc].b))
				shard_log(s, SHARD_LOG_WARN, "getrandom: %s", strerror(errno));
			con_send_lease(con, (unsigned)rc, PROTO_LEASE_CONNECTED);
		}
		l->slot = rc;
		l->id_lo = engine_slot_start((unsigned)rc);
		l->id_hi = engine_slot_end((unsigned)rc);
		con->slot_link[rc] = l;
		atomic_fetch_add(&sb->clients, 1);
	} else if ((rc = con_attach_port(con, l)) < 0) {
		con_attach_answer(s, l, rc, "too many published-port streams in this sandbox");
		return;
	}
	link_get(l); /* the console's */
	l->con = con;
	l->c_attached = true;
	l->cprev = NULL;
	l->cnext = con->links;
	if (con->links)
		con->links->cprev = l;
	con->links = l;
	con->nlinks++;
	con_attach_answer(s, l, 0, NULL);
}

static void con_kill_due(struct shard *s, struct shard_timer *t)
{
	struct console *con = (struct console *)((char *)t - offsetof(struct console, kill_timer));
	uint64_t now = shard_now_ns();
	struct con_kill **pp = &con->kills, *k;

	while ((k = *pp)) {
		if (k->at > now) {
			pp = &k->next;
			continue;
		}
		const struct engine_slot *sl = &con->slots.slot[k->slot];

		/* Still quarantined: these are the departed client's sessions. */
		if (sl->state == ENGINE_SLOT_QUARANTINE)
			for (uint32_t i = 0; i < sl->nexecs; i++)
				con_send_signal(con, sl->execs[i], 9);
		*pp = k->next;
		free(k);
	}
	for (k = con->kills; k; k = k->next)
		if (!shard_timer_armed(t) || k->at < t->deadline)
			shard_timer_arm(s, t, k->at);
}

/*
 * The disconnect policy (docs/engine.md): SIGHUP to each exec session the
 * client leaves running, core.relay.client.disconnected for its range at
 * once (it ends the client's tcp streams and fs handles and leaves exec
 * sessions alone, spec 5.5), SIGKILL to those still running after the
 * grace period; the slot is quarantined until they have all ended.
 */
static void con_detach_client(struct console *con, struct link *l)
{
	struct shard *s = con->es->s;
	const struct engine_config *cfg = &con_engine(con)->cfg;
	uint64_t now = shard_now_ns(), grace = (uint64_t)cfg->disconnect_grace_ms * 1000000ull;
	struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED};
	uint32_t *ids = NULL;
	size_t n;

	con->slot_link[l->slot] = NULL;
	atomic_fetch_sub(&con->sb->clients, 1);
	ids = malloc(sizeof(*ids) * ENGINE_SLOT_MAX_EXECS);
	n = engine_slots_detach(&con->slots, (unsigned)l->slot, now + grace + CON_QUARANTINE_EXTRA_NS,
		ids, ids ? ENGINE_SLOT_MAX_EXECS : 0);
	for (size_t i = 0; i < n && ids; i++)
		con_send_signal(con, ids[i], 1);
	m.u.relay_client_disconnected.id_start = l->id_lo;
	m.u.relay_client_disconnected.id_end_exclusive = l->id_hi;
	if (con->lease) { /* the agent acknowledges with MSBL event 2; the slot waits for it */
		m.u.relay_client_disconnected.incarnation.set = true;
		m.u.relay_client_disconnected.incarnation.v = con->slot_inc[l->slot];
		engine_slots_lease_hold(&con->slots, (unsigned)l->slot,
			now + grace + CON_QUARANTINE_EXTRA_NS);
	}
	con_send_msg(con, 0, &m);
	if (n) {
		struct con_kill *k = malloc(sizeof(*k));

		if (k) {
			*k = (struct con_kill){.next = con->kills, .slot = (unsigned)l->slot, .at = now + grace};
			con->kills = k;
			if (!shard_timer_armed(&con->kill_timer) || k->at < con->kill_timer.deadline)
				shard_timer_arm(s, &con->kill_timer, k->at);
		}
		shard_log(s, SHARD_LOG_INFO,
			"sandbox %s: client in slot %d left %zu exec session(s): SIGHUP now, SIGKILL in %u ms",
			con->sb->name, l->slot, n, cfg->disconnect_grace_ms);
	}
	free(ids);
}

void console_detach(struct shard *s, struct link *l)
{
	struct console *con = l->c_attached ? l->con : NULL;

	(void)s;
	if (!con)
		return;
	con_unpause_for(con, l);
	l->c_attached = false;
	l->con = NULL;
	if (l->cprev)
		l->cprev->cnext = l->cnext;
	else
		con->links = l->cnext;
	if (l->cnext)
		l->cnext->cprev = l->cprev;
	if (con->st == CON_UP) {
		if (l->kind == LINK_CLIENT) {
			con_detach_client(con, l);
		} else if (*ptab_slot(con, l->id_lo) == l) {
			struct proto_msg m = {.type = PROTO_T_TCP_CLOSE};

			ptab_remove(con, l->id_lo);
			con_send_msg(con, l->id_lo, &m);
		}
	} else if (l->kind == LINK_CLIENT) {
		con->slot_link[l->slot] = NULL;
		atomic_fetch_sub(&con->sb->clients, 1);
	} else if (*ptab_slot(con, l->id_lo) == l) {
		ptab_remove(con, l->id_lo);
	}
	con->nlinks--;
	link_put(l);
	con_maybe_free(con);
}

void console_ep_drained(struct shard *s, struct link *l)
{
	(void)s;
	if (l->c_attached)
		con_unpause_for(l->con, l);
}

static void con_full_timeout(struct shard *s, struct shard_timer *t)
{
	struct console *con = (struct console *)((char *)t - offsetof(struct console, full_timer));

	for (struct link *l = con->links; l; l = l->cnext) {
		if (!l->c_full)
			continue;
		shard_log(s, SHARD_LOG_WARN,
			"sandbox %s: %s has not read %llu queued bytes for %llu s: disconnecting it",
			con->sb->name, l->kind == LINK_CLIENT ? "a client" : "a published-port peer",
			(unsigned long long)atomic_load(&l->to_ep),
			(unsigned long long)(ENGINE_STUCK_NS / 1000000000ull));
		snprintf(l->why, sizeof(l->why), "disconnected: not reading its output for %llu s",
			(unsigned long long)(ENGINE_STUCK_NS / 1000000000ull));
		link_call_endpoint(s, l, l->ops->gone);
		con_unpause_for(con, l);
	}
}

/* ---- start / stop ------------------------------------------------------------------------------ */

void console_start_on_home(struct shard *s, void *arg)
{
	struct sandbox *sb = arg; /* a reference moves in */
	struct eshard *es = eshard_of(s);
	/* v = 9 as microsandbox's host writes it (G2.2): gen-9 agents then announce 9 and accept
	 * bulk offers from attached clients; gen-7 agents only check v >= 5.  The extra key names
	 * the sandwire extensions the relay carries (wire.md): reference agents ignore it. */
	static struct proto_str ext[] = {{PROTO_EXT_CREDIT, sizeof(PROTO_EXT_CREDIT) - 1}};
	struct proto_msg boot = {.type = PROTO_T_BOOTSTRAP, .v = PROTO_VERSION_MAX,
		.u.bootstrap = {.ext = ext, .n_ext = 1}};
	struct console *con = calloc(1, sizeof(*con));
	int fd = -1;

	if (!con || (fd = fcntl(sb->vm.console_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
		free(con);
		control_console_down(sb->e, sb, "out of memory or descriptors starting the console");
		sandbox_put(sb);
		return;
	}
	con->sb = sb;
	con->es = es;
	con->fd = fd;
	con->st = CON_BOOT;
	framer_init(&con->fr, PROTO_MAX_FRAME_LEN);
	sender_init(&con->out, s, fd, true, con_write_done, con_kick_write);
	segq_init(&con->held);
	shard_timer_init(&con->boot_timer, con_boot_timeout);
	shard_timer_init(&con->kill_timer, con_kill_due);
	shard_timer_init(&con->full_timer, con_full_timeout);
	engine_slots_init(&con->slots);
	con->next = es->consoles;
	if (es->consoles)
		es->consoles->prev = con;
	es->consoles = con;
	stat_add(&es->st.consoles, 1);
	sb->con = con;
	con->rx.fn = con_rx;
	con->rx_want = true;
	if (shard_recv_start(s, &con->rx, fd, con_rx) == 0)
		con->rx_running = true;
	else {
		console_fail(con, "cannot start reading the console (io_uring)");
		con_maybe_free(con);
		return;
	}
	shard_timer_arm(s, &con->boot_timer, shard_now_ns() + (uint64_t)sb->boot_timeout_ms * 1000000ull);
	con_send_msg(con, 0, &boot);
}

void console_shutdown_on_home(struct shard *s, void *arg)
{
	struct sandbox *sb = arg;
	struct console *con = sb->con;

	(void)s;
	if (con && con->st != CON_DEAD) {
		struct proto_msg m = {.type = PROTO_T_SHUTDOWN};

		con->stopping = true;
		if (con->st == CON_UP)
			con_send_msg(con, 0, &m);
		else
			console_fail(con, "stopped while booting");
		con_maybe_free(con);
	}
	sandbox_put(sb);
}

void console_close_all(struct eshard *es)
{
	struct console *con, *next;

	for (con = es->consoles; con; con = next) {
		next = con->next;
		unsigned n;

		con->stopping = true;
		console_fail(con, "the daemon is stopping");
		/* Endpoints cannot answer any more: let go of every link here (the last frees con). */
		n = con->nlinks;
		if (!n)
			con_maybe_free(con);
		while (n--)
			console_detach(es->s, con->links);
	}
}
