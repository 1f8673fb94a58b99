/*
 * agent/tcp.c - TCP streams opened by the host inside the guest (spec 4.6).
 *
 *   tcp.connect -> addresses: numeric / "localhost" inline, names by the
 *                  resolver thread (resolve.h), the loop never waits on DNS
 *               -> connect to each address in order until one succeeds
 *                  (io_uring, linked timeout) -> tcp.connected
 *                  | tcp.failed "connect host:port: cause" (terminal)
 *   data both ways; destination EOF -> tcp.eof (the stream stays open for
 *   host writes); host tcp.eof -> shutdown(SHUT_WR) after queued data;
 *   host tcp.close -> abort, no reply; read/write errors -> tcp.failed.
 *
 * One 30 s deadline, set when tcp.connect arrives, covers the lookup and
 * every connect attempt, as the reference's timeout(30 s, TcpStream::
 * connect((host, port))) does: the lookup is checked on the loop's 100 ms
 * tick, each attempt's link timeout is what is left.  Expiry gives
 * "connect host:port timed out".
 * Host data that arrives before the connection is up waits in the stream's
 * bounded sink; a full sink pauses the console reader instead of growing.
 * Exactly one of connected/failed answers a connect, and at most one
 * terminal frame is sent per stream.
 *
 * Raw bulk (protocol-gen9.md G4, G5.1): a connect in a v >= 8 frame may
 * carry a `bulk` offer.  Once connected the agent answers tcp.connected,
 * then core.bulk.accepted (both flows), and from then on the data moves as
 * raw records only:
 *
 *   host records (flow 1) --checked (G4.6) once the prefix is in-->
 *       payload read straight into the sink's chunks --socket write-->
 *       core.bulk.credit as the bytes reach the socket
 *   socket reads (flow 2) --record prefix in the chunk's headroom--> host,
 *       each read bounded by the host's credit
 *   destination EOF -> core.bulk.finish (flow 2); host finish (flow 1) ->
 *   shutdown(SHUT_WR) after the data; both done -> core.tcp.closed.
 *
 * A bad record or bulk control frame fails only its stream:
 * core.bulk.cancel (reason 5), then tcp.failed.  Streams without an offer
 * are the generation-7 streams of before, byte for byte.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/resolve.h"

static struct agent_tcp *tcp_of(struct agent *a, uint32_t id)
{
	struct agent_sess *s = sessmap_get(&a->ids, id);

	return s && s->kind == AGENT_SESS_TCP ? (struct agent_tcp *)s : NULL;
}

/* End the stream: optional terminal frame, then forget its id. */
static void tcp_finish(struct agent *a, struct agent_tcp *t, const char *failure)
{
	if (t->s.done)
		return;
	if (failure) {
		struct proto_msg m = {.type = PROTO_T_TCP_FAILED};

		m.u.tcp_failed.error = (struct proto_str){failure, strlen(failure)};
		agent_send(a, t->s.id, &m);
	}
	t->s.done = true;
	t->state = AGENT_TCP_CLOSED;
	sessmap_del(&a->ids, t->s.id);
	agent_sink_drop(a, &t->wr);
	if (t->lookup) {
		/* Its answer is dropped when it comes back (agent_tcp_resolved). */
		agent_resolve_cancel(t->lookup);
	} else if (t->connecting_op) {
		/* The connect completes with -ECANCELED and drops its reference. */
		struct io_uring_sqe *sqe = agent_sqe(a);

		io_uring_prep_cancel(sqe, &t->op_connect, 0);
		io_uring_sqe_set_data(sqe, NULL);
	} else if (t->rd.fd >= 0) {
		/* Wake the read/write in flight on the socket; they complete and drop refs. */
		shutdown(t->rd.fd, SHUT_RDWR);
	}
	a->n_tcp--;
	agent_sess_put(a, &t->s);
}

/* "<what> [<where>]: <OS error text> (os error N)", as the reference's Rust errors print. */
static void os_error(char *buf, size_t cap, const char *what, const char *where, int err)
{
	snprintf(buf, cap, "%s%s%s: %s (os error %d)", what, where ? " " : "", where ? where : "",
		strerror(err), err);
}

static void send_empty(struct agent *a, uint32_t id, enum proto_type type)
{
	struct proto_msg m = {.type = type};

	agent_send(a, id, &m);
}

/* Fail a stream for a protocol fault of its bulk flows: cancel (reason 5), then tcp.failed. */
static void bulk_fail(struct agent *a, struct agent_tcp *t, const char *failure)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL};

	if (t->s.done)
		return;
	m.u.bulk_cancel.kind = PROTO_BULK_KIND_TCP;
	m.u.bulk_cancel.reason = PROTO_BULK_CANCEL_PROTOCOL;
	m.u.bulk_cancel.message = (struct proto_str){failure, strlen(failure)};
	agent_send(a, t->s.id, &m);
	tcp_finish(a, t, failure);
}

/* Both flows finished (guest finish sent, host finish applied): tcp.closed ends the stream. */
static void bulk_maybe_close(struct agent *a, struct agent_tcp *t)
{
	if (t->s.done || !t->g2h.finished || !t->h2g_shut)
		return;
	send_empty(a, t->s.id, PROTO_T_TCP_CLOSED);
	tcp_finish(a, t, NULL);
}

/*
 * Accept the stream's offer (G4.2, what agentd chooses for TCP): both
 * flows, records of at most min(offer, 256 KiB) bytes each way, the host's
 * g2h credit echoed, AGENT_BULK_H2G_WINDOW of h2g credit kept ahead of
 * what reached the socket.
 */
static void bulk_accept(struct agent *a, struct agent_tcp *t)
{
	struct proto_msg m = {.type = PROTO_T_BULK_ACCEPTED};
	struct proto_bulk_accepted *acc = &m.u.bulk_accepted;
	uint32_t rec = t->offer.max_record_payload;

	if (rec > PROTO_BULK_TCP_RECORD)
		rec = PROTO_BULK_TCP_RECORD;
	/* The offer was checked at connect: neither init can fail. */
	proto_bulk_rx_init(&t->h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, rec, AGENT_BULK_H2G_WINDOW,
		AGENT_BULK_H2G_WINDOW);
	proto_bulk_tx_init(&t->g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, rec,
		t->offer.guest_to_host_credit_limit);
	acc->kind = PROTO_BULK_KIND_TCP;
	acc->flows = PROTO_BULK_FLOWS_TCP;
	acc->format = PROTO_BULK_FORMAT_RAW_V1;
	acc->max_record_payload = rec;
	acc->host_to_guest_credit_limit = AGENT_BULK_H2G_WINDOW;
	acc->guest_to_host_credit_limit = t->offer.guest_to_host_credit_limit;
	agent_send(a, t->s.id, &m);
	t->bulk = true;
	t->pre_bulk = t->wr.bytes; /* CBOR data that came before the acceptance */
	t->wr.credit_bounded = true;
	t->rd.bulk = &t->g2h;
}

/*
 * A getaddrinfo failure as Rust's std prints it ("failed to lookup address
 * information: <gai_strerror>"; EAI_SYSTEM: the OS error).
 */
static void lookup_error(char *buf, size_t cap, const char *where, int gai_err, int sys_err)
{
	if (gai_err == EAI_SYSTEM)
		os_error(buf, cap, "connect", where, sys_err);
	else
		snprintf(buf, cap, "connect %s: failed to lookup address information: %s", where,
			gai_strerror(gai_err));
}

/*
 * The addresses of <host> when finding them cannot block: numeric IPv4 or
 * IPv6 addresses (AI_NUMERICHOST: getaddrinfo parses, consults no name
 * service) and "localhost" (127.0.0.1 only).  Returns 0 with *<list> set,
 * EAI_NONAME when <host> is a name for the resolver thread, or another
 * getaddrinfo code (*<sys_err> set for EAI_SYSTEM).
 */
static int addrs_inline(const char *host, uint16_t port, struct addrinfo **list, int *sys_err)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	char serv[8];
	int rc;

	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	snprintf(serv, sizeof(serv), "%u", port);
	rc = getaddrinfo(host, serv, &hints, list);
	*sys_err = rc == EAI_SYSTEM ? errno : 0;
	return rc;
}

/*
 * Start a connect to the next address of t->addrs: every address in
 * getaddrinfo's order until one connects, as Rust's TcpStream::connect
 * does for (host, port); when all fail, the last failure is reported.  The
 * attempt's linked timeout is what is left of the stream's deadline.
 */
static void tcp_try_next(struct agent *a, struct agent_tcp *t)
{
	struct io_uring_sqe *sqe;
	struct addrinfo *ai;
	uint64_t now = agent_now_ms(), left;
	char msg[400];
	int fd;

	if (t->rd.fd >= 0) {
		/* The previous attempt failed; nothing is in flight on its socket. */
		close(t->rd.fd);
		t->rd.fd = t->wr.fd = -1;
	}
	if (now >= t->deadline_ms) {
		snprintf(msg, sizeof(msg), "connect %s timed out", t->where);
		tcp_finish(a, t, msg);
		return;
	}
	for (;;) {
		ai = t->next_addr;
		if (!ai) {
			if (t->last_err)
				os_error(msg, sizeof(msg), "connect", t->where, t->last_err);
			else
				snprintf(msg, sizeof(msg), "connect %s: could not resolve to any addresses",
					t->where);
			tcp_finish(a, t, msg);
			return;
		}
		t->next_addr = ai->ai_next;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0)
			break;
		t->last_err = errno;
	}
	agent_src_init(&t->rd, &t->s, fd, PROTO_T_TCP_DATA, true);
	t->wr.fd = fd; /* still held: host data waits for the connection */

	left = t->deadline_ms - now;
	agent_sqe_reserve(a, 2); /* the connect and its timeout go in together */
	sqe = agent_sqe(a);
	io_uring_prep_connect(sqe, fd, ai->ai_addr, ai->ai_addrlen);
	io_uring_sqe_set_data(sqe, &t->op_connect);
	sqe->flags |= IOSQE_IO_LINK;
	t->connect_timeout.tv_sec = (long long)(left / 1000);
	t->connect_timeout.tv_nsec = (long long)(left % 1000) * 1000000;
	sqe = agent_sqe(a);
	io_uring_prep_link_timeout(sqe, &t->connect_timeout, 0);
	io_uring_sqe_set_data(sqe, NULL); /* its completion needs no handling */
	t->connecting_op = true;
	t->s.refs++;
}

/* Answer a connect with tcp.failed <text> before any stream exists. */
static void connect_refused(struct agent *a, uint32_t id, const char *text)
{
	struct proto_msg m = {.type = PROTO_T_TCP_FAILED};

	m.u.tcp_failed.error = (struct proto_str){text, strlen(text)};
	agent_send(a, id, &m);
}

void agent_tcp_connect(struct agent *a, uint32_t id, uint8_t v, const struct proto_tcp_connect *c)
{
	struct agent_tcp *t;
	char host[AGENT_RESOLVE_HOST_MAX], msg[400];
	int rc, sys_err = 0;

	if (c->bulk.set) {
		/* The gate is the request frame's own generation (G2.2, F34). */
		if (v < PROTO_GEN_BULK) {
			connect_refused(a, id, "raw bulk offer requires protocol generation 8");
			return;
		}
		rc = proto_bulk_offer_check(&c->bulk.v);
		if (rc < 0) {
			snprintf(msg, sizeof(msg), "invalid TCP bulk offer: %s",
				proto_strerror(rc));
			connect_refused(a, id, msg);
			return;
		}
		if (c->bulk.v.guest_to_host_credit_limit == 0) {
			connect_refused(a, id, "TCP bulk offer must grant guest-to-host credit");
			return;
		}
	}
	snprintf(host, sizeof(host), "%.*s", (int)c->host.len, c->host.ptr);
	t = calloc(1, sizeof(*t));
	if (!t || sessmap_put(&a->ids, id, t) < 0) {
		struct proto_msg m = {.type = PROTO_T_TCP_FAILED};

		free(t);
		snprintf(msg, sizeof(msg), "connect %s:%u: out of memory", host, c->port);
		m.u.tcp_failed.error = (struct proto_str){msg, strlen(msg)};
		agent_send(a, id, &m);
		return;
	}
	t->s.kind = AGENT_SESS_TCP;
	t->s.id = id;
	agent_sess_add(a, &t->s);
	a->n_tcp++;
	t->state = AGENT_TCP_CONNECTING;
	t->op_connect.kind = AGENT_OP_TCP_CONNECT;
	t->deadline_ms = agent_now_ms() + AGENT_TCP_CONNECT_TIMEOUT_S * 1000u;
	snprintf(t->where, sizeof(t->where), "%.*s:%u", (int)c->host.len, c->host.ptr, c->port);
	agent_src_init(&t->rd, &t->s, -1, PROTO_T_TCP_DATA, true);
	agent_sink_init(&t->wr, &t->s, -1, true);
	/* Host data (and EOF) may come before the connection, even before the lookup ends. */
	t->wr.closed = false;
	t->wr.hold = true;
	t->offered = c->bulk.set;
	if (c->bulk.set)
		t->offer = c->bulk.v;

	if (c->host.len >= sizeof(host)) {
		snprintf(msg, sizeof(msg), "connect %s: host name too long (%zu bytes, at most %zu)",
			t->where, c->host.len, sizeof(host) - 1);
		tcp_finish(a, t, msg);
		return;
	}
	if (memchr(c->host.ptr, '\0', c->host.len)) {
		snprintf(msg, sizeof(msg), "connect %s: host name contains a NUL byte", t->where);
		tcp_finish(a, t, msg);
		return;
	}
	rc = addrs_inline(host, c->port, &t->addrs, &sys_err);
	if (rc == 0) {
		t->next_addr = t->addrs;
		tcp_try_next(a, t);
		return;
	}
	t->addrs = NULL; /* getaddrinfo failed: nothing to free */
	if (rc != EAI_NONAME) {
		lookup_error(msg, sizeof(msg), t->where, rc, sys_err);
		tcp_finish(a, t, msg);
		return;
	}
	rc = agent_resolve_start(a, t, host, c->port, t->deadline_ms);
	if (rc == -ENOBUFS) {
		snprintf(msg, sizeof(msg), "connect %s: name lookup queue full (%u lookups in progress)",
			t->where, AGENT_RESOLVE_MAX);
		tcp_finish(a, t, msg);
	} else if (rc < 0) {
		os_error(msg, sizeof(msg), "connect", t->where, -rc);
		tcp_finish(a, t, msg);
	}
}

void agent_tcp_resolved(struct agent *a, struct agent_tcp *t, struct addrinfo *list, int gai_err,
	int sys_err)
{
	char msg[400];

	if (t->s.done) {
		/* Closed, aborted or timed out while the lookup ran: nothing to tell. */
		if (list)
			freeaddrinfo(list);
		return;
	}
	if (gai_err != 0) {
		lookup_error(msg, sizeof(msg), t->where, gai_err, sys_err);
		tcp_finish(a, t, msg);
		return;
	}
	t->addrs = t->next_addr = list;
	tcp_try_next(a, t);
}

void agent_tcp_lookup_expired(struct agent *a, struct agent_tcp *t)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "connect %s timed out", t->where);
	tcp_finish(a, t, msg);
}

void agent_tcp_connected(struct agent *a, struct agent_tcp *t, int res)
{
	char msg[400];
	int one = 1;

	t->connecting_op = false;
	if (!t->s.done) {
		if (res == -ECANCELED || res == -ETIME) {
			snprintf(msg, sizeof(msg), "connect %s timed out", t->where);
			tcp_finish(a, t, msg);
		} else if (res < 0) {
			t->last_err = -res;
			tcp_try_next(a, t); /* the next address, or the failure */
		} else {
			t->state = AGENT_TCP_OPEN;
			setsockopt(t->rd.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			send_empty(a, t->s.id, PROTO_T_TCP_CONNECTED);
			if (t->offered)
				bulk_accept(a, t);
			agent_src_arm(a, &t->rd);
			/* Write the host data (and EOF) that waited for the connection. */
			t->wr.hold = false;
			agent_sink_kick(a, &t->wr);
		}
	}
	agent_sess_put(a, &t->s); /* the connect's reference */
}

void agent_tcp_data(struct agent *a, uint32_t id, const uint8_t *p, size_t n)
{
	struct agent_tcp *t = tcp_of(a, id);
	char msg[64];
	int rc;

	if (!t) {
		struct proto_msg m = {.type = PROTO_T_TCP_FAILED};

		a->st.dropped_unknown_id++;
		snprintf(msg, sizeof(msg), "unknown TCP session: %u", id);
		m.u.tcp_failed.error = (struct proto_str){msg, strlen(msg)};
		agent_send(a, id, &m);
		return;
	}
	if (t->bulk) {
		tcp_finish(a, t, "CBOR TCP data is invalid after raw bulk acceptance");
		return;
	}
	if (n == 0)
		return;
	rc = agent_sink_push(a, &t->wr, p, n);
	if (rc == -EPIPE)
		tcp_finish(a, t, "TCP session is closed");
	else if (rc < 0)
		tcp_finish(a, t, "write TCP stream: out of memory");
}

void agent_tcp_eof(struct agent *a, uint32_t id)
{
	struct agent_tcp *t = tcp_of(a, id);

	if (!t) {
		a->st.dropped_unknown_id++;
		return;
	}
	if (t->bulk) {
		tcp_finish(a, t, "CBOR TCP EOF is invalid after raw bulk acceptance");
		return;
	}
	if (t->wr.close_after || t->wr.closed) {
		tcp_finish(a, t, "TCP session is closed");
		return;
	}
	agent_sink_close(a, &t->wr); /* applied after queued data, once connected */
}

void agent_tcp_close(struct agent *a, uint32_t id)
{
	struct agent_tcp *t = tcp_of(a, id);

	if (t)
		tcp_finish(a, t, NULL); /* abort; no reply (spec 4.6) */
	else
		a->st.dropped_unknown_id++;
}

void agent_tcp_abort(struct agent *a, struct agent_tcp *t)
{
	tcp_finish(a, t, NULL);
}

/* Destination finished sending (or failed reading). */
void agent_tcp_src_eof(struct agent *a, struct agent_tcp *t, int err)
{
	char msg[400];

	if (t->s.done)
		return;
	if (err) {
		os_error(msg, sizeof(msg), "read TCP stream", NULL, err);
		tcp_finish(a, t, msg);
		return;
	}
	if (t->bulk) {
		struct proto_msg m = {.type = PROTO_T_BULK_FINISH};

		/* Every record of the flow is queued before it: the tx queue keeps order. */
		proto_bulk_tx_finish(&t->g2h, &m.u.bulk_finish);
		agent_send(a, t->s.id, &m);
		bulk_maybe_close(a, t);
		return;
	}
	send_empty(a, t->s.id, PROTO_T_TCP_EOF); /* half-close: host writes keep flowing */
}

void agent_tcp_sink_error(struct agent *a, struct agent_tcp *t, int err)
{
	char msg[400];

	os_error(msg, sizeof(msg), "write TCP stream", NULL, err);
	tcp_finish(a, t, msg);
}

/* Host EOF reached the socket after all queued data: half-close it. */
void agent_tcp_sink_drained(struct agent *a, struct agent_tcp *t)
{
	char msg[400];

	if (t->s.done)
		return;
	if (shutdown(t->wr.fd, SHUT_WR) < 0) {
		os_error(msg, sizeof(msg), "shutdown TCP stream", NULL, errno);
		tcp_finish(a, t, msg);
		return;
	}
	if (t->bulk) {
		t->h2g_shut = true;
		bulk_maybe_close(a, t);
	}
}

/* <n> bytes reached the socket: grant the host more credit as agentd does (G4.4). */
void agent_tcp_sink_wrote(struct agent *a, struct agent_tcp *t, size_t n)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT};
	size_t skip = n < t->pre_bulk ? n : t->pre_bulk;

	t->pre_bulk -= skip; /* CBOR bytes from before the acceptance are not the flow's */
	if (!t->bulk || t->s.done || n == skip)
		return;
	t->h2g_written += n - skip;
	if (proto_bulk_rx_consume(&t->h2g, t->h2g_written, &m.u.bulk_credit) == 1)
		agent_send(a, t->s.id, &m);
}

/*
 * A frame with flag 0x08.  A well-formed record of a live bulk stream's
 * host->guest flow goes to its socket; anything else fails that stream
 * when the id is a live TCP stream, and gets core.error malformed_message
 * otherwise (a stray 0x08 on a CBOR frame, a record for no stream).  The
 * channel always goes on (wire.md, F36).
 */
void agent_tcp_record(struct agent *a, const struct proto_frame *f)
{
	struct agent_tcp *t = tcp_of(a, f->id);
	struct proto_bulk_rec r;
	const uint8_t *payload;
	char msg[256];
	int rc = proto_bulk_frame_parse(f, &r, &payload);

	if (rc == PROTO_E_BULK_FLAGS || !t) {
		const char *why = rc < 0 ? proto_strerror(rc) : "raw bulk record for no stream";

		agent_send_error(
			a, f->id, PROTO_ERROR_MALFORMED_MESSAGE, NULL, "malformed message: %s", why);
		return;
	}
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "invalid TCP bulk record: %s", proto_strerror(rc));
		bulk_fail(a, t, msg);
		return;
	}
	if (!t->bulk) {
		bulk_fail(a, t, "invalid TCP bulk record: no raw bulk flow on this stream");
		return;
	}
	rc = proto_bulk_rx_record(&t->h2g, &r);
	if (rc < 0) {
		agent_bulk_record_error(msg, sizeof(msg), "TCP", rc, &t->h2g, &r);
		bulk_fail(a, t, msg);
		return;
	}
	rc = agent_sink_push(a, &t->wr, payload, r.len);
	if (rc == -EPIPE)
		bulk_fail(a, t, "TCP session is closed");
	else if (rc < 0)
		tcp_finish(a, t, "write TCP stream: out of memory");
}

/*
 * The prefix <r> of a raw record whose payload is still on the console:
 * when it is a valid record of a live stream's host->guest flow (the checks
 * of agent_tcp_record) and the socket's sink takes data, it is counted in
 * the flow and the sink is returned for the payload.  NULL, nothing
 * changed, otherwise: the whole frame goes to agent_tcp_record later.
 */
struct agent_sink *agent_tcp_record_begin(struct agent *a, const struct proto_bulk_rec *r)
{
	struct agent_tcp *t = tcp_of(a, r->id);

	if (!t || !t->bulk || t->wr.closed || t->wr.close_after ||
		proto_bulk_rx_record(&t->h2g, r) < 0)
		return NULL;
	return &t->wr;
}

/*
 * core.bulk.credit / finish / cancel from the host.  For an id with no
 * stream they are late frames of a stream that ended (F14): dropped,
 * counted.  On a stream without an accepted bulk flow they fail it.
 */
void agent_tcp_bulk_control(struct agent *a, uint32_t id, const struct proto_msg *m)
{
	struct agent_tcp *t = tcp_of(a, id);
	char msg[256];
	int rc;

	if (!t) {
		a->st.dropped_unknown_id++;
		return;
	}
	if (m->type == PROTO_T_BULK_CANCEL) {
		tcp_finish(a, t, NULL); /* the host dropped the stream: abort, as tcp.close */
		return;
	}
	if (!t->bulk) {
		snprintf(msg, sizeof(msg), "%s on a TCP stream without raw bulk",
			proto_type_name(m->type));
		bulk_fail(a, t, msg);
		return;
	}
	if (m->type == PROTO_T_BULK_CREDIT) {
		rc = proto_bulk_tx_credit(&t->g2h, &m->u.bulk_credit);
		if (rc == 1)
			agent_src_arm(a, &t->rd); /* it may have been waiting for credit */
	} else {
		rc = proto_bulk_rx_finish(&t->h2g, &m->u.bulk_finish);
		if (rc == 0) /* shutdown(SHUT_WR) once the queued records are written */
			agent_sink_close(a, &t->wr);
	}
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "invalid TCP %s: %s", proto_type_name(m->type),
			proto_strerror(rc));
		bulk_fail(a, t, msg);
	}
}

void agent_tcp_free(struct agent *a, struct agent_tcp *t)
{
	if (t->rd.fd >= 0)
		close(t->rd.fd);
	if (t->addrs)
		freeaddrinfo(t->addrs);
	free(t);
}

/* A relay client went away: abort its streams (spec 5.5; the relay ends its exec sessions). */
void agent_relay_client_gone(struct agent *a, const struct proto_relay_client_disconnected *r)
{
	struct agent_sess *s, *nx;

	for (s = a->sessions; s; s = nx) {
		nx = s->next_all;
		if (s->kind == AGENT_SESS_TCP && !s->done && s->id >= r->id_start &&
			s->id < r->id_end_exclusive)
			tcp_finish(a, (struct agent_tcp *)s, NULL);
	}
	agent_fs_abort_range(a, r->id_start, r->id_end_exclusive);
}
