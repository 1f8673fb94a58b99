/*
 * tests/agent/test_agent_gen9.c - generations 8 and 9 against a real
 * sandwire-agent (protocol-gen9.md G2, G4, G5.1, G11; wire.md): the ready
 * announcement to gen-7 and gen-9 hosts, gen-9 types it does not
 * implement, stray 0x08 frames and lease records that never end the
 * channel, and TCP raw bulk both ways with absolute credit: 256 MiB each
 * way with checksums and every grant checked, a stalled destination next
 * to a stream moving 64 MiB, finish and cancel, an offset gap, a credit
 * overrun or a wrong final offset failing only its stream, and a host
 * past its aggregate grant (G6) slowed down rather than cut off.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/agent_harness.h"
#include "tests/support/daemon_harness.h"

static struct ah h;
/* The largest aggregate input grant (G6) seen, and how many grants came. */
static struct proto_workload_transport grant;
static uint64_t grants;
/* What the host has sent since init.ack, where a test keeps count (G6 accounting). */
static struct proto_workload_transport used;

TestSuite(agent_gen9, .timeout = 120);

/*
 * When the frame just received is core.workload.transport.credit, check it
 * (flags 0, v 9, id 0xFFFFFFFF, no counter lower than before), keep it and
 * return true.
 */
static bool take_grant(void)
{
	const struct proto_workload_transport *g = &h.c.msg.u.workload_transport_credit;

	if (h.c.frame.id != PROTO_WORKLOAD_CREDIT_ID)
		return false;
	cr_assert_eq(h.c.msg.type, PROTO_T_WORKLOAD_TRANSPORT_CREDIT);
	cr_assert_eq(h.c.frame.flags, 0);
	cr_assert_eq(h.c.msg.v, 9);
	cr_assert(g->control_bytes >= grant.control_bytes &&
			  g->control_frames >= grant.control_frames &&
			  g->bulk_bytes >= grant.bulk_bytes && g->bulk_frames >= grant.bulk_frames,
		"a grant went down");
	grant = *g;
	grants++;
	return true;
}

/* agent_client_recv() that takes grants itself: returns what it returns for the next other frame.
 */
static int recv9(int timeout_ms)
{
	for (;;) {
		int rc = agent_client_recv(&h.c, timeout_ms);

		if (rc != 1 || !take_grant())
			return rc;
	}
}

/* The next frame other than a grant must be <t> on <id>; it lands in h.frame / h.msg. */
static void expect9(uint32_t id, enum proto_type t, int timeout_ms)
{
	int rc = recv9(timeout_ms);

	cr_assert_eq(rc, 1, "waiting for %s on id %u: %s", proto_type_name(t), id,
		rc == 0 ? "timeout" : proto_strerror(rc));
	h.frame = h.c.frame;
	h.msg = h.c.msg;
	cr_assert_eq(h.frame.id, id, "frame %s for id %u, expected %s for %u",
		proto_type_name(h.msg.type), h.frame.id, proto_type_name(t), id);
	cr_assert_eq(h.msg.type, t, "id %u: got %s, expected %s", id, proto_type_name(h.msg.type),
		proto_type_name(t));
}

/* The boot sequence of a host that writes <v> on its frames; leaves ready in h.msg. */
static void boot_as(uint8_t v)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP, .v = v};

	grant = (struct proto_workload_transport){0};
	used = (struct proto_workload_transport){0};
	grants = 0;
	ah_start(&h, NULL);
	ah_send(&h, 0, &m);
	expect9(0, PROTO_T_INIT_RESOLVED, 10000);
	m = (struct proto_msg){.type = PROTO_T_INIT_ACK, .v = v};
	ah_send(&h, 0, &m);
	expect9(0, PROTO_T_READY, 10000);
	if (v >= 9) /* the implicit initial window (G6) */
		grant = (struct proto_workload_transport){PROTO_WORKLOAD_CONTROL_BYTES,
			PROTO_WORKLOAD_CONTROL_FRAMES, PROTO_WORKLOAD_DATA_BYTES,
			PROTO_WORKLOAD_DATA_FRAMES};
}

static void boot9(void)
{
	boot_as(9);
}

/* Ping on <id> and require the pong: the channel is still fine. */
static void ping_ok(uint32_t id)
{
	struct proto_msg m = {.type = PROTO_T_PING, .v = 9};

	ah_send(&h, id, &m);
	expect9(id, PROTO_T_PONG, 10000);
}

static void expect_error(uint32_t id, enum proto_error_kind kind)
{
	expect9(id, PROTO_T_ERROR, 10000);
	cr_assert_eq(h.msg.u.error.kind, kind, "error kind %s, expected %s",
		proto_error_kind_name(h.msg.u.error.kind), proto_error_kind_name(kind));
}

static bool str_has(struct proto_str s, const char *needle)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%.*s", (int)s.len, s.ptr);
	return strstr(buf, needle) != NULL;
}

/* Ready: barrier version 2 (the aggregate input credit) exactly for <gen9>, nothing else new. */
static void ready_has_only_fields_it_honours(const struct proto_ready *r, bool gen9)
{
	cr_assert_not(r->bulk_transport.set);
	cr_assert_not(r->relay_lease.set, "the agent reads no MSBL lease records");
	cr_assert_not(r->local_transport.set);
	if (gen9) {
		cr_assert(r->workload_transport_barrier_version.set,
			"a gen-9 host is told of the aggregate input credit");
		cr_assert_eq(r->workload_transport_barrier_version.v, 2);
	} else {
		cr_assert_not(r->workload_transport_barrier_version.set,
			"no aggregate input credit below generation 9");
	}
	cr_assert(r->agent_version.len > 9 && memcmp(r->agent_version.ptr, "sandwire/", 9) == 0);
}

Test(agent_gen9, gen7_host_sees_ready_v7_without_gen9_fields)
{
	boot_as(0); /* v 7, as every generation-7 host writes */
	cr_assert_eq(h.msg.v, 7);
	ready_has_only_fields_it_honours(&h.msg.u.ready, false);
	ping_ok(1);
	cr_assert_eq(recv9(300), 0, "no frame after the pong");
	cr_assert_eq(grants, 0, "a gen-7 host gets no aggregate input grant");
	ah_stop_ok(&h);
}

Test(agent_gen9, gen8_host_sees_ready_v9_without_barrier_version)
{
	boot_as(8);
	cr_assert_eq(h.msg.v, 9);
	ready_has_only_fields_it_honours(&h.msg.u.ready, false);
	ping_ok(1);
	cr_assert_eq(recv9(300), 0, "no frame after the pong");
	cr_assert_eq(grants, 0, "a gen-8 host gets no aggregate input grant");
	ah_stop_ok(&h);
}

Test(agent_gen9, gen9_host_sees_ready_v9_with_only_fields_it_honours)
{
	boot9();
	cr_assert_eq(h.msg.v, 9);
	ready_has_only_fields_it_honours(&h.msg.u.ready, true);
	ping_ok(1);
	ah_stop_ok(&h);
}

Test(agent_gen9, unimplemented_gen9_types_get_capability_unavailable_and_nothing_ends)
{
	struct proto_msg m = {.type = PROTO_T_WORKLOAD_FREEZE, .v = 9};

	boot9();
	m.u.workload_freeze.attempt_id = (struct proto_str){"a1", 2};
	ah_send(&h, 0, &m);
	expect_error(0, PROTO_ERROR_CAPABILITY_UNAVAILABLE);
	cr_assert(str_has(h.msg.u.error.offending_type.v, "core.workload.freeze"));
	m = (struct proto_msg){.type = PROTO_T_WORKLOAD_THAW, .v = 9};
	m.u.workload_thaw.attempt_id = (struct proto_str){"a1", 2};
	ah_send(&h, 0, &m);
	expect_error(0, PROTO_ERROR_CAPABILITY_UNAVAILABLE);
	m = (struct proto_msg){.type = PROTO_T_ROOT_DISK_PREPARE, .v = 9};
	m.u.root_disk_grow.size_bytes = 1u << 30;
	ah_send(&h, 5, &m);
	expect_error(5, PROTO_ERROR_CAPABILITY_UNAVAILABLE);
	m.type = PROTO_T_ROOT_DISK_GROW;
	ah_send(&h, 6, &m);
	expect_error(6, PROTO_ERROR_CAPABILITY_UNAVAILABLE);
	cr_assert(str_has(h.msg.u.error.offending_type.v, "core.root_disk.grow"));
	ping_ok(7);
	ah_stop_ok(&h);
}

/* The 21-byte prefix of a raw record with <n> payload bytes; <flags> 0x08 for a real one. */
static void record_prefix(uint8_t *buf, uint32_t id, uint8_t flags, uint8_t kind, uint8_t flow,
	uint64_t offset, size_t n)
{
	proto_frame_header_write(buf, (uint32_t)(5 + 12 + n), id, flags);
	buf[9] = kind;
	buf[10] = flow;
	buf[11] = buf[12] = 0;
	for (int i = 0; i < 8; i++)
		buf[13 + i] = (uint8_t)(offset >> (56 - 8 * i));
}

/* A raw record frame: the prefix, then <n> bytes from <p>; returns its size. */
static size_t raw_record(uint8_t *buf, uint32_t id, uint8_t flags, uint8_t kind, uint8_t flow,
	uint64_t offset, const void *p, size_t n)
{
	record_prefix(buf, id, flags, kind, flow, offset, n);
	memcpy(buf + 21, p, n);
	return 21 + n;
}

static void send_record(
	uint32_t id, uint8_t kind, uint8_t flow, uint64_t offset, const void *p, size_t n)
{
	static uint8_t buf[21 + PROTO_BULK_TCP_RECORD + 4096];

	cr_assert_leq(n, sizeof(buf) - 21);
	ah_send_raw(&h, buf, raw_record(buf, id, 0x08, kind, flow, offset, p, n));
	used.bulk_bytes += 21 + n;
	used.bulk_frames++;
}

/* Send a control message (G6 counts it as control input). */
static void send_ctl(uint32_t id, const struct proto_msg *m)
{
	used.control_bytes += ah_send(&h, id, m);
	used.control_frames++;
}

Test(agent_gen9, stray_bulk_frames_and_lease_records_never_end_the_channel)
{
	uint8_t buf[128];
	struct proto_msg m = {.type = PROTO_T_PING, .v = 9};
	long n;

	boot9();
	/* A well-formed record on an id with no stream. */
	send_record(7, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "hello", 5);
	expect_error(7, PROTO_ERROR_MALFORMED_MESSAGE);
	/* A CBOR ping with flags exactly 0x08: its bytes read as a (bad) record header. */
	n = proto_frame_encode(buf, sizeof(buf), 8, &m);
	cr_assert_gt(n, 0);
	buf[8] = 0x08;
	ah_send_raw(&h, buf, (size_t)n);
	expect_error(8, PROTO_ERROR_MALFORMED_MESSAGE);
	/* 0x08 combined with a control flag. */
	ah_send_raw(&h, buf, raw_record(buf, 9, 0x0a, 2, 1, 0, "x", 1));
	expect_error(9, PROTO_ERROR_MALFORMED_MESSAGE);
	/* A record with no payload (len 17). */
	ah_send_raw(&h, buf, raw_record(buf, 10, 0x08, 2, 1, 0, "", 0));
	expect_error(10, PROTO_ERROR_MALFORMED_MESSAGE);
	/* An MSBL lease record on id 0: this agent offered no leases. */
	{
		struct proto_lease l = {.event = PROTO_LEASE_CONNECTED,
			.id_start = 1,
			.id_end_exclusive = PROTO_RELAY_ID_STEP};

		cr_assert_eq(proto_lease_write(buf, sizeof(buf), &l), (int)PROTO_LEASE_SIZE);
		ah_send_raw(&h, buf, PROTO_LEASE_SIZE);
		expect_error(0, PROTO_ERROR_MALFORMED_MESSAGE);
	}
	ping_ok(11);
	ah_stop_ok(&h);
}

/* ---- TCP ---------------------------------------------------------------- */

static int listen_any(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* core.tcp.connect to 127.0.0.1:<port> in a v <v> frame, with <offer> when not NULL. */
static void tcp_connect(uint32_t id, uint16_t port, uint8_t v, const struct proto_bulk_offer *offer)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT, .v = v};

	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	if (offer) {
		m.u.tcp_connect.bulk.set = true;
		m.u.tcp_connect.bulk.v = *offer;
	}
	send_ctl(id, &m);
}

static void expect_failed(uint32_t id, const char *text)
{
	expect9(id, PROTO_T_TCP_FAILED, 10000);
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	cr_assert(str_has(h.msg.u.tcp_failed.error, text), "tcp.failed \"%.*s\", expected \"%s\"",
		(int)h.msg.u.tcp_failed.error.len, h.msg.u.tcp_failed.error.ptr, text);
}

Test(agent_gen9, bulk_offer_in_a_v7_frame_or_without_g2h_credit_is_refused)
{
	struct proto_bulk_offer o = {
		.format = 1, .max_record_payload = 262144, .guest_to_host_credit_limit = 1u << 20};
	uint16_t port;
	int lfd;

	boot9();
	lfd = listen_any(&port);
	tcp_connect(1, port, 7, &o);
	expect_failed(1, "raw bulk offer requires protocol generation 8");
	o.guest_to_host_credit_limit = 0;
	tcp_connect(2, port, 9, &o);
	expect_failed(2, "TCP bulk offer must grant guest-to-host credit");
	o = (struct proto_bulk_offer){
		.format = 2, .max_record_payload = 262144, .guest_to_host_credit_limit = 1u << 20};
	tcp_connect(3, port, 9, &o);
	expect_failed(3, "invalid TCP bulk offer");
	ping_ok(4);
	close(lfd);
	ah_stop_ok(&h);
}

/* Connect with an offer, accept in the listener; checks connected, then accepted. */
static int bulk_open(uint32_t id, int lfd, uint16_t port, uint32_t max_record, uint64_t g2h,
	struct proto_bulk_accepted *acc)
{
	struct proto_bulk_offer o = {
		.format = 1, .max_record_payload = max_record, .guest_to_host_credit_limit = g2h};
	int fd;

	tcp_connect(id, port, 9, &o);
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	expect9(id, PROTO_T_TCP_CONNECTED, 10000);
	expect9(id, PROTO_T_BULK_ACCEPTED, 10000);
	*acc = h.msg.u.bulk_accepted;
	cr_assert_eq(h.frame.flags, 0);
	cr_assert_eq(acc->kind, PROTO_BULK_KIND_TCP);
	cr_assert_eq(acc->flows, PROTO_BULK_FLOWS_TCP);
	cr_assert_eq(acc->format, 1);
	cr_assert_eq(acc->max_record_payload,
		max_record < PROTO_BULK_TCP_RECORD ? max_record : PROTO_BULK_TCP_RECORD);
	cr_assert_eq(acc->guest_to_host_credit_limit, g2h);
	cr_assert_gt(acc->host_to_guest_credit_limit, 0);
	cr_assert_eq(
		proto_bulk_accepted_check(acc, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP), 0);
	return fd;
}

/* What the host keeps of one bulk TCP stream. */
struct host_stream {
	uint32_t id;
	struct proto_bulk_tx h2g; /* host -> guest: the agent's credit */
	struct proto_bulk_rx g2h; /* guest -> host: our credit */
	uint8_t *got;		  /* g2h bytes received */
	size_t got_len, got_cap;
	bool g2h_finished, closed;
	uint64_t credits; /* core.bulk.credit frames from the agent */
};

/*
 * Take the frame agent_client_recv() returned <rc> for, which must be for
 * stream <s>: records are checked against our g2h credit (never exceeded)
 * and kept; credit, finish and closed update <s>.
 */
static void host_take(struct host_stream *s, int rc)
{
	struct proto_bulk_rec r;
	struct proto_bulk_credit back;
	const uint8_t *p;

	if (rc == PROTO_E_BULK_RECORD) {
		cr_assert_eq(proto_bulk_frame_parse(&h.c.frame, &r, &p), 0);
		cr_assert_eq(r.id, s->id);
		/* Checks offset continuity, record limit and that credit was never passed. */
		cr_assert_eq(proto_bulk_rx_record(&s->g2h, &r), 0,
			"g2h record offset %llu len %u against credit %llu",
			(unsigned long long)r.offset, r.len,
			(unsigned long long)s->g2h.credit_limit);
		if (s->got_len + r.len > s->got_cap) {
			s->got_cap = (s->got_len + r.len) * 2;
			s->got = realloc(s->got, s->got_cap);
			cr_assert_not_null(s->got);
		}
		memcpy(s->got + s->got_len, p, r.len);
		s->got_len += r.len;
		if (proto_bulk_rx_consume(&s->g2h, s->got_len, &back) == 1) {
			struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

			m.u.bulk_credit = back;
			send_ctl(s->id, &m);
		}
		return;
	}
	cr_assert_eq(rc, 1, "bad frame from the agent: %s", proto_strerror(rc));
	cr_assert_eq(
		h.c.frame.id, s->id, "%s on id %u", proto_type_name(h.c.msg.type), h.c.frame.id);
	switch (h.c.msg.type) {
	case PROTO_T_BULK_CREDIT:
		cr_assert_eq(proto_bulk_tx_credit(&s->h2g, &h.c.msg.u.bulk_credit), 1);
		s->credits++;
		break;
	case PROTO_T_BULK_FINISH:
		cr_assert_eq(proto_bulk_rx_finish(&s->g2h, &h.c.msg.u.bulk_finish), 0);
		s->g2h_finished = true;
		break;
	case PROTO_T_TCP_CLOSED:
		cr_assert(h.c.frame.flags & PROTO_FLAG_TERMINAL);
		cr_assert(s->g2h_finished, "tcp.closed before the guest's finish");
		s->closed = true;
		break;
	default:
		cr_assert_fail("unexpected %s on id %u", proto_type_name(h.c.msg.type), s->id);
	}
}

/* Receive one frame for stream <s> (grants aside) within <timeout_ms>; false on timeout. */
static bool host_pump(struct host_stream *s, int timeout_ms)
{
	int rc = recv9(timeout_ms);

	if (rc == 0)
		return false;
	host_take(s, rc);
	return true;
}

/* The same, but an aggregate grant is a frame too: returns true after one. */
static bool host_pump_any(struct host_stream *s, int timeout_ms)
{
	int rc = agent_client_recv(&h.c, timeout_ms);

	if (rc == 0)
		return false;
	if (rc != 1 || !take_grant())
		host_take(s, rc);
	return true;
}

/* The destination: echoes everything it reads, then closes at EOF (or once the agent left). */
static void *echo_main(void *arg)
{
	int fd = *(int *)arg;
	static __thread uint8_t buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	close(fd);
	return NULL;
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

Test(agent_gen9, tcp_bulk_echo_both_ways_within_credit_then_finish_and_closed)
{
	const size_t total = 6u << 20; /* more than the agent's h2g window: needs its credit */
	const uint64_t g2h_initial = 100000; /* small: the agent must wait for our grants */
	struct host_stream s = {.id = 21};
	struct proto_bulk_accepted acc;
	struct proto_bulk_finish fin;
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};
	uint8_t *data = malloc(total);
	pthread_t th;
	uint16_t port;
	int lfd, fd;
	size_t sent = 0;

	cr_assert_not_null(data);
	for (size_t i = 0; i < total; i++)
		data[i] = pattern(i);
	boot9();
	lfd = listen_any(&port);
	fd = bulk_open(s.id, lfd, port, 65536, g2h_initial, &acc);
	cr_assert_eq(pthread_create(&th, NULL, echo_main, &fd), 0);
	cr_assert_eq(proto_bulk_tx_init(&s.h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	cr_assert_eq(proto_bulk_rx_init(&s.g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H,
			     acc.max_record_payload, g2h_initial, g2h_initial),
		0);

	while (sent < total) {
		uint32_t room = proto_bulk_tx_room(&s.h2g);
		uint64_t off;
		size_t n;

		if (room == 0) { /* wait for the agent's credit, which comes as bytes reach the
				    socket */
			cr_assert(host_pump(&s, 10000), "no credit from the agent");
			continue;
		}
		n = total - sent < room ? total - sent : room;
		cr_assert_eq(proto_bulk_tx_admit(&s.h2g, n, &off), 0);
		send_record(s.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, off, data + sent, n);
		sent += n;
		while (host_pump(&s, 0))
			;
	}
	cr_assert_eq(proto_bulk_tx_finish(&s.h2g, &fin), 0);
	m.u.bulk_finish = fin;
	ah_send(&h, s.id, &m);
	while (!s.closed)
		cr_assert(host_pump(&s, 10000), "stream did not end: %zu of %zu bytes back",
			s.got_len, total);
	cr_assert_gt(s.credits, 0, "the agent granted no h2g credit");
	cr_assert_eq(s.got_len, total);
	cr_assert(memcmp(s.got, data, total) == 0, "echoed bytes differ");
	pthread_join(th, NULL);
	ping_ok(22);
	close(lfd);
	free(s.got);
	free(data);
	ah_stop_ok(&h);
}

/* An open bulk stream whose destination is held open and silent. */
static int open_quiet(uint32_t id, int *lfd)
{
	struct proto_bulk_accepted acc;
	uint16_t port;

	*lfd = listen_any(&port);
	return bulk_open(id, *lfd, port, 65536, 1u << 20, &acc);
}

static void expect_cancel_then_failed(uint32_t id, const char *text)
{
	expect9(id, PROTO_T_BULK_CANCEL, 10000);
	cr_assert_eq(h.msg.u.bulk_cancel.kind, PROTO_BULK_KIND_TCP);
	cr_assert_eq(h.msg.u.bulk_cancel.reason, PROTO_BULK_CANCEL_PROTOCOL);
	cr_assert_not(h.frame.flags & PROTO_FLAG_TERMINAL);
	expect_failed(id, text);
}

Test(agent_gen9, bad_records_fail_only_their_stream)
{
	uint8_t big[65536 + 100] = {0};
	int lfd[4], fd[4];

	boot9();
	fd[0] = open_quiet(31, &lfd[0]);
	fd[1] = open_quiet(32, &lfd[1]);
	fd[2] = open_quiet(33, &lfd[2]);
	fd[3] = open_quiet(34, &lfd[3]);
	/* An offset gap. */
	send_record(31, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 5, "hello", 5);
	expect_cancel_then_failed(31, "bulk record offset 5 does not match expected 0");
	/* Above the negotiated record limit (64 KiB). */
	send_record(32, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, big, sizeof(big));
	expect_cancel_then_failed(32, "invalid TCP bulk record");
	/* The guest's own flow, sent by the host. */
	send_record(33, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 0, "x", 1);
	expect_cancel_then_failed(33, "invalid TCP bulk record");
	/* A bad header (unknown kind) on a live stream. */
	send_record(34, 7, PROTO_BULK_H2G, 0, "x", 1);
	expect_cancel_then_failed(34, "invalid TCP bulk record");
	/* Late records of a failed stream: answered, nothing else. */
	send_record(31, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "late", 4);
	expect_error(31, PROTO_ERROR_MALFORMED_MESSAGE);
	ping_ok(35);
	for (int i = 0; i < 4; i++) {
		close(fd[i]);
		close(lfd[i]);
	}
	ah_stop_ok(&h);
}

Test(agent_gen9, cbor_data_after_acceptance_fails_the_stream_and_another_stream_goes_on)
{
	struct host_stream s = {.id = 42};
	int lfd[2], fd[2];
	char buf[16];

	boot9();
	fd[0] = open_quiet(41, &lfd[0]);
	fd[1] = open_quiet(42, &lfd[1]);
	ah_send_data(&h, 41, PROTO_T_TCP_DATA, "cbor", 4);
	expect_failed(41, "CBOR TCP data is invalid after raw bulk acceptance");
	/* Stream 42 still works: one record reaches its socket and comes back as a record. */
	cr_assert_eq(proto_bulk_rx_init(&s.g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 65536,
			     1u << 20, 1u << 20),
		0);
	send_record(42, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "ping!", 5);
	cr_assert_eq(read(fd[1], buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "ping!", 5) == 0);
	cr_assert_eq(write(fd[1], "pong!", 5), 5);
	while (s.got_len < 5)
		cr_assert(host_pump(&s, 10000));
	cr_assert(memcmp(s.got, "pong!", 5) == 0);
	/* The destination's EOF is the guest's finish, at the exact offset. */
	shutdown(fd[1], SHUT_WR);
	while (!s.g2h_finished)
		cr_assert(host_pump(&s, 10000));
	cr_assert_eq(s.g2h.next_expected, 5);
	/* The host cancels: the stream is gone, later credit is dropped quietly. */
	{
		struct proto_msg m = {.type = PROTO_T_BULK_CANCEL, .v = 9};

		m.u.bulk_cancel.kind = PROTO_BULK_KIND_TCP;
		m.u.bulk_cancel.reason = PROTO_BULK_CANCEL_CALLER;
		m.u.bulk_cancel.message = (struct proto_str){"bye", 3};
		ah_send(&h, 42, &m);
		cr_assert_eq(
			read(fd[1], buf, sizeof(buf)), 0, "the agent did not close the socket");
		m = (struct proto_msg){.type = PROTO_T_BULK_CREDIT, .v = 9};
		m.u.bulk_credit = (struct proto_bulk_credit){
			PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 5, 1u << 20};
		ah_send(&h, 42, &m);
	}
	ping_ok(43);
	for (int i = 0; i < 2; i++) {
		close(fd[i]);
		close(lfd[i]);
	}
	free(s.got);
	ah_stop_ok(&h);
}

Test(agent_gen9, stalled_bulk_destination_stalls_only_its_own_stream)
{
	struct host_stream a = {.id = 51}, b = {.id = 52};
	struct proto_bulk_accepted acc;
	static uint8_t chunk[65536];
	uint8_t *seen = malloc(8u << 20);
	int lfd[2], fd[2];
	uint16_t port;
	size_t sent = 0, got = 0;
	char buf[16];

	cr_assert_not_null(seen);
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = pattern(i);
	boot9();
	lfd[0] = listen_any(&port);
	fd[0] = bulk_open(a.id, lfd[0], port, 65536, 1u << 20, &acc);
	cr_assert_eq(proto_bulk_tx_init(&a.h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	fd[1] = open_quiet(b.id, &lfd[1]);
	cr_assert_eq(proto_bulk_rx_init(&b.g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 65536,
			     1u << 20, 1u << 20),
		0);
	/* Stream a: its whole initial credit, to a destination that does not read. */
	while (proto_bulk_tx_room(&a.h2g) > 0) {
		uint64_t off;
		size_t n = proto_bulk_tx_room(&a.h2g) < sizeof(chunk) ? proto_bulk_tx_room(&a.h2g)
								      : sizeof(chunk);

		cr_assert_eq(proto_bulk_tx_admit(&a.h2g, n, &off), 0);
		send_record(a.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, off, chunk, n);
		sent += n;
	}
	/* Stream b still moves both ways while a's bytes wait in the guest. */
	send_record(b.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "still", 5);
	cr_assert_eq(read(fd[1], buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "still", 5) == 0);
	cr_assert_eq(write(fd[1], "alive", 5), 5);
	for (;;) {
		struct proto_bulk_rec r;
		const uint8_t *p;
		int rc = recv9(10000);

		cr_assert_neq(rc, 0, "stream b got nothing back while a is stalled");
		if (rc == 1 && h.c.frame.id == a.id && h.c.msg.type == PROTO_T_BULK_CREDIT) {
			/* a's socket took some bytes: fine, keep waiting for b */
			cr_assert_eq(proto_bulk_tx_credit(&a.h2g, &h.c.msg.u.bulk_credit), 1);
			a.credits++;
			continue;
		}
		cr_assert_eq(
			rc, PROTO_E_BULK_RECORD, "%s on id %u", proto_strerror(rc), h.c.frame.id);
		cr_assert_eq(proto_bulk_frame_parse(&h.c.frame, &r, &p), 0);
		cr_assert_eq(r.id, b.id);
		cr_assert(r.len == 5 && memcmp(p, "alive", 5) == 0);
		break;
	}
	/* Now drain a's destination: every byte arrives, in order. */
	while (got < sent) {
		ssize_t n = read(fd[0], seen + got, sent - got);

		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	for (size_t i = 0; i < sent; i++)
		cr_assert_eq(seen[i], pattern(i % sizeof(chunk)), "byte %zu", i);
	/* The agent granted a's credit back as those bytes reached the socket. */
	while (a.credits == 0)
		cr_assert(host_pump(&a, 10000), "no h2g credit after the destination drained");
	while (host_pump(&a, 300)) /* later credits of a, as the rest reached the socket */
		;
	cr_assert_geq(a.h2g.credit_limit, sent + 1);
	cr_assert_eq(a.h2g.consumed, sent, "credit says %llu of %zu bytes consumed",
		(unsigned long long)a.h2g.consumed, sent);
	ping_ok(53);
	for (int i = 0; i < 2; i++) {
		close(fd[i]);
		close(lfd[i]);
	}
	free(seen);
	ah_stop_ok(&h);
}

/* ---- TCP bulk: finish, cancel and faults of one stream ------------------ */

/* Largest control frame the host sends on a bulk stream (credit, finish, cancel). */
#define CTRL_MAX 128u

/* Whether a data (else control) frame of <size> bytes fits the aggregate grant now (G6). */
static bool g6_fits(bool data, size_t size)
{
	if (data)
		return used.bulk_bytes + size <= grant.bulk_bytes &&
		       used.bulk_frames + 1 <= grant.bulk_frames;
	return used.control_bytes + size <= grant.control_bytes &&
	       used.control_frames + 1 <= grant.control_frames;
}

/* Byte stream <seed> from offset <off>: cheap, with no short period, distinct per seed. */
static void stream_fill(uint8_t *p, size_t n, uint64_t seed, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((((off + i) ^ (seed << 48)) * 0x9e3779b97f4a7c15ull) >> 56);
}

/* An open bulk stream with a silent destination, both flows tracked in <s> (64 KiB records). */
static int open_tracked(struct host_stream *s, int *lfd)
{
	struct proto_bulk_accepted acc;
	uint16_t port;
	int fd;

	*lfd = listen_any(&port);
	fd = bulk_open(s->id, *lfd, port, 65536, 1u << 20, &acc);
	cr_assert_eq(proto_bulk_tx_init(&s->h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	cr_assert_eq(proto_bulk_rx_init(&s->g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H,
			     acc.max_record_payload, 1u << 20, 1u << 20),
		0);
	return fd;
}

/* core.bulk.finish for <flow> of stream <id> at <final_offset>. */
static void send_finish(uint32_t id, enum proto_bulk_flow flow, uint64_t final_offset)
{
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};

	m.u.bulk_finish = (struct proto_bulk_finish){PROTO_BULK_KIND_TCP, flow, final_offset};
	send_ctl(id, &m);
}

/*
 * Send stream <s> records of byte stream 3 up to the agent's credit, and
 * again as credit comes, until none has come for 500 ms: its destination
 * reads nothing, so the socket is full and the rest waits in the agent.
 * The host then knows the agent's credit limit exactly.
 */
static void fill_until_stalled(struct host_stream *s)
{
	static uint8_t chunk[65536];

	do {
		for (;;) {
			uint32_t room = proto_bulk_tx_room(&s->h2g);
			size_t n = room < sizeof(chunk) ? room : sizeof(chunk);
			uint64_t off;

			if (n == 0)
				break;
			if (!g6_fits(true, 21 + n)) {
				cr_assert(
					host_pump_any(s, 10000), "no aggregate grant for a record");
				continue;
			}
			cr_assert_eq(proto_bulk_tx_admit(&s->h2g, n, &off), 0);
			stream_fill(chunk, n, 3, off);
			send_record(s->id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, off, chunk, n);
		}
	} while (host_pump(s, 500));
}

/* Read from <fd> until EOF or an error; the bytes must be stream 3 from 0.  Returns the count. */
static uint64_t drain_stream3(int fd)
{
	static uint8_t buf[65536], want[65536];
	uint64_t got = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		stream_fill(want, (size_t)n, 3, got);
		cr_assert(memcmp(buf, want, (size_t)n) == 0, "bytes %llu.. differ",
			(unsigned long long)got);
		got += (uint64_t)n;
	}
	return got;
}

Test(agent_gen9, credit_overrun_by_the_host_fails_only_its_stream)
{
	struct host_stream a = {.id = 111};
	uint64_t limit;
	int lfd[2], fd[2];
	char want[128], buf[16];

	boot9();
	fd[0] = open_tracked(&a, &lfd[0]);
	fd[1] = open_quiet(112, &lfd[1]);
	fill_until_stalled(&a);
	limit = a.h2g.credit_limit;
	cr_assert_eq(a.h2g.next_offset, limit);
	cr_assert_geq(limit, 4u << 20, "the agent grants at least its 4 MiB window");
	/* One byte past the agent's grant. */
	send_record(a.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, limit, "!", 1);
	snprintf(want, sizeof(want), "bulk record end %llu exceeds credit limit %llu",
		(unsigned long long)limit + 1, (unsigned long long)limit);
	expect_cancel_then_failed(a.id, want);
	/* Its destination sees a clean prefix of the stream, then the end. */
	cr_assert_leq(drain_stream3(fd[0]), limit);
	/* The other stream carries bytes on; the channel is fine. */
	send_record(112, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "still", 5);
	cr_assert_eq(read(fd[1], buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "still", 5) == 0);
	ping_ok(113);
	cr_assert_eq(recv9(300), 0, "a frame after the pong");
	/* And ends as a stream should: the destination's EOF, our finish, tcp.closed. */
	close(fd[1]);
	expect9(112, PROTO_T_BULK_FINISH, 10000);
	cr_assert_eq(h.msg.u.bulk_finish.final_offset, 0);
	send_finish(112, PROTO_BULK_H2G, 5);
	expect9(112, PROTO_T_TCP_CLOSED, 10000);
	close(lfd[1]);
	close(fd[0]);
	close(lfd[0]);
	ah_stop_ok(&h);
}

Test(agent_gen9, finish_with_a_wrong_final_offset_fails_only_its_stream)
{
	static const char bad_final[] = "invalid TCP core.bulk.finish: bulk finish offset does not "
					"match the bytes of the flow";
	uint32_t ids[4] = {121, 122, 123, 124};
	int lfd[4], fd[4];
	char buf[16];

	boot9();
	for (int i = 0; i < 4; i++) {
		fd[i] = open_quiet(ids[i], &lfd[i]);
		send_record(ids[i], PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "hello", 5);
		cr_assert_eq(read(fd[i], buf, sizeof(buf)), 5);
	}
	send_finish(121, PROTO_BULK_H2G, 6); /* ahead of the bytes sent */
	expect_cancel_then_failed(121, bad_final);
	send_finish(122, PROTO_BULK_H2G, 4); /* behind them */
	expect_cancel_then_failed(122, bad_final);
	send_finish(123, PROTO_BULK_G2H, 5); /* the guest's flow is not the host's to finish */
	expect_cancel_then_failed(
		123, "invalid TCP core.bulk.finish: bulk kind or flow does not match");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(read(fd[i], buf, sizeof(buf)), 0, "stream %u's socket is still open",
			ids[i]);
	/* The right finish: the destination gets EOF after the data, the stream stays open... */
	send_finish(124, PROTO_BULK_H2G, 5);
	cr_assert_eq(read(fd[3], buf, sizeof(buf)), 0);
	ping_ok(125);
	cr_assert_eq(recv9(300), 0, "a frame while the guest side of 124 is still open");
	/* ... until the destination's EOF: the guest's finish at 0 bytes, then tcp.closed. */
	shutdown(fd[3], SHUT_WR);
	expect9(124, PROTO_T_BULK_FINISH, 10000);
	cr_assert_eq(h.msg.u.bulk_finish.flow, PROTO_BULK_G2H);
	cr_assert_eq(h.msg.u.bulk_finish.final_offset, 0);
	expect9(124, PROTO_T_TCP_CLOSED, 10000);
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	ping_ok(126);
	for (int i = 0; i < 4; i++) {
		close(fd[i]);
		close(lfd[i]);
	}
	ah_stop_ok(&h);
}

/*
 * G4.7 leaves open what follows a host's core.bulk.cancel; sandwire-agent
 * treats it as core.tcp.close (G4.5: abort, no reply): no terminal frame,
 * the socket closed, the id free for a new stream.
 */
Test(agent_gen9, host_cancel_mid_transfer_ends_the_stream_quietly_and_frees_it)
{
	struct host_stream s = {.id = 101}, again = {.id = 101};
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL, .v = 9};
	static uint8_t chunk[65536];
	bool pong = false;
	pthread_t th;
	int lfd, fd, fds_before;
	char buf[16];

	boot9();
	fds_before = dh_fd_count(h.c.pid);
	fd = open_tracked(&s, &lfd);
	cr_assert_eq(pthread_create(&th, NULL, echo_main, &fd), 0);
	/* 2 MiB out (the agent grants 4 MiB); the echo sends it back within our 1 MiB. */
	for (int i = 0; i < 32; i++) {
		uint64_t off;

		cr_assert_eq(proto_bulk_tx_admit(&s.h2g, sizeof(chunk), &off), 0);
		stream_fill(chunk, sizeof(chunk), 3, off);
		send_record(s.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, off, chunk, sizeof(chunk));
	}
	m.u.bulk_cancel.kind = PROTO_BULK_KIND_TCP;
	m.u.bulk_cancel.reason = PROTO_BULK_CANCEL_CALLER;
	m.u.bulk_cancel.message = (struct proto_str){"caller dropped it", 17};
	send_ctl(s.id, &m);
	m = (struct proto_msg){.type = PROTO_T_PING, .v = 9};
	send_ctl(102, &m);
	/* Until the pong: only records and credit the agent sent before it read the cancel. */
	while (!pong) {
		struct proto_bulk_rec r;
		const uint8_t *p;
		int rc = recv9(10000);

		cr_assert_neq(rc, 0, "no pong after the cancel");
		if (rc == PROTO_E_BULK_RECORD) {
			cr_assert_eq(proto_bulk_frame_parse(&h.c.frame, &r, &p), 0);
			cr_assert_eq(r.id, s.id);
			cr_assert_eq(proto_bulk_rx_record(&s.g2h, &r), 0);
			continue;
		}
		cr_assert_eq(rc, 1, "%s", proto_strerror(rc));
		if (h.c.frame.id == 102) {
			cr_assert_eq(h.c.msg.type, PROTO_T_PONG);
			pong = true;
			continue;
		}
		cr_assert_eq(h.c.frame.id, s.id);
		cr_assert_eq(h.c.msg.type, PROTO_T_BULK_CREDIT, "%s after the host's cancel",
			proto_type_name(h.c.msg.type));
	}
	cr_assert_eq(recv9(300), 0, "%s on id %u after the cancel was handled",
		proto_type_name(h.c.msg.type), h.c.frame.id);
	/* The agent closed the socket (the echo ends) and let go of it. */
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert(WAIT_FOR(dh_fd_count(h.c.pid) == fds_before, 2000),
		"the agent holds %d descriptors, %d before the stream", dh_fd_count(h.c.pid),
		fds_before);
	close(lfd);
	/* The id is free again: a new stream on it carries bytes both ways and ends. */
	fd = open_tracked(&again, &lfd);
	send_record(again.id, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "again", 5);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "again", 5) == 0);
	cr_assert_eq(write(fd, "back", 4), 4);
	shutdown(fd, SHUT_WR);
	while (!again.g2h_finished)
		cr_assert(host_pump(&again, 10000));
	cr_assert(again.got_len == 4 && memcmp(again.got, "back", 4) == 0);
	send_finish(again.id, PROTO_BULK_H2G, 5);
	while (!again.closed)
		cr_assert(host_pump(&again, 10000));
	cr_assert_eq(read(fd, buf, sizeof(buf)), 0);
	ping_ok(103);
	close(fd);
	close(lfd);
	free(again.got);
	free(s.got);
	ah_stop_ok(&h);
}

/* ---- TCP bulk at full speed: checksums and every grant checked ---------- */

#define BIG_BYTES (256ull << 20) /* each way; about 5 s under ASan, so no smaller size there */
#define SIDE_BYTES (64ull << 20) /* beside a stalled stream */
#define XFER_WINDOW (4u << 20)	 /* the host's g2h window: a modest one */
#define FAR_IO (256u << 10)	 /* the destination's read and write size */
#define FAR_RCVBUF (256u << 10)

#define FNV_BASIS 0xcbf29ce484222325ull

/* FNV-1a over <n> more bytes: a stream's checksum, however it was split. */
static uint64_t fnv1a(uint64_t hash, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hash = (hash ^ p[i]) * 0x100000001b3ull;
	return hash;
}

/*
 * The destination of a big transfer: one connection served by two
 * threads, a sink that hashes what it reads until EOF and a source that
 * sends <out_bytes> of byte stream <out_seed> and then half-closes.
 */
struct far_end {
	int lfd, fd;
	uint64_t out_bytes, out_seed;
	uint64_t out_sent, out_hash; /* what the source sent */
	_Atomic uint64_t in_bytes;   /* what the sink has read ... */
	uint64_t in_hash;	     /* ... and its checksum, once at EOF */
	int in_err, out_err;	     /* errno of a failed read / send */
	uint8_t *in_buf, *out_buf;
	pthread_t sink, source;
};

static void *far_sink_main(void *arg)
{
	struct far_end *e = arg;
	uint64_t hash = FNV_BASIS;
	ssize_t n;

	while ((n = read(e->fd, e->in_buf, FAR_IO)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e->in_err = errno;
			break;
		}
		hash = fnv1a(hash, e->in_buf, (size_t)n);
		atomic_fetch_add(&e->in_bytes, (uint64_t)n);
	}
	e->in_hash = hash;
	return NULL;
}

static void *far_source_main(void *arg)
{
	struct far_end *e = arg;
	uint64_t hash = FNV_BASIS;

	while (e->out_sent < e->out_bytes) {
		uint64_t left = e->out_bytes - e->out_sent;
		size_t n = left < FAR_IO ? (size_t)left : FAR_IO;

		stream_fill(e->out_buf, n, e->out_seed, e->out_sent);
		hash = fnv1a(hash, e->out_buf, n);
		for (size_t done = 0; done < n;) {
			ssize_t w = send(e->fd, e->out_buf + done, n - done, MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				e->out_err = w < 0 ? errno : EPIPE;
				goto out;
			}
			done += (size_t)w;
		}
		e->out_sent += n;
	}
	shutdown(e->fd, SHUT_WR);
out:
	e->out_hash = hash;
	return NULL;
}

/* Listen for the agent's connection, with a receive buffer of FAR_RCVBUF. */
static uint16_t far_listen(struct far_end *e)
{
	int size = FAR_RCVBUF;
	uint16_t port;

	e->lfd = listen_any(&port);
	cr_assert_eq(setsockopt(e->lfd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
	return port;
}

static void far_start(struct far_end *e, int fd)
{
	e->fd = fd;
	e->in_buf = malloc(FAR_IO);
	e->out_buf = malloc(FAR_IO);
	cr_assert(e->in_buf && e->out_buf);
	cr_assert_eq(pthread_create(&e->sink, NULL, far_sink_main, e), 0);
	cr_assert_eq(pthread_create(&e->source, NULL, far_source_main, e), 0);
}

static void far_join(struct far_end *e)
{
	cr_assert_eq(pthread_join(e->sink, NULL), 0);
	cr_assert_eq(pthread_join(e->source, NULL), 0);
	close(e->fd);
	close(e->lfd);
	free(e->in_buf);
	free(e->out_buf);
}

/*
 * How many bytes the agent may have written to the destination's socket
 * beyond what the sink has counted: the agent's send buffer (autotuned up
 * to tcp_wmem's maximum), the sink's receive buffer and one read.
 */
static uint64_t far_slack(int fd)
{
	unsigned long lo, def, max;
	int rcvbuf;
	socklen_t len = sizeof(rcvbuf);
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");

	cr_assert_not_null(f, "tcp_wmem: %s", strerror(errno));
	cr_assert_eq(fscanf(f, "%lu %lu %lu", &lo, &def, &max), 3);
	fclose(f);
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len), 0);
	return (uint64_t)max + (uint64_t)rcvbuf + FAR_IO;
}

/* One TCP bulk stream driven both ways at full speed by the host. */
struct xfer {
	uint32_t id;
	uint64_t h2g_bytes, h2g_seed; /* what the host sends */
	struct far_end far;	      /* the destination: far.out_bytes come back */
	struct proto_bulk_tx h2g;
	struct proto_bulk_rx g2h;
	uint64_t h2g_window; /* the agent's initial credit, its window */
	uint64_t slack;	     /* far_slack() */
	uint64_t sent_hash, got_hash;
	struct proto_bulk_credit grant_out; /* our next g2h credit, when <grant_due> */
	bool grant_due, finish_sent, g2h_finished, closed;
	uint64_t agent_credits;
};

/* Open <x> (256 KiB records, XFER_WINDOW of g2h credit) and start its destination. */
static void xfer_open(struct xfer *x)
{
	struct proto_bulk_accepted acc;
	uint16_t port = far_listen(&x->far);
	int fd = bulk_open(x->id, x->far.lfd, port, PROTO_BULK_TCP_RECORD, XFER_WINDOW, &acc);

	cr_assert_eq(proto_bulk_tx_init(&x->h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	cr_assert_eq(proto_bulk_rx_init(&x->g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H,
			     acc.max_record_payload, XFER_WINDOW, XFER_WINDOW),
		0);
	x->h2g_window = acc.host_to_guest_credit_limit;
	x->slack = far_slack(fd);
	x->sent_hash = x->got_hash = FNV_BASIS;
	far_start(&x->far, fd);
}

/*
 * The agent's credit for our records: never shrinking, never more than its
 * window ahead of what it says was consumed, and consumed only as far as
 * the destination can have taken: at most far_slack() beyond what its sink
 * has read.
 */
static void xfer_credit(struct xfer *x, const struct proto_bulk_credit *c)
{
	uint64_t limit = x->h2g.credit_limit, consumed = x->h2g.consumed;
	uint64_t read_so_far = atomic_load(&x->far.in_bytes);
	int rc = proto_bulk_tx_credit(&x->h2g, c);

	cr_assert_geq(rc, 0, "h2g credit (consumed %llu, limit %llu) after %llu bytes sent: %s",
		(unsigned long long)c->consumed_offset, (unsigned long long)c->credit_limit,
		(unsigned long long)x->h2g.next_offset, proto_strerror(rc));
	cr_assert(c->credit_limit >= limit && c->consumed_offset >= consumed,
		"the agent's credit went down: limit %llu -> %llu", (unsigned long long)limit,
		(unsigned long long)c->credit_limit);
	cr_assert_leq(c->credit_limit - c->consumed_offset, x->h2g_window);
	cr_assert_leq(c->consumed_offset, read_so_far + x->slack,
		"credit for %llu bytes consumed while the destination had read %llu",
		(unsigned long long)c->consumed_offset, (unsigned long long)read_so_far);
	x->agent_credits++;
}

/* Take the frame agent_client_recv() returned <rc> for: <x>'s, or a credit of <by> (may be NULL).
 */
static void xfer_take(struct xfer *x, struct host_stream *by, int rc)
{
	struct proto_bulk_rec r;
	const uint8_t *p;

	if (rc == PROTO_E_BULK_RECORD) {
		cr_assert_eq(proto_bulk_frame_parse(&h.c.frame, &r, &p), 0);
		cr_assert_eq(r.id, x->id, "a record on id %u", r.id);
		/* Starts where the last ended, ends within our credit. */
		cr_assert_eq(proto_bulk_rx_record(&x->g2h, &r), 0,
			"g2h record at %llu + %u: expected offset %llu, credit %llu",
			(unsigned long long)r.offset, r.len,
			(unsigned long long)x->g2h.next_expected,
			(unsigned long long)x->g2h.credit_limit);
		x->got_hash = fnv1a(x->got_hash, p, r.len);
		if (proto_bulk_rx_consume(&x->g2h, x->g2h.next_expected, &x->grant_out) == 1)
			x->grant_due = true;
		return;
	}
	cr_assert_eq(rc, 1, "bad frame from the agent: %s", proto_strerror(rc));
	if (by && h.c.frame.id == by->id && h.c.msg.type == PROTO_T_BULK_CREDIT) {
		cr_assert_geq(proto_bulk_tx_credit(&by->h2g, &h.c.msg.u.bulk_credit), 0);
		return;
	}
	cr_assert_eq(
		h.c.frame.id, x->id, "%s on id %u", proto_type_name(h.c.msg.type), h.c.frame.id);
	switch (h.c.msg.type) {
	case PROTO_T_BULK_CREDIT:
		xfer_credit(x, &h.c.msg.u.bulk_credit);
		break;
	case PROTO_T_BULK_FINISH:
		cr_assert_eq(proto_bulk_rx_finish(&x->g2h, &h.c.msg.u.bulk_finish), 0);
		cr_assert_eq(h.c.msg.u.bulk_finish.final_offset, x->far.out_bytes);
		x->g2h_finished = true;
		break;
	case PROTO_T_TCP_CLOSED:
		cr_assert(h.c.frame.flags & PROTO_FLAG_TERMINAL);
		cr_assert(x->g2h_finished && x->finish_sent, "tcp.closed before both finishes");
		x->closed = true;
		break;
	default:
		cr_assert_fail("unexpected %s on id %u", proto_type_name(h.c.msg.type), x->id);
	}
}

/* Receive one frame (an aggregate grant counts) within <timeout_ms>; false on timeout. */
static bool xfer_pump(struct xfer *x, struct host_stream *by, int timeout_ms)
{
	int rc = agent_client_recv(&h.c, timeout_ms);

	if (rc == 0)
		return false;
	if (rc != 1 || !take_grant())
		xfer_take(x, by, rc);
	return true;
}

/*
 * Run <x> to its tcp.closed as a host that keeps every rule: records only
 * within the agent's credit and the aggregate grant (G6), our g2h credit
 * granted back as we consume, reading whenever there is nothing to send.
 */
static void xfer_run(struct xfer *x, struct host_stream *by)
{
	static uint8_t rec[21 + PROTO_BULK_TCP_RECORD];

	while (!x->closed) {
		uint64_t left = x->h2g_bytes - x->h2g.next_offset;
		uint32_t room = proto_bulk_tx_room(&x->h2g);
		size_t n = left < room ? (size_t)left : room;
		bool moved = false;

		if (x->grant_due && g6_fits(false, CTRL_MAX)) {
			struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

			m.u.bulk_credit = x->grant_out;
			send_ctl(x->id, &m);
			x->grant_due = false;
			moved = true;
		}
		if (n > 0 && g6_fits(true, 21 + n)) {
			uint64_t off;

			cr_assert_eq(proto_bulk_tx_admit(&x->h2g, n, &off), 0);
			stream_fill(rec + 21, n, x->h2g_seed, off);
			x->sent_hash = fnv1a(x->sent_hash, rec + 21, n);
			record_prefix(
				rec, x->id, 0x08, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, off, n);
			ah_send_raw(&h, rec, 21 + n);
			used.bulk_bytes += 21 + n;
			used.bulk_frames++;
			moved = true;
		} else if (left == 0 && !x->finish_sent && g6_fits(false, CTRL_MAX)) {
			struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};

			cr_assert_eq(proto_bulk_tx_finish(&x->h2g, &m.u.bulk_finish), 0);
			send_ctl(x->id, &m);
			x->finish_sent = moved = true;
		}
		if (moved) {
			while (xfer_pump(x, by, 0))
				;
			continue;
		}
		cr_assert(xfer_pump(x, by, 10000),
			"stream %u stuck: sent %llu of %llu (credit %llu), received %llu (credit "
			"%llu), the destination read %llu",
			x->id, (unsigned long long)x->h2g.next_offset,
			(unsigned long long)x->h2g_bytes, (unsigned long long)x->h2g.credit_limit,
			(unsigned long long)x->g2h.next_expected,
			(unsigned long long)x->g2h.credit_limit,
			(unsigned long long)atomic_load(&x->far.in_bytes));
	}
}

/* After xfer_run and far_join: every byte arrived both ways, checksums equal. */
static void xfer_check(struct xfer *x)
{
	cr_assert_eq(x->far.in_err, 0, "destination read: %s", strerror(x->far.in_err));
	cr_assert_eq(x->far.out_err, 0, "destination send: %s", strerror(x->far.out_err));
	cr_assert_eq(atomic_load(&x->far.in_bytes), x->h2g_bytes);
	cr_assert_eq(x->far.in_hash, x->sent_hash, "host->guest checksum differs");
	cr_assert_eq(x->far.out_sent, x->far.out_bytes);
	cr_assert_eq(x->g2h.next_expected, x->far.out_bytes);
	cr_assert_eq(x->got_hash, x->far.out_hash, "guest->host checksum differs");
	cr_assert_gt(x->agent_credits, 0);
	cr_assert(used.bulk_bytes <= grant.bulk_bytes && used.bulk_frames <= grant.bulk_frames &&
			  used.control_bytes <= grant.control_bytes &&
			  used.control_frames <= grant.control_frames,
		"the host passed its aggregate grant");
}

Test(agent_gen9, tcp_bulk_256_mib_each_way_with_checksums_and_every_grant_checked, .timeout = 300)
{
	struct xfer x = {.id = 201, .h2g_bytes = BIG_BYTES, .h2g_seed = 1};
	int64_t t0 = dh_now_ms();

	x.far.out_bytes = BIG_BYTES;
	x.far.out_seed = 2;
	boot9();
	xfer_open(&x);
	xfer_run(&x, NULL);
	far_join(&x.far);
	xfer_check(&x);
	cr_log_info("%llu MiB each way in %lld ms, %llu h2g credits, %llu aggregate grants",
		BIG_BYTES >> 20, (long long)(dh_now_ms() - t0), (unsigned long long)x.agent_credits,
		(unsigned long long)grants);
	ping_ok(202);
	ah_stop_ok(&h);
}

Test(agent_gen9, a_stalled_destination_leaves_another_bulk_stream_moving, .timeout = 300)
{
	struct host_stream a = {.id = 211};
	struct xfer x = {.id = 212, .h2g_bytes = SIDE_BYTES, .h2g_seed = 4};
	uint64_t stalled;
	int lfd, fd;

	x.far.out_bytes = SIDE_BYTES;
	x.far.out_seed = 5;
	boot9();
	fd = open_tracked(&a, &lfd);
	fill_until_stalled(&a);
	stalled = a.h2g.next_offset;
	/* The other stream moves its bytes both ways to the end while a waits. */
	xfer_open(&x);
	xfer_run(&x, &a);
	far_join(&x.far);
	xfer_check(&x);
	cr_assert_eq(a.h2g.next_offset, stalled);
	/* Now a's destination reads: all of a's bytes arrive, in order, then a ends cleanly. */
	send_finish(a.id, PROTO_BULK_H2G, stalled);
	cr_assert_eq(drain_stream3(fd), stalled);
	shutdown(fd, SHUT_WR);
	while (!a.closed)
		cr_assert(host_pump(&a, 10000), "stream a did not end");
	cr_assert_eq(a.g2h.next_expected, 0);
	ping_ok(213);
	close(fd);
	close(lfd);
	ah_stop_ok(&h);
}

Test(agent_gen9, connect_without_offer_stays_on_cbor_data_for_a_gen9_host)
{
	uint16_t port;
	int lfd, fd;
	char buf[16];
	struct proto_msg m = {.type = PROTO_T_TCP_DATA, .v = 9};

	boot9();
	lfd = listen_any(&port);
	tcp_connect(61, port, 9, NULL);
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	expect9(61, PROTO_T_TCP_CONNECTED, 10000);
	m.u.data = (struct proto_data){(const uint8_t *)"cbor!", 5};
	ah_send(&h, 61, &m);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "cbor!", 5) == 0);
	cr_assert_eq(write(fd, "back", 4), 4);
	expect9(61, PROTO_T_TCP_DATA, 10000); /* no bulk.accepted came first */
	cr_assert(h.msg.u.data.len == 4 && memcmp(h.msg.u.data.ptr, "back", 4) == 0);
	cr_assert_eq(h.msg.v, 7, "a CBOR data frame keeps the generation-7 bytes");
	close(fd);
	expect9(61, PROTO_T_TCP_EOF, 10000);
	ping_ok(62);
	close(lfd);
	ah_stop_ok(&h);
}

/* ---- aggregate input credit (G6) ---------------------------------------- */

/* Take grants until none comes for <quiet_ms>; fails on any other frame. */
static void grants_settle(int quiet_ms)
{
	int rc = recv9(quiet_ms);

	cr_assert_eq(rc, 0, "unexpected %s on id %u",
		rc == 1 ? proto_type_name(h.c.msg.type) : "frame", h.c.frame.id);
}

/* Take grants until the data grant reaches <bytes> / <frames>; fails after 10 s of nothing. */
static void grants_reach(uint64_t bytes, uint64_t frames)
{
	while (grant.bulk_bytes < bytes || grant.bulk_frames < frames) {
		int rc = agent_client_recv(&h.c, 10000);

		if (rc == 1 && take_grant())
			continue;
		cr_assert_neq(rc, 0,
			"grant stuck at %llu bytes / %llu frames, waiting for %llu / %llu",
			(unsigned long long)grant.bulk_bytes, (unsigned long long)grant.bulk_frames,
			(unsigned long long)bytes, (unsigned long long)frames);
		cr_assert_fail(
			"unexpected %s on id %u", proto_type_name(h.c.msg.type), h.c.frame.id);
	}
}

struct sink_reader {
	int fd;
	size_t got;
};

/* A destination that reads everything until EOF. */
static void *sink_main(void *arg)
{
	struct sink_reader *r = arg;
	static __thread uint8_t buf[65536];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0)
		r->got += (size_t)n;
	return NULL;
}

Test(agent_gen9, tcp_data_to_a_reading_sink_is_granted_back_past_the_initial_window)
{
	enum { FRAMES = 600, SIZE = 512 };
	static uint8_t payload[SIZE];
	struct sink_reader r = {.fd = -1};
	uint64_t used_bytes = 0, used_frames = 0;
	pthread_t th;
	uint16_t port;
	int lfd;

	memset(payload, 'd', sizeof(payload));
	boot9();
	lfd = listen_any(&port);
	tcp_connect(71, port, 9, NULL);
	r.fd = accept(lfd, NULL, NULL);
	cr_assert_geq(r.fd, 0);
	expect9(71, PROTO_T_TCP_CONNECTED, 10000);
	cr_assert_eq(pthread_create(&th, NULL, sink_main, &r), 0);
	/* A well-behaved host: more frames than the initial 256, each within the grant. */
	for (int i = 0; i < FRAMES; i++) {
		while (used_frames + 1 > grant.bulk_frames ||
			used_bytes + SIZE + 64 > grant.bulk_bytes)
			grants_reach(grant.bulk_bytes, grant.bulk_frames + 1);
		used_bytes += ah_send_data(&h, 71, PROTO_T_TCP_DATA, payload, SIZE);
		used_frames++;
	}
	used_bytes += ah_send_data(&h, 71, PROTO_T_TCP_EOF, NULL, 0); /* tcp.eof is data too */
	used_frames++;
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(r.got, (size_t)FRAMES * SIZE);
	/* Every frame was consumed once written: the grant is exactly sent + window. */
	grants_reach(
		used_bytes + PROTO_WORKLOAD_DATA_BYTES, used_frames + PROTO_WORKLOAD_DATA_FRAMES);
	grants_settle(300);
	cr_assert_eq(grant.bulk_bytes, used_bytes + PROTO_WORKLOAD_DATA_BYTES);
	cr_assert_eq(grant.bulk_frames, used_frames + PROTO_WORKLOAD_DATA_FRAMES);
	cr_assert_geq(
		grant.control_frames, PROTO_WORKLOAD_CONTROL_FRAMES + 1, "tcp.connect handled");
	cr_assert_gt(grant.control_bytes, PROTO_WORKLOAD_CONTROL_BYTES);
	close(r.fd);
	expect9(71, PROTO_T_TCP_EOF,
		10000); /* before stopping: the agent has nothing left to write */
	ping_ok(72);
	close(lfd);
	ah_stop_ok(&h);
}

/*
 * An exec whose stdin nobody reads until <fifo> gets a line: the pipe
 * takes 64 KiB, the rest waits in the agent.
 */
static void exec_stalled_reader(uint32_t id, char *dir, char *fifo, size_t cap)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(fifo, cap, "%s/go", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	ah_exec(&h, id, false, "sh", "-c", "read x < \"$0\"; exec cat >/dev/null", fifo, NULL);
	expect9(id, PROTO_T_EXEC_STARTED, 10000);
}

/* Let the stalled reader go, close its stdin and see it exit 0; returns the EOF frame's size. */
static size_t exec_release(uint32_t id, char *dir, const char *fifo)
{
	int fd = open(fifo, O_WRONLY);
	size_t eof;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "go\n", 3), 3);
	close(fd);
	eof = ah_stdin(&h, id, NULL, 0);
	expect9(id, PROTO_T_EXEC_EXITED, 10000);
	cr_assert_eq(h.msg.u.exec_exited.code, 0);
	unlink(fifo);
	rmdir(dir);
	return eof;
}

Test(agent_gen9, grants_stop_while_the_destination_stalls_and_resume_after)
{
	enum { FRAMES = 200, SIZE = 1000 };
	static uint8_t payload[SIZE];
	char dir[] = "/tmp/sw-gen9-XXXXXX", fifo[64];
	uint64_t used_bytes = 0, stalled_frames;

	memset(payload, 's', sizeof(payload));
	boot9();
	exec_stalled_reader(81, dir, fifo, sizeof(fifo));
	for (int i = 0; i < FRAMES; i++)
		used_bytes += ah_stdin(&h, 81, payload, SIZE);
	/* The pipe took at most 64 KiB; the rest is not consumed, so not granted. */
	grants_settle(500);
	stalled_frames = grant.bulk_frames;
	cr_assert_lt(stalled_frames, PROTO_WORKLOAD_DATA_FRAMES + 70,
		"granted %llu frames past the window while the reader is stalled",
		(unsigned long long)(stalled_frames - PROTO_WORKLOAD_DATA_FRAMES));
	cr_assert_lt(grant.bulk_bytes, used_bytes + PROTO_WORKLOAD_DATA_BYTES);
	grants_settle(500);
	cr_assert_eq(grant.bulk_frames, stalled_frames, "the grant moved while nothing was read");
	/* The reader starts: the grant resumes up to everything sent (EOF included). */
	used_bytes += exec_release(81, dir, fifo);
	grants_reach(
		used_bytes + PROTO_WORKLOAD_DATA_BYTES, FRAMES + 1 + PROTO_WORKLOAD_DATA_FRAMES);
	grants_settle(300);
	cr_assert_eq(grant.bulk_frames, FRAMES + 1 + PROTO_WORKLOAD_DATA_FRAMES);
	cr_assert_eq(grant.bulk_bytes, used_bytes + PROTO_WORKLOAD_DATA_BYTES);
	ping_ok(82);
	ah_stop_ok(&h);
}

Test(agent_gen9, a_host_past_its_grant_meets_backpressure_never_an_exit)
{
	enum { FRAMES = 400, SIZE = 1000 };
	static uint8_t payload[SIZE];
	char dir[] = "/tmp/sw-gen9-XXXXXX", fifo[64];

	memset(payload, 'p', sizeof(payload));
	boot9();
	exec_stalled_reader(91, dir, fifo, sizeof(fifo));
	/* 400 data frames at once to a reader that does not read: far past 256 + what fits the
	 * pipe. */
	for (int i = 0; i < FRAMES; i++)
		ah_stdin(&h, 91, payload, SIZE);
	grants_settle(500);
	cr_assert_lt(grant.bulk_frames, FRAMES, "the host really is past its grant");
	ping_ok(92); /* still served */
	exec_release(91, dir, fifo);
	grants_reach(0, FRAMES + 1 + PROTO_WORKLOAD_DATA_FRAMES);
	ping_ok(93);
	ah_stop_ok(&h);
}
