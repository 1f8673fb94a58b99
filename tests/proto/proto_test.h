/*
 * tests/proto/proto_test.h - helpers shared by the proto tests: the spec's
 * vector file and builders of hand-made frames.  Everything is static
 * inline so each test file takes only what it uses.
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

#include "proto/cbor_wr.h"
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
		} else if (cur && strncmp(line, "frame (", 7) == 0) {
			cur->frame_len = vec_hex(strstr(line, "): ") + 3, cur->frame, VEC_BYTES);
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

/* String literal as a struct proto_str. */
#define S(lit) ((struct proto_str){(lit), sizeof(lit) - 1})

/* Compare a proto_str with a literal. */
#define cr_assert_str_is(s, lit)                                                                   \
	cr_assert((s).len == sizeof(lit) - 1 && memcmp((s).ptr, (lit), (s).len) == 0,              \
		"expected \"%s\", got \"%.*s\"", (lit), (int)(s).len, (s).ptr)

#endif /* SW_TESTS_PROTO_TEST_H */
