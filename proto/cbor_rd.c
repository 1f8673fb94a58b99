/*
 * proto/cbor_rd.c - pull-style CBOR reader (see cbor_rd.h).
 *
 * Every item head is decoded by libcbor's cbor_stream_decode(): one call per
 * head, the callbacks below copy what it reports into a struct cbr_item.
 * libcbor passes definite string contents as a pointer into our input and a
 * length, so strings are never copied.  Three details of libcbor 0.8.0
 * shape this file:
 *  - it reports a BREAK (0xff) wherever it appears, so this reader checks
 *    that a BREAK closes an open indefinite item;
 *  - it rejects the one-byte tag heads 0xc6..0xd4 (tags 6..20) as
 *    "unassigned" although they are well-formed CBOR; the reader decodes
 *    those heads itself so that tags before any item are skipped (spec 2.2
 *    reader rule 2);
 *  - unassigned simple values (0xe0..0xf3, 0xf8) are errors there, and
 *    here (PROTO_E_CBOR): no peer sends them.
 *
 * Nothing here allocates: definite strings point into the input, and the
 * rare forms that need assembly go to the caller's arena.  Any thread; a
 * struct cbr is used by one thread at a time.
 */
#include <math.h>
#include <string.h>

#include <cbor.h>

#include "proto/cbor_rd.h"
#include "proto/error.h"

#define CBR_NO_TAG UINT64_MAX
#define CBR_TAG_BIGNUM 2  /* positive bignum: big-endian magnitude in a byte string */
#define CBR_BIGNUM_MAX 16 /* ciborium accepts at most 16 content bytes */

void *proto_arena_alloc(struct proto_arena *a, size_t n)
{
	size_t at;

	if (!a || !a->base)
		return NULL;
	at = (a->used + 7) & ~(size_t)7;
	if (at > a->cap || n > a->cap - at)
		return NULL;
	a->used = at + n;
	return a->base + at;
}

void cbr_init(struct cbr *r, const void *buf, size_t len, struct proto_arena *arena)
{
	r->start = buf;
	r->p = buf;
	r->end = r->start + len;
	r->arena = arena;
	r->depth = 0;
}

static size_t cbr_left(const struct cbr *r)
{
	return (size_t)(r->end - r->p);
}

/* libcbor callbacks: <ctx> is the struct cbr_item being filled. */

static void cbr_on_uint8(void *ctx, uint8_t v)
{
	struct cbr_item *it = ctx;

	it->kind = CBR_UINT;
	it->u = v;
}

static void cbr_on_uint16(void *ctx, uint16_t v)
{
	cbr_on_uint8(ctx, 0);
	((struct cbr_item *)ctx)->u = v;
}

static void cbr_on_uint32(void *ctx, uint32_t v)
{
	cbr_on_uint8(ctx, 0);
	((struct cbr_item *)ctx)->u = v;
}

static void cbr_on_uint64(void *ctx, uint64_t v)
{
	cbr_on_uint8(ctx, 0);
	((struct cbr_item *)ctx)->u = v;
}

static void cbr_on_negint64(void *ctx, uint64_t n)
{
	struct cbr_item *it = ctx;

	it->kind = CBR_NEGINT;
	it->u = n;
}

static void cbr_on_negint32(void *ctx, uint32_t n)
{
	cbr_on_negint64(ctx, n);
}

static void cbr_on_negint16(void *ctx, uint16_t n)
{
	cbr_on_negint64(ctx, n);
}

static void cbr_on_negint8(void *ctx, uint8_t n)
{
	cbr_on_negint64(ctx, n);
}

static void cbr_on_bytes(void *ctx, cbor_data p, size_t len)
{
	struct cbr_item *it = ctx;

	it->kind = CBR_BYTES;
	it->ptr = p;
	it->len = len;
}

static void cbr_on_text(void *ctx, cbor_data p, size_t len)
{
	struct cbr_item *it = ctx;

	it->kind = CBR_TEXT;
	it->ptr = p;
	it->len = len;
}

static void cbr_set_kind(void *ctx, enum cbr_kind kind)
{
	((struct cbr_item *)ctx)->kind = kind;
}

static void cbr_on_bytes_indef(void *ctx)
{
	cbr_set_kind(ctx, CBR_BYTES_INDEF);
}

static void cbr_on_text_indef(void *ctx)
{
	cbr_set_kind(ctx, CBR_TEXT_INDEF);
}

static void cbr_on_array(void *ctx, size_t n)
{
	cbr_set_kind(ctx, CBR_ARRAY);
	((struct cbr_item *)ctx)->u = n;
}

static void cbr_on_array_indef(void *ctx)
{
	cbr_set_kind(ctx, CBR_ARRAY_INDEF);
}

static void cbr_on_map(void *ctx, size_t n)
{
	cbr_set_kind(ctx, CBR_MAP);
	((struct cbr_item *)ctx)->u = n;
}

static void cbr_on_map_indef(void *ctx)
{
	cbr_set_kind(ctx, CBR_MAP_INDEF);
}

static void cbr_on_tag(void *ctx, uint64_t tag)
{
	cbr_set_kind(ctx, CBR_TAG);
	((struct cbr_item *)ctx)->u = tag;
}

static void cbr_on_double(void *ctx, double f)
{
	cbr_set_kind(ctx, CBR_FLOAT);
	((struct cbr_item *)ctx)->f = f;
}

static void cbr_on_float(void *ctx, float f)
{
	cbr_on_double(ctx, f);
}

static void cbr_on_undef(void *ctx)
{
	cbr_set_kind(ctx, CBR_UNDEF);
}

static void cbr_on_null(void *ctx)
{
	cbr_set_kind(ctx, CBR_NULL);
}

static void cbr_on_bool(void *ctx, bool b)
{
	cbr_set_kind(ctx, CBR_BOOL);
	((struct cbr_item *)ctx)->b = b;
}

static void cbr_on_break(void *ctx)
{
	cbr_set_kind(ctx, CBR_BREAK);
}

/* Every slot is set: libcbor calls them unconditionally. */
static const struct cbor_callbacks cbr_callbacks = {
	.uint8 = cbr_on_uint8,
	.uint16 = cbr_on_uint16,
	.uint32 = cbr_on_uint32,
	.uint64 = cbr_on_uint64,
	.negint64 = cbr_on_negint64,
	.negint32 = cbr_on_negint32,
	.negint16 = cbr_on_negint16,
	.negint8 = cbr_on_negint8,
	.byte_string_start = cbr_on_bytes_indef,
	.byte_string = cbr_on_bytes,
	.string = cbr_on_text,
	.string_start = cbr_on_text_indef,
	.indef_array_start = cbr_on_array_indef,
	.array_start = cbr_on_array,
	.indef_map_start = cbr_on_map_indef,
	.map_start = cbr_on_map,
	.tag = cbr_on_tag,
	.float2 = cbr_on_float,
	.float4 = cbr_on_float,
	.float8 = cbr_on_double,
	.undefined = cbr_on_undef,
	.null = cbr_on_null,
	.boolean = cbr_on_bool,
	.indef_break = cbr_on_break,
};

int cbr_next(struct cbr *r, struct cbr_item *it)
{
	struct cbor_decoder_result res;
	size_t left = cbr_left(r);

	if (left == 0)
		return PROTO_E_TRUNCATED;
	if (*r->p >= 0xc6 && *r->p <= 0xd4) { /* tags 6..20: see the file comment */
		it->kind = CBR_TAG;
		it->u = (uint64_t)(*r->p - 0xc0);
		r->p++;
		return 0;
	}
	res = cbor_stream_decode(r->p, left, &cbr_callbacks, it);
	switch (res.status) {
	case CBOR_DECODER_FINISHED:
		r->p += res.read;
		return 0;
	case CBOR_DECODER_NEDATA:
		return PROTO_E_TRUNCATED;
	default:
		return PROTO_E_CBOR;
	}
}

int cbr_peek(struct cbr *r, struct cbr_item *it)
{
	const uint8_t *save = r->p;
	int rc = cbr_next(r, it);

	r->p = save;
	return rc;
}

/* Next item after any tags; <tag> gets the last tag seen or CBR_NO_TAG. */
static int cbr_next_untagged(struct cbr *r, struct cbr_item *it, uint64_t *tag)
{
	int rc;

	*tag = CBR_NO_TAG;
	for (;;) {
		rc = cbr_next(r, it);
		if (rc < 0)
			return rc;
		if (it->kind != CBR_TAG)
			return 0;
		*tag = it->u;
	}
}

/* Error for an item that is not the expected type: a stray BREAK is malformed CBOR. */
static int cbr_mismatch(const struct cbr_item *it)
{
	return it->kind == CBR_BREAK ? PROTO_E_CBOR : PROTO_E_WRONG_TYPE;
}

/*
 * Sanity check of a definite aggregate count: every item takes at least
 * <min_bytes> bytes, so a count beyond what is left cannot be satisfied.
 * This also keeps skip loops and arena requests bounded by the input size.
 */
static int cbr_count_check(const struct cbr *r, uint64_t n, size_t min_bytes)
{
	if (n > cbr_left(r) / min_bytes)
		return PROTO_E_TRUNCATED;
	return 0;
}

/*
 * Walk the chunks of an indefinite string whose head was just consumed:
 * each chunk must be a definite string of kind <chunk>; stops after the
 * BREAK.  If <out> is not NULL the chunks are copied there.  <total> gets
 * the content length.
 */
static int cbr_indef_chunks(struct cbr *r, enum cbr_kind chunk, uint8_t *out, size_t *total)
{
	struct cbr_item it;
	size_t n = 0;
	int rc;

	for (;;) {
		rc = cbr_next(r, &it);
		if (rc < 0)
			return rc;
		if (it.kind == CBR_BREAK)
			break;
		if (it.kind != chunk)
			return PROTO_E_CBOR;
		if (out)
			memcpy(out + n, it.ptr, it.len);
		n += it.len;
	}
	*total = n;
	return 0;
}

/* One open aggregate in cbr_skip. */
struct cbr_level {
	uint64_t left; /* items still to come (definite form) */
	bool indef;
	bool map;
	bool odd; /* indefinite map: a key was read, its value is pending */
};

int cbr_skip(struct cbr *r)
{
	struct cbr_level lv[PROTO_MAX_DEPTH];
	struct cbr_item it;
	unsigned top = 0;
	bool tagged = false;
	size_t len;
	int rc;

	for (;;) {
		rc = cbr_next(r, &it);
		if (rc < 0)
			return rc;
		switch (it.kind) {
		case CBR_TAG:
			tagged = true;
			continue;
		case CBR_BREAK:
			if (tagged || top == 0 || !lv[top - 1].indef ||
				(lv[top - 1].map && lv[top - 1].odd))
				return PROTO_E_CBOR;
			top--;
			break;
		case CBR_BYTES_INDEF:
		case CBR_TEXT_INDEF:
			rc = cbr_indef_chunks(
				r, it.kind == CBR_BYTES_INDEF ? CBR_BYTES : CBR_TEXT, NULL, &len);
			if (rc < 0)
				return rc;
			break;
		case CBR_ARRAY:
		case CBR_MAP:
		case CBR_ARRAY_INDEF:
		case CBR_MAP_INDEF:
			if (r->depth + top >= PROTO_MAX_DEPTH)
				return PROTO_E_DEPTH;
			lv[top].map = it.kind == CBR_MAP || it.kind == CBR_MAP_INDEF;
			lv[top].indef = it.kind == CBR_ARRAY_INDEF || it.kind == CBR_MAP_INDEF;
			lv[top].odd = false;
			if (!lv[top].indef) {
				rc = cbr_count_check(r, it.u, lv[top].map ? 2 : 1);
				if (rc < 0)
					return rc;
				if (it.u == 0)
					break; /* empty: complete at once */
				lv[top].left = lv[top].map ? it.u * 2 : it.u;
			}
			top++;
			tagged = false;
			continue;
		default:
			break; /* a scalar or a definite string: complete */
		}
		/* One item completed: account for it in the enclosing levels. */
		tagged = false;
		while (top > 0) {
			struct cbr_level *l = &lv[top - 1];

			if (l->indef) {
				l->odd = !l->odd;
				break;
			}
			if (--l->left != 0)
				break;
			top--;
		}
		if (top == 0)
			return 0;
	}
}

int cbr_enter_map(struct cbr *r, struct cbr_agg *m)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_MAP && it.kind != CBR_MAP_INDEF)
		return cbr_mismatch(&it);
	if (r->depth >= PROTO_MAX_DEPTH)
		return PROTO_E_DEPTH;
	m->indef = it.kind == CBR_MAP_INDEF;
	m->left = m->indef ? 0 : it.u;
	if (!m->indef && (rc = cbr_count_check(r, it.u, 2)) < 0)
		return rc;
	r->depth++;
	return 0;
}

int cbr_enter_array(struct cbr *r, struct cbr_agg *a)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_ARRAY && it.kind != CBR_ARRAY_INDEF)
		return cbr_mismatch(&it);
	if (r->depth >= PROTO_MAX_DEPTH)
		return PROTO_E_DEPTH;
	a->indef = it.kind == CBR_ARRAY_INDEF;
	a->left = a->indef ? 0 : it.u;
	if (!a->indef && (rc = cbr_count_check(r, it.u, 1)) < 0)
		return rc;
	r->depth++;
	return 0;
}

int cbr_agg_next(struct cbr *r, struct cbr_agg *a)
{
	struct cbr_item it;
	int rc;

	if (a->indef) {
		rc = cbr_peek(r, &it);
		if (rc < 0)
			return rc;
		if (it.kind != CBR_BREAK)
			return 1;
		r->p++; /* a BREAK is one byte */
	} else if (a->left > 0) {
		a->left--;
		return 1;
	}
	r->depth--;
	return 0;
}

int cbr_key(struct cbr *r, struct proto_str *key)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_TEXT && it.kind != CBR_BYTES)
		return cbr_mismatch(&it); /* indefinite keys too: ciborium refuses them */
	key->ptr = (const char *)it.ptr;
	key->len = it.len;
	return 0;
}

/* Big-endian magnitude of a tag-2 bignum of <len> bytes. */
static int cbr_bignum(const uint8_t *p, size_t len, uint64_t *mag)
{
	uint64_t v = 0;

	if (len > CBR_BIGNUM_MAX)
		return PROTO_E_WRONG_TYPE;
	while (len > 0 && *p == 0) {
		p++;
		len--;
	}
	if (len > 8)
		return PROTO_E_RANGE;
	while (len-- > 0)
		v = v << 8 | *p++;
	*mag = v;
	return 0;
}

/*
 * Integral float (spec F30: cbor-x sends JS numbers >= 2^32 as float64):
 * the same sign/magnitude form as a CBOR integer.
 */
static int cbr_float_int(double f, bool *neg, uint64_t *mag)
{
	if (!isfinite(f) || f != floor(f))
		return PROTO_E_WRONG_TYPE;
	if (f >= 0) {
		if (f >= 18446744073709551616.0)
			return PROTO_E_RANGE;
		*neg = false;
		*mag = (uint64_t)f;
		return 0;
	}
	if (f <= -18446744073709551616.0)
		return PROTO_E_RANGE;
	*neg = true;
	*mag = (uint64_t)(-f) - 1; /* value = -1 - mag */
	return 0;
}

/* Read any integer form: sign and magnitude (value = neg ? -1 - mag : mag). */
static int cbr_int(struct cbr *r, bool *neg, uint64_t *mag)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	switch (it.kind) {
	case CBR_UINT:
	case CBR_NEGINT:
		*neg = it.kind == CBR_NEGINT;
		*mag = it.u;
		return 0;
	case CBR_BYTES:
		if (tag != CBR_TAG_BIGNUM)
			return PROTO_E_WRONG_TYPE;
		*neg = false;
		return cbr_bignum(it.ptr, it.len, mag);
	case CBR_FLOAT:
		return cbr_float_int(it.f, neg, mag);
	default:
		return cbr_mismatch(&it);
	}
}

/* Unsigned integer no larger than <max>. */
static int cbr_uint_max(struct cbr *r, uint64_t max, uint64_t *v)
{
	uint64_t mag;
	bool neg;
	int rc;

	rc = cbr_int(r, &neg, &mag);
	if (rc < 0)
		return rc;
	if (neg || mag > max)
		return PROTO_E_RANGE;
	*v = mag;
	return 0;
}

/* Signed integer within [-max - 1, max]. */
static int cbr_sint_max(struct cbr *r, uint64_t max, int64_t *v)
{
	uint64_t mag;
	bool neg;
	int rc;

	rc = cbr_int(r, &neg, &mag);
	if (rc < 0)
		return rc;
	if (mag > max)
		return PROTO_E_RANGE;
	*v = neg ? -1 - (int64_t)mag : (int64_t)mag;
	return 0;
}

int cbr_u64(struct cbr *r, uint64_t *v)
{
	return cbr_uint_max(r, UINT64_MAX, v);
}

int cbr_u32(struct cbr *r, uint32_t *v)
{
	uint64_t x;
	int rc = cbr_uint_max(r, UINT32_MAX, &x);

	if (rc == 0)
		*v = (uint32_t)x;
	return rc;
}

int cbr_u16(struct cbr *r, uint16_t *v)
{
	uint64_t x;
	int rc = cbr_uint_max(r, UINT16_MAX, &x);

	if (rc == 0)
		*v = (uint16_t)x;
	return rc;
}

int cbr_u8(struct cbr *r, uint8_t *v)
{
	uint64_t x;
	int rc = cbr_uint_max(r, UINT8_MAX, &x);

	if (rc == 0)
		*v = (uint8_t)x;
	return rc;
}

int cbr_i64(struct cbr *r, int64_t *v)
{
	return cbr_sint_max(r, INT64_MAX, v);
}

int cbr_i32(struct cbr *r, int32_t *v)
{
	int64_t x;
	int rc = cbr_sint_max(r, INT32_MAX, &x);

	if (rc == 0)
		*v = (int32_t)x;
	return rc;
}

int cbr_bool(struct cbr *r, bool *v)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_BOOL)
		return cbr_mismatch(&it);
	*v = it.b;
	return 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), as Rust's str requires. */
static bool cbr_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0, k, j;
	uint32_t cp, min;

	while (i < n) {
		uint8_t c = s[i];

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i - 1 < k)
			return false;
		for (j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/*
 * Assemble the indefinite string whose head was just consumed into the
 * arena: a first pass sizes it, a second copies the chunks.
 */
static int cbr_assemble(struct cbr *r, enum cbr_kind chunk, const uint8_t **p, size_t *len)
{
	const uint8_t *body = r->p;
	uint8_t *out;
	size_t total;
	int rc;

	rc = cbr_indef_chunks(r, chunk, NULL, &total);
	if (rc < 0)
		return rc;
	out = proto_arena_alloc(r->arena, total);
	if (!out)
		return PROTO_E_NOSPACE;
	r->p = body;
	rc = cbr_indef_chunks(r, chunk, out, &total);
	if (rc < 0)
		return rc;
	*p = out;
	*len = total;
	return 0;
}

int cbr_text(struct cbr *r, struct proto_str *s)
{
	struct cbr_item it;
	const uint8_t *p;
	uint64_t tag;
	size_t len;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind == CBR_TEXT) {
		p = it.ptr;
		len = it.len;
	} else if (it.kind == CBR_TEXT_INDEF) {
		rc = cbr_assemble(r, CBR_TEXT, &p, &len);
		if (rc < 0)
			return rc;
	} else {
		return cbr_mismatch(&it);
	}
	if (!cbr_utf8_valid(p, len))
		return PROTO_E_BAD_VALUE;
	s->ptr = (const char *)p;
	s->len = len;
	return 0;
}

/* Byte field sent as an array of integers 0..255 (reader rule 6). */
static int cbr_byte_array(
	struct cbr *r, const struct cbr_item *head, const uint8_t **p, size_t *len)
{
	const uint8_t *body = r->p;
	struct cbr_item it;
	struct cbr_agg a;
	uint8_t *out, b;
	size_t n = 0;
	int rc;

	if (r->depth >= PROTO_MAX_DEPTH)
		return PROTO_E_DEPTH;
	a.indef = head->kind == CBR_ARRAY_INDEF;
	a.left = head->u;
	if (!a.indef) {
		rc = cbr_count_check(r, a.left, 1);
		if (rc < 0)
			return rc;
		n = (size_t)a.left;
	} else {
		/* first pass: count the elements */
		for (;;) {
			rc = cbr_peek(r, &it);
			if (rc < 0)
				return rc;
			if (it.kind == CBR_BREAK)
				break;
			rc = cbr_u8(r, &b);
			if (rc < 0)
				return rc;
			n++;
		}
		r->p = body;
	}
	out = proto_arena_alloc(r->arena, n);
	if (!out)
		return PROTO_E_NOSPACE;
	r->depth++;
	n = 0;
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		rc = cbr_u8(r, &out[n++]);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	*p = out;
	*len = n;
	return 0;
}

int cbr_bytes(struct cbr *r, const uint8_t **p, size_t *len)
{
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	switch (it.kind) {
	case CBR_BYTES:
		*p = it.ptr;
		*len = it.len;
		return 0;
	case CBR_BYTES_INDEF:
		return cbr_assemble(r, CBR_BYTES, p, len);
	case CBR_ARRAY:
	case CBR_ARRAY_INDEF:
		return cbr_byte_array(r, &it, p, len);
	default:
		return cbr_mismatch(&it);
	}
}

int cbr_absent(struct cbr *r)
{
	const uint8_t *save = r->p;
	struct cbr_item it;
	uint64_t tag;
	int rc;

	rc = cbr_next_untagged(r, &it, &tag);
	if (rc < 0)
		return rc;
	if (it.kind == CBR_NULL || it.kind == CBR_UNDEF)
		return 1;
	r->p = save;
	return 0;
}
