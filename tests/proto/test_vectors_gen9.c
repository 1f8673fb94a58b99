/*
 * tests/proto/test_vectors_gen9.c - generations 8 and 9 (protocol-gen9.md):
 * every vector of vectors-gen9.txt both ways, the raw bulk record prefix
 * and the MSBL lease record with every error and every truncation, the
 * bulk flow state (G4), round trips of every new type and field, and the
 * guarantee that a message without gen-9 fields keeps its gen-7 bytes.
 *
 * For a CBOR vector: the message built from a C literal (the vector's
 * value) encodes to exactly the vector's frame; the frame decodes to the
 * expected values and to "v" = 9; the decoded message encodes back to the
 * same bytes (so every decoded field is checked).  Raw records and lease
 * records are written and parsed by their own codecs the same way.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/bulk.h"
#include "proto/lease.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "tests/proto/proto_test.h"

/* ---- the vector file ---------------------------------------------------- */

#define V9_MAX 40
#define V9_BYTES 512

enum v9_kind { V9_ENV, V9_RAW, V9_MSBL };

struct v9 {
	char name[8];  /* "G05" */
	char type[48]; /* wire type, "raw" or "MSBL" */
	enum v9_kind kind;
	uint32_t id;
	uint8_t flags;
	uint8_t p[V9_BYTES];
	size_t p_len;
	uint8_t frame[V9_BYTES];
	size_t frame_len;
	bool captured; /* byte-identical to a frame of agentd 0.7.2 */
};

struct v9_set {
	struct v9 v[V9_MAX];
	size_t n;
};

/* Decode every whitespace-separated token of <s> made only of hex digits (labels skipped). */
static size_t v9_hex_tokens(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0, len, i;

	while (*s && *s != '\n') {
		while (*s == ' ')
			s++;
		for (len = 0; s[len] && s[len] != ' ' && s[len] != '\n'; len++)
			if (!isxdigit((unsigned char)s[len]) || isupper((unsigned char)s[len]))
				break;
		if (len > 0 && (s[len] == ' ' || s[len] == '\n' || !s[len])) {
			cr_assert(len % 2 == 0, "odd hex token in %s", s);
			for (i = 0; i < len; i += 2) {
				cr_assert(n < cap, "vector too long");
				out[n++] = (uint8_t)strtoul((char[]){s[i], s[i + 1], 0}, NULL, 16);
			}
		}
		while (*s && *s != ' ' && *s != '\n')
			s++;
	}
	return n;
}

/* Load vectors-gen9.txt; aborts the test on a format surprise. */
static struct v9_set *v9_load(void)
{
	static char line[8192];
	struct v9_set *vs = calloc(1, sizeof(*vs));
	struct v9 *cur = NULL;
	unsigned id, flags;
	const char *at;
	FILE *fp;

	cr_assert_not_null(vs);
	fp = fopen(SW_VECTORS_DIR "/vectors-gen9.txt", "r");
	cr_assert_not_null(fp, "cannot open %s", SW_VECTORS_DIR "/vectors-gen9.txt");
	while (fgets(line, sizeof(line), fp)) {
		if (line[0] == 'G' && isdigit((unsigned char)line[1])) {
			cr_assert(vs->n < V9_MAX);
			cur = &vs->v[vs->n++];
			cr_assert_eq(sscanf(line, "%7s %47s", cur->name, cur->type), 2);
			cur->kind = strncmp(cur->type, "core.", 5) == 0 ? V9_ENV
				    : strcmp(cur->type, "MSBL") == 0	? V9_MSBL
									: V9_RAW;
			at = strstr(line, "]  id ");
			cr_assert_not_null(at, "bad header: %s", line);
			cr_assert_eq(sscanf(at, "]  id %u flags 0x%x", &id, &flags), 2);
			cur->id = id;
			cur->flags = (uint8_t)flags;
		} else if (cur && strncmp(line, "  p (", 5) == 0) {
			cur->p_len = v9_hex_tokens(strstr(line, "): ") + 3, cur->p, V9_BYTES);
			cr_assert_eq(cur->p_len, strtoul(line + 5, NULL, 10), "%s: p", cur->name);
		} else if (cur && strncmp(line, "  frame", 7) == 0) {
			cur->frame_len =
				v9_hex_tokens(strstr(line, ": ") + 2, cur->frame, V9_BYTES);
			if (line[7] == ' ')
				cr_assert_eq(cur->frame_len, strtoul(line + 9, NULL, 10),
					"%s: frame length", cur->name);
		} else if (cur && strstr(line, "captured from agentd 0.7.2: MATCH")) {
			cur->captured = true;
		}
	}
	fclose(fp);
	return vs;
}

static const struct v9 *v9_find(const struct v9_set *vs, const char *name)
{
	size_t i;

	for (i = 0; i < vs->n; i++)
		if (strcmp(vs->v[i].name, name) == 0)
			return &vs->v[i];
	cr_assert_fail("vector %s not found", name);
	return NULL;
}

/* ---- fixtures -------------------------------------------------------------- */

static struct v9_set *vs;
static uint8_t arena_mem[64 * 1024];
static struct proto_arena arena;
static struct proto_msg dec;

static void setup(void)
{
	vs = v9_load();
	proto_arena_init(&arena, arena_mem, sizeof(arena_mem));
}

static void teardown(void)
{
	free(vs);
}

TestSuite(gen9, .init = setup, .fini = teardown);

#define MIB (1024ull * 1024)
static const struct proto_id16 inc_0_15 = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};

/* A chunk with <cap> data bytes, reset (payload at CHUNK_HEADROOM). */
static struct chunk *chunk_new_test(uint32_t cap)
{
	struct chunk *c = calloc(1, sizeof(*c) + cap);

	cr_assert_not_null(c);
	c->cap = cap;
	chunk_reset(c);
	return c;
}

/*
 * CBOR vector <name> against message <m> both ways (see the file comment);
 * leaves the decoded message in <dec>.
 */
static void check_env(const char *name, const struct proto_msg *m)
{
	const struct v9 *v = v9_find(vs, name);
	static uint8_t buf[4096];
	struct proto_errinfo ei = {0};
	struct proto_frame f;
	struct proto_env e;
	long n;
	int rc;

	cr_assert_eq(v->kind, V9_ENV);
	n = proto_frame_encode(buf, sizeof(buf), v->id, m);
	assert_bytes(buf, n, v->frame, v->frame_len, name);

	f = tparse(v->frame, v->frame_len);
	cr_assert_eq(f.id, v->id);
	cr_assert_eq(f.flags, v->flags);
	cr_assert_eq(f.flags, proto_type_flags(m->type), "%s: flags of the type", name);
	cr_assert_eq(proto_env_decode(f.body, f.body_len, NULL, &e, NULL), 0);
	cr_assert_eq(e.p_len, v->p_len, "%s: p length", name);
	cr_assert_arr_eq(e.p, v->p, v->p_len, "%s: p bytes", name);

	memset(&dec, 0xa5, sizeof(dec)); /* decode must set every field it reports */
	rc = proto_frame_decode(&f, &dec, &arena, &ei);
	cr_assert_eq(rc, 0, "%s: decode: %s (field %s, offset %zu)", name, proto_strerror(rc),
		ei.field ? ei.field : "-", ei.offset);
	cr_assert_eq(dec.type, m->type);
	cr_assert_str_eq(proto_type_name(dec.type), v->type);
	cr_assert_eq(dec.v, 9);

	n = proto_frame_encode(buf, sizeof(buf), v->id, &dec);
	assert_bytes(buf, n, v->frame, v->frame_len, name);
}

/* Raw record vector <name>: the prefix written and parsed, in a buffer and in a chunk. */
static void check_raw(const char *name, const struct proto_bulk_rec *want, const char *payload)
{
	const struct v9 *v = v9_find(vs, name);
	struct proto_bulk_rec r;
	struct proto_frame f;
	struct proto_msg m;
	const uint8_t *p;
	uint8_t buf[PROTO_BULK_PREFIX_SIZE];
	unsigned char *at;
	struct chunk *c;

	cr_assert_eq(v->kind, V9_RAW);
	cr_assert_eq(v->frame_len, PROTO_BULK_PREFIX_SIZE + want->len, "%s", name);
	cr_assert_eq(v->id, want->id);
	cr_assert_eq(v->flags, PROTO_FLAG_BULK);

	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), want), PROTO_BULK_PREFIX_SIZE);
	cr_assert_arr_eq(buf, v->frame, PROTO_BULK_PREFIX_SIZE, "%s: prefix", name);
	cr_assert_arr_eq(v->frame + PROTO_BULK_PREFIX_SIZE, payload, want->len);

	memset(&r, 0xa5, sizeof(r));
	cr_assert_eq(proto_bulk_prefix_parse(v->frame, PROTO_BULK_PREFIX_SIZE, &r),
		PROTO_BULK_PREFIX_SIZE);
	cr_assert(r.id == want->id && r.kind == want->kind && r.flow == want->flow &&
			  r.offset == want->offset && r.len == want->len,
		"%s: parsed fields", name);

	f = tparse(v->frame, v->frame_len);
	memset(&r, 0, sizeof(r));
	cr_assert_eq(proto_bulk_frame_parse(&f, &r, &p), 0);
	cr_assert_eq(r.offset, want->offset);
	cr_assert_eq(p, v->frame + PROTO_BULK_PREFIX_SIZE, "payload in place");
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), PROTO_E_BULK_RECORD);
	cr_assert_eq(m.type, PROTO_T_UNKNOWN);

	/* sent from the chunk the payload was received into */
	c = chunk_new_test(256);
	memcpy(chunk_ptr(c), payload, want->len);
	c->len = want->len;
	at = chunk_ptr(c);
	cr_assert_eq(
		proto_bulk_frame_prepend(c, want->id, want->kind, want->flow, want->offset), 0);
	cr_assert_eq(c->len, v->frame_len);
	cr_assert_arr_eq(chunk_ptr(c), v->frame, v->frame_len, "%s: chunk", name);
	cr_assert_eq(chunk_ptr(c) + PROTO_BULK_PREFIX_SIZE, at, "payload not moved");
	free(c);
}

/* ---- the vectors ------------------------------------------------------------ */

Test(gen9, all_30_vectors_are_in_the_file_21_captured)
{
	size_t i, env = 0, raw = 0, msbl = 0, captured = 0;

	cr_assert_eq(vs->n, 30);
	for (i = 0; i < vs->n; i++) {
		env += vs->v[i].kind == V9_ENV;
		raw += vs->v[i].kind == V9_RAW;
		msbl += vs->v[i].kind == V9_MSBL;
		captured += vs->v[i].captured;
		cr_assert_gt(vs->v[i].frame_len, 0, "%s", vs->v[i].name);
	}
	cr_assert_eq(env, 24);
	cr_assert_eq(raw, 4);
	cr_assert_eq(msbl, 2);
	cr_assert_eq(captured, 21);
}

Test(gen9, g01_ready_of_agentd_0_7_2)
{
	struct proto_msg m = {.type = PROTO_T_READY,
		.u.ready = {.boot_time_ns = 3505302514130ull,
			.init_time_ns = 994120,
			.ready_time_ns = 3505304280599ull,
			.agent_version = S("0.7.2"),
			.relay_lease = {true, {.max_format = 1}},
			.workload_transport_barrier_version = {true, 2}}};
	const struct proto_ready *r = &dec.u.ready;

	check_env("G01", &m); /* v = 0: gen-9 fields make it 9 */
	cr_assert_eq(r->boot_time_ns, 3505302514130ull);
	cr_assert_eq(r->init_time_ns, 994120);
	cr_assert_str_is(r->agent_version, "0.7.2");
	cr_assert_not(r->bulk_transport.set);
	cr_assert(r->relay_lease.set);
	cr_assert_eq(r->relay_lease.v.max_format, PROTO_LEASE_FORMAT_V1);
	cr_assert_not(r->local_transport.set);
	cr_assert(r->workload_transport_barrier_version.set);
	cr_assert_eq(r->workload_transport_barrier_version.v, PROTO_WORKLOAD_BARRIER_VERSION);
}

Test(gen9, g02_tcp_connect_with_an_offer_travels_in_v9)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT,
		.u.tcp_connect = {.host = S("127.0.0.1"),
			.port = 8080,
			.bulk = {true, {1, PROTO_BULK_TCP_RECORD, PROTO_BULK_DEFAULT_WINDOW}}}};
	const struct proto_tcp_connect *c = &dec.u.tcp_connect;

	check_env("G02", &m); /* v = 0: the offer makes it 9 (F34) */
	cr_assert_str_is(c->host, "127.0.0.1");
	cr_assert_eq(c->port, 8080);
	cr_assert(c->bulk.set);
	cr_assert_eq(c->bulk.v.format, PROTO_BULK_FORMAT_RAW_V1);
	cr_assert_eq(c->bulk.v.max_record_payload, 262144);
	cr_assert_eq(c->bulk.v.guest_to_host_credit_limit, 8 * MIB);
	cr_assert_eq(proto_bulk_offer_check(&c->bulk.v), 0);
	cr_assert_eq(proto_msg_min_gen(&dec), PROTO_GEN_BULK);
}

Test(gen9, g03_g12_tcp_connected_and_closed_in_v9)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECTED, .v = 9};

	check_env("G03", &m);
	m.type = PROTO_T_TCP_CLOSED;
	check_env("G12", &m);
	cr_assert_eq(proto_msg_min_gen(&dec), 4);
}

Test(gen9, g04_g16_g18_bulk_accepted)
{
	struct proto_msg m = {.type = PROTO_T_BULK_ACCEPTED,
		.u.bulk_accepted = {
			PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP, 1, 262144, 8 * MIB, 8 * MIB}};
	const struct proto_bulk_accepted *a = &dec.u.bulk_accepted;

	check_env("G04", &m);
	cr_assert_eq(a->kind, PROTO_BULK_KIND_TCP);
	cr_assert_eq(a->flows, 3);
	cr_assert_eq(a->host_to_guest_credit_limit, 8 * MIB);

	m.u.bulk_accepted = (struct proto_bulk_accepted){PROTO_BULK_KIND_FS,
		PROTO_BULK_FLOWS_FS_WRITE, 1, PROTO_BULK_MAX_RECORD, 8 * MIB, 0};
	check_env("G16", &m);
	cr_assert_eq(a->kind, PROTO_BULK_KIND_FS);
	cr_assert_eq(a->flows, PROTO_BULK_MASK_H2G);
	cr_assert_eq(a->guest_to_host_credit_limit, 0);

	m.u.bulk_accepted = (struct proto_bulk_accepted){
		PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_READ, 1, 1 * MIB, 0, 2 * MIB};
	check_env("G18", &m);
	cr_assert_eq(a->flows, PROTO_BULK_MASK_G2H);
	cr_assert_eq(a->max_record_payload, 1 * MIB);
	cr_assert_eq(a->guest_to_host_credit_limit, 2 * MIB);
}

Test(gen9, g05_g06_g07_g19_raw_records)
{
	static const char four[] = {0, 1, 2, 3};

	check_raw("G05", &(struct proto_bulk_rec){5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, 10},
		"hello bulk");
	check_raw("G06", &(struct proto_bulk_rec){5, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 0, 10},
		"hello bulk");
	check_raw("G07",
		&(struct proto_bulk_rec){5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 262144, 4}, four);
	check_raw("G19",
		&(struct proto_bulk_rec){7, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 1 * MIB, 3}, "abc");
}

Test(gen9, g08_g09_bulk_credit)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT,
		.u.bulk_credit = {PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 4 * MIB, 12 * MIB}};

	check_env("G08", &m);
	cr_assert_eq(dec.u.bulk_credit.flow, PROTO_BULK_H2G);
	cr_assert_eq(dec.u.bulk_credit.consumed_offset, 4 * MIB);
	cr_assert_eq(dec.u.bulk_credit.credit_limit, 12 * MIB);
	m.u.bulk_credit =
		(struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 1 * MIB, 33 * MIB};
	check_env("G09", &m);
	cr_assert_eq(dec.u.bulk_credit.flow, PROTO_BULK_G2H);
	cr_assert_eq(dec.u.bulk_credit.credit_limit, 34603008);
}

Test(gen9, g10_g11_bulk_finish)
{
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH,
		.u.bulk_finish = {PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 10}};

	check_env("G10", &m);
	cr_assert_eq(dec.u.bulk_finish.final_offset, 10);
	m.u.bulk_finish.flow = PROTO_BULK_G2H;
	check_env("G11", &m);
	cr_assert_eq(dec.u.bulk_finish.flow, PROTO_BULK_G2H);
}

Test(gen9, g13_g14_bulk_cancel)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL,
		.u.bulk_cancel = {PROTO_BULK_KIND_TCP, PROTO_BULK_CANCEL_PROTOCOL,
			S("unknown TCP session: 5")}};

	check_env("G13", &m);
	cr_assert_eq(dec.u.bulk_cancel.reason, PROTO_BULK_CANCEL_PROTOCOL);
	cr_assert_str_is(dec.u.bulk_cancel.message, "unknown TCP session: 5");
	m.u.bulk_cancel = (struct proto_bulk_cancel){
		PROTO_BULK_KIND_TCP, PROTO_BULK_CANCEL_CALLER, S("caller cancelled")};
	check_env("G14", &m);
	cr_assert_eq(dec.u.bulk_cancel.reason, PROTO_BULK_CANCEL_CALLER);
	cr_assert_eq(proto_type_flags(PROTO_T_BULK_CANCEL), 0, "cancel is not TERMINAL");
}

Test(gen9, g15_g17_fs_requests_with_offers)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {.kind = PROTO_FS_OP_WRITE,
			.handle = 1,
			.offset = 0,
			.len = {true, 5 * MIB},
			.bulk = {true, {1, PROTO_BULK_MAX_RECORD, 0}}}};
	const struct proto_fs_request *q = &dec.u.fs_request;

	check_env("G15", &m);
	cr_assert_eq(q->kind, PROTO_FS_OP_WRITE);
	cr_assert_eq(q->len.v, 5 * MIB);
	cr_assert(q->bulk.set);
	cr_assert_eq(q->bulk.v.max_record_payload, PROTO_BULK_MAX_RECORD);
	cr_assert_eq(q->bulk.v.guest_to_host_credit_limit, 0);

	m.u.fs_request = (struct proto_fs_request){
		.kind = PROTO_FS_OP_READ, .handle = 1, .bulk = {true, {1, 1 * MIB, 2 * MIB}}};
	check_env("G17", &m);
	cr_assert_eq(q->kind, PROTO_FS_OP_READ);
	cr_assert_not(q->len.set);
	cr_assert_eq(q->bulk.v.guest_to_host_credit_limit, 2 * MIB);
}

Test(gen9, g20_workload_transport_credit_on_id_ffffffff)
{
	struct proto_msg m = {.type = PROTO_T_WORKLOAD_TRANSPORT_CREDIT,
		.u.workload_transport_credit = {8388739, 257, 32 * MIB, 256}};
	const struct v9 *v = v9_find(vs, "G20");

	cr_assert_eq(v->id, PROTO_WORKLOAD_CREDIT_ID);
	check_env("G20", &m);
	/* the initial window after one 131-byte control frame */
	cr_assert_eq(
		dec.u.workload_transport_credit.control_bytes, PROTO_WORKLOAD_CONTROL_BYTES + 131);
	cr_assert_eq(
		dec.u.workload_transport_credit.control_frames, PROTO_WORKLOAD_CONTROL_FRAMES + 1);
	cr_assert_eq(dec.u.workload_transport_credit.bulk_bytes, PROTO_WORKLOAD_DATA_BYTES);
	cr_assert_eq(dec.u.workload_transport_credit.bulk_frames, PROTO_WORKLOAD_DATA_FRAMES);
}

Test(gen9, g21_to_g24_workload_freeze_and_thaw)
{
	struct proto_msg m = {
		.type = PROTO_T_WORKLOAD_FREEZE, .u.workload_freeze = {.attempt_id = S("a1")}};

	check_env("G21", &m);
	cr_assert_eq(dec.u.workload_freeze.n_external_mount_tags, 0);
	cr_assert_str_is(dec.u.workload_freeze.attempt_id, "a1");
	cr_assert_eq(dec.u.workload_freeze.host_input.bulk_frames, 0);

	m.type = PROTO_T_WORKLOAD_FROZEN;
	m.u.workload_frozen = (struct proto_workload_frozen){.attempt_id = S("a1"),
		.input_credit = {8 * MIB, 256, 32 * MIB, 256},
		.external_mounts_synced = true};
	check_env("G22", &m);
	cr_assert_eq(dec.u.workload_frozen.guest_bulk_bytes_target, 0);
	cr_assert_eq(dec.u.workload_frozen.input_credit.bulk_bytes, 32 * MIB);
	cr_assert(dec.u.workload_frozen.external_mounts_synced);

	m.type = PROTO_T_WORKLOAD_THAW;
	m.u.workload_thaw = (struct proto_workload_thaw){S("a1"), PROTO_THAW_CONTINUE};
	check_env("G23", &m);
	cr_assert_eq(dec.u.workload_thaw.mode, PROTO_THAW_CONTINUE);

	m.type = PROTO_T_WORKLOAD_THAWED;
	m.u.workload_thawed.attempt_id = S("a1");
	check_env("G24", &m);
	cr_assert_str_is(dec.u.workload_thawed.attempt_id, "a1");
}

Test(gen9, g25_g26_root_disk)
{
	struct proto_msg m = {
		.type = PROTO_T_ROOT_DISK_PREPARE, .u.root_disk_grow.size_bytes = 1ull << 30};

	check_env("G25", &m);
	cr_assert_eq(dec.u.root_disk_grow.size_bytes, 1ull << 30);
	m.type = PROTO_T_ROOT_DISK_STATE;
	m.u.root_disk_state = (struct proto_root_disk_state){1ull << 30, 1ull << 30};
	check_env("G26", &m);
	cr_assert_eq(dec.u.root_disk_state.device_bytes, 1ull << 30);
}

Test(gen9, g27_core_error_capability_unavailable)
{
	struct proto_msg m = {.type = PROTO_T_ERROR,
		.u.error = {.kind = PROTO_ERROR_CAPABILITY_UNAVAILABLE,
			.message = S("root has no pinned block filesystem"),
			.offending_type = {true, S("core.root_disk.prepare")}}};

	check_env("G27", &m); /* v = 0: the gen-9 kind makes it 9 */
	cr_assert_eq(dec.u.error.kind, PROTO_ERROR_CAPABILITY_UNAVAILABLE);
	cr_assert_str_eq(proto_error_kind_name(dec.u.error.kind), "capability_unavailable");
	cr_assert_not(dec.u.error.workload_failure.set);
}

Test(gen9, g28_relay_client_disconnected_with_incarnation)
{
	struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED,
		.u.relay_client_disconnected = {.id_start = 1,
			.id_end_exclusive = 33554431,
			.incarnation = {true, inc_0_15}}};

	check_env("G28", &m);
	cr_assert(dec.u.relay_client_disconnected.incarnation.set);
	cr_assert_arr_eq(dec.u.relay_client_disconnected.incarnation.v.b, inc_0_15.b, 16);
}

/* MSBL vector <name>: written and parsed. */
static void check_lease(const char *name, enum proto_lease_event ev)
{
	const struct v9 *v = v9_find(vs, name);
	struct proto_lease l = {ev, 1, 33554431, inc_0_15}, d;
	uint8_t buf[PROTO_LEASE_SIZE];
	struct proto_frame f;
	struct proto_msg m;

	cr_assert_eq(v->kind, V9_MSBL);
	cr_assert_eq(v->frame_len, PROTO_LEASE_SIZE);
	cr_assert_eq(proto_lease_write(buf, sizeof(buf), &l), PROTO_LEASE_SIZE);
	cr_assert_arr_eq(buf, v->frame, PROTO_LEASE_SIZE, "%s", name);
	memset(&d, 0xa5, sizeof(d));
	cr_assert_eq(proto_lease_parse(v->frame, v->frame_len, &d), PROTO_LEASE_SIZE);
	cr_assert(d.event == ev && d.id_start == 1 && d.id_end_exclusive == 33554431);
	cr_assert_arr_eq(d.incarnation.b, inc_0_15.b, 16);
	cr_assert(proto_lease_range_canonical(d.id_start, d.id_end_exclusive));
	f = tparse(v->frame, v->frame_len);
	cr_assert(proto_frame_is_lease(&f));
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), PROTO_E_LEASE_RECORD);
}

Test(gen9, g29_g30_msbl_lease_records)
{
	check_lease("G29", PROTO_LEASE_CONNECTED);
	check_lease("G30", PROTO_LEASE_DISCONNECT_ACK);
}

/* ---- the type table ------------------------------------------------------- */

/* The 44 wire names of gen-9.json, in its order, with their generation. */
static const struct {
	const char *name;
	uint8_t gen;
} gen9_json[] = {
	{"core.ready", 1},
	{"core.init.resolved", 1},
	{"core.init.ack", 1},
	{"core.shutdown", 1},
	{"core.relay.client.disconnected", 1},
	{"core.clock.sync", 1},
	{"core.ping", 6},
	{"core.pong", 6},
	{"core.touch", 6},
	{"core.touched", 6},
	{"core.workload.freeze", 9},
	{"core.workload.frozen", 9},
	{"core.workload.thaw", 9},
	{"core.workload.thawed", 9},
	{"core.workload.transport.credit", 9},
	{"core.root_disk.prepare", 9},
	{"core.root_disk.grow", 9},
	{"core.root_disk.state", 9},
	{"core.error", 5},
	{"core.bulk.accepted", 8},
	{"core.bulk.credit", 8},
	{"core.bulk.finish", 8},
	{"core.bulk.cancel", 8},
	{"core.exec.request", 1},
	{"core.exec.started", 1},
	{"core.exec.stdin", 1},
	{"core.exec.stdin.error", 1},
	{"core.exec.stdout", 1},
	{"core.exec.stderr", 1},
	{"core.exec.exited", 1},
	{"core.exec.failed", 1},
	{"core.exec.resize", 1},
	{"core.exec.signal", 1},
	{"core.fs.request", 2},
	{"core.fs.response", 2},
	{"core.fs.data", 2},
	{"core.tcp.connect", 4},
	{"core.tcp.connected", 4},
	{"core.tcp.data", 4},
	{"core.tcp.eof", 4},
	{"core.tcp.close", 4},
	{"core.tcp.closed", 4},
	{"core.tcp.failed", 4},
	{"core.bootstrap", 7},
};

Test(gen9, type_table_holds_the_catalogue_of_gen9_json)
{
	size_t i, n = sizeof(gen9_json) / sizeof(gen9_json[0]);
	bool seen[PROTO_T__COUNT] = {false};
	enum proto_type t;

	cr_assert_eq(n, PROTO_T__COUNT);
	for (i = 0; i < n; i++) {
		t = proto_type_lookup(gen9_json[i].name, strlen(gen9_json[i].name));
		cr_assert(proto_type_valid(t), "%s", gen9_json[i].name);
		cr_assert_not(seen[t]);
		seen[t] = true;
		cr_assert_eq(proto_type_table[t].gen, gen9_json[i].gen, "%s", gen9_json[i].name);
		cr_assert_leq(proto_type_table[t].gen, PROTO_VERSION_MAX);
		if (proto_type_table[t].gen > PROTO_VERSION)
			cr_assert_eq(
				proto_type_flags(t), 0, "%s: no flags (G3)", gen9_json[i].name);
	}
	cr_assert_eq(proto_type_table[PROTO_T_BULK_ACCEPTED].dir, PROTO_DIR_G2H);
	cr_assert_eq(proto_type_table[PROTO_T_BULK_CREDIT].dir, PROTO_DIR_BOTH);
	cr_assert_eq(proto_type_table[PROTO_T_BULK_CANCEL].dir, PROTO_DIR_BOTH);
	cr_assert_eq(proto_type_table[PROTO_T_WORKLOAD_FREEZE].dir, PROTO_DIR_H2G);
	cr_assert_eq(proto_type_table[PROTO_T_WORKLOAD_TRANSPORT_CREDIT].dir, PROTO_DIR_G2H);
	cr_assert_eq(proto_type_table[PROTO_T_ROOT_DISK_GROW].dir, PROTO_DIR_H2G);
	cr_assert_eq(proto_type_table[PROTO_T_ROOT_DISK_STATE].dir, PROTO_DIR_G2H);
	cr_assert(proto_type_table[PROTO_T_WORKLOAD_THAW].attrs & PROTO_TA_CONTROL);
	cr_assert_not(proto_type_table[PROTO_T_WORKLOAD_TRANSPORT_CREDIT].attrs & PROTO_TA_CONTROL);
	/* G6: the data class of the aggregate input credit */
	for (t = 0; t < PROTO_T__COUNT; t++)
		cr_assert_eq(!!proto_type_is_input_data(t),
			t == PROTO_T_EXEC_STDIN || t == PROTO_T_TCP_DATA || t == PROTO_T_TCP_EOF ||
				t == PROTO_T_FS_DATA,
			"%s", proto_type_name(t));
}

/* ---- round trips and generation-7 identity --------------------------------- */

/* Encode <m>, decode it into <out>, and check that <out> encodes identically. */
static void round_trip(const struct proto_msg *m, struct proto_msg *out)
{
	static uint8_t a[8192], b[8192];
	struct proto_errinfo ei = {0};
	struct proto_frame f;
	long n, n2;
	int rc;

	n = proto_frame_encode(a, sizeof(a), 77, m);
	cr_assert_gt(n, 0, "%s: encode: %s", proto_type_name(m->type), proto_strerror((int)n));
	f = tparse(a, (size_t)n);
	cr_assert_eq(f.flags, proto_type_flags(m->type));
	rc = proto_frame_decode(&f, out, &arena, &ei);
	cr_assert_eq(rc, 0, "%s: decode: %s (field %s)", proto_type_name(m->type),
		proto_strerror(rc), ei.field ? ei.field : "-");
	cr_assert_eq(out->type, m->type);
	cr_assert_eq(out->v, m->v ? m->v : proto_msg_min_gen(m) > 7 ? 9 : 7);
	n2 = proto_frame_encode(b, sizeof(b), 77, out);
	cr_assert_eq(n2, n);
	cr_assert_arr_eq(a, b, (size_t)n);
}

Test(gen9, round_trip_of_every_new_type_and_field)
{
	static const struct proto_str tags[] = {LIT("home"), LIT("data")};
	struct proto_msg m[] = {
		{.type = PROTO_T_BULK_ACCEPTED,
			.u.bulk_accepted = {PROTO_BULK_KIND_FS, 2, 1, 16384, 0, UINT64_MAX}},
		{.type = PROTO_T_BULK_CREDIT,
			.u.bulk_credit = {PROTO_BULK_KIND_FS, PROTO_BULK_G2H, UINT64_MAX, 0}},
		{.type = PROTO_T_BULK_FINISH,
			.u.bulk_finish = {PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, UINT64_MAX}},
		{.type = PROTO_T_BULK_CANCEL,
			.u.bulk_cancel = {PROTO_BULK_KIND_FS, PROTO_BULK_CANCEL_RESOURCE_LIMIT,
				S("")}},
		{.type = PROTO_T_WORKLOAD_FREEZE,
			.u.workload_freeze = {tags, 2, S("attempt-7"), {1, 2, 3, UINT64_MAX}}},
		{.type = PROTO_T_WORKLOAD_FROZEN,
			.u.workload_frozen = {S("x"), 99, {4, 5, 6, 7}, false}},
		{.type = PROTO_T_WORKLOAD_THAW, .u.workload_thaw = {S("x"), PROTO_THAW_RESTORE}},
		{.type = PROTO_T_WORKLOAD_THAWED, .u.workload_thawed = {S("")}},
		{.type = PROTO_T_WORKLOAD_TRANSPORT_CREDIT,
			.u.workload_transport_credit = {0, 0, 0, 0}},
		{.type = PROTO_T_ROOT_DISK_PREPARE, .u.root_disk_grow = {4096}},
		{.type = PROTO_T_ROOT_DISK_GROW, .u.root_disk_grow = {UINT64_MAX}},
		{.type = PROTO_T_ROOT_DISK_STATE, .u.root_disk_state = {0, UINT64_MAX}},
		{.type = PROTO_T_READY,
			.u.ready = {.boot_time_ns = 1,
				.bulk_transport = {true,
					{S("dual-port-v1"), S("agent-bulk"), inc_0_15}},
				.relay_lease = {true, {255}},
				.local_transport = {true, {1}},
				.workload_transport_barrier_version = {true, 0}}},
		{.type = PROTO_T_ERROR,
			.u.error = {.kind = PROTO_ERROR_INVALID_SESSION,
				.message = S("workload latch conflict"),
				.offending_type = {true, S("core.workload.thaw")},
				.workload_failure = {true,
					{S("a1"), PROTO_WORKLOAD_RECOVERY_REQUIRED}}}},
		{.type = PROTO_T_RELAY_CLIENT_DISCONNECTED,
			.u.relay_client_disconnected = {7, 8, {true, {{[15] = 0xff}}}}},
		{.type = PROTO_T_TCP_CONNECT, .u.tcp_connect = {S("::1"), 1, {true, {0, 0, 0}}}},
		{.type = PROTO_T_FS_REQUEST,
			.u.fs_request = {.kind = PROTO_FS_OP_READ,
				.handle = 9,
				.offset = 4096,
				.len = {true, 1},
				.bulk = {true, {1, PROTO_BULK_MAX_RECORD, PROTO_BULK_MAX_WINDOW}}}},
		{.type = PROTO_T_BULK_CREDIT,
			.v = 8,
			.u.bulk_credit = {PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 1, 2}},
	};
	struct proto_msg out;
	size_t i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		round_trip(&m[i], &out);

	round_trip(&m[4], &out);
	cr_assert_eq(out.u.workload_freeze.n_external_mount_tags, 2);
	cr_assert_str_is(out.u.workload_freeze.external_mount_tags[1], "data");
	cr_assert_eq(out.u.workload_freeze.host_input.bulk_frames, UINT64_MAX);
	round_trip(&m[12], &out);
	cr_assert_str_is(out.u.ready.bulk_transport.v.profile, "dual-port-v1");
	cr_assert_arr_eq(out.u.ready.bulk_transport.v.connection_id.b, inc_0_15.b, 16);
	cr_assert_eq(out.u.ready.relay_lease.v.max_format, 255);
	cr_assert(out.u.ready.local_transport.set);
	cr_assert(out.u.ready.workload_transport_barrier_version.set);
	cr_assert_eq(out.u.ready.workload_transport_barrier_version.v, 0);
	round_trip(&m[13], &out);
	cr_assert_str_is(out.u.error.workload_failure.v.attempt_id, "a1");
	cr_assert_eq(out.u.error.workload_failure.v.disposition, PROTO_WORKLOAD_RECOVERY_REQUIRED);
	round_trip(&m[14], &out);
	cr_assert_eq(out.u.relay_client_disconnected.incarnation.v.b[15], 0xff);
	round_trip(&m[16], &out);
	cr_assert(out.u.fs_request.bulk.set);
	cr_assert_eq(out.u.fs_request.offset, 4096);
	round_trip(&m[17], &out);
	cr_assert_eq(out.v, 8);
}

/* The gen-7 vector <name> encodes from <m> (no gen-9 field set) to the very same bytes. */
static void check_gen7_bytes(const struct vec_set *v7, const char *name, const struct proto_msg *m)
{
	const struct vec *v = vec_find(v7, name);
	uint8_t buf[1024];

	cr_assert_eq(proto_msg_min_gen(m), proto_type_table[m->type].gen);
	assert_bytes(
		buf, proto_frame_encode(buf, sizeof(buf), v->id, m), v->frame, v->frame_len, name);
}

/* Decode gen-7 vector <name> into <dec>. */
static void decode_gen7(const struct vec_set *v7, const char *name)
{
	const struct vec *v = vec_find(v7, name);
	struct proto_frame f = tparse(v->frame, v->frame_len);

	memset(&dec, 0xa5, sizeof(dec));
	cr_assert_eq(proto_frame_decode(&f, &dec, &arena, NULL), 0, "%s", name);
	cr_assert_eq(dec.v, 7);
}

Test(gen9, a_gen7_peer_sees_the_gen7_bytes)
{
	struct vec_set *v7 = vec_load();
	struct proto_msg m = {.type = PROTO_T_READY,
		.u.ready = {.boot_time_ns = 812345678,
			.init_time_ns = 123456789,
			.ready_time_ns = 1012345678,
			.agent_version = S("0.6.14")}};

	check_gen7_bytes(v7, "V04", &m);
	m = (struct proto_msg){.type = PROTO_T_RELAY_CLIENT_DISCONNECTED,
		.u.relay_client_disconnected = {.id_start = 1, .id_end_exclusive = 33554431}};
	check_gen7_bytes(v7, "V43", &m);
	m = (struct proto_msg){.type = PROTO_T_TCP_CONNECT,
		.u.tcp_connect = {.host = S("127.0.0.1"), .port = 8080}};
	check_gen7_bytes(v7, "V35", &m);
	m = (struct proto_msg){.type = PROTO_T_FS_REQUEST,
		.u.fs_request = {
			.kind = PROTO_FS_OP_WRITE, .handle = 1, .offset = 0, .len = {true, 5}}};
	check_gen7_bytes(v7, "V28", &m);
	m = (struct proto_msg){.type = PROTO_T_ERROR,
		.u.error = {.kind = PROTO_ERROR_INVALID_PAYLOAD,
			.message = S("decode payload for core.exec.resize: cbor decode error: "
				     "Semantic(None, \"missing field `cols`\")"),
			.offending_type = {true, S("core.exec.resize")}}};
	check_gen7_bytes(v7, "V42", &m);
	/* and the gen-7 frames decode with every gen-9 field unset */
	decode_gen7(v7, "V04");
	cr_assert_not(dec.u.ready.relay_lease.set || dec.u.ready.bulk_transport.set ||
		      dec.u.ready.local_transport.set ||
		      dec.u.ready.workload_transport_barrier_version.set);
	decode_gen7(v7, "V35");
	cr_assert_not(dec.u.tcp_connect.bulk.set);
	decode_gen7(v7, "V43");
	cr_assert_not(dec.u.relay_client_disconnected.incarnation.set);
	decode_gen7(v7, "V28");
	cr_assert_not(dec.u.fs_request.bulk.set);
	decode_gen7(v7, "V42");
	cr_assert_not(dec.u.error.workload_failure.set);
	free(v7);
}

Test(gen9, default_v_is_7_unless_the_message_needs_8_or_9)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECTED};
	uint8_t buf[256];

	cr_assert_gt(proto_frame_encode(buf, sizeof(buf), 1, &m), 0);
	cr_assert_eq(buf[PROTO_HDR_SIZE + 3], 7); /* a3 61 76 <v> */
	m.type = PROTO_T_BULK_FINISH;
	m.u.bulk_finish = (struct proto_bulk_finish){PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0};
	cr_assert_eq(proto_msg_min_gen(&m), 8);
	cr_assert_gt(proto_frame_encode(buf, sizeof(buf), 1, &m), 0);
	cr_assert_eq(buf[PROTO_HDR_SIZE + 3], 9);
	m.v = 8; /* an explicit v is written as given */
	cr_assert_gt(proto_frame_encode(buf, sizeof(buf), 1, &m), 0);
	cr_assert_eq(buf[PROTO_HDR_SIZE + 3], 8);
	m = (struct proto_msg){.type = PROTO_T_ERROR, .u.error = {.message = S("x")}};
	cr_assert_eq(proto_msg_min_gen(&m), 5);
	m.u.error.workload_failure.set = true;
	cr_assert_eq(proto_msg_min_gen(&m), 9);
	m = (struct proto_msg){.type = PROTO_T_FS_REQUEST, .u.fs_request.bulk.set = true};
	cr_assert_eq(proto_msg_min_gen(&m), 8);
	m = (struct proto_msg){.type = PROTO_T_ROOT_DISK_STATE};
	cr_assert_eq(proto_msg_min_gen(&m), 9);
}

/* ---- decoding leniency and payload errors ---------------------------------- */

/* Decode payload <p> of type <t> in a v9 envelope with the type's flags. */
static int decode_p(const char *t, const uint8_t *p, size_t n, struct proto_errinfo *ei)
{
	static uint8_t body[1024], fr[1100];
	struct proto_frame f;
	enum proto_type ty = proto_type_lookup(t, strlen(t));
	size_t bn = tbody(body, sizeof(body), 9, t, p, n);

	f = tparse(fr, tframe(fr, sizeof(fr), 3, proto_type_flags(ty), body, bn));
	memset(ei, 0, sizeof(*ei));
	return proto_frame_decode(&f, &dec, &arena, ei);
}

#define P(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

Test(gen9, identities_decode_from_arrays_and_byte_strings)
{
	struct proto_errinfo ei;
	uint8_t p[64];
	struct cbw w;
	int i;

	/* {"id_start": 1, "id_end_exclusive": 2, "incarnation": h'00..0f'} */
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 3);
	cbw_key(&w, "id_start");
	cbw_uint(&w, 1);
	cbw_key(&w, "id_end_exclusive");
	cbw_uint(&w, 2);
	cbw_key(&w, "incarnation");
	cbw_bytes(&w, inc_0_15.b, 16);
	cr_assert_eq(decode_p("core.relay.client.disconnected", p, wr_done(&w), &ei), 0);
	cr_assert_arr_eq(dec.u.relay_client_disconnected.incarnation.v.b, inc_0_15.b, 16);

	/* null: absent */
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 3);
	cbw_key(&w, "id_start");
	cbw_uint(&w, 1);
	cbw_key(&w, "id_end_exclusive");
	cbw_uint(&w, 2);
	cbw_key(&w, "incarnation");
	cbw_null(&w);
	cr_assert_eq(decode_p("core.relay.client.disconnected", p, wr_done(&w), &ei), 0);
	cr_assert_not(dec.u.relay_client_disconnected.incarnation.set);

	/* 15 or 17 elements, an element above 255, a 15-byte string */
	for (i = 15; i <= 17; i += 2) {
		int k;

		cbw_init(&w, p, sizeof(p));
		cbw_map(&w, 3);
		cbw_key(&w, "id_start");
		cbw_uint(&w, 1);
		cbw_key(&w, "id_end_exclusive");
		cbw_uint(&w, 2);
		cbw_key(&w, "incarnation");
		cbw_array(&w, (size_t)i);
		for (k = 0; k < i; k++)
			cbw_uint(&w, 1);
		cr_assert_eq(decode_p("core.relay.client.disconnected", p, wr_done(&w), &ei),
			PROTO_E_BAD_VALUE, "%d elements", i);
		cr_assert_str_eq(ei.field, "incarnation");
	}
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 3);
	cbw_key(&w, "id_start");
	cbw_uint(&w, 1);
	cbw_key(&w, "id_end_exclusive");
	cbw_uint(&w, 2);
	cbw_key(&w, "incarnation");
	cbw_array(&w, 16);
	for (i = 0; i < 16; i++)
		cbw_uint(&w, i == 3 ? 256 : 0);
	cr_assert_eq(
		decode_p("core.relay.client.disconnected", p, wr_done(&w), &ei), PROTO_E_RANGE);
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 3);
	cbw_key(&w, "id_start");
	cbw_uint(&w, 1);
	cbw_key(&w, "id_end_exclusive");
	cbw_uint(&w, 2);
	cbw_key(&w, "incarnation");
	cbw_bytes(&w, inc_0_15.b, 15);
	cr_assert_eq(
		decode_p("core.relay.client.disconnected", p, wr_done(&w), &ei), PROTO_E_BAD_VALUE);
}

Test(gen9, bulk_payload_values_are_checked)
{
	struct proto_errinfo ei;

	/* {"kind": 2, "flow": 3, "final_offset": 0}: flow 3 */
	cr_assert_eq(decode_p("core.bulk.finish",
			     P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x02, 0x64, 'f', 'l', 'o', 'w', 0x03,
				     0x6c, 'f', 'i', 'n', 'a', 'l', '_', 'o', 'f', 'f', 's', 'e',
				     't', 0x00),
			     &ei),
		PROTO_E_BAD_VALUE);
	cr_assert_str_eq(ei.field, "flow");
	cr_assert_str_eq(ei.type, "core.bulk.finish");
	/* kind 0 */
	cr_assert_eq(decode_p("core.bulk.finish",
			     P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x00, 0x64, 'f', 'l', 'o', 'w', 0x01,
				     0x6c, 'f', 'i', 'n', 'a', 'l', '_', 'o', 'f', 'f', 's', 'e',
				     't', 0x00),
			     &ei),
		PROTO_E_BAD_VALUE);
	cr_assert_str_eq(ei.field, "kind");
	/* kind as a text: integers only (G3.1) */
	cr_assert_eq(decode_p("core.bulk.finish",
			     P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x63, 't', 'c', 'p', 0x64, 'f', 'l',
				     'o', 'w', 0x01, 0x6c, 'f', 'i', 'n', 'a', 'l', '_', 'o', 'f',
				     'f', 's', 'e', 't', 0x00),
			     &ei),
		PROTO_E_WRONG_TYPE);
	/* final_offset missing */
	cr_assert_eq(
		decode_p("core.bulk.finish",
			P(0xa2, 0x64, 'k', 'i', 'n', 'd', 0x01, 0x64, 'f', 'l', 'o', 'w', 0x01),
			&ei),
		PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "final_offset");
	/* cancel reason 0 and 6 */
	cr_assert_eq(decode_p("core.bulk.cancel",
			     P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x02, 0x66, 'r', 'e', 'a', 's', 'o',
				     'n', 0x06, 0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x60),
			     &ei),
		PROTO_E_BAD_VALUE);
	cr_assert_eq(decode_p("core.bulk.cancel",
			     P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x02, 0x66, 'r', 'e', 'a', 's', 'o',
				     'n', 0x00, 0x67, 'm', 'e', 's', 's', 'a', 'g', 'e', 0x60),
			     &ei),
		PROTO_E_BAD_VALUE);
	/* tcp.connect with "bulk": null is no offer; "bulk": {} misses its fields */
	cr_assert_eq(decode_p("core.tcp.connect",
			     P(0xa3, 0x64, 'h', 'o', 's', 't', 0x61, 'h', 0x64, 'p', 'o', 'r', 't',
				     0x01, 0x64, 'b', 'u', 'l', 'k', 0xf6),
			     &ei),
		0);
	cr_assert_not(dec.u.tcp_connect.bulk.set);
	cr_assert_eq(decode_p("core.tcp.connect",
			     P(0xa3, 0x64, 'h', 'o', 's', 't', 0x61, 'h', 0x64, 'p', 'o', 'r', 't',
				     0x01, 0x64, 'b', 'u', 'l', 'k', 0xa0),
			     &ei),
		PROTO_E_MISSING_FIELD);
	/* fs.request: "bulk" of the wrong type */
	cr_assert_eq(decode_p("core.fs.request",
			     P(0xa2, 0x62, 'o', 'p', 0xa1, 0x64, 'R', 'e', 'a', 'd', 0xa2, 0x66,
				     'h', 'a', 'n', 'd', 'l', 'e', 0x01, 0x66, 'o', 'f', 'f', 's',
				     'e', 't', 0x00, 0x64, 'b', 'u', 'l', 'k', 0x01),
			     &ei),
		PROTO_E_WRONG_TYPE);
	/* an offer that decodes is not yet a valid offer: the agent checks it */
	{
		struct proto_bulk_offer o = {2, PROTO_BULK_TCP_RECORD, 1};

		cr_assert_eq(proto_bulk_offer_check(&o), PROTO_E_BULK_FORMAT);
	}
	/* bulk messages encode only known kinds, flows and reasons */
	{
		struct proto_msg m = {.type = PROTO_T_BULK_CREDIT,
			.u.bulk_credit = {PROTO_BULK_KIND_TCP, 3, 0, 0}};
		uint8_t buf[128];

		cr_assert_eq(proto_frame_encode(buf, sizeof(buf), 1, &m), PROTO_E_BAD_VALUE);
		m.type = PROTO_T_BULK_CANCEL;
		m.u.bulk_cancel = (struct proto_bulk_cancel){PROTO_BULK_KIND_TCP, 6, S("")};
		cr_assert_eq(proto_frame_encode(buf, sizeof(buf), 1, &m), PROTO_E_BAD_VALUE);
	}
}

Test(gen9, workload_payload_defaults_and_unknown_dispositions)
{
	struct proto_errinfo ei;

	/* freeze without external_mount_tags: [] */
	cr_assert_eq(decode_p("core.workload.freeze",
			     P(0xa2, 0x6a, 'a', 't', 't', 'e', 'm', 'p', 't', '_', 'i', 'd', 0x61,
				     'x', 0x6a, 'h', 'o', 's', 't', '_', 'i', 'n', 'p', 'u', 't',
				     0xa4, 0x6d, 'c', 'o', 'n', 't', 'r', 'o', 'l', '_', 'b', 'y',
				     't', 'e', 's', 0x01, 0x6e, 'c', 'o', 'n', 't', 'r', 'o', 'l',
				     '_', 'f', 'r', 'a', 'm', 'e', 's', 0x02, 0x6a, 'b', 'u', 'l',
				     'k', '_', 'b', 'y', 't', 'e', 's', 0x03, 0x6b, 'b', 'u', 'l',
				     'k', '_', 'f', 'r', 'a', 'm', 'e', 's', 0x04),
			     &ei),
		0);
	cr_assert_eq(dec.u.workload_freeze.n_external_mount_tags, 0);
	cr_assert_null(dec.u.workload_freeze.external_mount_tags);
	cr_assert_eq(dec.u.workload_freeze.host_input.control_frames, 2);
	cr_assert_eq(dec.u.workload_freeze.host_input.bulk_frames, 4);
	/* host_input without bulk_frames */
	cr_assert_eq(decode_p("core.workload.freeze",
			     P(0xa2, 0x6a, 'a', 't', 't', 'e', 'm', 'p', 't', '_', 'i', 'd', 0x61,
				     'x', 0x6a, 'h', 'o', 's', 't', '_', 'i', 'n', 'p', 'u', 't',
				     0xa3, 0x6d, 'c', 'o', 'n', 't', 'r', 'o', 'l', '_', 'b', 'y',
				     't', 'e', 's', 0x01, 0x6e, 'c', 'o', 'n', 't', 'r', 'o', 'l',
				     '_', 'f', 'r', 'a', 'm', 'e', 's', 0x02, 0x6a, 'b', 'u', 'l',
				     'k', '_', 'b', 'y', 't', 'e', 's', 0x03),
			     &ei),
		PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "bulk_frames");
	/* thaw with an unknown mode */
	cr_assert_eq(decode_p("core.workload.thaw",
			     P(0xa2, 0x6a, 'a', 't', 't', 'e', 'm', 'p', 't', '_', 'i', 'd', 0x61,
				     'x', 0x64, 'm', 'o', 'd', 'e', 0x64, 'n', 'o', 'p', 'e'),
			     &ei),
		PROTO_E_BAD_VALUE);
	/* core.error with a disposition from a newer agent: "unknown", not an error */
	cr_assert_eq(
		decode_p("core.error",
			P(0xa3, 0x64, 'k', 'i', 'n', 'd', 0x6f, 'i', 'n', 'v', 'a', 'l', 'i', 'd',
				'_', 's', 'e', 's', 's', 'i', 'o', 'n', 0x67, 'm', 'e', 's', 's',
				'a', 'g', 'e', 0x60, 0x70, 'w', 'o', 'r', 'k', 'l', 'o', 'a', 'd',
				'_', 'f', 'a', 'i', 'l', 'u', 'r', 'e', 0xa2, 0x6a, 'a', 't', 't',
				'e', 'm', 'p', 't', '_', 'i', 'd', 0x61, 'x', 0x6b, 'd', 'i', 's',
				'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 0x63, 'n', 'e', 'w'),
			&ei),
		0);
	cr_assert(dec.u.error.workload_failure.set);
	cr_assert_eq(dec.u.error.workload_failure.v.disposition, PROTO_WORKLOAD_UNKNOWN);
}

Test(gen9, ready_skips_unknown_keys_and_reads_local_transport)
{
	struct proto_errinfo ei;
	uint8_t p[256];
	struct cbw w;

	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 6);
	cbw_key(&w, "boot_time_ns");
	cbw_uint(&w, 1);
	cbw_key(&w, "init_time_ns");
	cbw_uint(&w, 2);
	cbw_key(&w, "ready_time_ns");
	cbw_uint(&w, 3);
	cbw_key(&w, "sandwire_future");
	cbw_array(&w, 1);
	cbw_null(&w);
	cbw_key(&w, "local_transport");
	cbw_map(&w, 2);
	cbw_key(&w, "max_format");
	cbw_uint(&w, 1);
	cbw_key(&w, "arena_bytes"); /* unknown inside too */
	cbw_uint(&w, 4096);
	cbw_key(&w, "workload_transport_barrier_version");
	cbw_null(&w);
	cr_assert_eq(decode_p("core.ready", p, wr_done(&w), &ei), 0);
	cr_assert(dec.u.ready.local_transport.set);
	cr_assert_eq(dec.u.ready.local_transport.v.max_format, 1);
	cr_assert_not(dec.u.ready.workload_transport_barrier_version.set);
	cr_assert_not(dec.u.ready.relay_lease.set);
}

/* ---- the raw record prefix: every error, every cut ------------------------- */

/* A copy of G05's frame (31 bytes) to break. */
static size_t g05(uint8_t *buf)
{
	const struct v9 *v = v9_find(vs, "G05");

	memcpy(buf, v->frame, v->frame_len);
	return v->frame_len;
}

static void put_len(uint8_t *buf, uint32_t len)
{
	proto_frame_header_write(buf, len, proto_be32(buf + 4), buf[8]);
}

Test(gen9, record_prefix_truncated_at_every_offset)
{
	struct proto_bulk_rec r;
	uint8_t buf[64];
	size_t n = g05(buf), cut;

	for (cut = 0; cut < PROTO_BULK_PREFIX_SIZE; cut++)
		cr_assert_eq(
			proto_bulk_prefix_parse(buf, cut, &r), PROTO_E_TRUNCATED, "cut %zu", cut);
	for (cut = PROTO_BULK_PREFIX_SIZE; cut <= n; cut++)
		cr_assert_eq(proto_bulk_prefix_parse(buf, cut, &r), PROTO_BULK_PREFIX_SIZE);
	cr_assert_eq(r.len, 10);
}

Test(gen9, record_prefix_errors_in_the_order_of_g1_4)
{
	static const uint8_t bad_flags[] = {0x00, 0x01, 0x09, 0x0a, 0x0c, 0x0f, 0x18, 0x88};
	struct proto_bulk_rec r;
	uint8_t buf[64];
	uint32_t len;
	size_t i;

	/* frame limits first, whatever the flags */
	g05(buf);
	put_len(buf, PROTO_MAX_FRAME_LEN + 1);
	cr_assert_eq(proto_bulk_prefix_parse(buf, 4, &r), PROTO_E_OVERSIZE);
	put_len(buf, 4);
	cr_assert_eq(proto_bulk_prefix_parse(buf, 4, &r), PROTO_E_UNDERSIZE);
	/* 2: flags must be exactly 0x08 */
	for (i = 0; i < sizeof(bad_flags); i++) {
		g05(buf);
		buf[8] = bad_flags[i];
		cr_assert_eq(proto_bulk_prefix_parse(buf, 9, &r), PROTO_E_BULK_FLAGS, "0x%02x",
			bad_flags[i]);
	}
	/* 3: len < 18, decided from the 9 header bytes alone */
	for (len = PROTO_FRAME_HEADER_SIZE; len < PROTO_BULK_MIN_LEN; len++) {
		g05(buf);
		put_len(buf, len);
		cr_assert_eq(
			proto_bulk_prefix_parse(buf, 9, &r), PROTO_E_BULK_EMPTY, "len %u", len);
	}
	/* 4: reserved bytes, before kind and flow */
	for (i = 11; i <= 12; i++) {
		g05(buf);
		buf[i] = 0x01;
		buf[9] = 0x07; /* a bad kind too: reserved is reported */
		cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r), PROTO_E_BULK_RESERVED);
	}
	/* 5: kind, then flow */
	for (i = 0; i < 256; i++) {
		g05(buf);
		buf[9] = (uint8_t)i;
		buf[10] = 0x00; /* a bad flow too: kind is reported first */
		cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r),
			i == 1 || i == 2 ? PROTO_E_BULK_FLOW : PROTO_E_BULK_KIND, "kind %zu", i);
		buf[10] = 0x01;
		cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r),
			i == 1 || i == 2 ? (int)PROTO_BULK_PREFIX_SIZE : PROTO_E_BULK_KIND);
	}
	for (i = 0; i < 256; i++) {
		g05(buf);
		buf[10] = (uint8_t)i;
		cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r),
			i == 1 || i == 2 ? (int)PROTO_BULK_PREFIX_SIZE : PROTO_E_BULK_FLOW);
	}
	/* 6: payload above 3 MiB (the frame itself is legal) */
	g05(buf);
	put_len(buf, PROTO_BULK_MAX_LEN + 1);
	cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r), PROTO_E_BULK_LENGTH);
	put_len(buf, PROTO_BULK_MAX_LEN);
	cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r), PROTO_BULK_PREFIX_SIZE);
	cr_assert_eq(r.len, PROTO_BULK_MAX_RECORD);
	/* offset + length must not overflow u64 */
	g05(buf);
	memset(buf + 13, 0xff, 8);
	cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r), PROTO_E_BULK_OVERFLOW);
	buf[20] = 0xff - 10; /* UINT64_MAX - 10: the 10 bytes end exactly at 2^64 - 1 */
	cr_assert_eq(proto_bulk_prefix_parse(buf, 21, &r), PROTO_BULK_PREFIX_SIZE);
	cr_assert_eq(r.offset, UINT64_MAX - 10);
}

Test(gen9, a_stray_0x08_never_decodes_as_cbor)
{
	struct vec_set *v7 = vec_load();
	const struct vec *ping = vec_find(v7, "V07");
	struct proto_errinfo ei;
	struct proto_frame f;
	struct proto_msg m;
	uint8_t buf[128];

	memcpy(buf, ping->frame, ping->frame_len);
	f = tparse(buf, ping->frame_len);
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), 0);
	/* G1.4's example: core.ping with flags 0x08 reads as a record with reserved bytes set */
	buf[8] = PROTO_FLAG_BULK;
	f = tparse(buf, ping->frame_len);
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, &ei), PROTO_E_BULK_RESERVED);
	cr_assert_eq(ei.code, PROTO_E_BULK_RESERVED);
	cr_assert_eq(ei.offset, 11);
	cr_assert_eq(m.type, PROTO_T_UNKNOWN);
	cr_assert_str_eq(proto_strerror(ei.code), "reserved bulk header bytes must be zero");
	/* combined with a control flag */
	buf[8] = PROTO_FLAG_BULK | PROTO_FLAG_TERMINAL;
	f = tparse(buf, ping->frame_len);
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, &ei), PROTO_E_BULK_FLAGS);
	cr_assert_eq(ei.offset, 8);
	/* the unused bits 0x10..0x80 stay ignored (F2) */
	buf[8] = 0x10;
	f = tparse(buf, ping->frame_len);
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), 0);
	cr_assert_eq(m.type, PROTO_T_PING);
	free(v7);
}

Test(gen9, record_prefix_write_errors_and_round_trips)
{
	static const uint64_t offsets[] = {
		0, 1, 262144, 1ull << 32, UINT64_MAX - PROTO_BULK_MAX_RECORD};
	static const uint32_t lens[] = {1, 10, 16384, 262144, PROTO_BULK_MAX_RECORD};
	struct proto_bulk_rec w = {5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0, 10}, r;
	uint8_t buf[PROTO_BULK_PREFIX_SIZE];
	size_t i, j;

	w.id = 0;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BAD_VALUE);
	w.id = 5;
	w.kind = 3;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BULK_KIND);
	w.kind = PROTO_BULK_KIND_TCP;
	w.flow = 0;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BULK_FLOW);
	w.flow = PROTO_BULK_G2H;
	w.len = 0;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BULK_LENGTH);
	w.len = PROTO_BULK_MAX_RECORD + 1;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BULK_LENGTH);
	w.len = 2;
	w.offset = UINT64_MAX - 1;
	cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w), PROTO_E_BULK_OVERFLOW);
	w.offset = 0;
	for (i = 0; i < PROTO_BULK_PREFIX_SIZE; i++)
		cr_assert_eq(proto_bulk_prefix_write(buf, i, &w), PROTO_E_NOSPACE);

	for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			w = (struct proto_bulk_rec){
				0xfffffffe, 1 + (i + j) % 2, 1 + j % 2, offsets[i], lens[j]};
			cr_assert_eq(proto_bulk_prefix_write(buf, sizeof(buf), &w),
				PROTO_BULK_PREFIX_SIZE);
			cr_assert_eq(proto_bulk_prefix_parse(buf, sizeof(buf), &r),
				PROTO_BULK_PREFIX_SIZE);
			cr_assert(r.id == w.id && r.kind == w.kind && r.flow == w.flow &&
				  r.offset == w.offset && r.len == w.len);
			cr_assert_eq(proto_be32(buf), PROTO_BULK_LEN(w.len));
		}
	}
}

Test(gen9, record_prepend_needs_21_bytes_of_headroom)
{
	struct chunk *c = chunk_new_test(64);

	c->off = PROTO_BULK_PREFIX_SIZE - 1;
	c->len = 4;
	cr_assert_eq(proto_bulk_frame_prepend(c, 5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0),
		PROTO_E_NOSPACE);
	cr_assert_eq(c->off, PROTO_BULK_PREFIX_SIZE - 1, "chunk unchanged");
	cr_assert_eq(c->len, 4);
	c->off = PROTO_BULK_PREFIX_SIZE;
	cr_assert_eq(proto_bulk_frame_prepend(c, 5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0), 0);
	cr_assert_eq(c->off, 0);
	cr_assert_eq(c->len, PROTO_BULK_PREFIX_SIZE + 4);
	c->len = 0; /* an empty record is never sent */
	c->off = CHUNK_HEADROOM;
	cr_assert_eq(proto_bulk_frame_prepend(c, 5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 0),
		PROTO_E_BULK_LENGTH);
	free(c);
}

/* ---- flow state (G4) --------------------------------------------------------- */

/* Two receiver / sender states are the same (errors must change nothing). */
#define RX_SAME(a, b)                                                                              \
	cr_assert((a).finished == (b).finished && (a).next_expected == (b).next_expected &&        \
		  (a).consumed == (b).consumed && (a).credit_limit == (b).credit_limit &&          \
		  (a).window == (b).window)
#define TX_SAME(a, b)                                                                              \
	cr_assert((a).finished == (b).finished && (a).next_offset == (b).next_offset &&            \
		  (a).consumed == (b).consumed && (a).credit_limit == (b).credit_limit)

static struct proto_bulk_rec rec(uint64_t offset, uint32_t len)
{
	return (struct proto_bulk_rec){5, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, offset, len};
}

Test(gen9, receiver_rejects_every_g4_6_fault_and_changes_nothing)
{
	struct proto_bulk_rx rx, before;
	struct proto_bulk_rec r;
	struct proto_bulk_finish fin;

	cr_assert_eq(
		proto_bulk_rx_init(&rx, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, 16384, 65536, 65536),
		0);
	before = rx;
	/* gap: G4.6's "offset 5 does not match expected 0" */
	r = rec(5, 10);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_OFFSET);
	r = rec(0, 0);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_LENGTH);
	r = rec(0, 16385);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_LENGTH);
	r = rec(0, 10);
	r.kind = PROTO_BULK_KIND_FS;
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_MISMATCH);
	r = rec(0, 10);
	r.flow = PROTO_BULK_G2H;
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_MISMATCH);
	RX_SAME(rx, before);
	/* fill the credit exactly, then one byte more is an overrun */
	for (uint64_t off = 0; off < 65536; off += 16384) {
		r = rec(off, 16384);
		cr_assert_eq(proto_bulk_rx_record(&rx, &r), 0);
	}
	before = rx;
	r = rec(65536, 1);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_CREDIT);
	/* a repeat of the last record */
	r = rec(65536 - 16384, 16384);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_OFFSET);
	RX_SAME(rx, before);
	/* overflow at the very end of the offset space */
	rx.next_expected = UINT64_MAX - 5;
	rx.credit_limit = UINT64_MAX;
	r = rec(UINT64_MAX - 5, 10);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_OVERFLOW);
	rx = before;
	/* finish: wrong flow, wrong offset, right, then again */
	fin = (struct proto_bulk_finish){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 65536};
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), PROTO_E_BULK_MISMATCH);
	fin.flow = PROTO_BULK_H2G;
	fin.final_offset = 65535;
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), PROTO_E_BULK_FINAL);
	fin.final_offset = 65537;
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), PROTO_E_BULK_FINAL);
	cr_assert_not(rx.finished);
	fin.final_offset = 65536;
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), 0);
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), PROTO_E_BULK_FINISHED);
	r = rec(65536, 1);
	cr_assert_eq(proto_bulk_rx_record(&rx, &r), PROTO_E_BULK_FINISHED);
}

Test(gen9, receiver_grants_like_agentd_g08)
{
	const struct v9 *g08 = v9_find(vs, "G08");
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};
	struct proto_bulk_credit grant = {0};
	struct proto_bulk_rx rx;
	struct proto_bulk_rec r;
	uint8_t buf[128];
	uint64_t off;

	cr_assert_eq(
		proto_bulk_rx_init(&rx, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, PROTO_BULK_TCP_RECORD,
			PROTO_BULK_DEFAULT_WINDOW, PROTO_BULK_DEFAULT_WINDOW),
		0);
	for (off = 0; off < 5 * MIB; off += PROTO_BULK_TCP_RECORD) {
		r = rec(off, PROTO_BULK_TCP_RECORD);
		cr_assert_eq(proto_bulk_rx_record(&rx, &r), 0);
	}
	/* consumed below 4 MiB: more than half the window left, no grant */
	cr_assert_eq(proto_bulk_rx_consume(&rx, 4 * MIB - 1, &grant), 0);
	cr_assert_eq(rx.credit_limit, 8 * MIB);
	/* at 4 MiB: limit 12 MiB, the frame agentd sent */
	cr_assert_eq(proto_bulk_rx_consume(&rx, 4 * MIB, &grant), 1);
	cr_assert_eq(grant.consumed_offset, 4 * MIB);
	cr_assert_eq(grant.credit_limit, 12 * MIB);
	m.u.bulk_credit = grant;
	assert_bytes(buf, proto_frame_encode(buf, sizeof(buf), g08->id, &m), g08->frame,
		g08->frame_len, "G08 from the receiver state");
	/* the same offset again: nothing new */
	cr_assert_eq(proto_bulk_rx_consume(&rx, 4 * MIB, &grant), 0);
	/* backwards, or beyond what was received */
	cr_assert_eq(proto_bulk_rx_consume(&rx, 4 * MIB - 1, &grant), PROTO_E_BULK_GRANT);
	cr_assert_eq(proto_bulk_rx_consume(&rx, 5 * MIB + 1, &grant), PROTO_E_BULK_GRANT);
	cr_assert_eq(rx.consumed, 4 * MIB);
}

Test(gen9, sender_stays_within_credit_and_checks_updates)
{
	struct proto_bulk_credit c = {PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 0, 0};
	const struct v9 *g11 = v9_find(vs, "G11");
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};
	struct proto_bulk_finish fin;
	struct proto_bulk_tx tx, before;
	uint8_t buf[128];
	uint64_t off;

	cr_assert_eq(proto_bulk_tx_init(&tx, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 16384, 40000), 0);
	cr_assert_eq(proto_bulk_tx_room(&tx), 16384);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 16384, &off), 0);
	cr_assert_eq(off, 0);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 16384, &off), 0);
	cr_assert_eq(off, 16384);
	cr_assert_eq(proto_bulk_tx_room(&tx), 40000 - 32768);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 40000 - 32768 + 1, &off), PROTO_E_BULK_CREDIT);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 0, &off), PROTO_E_BULK_LENGTH);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 16385, &off), PROTO_E_BULK_LENGTH);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 40000 - 32768, &off), 0);
	cr_assert_eq(proto_bulk_tx_room(&tx), 0, "wait for credit");
	before = tx;
	/* updates: wrong flow, consumed beyond sent, window above 32 MiB, limit below consumed */
	c.flow = PROTO_BULK_H2G;
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_MISMATCH);
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 40001, 50000};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_GRANT);
	c = (struct proto_bulk_credit){
		PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 1, 1 + PROTO_BULK_MAX_WINDOW + 1};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_GRANT);
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 100, 99};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_GRANT);
	/* stale and duplicate updates are harmless */
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 0, 40000};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), 0);
	TX_SAME(tx, before);
	/* a real grant */
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 32768, 80000};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), 1);
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), 0, "repeated");
	cr_assert_eq(proto_bulk_tx_room(&tx), 16384);
	/* one field grows while the other shrinks: inconsistent */
	before = tx;
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 40000, 79999};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_GRANT);
	c = (struct proto_bulk_credit){PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 30000, 90000};
	cr_assert_eq(proto_bulk_tx_credit(&tx, &c), PROTO_E_BULK_GRANT);
	TX_SAME(tx, before);
	/* finish at 10 bytes: G11 */
	cr_assert_eq(
		proto_bulk_tx_init(&tx, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H, 16384, 8 * MIB), 0);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 10, &off), 0);
	cr_assert_eq(proto_bulk_tx_finish(&tx, &fin), 0);
	m.u.bulk_finish = fin;
	assert_bytes(buf, proto_frame_encode(buf, sizeof(buf), g11->id, &m), g11->frame,
		g11->frame_len, "G11 from the sender state");
	cr_assert_eq(proto_bulk_tx_finish(&tx, &fin), PROTO_E_BULK_FINISHED);
	cr_assert_eq(proto_bulk_tx_admit(&tx, 1, &off), PROTO_E_BULK_FINISHED);
	cr_assert_eq(proto_bulk_tx_room(&tx), 0);
}

Test(gen9, flow_limits_at_init)
{
	struct proto_bulk_tx tx;
	struct proto_bulk_rx rx;

	cr_assert_eq(proto_bulk_tx_init(&tx, 0, PROTO_BULK_H2G, 16384, 0), PROTO_E_BULK_KIND);
	cr_assert_eq(proto_bulk_tx_init(&tx, PROTO_BULK_KIND_FS, 3, 16384, 0), PROTO_E_BULK_FLOW);
	cr_assert_eq(proto_bulk_tx_init(&tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, 16383, 0),
		PROTO_E_BULK_LIMIT);
	cr_assert_eq(proto_bulk_tx_init(
			     &tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G, PROTO_BULK_MAX_RECORD + 1, 0),
		PROTO_E_BULK_LIMIT);
	cr_assert_eq(proto_bulk_tx_init(&tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			     PROTO_BULK_MAX_RECORD, PROTO_BULK_MAX_WINDOW + 1),
		PROTO_E_BULK_GRANT);
	cr_assert_eq(proto_bulk_tx_init(&tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			     PROTO_BULK_MAX_RECORD, PROTO_BULK_MAX_WINDOW),
		0);
	cr_assert_eq(proto_bulk_rx_init(&rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 16384, 0, 0),
		PROTO_E_BULK_GRANT);
	cr_assert_eq(proto_bulk_rx_init(&rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 16384, 2, 1),
		PROTO_E_BULK_GRANT);
	cr_assert_eq(proto_bulk_rx_init(&rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 16384, 0,
			     PROTO_BULK_MAX_WINDOW + 1),
		PROTO_E_BULK_GRANT);
	cr_assert_eq(proto_bulk_rx_init(&rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 16383, 1, 1),
		PROTO_E_BULK_LIMIT);
	cr_assert_eq(proto_bulk_rx_init(&rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 16384, 0, 1), 0);
}

/* Decode the bulk offer of vector <name> into <o>. */
static void offer_of(const char *name, struct proto_bulk_offer *o)
{
	const struct v9 *v = v9_find(vs, name);
	struct proto_frame f = tparse(v->frame, v->frame_len);

	cr_assert_eq(proto_frame_decode(&f, &dec, &arena, NULL), 0);
	*o = dec.type == PROTO_T_TCP_CONNECT ? dec.u.tcp_connect.bulk.v : dec.u.fs_request.bulk.v;
}

/* Decode the acceptance of vector <name> into <a>. */
static void accepted_of(const char *name, struct proto_bulk_accepted *a)
{
	const struct v9 *v = v9_find(vs, name);
	struct proto_frame f = tparse(v->frame, v->frame_len);

	cr_assert_eq(proto_frame_decode(&f, &dec, &arena, NULL), 0);
	*a = dec.u.bulk_accepted;
}

Test(gen9, acceptances_of_the_vectors_validate_against_their_offers)
{
	struct proto_bulk_accepted a, b;
	struct proto_bulk_offer o, p;

	offer_of("G02", &o);
	accepted_of("G04", &a);
	cr_assert_eq(
		proto_bulk_accepted_check(&a, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP), 0);
	/* each way to get it wrong */
	cr_assert_eq(proto_bulk_accepted_check(&a, &o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_FLOWS);
	cr_assert_eq(
		proto_bulk_accepted_check(&a, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_FS_READ),
		PROTO_E_BULK_FLOWS);
	b = a;
	b.flows = 7;
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, 7), PROTO_E_BULK_FLOWS);
	b = a;
	b.format = 2;
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_FORMAT);
	b = a;
	b.max_record_payload = o.max_record_payload + 1; /* above the offer */
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_LIMIT);
	b.max_record_payload = PROTO_BULK_MIN_RECORD - 1;
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_LIMIT);
	b = a;
	b.guest_to_host_credit_limit--; /* not echoed */
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_GRANT);
	b = a;
	b.host_to_guest_credit_limit = PROTO_BULK_MAX_WINDOW + 1;
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_GRANT);
	b.host_to_guest_credit_limit = 0; /* h2g enabled without credit */
	cr_assert_eq(proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_GRANT);
	p = o;
	p.format = 0; /* the offer itself is checked first */
	cr_assert_eq(proto_bulk_accepted_check(&a, &p, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP),
		PROTO_E_BULK_FORMAT);
	p = o;
	p.max_record_payload = PROTO_BULK_MAX_RECORD + 1;
	cr_assert_eq(proto_bulk_offer_check(&p), PROTO_E_BULK_LIMIT);
	p = o;
	p.guest_to_host_credit_limit = PROTO_BULK_MAX_WINDOW + 1;
	cr_assert_eq(proto_bulk_offer_check(&p), PROTO_E_BULK_GRANT);

	offer_of("G15", &o);
	accepted_of("G16", &a);
	cr_assert_eq(
		proto_bulk_accepted_check(&a, &o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_WRITE),
		0);
	b = a;
	b.host_to_guest_credit_limit = 0;
	cr_assert_eq(
		proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_WRITE),
		PROTO_E_BULK_GRANT);
	offer_of("G17", &o);
	accepted_of("G18", &a);
	cr_assert_eq(
		proto_bulk_accepted_check(&a, &o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_READ), 0);
	b = a;
	b.host_to_guest_credit_limit = 1; /* credit for a disabled flow */
	cr_assert_eq(
		proto_bulk_accepted_check(&b, &o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_READ),
		PROTO_E_BULK_GRANT);
}

/*
 * 64 MiB through a sender and a receiver, as records written and parsed,
 * with a destination that stalls and catches up: every record is accepted,
 * so the sender never passed a grant, and the finish matches.
 */
Test(gen9, a_whole_flow_moves_64_mib_within_credit)
{
	const uint64_t total = 64 * MIB;
	struct proto_bulk_credit grant;
	struct proto_bulk_finish fin;
	struct proto_bulk_tx tx;
	struct proto_bulk_rx rx;
	struct proto_bulk_rec w, r;
	uint8_t prefix[PROTO_BULK_PREFIX_SIZE];
	uint64_t sent = 0, off, grants = 0, waits = 0, i = 0;
	uint32_t n;

	cr_assert_eq(
		proto_bulk_tx_init(&tx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 262144, 2 * MIB), 0);
	cr_assert_eq(proto_bulk_rx_init(
			     &rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, 262144, 2 * MIB, 2 * MIB),
		0);
	while (sent < total) {
		n = proto_bulk_tx_room(&tx);
		if (n == 0 || i % 7 == 3) {
			/* the destination takes what arrived (in two steps when it can) */
			waits++;
			if (rx.next_expected > rx.consumed + 1 &&
				proto_bulk_rx_consume(&rx, rx.consumed + 1, &grant) == 1) {
				cr_assert_geq(proto_bulk_tx_credit(&tx, &grant), 0);
				grants++;
			}
			if (proto_bulk_rx_consume(&rx, rx.next_expected, &grant) == 1) {
				cr_assert_eq(proto_bulk_tx_credit(&tx, &grant), 1);
				grants++;
			}
			i++;
			continue;
		}
		n = (uint32_t)(1 + (i++ * 7919) % n); /* the sizes a socket read returns */
		if (n > total - sent)
			n = (uint32_t)(total - sent);
		cr_assert_eq(proto_bulk_tx_admit(&tx, n, &off), 0);
		w = (struct proto_bulk_rec){9, PROTO_BULK_KIND_FS, PROTO_BULK_G2H, off, n};
		cr_assert_eq(proto_bulk_prefix_write(prefix, sizeof(prefix), &w), sizeof(prefix));
		cr_assert_eq(proto_bulk_prefix_parse(prefix, sizeof(prefix), &r), sizeof(prefix));
		cr_assert_eq(proto_bulk_rx_record(&rx, &r), 0, "record at %" PRIu64, r.offset);
		cr_assert_leq(rx.next_expected, rx.credit_limit);
		sent += n;
	}
	cr_assert_eq(proto_bulk_tx_finish(&tx, &fin), 0);
	cr_assert_eq(fin.final_offset, total);
	cr_assert_eq(proto_bulk_rx_finish(&rx, &fin), 0);
	cr_assert_gt(grants, 16);
	cr_assert_gt(waits, 0);
}

/* ---- the MSBL record: every error, every cut --------------------------------- */

Test(gen9, lease_truncated_at_every_offset_and_every_deviation)
{
	const struct v9 *g29 = v9_find(vs, "G29");
	static const struct {
		size_t at;
		uint8_t val;
	} bad[] = {
		{3, 0x24}, {3, 0x26},					     /* len 36, 38 */
		{7, 0x01},						     /* id 1 */
		{8, 0x01},						     /* flags */
		{8, 0x08}, {9, 'm'}, {10, 'S' ^ 0x20}, {11, 'b'}, {12, 'M'}, /* magic */
		{13, 0x00}, {13, 0x02},					     /* format */
		{14, 0x00}, {14, 0x03},					     /* event */
		{15, 0x01}, {16, 0x80},					     /* reserved */
	};
	struct proto_lease l;
	struct proto_frame f;
	struct proto_msg m;
	uint8_t buf[PROTO_LEASE_SIZE];
	size_t i;

	for (i = 0; i < PROTO_LEASE_SIZE; i++)
		cr_assert_eq(proto_lease_parse(g29->frame, i, &l), PROTO_E_TRUNCATED, "cut %zu", i);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(buf, g29->frame, sizeof(buf));
		buf[bad[i].at] = bad[i].val;
		cr_assert_eq(proto_lease_parse(buf, sizeof(buf), &l), PROTO_E_LEASE,
			"byte %zu = 0x%02x", bad[i].at, bad[i].val);
	}
	/* through the frame decoder: recognised on id 0 only */
	memcpy(buf, g29->frame, sizeof(buf));
	buf[13] = 2;
	f = tparse(buf, sizeof(buf));
	cr_assert(proto_frame_is_lease(&f));
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), PROTO_E_LEASE);
	memcpy(buf, g29->frame, sizeof(buf));
	buf[7] = 1;
	f = tparse(buf, sizeof(buf));
	cr_assert_not(proto_frame_is_lease(&f));
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), PROTO_E_WRONG_TYPE, "tried as CBOR");
	/* a short MSBL frame on id 0 is a bad lease, not a framing error */
	memcpy(buf, g29->frame, 13);
	put_len(buf, 9);
	f = tparse(buf, 13);
	cr_assert_eq(proto_frame_decode(&f, &m, NULL, NULL), PROTO_E_LEASE);
}

Test(gen9, lease_write_and_canonical_ranges)
{
	struct proto_lease l = {PROTO_LEASE_CONNECTED, 1, 33554431, inc_0_15}, d;
	uint8_t buf[PROTO_LEASE_SIZE];
	uint32_t k;
	size_t i;

	for (i = 0; i < PROTO_LEASE_SIZE; i++)
		cr_assert_eq(proto_lease_write(buf, i, &l), PROTO_E_NOSPACE);
	l.event = 3;
	cr_assert_eq(proto_lease_write(buf, sizeof(buf), &l), PROTO_E_BAD_VALUE);
	l = (struct proto_lease){PROTO_LEASE_DISCONNECT_ACK, 0xfedcba98, 0x01234567, {{[0] = 9}}};
	cr_assert_eq(proto_lease_write(buf, sizeof(buf), &l), PROTO_LEASE_SIZE);
	cr_assert_eq(proto_lease_parse(buf, sizeof(buf), &d), PROTO_LEASE_SIZE);
	cr_assert(d.event == l.event && d.id_start == l.id_start &&
		  d.id_end_exclusive == l.id_end_exclusive && d.incarnation.b[0] == 9);

	for (k = 0; k < PROTO_RELAY_SLOTS; k++)
		cr_assert(proto_lease_range_canonical(
			k * PROTO_RELAY_ID_STEP + 1, (k + 1) * PROTO_RELAY_ID_STEP));
	cr_assert(proto_lease_range_canonical(33554432, 67108862)); /* slot 1, spec 5.3 */
	cr_assert_not(proto_lease_range_canonical(0, 33554431));
	cr_assert_not(proto_lease_range_canonical(1, 33554432));
	cr_assert_not(proto_lease_range_canonical(2, 33554431));
	cr_assert_not(proto_lease_range_canonical(33554431, 67108862));
	cr_assert_not(proto_lease_range_canonical(128 * PROTO_RELAY_ID_STEP + 1, UINT32_MAX));
	cr_assert_not(proto_lease_range_canonical(UINT32_MAX, UINT32_MAX));
}

Test(gen9, every_new_error_code_has_its_own_text)
{
	int code, other;

	for (code = PROTO_E_BULK_RECORD; code >= PROTO_E_LEASE; code--) {
		cr_assert_str_neq(proto_strerror(code), "unknown error", "%d", code);
		for (other = code - 1; other >= PROTO_E_LEASE; other--)
			cr_assert_str_neq(proto_strerror(code), proto_strerror(other));
	}
	cr_assert_str_eq(proto_strerror(PROTO_E_BULK_FLAGS),
		"bulk flag cannot be combined with control flags");
	cr_assert_str_eq(proto_strerror(PROTO_E_BULK_EMPTY), "bulk record has no payload");
}
