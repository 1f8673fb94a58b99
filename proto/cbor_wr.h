/*
 * proto/cbor_wr.h - CBOR writer into caller-provided memory.
 *
 * A thin layer over libcbor's low-level encoders (cbor_encode_uint,
 * cbor_encode_map_start, ...): they write the shortest head, which is the
 * canonical form the reference peers emit (spec 2.2 writer rules).  Errors
 * are sticky: after the first overflow every call is a no-op and
 * cbw_finish() reports PROTO_E_NOSPACE, so encoders need no check per item.
 * No allocation.
 */
#ifndef SW_PROTO_CBOR_WR_H
#define SW_PROTO_CBOR_WR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cbw {
	uint8_t *start; /* first byte of the output */
	uint8_t *p;     /* next byte to write */
	uint8_t *end;   /* one past the last writable byte */
	int err;        /* 0, or the first error (sticky) */
};

/* Start writing into <buf> of <cap> bytes. */
void cbw_init(struct cbw *w, void *buf, size_t cap);
/* Bytes written so far, or the sticky negative error. */
long cbw_finish(const struct cbw *w);

void cbw_uint(struct cbw *w, uint64_t v);
/* Signed integer: major type 0 for v >= 0, major type 1 (-1-n) otherwise. */
void cbw_int(struct cbw *w, int64_t v);
void cbw_bool(struct cbw *w, bool v);
void cbw_null(struct cbw *w);
/* Definite text string of <n> bytes (UTF-8 is the caller's duty). */
void cbw_text(struct cbw *w, const char *s, size_t n);
/* Definite text string of a NUL-terminated C string. */
void cbw_cstr(struct cbw *w, const char *s);
/* Definite byte string: head and content. */
void cbw_bytes(struct cbw *w, const void *p, size_t n);
/* Head of a definite byte string of <n> bytes only (content follows elsewhere). */
void cbw_bytes_head(struct cbw *w, size_t n);
void cbw_map(struct cbw *w, size_t entries);
void cbw_array(struct cbw *w, size_t items);
/* Map key: a text string from a NUL-terminated literal. */
static inline void cbw_key(struct cbw *w, const char *k)
{
	cbw_cstr(w, k);
}

/* Size of the shortest CBOR head carrying argument <v>: 1, 2, 3, 5 or 9. */
static inline size_t cbw_head_size(uint64_t v)
{
	return v < 24 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

#endif /* SW_PROTO_CBOR_WR_H */
