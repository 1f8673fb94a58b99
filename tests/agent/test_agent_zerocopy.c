/*
 * tests/agent/test_agent_zerocopy.c - raw bulk records received straight
 * into chunks (issue 11) against a real sandwire-agent driven by a
 * generation-9 test host: 64 MiB of TCP host->guest bulk in 256 KiB records
 * with pings in between, and a 64 MiB fs bulk write in 3 MiB records,
 * arrive intact while the agent's exit line ("payload copies N (B bytes),
 * zero-copy payload Z bytes") shows B far below the payload; a bad record
 * after zero-copy ones still fails only its stream, with today's error.
 *
 * The agent's stderr goes to a temporary file (fd 2 is swapped around
 * ah_start only), read back after it exits.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/bulk.h"
#include "tests/support/agent_harness.h"

#define MIB (1u << 20)
#define BIG (64u * MIB)

static struct ah h;
static char root[64];	  /* scratch directory of the fs test */
static char log_path[96]; /* the agent's stderr */
static uint8_t *data;	  /* BIG bytes of pattern, what every transfer sends */
/* The aggregate input grant (G6) and what the host has sent against it. */
static struct proto_workload_transport grant, used;

/* The exit line's payload counters. */
struct copies {
	unsigned long long copies, copied, zero_copy;
};

/* Start the agent with its stderr in log_path; boot it as a generation-9 host. */
static void boot9(void)
{
	int fd, saved;
	uint64_t x = 0x9E3779B97F4A7C15ull;

	snprintf(root, sizeof(root), "/tmp/sw-zerocopy-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(log_path, sizeof(log_path), "%s.log", root);
	data = malloc(BIG);
	cr_assert_not_null(data);
	for (size_t i = 0; i < BIG; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	saved = dup(2);
	cr_assert_geq(saved, 0);
	cr_assert_eq(dup2(fd, 2), 2);
	ah_start(&h, NULL);
	dup2(saved, 2);
	close(saved);
	close(fd);
	ah_boot_as(&h, 9);
	grant = (struct proto_workload_transport){PROTO_WORKLOAD_CONTROL_BYTES,
		PROTO_WORKLOAD_CONTROL_FRAMES, PROTO_WORKLOAD_DATA_BYTES,
		PROTO_WORKLOAD_DATA_FRAMES};
	used = (struct proto_workload_transport){0};
}

static void cleanup(void)
{
	ah_rm_tree(root);
	unlink(log_path);
	free(data);
}

TestSuite(agent_zerocopy, .init = boot9, .fini = cleanup, .timeout = 300);

/* Close the console; the agent must exit 0.  Returns the counters of its exit line. */
static struct copies stop_and_count(void)
{
	struct copies c = {0};
	char line[512];
	bool found = false;
	FILE *f;
	int st = ah_stop(&h);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
	f = fopen(log_path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "payload copies ");

		if (p && sscanf(p, "payload copies %llu (%llu bytes), zero-copy payload %llu bytes",
				 &c.copies, &c.copied, &c.zero_copy) == 3)
			found = true;
	}
	fclose(f);
	cr_assert(found, "no exit line with the payload counters in the agent's log");
	cr_log_info("payload copies %llu (%llu bytes), zero-copy payload %llu bytes", c.copies,
		c.copied, c.zero_copy);
	return c;
}

/* The next frame that is not an aggregate grant (kept in <grant>); agent_client_recv's code. */
static int recv9(int timeout_ms)
{
	for (;;) {
		int rc = agent_client_recv(&h.c, timeout_ms);

		if (rc != 1 || h.c.frame.id != PROTO_WORKLOAD_CREDIT_ID)
			return rc;
		cr_assert_eq(h.c.msg.type, PROTO_T_WORKLOAD_TRANSPORT_CREDIT);
		grant = h.c.msg.u.workload_transport_credit;
	}
}

static void expect9(uint32_t id, enum proto_type t)
{
	int rc = recv9(30000);

	cr_assert_eq(rc, 1, "waiting for %s on id %u: %s", proto_type_name(t), id,
		rc == 0 ? "timeout" : proto_strerror(rc));
	cr_assert_eq(h.c.frame.id, id, "%s on id %u, expected %s on %u",
		proto_type_name(h.c.msg.type), h.c.frame.id, proto_type_name(t), id);
	cr_assert_eq(h.c.msg.type, t, "id %u: %s, expected %s", id, proto_type_name(h.c.msg.type),
		proto_type_name(t));
}

static bool str_has(struct proto_str s, const char *needle)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%.*s", (int)s.len, s.ptr);
	return strstr(buf, needle) != NULL;
}

/* Send a control message within the aggregate grant. */
static void send_ctl(uint32_t id, const struct proto_msg *m)
{
	used.control_bytes += ah_send(&h, id, m);
	used.control_frames++;
}

/* A bulk flow the host sends: the agent's credit, its grants, and pongs owed. */
struct h2g {
	uint32_t id;
	enum proto_bulk_kind kind;
	struct proto_bulk_tx tx;
	uint64_t credits;
	unsigned pongs_due;
};

/* Take one frame of flow <w> (credit or pong); false after <timeout_ms> without one. */
static bool h2g_pump(struct h2g *w, int timeout_ms)
{
	int rc = recv9(timeout_ms);

	if (rc == 0)
		return false;
	cr_assert_eq(rc, 1, "bad frame from the agent: %s", proto_strerror(rc));
	if (h.c.msg.type == PROTO_T_PONG) {
		cr_assert_gt(w->pongs_due, 0, "a pong nobody asked for");
		w->pongs_due--;
		return true;
	}
	cr_assert_eq(
		h.c.frame.id, w->id, "%s on id %u", proto_type_name(h.c.msg.type), h.c.frame.id);
	cr_assert_eq(h.c.msg.type, PROTO_T_BULK_CREDIT, "%s during the transfer",
		proto_type_name(h.c.msg.type));
	cr_assert_geq(proto_bulk_tx_credit(&w->tx, &h.c.msg.u.bulk_credit), 0);
	w->credits++;
	return true;
}

/* Write a record of flow <w> at <off>: <n> bytes of data[] from there. */
static void send_raw_record(struct h2g *w, uint64_t off, size_t n)
{
	static uint8_t buf[PROTO_BULK_PREFIX_SIZE + PROTO_BULK_MAX_RECORD];
	struct proto_bulk_rec r = {.id = w->id, .kind = w->kind, .flow = PROTO_BULK_H2G};

	r.offset = off;
	r.len = (uint32_t)n;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &r), PROTO_BULK_PREFIX_SIZE);
	memcpy(buf + PROTO_BULK_PREFIX_SIZE, data + off, n);
	ah_send_raw(&h, buf, PROTO_BULK_PREFIX_SIZE + n);
	used.bulk_bytes += PROTO_BULK_PREFIX_SIZE + n;
	used.bulk_frames++;
}

/* One record of <n> bytes at the flow's next offset, within both credits. */
static void send_record(struct h2g *w, size_t n)
{
	uint64_t off;

	while (proto_bulk_tx_room(&w->tx) < n ||
		used.bulk_bytes + PROTO_BULK_PREFIX_SIZE + n > grant.bulk_bytes ||
		used.bulk_frames + 1 > grant.bulk_frames)
		cr_assert(h2g_pump(w, 30000), "no credit at offset %llu",
			(unsigned long long)w->tx.next_offset);
	cr_assert_eq(proto_bulk_tx_admit(&w->tx, n, &off), 0);
	send_raw_record(w, off, n);
	while (h2g_pump(w, 0))
		;
}

/* Send BIG bytes in records of <rec> bytes, a ping before every <ping_every>th (0: none). */
static void send_all(struct h2g *w, size_t rec, unsigned ping_every)
{
	struct proto_msg ping = {.type = PROTO_T_PING, .v = 9};
	struct proto_msg fin = {.type = PROTO_T_BULK_FINISH, .v = 9};
	unsigned i = 0;

	while (w->tx.next_offset < BIG) {
		size_t left = BIG - w->tx.next_offset;

		if (ping_every && ++i % ping_every == 0) {
			send_ctl(1, &ping);
			w->pongs_due++;
		}
		send_record(w, left < rec ? left : rec);
	}
	cr_assert_eq(proto_bulk_tx_finish(&w->tx, &fin.u.bulk_finish), 0);
	send_ctl(w->id, &fin);
}

/* ---- TCP host->guest ---------------------------------------------------- */

/* The destination: counts and compares what it reads against data[], closes at EOF. */
struct far {
	int fd;
	size_t got;
	bool same;
};

static void *far_main(void *arg)
{
	struct far *f = arg;
	static uint8_t buf[1 << 16];
	ssize_t n;

	f->same = true;
	while ((n = read(f->fd, buf, sizeof(buf))) > 0) {
		if (f->got + (size_t)n > BIG || memcmp(buf, data + f->got, (size_t)n) != 0)
			f->same = false;
		f->got += (size_t)n;
	}
	close(f->fd);
	return NULL;
}

/* Connect stream <id> with a bulk offer to a fresh listener; returns the accepted socket. */
static int tcp_bulk_open(struct h2g *w, uint32_t id)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT, .v = 9};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), fd;
	const struct proto_bulk_accepted *acc;

	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = ntohs(sa.sin_port);
	m.u.tcp_connect.bulk.set = true;
	m.u.tcp_connect.bulk.v =
		(struct proto_bulk_offer){PROTO_BULK_FORMAT_RAW_V1, PROTO_BULK_TCP_RECORD, MIB};
	send_ctl(id, &m);
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	close(lfd);
	expect9(id, PROTO_T_TCP_CONNECTED);
	expect9(id, PROTO_T_BULK_ACCEPTED);
	acc = &h.c.msg.u.bulk_accepted;
	cr_assert_eq(acc->max_record_payload, PROTO_BULK_TCP_RECORD);
	*w = (struct h2g){.id = id, .kind = PROTO_BULK_KIND_TCP};
	cr_assert_eq(proto_bulk_tx_init(&w->tx, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			     acc->max_record_payload, acc->host_to_guest_credit_limit),
		0);
	return fd;
}

Test(agent_zerocopy, tcp_bulk_64_mib_in_256_kib_records_arrives_intact_without_copies)
{
	struct h2g w;
	struct far f = {0};
	pthread_t th;
	struct copies c;
	bool finished = false, closed = false;

	f.fd = tcp_bulk_open(&w, 3);
	cr_assert_eq(pthread_create(&th, NULL, far_main, &f), 0);
	send_all(&w, PROTO_BULK_TCP_RECORD, 16);
	/* The socket is shut after the data; the far end closes: finish (flow 2), closed. */
	while (!closed) {
		cr_assert_eq(recv9(30000), 1, "no tcp.closed");
		if (h.c.msg.type == PROTO_T_PONG) {
			w.pongs_due--;
			continue;
		}
		cr_assert_eq(h.c.frame.id, w.id);
		if (h.c.msg.type == PROTO_T_BULK_CREDIT)
			continue;
		if (h.c.msg.type == PROTO_T_BULK_FINISH) {
			cr_assert_eq(h.c.msg.u.bulk_finish.final_offset, 0);
			finished = true;
			continue;
		}
		cr_assert_eq(h.c.msg.type, PROTO_T_TCP_CLOSED, "%s before tcp.closed",
			proto_type_name(h.c.msg.type));
		closed = true;
	}
	cr_assert(finished, "tcp.closed before the guest's finish");
	cr_assert_eq(w.pongs_due, 0, "a ping between records went unanswered");
	pthread_join(th, NULL);
	cr_assert_eq(f.got, BIG, "the destination got %zu of %u bytes", f.got, BIG);
	cr_assert(f.same, "the destination's bytes differ from what was sent");
	c = stop_and_count();
	cr_assert_lt(c.copied, BIG / 8, "%llu of %u payload bytes copied", c.copied, BIG);
	cr_assert_eq(
		c.copied + c.zero_copy, BIG, "copied %llu + zero-copy %llu", c.copied, c.zero_copy);
}

Test(agent_zerocopy, a_bad_record_after_zero_copy_ones_fails_only_its_stream)
{
	struct proto_msg ping = {.type = PROTO_T_PING, .v = 9};
	struct h2g w;
	int fd = tcp_bulk_open(&w, 5);

	for (int i = 0; i < 8; i++)
		send_record(&w, PROTO_BULK_TCP_RECORD);
	/* An offset gap: the prefix is read alone, checked, and the record takes today's path. */
	send_raw_record(&w, w.tx.next_offset + 1, 1000);
	for (;;) {
		cr_assert_eq(recv9(30000), 1);
		cr_assert_eq(h.c.frame.id, w.id);
		if (h.c.msg.type != PROTO_T_BULK_CREDIT)
			break;
	}
	cr_assert_eq(h.c.msg.type, PROTO_T_BULK_CANCEL, "%s, expected core.bulk.cancel",
		proto_type_name(h.c.msg.type));
	cr_assert_eq(h.c.msg.u.bulk_cancel.reason, PROTO_BULK_CANCEL_PROTOCOL);
	expect9(w.id, PROTO_T_TCP_FAILED);
	cr_assert(str_has(h.c.msg.u.tcp_failed.error, "does not match expected"));
	send_ctl(6, &ping);
	expect9(6, PROTO_T_PONG);
	close(fd);
	stop_and_count();
}

/* ---- fs Write ----------------------------------------------------------- */

static void send_req(uint32_t id, struct proto_fs_request rq)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST, .v = 9};

	m.u.fs_request = rq;
	send_ctl(id, &m);
}

/* fs.response on <id>, which must be ok. */
static void expect_ok(uint32_t id)
{
	expect9(id, PROTO_T_FS_RESPONSE);
	cr_assert(h.c.msg.u.fs_response.ok, "id %u failed: %.*s", id,
		(int)h.c.msg.u.fs_response.error.v.len, h.c.msg.u.fs_response.error.v.ptr);
}

Test(agent_zerocopy, fs_bulk_write_64_mib_in_3_mib_records_lands_intact_without_copies)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_OPEN_FILE};
	char path[PATH_MAX];
	struct h2g w = {.id = 21, .kind = PROTO_BULK_KIND_FS};
	struct copies c;
	struct stat st;
	uint8_t *got;
	int fd;

	snprintf(path, sizeof(path), "%s/out", root);
	rq.path = (struct proto_str){path, strlen(path)};
	rq.options.write = rq.options.create = true;
	send_req(20, rq);
	expect_ok(20);
	cr_assert_eq(h.c.msg.u.fs_response.data.kind, PROTO_FS_DATA_HANDLE);
	rq = (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE,
		.handle = h.c.msg.u.fs_response.data.handle,
		.len = {true, BIG},
		.bulk = {true, {PROTO_BULK_FORMAT_RAW_V1, PROTO_BULK_MAX_RECORD, 0}}};
	send_req(w.id, rq);
	expect9(w.id, PROTO_T_BULK_ACCEPTED);
	cr_assert_eq(proto_bulk_tx_init(&w.tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			     h.c.msg.u.bulk_accepted.max_record_payload,
			     h.c.msg.u.bulk_accepted.host_to_guest_credit_limit),
		0);
	send_all(&w, PROTO_BULK_MAX_RECORD, 0);
	for (;;) {
		cr_assert_eq(recv9(30000), 1, "no fs.response");
		cr_assert_eq(h.c.frame.id, w.id);
		if (h.c.msg.type != PROTO_T_BULK_CREDIT)
			break;
	}
	cr_assert_eq(h.c.msg.type, PROTO_T_FS_RESPONSE, "%s, expected fs.response",
		proto_type_name(h.c.msg.type));
	cr_assert(h.c.msg.u.fs_response.ok, "write failed: %.*s",
		(int)h.c.msg.u.fs_response.error.v.len, h.c.msg.u.fs_response.error.v.ptr);
	c = stop_and_count();
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, BIG);
	got = malloc(BIG);
	cr_assert_not_null(got);
	cr_assert_eq(read(fd, got, BIG), (ssize_t)BIG);
	close(fd);
	cr_assert(memcmp(got, data, BIG) == 0, "the file differs from the bytes written");
	free(got);
	cr_assert_lt(c.copied, BIG / 8, "%llu of %u payload bytes copied", c.copied, BIG);
	cr_assert_eq(
		c.copied + c.zero_copy, BIG, "copied %llu + zero-copy %llu", c.copied, c.zero_copy);
}
