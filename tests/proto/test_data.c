/*
 * tests/proto/test_data.c - zero-copy data frames: the prefix written into
 * a chunk's headroom, byte-identical to the vectors, and decoding with no
 * heap allocation.
 *
 * Allocation counting: perf/bench/alloc_count.h (shared with the codec
 * benchmarks) counts every heap allocation of the test's thread, libcbor's
 * included: in normal builds it defines malloc, calloc, realloc and free,
 * in sanitizer builds it installs the sanitizer's allocation hook.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "perf/bench/alloc_count.h"
#include "proto/data.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "tests/proto/proto_test.h"

static struct vec_set *vs;

static void setup(void)
{
	vs = vec_load();
	alloc_count_init();
}

static void teardown(void)
{
	free(vs);
}

TestSuite(data, .init = setup, .fini = teardown);

/* A chunk with <cap> data bytes, reset (payload at CHUNK_HEADROOM). */
static struct chunk *chunk_new_test(uint32_t cap)
{
	struct chunk *c = calloc(1, sizeof(*c) + cap);

	cr_assert_not_null(c);
	c->cap = cap;
	chunk_reset(c);
	return c;
}

/* Payload at chunk_ptr(), then prepend: the chunk must hold vector <name>'s frame. */
static void check_prepend(const char *name, enum proto_type t, const char *data, size_t n)
{
	const struct vec *v = vec_find(vs, name);
	struct chunk *c = chunk_new_test(256);

	memcpy(chunk_ptr(c), data, n);
	c->len = (uint32_t)n;
	cr_assert_eq(proto_data_prefix_size(t, n), v->frame_len - n);
	cr_assert_eq(proto_data_frame_prepend(c, t, v->id), 0);
	cr_assert_eq(c->len, v->frame_len);
	cr_assert_arr_eq(chunk_ptr(c), v->frame, v->frame_len, "%s", name);
	free(c);
}

Test(data, prefix_in_headroom_matches_the_vectors)
{
	check_prepend("V14", PROTO_T_EXEC_STDIN, "hello\n", 6);
	check_prepend("V15", PROTO_T_EXEC_STDIN, "", 0);
	check_prepend("V16", PROTO_T_EXEC_STDOUT, "hello\r\n", 7);
	check_prepend("V17", PROTO_T_EXEC_STDERR, "done\n", 5);
	check_prepend("V29", PROTO_T_FS_DATA, "hello", 5);
	check_prepend("V30", PROTO_T_FS_DATA, "", 0);
	check_prepend("V37", PROTO_T_TCP_DATA, "GET / HTTP/1.0\r\n\r\n", 18);
}

/* Spec 1.2: the largest payloads that fit, and their fixed overheads. */
Test(data, largest_payloads_fit_and_one_more_byte_does_not)
{
	static const struct {
		enum proto_type t;
		size_t max;
		size_t overhead;
	} cases[] = {
		{PROTO_T_EXEC_STDIN, 4194259, 45},
		{PROTO_T_EXEC_STDOUT, 4194258, 46},
		{PROTO_T_EXEC_STDERR, 4194258, 46},
		{PROTO_T_TCP_DATA, 4194261, 43},
		{PROTO_T_FS_DATA, 4194262, 42},
	};
	uint8_t buf[64];
	size_t i, prefix;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		prefix = proto_data_prefix_size(cases[i].t, cases[i].max);
		/* len = overhead + data; the wire adds the 4 length bytes */
		cr_assert_eq(prefix - PROTO_LEN_SIZE, cases[i].overhead);
		cr_assert_eq(prefix + cases[i].max, PROTO_MAX_WIRE_SIZE);
		cr_assert_leq(prefix, CHUNK_HEADROOM);
		cr_assert_eq(proto_data_prefix_write(buf, sizeof(buf), cases[i].t, 1, cases[i].max),
			(long)prefix);
		cr_assert_eq(proto_be32(buf), PROTO_MAX_FRAME_LEN);
		cr_assert_eq(
			proto_data_prefix_write(buf, sizeof(buf), cases[i].t, 1, cases[i].max + 1),
			PROTO_E_OVERSIZE);
	}
}

Test(data, prefix_write_refuses_other_types_and_short_buffers)
{
	uint8_t buf[64];
	struct chunk *c = chunk_new_test(128);

	cr_assert_eq(proto_data_prefix_size(PROTO_T_EXEC_RESIZE, 10), 0);
	cr_assert_eq(proto_data_prefix_write(buf, sizeof(buf), PROTO_T_EXEC_RESIZE, 1, 10),
		PROTO_E_BAD_VALUE);
	cr_assert_eq(proto_data_prefix_write(buf, 20, PROTO_T_TCP_DATA, 1, 10), PROTO_E_NOSPACE);
	c->len = 10;
	cr_assert_eq(proto_data_frame_prepend(c, PROTO_T_PING, 1), PROTO_E_BAD_VALUE);
	c->off = 20; /* headroom too small for the 39-byte prefix */
	cr_assert_eq(proto_data_frame_prepend(c, PROTO_T_TCP_DATA, 1), PROTO_E_NOSPACE);
	cr_assert_eq(c->off, 20); /* unchanged */
	cr_assert_eq(c->len, 10);
	free(c);
}

#define BIG (64 * 1024)

/* A 64 KiB stdout frame built in a chunk, decoded with no heap allocation. */
Test(data, decoding_a_64k_frame_allocates_nothing)
{
	struct chunk *c = chunk_new_test(CHUNK_HEADROOM + BIG);
	const uint8_t *data = NULL;
	struct proto_frame f;
	struct proto_msg m;
	struct proto_env e;
	size_t len = 0, i;
	int rc1, rc2, rc3, rc4;
	long allocs;

	for (i = 0; i < BIG; i++)
		chunk_ptr(c)[i] = (uint8_t)(i * 31);
	c->len = BIG;

	allocs = alloc_count();
	rc1 = proto_data_frame_prepend(c, PROTO_T_EXEC_STDOUT, 9);
	rc2 = proto_frame_parse(chunk_ptr(c), c->len, &f);
	rc3 = proto_frame_decode(&f, &m, NULL, NULL);
	rc4 = proto_env_decode(f.body, f.body_len, NULL, &e, NULL) ||
	      proto_data_decode(&e, NULL, &data, &len);
	allocs = alloc_count() - allocs;

	cr_assert_eq(rc1, 0);
	cr_assert_eq(rc2, (int)c->len);
	cr_assert_eq(rc3, 0);
	cr_assert_eq(rc4, 0);
	cr_assert_eq(allocs, 0, "%ld heap allocations while decoding", allocs);
	cr_assert_eq(m.type, PROTO_T_EXEC_STDOUT);
	cr_assert_eq(m.u.data.len, BIG);
	cr_assert_eq(len, BIG);
	/* the data is the chunk's own memory: zero copy */
	cr_assert_eq(m.u.data.ptr, c->data + CHUNK_HEADROOM);
	cr_assert_eq(data, c->data + CHUNK_HEADROOM);
	free(c);
}

/* The counter is live: the same bytes through libcbor's item API allocate. */
Test(data, the_allocation_counter_sees_libcbor_allocations)
{
	struct chunk *c = chunk_new_test(CHUNK_HEADROOM + BIG);
	struct cbor_load_result res;
	void *(*volatile do_malloc)(size_t) = malloc;
	struct proto_frame f;
	cbor_item_t *item;
	long allocs;
	void *p;

	c->len = BIG;
	cr_assert_eq(proto_data_frame_prepend(c, PROTO_T_EXEC_STDOUT, 9), 0);
	cr_assert_gt(proto_frame_parse(chunk_ptr(c), c->len, &f), 0);

	allocs = alloc_count();
	p = do_malloc(16);
	allocs = alloc_count() - allocs;
	free(p);
	cr_assert_eq(allocs, 1);

	allocs = alloc_count();
	item = cbor_load(f.body, f.body_len, &res);
	allocs = alloc_count() - allocs;
	cr_assert_not_null(item);
	cr_assert_gt(allocs, 0);
	cbor_decref(&item);
	free(c);
}

Test(data, accepts_tagged_and_reordered_payloads)
{
	/* {"x": 1, "data": 64(h'6869')} as cbor-x writes it (16-bit map head) */
	static const uint8_t p[] = {0xb9, 0x00, 0x02, 0x61, 'x', 0x01, 0x64, 'd', 'a', 't', 'a',
		0xd8, 0x40, 0x42, 'h', 'i'};
	struct proto_env e = {.p = p, .p_len = sizeof(p)};
	const uint8_t *data;
	size_t len;

	cr_assert_eq(proto_data_decode(&e, NULL, &data, &len), 0);
	cr_assert_eq(len, 2);
	cr_assert_eq(data, p + sizeof(p) - 2);
}

Test(data, rare_forms_need_an_arena)
{
	/* {"data": (_ h'68', h'69')} and {"data": [104, 105]} */
	static const uint8_t p1[] = {
		0xa1, 0x64, 'd', 'a', 't', 'a', 0x5f, 0x41, 'h', 0x41, 'i', 0xff};
	static const uint8_t p2[] = {0xa1, 0x64, 'd', 'a', 't', 'a', 0x82, 0x18, 104, 0x18, 105};
	struct proto_env e1 = {.p = p1, .p_len = sizeof(p1)};
	struct proto_env e2 = {.p = p2, .p_len = sizeof(p2)};
	uint8_t mem[64];
	struct proto_arena a;
	const uint8_t *data;
	size_t len;

	cr_assert_eq(proto_data_decode(&e1, NULL, &data, &len), PROTO_E_NOSPACE);
	cr_assert_eq(proto_data_decode(&e2, NULL, &data, &len), PROTO_E_NOSPACE);
	proto_arena_init(&a, mem, sizeof(mem));
	cr_assert_eq(proto_data_decode(&e1, &a, &data, &len), 0);
	cr_assert_eq(len, 2);
	cr_assert_arr_eq(data, "hi", 2);
	cr_assert_eq(proto_data_decode(&e2, &a, &data, &len), 0);
	cr_assert_arr_eq(data, "hi", 2);
}

Test(data, missing_and_duplicate_data_keys_are_errors)
{
	static const uint8_t p1[] = {0xa1, 0x61, 'x', 0x40};
	static const uint8_t p2[] = {
		0xa2, 0x64, 'd', 'a', 't', 'a', 0x40, 0x64, 'd', 'a', 't', 'a', 0x40};
	static const uint8_t p3[] = {0xa1, 0x64, 'd', 'a', 't', 'a', 0x61, 'x'};
	struct proto_env e1 = {.p = p1, .p_len = sizeof(p1)};
	struct proto_env e2 = {.p = p2, .p_len = sizeof(p2)};
	struct proto_env e3 = {.p = p3, .p_len = sizeof(p3)};
	const uint8_t *data;
	size_t len;

	cr_assert_eq(proto_data_decode(&e1, NULL, &data, &len), PROTO_E_MISSING_FIELD);
	cr_assert_eq(proto_data_decode(&e2, NULL, &data, &len), PROTO_E_DUP_FIELD);
	cr_assert_eq(proto_data_decode(&e3, NULL, &data, &len), PROTO_E_WRONG_TYPE);
}
