/*
 * tests/agent/test_agent_tcp.c - TCP streams through a real sandwire-agent
 * against real loopback listeners in this test process.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/agent_harness.h"

static struct ah h;

static void boot(void)
{
	ah_start_booted(&h);
}

static void stop(void)
{
	ah_stop_ok(&h);
}

TestSuite(agent_tcp, .init = boot, .fini = stop, .timeout = 120);

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 256), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void tcp_connect(uint32_t id, uint16_t port)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};

	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	ah_send(&h, id, &m);
}

static uint8_t pattern(uint64_t i, uint32_t seed)
{
	return (uint8_t)((i * 2654435761u + seed) >> 13);
}

Test(agent_tcp, refused_connect_gives_one_terminal_failure_naming_host_and_port)
{
	uint16_t port;
	int lfd = listen_any(&port);
	char want[96];
	struct proto_msg m;

	close(lfd); /* nothing listens there now */
	tcp_connect(3, port);
	ah_expect(&h, 3, PROTO_T_TCP_FAILED, 10000);
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	snprintf(want, sizeof(want), "connect 127.0.0.1:%u: Connection refused (os error 111)", port);
	cr_assert_eq(h.msg.u.tcp_failed.error.len, strlen(want));
	cr_assert(memcmp(h.msg.u.tcp_failed.error.ptr, want, strlen(want)) == 0);
	/* Nothing more for that id; the channel is still fine. */
	m = (struct proto_msg){.type = PROTO_T_PING};
	ah_send(&h, 4, &m);
	ah_expect(&h, 4, PROTO_T_PONG, 10000);
}

/* Destination for the bulk test: sends <total> bytes and reads <total> bytes at once. */
struct bulk_dst {
	int lfd, fd;
	size_t total;
	size_t got;
	int bad_at; /* -1, or first mismatching offset */
};

static void *bulk_dst_send(void *arg)
{
	struct bulk_dst *d = arg;
	static uint8_t buf[65536];
	size_t sent = 0;

	while (sent < d->total) {
		size_t n = d->total - sent < sizeof(buf) ? d->total - sent : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(sent + i, 7);
		w = send(d->fd, buf, n, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		sent += (size_t)w;
		if ((size_t)w < n) /* resend the tail next round with the right offsets */
			continue;
	}
	shutdown(d->fd, SHUT_WR);
	return NULL;
}

static void *bulk_dst_recv(void *arg)
{
	struct bulk_dst *d = arg;
	static uint8_t buf[65536];
	ssize_t r;

	while ((r = recv(d->fd, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t i = 0; i < r; i++)
			if (d->bad_at < 0 && buf[i] != pattern(d->got + (size_t)i, 99))
				d->bad_at = (int)(d->got + (size_t)i);
		d->got += (size_t)r;
	}
	return NULL;
}

Test(agent_tcp, carries_64_mib_each_way_intact_with_half_close)
{
	struct bulk_dst d = {.total = 64u << 20, .bad_at = -1};
	pthread_t ts, tr;
	uint16_t port;
	static uint8_t out[65536];
	size_t sent = 0, got = 0;
	bool eof = false, connected = false;

	d.lfd = listen_any(&port);
	tcp_connect(1, port);
	d.fd = accept(d.lfd, NULL, NULL);
	cr_assert_geq(d.fd, 0);
	pthread_create(&ts, NULL, bulk_dst_send, &d);
	pthread_create(&tr, NULL, bulk_dst_recv, &d);

	while (!eof || sent < d.total) {
		/* Send host->guest data while reading guest->host frames. */
		if (connected && sent < d.total) {
			size_t n = sizeof(out);

			for (size_t i = 0; i < n; i++)
				out[i] = pattern(sent + i, 99);
			ah_send_data(&h, 1, PROTO_T_TCP_DATA, out, n);
			sent += n;
			if (sent == d.total)
				ah_send_data(&h, 1, PROTO_T_TCP_EOF, NULL, 0);
		}
		while (ah_recv(&h, connected && sent < d.total ? 0 : 10000, true)) {
			cr_assert_eq(h.frame.id, 1);
			if (h.msg.type == PROTO_T_TCP_CONNECTED) {
				connected = true;
			} else if (h.msg.type == PROTO_T_TCP_DATA) {
				const uint8_t *p = h.msg.u.data.ptr;

				for (size_t i = 0; i < h.msg.u.data.len; i++)
					if (p[i] != pattern(got + i, 7))
						cr_assert_fail("guest->host byte %zu wrong", got + i);
				got += h.msg.u.data.len;
			} else if (h.msg.type == PROTO_T_TCP_EOF) {
				eof = true;
				cr_assert_eq(got, d.total, "EOF after %zu bytes", got);
			} else {
				cr_assert_fail("unexpected %s", proto_type_name(h.msg.type));
			}
			if ((connected && sent < d.total) || (eof && sent == d.total))
				break;
		}
	}
	pthread_join(ts, NULL);
	pthread_join(tr, NULL); /* ends at the EOF our tcp.eof caused */
	cr_assert_eq(d.got, d.total);
	cr_assert_eq(d.bad_at, -1, "host->guest byte %d wrong", d.bad_at);
	ah_send_data(&h, 1, PROTO_T_TCP_CLOSE, NULL, 0);
	close(d.fd);
	close(d.lfd);
}

Test(agent_tcp, destination_eof_keeps_the_stream_open_for_host_writes)
{
	uint16_t port;
	int lfd = listen_any(&port), fd;
	char buf[64];
	ssize_t n;

	tcp_connect(9, port);
	fd = accept(lfd, NULL, NULL);
	ah_expect(&h, 9, PROTO_T_TCP_CONNECTED, 10000);
	cr_assert_eq(send(fd, "bye", 3, 0), 3);
	shutdown(fd, SHUT_WR);
	ah_expect(&h, 9, PROTO_T_TCP_DATA, 10000);
	cr_assert_eq(h.msg.u.data.len, 3);
	ah_expect(&h, 9, PROTO_T_TCP_EOF, 10000);
	cr_assert_eq(h.frame.flags, 0, "tcp.eof is not terminal");

	/* The host can still write; the destination still reads. */
	ah_send_data(&h, 9, PROTO_T_TCP_DATA, "still here", 10);
	n = recv(fd, buf, sizeof(buf), 0);
	cr_assert_eq(n, 10);
	cr_assert(memcmp(buf, "still here", 10) == 0);
	ah_send_data(&h, 9, PROTO_T_TCP_EOF, NULL, 0);
	cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 0, "host EOF reaches the destination");
	ah_send_data(&h, 9, PROTO_T_TCP_CLOSE, NULL, 0);
	close(fd);
	close(lfd);
}

Test(agent_tcp, close_while_data_flows_stops_the_stream_without_a_reply)
{
	uint16_t port;
	int lfd = listen_any(&port), fd;
	static uint8_t junk[65536];
	struct proto_msg m = {.type = PROTO_T_PING};
	int frames = 0;

	tcp_connect(5, port);
	fd = accept(lfd, NULL, NULL);
	ah_expect(&h, 5, PROTO_T_TCP_CONNECTED, 10000);
	/* Fill the pipe from the destination side, then close from the host. */
	while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	ah_send_data(&h, 5, PROTO_T_TCP_CLOSE, NULL, 0);
	ah_send(&h, 6, &m);
	/* Data frames already queued may arrive; then the pong, and nothing for id 5 after it. */
	for (;;) {
		ah_recv(&h, 10000, false);
		if (h.frame.id == 6) {
			cr_assert_eq(h.msg.type, PROTO_T_PONG);
			break;
		}
		cr_assert_eq(h.frame.id, 5);
		cr_assert_eq(h.msg.type, PROTO_T_TCP_DATA, "close gets no reply, got %s",
			proto_type_name(h.msg.type));
		frames++;
	}
	cr_assert_not(ah_recv(&h, 300, true), "a frame after the stream was closed");
	/* The agent closed its socket: the destination sees the end. */
	for (;;) {
		ssize_t r = recv(fd, junk, sizeof(junk), 0);

		if (r <= 0)
			break;
	}
	close(fd);
	close(lfd);
}

/* Echo server for many connections: one thread, poll(). */
struct echo_srv {
	int lfd;
	int conns;
	volatile int stop;
};

static void *echo_main(void *arg)
{
	struct echo_srv *s = arg;
	struct pollfd p[256];
	int n = 1;
	static char buf[65536];

	p[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
	while (!s->stop) {
		if (poll(p, (nfds_t)n, 100) <= 0)
			continue;
		if (p[0].revents & POLLIN && n < 256) {
			p[n++] = (struct pollfd){.fd = accept(s->lfd, NULL, NULL), .events = POLLIN};
			s->conns++;
		}
		for (int i = 1; i < n; i++) {
			ssize_t r;

			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			r = recv(p[i].fd, buf, sizeof(buf), 0);
			if (r <= 0) {
				close(p[i].fd);
				p[i--] = p[--n];
				continue;
			}
			for (ssize_t off = 0; off < r;) {
				ssize_t w = send(p[i].fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);

				if (w <= 0)
					break;
				off += w;
			}
		}
	}
	for (int i = 1; i < n; i++)
		close(p[i].fd);
	return NULL;
}

Test(agent_tcp, serves_100_streams_at_once)
{
	enum { N = 100, SIZE = 65536 };
	static uint8_t data[SIZE];
	static size_t got[N + 1];
	struct echo_srv srv = {0};
	pthread_t t;
	uint16_t port;
	int connected = 0, complete = 0;

	srv.lfd = listen_any(&port);
	pthread_create(&t, NULL, echo_main, &srv);
	for (uint32_t id = 1; id <= N; id++)
		tcp_connect(id, port);
	while (complete < N) {
		uint32_t id;

		ah_recv(&h, 20000, false);
		id = h.frame.id;
		cr_assert(id >= 1 && id <= N);
		if (h.msg.type == PROTO_T_TCP_CONNECTED) {
			connected++;
			for (size_t i = 0; i < SIZE; i++)
				data[i] = pattern(i, id);
			ah_send_data(&h, id, PROTO_T_TCP_DATA, data, SIZE);
		} else if (h.msg.type == PROTO_T_TCP_DATA) {
			const uint8_t *p = h.msg.u.data.ptr;

			for (size_t i = 0; i < h.msg.u.data.len; i++)
				cr_assert_eq(p[i], pattern(got[id] + i, id), "stream %u byte %zu", id,
					got[id] + i);
			got[id] += h.msg.u.data.len;
			cr_assert_leq(got[id], SIZE);
			if (got[id] == SIZE) {
				complete++;
				ah_send_data(&h, id, PROTO_T_TCP_CLOSE, NULL, 0);
			}
		} else {
			cr_assert_fail("stream %u: unexpected %s", id, proto_type_name(h.msg.type));
		}
	}
	cr_assert_eq(connected, N);
	srv.stop = 1;
	pthread_join(t, NULL);
	cr_assert_eq(srv.conns, N);
	close(srv.lfd);
}

Test(agent_tcp, data_for_an_unknown_stream_is_answered_with_failed)
{
	ah_send_data(&h, 77, PROTO_T_TCP_DATA, "x", 1);
	ah_expect(&h, 77, PROTO_T_TCP_FAILED, 10000);
	cr_assert(h.msg.u.tcp_failed.error.len == strlen("unknown TCP session: 77"));
}
