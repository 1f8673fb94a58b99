/*
 * agent/loop.c - sandwire-agent's event loop: one thread, one io_uring.
 *
 * Where io_uring_setup fails (or with --no-io-uring) the same SQEs go to
 * the poll(2) interpreter of uring_fallback.h instead; agent_sqe(),
 * agent_submit_and_wait() and agent_reap() are the only places that care.
 *
 * Phase order of one turn (agent_run):
 *   1. submit queued SQEs and wait for at least one completion;
 *   2. handle every completion (console read -> frames -> dispatch; console
 *      write done -> release chunks -> re-arm sources; session I/O; signals;
 *      the 100 ms tick);
 *   3. flush: one writev of everything queued for the console this turn.
 *
 * The console is read into rx[], a buffer of one maximal frame plus one read
 * (AGENT_RX_CAP), and frames are parsed in place.  The payload of a raw
 * record for a bulk flow whose sink takes chunks is read straight into
 * chunks instead (enum agent_rx_mode): a bulk stream costs two reads per
 * record and no copy.  A framing error (len < 5
 * or > 4 MiB) ends the channel: with --fd the agent exits with status 3; as
 * PID 1 it drops the buffer and waits for a new core.bootstrap (wire.md).
 * Anything else that is wrong with a frame is answered with core.error on
 * its id and the loop goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/internal.h"
#include "agent/resolve.h"
#include "proto/bulk.h"

#define AGENT_CHUNK_PACK 0x1u /* chunk.flags: control frames may be appended to it */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void agent_log(struct agent *a, int level, const char *fmt, ...)
{
	va_list ap;

	if (level > 2 + (a ? a->cfg->verbose : 0))
		return;
	fprintf(stderr, "sandwire-agent: %s: ", level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t agent_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * An SQE.  io_uring: when the submission queue is full, submit first (never
 * fails after that).  Fallback: it allocates more SQEs as needed; out of
 * memory for that, the agent can do no more I/O, so it aborts.
 */
struct io_uring_sqe *agent_sqe(struct agent *a)
{
	struct io_uring_sqe *sqe;

	if (a->fallback) {
		sqe = uring_fallback_get_sqe(&a->fb);
		if (!sqe) {
			agent_log(a, 0, "out of memory for an I/O request; aborting");
			abort();
		}
		return sqe;
	}
	sqe = io_uring_get_sqe(&a->ring);
	while (!sqe) {
		io_uring_submit(&a->ring);
		sqe = io_uring_get_sqe(&a->ring);
	}
	return sqe;
}

/*
 * Make room for <n> SQEs that must be submitted together (an op and its
 * linked timeout): a link must not be split by a submit in between.
 */
void agent_sqe_reserve(struct agent *a, unsigned n)
{
	if (!a->fallback && io_uring_sq_space_left(&a->ring) < n)
		io_uring_submit(&a->ring);
}

/*
 * A chunk for the console.  Data reads leave AGENT_CTRL_RESERVE chunks to
 * control frames and get NULL past that; control frames (and payload that
 * was already read off the console and must be kept) fall back to the heap,
 * counted, so a terminal frame is never lost.
 */
struct chunk *agent_chunk_get(struct agent *a, bool control)
{
	struct chunk_pool_stats st;
	struct chunk *c;

	chunk_pool_read_stats(a->pool, &st);
	if (!control && st.free + st.returning <= AGENT_CTRL_RESERVE)
		return NULL;
	c = chunk_pool_get(a->pool);
	if (!c && control) {
		c = calloc(1, sizeof(*c) + CHUNK_HEADROOM + AGENT_CHUNK_PAYLOAD);
		if (!c)
			return NULL;
		c->cap = CHUNK_HEADROOM + AGENT_CHUNK_PAYLOAD;
		atomic_init(&c->refs, 1);
		a->st.pool_overflow++;
	}
	if (c) {
		chunk_reset(c);
		c->flags = 0;
		c->user = NULL;
		c->next = NULL;
	}
	return c;
}

void agent_chunk_release(struct agent *a, struct chunk *c)
{
	if (!c->pool)
		free(c); /* heap overflow chunk, never shared */
	else
		chunk_put(c);
}

void agent_tx_chunk(struct agent *a, struct chunk *c)
{
	c->next = NULL;
	if (a->tx_tail)
		a->tx_tail->next = c;
	else
		a->tx_head = c;
	a->tx_tail = c;
	a->st.frames_out++;
	a->act.guest_messages++;
}

/*
 * Queue one control frame.  Small frames are packed into the last queued
 * control chunk while it has room; a frame larger than a chunk gets a heap
 * buffer of its own.  Returns 0 or a negative code (logged by the caller).
 */
int agent_send(struct agent *a, uint32_t id, const struct proto_msg *m)
{
	struct chunk *c = a->tx_tail;
	long n;

	if (c && (c->flags & AGENT_CHUNK_PACK)) {
		n = proto_frame_encode(chunk_ptr(c) + c->len, chunk_tailroom(c), id, m);
		if (n > 0) {
			c->len += (uint32_t)n;
			a->st.frames_out++;
			return 0;
		}
	}
	c = agent_chunk_get(a, true);
	if (!c)
		return -ENOMEM;
	c->off = 0;
	n = proto_frame_encode(c->data, c->cap, id, m);
	if (n == PROTO_E_NOSPACE) {
		agent_chunk_release(a, c);
		c = calloc(1, sizeof(*c) + PROTO_MAX_WIRE_SIZE);
		if (!c)
			return -ENOMEM;
		c->cap = PROTO_MAX_WIRE_SIZE;
		atomic_init(&c->refs, 1);
		n = proto_frame_encode(c->data, c->cap, id, m);
	}
	if (n < 0) {
		agent_chunk_release(a, c);
		return (int)n;
	}
	c->len = (uint32_t)n;
	c->flags = AGENT_CHUNK_PACK;
	agent_tx_chunk(a, c);
	return 0;
}

void agent_send_error(struct agent *a, uint32_t id, enum proto_error_kind kind,
	const char *offending_type, const char *fmt, ...)
{
	struct proto_msg m = {.type = PROTO_T_ERROR};
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	m.u.error.kind = kind;
	m.u.error.message = (struct proto_str){text, strlen(text)};
	if (offending_type) {
		m.u.error.offending_type.set = true;
		m.u.error.offending_type.v = (struct proto_str){offending_type, strlen(offending_type)};
	}
	a->st.bad_frames++;
	if (agent_send(a, id, &m) < 0)
		agent_log(a, 0, "cannot queue core.error for id %u", id);
}

void agent_sess_add(struct agent *a, struct agent_sess *s)
{
	s->refs = 1;
	s->done = false;
	s->prev_all = NULL;
	s->next_all = a->sessions;
	if (a->sessions)
		a->sessions->prev_all = s;
	a->sessions = s;
}

/* Drop one reference; the last one frees the session. */
void agent_sess_put(struct agent *a, struct agent_sess *s)
{
	if (--s->refs > 0)
		return;
	if (s->prev_all)
		s->prev_all->next_all = s->next_all;
	else
		a->sessions = s->next_all;
	if (s->next_all)
		s->next_all->prev_all = s->prev_all;
	if (s->kind == AGENT_SESS_EXEC)
		agent_exec_free(a, (struct agent_exec *)s);
	else if (s->kind == AGENT_SESS_TCP)
		agent_tcp_free(a, (struct agent_tcp *)s);
	else
		agent_fs_free(a, s);
}

/* ---- aggregate input credit (protocol-gen9.md G6) ---------------------- */

/* Count host input of one class as consumed; the grant goes out at the end of the turn. */
void agent_credit_release(struct agent *a, bool data, uint64_t bytes, uint64_t frames)
{
	if (!a->wt_on || frames == 0)
		return;
	if (data) {
		a->wt_consumed.bulk_bytes += bytes;
		a->wt_consumed.bulk_frames += frames;
	} else {
		a->wt_consumed.control_bytes += bytes;
		a->wt_consumed.control_frames += frames;
	}
	a->wt_moved = true;
}

/* The grant: everything consumed plus the initial window, once per loop turn at most. */
static void credit_flush(struct agent *a)
{
	struct proto_msg m = {.type = PROTO_T_WORKLOAD_TRANSPORT_CREDIT, .v = PROTO_GEN_WORKLOAD};
	struct proto_workload_transport *g = &m.u.workload_transport_credit;

	if (!a->wt_moved || a->console_lost)
		return;
	g->control_bytes = a->wt_consumed.control_bytes + PROTO_WORKLOAD_CONTROL_BYTES;
	g->control_frames = a->wt_consumed.control_frames + PROTO_WORKLOAD_CONTROL_FRAMES;
	g->bulk_bytes = a->wt_consumed.bulk_bytes + PROTO_WORKLOAD_DATA_BYTES;
	g->bulk_frames = a->wt_consumed.bulk_frames + PROTO_WORKLOAD_DATA_FRAMES;
	if (agent_send(a, PROTO_WORKLOAD_CREDIT_ID, &m) < 0) {
		agent_log(a, 1, "cannot queue core.workload.transport.credit; retried next turn");
		return;
	}
	a->wt_moved = false;
}

/*
 * Count one host frame received after core.init.ack.  A host past its
 * grant is logged once and otherwise served: the sinks' backpressure (the
 * console pauses) is all it meets, never an exit (wire.md F33).
 */
static void credit_count_in(struct agent *a, bool data, size_t wire)
{
	struct proto_workload_transport *in = &a->wt_in, *c = &a->wt_consumed;
	bool over;

	if (data) {
		in->bulk_bytes += wire;
		in->bulk_frames++;
		over = in->bulk_bytes > c->bulk_bytes + PROTO_WORKLOAD_DATA_BYTES ||
		       in->bulk_frames > c->bulk_frames + PROTO_WORKLOAD_DATA_FRAMES;
	} else {
		in->control_bytes += wire;
		in->control_frames++;
		over = in->control_bytes > c->control_bytes + PROTO_WORKLOAD_CONTROL_BYTES ||
		       in->control_frames > c->control_frames + PROTO_WORKLOAD_CONTROL_FRAMES;
	}
	if (over && !a->wt_over_logged) {
		agent_log(a, 1, "host passed its aggregate input credit (%s); served anyway",
			data ? "data" : "control");
		a->wt_over_logged = true;
	}
}

/* ---- console output ---------------------------------------------------- */

static void tx_flush(struct agent *a)
{
	struct io_uring_sqe *sqe;
	struct chunk *c;
	unsigned n = 0;

	if (a->tx_writing || !a->tx_head)
		return;
	for (c = a->tx_head; c && n < AGENT_TX_IOV; c = c->next, n++) {
		a->txw[n] = c;
		a->txiov[n].iov_base = chunk_ptr(c);
		a->txiov[n].iov_len = c->len;
	}
	a->tx_head = c;
	if (!c)
		a->tx_tail = NULL;
	a->txw_n = n;
	sqe = agent_sqe(a);
	io_uring_prep_writev(sqe, a->con_fd, a->txiov, n, (__u64)-1);
	io_uring_sqe_set_data(sqe, &a->op_con_write);
	a->tx_writing = true;
}

static void tx_complete(struct agent *a, int res)
{
	size_t left = res > 0 ? (size_t)res : 0;
	unsigned i;

	a->tx_writing = false;
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		if (!a->console_lost) { /* after the host's own close a failed write is expected */
			agent_log(a, 0, "console write failed: %s; host is gone", strerror(-res));
			a->exit_code = AGENT_EXIT_CONSOLE_LOST;
		}
		a->quit = true;
		left = 0;
	}
	a->st.bytes_out += left;
	for (i = 0; i < a->txw_n; i++) {
		struct chunk *c = a->txw[i];

		if (left < c->len) {
			chunk_pull_front(c, (uint32_t)left);
			break;
		}
		left -= c->len;
		if (c->user) {
			struct agent_src *src = c->user;

			agent_src_chunk_sent(a, src);
			agent_sess_put(a, src->sess);
		}
		agent_chunk_release(a, c);
	}
	/* Put the unwritten rest back in front of the queue, in order. */
	if (i < a->txw_n) {
		struct chunk *tail = a->txw[a->txw_n - 1];

		for (unsigned j = i; j + 1 < a->txw_n; j++)
			a->txw[j]->next = a->txw[j + 1];
		tail->next = a->tx_head;
		if (!a->tx_head)
			a->tx_tail = tail;
		a->tx_head = a->txw[i];
	}
	a->txw_n = 0;
	agent_sources_retry(a);
}

/* ---- console input ------------------------------------------------------ */

/*
 * Read the rest of the record's payload (exactly: the next frame's bytes
 * stay on the console) into chunks, as many as it needs up to AGENT_RX_IOV.
 * With no chunk free the bytes go through rx[] and are copied: never a wait.
 */
static void rx_arm_payload(struct agent *a)
{
	struct agent_rx_record *rec = &a->rx_rec;
	unsigned max = AGENT_RX_IOV, i;
	struct io_uring_sqe *sqe;
	size_t room = 0;
	uint32_t want = rec->left;

	for (i = 0; i < rec->n; i++)
		room += chunk_tailroom(rec->c[i]);
	while (rec->n < max && room < rec->left) {
		struct chunk *c = agent_chunk_get(a, false);

		if (!c)
			break;
		rec->c[rec->n++] = c;
		room += chunk_tailroom(c);
	}
	for (i = 0; i < rec->n && want > 0; i++) {
		struct chunk *c = rec->c[i];
		uint32_t take = want < chunk_tailroom(c) ? want : chunk_tailroom(c);

		rec->iov[i] = (struct iovec){chunk_ptr(c) + c->len, take};
		want -= take;
	}
	sqe = agent_sqe(a);
	if (rec->n == 0)
		io_uring_prep_read(sqe, a->con_fd, a->rx,
			rec->left < AGENT_RX_READ ? rec->left : AGENT_RX_READ, (__u64)-1);
	else if (i == 1)
		io_uring_prep_read(sqe, a->con_fd, rec->iov[0].iov_base,
			(unsigned)rec->iov[0].iov_len, (__u64)-1);
	else
		io_uring_prep_readv(sqe, a->con_fd, rec->iov, i, (__u64)-1);
	io_uring_sqe_set_data(sqe, &a->op_con_read);
	a->rx_reading = true;
}

static void rx_arm(struct agent *a)
{
	struct io_uring_sqe *sqe;
	size_t want;

	if (a->rx_reading || a->rx_eof || a->rx_paused || a->quit)
		return;
	if (a->rx_mode == AGENT_RX_PAYLOAD) {
		rx_arm_payload(a);
		return;
	}
	/* Keep room for one read after a partial frame; compact lazily. */
	if (AGENT_RX_CAP - a->rx_len < AGENT_RX_READ && a->rx_off > 0) {
		memmove(a->rx, a->rx + a->rx_off, a->rx_len - a->rx_off);
		a->rx_len -= a->rx_off;
		a->rx_off = 0;
	}
	want = AGENT_RX_CAP - a->rx_len;
	if (a->rx_mode == AGENT_RX_HEADER) {
		/* The frame at hand and no more: a record prefix, or the rest of a small frame. */
		size_t have = a->rx_len - a->rx_off, need = PROTO_BULK_PREFIX_SIZE;
		struct proto_frame f;

		if (proto_frame_parse(a->rx + a->rx_off, have, &f) == 0 && f.need > need)
			need = f.need;
		if (need > have && need - have <= AGENT_RX_READ)
			want = need - have;
		else
			a->rx_mode = AGENT_RX_FRAMES;
	}
	sqe = agent_sqe(a);
	io_uring_prep_read(sqe, a->con_fd, a->rx + a->rx_len, (unsigned)want, (__u64)-1);
	io_uring_sqe_set_data(sqe, &a->op_con_read);
	a->rx_reading = true;
}

static void send_init_resolved(struct agent *a)
{
	struct proto_msg m = {.type = PROTO_T_INIT_RESOLVED};

	m.u.init_resolved.default_user = a->default_user;
	agent_send(a, 0, &m);
}

static void send_ready(struct agent *a)
{
	static const struct proto_str ext[] = {{PROTO_EXT_CREDIT, sizeof(PROTO_EXT_CREDIT) - 1}};
	struct proto_msg m = {.type = PROTO_T_READY};
	const char *ver = AGENT_VERSION_STRING;
	uint64_t now = boottime_ns();

	m.u.ready.boot_time_ns = a->cfg->boot_time_ns;
	m.u.ready.init_time_ns = now - a->init_start_ns;
	m.u.ready.ready_time_ns = now;
	m.u.ready.agent_version = (struct proto_str){ver, strlen(ver)};
	/*
	 * A host that wrote generation 8 or later in its bootstrap learns ours
	 * (9); a generation-7 host sees the generation-7 bytes of before.  A
	 * generation-9 host is told of the aggregate input credit (G2.4, G6);
	 * no other gen-9 ready field is set: the agent reads no MSBL lease and
	 * binds no second port.
	 */
	if (a->host_gen >= PROTO_GEN_BULK)
		m.v = PROTO_VERSION_MAX;
	if (a->wt_on) {
		m.u.ready.workload_transport_barrier_version.set = true;
		m.u.ready.workload_transport_barrier_version.v = PROTO_WORKLOAD_BARRIER_VERSION;
	}
	/* Extensions are announced back only to a host that named them (wire.md). */
	if (a->ext_credit) {
		m.u.ready.ext = ext;
		m.u.ready.n_ext = 1;
	}
	agent_send(a, 0, &m);
}

/* Apply what the bootstrap asks that makes sense here (wire.md: VM plumbing only as PID 1). */
static void apply_bootstrap(struct agent *a, const struct proto_bootstrap *b)
{
	a->init_start_ns = boottime_ns();
	a->have_default_user = false;
	a->default_user = (struct proto_default_user){0, 0};
	if (b->user.set) {
		uid_t uid;
		gid_t gid;
		char spec[256];

		snprintf(spec, sizeof(spec), "%.*s", (int)b->user.v.len, b->user.v.ptr);
		if (agent_user_resolve(spec, &uid, &gid) == 0) {
			a->default_user = (struct proto_default_user){uid, gid};
			a->have_default_user = true;
		} else {
			agent_log(a, 1, "bootstrap: default user `%s` not found; commands run as the agent",
				spec);
		}
	}
	a->ext_credit = proto_ext_named(b->ext, b->n_ext, PROTO_EXT_CREDIT);
	a->have_default_cwd = b->default_cwd.set;
	if (b->default_cwd.set)
		snprintf(a->default_cwd, sizeof(a->default_cwd), "%.*s", (int)b->default_cwd.v.len,
			b->default_cwd.v.ptr);
	for (size_t i = 0; i < b->n_default_env; i++) {
		char key[256], val[4096];

		snprintf(key, sizeof(key), "%.*s", (int)b->default_env[i].key.len,
			b->default_env[i].key.ptr);
		snprintf(val, sizeof(val), "%.*s", (int)b->default_env[i].value.len,
			b->default_env[i].value.ptr);
		setenv(key, val, 1);
	}
	if (!a->cfg->pid1 && (b->block_root.kind != PROTO_BOOT_ROOT_NONE || b->hostname.set || b->network.set))
		agent_log(a, 2, "bootstrap: VM plumbing (root, hostname, network) skipped: not PID 1");
}

/* Boot phase (spec 4.1): bootstrap -> init.resolved -> init.ack -> ready. */
static void handle_boot_frame(struct agent *a, const struct proto_frame *f,
	const struct proto_msg *m, int rc)
{
	if (rc == 0 && a->boot == AGENT_BOOT_WAIT_BOOTSTRAP && m->type == PROTO_T_BOOTSTRAP &&
		f->id == 0) {
		if (m->v < 7) {
			agent_log(a, 0, "core.bootstrap with generation %u ignored (needs 7 or later)",
				m->v);
			return;
		}
		a->host_gen = m->v;
		/* A new channel (PID 1 after a framing error): the credit starts over. */
		a->wt_on = m->v >= PROTO_GEN_WORKLOAD;
		a->wt_moved = a->wt_over_logged = false;
		a->wt_in = a->wt_consumed = (struct proto_workload_transport){0};
		apply_bootstrap(a, &m->u.bootstrap);
		send_init_resolved(a);
		a->boot = AGENT_BOOT_WAIT_ACK;
		return;
	}
	if (rc == 0 && a->boot == AGENT_BOOT_WAIT_ACK && m->type == PROTO_T_INIT_ACK) {
		send_ready(a);
		a->boot = AGENT_BOOT_RUNNING;
		agent_log(a, 2, "ready");
		return;
	}
	/* wire.md: a boot-phase surprise is logged and skipped, not fatal. */
	agent_log(a, 1, "boot: waiting for %s, skipped a frame (%s on id %u%s%s)",
		a->boot == AGENT_BOOT_WAIT_BOOTSTRAP ? "core.bootstrap" : "core.init.ack",
		rc == 0 ? proto_type_name(m->type) : "undecodable", f->id, rc ? ": " : "",
		rc ? proto_strerror(rc) : "");
}

static bool is_live(struct agent *a, uint32_t id)
{
	return sessmap_get(&a->ids, id) != NULL;
}

static struct agent_exec *exec_of(struct agent *a, uint32_t id)
{
	struct agent_sess *s = sessmap_get(&a->ids, id);

	return s && s->kind == AGENT_SESS_EXEC ? (struct agent_exec *)s : NULL;
}

static void begin_shutdown(struct agent *a)
{
	struct agent_sess *s, *nx;

	if (a->shutting_down)
		return;
	agent_log(a, 2, "shutdown: SIGTERM to every session, SIGKILL after %d ms",
		AGENT_SHUTDOWN_GRACE_MS);
	a->shutting_down = true;
	a->shutdown_deadline_ms = agent_now_ms() + AGENT_SHUTDOWN_GRACE_MS;
	agent_exec_terminate_all(a, SIGTERM);
	agent_fs_close_all(a); /* fs write streams dropped, handles closed (spec 4.9) */
	for (s = a->sessions; s; s = nx) {
		nx = s->next_all;
		if (s->kind == AGENT_SESS_TCP && !s->done)
			agent_tcp_abort(a, (struct agent_tcp *)s);
	}
}

static void handle_running_frame(struct agent *a, const struct proto_frame *f,
	const struct proto_msg *m)
{
	struct agent_exec *e;

	switch (m->type) {
	case PROTO_T_PING: {
		struct proto_msg r = {.type = PROTO_T_PONG};

		agent_send(a, f->id, &r);
		return;
	}
	case PROTO_T_TOUCH: {
		struct proto_msg r = {.type = PROTO_T_TOUCHED};

		r.u.touched.activity_seq = ++a->act.activity_seq;
		agent_send(a, f->id, &r);
		return;
	}
	case PROTO_T_EXEC_REQUEST:
	case PROTO_T_TCP_CONNECT:
	case PROTO_T_FS_REQUEST:
		if (is_live(a, f->id)) {
			agent_send_error(a, f->id, PROTO_ERROR_INVALID_SESSION, proto_type_name(m->type),
				"id %u already has a live session", f->id);
			return;
		}
		if (a->shutting_down) {
			agent_send_error(a, f->id, PROTO_ERROR_INVALID_SESSION, proto_type_name(m->type),
				"the agent is shutting down");
			return;
		}
		if (m->type == PROTO_T_EXEC_REQUEST)
			agent_exec_request(a, f->id, &m->u.exec_request);
		else if (m->type == PROTO_T_TCP_CONNECT)
			agent_tcp_connect(a, f->id, m->v, &m->u.tcp_connect);
		else
			agent_fs_request(a, f->id, m->v, &m->u.fs_request);
		return;
	case PROTO_T_EXEC_STDIN:
		if ((e = exec_of(a, f->id)))
			agent_exec_stdin(a, e, m->u.data.ptr, m->u.data.len);
		else
			a->st.dropped_unknown_id++;
		return;
	case PROTO_T_EXEC_RESIZE:
		if ((e = exec_of(a, f->id)))
			agent_exec_resize(a, e, &m->u.exec_resize);
		else
			a->st.dropped_unknown_id++;
		return;
	case PROTO_T_EXEC_SIGNAL:
		if ((e = exec_of(a, f->id)))
			agent_exec_signal(a, e, m->u.exec_signal.signal);
		else
			a->st.dropped_unknown_id++;
		return;
	case PROTO_T_SANDWIRE_CREDIT: /* only with ext_credit (type_known) */
		agent_exec_credit(a, f->id, m->u.sandwire_credit.bytes);
		return;
	case PROTO_T_TCP_DATA:
		agent_tcp_data(a, f->id, m->u.data.ptr, m->u.data.len);
		return;
	case PROTO_T_TCP_EOF:
		agent_tcp_eof(a, f->id);
		return;
	case PROTO_T_TCP_CLOSE:
		agent_tcp_close(a, f->id);
		return;
	case PROTO_T_FS_DATA:
		agent_fs_data(a, f->id, m->u.data.ptr, m->u.data.len);
		return;
	case PROTO_T_RELAY_CLIENT_DISCONNECTED:
		agent_relay_client_gone(a, &m->u.relay_client_disconnected);
		return;
	case PROTO_T_CLOCK_SYNC:
		agent_clock_sync(a, m->u.clock_sync.unix_time_nanos);
		return;
	case PROTO_T_SHUTDOWN:
		begin_shutdown(a);
		return;
	case PROTO_T_BULK_CREDIT:
	case PROTO_T_BULK_FINISH:
	case PROTO_T_BULK_CANCEL:
		if (!agent_fs_bulk_control(a, f->id, m))
			agent_tcp_bulk_control(a, f->id, m);
		return;
	case PROTO_T_WORKLOAD_FREEZE:
	case PROTO_T_WORKLOAD_THAW:
	case PROTO_T_ROOT_DISK_PREPARE:
	case PROTO_T_ROOT_DISK_GROW:
		/* Generation 9 operations this agent does not implement (G8). */
		agent_send_error(a, f->id, PROTO_ERROR_CAPABILITY_UNAVAILABLE,
			proto_type_name(m->type), "%s is not available in this agent",
			proto_type_name(m->type));
		return;
	default:
		/* ready, bootstrap, init.* after boot, guest->host types: ignored (spec 4.2). */
		agent_log(a, 3, "ignored %s on id %u", proto_type_name(m->type), f->id);
		return;
	}
}

/* Activity accounting of spec 4.7: clock.sync, ping and touch do not count here. */
static void count_host_frame(struct agent *a, enum proto_type t)
{
	a->st.frames_in++;
	if (t != PROTO_T_CLOCK_SYNC && t != PROTO_T_PING && t != PROTO_T_TOUCH) {
		a->act.host_messages++;
		a->act.activity_seq++;
	}
}

/*
 * False for an extension type the host did not name in its bootstrap: it is
 * answered as a type the agent does not know (wire.md "Boot and announcement").
 */
static bool type_known(const struct agent *a, enum proto_type t)
{
	return t != PROTO_T_SANDWIRE_CREDIT || a->ext_credit;
}

/* A running-phase message, or the core.error that answers what is wrong with it. */
static void handle_running_input(struct agent *a, const struct proto_frame *f,
	const struct proto_msg *m, int rc, const struct proto_errinfo *ei)
{
	char why[256];

	if (rc == 0 && type_known(a, m->type)) {
		handle_running_frame(a, f, m);
		return;
	}
	if (type_known(a, m->type)) {
		proto_errinfo_format(ei, why, sizeof(why));
	} else {
		rc = PROTO_E_UNKNOWN_TYPE;
		snprintf(why, sizeof(why), "%s, but the host named no such extension",
			proto_type_name(m->type));
	}
	agent_log(a, 1, "bad frame on id %u: %s", f->id, why);
	if (rc != PROTO_E_UNKNOWN_TYPE && proto_type_valid(m->type) && m->v != 0 && m->v < 5)
		return; /* an old peer cannot take core.error (spec F7); dropped, counted */
	if (rc == PROTO_E_UNKNOWN_TYPE) {
		char tname[128];

		snprintf(tname, sizeof(tname), "%.*s", (int)m->tname.len, m->tname.ptr);
		agent_send_error(a, f->id, PROTO_ERROR_UNSUPPORTED_MESSAGE_TYPE, tname,
			"unsupported message type `%s`", tname);
	} else if (rc == PROTO_E_FLAGS) {
		agent_send_error(a, f->id, PROTO_ERROR_INVALID_FLAGS, proto_type_name(m->type),
			"invalid flags for %s: got %u, expected %u", proto_type_name(m->type), f->flags,
			proto_type_flags(m->type));
	} else if (proto_type_valid(m->type)) {
		agent_send_error(a, f->id, PROTO_ERROR_INVALID_PAYLOAD, proto_type_name(m->type),
			"decode payload for %s: %s", proto_type_name(m->type), why);
	} else {
		agent_send_error(a, f->id, PROTO_ERROR_MALFORMED_MESSAGE, NULL,
			"malformed message: %s", why);
	}
}

/*
 * G6 around the handling of one running-phase frame: count it in; a data
 * frame whose payload a sink takes is consumed once written (io.c), any
 * other frame (control, or data refused or dropped) once handled.
 */
static void credit_begin(struct agent *a, size_t wire, bool data)
{
	if (!a->wt_on)
		return;
	credit_count_in(a, data, wire);
	a->wt_cur_wire = wire;
	a->wt_cur_data = data;
}

static void credit_end(struct agent *a, size_t wire, bool data)
{
	if (!a->wt_on)
		return;
	if (!data || a->wt_cur_data) /* not attached to a sink */
		agent_credit_release(a, data, wire, 1);
	a->wt_cur_data = false;
}

static void handle_frame(struct agent *a, const struct proto_frame *f)
{
	struct proto_arena arena;
	struct proto_errinfo ei = {0};
	struct proto_msg m;
	bool data;
	int rc;

	if (a->boot == AGENT_BOOT_RUNNING && (f->flags & PROTO_FLAG_BULK)) {
		/* A raw record (or a stray 0x08 bit): never CBOR, never fatal (wire.md). */
		count_host_frame(a, PROTO_T_TCP_DATA);
		credit_begin(a, f->wire_len, true);
		if (!agent_fs_record(a, f))
			agent_tcp_record(a, f);
		credit_end(a, f->wire_len, true);
		return;
	}
	proto_arena_init(&arena, a->arena_mem, AGENT_ARENA_SIZE);
	rc = proto_frame_decode(f, &m, &arena, &ei);
	if (rc == 0)
		count_host_frame(a, m.type);
	else
		a->st.frames_in++;
	if (a->boot != AGENT_BOOT_RUNNING) {
		handle_boot_frame(a, f, &m, rc);
		return;
	}
	data = proto_type_is_input_data(m.type);
	credit_begin(a, f->wire_len, data);
	handle_running_input(a, f, &m, rc, &ei);
	credit_end(a, f->wire_len, data);
}

/*
 * The partial frame at the end of rx[] is a raw record: when its prefix is
 * in, a chunk is free and it is a valid record of a bulk flow whose sink
 * takes data (agent_fs_record_begin, agent_tcp_record_begin: the checks of
 * the whole-frame path), take it now.  The payload bytes already in rx[]
 * are copied to the sink; the rest is read straight into chunks
 * (AGENT_RX_PAYLOAD).  False, nothing changed, otherwise: the frame is
 * parsed whole when it is in, as any other.
 */
static bool rx_record_begin(struct agent *a)
{
	struct agent_rx_record *rec = &a->rx_rec;
	const uint8_t *p = a->rx + a->rx_off;
	size_t have = a->rx_len - a->rx_off;
	struct proto_bulk_rec r;
	struct agent_sink *k;
	struct chunk *c;
	int rc;

	if (a->boot != AGENT_BOOT_RUNNING || have < PROTO_BULK_PREFIX_SIZE ||
		proto_bulk_prefix_parse(p, have, &r) != PROTO_BULK_PREFIX_SIZE)
		return false;
	c = agent_chunk_get(a, false);
	if (!c)
		return false;
	k = agent_fs_record_begin(a, &r);
	if (!k)
		k = agent_tcp_record_begin(a, &r);
	if (!k) {
		agent_chunk_release(a, c);
		return false;
	}
	count_host_frame(a, PROTO_T_TCP_DATA);
	if (a->wt_on) /* consumed once its last byte is written (rx_record_payload) */
		credit_count_in(a, true, PROTO_BULK_PREFIX_SIZE + (size_t)r.len);
	rec->sink = k;
	rec->sess = k->sess;
	rec->sess->refs++;
	rec->wire = PROTO_BULK_PREFIX_SIZE + (size_t)r.len;
	have -= PROTO_BULK_PREFIX_SIZE;
	rec->left = r.len - (uint32_t)have;
	rec->c[0] = c;
	rec->n = 1;
	a->rx_mode = AGENT_RX_PAYLOAD;
	if (have > 0) {
		rc = agent_sink_push(a, k, p + PROTO_BULK_PREFIX_SIZE, have);
		if (rc < 0 && rc != -EPIPE)
			agent_sink_fail(a, k, -rc);
	}
	a->rx_off = a->rx_len = 0;
	return true;
}

/*
 * <n> payload bytes of the record came in: full chunks (all of them after
 * the last byte) go to the sink as they are, a partly filled one waits for
 * the next read.  After the last byte the record is consumed as a whole
 * frame is (G6) and the reader looks for the next record prefix.  A sink
 * that ended meanwhile (its stream failed or was closed) drops the rest.
 */
static void rx_record_payload(struct agent *a, size_t n)
{
	struct agent_rx_record *rec = &a->rx_rec;
	struct chunk *full[AGENT_RX_IOV];
	unsigned nfull = 0, keep = 0;
	bool last = n == rec->left;
	int rc;

	rec->left -= (uint32_t)n;
	for (unsigned i = 0; i < rec->n; i++) {
		struct chunk *c = rec->c[i];
		uint32_t take = n < chunk_tailroom(c) ? (uint32_t)n : chunk_tailroom(c);

		c->len += take;
		n -= take;
		if (c->len > 0 && (last || chunk_tailroom(c) == 0))
			full[nfull++] = c;
		else if (last)
			agent_chunk_release(a, c);
		else
			rec->c[keep++] = c;
	}
	if (last && a->wt_on) { /* the frame attaches to the sink with its last bytes */
		a->wt_cur_wire = rec->wire;
		a->wt_cur_data = true;
	}
	if (rec->n == 0)
		rc = agent_sink_push(a, rec->sink, a->rx, n);
	else
		rc = agent_sink_push_chunks(a, rec->sink, full, nfull);
	rec->n = keep;
	if (rc < 0 && rc != -EPIPE)
		agent_sink_fail(a, rec->sink, -rc);
	if (!last)
		return;
	credit_end(a, rec->wire, true);
	agent_sess_put(a, rec->sess);
	rec->sink = NULL;
	rec->sess = NULL;
	a->rx_mode = AGENT_RX_HEADER;
	a->rx_header_frames = 0;
}

/* A framing error: the byte stream cannot be trusted any more. */
static void framing_error(struct agent *a, int rc)
{
	agent_log(a, 0, "console framing error: %s; the channel is unusable", proto_strerror(rc));
	a->rx_len = a->rx_off = 0;
	a->rx_mode = AGENT_RX_FRAMES;
	if (a->cfg->pid1) {
		/* init never exits: wait for the host to start over with a bootstrap. */
		a->boot = AGENT_BOOT_WAIT_BOOTSTRAP;
		return;
	}
	a->quit = true;
	a->exit_code = AGENT_EXIT_FRAMING;
}

/* Parse and handle every whole frame in rx[]; stops early while paused. */
static void rx_process(struct agent *a)
{
	while (!a->quit && !a->rx_paused) {
		struct proto_frame f;
		int rc = proto_frame_parse(a->rx + a->rx_off, a->rx_len - a->rx_off, &f);

		if (rc == 0) {
			rx_record_begin(a);
			break;
		}
		if (rc < 0) {
			framing_error(a, rc);
			return;
		}
		handle_frame(a, &f);
		a->rx_off += (size_t)rc;
		/* Frames between records are read one by one, a few only: then big reads again. */
		if (a->rx_mode == AGENT_RX_HEADER && ++a->rx_header_frames == AGENT_RX_HEADER_FRAMES)
			a->rx_mode = AGENT_RX_FRAMES;
	}
	if (a->rx_off == a->rx_len)
		a->rx_off = a->rx_len = 0;
}

static void rx_complete(struct agent *a, int res)
{
	a->rx_reading = false;
	if (res > 0) {
		a->st.bytes_in += (uint64_t)res;
		if (a->rx_mode == AGENT_RX_PAYLOAD) {
			rx_record_payload(a, (size_t)res);
		} else {
			a->rx_len += (size_t)res;
			rx_process(a);
		}
	} else if (res == 0 || (res < 0 && res != -EINTR && res != -EAGAIN)) {
		if (res < 0 && res != -ECONNRESET)
			agent_log(a, 0, "console read failed: %s", strerror(-res));
		if (a->cfg->pid1) {
			/* The host end went away; retry on the next tick (spec: 100 ms). */
			a->rx_eof = true;
			return;
		}
		agent_log(a, 2, "console closed by the host; shutting down");
		a->rx_eof = true;
		a->console_lost = true;
		begin_shutdown(a);
		return;
	}
	rx_arm(a);
}

/* ---- signals and timers ------------------------------------------------- */

static void signal_arm(struct agent *a)
{
	struct io_uring_sqe *sqe = agent_sqe(a);

	io_uring_prep_poll_add(sqe, a->sig_fd, POLLIN);
	io_uring_sqe_set_data(sqe, &a->op_signal);
}

static void reap_children(struct agent *a)
{
	int st;
	pid_t pid;

	/* Reaps every child, including orphans handed to PID 1. */
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct agent_exec *e = sessmap_del(&a->pids, (uint32_t)pid);

		if (e)
			agent_exec_reaped(a, e, st);
	}
}

static void signal_complete(struct agent *a, int res)
{
	struct signalfd_siginfo si;

	while (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (a->cfg->pid1) {
				agent_log(a, 2, "ignoring signal %u as init", si.ssi_signo);
				continue;
			}
			agent_log(a, 2, "signal %u: shutting down", si.ssi_signo);
			begin_shutdown(a);
		}
	}
	reap_children(a);
	signal_arm(a);
}

static void tick_arm(struct agent *a)
{
	struct io_uring_sqe *sqe = agent_sqe(a);

	a->tick.tv_sec = 0;
	a->tick.tv_nsec = 100 * 1000 * 1000;
	io_uring_prep_timeout(sqe, &a->tick, 0, 0);
	io_uring_sqe_set_data(sqe, &a->op_tick);
}

static void tick_complete(struct agent *a)
{
	uint64_t now = agent_now_ms();

	if (now >= a->next_heartbeat_ms) {
		struct timespec wall;

		clock_gettime(CLOCK_REALTIME, &wall);
		a->act.active_exec_sessions = a->n_exec;
		a->act.active_tcp_streams = a->n_tcp;
		agent_heartbeat_tick(&a->hb, &a->act, wall);
		a->next_heartbeat_ms = now + 1000;
	}
	agent_resolve_tick(a, now); /* lookups past their stream's connect deadline */
	if (a->rx_eof && a->cfg->pid1 && !a->shutting_down) {
		a->rx_eof = false; /* PID 1: try the port again */
		rx_arm(a);
	}
	if (a->shutting_down) {
		if (now >= a->shutdown_deadline_ms && a->n_exec > 0) {
			agent_exec_terminate_all(a, SIGKILL);
			a->shutdown_deadline_ms = now + 300; /* PROCESS_REAP_BUDGET */
		} else if (a->n_exec == 0 && (a->console_lost || (!a->tx_head && !a->tx_writing))) {
			a->quit = true;
		} else if (now >= a->shutdown_deadline_ms + 1000) {
			agent_log(a, 1, "shutdown: %u sessions did not end; exiting anyway", a->n_exec);
			a->quit = true;
		}
	}
	tick_arm(a);
}

/* ---- setup and the loop ------------------------------------------------- */

/* io_uring, or the poll(2) fallback when it cannot be set up (or --no-io-uring). */
static void ring_setup(struct agent *a)
{
	static const struct {
		unsigned flags;
		const char *what;
	} tries[] = {
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
			"single issuer, deferred task work"},
		{IORING_SETUP_COOP_TASKRUN, "cooperative task work"},
		{0, "default"},
	};
	char why[128] = "disabled by --no-io-uring";
	int rc;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]) && !a->cfg->no_io_uring; i++) {
		rc = io_uring_queue_init(AGENT_RING_ENTRIES, &a->ring, tries[i].flags);
		if (rc == 0) {
			a->ring_ready = true;
			agent_log(a, 3, "io_uring ready (%s)", tries[i].what);
			return;
		}
		snprintf(why, sizeof(why), "io_uring_setup: %s", strerror(-rc));
		if (rc != -EINVAL)
			break;
	}
	uring_fallback_init(&a->fb);
	a->fallback = true;
	agent_log(a, 1, "io_uring unavailable (%s): using poll(2)", why);
}

static int agent_init(struct agent *a, const struct agent_config *cfg)
{
	sigset_t mask;
	int err = 0, rc;
	struct timespec wall;

	memset(a, 0, sizeof(*a));
	a->cfg = cfg;
	a->con_fd = cfg->console_fd;
	a->sig_fd = -1;
	a->boot = AGENT_BOOT_WAIT_BOOTSTRAP;
	a->init_start_ns = boottime_ns();
	a->op_con_read.kind = AGENT_OP_CON_READ;
	a->op_con_write.kind = AGENT_OP_CON_WRITE;
	a->op_signal.kind = AGENT_OP_SIGNAL;
	a->op_tick.kind = AGENT_OP_TICK;

	ring_setup(a);
	a->rx = malloc(AGENT_RX_CAP);
	a->arena_mem = malloc(AGENT_ARENA_SIZE);
	a->pool = chunk_pool_new(0, AGENT_POOL_CHUNKS, CHUNK_HEADROOM + AGENT_CHUNK_PAYLOAD, NULL,
		&err);
	if (!a->rx || !a->arena_mem || !a->pool || sessmap_init(&a->ids, 64) < 0 ||
		sessmap_init(&a->pids, 64) < 0 || agent_fs_init(a) < 0) {
		agent_log(a, 0, "out of memory setting up the agent");
		return -ENOMEM;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	a->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sig_fd < 0) {
		rc = -errno;
		agent_log(a, 0, "signalfd: %s", strerror(errno));
		return rc;
	}
	clock_gettime(CLOCK_REALTIME, &wall);
	agent_heartbeat_init(&a->hb, cfg->heartbeat_dir ? cfg->heartbeat_dir : AGENT_HEARTBEAT_DIR,
		wall);
	a->next_heartbeat_ms = agent_now_ms() + 1000;
	return 0;
}

/* Free a session whatever its references: the ring is gone, nothing completes any more. */
static void sess_force_free(struct agent *a, struct agent_sess *s)
{
	if (s->kind == AGENT_SESS_EXEC) {
		struct agent_exec *e = (struct agent_exec *)s;

		if (!e->reaped) {
			kill(-e->pid, SIGKILL);
			kill(e->pid, SIGKILL);
			waitpid(e->pid, NULL, 0);
			e->reaped = true;
			sessmap_del(&a->pids, (uint32_t)e->pid);
		}
		agent_src_release(a, &e->out);
		agent_src_release(a, &e->err);
		agent_sink_release(a, &e->in);
		agent_exec_free(a, e);
	} else if (s->kind == AGENT_SESS_TCP) {
		struct agent_tcp *t = (struct agent_tcp *)s;

		agent_src_release(a, &t->rd);
		agent_sink_release(a, &t->wr);
		agent_tcp_free(a, t);
	} else {
		agent_fs_free(a, s);
	}
}

static void agent_destroy(struct agent *a)
{
	struct chunk *c;

	/* Stop the kernel first: exiting the ring cancels every operation in flight. */
	a->tearing_down = true;
	if (a->ring_ready)
		io_uring_queue_exit(&a->ring);
	if (a->fallback)
		uring_fallback_destroy(&a->fb);
	agent_resolve_destroy(a); /* joins the resolver thread; touches no session */
	for (unsigned i = 0; i < a->txw_n; i++)
		agent_chunk_release(a, a->txw[i]);
	for (unsigned i = 0; i < a->rx_rec.n; i++)
		agent_chunk_release(a, a->rx_rec.c[i]);
	for (c = a->tx_head; c;) {
		struct chunk *nx = c->next;

		agent_chunk_release(a, c);
		c = nx;
	}
	while (a->sessions) {
		struct agent_sess *s = a->sessions;

		a->sessions = s->next_all;
		sess_force_free(a, s);
	}
	agent_fs_close_all(a);
	free(a->fs);
	if (a->sig_fd >= 0)
		close(a->sig_fd);
	sessmap_destroy(&a->ids);
	sessmap_destroy(&a->pids);
	if (a->pool && chunk_pool_free(a->pool) < 0)
		agent_log(a, 0, "teardown: chunks still out of the pool (a leak)");
	free(a->rx);
	free(a->arena_mem);
}

static void handle_cqe(struct agent *a, struct io_uring_cqe *cqe)
{
	struct agent_op *op = io_uring_cqe_get_data(cqe);

	if (!op)
		return;
	switch (op->kind) {
	case AGENT_OP_CON_READ:
		rx_complete(a, cqe->res);
		break;
	case AGENT_OP_CON_WRITE:
		tx_complete(a, cqe->res);
		break;
	case AGENT_OP_SIGNAL:
		signal_complete(a, cqe->res);
		break;
	case AGENT_OP_TICK:
		tick_complete(a);
		break;
	case AGENT_OP_SRC_READ:
		agent_src_complete(a, (struct agent_src *)op, cqe->res);
		break;
	case AGENT_OP_SINK_WRITE:
		agent_sink_complete(a, (struct agent_sink *)op, cqe->res);
		break;
	case AGENT_OP_TCP_CONNECT:
		agent_tcp_connected(a, (struct agent_tcp *)((char *)op -
			offsetof(struct agent_tcp, op_connect)), cqe->res);
		break;
	case AGENT_OP_RESOLVED:
		agent_resolve_complete(a, cqe->res);
		break;
	default:
		break;
	}
}

/* Submit what is prepared and wait for at least one completion.  Returns >= 0 or -errno. */
static int agent_submit_and_wait(struct agent *a)
{
	if (a->fallback)
		return uring_fallback_submit_and_wait(&a->fb);
	return io_uring_submit_and_wait(&a->ring, 1);
}

/*
 * Hand every completion at hand to <fn>, then mark them consumed.  The
 * handlers only prepare SQEs, completed by a later wait, so this drains
 * what the last wait produced.
 */
static void agent_reap(struct agent *a, void (*fn)(struct agent *, struct io_uring_cqe *))
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (a->fallback) {
		struct io_uring_cqe c;

		while (uring_fallback_cqe_pop(&a->fb, &c))
			fn(a, &c);
		return;
	}
	io_uring_for_each_cqe(&a->ring, head, cqe) {
		fn(a, cqe);
		n++;
	}
	io_uring_cq_advance(&a->ring, n);
}

/* During the final flush only console writes matter. */
static void flush_cqe(struct agent *a, struct io_uring_cqe *cqe)
{
	struct agent_op *op = io_uring_cqe_get_data(cqe);

	if (op && op->kind == AGENT_OP_CON_WRITE)
		tx_complete(a, cqe->res);
}

int agent_run(const struct agent_config *cfg)
{
	struct agent a;
	int rc = agent_init(&a, cfg);

	if (rc < 0) {
		agent_destroy(&a);
		return AGENT_EXIT_SETUP;
	}
	signal_arm(&a);
	tick_arm(&a);
	rx_arm(&a);
	while (!a.quit) {
		rc = agent_submit_and_wait(&a);
		if (rc < 0 && rc != -EINTR && rc != -ETIME) {
			agent_log(&a, 0, "waiting for I/O: %s", strerror(-rc));
			a.exit_code = AGENT_EXIT_SETUP;
			break;
		}
		agent_reap(&a, handle_cqe);
		/* A sink drained below its limit: parse what waited, read again. */
		if (!a.rx_paused && a.rx_off < a.rx_len)
			rx_process(&a);
		rx_arm(&a);
		chunk_pool_reclaim(a.pool);
		credit_flush(&a);
		tx_flush(&a);
	}
	/* Best effort: push out what is queued (exit frames) before leaving. */
	for (int i = 0; i < 50 && (a.tx_head || a.tx_writing) && !a.console_lost; i++) {
		tx_flush(&a);
		if (agent_submit_and_wait(&a) < 0)
			break;
		agent_reap(&a, flush_cqe);
	}
	rc = a.exit_code;
	agent_log(&a, 2,
		"exit: frames in %llu out %llu, bad %llu, payload copies %llu (%llu bytes), "
		"zero-copy payload %llu bytes",
		(unsigned long long)a.st.frames_in, (unsigned long long)a.st.frames_out,
		(unsigned long long)a.st.bad_frames, (unsigned long long)a.st.copies,
		(unsigned long long)a.st.copied_bytes, (unsigned long long)a.st.zero_copy_bytes);
	if (cfg->pid1) {
		sync();
		reboot(RB_POWER_OFF);
	}
	agent_destroy(&a);
	return rc;
}
