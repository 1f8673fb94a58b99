/*
 * tests/proto/test_cbor.c - the CBOR writer and the pull reader.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/error.h"
#include "tests/proto/proto_test.h"

/* Reader over a byte literal. */
#define RD(r, ...)                                                                                 \
	static const uint8_t r##_buf[] = {__VA_ARGS__};                                            \
	struct cbr r;                                                                              \
	cbr_init(&r, r##_buf, sizeof(r##_buf), NULL)

Test(cbor_wr, writes_shortest_heads)
{
	static const struct {
		uint64_t v;
		uint8_t enc[9];
		size_t n;
	} cases[] = {
		{0, {0x00}, 1},
		{23, {0x17}, 1},
		{24, {0x18, 24}, 2},
		{255, {0x18, 0xff}, 2},
		{256, {0x19, 0x01, 0x00}, 3},
		{65535, {0x19, 0xff, 0xff}, 3},
		{65536, {0x1a, 0, 1, 0, 0}, 5},
		{UINT32_MAX, {0x1a, 0xff, 0xff, 0xff, 0xff}, 5},
		{1ull << 32, {0x1b, 0, 0, 0, 1, 0, 0, 0, 0}, 9},
		{UINT64_MAX, {0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
	};
	uint8_t buf[16];
	struct cbw w;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cbw_init(&w, buf, sizeof(buf));
		cbw_uint(&w, cases[i].v);
		cr_assert_eq(cbw_finish(&w), (long)cases[i].n);
		cr_assert_arr_eq(buf, cases[i].enc, cases[i].n);
		cr_assert_eq(cbw_head_size(cases[i].v), cases[i].n);
	}
}

Test(cbor_wr, writes_negative_integers_as_major_type_1)
{
	uint8_t buf[32];
	struct cbw w;

	cbw_init(&w, buf, sizeof(buf));
	cbw_int(&w, -1);
	cbw_int(&w, -25);
	cbw_int(&w, INT64_MIN);
	cbw_int(&w, 7);
	cr_assert_eq(cbw_finish(&w), 1 + 2 + 9 + 1);
	cr_assert_eq(buf[0], 0x20);
	cr_assert_eq(buf[1], 0x38);
	cr_assert_eq(buf[2], 24);
	cr_assert_eq(buf[3], 0x3b);
	cr_assert_eq(buf[4], 0x7f);
	cr_assert_eq(buf[11], 0xff);
	cr_assert_eq(buf[12], 0x07);
}

Test(cbor_wr, writes_strings_maps_and_simple_values)
{
	static const uint8_t want[] = {0xa3, 0x61, 'k', 0x43, 1, 2, 3, 0x60, 0x80, 0xf5, 0xf6};
	uint8_t buf[32];
	struct cbw w;

	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 3);
	cbw_key(&w, "k");
	cbw_bytes(&w, "\x01\x02\x03", 3);
	cbw_text(&w, NULL, 0);
	cbw_array(&w, 0);
	cbw_bool(&w, true);
	cbw_null(&w);
	cr_assert_eq(cbw_finish(&w), (long)sizeof(want));
	cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(cbor_wr, overflow_is_sticky)
{
	uint8_t buf[4];
	struct cbw w;

	cbw_init(&w, buf, sizeof(buf));
	cbw_cstr(&w, "abc");
	cr_assert_eq(cbw_finish(&w), 4);
	cbw_uint(&w, 1000); /* needs 3 bytes: does not fit */
	cr_assert_eq(cbw_finish(&w), PROTO_E_NOSPACE);
	cbw_null(&w);
	cr_assert_eq(cbw_finish(&w), PROTO_E_NOSPACE);
	cbw_init(&w, buf, sizeof(buf));
	cbw_text(&w, "abcd", 4); /* head fits, content does not */
	cr_assert_eq(cbw_finish(&w), PROTO_E_NOSPACE);
}

Test(cbor_rd, reads_integers_of_any_head_width)
{
	RD(r, 0x18, 0x05, 0x19, 0x00, 0x05, 0x1a, 0, 0, 0, 5, 0x1b, 0, 0, 0, 0, 0, 0, 0, 5, 0x05);
	uint16_t v;
	int i;

	for (i = 0; i < 5; i++) {
		cr_assert_eq(cbr_u16(&r, &v), 0);
		cr_assert_eq(v, 5);
	}
	cr_assert_eq(cbr_offset(&r), sizeof(r_buf));
}

Test(cbor_rd, checks_integer_ranges)
{
	RD(r, 0x1a, 0x00, 0x01, 0x11, 0x70,   /* 70000 */
		0x20,			      /* -1 */
		0x3a, 0x7f, 0xff, 0xff, 0xff, /* -2^31 */
		0x3a, 0x80, 0x00, 0x00, 0x00, /* -2^31 - 1 */
		0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
	const uint8_t *p;
	uint64_t u64;
	int64_t i64;
	int32_t i32;
	uint16_t u16;
	uint32_t u32;

	p = r.p;
	cr_assert_eq(cbr_u16(&r, &u16), PROTO_E_RANGE);
	r.p = p;
	cr_assert_eq(cbr_u32(&r, &u32), 0);
	cr_assert_eq(u32, 70000);
	p = r.p;
	cr_assert_eq(cbr_u64(&r, &u64), PROTO_E_RANGE); /* a negative u64 */
	r.p = p;
	cr_assert_eq(cbr_i32(&r, &i32), 0);
	cr_assert_eq(i32, -1);
	cr_assert_eq(cbr_i32(&r, &i32), 0);
	cr_assert_eq(i32, INT32_MIN);
	p = r.p;
	cr_assert_eq(cbr_i32(&r, &i32), PROTO_E_RANGE);
	r.p = p;
	cr_assert_eq(cbr_i64(&r, &i64), 0);
	cr_assert_eq(i64, (int64_t)INT32_MIN - 1);
	p = r.p;
	cr_assert_eq(cbr_i64(&r, &i64), PROTO_E_RANGE);
	r.p = p;
	cr_assert_eq(cbr_u64(&r, &u64), 0);
	cr_assert_eq(u64, UINT64_MAX);
}

Test(cbor_rd, accepts_integral_floats_only)
{
	RD(r, 0xf9, 0x52, 0x40,					      /* half 50.0 */
		0xfa, 0x47, 0x80, 0x00, 0x00,			      /* single 65536.0 */
		0xfb, 0x41, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* double 2^32 */
		0xfb, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* double -2.0 */
		0xf9, 0x3e, 0x00,				      /* half 1.5 */
		0xf9, 0x7e, 0x00);				      /* half NaN */
	const uint8_t *p;
	uint64_t u64;
	uint16_t u16;
	int32_t i32;

	cr_assert_eq(cbr_u16(&r, &u16), 0);
	cr_assert_eq(u16, 50);
	p = r.p;
	cr_assert_eq(cbr_u16(&r, &u16), PROTO_E_RANGE);
	r.p = p;
	cr_assert_eq(cbr_u64(&r, &u64), 0);
	cr_assert_eq(u64, 65536);
	cr_assert_eq(cbr_u64(&r, &u64), 0);
	cr_assert_eq(u64, 1ull << 32);
	cr_assert_eq(cbr_i32(&r, &i32), 0);
	cr_assert_eq(i32, -2);
	cr_assert_eq(cbr_i32(&r, &i32), PROTO_E_WRONG_TYPE);
	cr_assert_eq(cbr_i32(&r, &i32), PROTO_E_WRONG_TYPE);
}

Test(cbor_rd, reads_tag_2_bignums_as_integers)
{
	RD(r, 0xc2, 0x42, 0x01, 0x00,					       /* 256 */
		0xc2, 0x49, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* u64 max, padded */
		0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0);			       /* 2^64 */
	uint64_t v;

	cr_assert_eq(cbr_u64(&r, &v), 0);
	cr_assert_eq(v, 256);
	cr_assert_eq(cbr_u64(&r, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(cbr_u64(&r, &v), PROTO_E_RANGE);
}

Test(cbor_rd, skips_tags_before_items)
{
	/* tag 64 (cbor-x Uint8Array), tag 6 (a head libcbor itself rejects), tag 2^32 */
	RD(r, 0xd8, 0x40, 0x42, 0xaa, 0xbb, 0xc6, 0x61, 'x', 0xdb, 0, 0, 0, 1, 0, 0, 0, 0, 0xf5);
	const uint8_t *p;
	struct proto_str s;
	size_t len;
	bool b;

	cr_assert_eq(cbr_bytes(&r, &p, &len), 0);
	cr_assert_eq(len, 2);
	cr_assert_eq(p, r_buf + 3); /* into the input */
	cr_assert_eq(cbr_text(&r, &s), 0);
	cr_assert_str_is(s, "x");
	cr_assert_eq(cbr_bool(&r, &b), 0);
	cr_assert(b);
}

Test(cbor_rd, rejects_reserved_additional_info)
{
	static const uint8_t majors[] = {0x00, 0x20, 0x40, 0x60, 0x80, 0xa0, 0xc0, 0xe0};
	struct cbr_item it;
	struct cbr r;
	uint8_t b;
	size_t i, ai;

	for (i = 0; i < sizeof(majors); i++) {
		for (ai = 28; ai <= 30; ai++) {
			b = (uint8_t)(majors[i] | ai);
			cbr_init(&r, &b, 1, NULL);
			cr_assert_eq(cbr_next(&r, &it), PROTO_E_CBOR, "head %02x", b);
			cr_assert_eq(cbr_skip(&r), PROTO_E_CBOR, "head %02x", b);
		}
	}
}

Test(cbor_rd, rejects_a_break_outside_an_indefinite_item)
{
	RD(r1, 0xff);
	RD(r2, 0x82, 0x01, 0xff);	/* break inside a definite array */
	RD(r3, 0xbf, 0x61, 'a', 0xff);	/* break after a key, before its value */
	RD(r4, 0x9f, 0xd8, 0x40, 0xff); /* a tag on a break */
	struct cbr_agg a;
	uint32_t v;

	cr_assert_eq(cbr_skip(&r1), PROTO_E_CBOR);
	cr_assert_eq(cbr_skip(&r2), PROTO_E_CBOR);
	cr_assert_eq(cbr_skip(&r3), PROTO_E_CBOR);
	cr_assert_eq(cbr_skip(&r4), PROTO_E_CBOR);
	r1.p = r1_buf;
	cr_assert_eq(cbr_u32(&r1, &v), PROTO_E_CBOR);
	r1.p = r1_buf;
	cr_assert_eq(cbr_enter_map(&r1, (struct cbr_agg *)&a), PROTO_E_CBOR);
}

Test(cbor_rd, skips_nested_and_indefinite_items)
{
	RD(r, 0xa2, 0x61, 'a', 0x9f, 0x01, 0x5f, 0x41, 0x00, 0x40, 0xff, 0xbf, 0x00, 0x7f, 0x61,
		'x', 0xff, 0xff, 0xff, 0x61, 'b', 0xc1, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0x07);
	uint8_t v;

	cr_assert_eq(cbr_skip(&r), 0);
	cr_assert_eq(cbr_u8(&r, &v), 0);
	cr_assert_eq(v, 7);
}

Test(cbor_rd, rejects_bad_indefinite_string_chunks)
{
	RD(r1, 0x5f, 0x61, 'x', 0xff);	/* a text chunk in a byte string */
	RD(r2, 0x7f, 0x7f, 0xff, 0xff); /* nested indefinite chunk */
	struct proto_str s;

	cr_assert_eq(cbr_skip(&r1), PROTO_E_CBOR);
	cr_assert_eq(cbr_text(&r2, &s), PROTO_E_CBOR);
}

/* Build <levels> nested arrays around 0. */
static size_t nested(uint8_t *buf, size_t levels, uint8_t head)
{
	memset(buf, head, levels);
	buf[levels] = 0x00;
	return levels + 1;
}

Test(cbor_rd, bounds_nesting_at_256_levels)
{
	static uint8_t buf[400];
	struct cbr r;
	size_t n;

	n = nested(buf, 256, 0x81);
	cbr_init(&r, buf, n, NULL);
	cr_assert_eq(cbr_skip(&r), 0);
	n = nested(buf, 257, 0x81);
	cbr_init(&r, buf, n, NULL);
	cr_assert_eq(cbr_skip(&r), PROTO_E_DEPTH);
	n = nested(buf, 257, 0x9f); /* indefinite arrays (never closed) */
	cbr_init(&r, buf, n, NULL);
	cr_assert_eq(cbr_skip(&r), PROTO_E_DEPTH);
	/* the depth already entered counts */
	n = nested(buf, 256, 0x81);
	cbr_init(&r, buf, n, NULL);
	r.depth = 1;
	cr_assert_eq(cbr_skip(&r), PROTO_E_DEPTH);
}

Test(cbor_rd, reports_truncation_not_garbage)
{
	static const uint8_t full[] = {0xa2, 0x61, 'a', 0x19, 0x01, 0x00, 0x61, 'b', 0x82, 0x43, 1,
		2, 3, 0x5f, 0x41, 9, 0xff};
	struct cbr r;
	size_t k;

	for (k = 0; k < sizeof(full); k++) {
		cbr_init(&r, full, k, NULL);
		cr_assert_eq(cbr_skip(&r), PROTO_E_TRUNCATED, "cut at %zu", k);
	}
	cbr_init(&r, full, sizeof(full), NULL);
	cr_assert_eq(cbr_skip(&r), 0);
}

Test(cbor_rd, rejects_counts_larger_than_the_input)
{
	RD(r1, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00);
	RD(r2, 0xbb, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00);
	RD(r3, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00);
	struct cbr_agg a;

	cr_assert_eq(cbr_skip(&r1), PROTO_E_TRUNCATED);
	cr_assert_eq(cbr_enter_map(&r2, &a), PROTO_E_TRUNCATED);
	cr_assert_eq(cbr_skip(&r3), PROTO_E_TRUNCATED);
}

Test(cbor_rd, iterates_definite_and_indefinite_maps)
{
	RD(r, 0xb9, 0x00, 0x02, 0x61, 'a', 0x01, 0x61, 'b', 0x02, /* cbor-x 16-bit map head */
		0xbf, 0x61, 'c', 0x03, 0xff);
	struct proto_str key;
	struct cbr_agg m;
	uint32_t v, sum = 0;
	int rc, n = 0;

	cr_assert_eq(cbr_enter_map(&r, &m), 0);
	cr_assert_eq(r.depth, 1);
	while ((rc = cbr_agg_next(&r, &m)) > 0) {
		cr_assert_eq(cbr_key(&r, &key), 0);
		cr_assert_eq(cbr_u32(&r, &v), 0);
		sum += v;
		n++;
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.depth, 0);
	cr_assert_eq(cbr_enter_map(&r, &m), 0);
	while ((rc = cbr_agg_next(&r, &m)) > 0) {
		cr_assert_eq(cbr_key(&r, &key), 0);
		cr_assert_str_is(key, "c");
		cr_assert_eq(cbr_u32(&r, &v), 0);
		sum += v;
		n++;
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.depth, 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(sum, 6);
}

Test(cbor_rd, accepts_byte_keys_and_refuses_indefinite_keys)
{
	RD(r1, 0x41, 'k');
	RD(r2, 0x7f, 0x61, 'k', 0xff);
	RD(r3, 0x01);
	struct proto_str key;

	cr_assert_eq(cbr_key(&r1, &key), 0);
	cr_assert_str_is(key, "k");
	cr_assert_eq(cbr_key(&r2, &key), PROTO_E_WRONG_TYPE);
	cr_assert_eq(cbr_key(&r3, &key), PROTO_E_WRONG_TYPE);
}

Test(cbor_rd, assembles_indefinite_strings_in_the_arena)
{
	static const uint8_t in[] = {
		0x7f, 0x62, 'a', 'b', 0x60, 0x61, 'c', 0xff, 0x5f, 0x41, 1, 0x42, 2, 3, 0xff};
	uint8_t mem[64];
	struct proto_arena a;
	struct proto_str s;
	const uint8_t *p;
	struct cbr r;
	size_t len;

	cbr_init(&r, in, sizeof(in), NULL);
	cr_assert_eq(cbr_text(&r, &s), PROTO_E_NOSPACE);
	proto_arena_init(&a, mem, sizeof(mem));
	cbr_init(&r, in, sizeof(in), &a);
	cr_assert_eq(cbr_text(&r, &s), 0);
	cr_assert_str_is(s, "abc");
	cr_assert(s.ptr >= (const char *)mem && s.ptr < (const char *)mem + sizeof(mem));
	cr_assert_eq(cbr_bytes(&r, &p, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_arr_eq(p, "\x01\x02\x03", 3);
	cr_assert_eq(cbr_offset(&r), sizeof(in));
}

Test(cbor_rd, reads_byte_fields_sent_as_integer_arrays)
{
	static const uint8_t in[] = {
		0x83, 0x01, 0x18, 0xff, 0x00, 0x9f, 0x02, 0xff, 0x82, 0x19, 0x01, 0x00, 0x00};
	uint8_t mem[64];
	struct proto_arena a;
	const uint8_t *p;
	struct cbr r;
	size_t len;

	proto_arena_init(&a, mem, sizeof(mem));
	cbr_init(&r, in, sizeof(in), &a);
	cr_assert_eq(cbr_bytes(&r, &p, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_arr_eq(p, "\x01\xff\x00", 3);
	cr_assert_eq(cbr_bytes(&r, &p, &len), 0);
	cr_assert_eq(len, 1);
	cr_assert_eq(p[0], 2);
	cr_assert_eq(r.depth, 0);
	cr_assert_eq(cbr_bytes(&r, &p, &len), PROTO_E_RANGE); /* 256 is no byte */
}

Test(cbor_rd, validates_utf8_text)
{
	RD(r1, 0x62, 0xc3, 0xa9);	/* é */
	RD(r2, 0x62, 0xc0, 0x80);	/* overlong NUL */
	RD(r3, 0x63, 0xed, 0xa0, 0x80); /* surrogate */
	RD(r4, 0x61, 0xff);
	struct proto_str s;

	cr_assert_eq(cbr_text(&r1, &s), 0);
	cr_assert_eq(cbr_text(&r2, &s), PROTO_E_BAD_VALUE);
	cr_assert_eq(cbr_text(&r3, &s), PROTO_E_BAD_VALUE);
	cr_assert_eq(cbr_text(&r4, &s), PROTO_E_BAD_VALUE);
}

Test(cbor_rd, absent_means_null_or_undefined_and_consumes_nothing_else)
{
	RD(r, 0xf6, 0xf7, 0xd8, 0x40, 0xf6, 0x05);
	uint8_t v;

	cr_assert_eq(cbr_absent(&r), 1);
	cr_assert_eq(cbr_absent(&r), 1);
	cr_assert_eq(cbr_absent(&r), 1); /* tagged null */
	cr_assert_eq(cbr_absent(&r), 0);
	cr_assert_eq(cbr_offset(&r), 5);
	cr_assert_eq(cbr_u8(&r, &v), 0);
	cr_assert_eq(v, 5);
}

Test(cbor_rd, wrong_types_are_reported)
{
	RD(r, 0x61, 'x');
	const uint8_t *p;
	struct cbr_agg a;
	size_t len;
	bool b;
	uint8_t v;

	cr_assert_eq(cbr_u8(&r, &v), PROTO_E_WRONG_TYPE);
	r.p = r_buf;
	cr_assert_eq(cbr_bool(&r, &b), PROTO_E_WRONG_TYPE);
	r.p = r_buf;
	cr_assert_eq(cbr_bytes(&r, &p, &len), PROTO_E_WRONG_TYPE);
	r.p = r_buf;
	cr_assert_eq(cbr_enter_map(&r, &a), PROTO_E_WRONG_TYPE);
	r.p = r_buf;
	cr_assert_eq(cbr_enter_array(&r, &a), PROTO_E_WRONG_TYPE);
}

Test(cbor_rd, arena_aligns_and_refuses_overflow)
{
	uint8_t mem[32];
	struct proto_arena a;
	uint8_t *p1, *p2;

	proto_arena_init(&a, mem, sizeof(mem));
	p1 = proto_arena_alloc(&a, 3);
	p2 = proto_arena_alloc(&a, 8);
	cr_assert_not_null(p1);
	cr_assert_eq(p2, p1 + 8);
	cr_assert_null(proto_arena_alloc(&a, 17));
	cr_assert_not_null(proto_arena_alloc(&a, 16));
	cr_assert_null(proto_arena_alloc(NULL, 1));
}

Test(proto_error, names_codes_and_formats_context)
{
	struct proto_errinfo ei = {PROTO_E_MISSING_FIELD, 12, "core.exec.resize", "cols"};
	char buf[128];

	cr_assert_str_eq(proto_strerror(PROTO_E_DEPTH), "nesting too deep");
	cr_assert_str_eq(proto_strerror(-2), "No such file or directory");
	cr_assert_str_eq(proto_strerror(-999999), "unknown error");
	cr_assert_str_eq(proto_errinfo_format(&ei, buf, sizeof(buf)),
		"core.exec.resize: field `cols`: missing field at offset 12");
	ei.type = NULL;
	ei.field = NULL;
	cr_assert_str_eq(proto_errinfo_format(&ei, buf, 8), "missing");
}
