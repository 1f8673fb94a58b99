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

/*
 * libcbor callbacks: <ctx> is the struct cbr_item being filled.  libcbor
 * wants one callback per head form and width, so they are generated:
 * CBR_ON sets the kind only, CBR_ON_VAL the kind and one value field,
 * CBR_ON_STR the kind and a definite string's pointer and length.
 */
#define CBR_ON(name, k)                                                                            \
	static void name(void *ctx)                                                                \
	{                                                                                          \
		((struct cbr_item *)ctx)->kind = k;                                                \
	}
#define CBR_ON_VAL(name, type, k, field)                                                           \
	static void name(void *ctx, type v)                                                        \
	{                                                                                          \
		struct cbr_item *it = ctx;                                                         \
                                                                                                   \
		it->kind = k;                                                                      \
		it->field = v;                                                                     \
	}
#define CBR_ON_STR(name, k)                                                                        \
	static void name(void *ctx, cbor_data p, size_t len)                                       \
	{                                                                                          \
		struct cbr_item *it = ctx;                                                         \
                                                                                                   \
		it->kind = k;                                                                      \
		it->ptr = p;                                                                       \
		it->len = len;                                                                     \
	}

CBR_ON_VAL(cbr_on_uint8, uint8_t, CBR_UINT, u)
CBR_ON_VAL(cbr_on_uint16, uint16_t, CBR_UINT, u)
CBR_ON_VAL(cbr_on_uint32, uint32_t, CBR_UINT, u)
CBR_ON_VAL(cbr_on_uint64, uint64_t, CBR_UINT, u)
CBR_ON_VAL(cbr_on_negint8, uint8_t, CBR_NEGINT, u)
CBR_ON_VAL(cbr_on_negint16, uint16_t, CBR_NEGINT, u)
CBR_ON_VAL(cbr_on_negint32, uint32_t, CBR_NEGINT, u)
CBR_ON_VAL(cbr_on_negint64, uint64_t, CBR_NEGINT, u)
CBR_ON_VAL(cbr_on_array, size_t, CBR_ARRAY, u)
CBR_ON_VAL(cbr_on_map, size_t, CBR_MAP, u)
CBR_ON_VAL(cbr_on_tag, uint64_t, CBR_TAG, u)
CBR_ON_VAL(cbr_on_float, float, CBR_FLOAT, f)
CBR_ON_VAL(cbr_on_double, double, CBR_FLOAT, f)
CBR_ON_VAL(cbr_on_bool, bool, CBR_BOOL, b)
CBR_ON_STR(cbr_on_bytes, CBR_BYTES)
CBR_ON_STR(cbr_on_text, CBR_TEXT)
CBR_ON(cbr_on_bytes_indef, CBR_BYTES_INDEF)
CBR_ON(cbr_on_text_indef, CBR_TEXT_INDEF)
CBR_ON(cbr_on_array_indef, CBR_ARRAY_INDEF)
CBR_ON(cbr_on_map_indef, CBR_MAP_INDEF)
CBR_ON(cbr_on_undef, CBR_UNDEF)
CBR_ON(cbr_on_null, CBR_NULL)
CBR_ON(cbr_on_break, CBR_BREAK)

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

int cbr_peek_untagged(struct cbr *r, struct cbr_item *it)
{
	const uint8_t *item;
	int rc;

	do {
		item = r->p;
		rc = cbr_next(r, it);
		if (rc < 0)
			return rc;
	} while (it->kind == CBR_TAG);
	r->p = item;
	return 0;
}

/* Next item after any tags; <tag> (may be NULL) gets the last tag seen or CBR_NO_TAG. */
static int cbr_next_untagged(struct cbr *r, struct cbr_item *it, uint64_t *tag)
{
	uint64_t last = CBR_NO_TAG;
	int rc;

	for (;;) {
		rc = cbr_next(r, it);
		if (rc < 0)
			return rc;
		if (it->kind != CBR_TAG)
			break;
		last = it->u;
	}
	if (tag)
		*tag = last;
	return 0;
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

/*
 * Enter an aggregate whose head is <def> (definite, every item at least
 * <min_bytes> bytes) or <indef>, after any tags.
 */
static int cbr_enter(
	struct cbr *r, struct cbr_agg *a, enum cbr_kind def, enum cbr_kind indef, size_t min_bytes)
{
	struct cbr_item it;
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
	if (rc < 0)
		return rc;
	if (it.kind != def && it.kind != indef)
		return cbr_mismatch(&it);
	if (r->depth >= PROTO_MAX_DEPTH)
		return PROTO_E_DEPTH;
	a->indef = it.kind == indef;
	a->left = a->indef ? 0 : it.u;
	if (!a->indef && (rc = cbr_count_check(r, it.u, min_bytes)) < 0)
		return rc;
	r->depth++;
	return 0;
}

int cbr_enter_map(struct cbr *r, struct cbr_agg *m)
{
	return cbr_enter(r, m, CBR_MAP, CBR_MAP_INDEF, 2); /* a key and a value */
}

int cbr_enter_array(struct cbr *r, struct cbr_agg *a)
{
	return cbr_enter(r, a, CBR_ARRAY, CBR_ARRAY_INDEF, 1);
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
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
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

/*
 * An integer within [0, max] (unsigned) or [-max - 1, max] (<is_signed>):
 * its sign and magnitude as cbr_int gives them, or PROTO_E_RANGE.
 */
static int cbr_int_range(struct cbr *r, bool is_signed, uint64_t max, bool *neg, uint64_t *mag)
{
	int rc;

	rc = cbr_int(r, neg, mag);
	if (rc < 0)
		return rc;
	if ((*neg && !is_signed) || *mag > max)
		return PROTO_E_RANGE;
	return 0;
}

/*
 * Define the typed integer getter <name> for <type>, whose range is given
 * by <is_signed> and <max> (cbr_int_range); <v> is written only on success.
 */
#define CBR_INT_GETTER(name, type, is_signed, max)                                                 \
	int name(struct cbr *r, type *v)                                                           \
	{                                                                                          \
		uint64_t mag;                                                                      \
		bool neg;                                                                          \
		int rc = cbr_int_range(r, is_signed, max, &neg, &mag);                             \
                                                                                                   \
		if (rc == 0) /* value = neg ? -1 - mag : mag, and it fits <type> */                \
			*v = neg ? (type)(-1 - (int64_t)mag) : (type)mag;                          \
		return rc;                                                                         \
	}

CBR_INT_GETTER(cbr_u64, uint64_t, false, UINT64_MAX)
CBR_INT_GETTER(cbr_u32, uint32_t, false, UINT32_MAX)
CBR_INT_GETTER(cbr_u16, uint16_t, false, UINT16_MAX)
CBR_INT_GETTER(cbr_u8, uint8_t, false, UINT8_MAX)
CBR_INT_GETTER(cbr_i64, int64_t, true, INT64_MAX)
CBR_INT_GETTER(cbr_i32, int32_t, true, INT32_MAX)

int cbr_bool(struct cbr *r, bool *v)
{
	struct cbr_item it;
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
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
	size_t len;
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
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
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
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
	int rc;

	rc = cbr_next_untagged(r, &it, NULL);
	if (rc < 0)
		return rc;
	if (it.kind == CBR_NULL || it.kind == CBR_UNDEF)
		return 1;
	r->p = save;
	return 0;
}
