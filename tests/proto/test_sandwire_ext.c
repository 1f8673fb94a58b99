/*
 * tests/proto/test_sandwire_ext.c - sandwire's "credit" extension in the
 * codec (design/wire.md "Boot and announcement", "Flow control"): the
 * sandwire.credit type, the "sandwire" announcement in core.ready and the
 * sandwire_credit key of core.exec.request.  Unset, none of them changes a
 * byte of what a reference peer sees.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/msg.h"
#include "proto_test.h"

static uint8_t buf[4096], buf2[4096];

/* Encode <m> on id 9, parse the frame and decode it into <out>; returns the frame size. */
static long encode_decode(const struct proto_msg *m, struct proto_msg *out, struct proto_frame *f)
{
	struct proto_errinfo ei = {0};
	long n = proto_frame_encode(buf, sizeof(buf), 9, m);
	int rc;

	cr_assert_gt(n, 0, "encode: %s", proto_strerror((int)n));
	*f = tparse(buf, (size_t)n);
	rc = proto_frame_decode(f, out, test_arena(), &ei);
	cr_assert_eq(rc, 0, "decode: %s", proto_strerror(rc));
	return n;
}

/* The envelope's payload item of the frame in buf. */
static const uint8_t *payload_of(const struct proto_frame *f, size_t *len)
{
	struct proto_env e;

	cr_assert_eq(proto_env_decode(f->body, f->body_len, NULL, &e, NULL), 0);
	*len = e.p_len;
	return e.p;
}

Test(sandwire_ext, credit_type_is_an_extension_outside_the_reference_catalogue)
{
	enum proto_type t = proto_type_lookup("sandwire.credit", 15);

	cr_assert_eq(t, PROTO_T_SANDWIRE_CREDIT);
	cr_assert(proto_type_valid(t));
	cr_assert_geq((int)t, PROTO_T__COUNT);
	cr_assert_str_eq(proto_type_name(t), "sandwire.credit");
	cr_assert_eq(proto_type_flags(t), 0);
	cr_assert_eq(proto_type_table[t].dir, PROTO_DIR_BOTH);
	cr_assert_not(proto_type_is_data(t));
	cr_assert_not(proto_type_is_input_data(t));
	cr_assert_eq(proto_type_lookup("sandwire.creditx", 16), PROTO_T_UNKNOWN);
	cr_assert_eq(proto_type_lookup("sandwire.Credit", 15), PROTO_T_UNKNOWN);
}

Test(sandwire_ext, credit_encodes_as_bytes_map_in_a_v7_envelope)
{
	static const uint8_t want_p[] = {
		0xa1, 0x65, 'b', 'y', 't', 'e', 's', 0x1a, 0x00, 0x01, 0x00, 0x00};
	struct proto_msg m = {.type = PROTO_T_SANDWIRE_CREDIT}, out;
	struct proto_frame f;
	const uint8_t *p;
	size_t plen;
	long n;

	m.u.sandwire_credit.bytes = 65536;
	n = encode_decode(&m, &out, &f);
	cr_assert_eq(f.id, 9);
	cr_assert_eq(f.flags, 0);
	cr_assert_eq(out.type, PROTO_T_SANDWIRE_CREDIT);
	cr_assert_eq(out.v, PROTO_VERSION, "gated by the announcement, not the generation");
	cr_assert_eq(out.u.sandwire_credit.bytes, 65536);
	p = payload_of(&f, &plen);
	assert_bytes(p, (long)plen, want_p, sizeof(want_p), "sandwire.credit payload");
	cr_assert_eq(proto_msg_min_gen(&m), PROTO_VERSION);

	/* the whole u64 range */
	m.u.sandwire_credit.bytes = UINT64_MAX;
	cr_assert_eq(encode_decode(&m, &out, &f) > n, 1);
	cr_assert_eq(out.u.sandwire_credit.bytes, UINT64_MAX);
}

Test(sandwire_ext, credit_payload_errors)
{
	uint8_t p[64], body[128], fr[192];
	struct proto_errinfo ei = {0};
	struct proto_msg out;
	struct proto_frame f;
	struct cbw w;
	size_t n;

	/* {} : bytes is required */
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 0);
	n = tbody(body, sizeof(body), 7, "sandwire.credit", p, wr_done(&w));
	f = tparse(fr, tframe(fr, sizeof(fr), 3, 0, body, n));
	cr_assert_eq(proto_frame_decode(&f, &out, test_arena(), &ei), PROTO_E_MISSING_FIELD);
	cr_assert_eq(out.type, PROTO_T_SANDWIRE_CREDIT);
	cr_assert_str_eq(ei.field, "bytes");

	/* {"bytes": -1} */
	wr_begin(&w, p, sizeof(p), "bytes");
	cbw_int(&w, -1);
	n = tbody(body, sizeof(body), 7, "sandwire.credit", p, wr_done(&w));
	f = tparse(fr, tframe(fr, sizeof(fr), 3, 0, body, n));
	cr_assert_lt(proto_frame_decode(&f, &out, test_arena(), &ei), 0);

	/* unknown keys are ignored */
	cbw_init(&w, p, sizeof(p));
	cbw_map(&w, 2);
	cbw_key(&w, "later");
	cbw_bool(&w, true);
	cbw_key(&w, "bytes");
	cbw_uint(&w, 7);
	n = tbody(body, sizeof(body), 7, "sandwire.credit", p, wr_done(&w));
	f = tparse(fr, tframe(fr, sizeof(fr), 3, 0, body, n));
	cr_assert_eq(proto_frame_decode(&f, &out, test_arena(), &ei), 0);
	cr_assert_eq(out.u.sandwire_credit.bytes, 7);
}

Test(sandwire_ext, ready_announces_extensions_last_and_only_when_set)
{
	static const struct proto_str ext[] = {LIT("credit")};
	static const uint8_t tail[] = {0x68, 's', 'a', 'n', 'd', 'w', 'i', 'r', 'e', 0xa1, 0x63,
		'e', 'x', 't', 0x81, 0x66, 'c', 'r', 'e', 'd', 'i', 't'};
	struct proto_msg m = {.type = PROTO_T_READY}, out;
	struct proto_frame f;
	const uint8_t *p;
	size_t plen;
	long plain, n;

	m.u.ready = (struct proto_ready){.boot_time_ns = 1,
		.init_time_ns = 2,
		.ready_time_ns = 3,
		.agent_version = S("sandwire/1")};
	plain = encode_decode(&m, &out, &f);
	memcpy(buf2, buf, (size_t)plain);
	p = payload_of(&f, &plen);
	cr_assert_eq(p[0], 0xa4, "four keys without the announcement");
	cr_assert_eq(out.u.ready.n_ext, 0);
	cr_assert_null(out.u.ready.ext);

	m.u.ready.ext = ext;
	m.u.ready.n_ext = 1;
	n = encode_decode(&m, &out, &f);
	cr_assert_eq(n, plain + (long)sizeof(tail));
	cr_assert_eq(out.v, PROTO_VERSION, "the announcement needs no generation");
	p = payload_of(&f, &plen);
	cr_assert_eq(p[0], 0xa5);
	assert_bytes(p + plen - sizeof(tail), (long)sizeof(tail), tail, sizeof(tail),
		"announcement at the end");
	cr_assert_eq(out.u.ready.n_ext, 1);
	cr_assert(proto_ext_named(out.u.ready.ext, out.u.ready.n_ext, PROTO_EXT_CREDIT));
	cr_assert_not(proto_ext_named(out.u.ready.ext, out.u.ready.n_ext, "cred"));
	cr_assert_str_is(out.u.ready.agent_version, "sandwire/1");

	/* unset again: the bytes of before */
	m.u.ready.n_ext = 0;
	n = proto_frame_encode(buf, sizeof(buf), 9, &m);
	cr_assert_eq(n, plain);
	cr_assert_arr_eq(buf, buf2, (size_t)n);
}

Test(sandwire_ext, ready_announcement_decodes_leniently)
{
	uint8_t p[256], body[384], fr[512];
	struct proto_msg out;
	struct proto_frame f;
	struct cbw w;
	size_t n;

	/* "sandwire": null, then {"future": 1, "ext": ["a", "credit"]} */
	for (int pass = 0; pass < 2; pass++) {
		cbw_init(&w, p, sizeof(p));
		cbw_map(&w, 4);
		cbw_key(&w, "sandwire");
		if (pass == 0) {
			cbw_null(&w);
		} else {
			cbw_map(&w, 2);
			cbw_key(&w, "future");
			cbw_uint(&w, 1);
			cbw_key(&w, "ext");
			cbw_array(&w, 2);
			cbw_cstr(&w, "a");
			cbw_cstr(&w, "credit");
		}
		cbw_key(&w, "boot_time_ns");
		cbw_uint(&w, 1);
		cbw_key(&w, "init_time_ns");
		cbw_uint(&w, 2);
		cbw_key(&w, "ready_time_ns");
		cbw_uint(&w, 3);
		n = tbody(body, sizeof(body), 7, "core.ready", p, wr_done(&w));
		f = tparse(fr, tframe(fr, sizeof(fr), 0, 0, body, n));
		cr_assert_eq(proto_frame_decode(&f, &out, test_arena(), NULL), 0);
		cr_assert_eq(out.u.ready.n_ext, pass ? 2u : 0u);
		cr_assert_eq(proto_ext_named(out.u.ready.ext, out.u.ready.n_ext, PROTO_EXT_CREDIT),
			pass == 1);
	}
}

Test(sandwire_ext, exec_request_credit_key_is_omitted_when_unset)
{
	static const uint8_t tail[] = {0x6f, 's', 'a', 'n', 'd', 'w', 'i', 'r', 'e', '_', 'c', 'r',
		'e', 'd', 'i', 't', 0x1a, 0x00, 0x04, 0x00, 0x00};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST}, out;
	struct proto_frame f;
	const uint8_t *p;
	size_t plen;
	long plain, n;

	m.u.exec_request = (struct proto_exec_request){.cmd = S("cat"), .rows = 24, .cols = 80};
	plain = encode_decode(&m, &out, &f);
	p = payload_of(&f, &plen);
	cr_assert_eq(p[0], 0xa9, "the reference's nine keys");
	cr_assert_not(out.u.exec_request.sandwire_credit.set);
	cr_assert_eq(f.flags, PROTO_FLAG_SESSION_START);

	m.u.exec_request.sandwire_credit =
		(struct proto_opt_u64){true, PROTO_SANDWIRE_CREDIT_WINDOW};
	n = encode_decode(&m, &out, &f);
	cr_assert_eq(n, plain + (long)sizeof(tail));
	p = payload_of(&f, &plen);
	cr_assert_eq(p[0], 0xaa);
	assert_bytes(p + plen - sizeof(tail), (long)sizeof(tail), tail, sizeof(tail),
		"sandwire_credit at the end");
	cr_assert(out.u.exec_request.sandwire_credit.set);
	cr_assert_eq(out.u.exec_request.sandwire_credit.v, 262144);
	cr_assert_eq(out.v, PROTO_VERSION);
	cr_assert_str_is(out.u.exec_request.cmd, "cat");
}

Test(sandwire_ext, bootstrap_and_ready_end_with_the_same_announcement)
{
	static struct proto_str names[] = {LIT("bulk-lease"), LIT("credit")};
	struct proto_msg b = {.type = PROTO_T_BOOTSTRAP}, r = {.type = PROTO_T_READY}, out;
	struct proto_frame f;
	const uint8_t *p;
	uint8_t want[64];
	size_t plen, wlen;
	struct cbw w;

	cbw_init(&w, want, sizeof(want));
	cbw_key(&w, "sandwire");
	cbw_map(&w, 1);
	cbw_key(&w, "ext");
	cbw_array(&w, 2);
	cbw_cstr(&w, "bulk-lease");
	cbw_cstr(&w, "credit");
	wlen = wr_done(&w);

	b.u.bootstrap.ext = names;
	b.u.bootstrap.n_ext = 2;
	encode_decode(&b, &out, &f);
	cr_assert(proto_ext_named(out.u.bootstrap.ext, out.u.bootstrap.n_ext, PROTO_EXT_CREDIT));
	p = payload_of(&f, &plen);
	assert_bytes(p + plen - wlen, (long)wlen, want, wlen, "bootstrap announcement");

	r.u.ready.ext = names;
	r.u.ready.n_ext = 2;
	encode_decode(&r, &out, &f);
	p = payload_of(&f, &plen);
	assert_bytes(p + plen - wlen, (long)wlen, want, wlen, "ready announcement");
	cr_assert_eq(out.u.ready.n_ext, 2);
	cr_assert_str_is(out.u.ready.ext[0], "bulk-lease");
}
