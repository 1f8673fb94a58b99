/*
 * proto/cbor_rd.h - pull-style CBOR reader over a byte buffer.
 *
 * Built on libcbor's streaming decoder (cbor_stream_decode with callbacks):
 * each call decodes one item head and reports it through a callback, so the
 * reader never allocates.  Definite text and byte strings are returned as
 * pointer+length INTO the input buffer (zero copy); only the rare
 * indefinite-length strings, and byte fields sent as arrays of integers,
 * are assembled in a caller-provided arena.
 *
 * Reader rules implemented (spec protocol.md 2.2): integer heads of any
 * width; tags before any item are skipped; indefinite-length strings,
 * arrays and maps; null and undefined both mean "absent" for optional
 * fields; unknown map keys are skipped; a duplicate known key is an error;
 * nesting is bounded by PROTO_MAX_DEPTH.
 *
 * Typical decode of a struct:
 *
 *	struct cbr_agg m;
 *	struct proto_str key;
 *	if ((rc = cbr_enter_map(r, &m)) < 0) return rc;
 *	while ((rc = cbr_agg_next(r, &m)) > 0) {
 *		if ((rc = cbr_key(r, &key)) < 0) return rc;
 *		if (proto_str_eq(key, "rows")) rc = cbr_u16(r, &out->rows);
 *		else rc = cbr_skip(r);
 *		if (rc < 0) return rc;
 *	}
 */
#ifndef SW_PROTO_CBOR_RD_H
#define SW_PROTO_CBOR_RD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PROTO_MAX_DEPTH 256 /* ciborium's recursion limit (spec 2.2 rule 9) */

/* A string that is NOT NUL-terminated: it points into a frame or an arena. */
struct proto_str {
	const char *ptr;
	size_t len;
};

/* Caller-provided scratch memory for decoded lists and assembled strings. */
struct proto_arena {
	uint8_t *base;
	size_t cap;  /* bytes at base */
	size_t used; /* bytes handed out */
};

static inline void proto_arena_init(struct proto_arena *a, void *mem, size_t cap)
{
	a->base = mem;
	a->cap = cap;
	a->used = 0;
}

/* <n> bytes aligned to 8 from <a>, or NULL when it is exhausted. */
void *proto_arena_alloc(struct proto_arena *a, size_t n);

static inline bool proto_str_eq(struct proto_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

enum cbr_kind {
	CBR_UINT,    /* u = value */
	CBR_NEGINT,  /* u = n, value is -1 - n */
	CBR_BYTES,   /* definite byte string: ptr, len */
	CBR_TEXT,    /* definite text string: ptr, len */
	CBR_BYTES_INDEF, /* start of an indefinite byte string (chunks follow, then BREAK) */
	CBR_TEXT_INDEF,  /* start of an indefinite text string */
	CBR_ARRAY,   /* definite array head: u = item count */
	CBR_ARRAY_INDEF,
	CBR_MAP,     /* definite map head: u = entry count */
	CBR_MAP_INDEF,
	CBR_TAG,     /* u = tag number (cbr_next reports tags; the typed getters skip them) */
	CBR_BOOL,    /* b */
	CBR_NULL,
	CBR_UNDEF,
	CBR_FLOAT,   /* f (half, single or double) */
	CBR_BREAK,   /* end of an indefinite item */
};

struct cbr_item {
	enum cbr_kind kind;
	uint64_t u;
	const uint8_t *ptr;
	size_t len;
	double f;
	bool b;
};

struct cbr {
	const uint8_t *start; /* first byte of the buffer (for error offsets) */
	const uint8_t *p;     /* next unread byte */
	const uint8_t *end;   /* one past the last byte */
	struct proto_arena *arena; /* for assembled strings and lists; may be NULL */
	unsigned depth;       /* current nesting, bounded by PROTO_MAX_DEPTH */
};

/* An aggregate (map or array) being iterated. */
struct cbr_agg {
	uint64_t left; /* entries/items still to read (definite form) */
	bool indef;    /* indefinite form: ends at a BREAK */
};

void cbr_init(struct cbr *r, const void *buf, size_t len, struct proto_arena *arena);

/* Offset of the next unread byte from the start of the buffer. */
static inline size_t cbr_offset(const struct cbr *r)
{
	return (size_t)(r->p - r->start);
}

/* Decode one raw item head.  Returns 0, PROTO_E_TRUNCATED or PROTO_E_CBOR. */
int cbr_next(struct cbr *r, struct cbr_item *it);
/* Like cbr_next but does not consume. */
int cbr_peek(struct cbr *r, struct cbr_item *it);
/*
 * Consume any tags, then peek at the item after them (not consumed).
 * Returns 0, PROTO_E_TRUNCATED or PROTO_E_CBOR.
 */
int cbr_peek_untagged(struct cbr *r, struct cbr_item *it);

/* Skip one complete data item (tags, nested aggregates, indefinite forms). */
int cbr_skip(struct cbr *r);

/* Enter a map / array (tags skipped).  PROTO_E_WRONG_TYPE for anything else. */
int cbr_enter_map(struct cbr *r, struct cbr_agg *m);
int cbr_enter_array(struct cbr *r, struct cbr_agg *a);
/*
 * Advance to the next entry of <a>: returns 1 when an entry follows (for a
 * map, its key is next), 0 at the end (a BREAK is consumed and the depth is
 * restored), or a negative error.
 */
int cbr_agg_next(struct cbr *r, struct cbr_agg *a);

/* A map key (text; a byte-string key is also accepted, spec 2.2 rule 4). */
int cbr_key(struct cbr *r, struct proto_str *key);

/*
 * Typed getters.  Each skips leading tags and checks type and range; a
 * mismatch returns PROTO_E_WRONG_TYPE or PROTO_E_RANGE without consuming
 * more than the item.  Integer getters accept integral floats (spec F30 MAY).
 */
int cbr_u64(struct cbr *r, uint64_t *v);
int cbr_u32(struct cbr *r, uint32_t *v);
int cbr_u16(struct cbr *r, uint16_t *v);
int cbr_u8(struct cbr *r, uint8_t *v);
int cbr_i64(struct cbr *r, int64_t *v);
int cbr_i32(struct cbr *r, int32_t *v);
int cbr_bool(struct cbr *r, bool *v);
/* Text: definite -> points into the buffer; indefinite -> assembled in the arena. */
int cbr_text(struct cbr *r, struct proto_str *s);
/* Bytes: definite -> into the buffer; indefinite or array of 0..255 -> arena. */
int cbr_bytes(struct cbr *r, const uint8_t **p, size_t *len);
/*
 * Optional field: if the next item is null or undefined, consume it and
 * return 1 ("absent"); otherwise consume nothing and return 0.
 */
int cbr_absent(struct cbr *r);

#endif /* SW_PROTO_CBOR_RD_H */
