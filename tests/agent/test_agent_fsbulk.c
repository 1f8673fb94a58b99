/*
 * tests/agent/test_agent_fsbulk.c - filesystem reads and writes over raw
 * bulk records (protocol-gen9.md G4, G5.2) against a real sandwire-agent
 * driven by a generation-9 test host: 64 MiB each way within credit, the
 * finish-then-response order, every refusal of an offer, and bad records
 * or control frames that fail only their own operation.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/lease.h"
#include "tests/support/agent_harness.h"

#define MIB (1u << 20)
#define BIG (64u * MIB) /* the size of the large transfers */

static struct ah h;
static char root[64];
static uint64_t grants; /* core.workload.transport.credit frames seen (G6) */

/* A gen-9 host: bootstrap and init.ack in v 9 frames, a fresh directory to work in. */
static void boot9(void)
{
	snprintf(root, sizeof(root), "/tmp/sw-fsbulk-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	grants = 0;
	ah_start(&h, NULL);
	ah_boot_as(&h, 9);
	cr_assert_eq(h.msg.v, 9);
}

static void stop9(void)
{
	ah_stop_ok(&h);
	ah_rm_tree(root);
}

TestSuite(agent_fsbulk, .init = boot9, .fini = stop9, .timeout = 240);

/* ---- host side ------------------------------------------------------------- */

/*
 * The next frame other than an aggregate input grant (id 0xFFFFFFFF, taken
 * here): 1 (CBOR, in h.c.msg), PROTO_E_BULK_RECORD (a raw record in
 * h.c.frame) or 0 on timeout.
 */
static int recv9(int timeout_ms)
{
	for (;;) {
		int rc = agent_client_recv(&h.c, timeout_ms);

		if (rc == 1 && h.c.frame.id == PROTO_WORKLOAD_CREDIT_ID) {
			cr_assert_eq(h.c.msg.type, PROTO_T_WORKLOAD_TRANSPORT_CREDIT);
			grants++;
			continue;
		}
		cr_assert(rc == 1 || rc == 0 || rc == PROTO_E_BULK_RECORD, "bad frame: %s",
			proto_strerror(rc));
		return rc;
	}
}

/* The next frame must be CBOR <t> on <id>; it stays in h.c.frame / h.c.msg. */
static void expect9(uint32_t id, enum proto_type t)
{
	int rc = recv9(30000);

	cr_assert_eq(rc, 1, "waiting for %s on id %u: %s", proto_type_name(t), id,
		rc == 0 ? "timeout" : "a raw record");
	cr_assert_eq(h.c.frame.id, id, "%s on id %u, expected %s on %u",
		proto_type_name(h.c.msg.type), h.c.frame.id, proto_type_name(t), id);
	cr_assert_eq(h.c.msg.type, t, "id %u: got %s, expected %s", id,
		proto_type_name(h.c.msg.type), proto_type_name(t));
}

static bool str_has(struct proto_str s, const char *needle)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%.*s", (int)s.len, s.ptr);
	return strstr(buf, needle) != NULL;
}

/* The terminal fs.response of <id>: ok, or ok:false with <error> in its text. */
static void expect_response(uint32_t id, const char *error)
{
	const struct proto_fs_response *r = &h.c.msg.u.fs_response;

	expect9(id, PROTO_T_FS_RESPONSE);
	cr_assert(h.c.frame.flags & PROTO_FLAG_TERMINAL);
	if (!error) {
		cr_assert(r->ok, "id %u failed: %.*s", id, r->error.set ? (int)r->error.v.len : 0,
			r->error.set ? r->error.v.ptr : "");
		return;
	}
	cr_assert_not(r->ok, "id %u succeeded, expected \"%s\"", id, error);
	cr_assert(r->error.set && str_has(r->error.v, error), "id %u: \"%.*s\", expected \"%s\"",
		id, (int)r->error.v.len, r->error.v.ptr, error);
}

/* core.bulk.cancel (fs, reason 5, not terminal), then ok:false with <error>. */
static void expect_cancel_then_failed(uint32_t id, const char *error)
{
	expect9(id, PROTO_T_BULK_CANCEL);
	cr_assert_eq(h.c.frame.flags, 0);
	cr_assert_eq(h.c.msg.u.bulk_cancel.kind, PROTO_BULK_KIND_FS);
	cr_assert_eq(h.c.msg.u.bulk_cancel.reason, PROTO_BULK_CANCEL_PROTOCOL);
	cr_assert(str_has(h.c.msg.u.bulk_cancel.message, error));
	expect_response(id, error);
}

static void ping_ok(uint32_t id)
{
	struct proto_msg m = {.type = PROTO_T_PING, .v = 9};

	ah_send(&h, id, &m);
	expect9(id, PROTO_T_PONG);
}

/* Send fs.request <rq> in a frame of generation <v>. */
static void send_req(uint32_t id, uint8_t v, struct proto_fs_request rq)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST, .v = v};

	m.u.fs_request = rq;
	ah_send(&h, id, &m);
}

static const char *P(const char *rel)
{
	static char bufs[4][PATH_MAX];
	static unsigned i;
	char *b = bufs[i++ % 4];

	snprintf(b, PATH_MAX, "%s/%s", root, rel);
	return b;
}

/* OpenFile <path> with read (<rd>) and/or write+create (<wr>) on <id>: the handle. */
static uint64_t open_file(uint32_t id, const char *path, bool rd, bool wr)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_OPEN_FILE, .path = {path, strlen(path)}};

	rq.options.read = rd;
	rq.options.write = rq.options.create = wr;
	send_req(id, 9, rq);
	expect_response(id, NULL);
	cr_assert_eq(h.c.msg.u.fs_response.data.kind, PROTO_FS_DATA_HANDLE);
	return h.c.msg.u.fs_response.data.handle;
}

static struct proto_fs_request bulk_read(uint64_t hd, uint32_t rec, uint64_t g2h)
{
	return (struct proto_fs_request){.kind = PROTO_FS_OP_READ,
		.handle = hd,
		.bulk = {true, {PROTO_BULK_FORMAT_RAW_V1, rec, g2h}}};
}

static struct proto_fs_request bulk_write(uint64_t hd, uint64_t off, uint64_t len, uint32_t rec)
{
	return (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE,
		.handle = hd,
		.offset = off,
		.len = {true, len},
		.bulk = {true, {PROTO_BULK_FORMAT_RAW_V1, rec, 0}}};
}

/* core.bulk.accepted for an fs op that needs <flows>, checked as a host must (G4.2). */
static struct proto_bulk_accepted expect_accepted(
	uint32_t id, const struct proto_fs_request *rq, uint8_t flows)
{
	struct proto_bulk_accepted acc;

	expect9(id, PROTO_T_BULK_ACCEPTED);
	cr_assert_eq(h.c.frame.flags, 0);
	acc = h.c.msg.u.bulk_accepted;
	cr_assert_eq(proto_bulk_accepted_check(&acc, &rq->bulk.v, PROTO_BULK_KIND_FS, flows), 0);
	cr_assert_eq(acc.max_record_payload, rq->bulk.v.max_record_payload);
	return acc;
}

/* A raw record frame into <buf>: the prefix (any kind/flow/offset), then <n> bytes of <p>. */
static size_t raw_record(uint8_t *buf, uint32_t id, uint8_t kind, uint8_t flow, uint64_t offset,
	const void *p, size_t n)
{
	proto_frame_header_write(buf, (uint32_t)(5 + 12 + n), id, PROTO_FLAG_BULK);
	buf[9] = kind;
	buf[10] = flow;
	buf[11] = buf[12] = 0;
	for (int i = 0; i < 8; i++)
		buf[13 + i] = (uint8_t)(offset >> (56 - 8 * i));
	memcpy(buf + 21, p, n);
	return 21 + n;
}

static void send_record(
	uint32_t id, uint8_t kind, uint8_t flow, uint64_t offset, const void *p, size_t n)
{
	static uint8_t buf[PROTO_BULK_PREFIX_SIZE + PROTO_BULK_MAX_RECORD];

	cr_assert_leq(n, PROTO_BULK_MAX_RECORD);
	ah_send_raw(&h, buf, raw_record(buf, id, kind, flow, offset, p, n));
}

static void send_finish(uint32_t id, uint8_t flow, uint64_t final)
{
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};

	m.u.bulk_finish = (struct proto_bulk_finish){PROTO_BULK_KIND_FS, flow, final};
	ah_send(&h, id, &m);
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
	uint8_t *p = malloc(n);
	uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	return p;
}

static void make_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static uint8_t *slurp(const char *path, size_t *n)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(p);
	cr_assert_eq(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

/* A bulk read being received: our g2h flow state and the bytes so far. */
struct rd {
	uint32_t id;
	struct proto_bulk_rx g2h;
	uint8_t *got;
	size_t len, cap;
	uint64_t records;
	bool finished;
};

/*
 * Take one frame of read <r>: a record is checked against our flow (its
 * offset continues the last one, it ends within our credit) and kept, and
 * with <grant> our credit moves by the window rule as it is consumed.
 * Returns 1 for a record, 2 for a CBOR frame (left in h.c), 0 on timeout.
 */
static int rd_take(struct rd *r, int timeout_ms, bool grant)
{
	struct proto_bulk_credit back;
	struct proto_bulk_rec rec;
	const uint8_t *p;
	int rc = recv9(timeout_ms);

	if (rc != PROTO_E_BULK_RECORD)
		return rc == 1 ? 2 : 0;
	cr_assert_eq(h.c.frame.flags, PROTO_FLAG_BULK);
	cr_assert_eq(proto_bulk_frame_parse(&h.c.frame, &rec, &p), 0);
	cr_assert_eq(rec.id, r->id);
	cr_assert_not(r->finished, "a record after the finish");
	cr_assert_eq(proto_bulk_rx_record(&r->g2h, &rec), 0,
		"record at %llu, %u bytes: expected offset %llu, credit %llu",
		(unsigned long long)rec.offset, rec.len, (unsigned long long)r->g2h.next_expected,
		(unsigned long long)r->g2h.credit_limit);
	cr_assert_leq(r->len + rec.len, r->cap);
	memcpy(r->got + r->len, p, rec.len);
	r->len += rec.len;
	r->records++;
	if (grant && proto_bulk_rx_consume(&r->g2h, r->len, &back) == 1) {
		struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

		m.u.bulk_credit = back;
		ah_send(&h, r->id, &m);
	}
	return 1;
}

/* rd_take() without granting, where only records may come: false on timeout. */
static bool rd_pump(struct rd *r, int timeout_ms)
{
	int rc = rd_take(r, timeout_ms, false);

	cr_assert_neq(rc, 2, "%s on id %u while records were expected",
		proto_type_name(h.c.msg.type), h.c.frame.id);
	return rc == 1;
}

/* Receive read <r> to its end, granting as we go: records, core.bulk.finish, fs.response ok. */
static void rd_finish(struct rd *r)
{
	int rc;

	while ((rc = rd_take(r, 30000, true)) == 1)
		;
	cr_assert_eq(rc, 2, "read %u stalled at %zu bytes", r->id, r->len);
	cr_assert_eq(h.c.frame.id, r->id);
	cr_assert_eq(h.c.msg.type, PROTO_T_BULK_FINISH, "%s before the finish",
		proto_type_name(h.c.msg.type));
	cr_assert_eq(proto_bulk_rx_finish(&r->g2h, &h.c.msg.u.bulk_finish), 0,
		"finish at %llu after %zu bytes",
		(unsigned long long)h.c.msg.u.bulk_finish.final_offset, r->len);
	r->finished = true;
	expect_response(r->id, NULL);
}

/* A bulk write being sent: the agent's h2g credit and how many credits it gave. */
struct wr {
	uint32_t id;
	struct proto_bulk_tx h2g;
	uint64_t credits;
};

/* Take the agent's frames for write <w> until none comes for <timeout_ms>. */
static bool wr_pump(struct wr *w, int timeout_ms)
{
	int rc = recv9(timeout_ms);

	if (rc == 0)
		return false;
	cr_assert_eq(rc, 1, "a raw record from the agent during a write");
	cr_assert_eq(
		h.c.frame.id, w->id, "%s on id %u", proto_type_name(h.c.msg.type), h.c.frame.id);
	cr_assert_eq(h.c.msg.type, PROTO_T_BULK_CREDIT, "%s during the write",
		proto_type_name(h.c.msg.type));
	/* Valid (G4.4): consumed never beyond what we sent, the window within 32 MiB. */
	cr_assert_geq(proto_bulk_tx_credit(&w->h2g, &h.c.msg.u.bulk_credit), 0);
	cr_assert_leq(w->h2g.consumed, w->h2g.next_offset);
	w->credits++;
	return true;
}

/* Send <n> bytes of <p> as records within the agent's credit, then core.bulk.finish. */
static void wr_all(struct wr *w, const uint8_t *p, size_t n)
{
	struct proto_bulk_finish fin;
	size_t sent = 0;

	while (sent < n) {
		uint32_t room = proto_bulk_tx_room(&w->h2g);
		size_t k = n - sent < room ? n - sent : room;
		uint64_t off;

		if (room == 0) {
			cr_assert(wr_pump(w, 30000), "no credit after %zu of %zu bytes", sent, n);
			continue;
		}
		cr_assert_eq(proto_bulk_tx_admit(&w->h2g, k, &off), 0);
		cr_assert_eq(off, sent);
		send_record(w->id, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, off, p + sent, k);
		sent += k;
		while (wr_pump(w, 0))
			;
	}
	cr_assert_eq(proto_bulk_tx_finish(&w->h2g, &fin), 0);
	send_finish(w->id, PROTO_BULK_H2G, fin.final_offset);
}

/* After the finish: any late credits, then fs.response with <error> (NULL: ok). */
static void wr_result(struct wr *w, const char *error)
{
	for (;;) {
		int rc = recv9(30000);

		cr_assert_eq(rc, 1, "write %u: no response", w->id);
		if (h.c.frame.id == w->id && h.c.msg.type == PROTO_T_BULK_CREDIT) {
			cr_assert_geq(proto_bulk_tx_credit(&w->h2g, &h.c.msg.u.bulk_credit), 0);
			w->credits++;
			continue;
		}
		break;
	}
	cr_assert_eq(h.c.frame.id, w->id);
	cr_assert_eq(h.c.msg.type, PROTO_T_FS_RESPONSE, "%s instead of the response",
		proto_type_name(h.c.msg.type));
	cr_assert(h.c.frame.flags & PROTO_FLAG_TERMINAL);
	if (!error)
		cr_assert(h.c.msg.u.fs_response.ok, "write failed: %.*s",
			(int)h.c.msg.u.fs_response.error.v.len, h.c.msg.u.fs_response.error.v.ptr);
	else
		cr_assert(
			!h.c.msg.u.fs_response.ok && str_has(h.c.msg.u.fs_response.error.v, error),
			"write: expected \"%s\"", error);
}

/* ---- large transfers -------------------------------------------------------- */

Test(agent_fsbulk, read_64_mib_in_1_mib_credit_steps_then_finish_and_response)
{
	uint8_t *want = pattern(BIG, 1);
	struct rd r = {.id = 11, .cap = BIG};
	struct proto_fs_request rq;
	struct proto_bulk_accepted acc;
	uint64_t hd;

	make_file(P("big"), want, BIG);
	hd = open_file(10, P("big"), true, false);
	rq = bulk_read(hd, MIB, MIB);
	send_req(r.id, 9, rq);
	acc = expect_accepted(r.id, &rq, PROTO_BULK_FLOWS_FS_READ);
	cr_assert_eq(acc.guest_to_host_credit_limit, MIB);
	cr_assert_eq(acc.host_to_guest_credit_limit, 0);
	cr_assert_eq(proto_bulk_rx_init(&r.g2h, PROTO_BULK_KIND_FS, PROTO_BULK_G2H,
			     acc.max_record_payload, MIB, MIB),
		0);
	r.got = malloc(BIG);
	cr_assert_not_null(r.got);
	/* Without more credit the agent stops at exactly the initial 1 MiB. */
	while (rd_pump(&r, 500))
		;
	cr_assert_eq(r.len, MIB, "sent %zu bytes on 1 MiB of credit", r.len);
	{
		struct proto_bulk_credit back;
		struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

		cr_assert_eq(proto_bulk_rx_consume(&r.g2h, r.len, &back), 1);
		m.u.bulk_credit = back;
		ah_send(&h, r.id, &m);
	}
	rd_finish(&r);
	cr_assert_eq(r.len, BIG);
	cr_assert(memcmp(r.got, want, BIG) == 0, "the bytes read differ from the file");
	cr_assert_gt(r.records, BIG / MIB, "records are at most the 64 KiB of a read");
	ping_ok(12);
	free(r.got);
	free(want);
}

Test(agent_fsbulk, write_64_mib_in_3_mib_records_within_credit_then_response)
{
	uint8_t *data = pattern(BIG, 2), *got;
	struct wr w = {.id = 21};
	struct proto_fs_request rq;
	struct proto_bulk_accepted acc;
	uint64_t hd = open_file(20, P("out"), false, true);
	size_t n;

	rq = bulk_write(hd, 0, BIG, PROTO_BULK_MAX_RECORD);
	send_req(w.id, 9, rq);
	acc = expect_accepted(w.id, &rq, PROTO_BULK_FLOWS_FS_WRITE);
	cr_assert_eq(acc.host_to_guest_credit_limit, PROTO_BULK_DEFAULT_WINDOW);
	cr_assert_eq(acc.guest_to_host_credit_limit, 0);
	cr_assert_eq(proto_bulk_tx_init(&w.h2g, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	wr_all(&w, data, BIG);
	wr_result(&w, NULL);
	cr_assert_gt(w.credits, 0, "64 MiB on 8 MiB of credit needs the agent's grants");
	got = slurp(P("out"), &n);
	cr_assert_eq(n, BIG);
	cr_assert(memcmp(got, data, BIG) == 0, "the file differs from the bytes written");
	ping_ok(22);
	free(got);
	free(data);
}

Test(agent_fsbulk, write_lands_at_its_offset_plus_the_record_offset)
{
	struct wr w = {.id = 31};
	struct proto_fs_request rq;
	struct proto_bulk_accepted acc;
	uint64_t hd;
	uint8_t *got;
	size_t n;

	make_file(P("f"), "0123456789abcdefghijklmnopqrstuvwxyz", 36);
	hd = open_file(30, P("f"), false, true);
	rq = bulk_write(hd, 10, 10, PROTO_BULK_MIN_RECORD);
	send_req(w.id, 9, rq);
	acc = expect_accepted(w.id, &rq, PROTO_BULK_FLOWS_FS_WRITE);
	cr_assert_eq(proto_bulk_tx_init(&w.h2g, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			     acc.max_record_payload, acc.host_to_guest_credit_limit),
		0);
	send_record(w.id, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, "HELLO", 5);
	send_record(w.id, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 5, "WORLD", 5);
	send_finish(w.id, PROTO_BULK_H2G, 10);
	wr_result(&w, NULL);
	got = slurp(P("f"), &n);
	cr_assert_eq(n, 36);
	cr_assert(memcmp(got, "0123456789HELLOWORLDklmnopqrstuvwxyz", 36) == 0, "%.36s", got);
	free(got);
}

/* ---- refusals ---------------------------------------------------------------- */

Test(agent_fsbulk, offers_that_cannot_be_accepted_get_ok_false_and_no_acceptance)
{
	uint64_t hd;
	struct proto_fs_request rq;
	const char *f = P("small");

	make_file(f, "hello", 5);
	hd = open_file(40, f, true, true);
	/* A non-streaming op. */
	rq = (struct proto_fs_request){
		.kind = PROTO_FS_OP_STAT, .path = {f, strlen(f)}, .bulk = {true, {1, MIB, MIB}}};
	send_req(41, 9, rq);
	expect_response(41, "raw bulk is only valid for streaming reads and writes");
	/* An offer in a v 7 frame. */
	send_req(42, 7, bulk_read(hd, MIB, MIB));
	expect_response(42, "raw bulk offer requires protocol generation 8");
	/* A read that grants no g2h credit, a write that grants some. */
	send_req(43, 9, bulk_read(hd, MIB, 0));
	expect_response(43, "filesystem read bulk offer must grant guest-to-host credit");
	rq = bulk_write(hd, 0, 5, MIB);
	rq.bulk.v.guest_to_host_credit_limit = MIB;
	send_req(44, 9, rq);
	expect_response(44, "filesystem write bulk offer must not grant guest-to-host credit");
	/* A record limit below 16 KiB, an unknown format, more than 32 MiB of credit. */
	send_req(45, 9, bulk_read(hd, 1000, MIB));
	expect_response(45, "invalid filesystem bulk offer");
	rq = bulk_read(hd, MIB, MIB);
	rq.bulk.v.format = 2;
	send_req(46, 9, rq);
	expect_response(46, "invalid filesystem bulk offer");
	send_req(47, 9, bulk_read(hd, MIB, 64u * MIB));
	expect_response(47, "invalid filesystem bulk offer");
	ping_ok(48);
}

Test(agent_fsbulk, cbor_data_after_acceptance_fails_the_write)
{
	uint64_t hd = open_file(50, P("w"), false, true);
	struct proto_fs_request rq = bulk_write(hd, 0, 4, MIB);

	send_req(51, 9, rq);
	expect_accepted(51, &rq, PROTO_BULK_FLOWS_FS_WRITE);
	ah_send_data(&h, 51, PROTO_T_FS_DATA, "cbor", 4);
	expect_response(51, "CBOR filesystem data is invalid after raw bulk acceptance");
	ping_ok(52);
}

/* ---- bad records and control frames ----------------------------------------- */

/* Open a bulk write of <len> bytes on a fresh file as <id>; the acceptance is checked. */
static void open_write(uint32_t id, const char *name, uint64_t len)
{
	uint64_t hd = open_file(id + 1000, P(name), false, true);
	struct proto_fs_request rq = bulk_write(hd, 0, len, 65536);

	send_req(id, 9, rq);
	expect_accepted(id, &rq, PROTO_BULK_FLOWS_FS_WRITE);
}

Test(agent_fsbulk, bad_records_and_control_frames_fail_only_their_operation)
{
	static uint8_t big[65536 + 1];
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

	open_write(61, "a", 100);
	open_write(62, "b", 100);
	open_write(63, "c", 100);
	open_write(64, "d", 100);
	open_write(65, "e", 100);
	open_write(66, "f", 100);
	open_write(67, "g", 4);
	/* An offset gap. */
	send_record(61, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 5, "hello", 5);
	expect_cancel_then_failed(61, "bulk record offset 5 does not match expected 0");
	/* The guest's flow sent by the host; the TCP kind; above the 64 KiB record limit. */
	send_record(62, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 0, "x", 1);
	expect_cancel_then_failed(62, "bulk kind or flow does not match the correlation");
	send_record(63, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, "x", 1);
	expect_cancel_then_failed(63, "bulk kind or flow does not match the correlation");
	send_record(64, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, big, sizeof(big));
	expect_cancel_then_failed(64, "invalid filesystem bulk record");
	/* Credit for a flow the host receives nothing on; a finish at the wrong offset. */
	m.u.bulk_credit = (struct proto_bulk_credit){PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 0, MIB};
	ah_send(&h, 65, &m);
	expect_cancel_then_failed(65, "invalid filesystem core.bulk.credit");
	send_record(66, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, "abc", 3);
	send_finish(66, PROTO_BULK_H2G, 5);
	expect_cancel_then_failed(66, "invalid filesystem core.bulk.finish");
	/* A record that would pass the declared len (4). */
	send_record(67, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, "hello", 5);
	expect_cancel_then_failed(67, "write length mismatch: expected 4, received at least 5");
	/* Late frames of a failed operation: a record is answered, credit dropped quietly. */
	send_record(61, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, "late", 4);
	expect9(61, PROTO_T_ERROR);
	cr_assert_eq(h.c.msg.u.error.kind, PROTO_ERROR_MALFORMED_MESSAGE);
	ah_send(&h, 65, &m);
	ping_ok(68);
}

Test(agent_fsbulk, write_shorter_than_its_len_fails_at_the_finish)
{
	struct wr w = {.id = 71};

	open_write(w.id, "short", 100);
	cr_assert_eq(proto_bulk_tx_init(&w.h2g, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 65536,
			     PROTO_BULK_DEFAULT_WINDOW),
		0);
	wr_all(&w, (const uint8_t *)"only fifty bytes .................................", 50);
	wr_result(&w, "write length mismatch: expected 100, wrote 50");
	ping_ok(72);
}

Test(agent_fsbulk, host_cancel_ends_the_operation_with_ok_false)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL, .v = 9};
	struct rd r = {.id = 82, .cap = 2 * MIB};
	uint8_t *data = pattern(2 * MIB, 3);
	struct proto_fs_request rq;
	uint64_t hd;

	/* A write. */
	open_write(81, "cw", 100);
	send_record(81, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, "abc", 3);
	m.u.bulk_cancel = (struct proto_bulk_cancel){
		PROTO_BULK_KIND_FS, PROTO_BULK_CANCEL_CALLER, {"changed my mind", 15}};
	ah_send(&h, 81, &m);
	expect_response(81, "cancelled by the host: changed my mind");
	/* A read stopped on its credit. */
	make_file(P("cr"), data, 2 * MIB);
	hd = open_file(80, P("cr"), true, false);
	rq = bulk_read(hd, 65536, 65536);
	send_req(r.id, 9, rq);
	expect_accepted(r.id, &rq, PROTO_BULK_FLOWS_FS_READ);
	cr_assert_eq(
		proto_bulk_rx_init(&r.g2h, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 65536, 65536, 65536),
		0);
	r.got = malloc(r.cap);
	while (rd_pump(&r, 300))
		;
	cr_assert_eq(r.len, 65536);
	ah_send(&h, r.id, &m);
	expect_response(r.id, "cancelled by the host");
	ping_ok(83);
	free(r.got);
	free(data);
}

/*
 * A write queued behind a read of the same handle (the read holds the file
 * position while it waits for credit) writes nothing, so it grants no
 * credit: records past its initial 8 MiB fail it, and the read goes on.
 */
Test(agent_fsbulk, credit_overrun_fails_its_write_while_a_read_goes_on)
{
	uint8_t *data = pattern(4 * MIB, 4), *rec = pattern(PROTO_BULK_MAX_RECORD, 5);
	struct rd r = {.id = 91, .cap = 4 * MIB};
	struct proto_fs_request rq;
	struct proto_bulk_credit back;
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};
	uint64_t hd;

	make_file(P("rw"), data, 4 * MIB);
	hd = open_file(90, P("rw"), true, true);
	rq = bulk_read(hd, 65536, 65536);
	send_req(r.id, 9, rq);
	expect_accepted(r.id, &rq, PROTO_BULK_FLOWS_FS_READ);
	cr_assert_eq(
		proto_bulk_rx_init(&r.g2h, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 65536, 65536, 65536),
		0);
	r.got = malloc(r.cap);
	while (rd_pump(&r, 300))
		;
	cr_assert_eq(r.len, 65536);
	/* The write on the same handle waits; its credit is the initial 8 MiB. */
	rq = bulk_write(hd, 0, 16u * MIB, PROTO_BULK_MAX_RECORD);
	send_req(92, 9, rq);
	expect_accepted(92, &rq, PROTO_BULK_FLOWS_FS_WRITE);
	send_record(92, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, rec, PROTO_BULK_MAX_RECORD);
	send_record(92, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, PROTO_BULK_MAX_RECORD, rec,
		PROTO_BULK_MAX_RECORD);
	send_record(92, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 2 * PROTO_BULK_MAX_RECORD, rec,
		PROTO_BULK_MAX_RECORD);
	expect_cancel_then_failed(92, "bulk record end 9437184 exceeds credit limit 8388608");
	/* The read still completes, every byte right. */
	cr_assert_eq(proto_bulk_rx_consume(&r.g2h, r.len, &back), 1);
	m.u.bulk_credit = back;
	ah_send(&h, r.id, &m);
	rd_finish(&r);
	cr_assert_eq(r.len, 4 * MIB);
	cr_assert(memcmp(r.got, data, 4 * MIB) == 0);
	ping_ok(93);
	free(r.got);
	free(rec);
	free(data);
}

Test(agent_fsbulk, client_disconnect_ends_bulk_operations_silently)
{
	struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED, .v = 9};
	const uint32_t step = PROTO_RELAY_ID_STEP, wid = 3 * step + 2, rid = 3 * step + 3;
	uint8_t *data = pattern(MIB, 6);
	struct proto_fs_request rq;
	uint64_t hw, hr;

	make_file(P("src"), data, MIB);
	hw = open_file(3 * step + 1, P("dst"), false, true);
	hr = open_file(3 * step + 4, P("src"), true, false);
	rq = bulk_write(hw, 0, MIB, 65536);
	send_req(wid, 9, rq);
	expect_accepted(wid, &rq, PROTO_BULK_FLOWS_FS_WRITE);
	send_record(wid, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 0, data, 65536);
	rq = bulk_read(hr, 65536, 65536);
	send_req(rid, 9, rq);
	expect_accepted(rid, &rq, PROTO_BULK_FLOWS_FS_READ);
	{
		struct rd r = {.id = rid, .cap = MIB};

		cr_assert_eq(proto_bulk_rx_init(&r.g2h, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 65536,
				     65536, 65536),
			0);
		r.got = malloc(r.cap);
		while (rd_pump(&r, 300))
			;
		free(r.got);
	}
	m.u.relay_client_disconnected.id_start = 3 * step + 1;
	m.u.relay_client_disconnected.id_end_exclusive = 4 * step;
	ah_send(&h, 0, &m);
	/* No frame for either: the next frame is the answer to the late record. */
	send_record(wid, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 65536, data, 16);
	expect9(wid, PROTO_T_ERROR);
	ping_ok(1);
	free(data);
}
