/*
 * tests/proto/proto_test.h - helpers shared by the proto tests: the spec's
 * vector file, builders of hand-made frames and payloads, comparisons, and
 * the round-trip / truncation / capacity checks of a payload codec
 * (PROTO_TEST_CODEC).  Everything is static inline so each test file takes
 * only what it uses.
 *
 * Vector file format (tests/vectors/vectors-gen7.txt):
 *   ### V21 core.exec.exited  id=1  flags=0x01  (comment)
 *   payload: {"code": 0}
 *   p (7 B): a164636f646500
 *   frame (42 B): 00000026 00000001 01 a36176...
 *   ### H1 relay handshake, slot 0 (...)
 *   <hex of the 8-byte handshake> <hex of the ready frame>
 *   ### H2 slot 1 prefix (...): <hex of the 8-byte handshake> + ready frame
 */
#ifndef SW_TESTS_PROTO_TEST_H
#define SW_TESTS_PROTO_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/error.h"
#include "proto/frame.h"

#define VEC_MAX 64
#define VEC_BYTES 1024

struct vec {
	char name[8];  /* "V21", "H1" */
	char type[48]; /* wire type name ("" for H lines) */
	uint32_t id;
	uint8_t flags;
	uint8_t p[VEC_BYTES];
	size_t p_len;
	uint8_t frame[VEC_BYTES]; /* H lines: the whole handshake + ready bytes */
	size_t frame_len;
};

struct vec_set {
	struct vec v[VEC_MAX];
	size_t n;
};

/* Decode hex digits of <s> (spaces skipped, stops at the end or at '+') into <out>. */
static inline size_t vec_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1, d;

	for (; *s && *s != '+' && *s != '\n'; s++) {
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = d;
		} else {
			cr_assert(n < cap, "vector too long");
			out[n++] = (uint8_t)(hi << 4 | d);
			hi = -1;
		}
	}
	cr_assert(hi < 0, "odd number of hex digits");
	return n;
}

/* Load the gen-7 vector file; aborts the test on a format surprise. */
static inline struct vec_set *vec_load(void)
{
	static char line[8192];
	struct vec_set *vs = calloc(1, sizeof(*vs));
	struct vec *cur = NULL;
	unsigned id, flags;
	char *at;
	FILE *fp;

	cr_assert(vs);
	fp = fopen(SW_VECTORS_DIR "/vectors-gen7.txt", "r");
	cr_assert(fp, "cannot open %s", SW_VECTORS_DIR "/vectors-gen7.txt");
	while (fgets(line, sizeof(line), fp)) {
		if (strncmp(line, "### ", 4) == 0) {
			cr_assert(vs->n < VEC_MAX);
			cur = &vs->v[vs->n++];
			if (line[4] == 'V') {
				cr_assert(sscanf(line + 4, "%7s %47s id=%u flags=0x%x", cur->name,
						  cur->type, &id, &flags) == 4,
					"bad header: %s", line);
				cur->id = id;
				cur->flags = (uint8_t)flags;
			} else {
				cr_assert(sscanf(line + 4, "%7s", cur->name) == 1);
				at = strstr(line, "): ");
				if (at) /* H2: the bytes follow on the same line */
					cur->frame_len = vec_hex(at + 3, cur->frame, VEC_BYTES);
			}
		} else if (cur && strncmp(line, "p (", 3) == 0) {
			cur->p_len = vec_hex(strstr(line, "): ") + 3, cur->p, VEC_BYTES);
			cr_assert_eq(
				cur->p_len, strtoul(line + 3, NULL, 10), "%s: p length", cur->name);
		} else if (cur && strncmp(line, "frame (", 7) == 0) {
			cur->frame_len = vec_hex(strstr(line, "): ") + 3, cur->frame, VEC_BYTES);
			cr_assert_eq(cur->frame_len, strtoul(line + 7, NULL, 10),
				"%s: frame length", cur->name);
		} else if (cur && cur->name[0] == 'H' && line[0] >= '0' && line[0] <= 'f') {
			cur->frame_len = vec_hex(line, cur->frame, VEC_BYTES);
		}
	}
	fclose(fp);
	return vs;
}

static inline const struct vec *vec_find(const struct vec_set *vs, const char *name)
{
	size_t i;

	for (i = 0; i < vs->n; i++) {
		if (strcmp(vs->v[i].name, name) == 0)
			return &vs->v[i];
	}
	cr_assert_fail("vector %s not found", name);
	return NULL;
}

/* Payload ("p") of vector <name> copied to <out> (<cap> bytes); returns its size (> 0). */
static inline size_t vec_payload(const char *name, uint8_t *out, size_t cap)
{
	struct vec_set *vs = vec_load();
	size_t n = vec_find(vs, name)->p_len;

	cr_assert(n > 0 && n <= cap, "vector %s: %zu payload bytes, room for %zu", name, n, cap);
	memcpy(out, vec_find(vs, name)->p, n);
	free(vs);
	return n;
}

/*
 * Build a body {v: <v>, t: <t>, p: <p>} in canonical form into <out>;
 * returns its size.
 */
static inline size_t tbody(
	uint8_t *out, size_t cap, unsigned v, const char *t, const void *p, size_t p_len)
{
	struct cbw w;

	cbw_init(&w, out, cap);
	cbw_map(&w, 3);
	cbw_key(&w, "v");
	cbw_uint(&w, v);
	cbw_key(&w, "t");
	cbw_cstr(&w, t);
	cbw_key(&w, "p");
	cbw_bytes(&w, p, p_len);
	cr_assert(cbw_finish(&w) > 0);
	return (size_t)cbw_finish(&w);
}

/* Wrap <body> into a frame at <out> (header + body); returns the frame size. */
static inline size_t tframe(
	uint8_t *out, size_t cap, uint32_t id, uint8_t flags, const void *body, size_t body_len)
{
	cr_assert(cap >= PROTO_HDR_SIZE + body_len);
	proto_frame_header_write(out, (uint32_t)(PROTO_FRAME_HEADER_SIZE + body_len), id, flags);
	memcpy(out + PROTO_HDR_SIZE, body, body_len);
	return PROTO_HDR_SIZE + body_len;
}

/* Parse a whole frame that must be complete. */
static inline struct proto_frame tparse(const uint8_t *buf, size_t len)
{
	struct proto_frame f;

	cr_assert_eq(proto_frame_parse(buf, len, &f), (int)len);
	return f;
}

/* Finish a hand-written payload: its length, asserting the writer had room. */
static inline size_t wr_done(struct cbw *w)
{
	long n = cbw_finish(w);

	cr_assert(n > 0);
	return (size_t)n;
}

/* Start a hand-written payload {<key>: ...} in <w> over <buf>; the value is written next. */
static inline void wr_begin(struct cbw *w, uint8_t *buf, size_t cap, const char *key)
{
	cbw_init(w, buf, cap);
	cbw_map(w, 1);
	cbw_key(w, key);
}

/* String literal as a struct proto_str: LIT in static initializers, S elsewhere. */
#define LIT(lit)                                                                                   \
	{                                                                                          \
		(lit), sizeof(lit) - 1                                                             \
	}
#define S(lit) ((struct proto_str)LIT(lit))

static inline bool str_same(struct proto_str a, struct proto_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Two Option values (any proto_opt_*) are equal: both unset, or both set to the same value. */
#define OPT_EQ(a, b) ((a).set == (b).set && (!(a).set || (a).v == (b).v))

/* Compare a proto_str with a literal. */
#define cr_assert_str_is(s, lit)                                                                   \
	cr_assert((s).len == sizeof(lit) - 1 && memcmp((s).ptr, (lit), (s).len) == 0,              \
		"expected \"%s\", got \"%.*s\"", (lit), (int)(s).len, (s).ptr)

/* Encoder output <got> (<gn> bytes, or a negative error) must be <want>; hex dump if not. */
static inline void assert_bytes(
	const uint8_t *got, long gn, const uint8_t *want, size_t wn, const char *what)
{
	long i;

	cr_assert(gn >= 0, "%s: encode failed: %s", what, proto_strerror((int)gn));
	if ((size_t)gn == wn && memcmp(got, want, wn) == 0)
		return;
	fprintf(stderr, "%s\n got: ", what);
	for (i = 0; i < gn; i++)
		fprintf(stderr, "%02x", got[i]);
	fprintf(stderr, "\nwant: ");
	for (i = 0; i < (long)wn; i++)
		fprintf(stderr, "%02x", want[i]);
	fprintf(stderr, "\n");
	cr_assert_fail("%s: encoding differs (%ld vs %zu bytes)", what, gn, wn);
}

/* A fresh decode arena of 1 MiB (one per test file). */
static inline struct proto_arena *test_arena(void)
{
	static uint8_t mem[1u << 20];
	static struct proto_arena a;

	proto_arena_init(&a, mem, sizeof(mem));
	return &a;
}

/*
 * The test wrappers and checks of one payload codec: <enc> and <dec> of
 * payload <type>, compared by <eq>(got, want).  Defines, for <name>:
 *   long <name>_encode(m, buf, cap): the encoded size, or the error;
 *   int <name>_decode_arena(p, n, m, a): decode with arena <a> (may be NULL);
 *   int <name>_decode(p, n, m): decode with a fresh test_arena();
 *   <name>_check_both_ways(m, want, n, what): <m> encodes to <want>, <want>
 *     decodes to <m>, and that re-encodes to <want>;
 *   <name>_check_vector(id, m): the same against the payload of vector <id>;
 *   <name>_check_truncation(p, n): every cut of <p> is PROTO_E_TRUNCATED,
 *     the whole decodes;
 *   <name>_check_nospace(m): every capacity short of <m>'s encoding is
 *     PROTO_E_NOSPACE.
 */
#define PROTO_TEST_CODEC(name, type, enc, dec, eq)                                                 \
	static inline long name##_encode(const type *m, uint8_t *buf, size_t cap)                  \
	{                                                                                          \
		struct cbw w;                                                                      \
		int rc;                                                                            \
                                                                                                   \
		cbw_init(&w, buf, cap);                                                            \
		rc = enc(&w, m);                                                                   \
		return rc < 0 ? rc : cbw_finish(&w);                                               \
	}                                                                                          \
                                                                                                   \
	static inline int name##_decode_arena(                                                     \
		const uint8_t *p, size_t n, type *m, struct proto_arena *a)                        \
	{                                                                                          \
		struct cbr r;                                                                      \
                                                                                                   \
		cbr_init(&r, p, n, a);                                                             \
		return dec(&r, m);                                                                 \
	}                                                                                          \
                                                                                                   \
	static inline int name##_decode(const uint8_t *p, size_t n, type *m)                       \
	{                                                                                          \
		return name##_decode_arena(p, n, m, test_arena());                                 \
	}                                                                                          \
                                                                                                   \
	static inline void name##_check_both_ways(                                                 \
		const type *m, const uint8_t *want, size_t n, const char *what)                    \
	{                                                                                          \
		static uint8_t got[65536];                                                         \
		type d;                                                                            \
                                                                                                   \
		assert_bytes(got, name##_encode(m, got, sizeof(got)), want, n, what);              \
		cr_assert_eq(name##_decode(want, n, &d), 0, "%s: decode", what);                   \
		eq(&d, m);                                                                         \
		assert_bytes(got, name##_encode(&d, got, sizeof(got)), want, n, what);             \
	}                                                                                          \
                                                                                                   \
	static inline void name##_check_vector(const char *id, const type *m)                      \
	{                                                                                          \
		static uint8_t want[4096];                                                         \
                                                                                                   \
		name##_check_both_ways(m, want, vec_payload(id, want, sizeof(want)), id);          \
	}                                                                                          \
                                                                                                   \
	static inline void name##_check_truncation(const uint8_t *p, size_t n)                     \
	{                                                                                          \
		type d;                                                                            \
		size_t len;                                                                        \
		int rc;                                                                            \
                                                                                                   \
		for (len = 0; len < n; len++) {                                                    \
			rc = name##_decode(p, len, &d);                                            \
			cr_assert_eq(rc, PROTO_E_TRUNCATED, "cut at %zu of %zu: %d", len, n, rc);  \
		}                                                                                  \
		cr_assert_eq(name##_decode(p, n, &d), 0);                                          \
	}                                                                                          \
                                                                                                   \
	static inline void name##_check_nospace(const type *m)                                     \
	{                                                                                          \
		static uint8_t buf[65536];                                                         \
		long full = name##_encode(m, buf, sizeof(buf)), n;                                 \
		size_t cap;                                                                        \
                                                                                                   \
		cr_assert(full > 0);                                                               \
		for (cap = 0; cap < (size_t)full; cap++) {                                         \
			n = name##_encode(m, buf, cap);                                            \
			cr_assert_eq(n, PROTO_E_NOSPACE, "cap %zu: %ld", cap, n);                  \
		}                                                                                  \
	}

#endif /* SW_TESTS_PROTO_TEST_H */
