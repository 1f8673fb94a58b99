/*
 * agent/tcp.c - TCP streams opened by the host inside the guest (spec 4.6).
 *
 *   tcp.connect -> connect (io_uring, linked 30 s timeout) -> tcp.connected
 *                  | tcp.failed "connect host:port: cause" (terminal)
 *   data both ways; destination EOF -> tcp.eof (the stream stays open for
 *   host writes); host tcp.eof -> shutdown(SHUT_WR) after queued data;
 *   host tcp.close -> abort, no reply; read/write errors -> tcp.failed.
 *
 * Host data that arrives before the connection is up waits in the stream's
 * bounded sink; a full sink pauses the console reader instead of growing.
 * Exactly one of connected/failed answers a connect, and at most one
 * terminal frame is sent per stream.
 */
#include <arpa/inet.h>
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
	if (t->connecting_op) {
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

/*
 * Resolve <host> to an address without blocking the loop for the common
 * cases (numeric addresses, "localhost").  Other names go through
 * getaddrinfo, which may block on DNS: a documented limit of this version.
 */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	int rc;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		*len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		*len = sizeof(*v6);
		return 0;
	}
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0)
		return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	if (ss->ss_family == AF_INET)
		v4->sin_port = htons(port);
	else
		v6->sin6_port = htons(port);
	freeaddrinfo(res);
	return 0;
}

void agent_tcp_connect(struct agent *a, uint32_t id, const struct proto_tcp_connect *c)
{
	struct sockaddr_storage *ss;
	struct io_uring_sqe *sqe;
	struct agent_tcp *t;
	char host[256], msg[400];
	socklen_t slen = 0;
	int fd, rc;

	snprintf(host, sizeof(host), "%.*s", (int)c->host.len, c->host.ptr);
	t = calloc(1, sizeof(*t) + sizeof(*ss));
	if (!t || sessmap_put(&a->ids, id, t) < 0) {
		struct proto_msg m = {.type = PROTO_T_TCP_FAILED};

		free(t);
		snprintf(msg, sizeof(msg), "connect %s:%u: out of memory", host, c->port);
		m.u.tcp_failed.error = (struct proto_str){msg, strlen(msg)};
		agent_send(a, id, &m);
		return;
	}
	ss = (struct sockaddr_storage *)(t + 1);
	t->s.kind = AGENT_SESS_TCP;
	t->s.id = id;
	agent_sess_add(a, &t->s);
	a->n_tcp++;
	t->state = AGENT_TCP_CONNECTING;
	t->op_connect.kind = AGENT_OP_TCP_CONNECT;
	snprintf(t->where, sizeof(t->where), "%s:%u", host, c->port);
	agent_src_init(&t->rd, &t->s, -1, PROTO_T_TCP_DATA, true);
	agent_sink_init(&t->wr, &t->s, -1, true);

	rc = resolve(host, c->port, ss, &slen);
	if (rc < 0) {
		if (rc == -EHOSTUNREACH)
			snprintf(msg, sizeof(msg), "connect %s: name does not resolve", t->where);
		else
			os_error(msg, sizeof(msg), "connect", t->where, -rc);
		tcp_finish(a, t, msg);
		return;
	}
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		os_error(msg, sizeof(msg), "connect", t->where, errno);
		tcp_finish(a, t, msg);
		return;
	}
	agent_src_init(&t->rd, &t->s, fd, PROTO_T_TCP_DATA, true);
	agent_sink_init(&t->wr, &t->s, fd, true);
	t->wr.hold = true; /* host data may arrive before the connection is up */

	agent_sqe_reserve(a, 2); /* the connect and its timeout go in together */
	sqe = agent_sqe(a);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)ss, slen);
	io_uring_sqe_set_data(sqe, &t->op_connect);
	sqe->flags |= IOSQE_IO_LINK;
	t->connect_timeout.tv_sec = AGENT_TCP_CONNECT_TIMEOUT_S;
	t->connect_timeout.tv_nsec = 0;
	sqe = agent_sqe(a);
	io_uring_prep_link_timeout(sqe, &t->connect_timeout, 0);
	io_uring_sqe_set_data(sqe, NULL); /* its completion needs no handling */
	t->connecting_op = true;
	t->s.refs++;
}

void agent_tcp_connected(struct agent *a, struct agent_tcp *t, int res)
{
	char msg[400];
	int one = 1;

	t->connecting_op = false;
	if (!t->s.done) {
		if (res < 0) {
			if (res == -ECANCELED || res == -ETIME)
				snprintf(msg, sizeof(msg), "connect %s timed out", t->where);
			else
				os_error(msg, sizeof(msg), "connect", t->where, -res);
			tcp_finish(a, t, msg);
		} else {
			t->state = AGENT_TCP_OPEN;
			setsockopt(t->rd.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			send_empty(a, t->s.id, PROTO_T_TCP_CONNECTED);
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
	}
}

void agent_tcp_free(struct agent *a, struct agent_tcp *t)
{
	if (t->rd.fd >= 0)
		close(t->rd.fd);
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
