/*
 * tests/proto/test_bad_input.c - hostile and odd input: each gives its own
 * error (or is accepted, where the reader rules of spec 2.2 say so), and
 * nothing crashes (run under ASan/UBSan too).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"
#include "tests/proto/proto_test.h"

static struct vec_set *vs;
static uint8_t arena_mem[16 * 1024];
static struct proto_arena arena;
static uint8_t frame_buf[8192];

static void setup(void)
{
	vs = vec_load();
}

static void teardown(void)
{
	free(vs);
}

TestSuite(bad_input, .init = setup, .fini = teardown);

/* Decode a frame holding <body> (id 1, <flags>) into <m>; <ei> gets the context. */
static int decode_body(
	const void *body, size_t n, uint8_t flags, struct proto_msg *m, struct proto_errinfo *ei)
{
	struct proto_frame f;

	proto_arena_init(&arena, arena_mem, sizeof(arena_mem));
	memset(ei, 0, sizeof(*ei));
	f = tparse(frame_buf, tframe(frame_buf, sizeof(frame_buf), 1, flags, body, n));
	return proto_frame_decode(&f, m, &arena, ei);
}

/* Decode payload <p> of type <t> in a canonical envelope with the type's own flags. */
static int decode_p(
	const char *t, const void *p, size_t n, struct proto_msg *m, struct proto_errinfo *ei)
{
	uint8_t body[4096];
	enum proto_type ty = proto_type_lookup(t, strlen(t));

	return decode_body(
		body, tbody(body, sizeof(body), 7, t, p, n), proto_type_flags(ty), m, ei);
}

#define P(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

Test(bad_input, frames_cut_anywhere_need_more_bytes)
{
	struct proto_frame f;
	size_t i, k;

	for (i = 0; i < vs->n; i++) {
		const struct vec *v = &vs->v[i];

		if (v->name[0] != 'V')
			continue;
		for (k = 0; k < v->frame_len; k++) {
			cr_assert_eq(
				proto_frame_parse(v->frame, k, &f), 0, "%s cut %zu", v->name, k);
			cr_assert_eq(f.need, k < 4 ? 4 : v->frame_len);
		}
	}
}

Test(bad_input, bodies_cut_anywhere_are_truncated)
{
	struct proto_errinfo ei;
	struct proto_env e;
	size_t i, k;
	int rc;

	for (i = 0; i < vs->n; i++) {
		const struct vec *v = &vs->v[i];

		if (v->name[0] != 'V')
			continue;
		for (k = 0; k < v->frame_len - PROTO_HDR_SIZE; k++) {
			rc = proto_env_decode(v->frame + PROTO_HDR_SIZE, k, NULL, &e, &ei);
			cr_assert_eq(rc, PROTO_E_TRUNCATED, "%s cut %zu: %s", v->name, k,
				proto_strerror(rc));
			cr_assert_eq(ei.code, PROTO_E_TRUNCATED);
		}
	}
}

Test(bad_input, payloads_cut_anywhere_are_truncated)
{
	struct proto_errinfo ei;
	struct proto_msg m;
	size_t i, k;
	int rc;

	for (i = 0; i < vs->n; i++) {
		const struct vec *v = &vs->v[i];

		/* core.shutdown's payload is never decoded (spec 3.1) */
		if (v->name[0] != 'V' || strcmp(v->type, "core.shutdown") == 0)
			continue;
		for (k = 0; k < v->p_len; k++) {
			rc = decode_p(v->type, v->p, k, &m, &ei);
			cr_assert_eq(rc, PROTO_E_TRUNCATED, "%s payload cut %zu: %s", v->name, k,
				proto_strerror(rc));
			cr_assert_str_eq(ei.type, v->type);
		}
	}
}

Test(bad_input, malformed_cbor_is_reported_as_such)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	/* reserved additional info in the body, a map key, the payload */
	cr_assert_eq(decode_body(P(0xbc), 0, &m, &ei), PROTO_E_CBOR);
	cr_assert_eq(decode_body(P(0xa1, 0x7d, 0x00), 0, &m, &ei), PROTO_E_CBOR);
	cr_assert_eq(decode_p("core.exec.resize", P(0xa1, 0x1e, 0x00), &m, &ei), PROTO_E_CBOR);
	/* a break outside any indefinite item */
	cr_assert_eq(decode_body(P(0xff), 0, &m, &ei), PROTO_E_CBOR);
	cr_assert_eq(decode_p("core.ping", P(0xff), &m, &ei), PROTO_E_CBOR);
	cr_assert_eq(decode_p("core.exec.resize", P(0xa1, 0x64, 'r', 'o', 'w', 's', 0xff), &m, &ei),
		PROTO_E_CBOR);
	cr_assert_str_eq(ei.field, "rows");
	/* an unknown key whose value is malformed */
	cr_assert_eq(
		decode_p("core.ping", P(0xa1, 0x61, 'x', 0x5f, 0x01, 0xff), &m, &ei), PROTO_E_CBOR);
	/* unassigned simple value */
	cr_assert_eq(decode_p("core.ping", P(0xa1, 0x61, 'x', 0xf8, 0x20), &m, &ei), PROTO_E_CBOR);
}

Test(bad_input, wrong_field_types_name_the_field)
{
	struct proto_errinfo ei;
	struct proto_msg m;
	char line[128];

	/* rows as text */
	cr_assert_eq(decode_p("core.exec.resize",
			     P(0xa2, 0x64, 'r', 'o', 'w', 's', 0x61, '1', 0x64, 'c', 'o', 'l', 's',
				     0x01),
			     &m, &ei),
		PROTO_E_WRONG_TYPE);
	cr_assert_str_eq(ei.field, "rows");
	cr_assert_str_eq(ei.type, "core.exec.resize");
	/* the payload starts after 9 header + 26 envelope bytes; rows' value is at +6 */
	cr_assert_eq(ei.offset, PROTO_HDR_SIZE + 26 + 6, "offset %zu", ei.offset);
	cr_assert_str_eq(proto_errinfo_format(&ei, line, sizeof(line)),
		"core.exec.resize: field `rows`: wrong CBOR type for field at offset 41");
	/* a struct sent as an array; a bool as an integer; tty as null */
	cr_assert_eq(
		decode_p("core.exec.resize", P(0x82, 0x01, 0x02), &m, &ei), PROTO_E_WRONG_TYPE);
	cr_assert_eq(decode_p("core.exec.request",
			     P(0xa2, 0x63, 'c', 'm', 'd', 0x61, 'x', 0x63, 't', 't', 'y', 0x01), &m,
			     &ei),
		PROTO_E_WRONG_TYPE);
	cr_assert_str_eq(ei.field, "tty");
	cr_assert_eq(decode_p("core.exec.request",
			     P(0xa2, 0x63, 'c', 'm', 'd', 0x61, 'x', 0x63, 't', 't', 'y', 0xf6), &m,
			     &ei),
		PROTO_E_WRONG_TYPE);
	/* an empty struct must still be a map: null and empty p are refused */
	cr_assert_eq(decode_p("core.ping", P(0xf6), &m, &ei), PROTO_E_WRONG_TYPE);
	cr_assert_eq(decode_p("core.tcp.eof", "", 0, &m, &ei), PROTO_E_TRUNCATED);
	/* envelope: v as text, t as an integer, p as text */
	cr_assert_eq(decode_body(P(0xa3, 0x61, 'v', 0x61, '7', 0x61, 't', 0x69, 'c', 'o', 'r', 'e',
					 '.', 'p', 'i', 'n', 'g', 0x61, 'p', 0x41, 0xa0),
			     0, &m, &ei),
		PROTO_E_WRONG_TYPE);
	cr_assert_str_eq(ei.field, "v");
	cr_assert_eq(decode_body(P(0xa3, 0x61, 'v', 0x07, 0x61, 't', 0x01, 0x61, 'p', 0x41, 0xa0),
			     0, &m, &ei),
		PROTO_E_WRONG_TYPE);
	cr_assert_str_eq(ei.field, "t");
	cr_assert_eq(decode_body(P(0xa3, 0x61, 'v', 0x07, 0x61, 't', 0x69, 'c', 'o', 'r', 'e', '.',
					 'p', 'i', 'n', 'g', 0x61, 'p', 0x61, 'x'),
			     0, &m, &ei),
		PROTO_E_WRONG_TYPE);
	cr_assert_str_eq(ei.field, "p");
}

Test(bad_input, unknown_type_keeps_its_name_for_the_error_reply)
{
	uint8_t body[64];
	struct proto_errinfo ei;
	struct proto_msg m;
	size_t n;

	n = tbody(body, sizeof(body), 7, "core.teleport", "\xa0", 1);
	cr_assert_eq(decode_body(body, n, 0, &m, &ei), PROTO_E_UNKNOWN_TYPE);
	cr_assert_eq(m.type, PROTO_T_UNKNOWN);
	cr_assert_eq(m.v, 7);
	cr_assert_str_is(m.tname, "core.teleport");
	cr_assert_str_eq(ei.field, "t");
	cr_assert_null(ei.type);
}

Test(bad_input, trailing_bytes_after_the_item_are_ignored)
{
	const struct vec *v = vec_find(vs, "V19");
	uint8_t body[256], p[64];
	struct proto_errinfo ei;
	struct proto_msg m;
	size_t n;

	/* after the body's map */
	n = v->frame_len - PROTO_HDR_SIZE;
	memcpy(body, v->frame + PROTO_HDR_SIZE, n);
	memcpy(body + n, "\xff\xff\x1c garbage", 10);
	cr_assert_eq(decode_body(body, n + 10, 0, &m, &ei), 0);
	cr_assert_eq(m.u.exec_resize.cols, 132);
	/* after the payload's map, inside p */
	memcpy(p, v->p, v->p_len);
	memcpy(p + v->p_len, "\xff\x00", 2);
	cr_assert_eq(decode_p("core.exec.resize", p, v->p_len + 2, &m, &ei), 0);
	cr_assert_eq(m.u.exec_resize.rows, 50);
}

Test(bad_input, a_duplicate_known_key_is_an_error)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	cr_assert_eq(decode_p("core.exec.resize",
			     P(0xa3, 0x64, 'r', 'o', 'w', 's', 0x01, 0x64, 'c', 'o', 'l', 's', 0x02,
				     0x64, 'r', 'o', 'w', 's', 0x03),
			     &m, &ei),
		PROTO_E_DUP_FIELD);
	cr_assert_str_eq(ei.field, "rows");
	/* duplicate "v" in the envelope */
	cr_assert_eq(
		decode_body(P(0xa4, 0x61, 'v', 0x07, 0x61, 'v', 0x07, 0x61, 't', 0x69, 'c', 'o',
				    'r', 'e', '.', 'p', 'i', 'n', 'g', 0x61, 'p', 0x41, 0xa0),
			0, &m, &ei),
		PROTO_E_DUP_FIELD);
	/* a duplicate unknown key is fine */
	cr_assert_eq(decode_p("core.ping", P(0xa2, 0x61, 'x', 0x01, 0x61, 'x', 0x02), &m, &ei), 0);
}

/* {"rows": 1, "cols": 2, "x": <levels> nested arrays} */
static size_t deep_resize(uint8_t *p, size_t levels)
{
	static const uint8_t head[] = {
		0xa3, 0x64, 'r', 'o', 'w', 's', 0x01, 0x64, 'c', 'o', 'l', 's', 0x02, 0x61, 'x'};

	memcpy(p, head, sizeof(head));
	memset(p + sizeof(head), 0x81, levels);
	p[sizeof(head) + levels] = 0x00;
	return sizeof(head) + levels + 1;
}

Test(bad_input, nesting_deeper_than_256_is_refused)
{
	uint8_t p[512];
	struct proto_errinfo ei;
	struct proto_msg m;

	/* the payload map is level 1: 255 more levels are the limit */
	cr_assert_eq(decode_p("core.exec.resize", p, deep_resize(p, 255), &m, &ei), 0);
	cr_assert_eq(decode_p("core.exec.resize", p, deep_resize(p, 256), &m, &ei), PROTO_E_DEPTH);
}

Test(bad_input, integers_out_of_range_are_refused)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	/* u16 port 70000 */
	cr_assert_eq(decode_p("core.tcp.connect",
			     P(0xa2, 0x64, 'h', 'o', 's', 't', 0x61, 'h', 0x64, 'p', 'o', 'r', 't',
				     0x1a, 0x00, 0x01, 0x11, 0x70),
			     &m, &ei),
		PROTO_E_RANGE);
	cr_assert_str_eq(ei.field, "port");
	/* negative u64 */
	cr_assert_eq(decode_p("core.clock.sync",
			     P(0xa1, 0x6f, 'u', 'n', 'i', 'x', '_', 't', 'i', 'm', 'e', '_', 'n',
				     'a', 'n', 'o', 's', 0x20),
			     &m, &ei),
		PROTO_E_RANGE);
	/* i32 code 2^31 */
	cr_assert_eq(
		decode_p("core.exec.exited",
			P(0xa1, 0x64, 'c', 'o', 'd', 'e', 0x1a, 0x80, 0x00, 0x00, 0x00), &m, &ei),
		PROTO_E_RANGE);
	/* v = 256 and v = -1: unusable versions */
	cr_assert_eq(decode_body(P(0xa3, 0x61, 'v', 0x19, 0x01, 0x00, 0x61, 't', 0x69, 'c', 'o',
					 'r', 'e', '.', 'p', 'i', 'n', 'g', 0x61, 'p', 0x41, 0xa0),
			     0, &m, &ei),
		PROTO_E_VERSION);
	cr_assert_eq(decode_body(P(0xa3, 0x61, 'v', 0x20, 0x61, 't', 0x69, 'c', 'o', 'r', 'e', '.',
					 'p', 'i', 'n', 'g', 0x61, 'p', 0x41, 0xa0),
			     0, &m, &ei),
		PROTO_E_VERSION);
}

Test(bad_input, cbor_x_style_input_is_accepted)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	/*
	 * The TypeScript client (spec F30): b9 0003 map heads, tag 64 on byte
	 * strings, an integral float64 in an integer field, v = 5.
	 */
	static const uint8_t body[] = {0xb9, 0x00, 0x03, 0x61, 'v', 0x05, 0x61, 't', 0x70, 'c', 'o',
		'r', 'e', '.', 'e', 'x', 'e', 'c', '.', 'r', 'e', 's', 'i', 'z', 'e', 0x61, 'p',
		0xd8, 0x40, 0x58, 24, 0xb9, 0x00, 0x02, 0x64, 'r', 'o', 'w', 's', 0xfb, 0x40, 0x49,
		0, 0, 0, 0, 0, 0, 0x64, 'c', 'o', 'l', 's', 0x18, 0x50};

	cr_assert_eq(decode_body(body, sizeof(body), 0, &m, &ei), 0, "%s", proto_strerror(ei.code));
	cr_assert_eq(m.v, 5);
	cr_assert_eq(m.u.exec_resize.rows, 50);
	cr_assert_eq(m.u.exec_resize.cols, 80);
	/* tag 64 on a data payload too */
	cr_assert_eq(
		decode_p("core.exec.stdin",
			P(0xb9, 0x00, 0x01, 0x64, 'd', 'a', 't', 'a', 0xd8, 0x40, 0x42, 'o', 'k'),
			&m, &ei),
		0);
	cr_assert_eq(m.u.data.len, 2);
	/* a non-integral float stays refused */
	cr_assert_eq(
		decode_p("core.exec.signal",
			P(0xa1, 0x66, 's', 'i', 'g', 'n', 'a', 'l', 0xf9, 0x3e, 0x00), &m, &ei),
		PROTO_E_WRONG_TYPE);
}

Test(bad_input, indefinite_envelope_and_payload_are_accepted)
{
	struct proto_errinfo ei;
	struct proto_msg m;
	struct proto_env e;

	/* {_ "v": 7, "t": (_ "core.", "ping"), "p": (_ h'a0') } with the ping payload {_ } */
	cr_assert_eq(decode_body(P(0xbf, 0x61, 'v', 0x07, 0x61, 't', 0x7f, 0x65, 'c', 'o', 'r', 'e',
					 '.', 0x64, 'p', 'i', 'n', 'g', 0xff, 0x61, 'p', 0x5f, 0x42,
					 0xbf, 0xff, 0xff, 0xff),
			     0, &m, &ei),
		0);
	cr_assert_eq(m.type, PROTO_T_PING);
	cr_assert_str_is(m.tname, "core.ping");
	/* an assembled p has no offset in the body; errors in it count from its start */
	cr_assert_eq(decode_body(P(0xbf, 0x61, 'v', 0x07, 0x61, 't', 0x70, 'c', 'o', 'r', 'e', '.',
					 'e', 'x', 'e', 'c', '.', 's', 'i', 'g', 'n', 'a', 'l',
					 0x61, 'p', 0x5f, 0x41, 0xa1, 0x42, 0x61, 'x', 0xff, 0xff),
			     0, &m, &ei),
		PROTO_E_TRUNCATED);
	cr_assert_eq(ei.offset, 3);
	cr_assert_eq(proto_env_decode(frame_buf + PROTO_HDR_SIZE,
			     proto_be32(frame_buf) - PROTO_FRAME_HEADER_SIZE, &arena, &e, NULL),
		0);
	cr_assert_eq(e.p_off, SIZE_MAX);
	cr_assert_eq(e.p_len, 3);
}

Test(bad_input, flags_are_checked_on_the_defined_bits_only)
{
	const struct vec *v = vec_find(vs, "V21"); /* exited: TERMINAL */
	struct proto_errinfo ei;
	struct proto_msg m;
	size_t n = v->frame_len - PROTO_HDR_SIZE;

	cr_assert_eq(decode_body(v->frame + PROTO_HDR_SIZE, n, 0x01, &m, &ei), 0);
	cr_assert_eq(decode_body(v->frame + PROTO_HDR_SIZE, n, 0x81, &m, &ei), 0);
	cr_assert_eq(decode_body(v->frame + PROTO_HDR_SIZE, n, 0x00, &m, &ei), PROTO_E_FLAGS);
	cr_assert_str_eq(ei.type, "core.exec.exited");
	cr_assert_eq(ei.offset, 8);
	cr_assert_eq(decode_body(v->frame + PROTO_HDR_SIZE, n, 0x03, &m, &ei), PROTO_E_FLAGS);
}

Test(bad_input, missing_fields_are_named)
{
	const struct vec *v = vec_find(vs, "V19");
	struct proto_errinfo ei;
	struct proto_msg m;
	char line[128];

	/* V42's story: exec.resize without cols */
	cr_assert_eq(decode_p("core.exec.resize", P(0xa1, 0x64, 'r', 'o', 'w', 's', 0x01), &m, &ei),
		PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "cols");
	cr_assert_str_eq(proto_errinfo_format(&ei, line, sizeof(line)),
		"core.exec.resize: field `cols`: missing field at offset 42");
	/* nested: init.resolved's default_user without gid */
	cr_assert_eq(decode_p("core.init.resolved",
			     P(0xa1, 0x6c, 'd', 'e', 'f', 'a', 'u', 'l', 't', '_', 'u', 's', 'e',
				     'r', 0xa1, 0x63, 'u', 'i', 'd', 0x01),
			     &m, &ei),
		PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "gid");
	/* envelope without p */
	cr_assert_eq(decode_body(v->frame + PROTO_HDR_SIZE, 1, 0, &m, &ei), PROTO_E_TRUNCATED);
	cr_assert_eq(decode_body(P(0xa2, 0x61, 'v', 0x07, 0x61, 't', 0x69, 'c', 'o', 'r', 'e', '.',
					 'p', 'i', 'n', 'g'),
			     0, &m, &ei),
		PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "p");
	cr_assert_eq(decode_body(P(0xa0), 0, &m, &ei), PROTO_E_MISSING_FIELD);
	cr_assert_str_eq(ei.field, "v");
}

Test(bad_input, unknown_enum_names_and_bad_utf8_are_bad_values)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	cr_assert_eq(decode_p("core.error",
			     P(0xa2, 0x64, 'k', 'i', 'n', 'd', 0x63, 'o', 'o', 'f', 0x67, 'm', 'e',
				     's', 's', 'a', 'g', 'e', 0x60),
			     &m, &ei),
		PROTO_E_BAD_VALUE);
	cr_assert_str_eq(ei.field, "kind");
	cr_assert_eq(decode_p("core.tcp.failed",
			     P(0xa1, 0x65, 'e', 'r', 'r', 'o', 'r', 0x62, 0xc0, 0xaf), &m, &ei),
		PROTO_E_BAD_VALUE);
}

Test(bad_input, lists_without_arena_room_are_refused_cleanly)
{
	const struct vec *v = vec_find(vs, "V11");
	struct proto_frame f = tparse(v->frame, v->frame_len);
	struct proto_errinfo ei;
	struct proto_msg m;
	uint8_t small[56];
	struct proto_arena a;

	cr_assert_eq(proto_frame_decode(&f, &m, NULL, &ei), PROTO_E_NOSPACE);
	cr_assert_str_eq(ei.field, "args");
	proto_arena_init(&a, small, sizeof(small)); /* args fit, env does not */
	cr_assert_eq(proto_frame_decode(&f, &m, &a, &ei), PROTO_E_NOSPACE);
	cr_assert_str_eq(ei.field, "env");
}

Test(bad_input, shutdown_payload_is_never_decoded)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	cr_assert_eq(decode_p("core.shutdown", P(0xff, 0x1c), &m, &ei), 0);
	cr_assert_eq(decode_p("core.shutdown", "", 0, &m, &ei), 0);
	cr_assert_eq(m.type, PROTO_T_SHUTDOWN);
}

Test(bad_input, undefined_counts_as_an_absent_option)
{
	struct proto_errinfo ei;
	struct proto_msg m;

	cr_assert_eq(decode_p("core.exec.stdin.error",
			     P(0xa2, 0x65, 'e', 'r', 'r', 'n', 'o', 0xf7, 0x67, 'm', 'e', 's', 's',
				     'a', 'g', 'e', 0x61, 'x'),
			     &m, &ei),
		0);
	cr_assert_not(m.u.exec_stdin_error.err_no.set);
}

/* Every cap below the frame's size fails cleanly; the exact size suffices. */
static void check_caps(const struct proto_msg *m)
{
	uint8_t buf[512];
	long n;
	size_t k;

	n = proto_frame_encode(buf, sizeof(buf), 1, m);
	cr_assert_gt(n, 0);
	for (k = 0; k < (size_t)n; k++)
		cr_assert_eq(proto_frame_encode(buf, k, 1, m), PROTO_E_NOSPACE, "cap %zu", k);
	cr_assert_eq(proto_frame_encode(buf, (size_t)n, 1, m), n);
}

Test(bad_input, encoders_refuse_what_does_not_fit)
{
	static const struct proto_str args[] = {S("-c"), S("exit 3")};
	struct proto_msg m = {.type = PROTO_T_EXEC_RESIZE, .u.exec_resize = {1, 2}};
	uint8_t *big, *out, buf[64];

	check_caps(&m);		       /* payload under 24 bytes */
	m.type = PROTO_T_EXEC_REQUEST; /* 24..255 */
	m.u.exec_request = (struct proto_exec_request){.cmd = S("sh"), .args = args, .nargs = 2};
	check_caps(&m);
	m.type = PROTO_T_TCP_FAILED; /* 256 and more */
	m.u.tcp_failed.error = (struct proto_str){(const char *)frame_buf, 300};
	memset(frame_buf, 'e', 300);
	check_caps(&m);

	m.type = PROTO_T_ERROR;
	m.u.error = (struct proto_core_error){.kind = PROTO_ERROR__COUNT, .message = S("x")};
	cr_assert_eq(proto_frame_encode(buf, sizeof(buf), 1, &m), PROTO_E_BAD_VALUE);
	m.type = PROTO_T__END;
	cr_assert_eq(proto_frame_encode(buf, sizeof(buf), 1, &m), -EINVAL);

	big = malloc(PROTO_MAX_WIRE_SIZE);
	out = malloc(PROTO_MAX_WIRE_SIZE + 64);
	cr_assert(big && out);
	memset(big, 'a', PROTO_MAX_WIRE_SIZE);
	/* a data frame of exactly the maximum, then one byte over */
	m.type = PROTO_T_TCP_DATA;
	m.u.data = (struct proto_data){big, 4194261};
	cr_assert_eq(proto_frame_encode(out, PROTO_MAX_WIRE_SIZE + 64, 1, &m), PROTO_MAX_WIRE_SIZE);
	m.u.data.len++;
	cr_assert_eq(proto_frame_encode(out, PROTO_MAX_WIRE_SIZE + 64, 1, &m), PROTO_E_OVERSIZE);
	/* a control frame: tcp.failed has 46 bytes of overhead */
	m.type = PROTO_T_TCP_FAILED;
	m.u.tcp_failed.error = (struct proto_str){(const char *)big, PROTO_MAX_FRAME_LEN - 46};
	cr_assert_eq(proto_frame_encode(out, PROTO_MAX_WIRE_SIZE + 64, 1, &m), PROTO_MAX_WIRE_SIZE);
	m.u.tcp_failed.error.len++;
	cr_assert_eq(proto_frame_encode(out, PROTO_MAX_WIRE_SIZE + 64, 1, &m), PROTO_E_OVERSIZE);
	free(big);
	free(out);
}
