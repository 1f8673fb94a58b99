/*
 * proto/msg_common.c - payload pieces shared by several message families:
 * ExecRlimit maps, lists of rlimits and lists of text strings.
 *
 * Lists are decoded into the reader's arena: a definite array is sized from
 * its head, an indefinite one by a first pass that skips its items.  An
 * empty list is {NULL, 0} and needs no arena.  Any thread.
 */
#include <strings.h>

#include "proto/error.h"
#include "proto/msg_common.h"

/* Linux RLIMIT_* numbers are the index in this table (RLIMIT_CPU = 0 ... RLIMIT_RTTIME = 15). */
static const char *const proto_rlimit_names[] = {
	"cpu",
	"fsize",
	"data",
	"stack",
	"core",
	"rss",
	"nproc",
	"nofile",
	"memlock",
	"as",
	"locks",
	"sigpending",
	"msgqueue",
	"nice",
	"rtprio",
	"rttime",
};

int proto_rlimit_resource(struct proto_str name)
{
	size_t i;

	for (i = 0; i < sizeof(proto_rlimit_names) / sizeof(proto_rlimit_names[0]); i++) {
		const char *n = proto_rlimit_names[i];

		if (strlen(n) == name.len && strncasecmp(n, name.ptr, name.len) == 0)
			return (int)i;
	}
	return -1;
}

int proto_rlimit_encode(struct cbw *w, const struct proto_rlimit *rl)
{
	cbw_map(w, 3);
	cbw_key(w, "resource");
	cbw_text(w, rl->resource.ptr, rl->resource.len);
	cbw_key(w, "soft");
	cbw_uint(w, rl->soft);
	cbw_key(w, "hard");
	cbw_uint(w, rl->hard);
	return w->err;
}

int proto_rlimit_decode(struct cbr *r, struct proto_rlimit *rl)
{
	enum { SEEN_RESOURCE = 1, SEEN_SOFT = 2, SEEN_HARD = 4 };
	struct proto_str key;
	struct cbr_agg m;
	unsigned seen = 0, bit;
	int rc;

	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		rc = cbr_key(r, &key);
		if (rc < 0)
			return rc;
		if (proto_str_eq(key, "resource"))
			bit = SEEN_RESOURCE;
		else if (proto_str_eq(key, "soft"))
			bit = SEEN_SOFT;
		else if (proto_str_eq(key, "hard"))
			bit = SEEN_HARD;
		else
			bit = 0;
		if (seen & bit)
			return PROTO_E_DUP_FIELD;
		seen |= bit;
		if (bit == SEEN_RESOURCE)
			rc = cbr_text(r, &rl->resource);
		else if (bit == SEEN_SOFT)
			rc = cbr_u64(r, &rl->soft);
		else if (bit == SEEN_HARD)
			rc = cbr_u64(r, &rl->hard);
		else
			rc = cbr_skip(r);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (seen != (SEEN_RESOURCE | SEEN_SOFT | SEEN_HARD))
		return PROTO_E_MISSING_FIELD;
	return 0;
}

int proto_rlimits_encode(struct cbw *w, const struct proto_rlimit *rl, size_t n)
{
	size_t i;

	cbw_array(w, n);
	for (i = 0; i < n; i++)
		proto_rlimit_encode(w, &rl[i]);
	return w->err;
}

void proto_strs_encode(struct cbw *w, const struct proto_str *v, size_t n)
{
	size_t i;

	cbw_array(w, n);
	for (i = 0; i < n; i++)
		cbw_text(w, v[i].ptr, v[i].len);
}

/* Decoder of one list element into <out>. */
typedef int (*proto_elem_decode_fn)(struct cbr *r, void *out);

static int proto_elem_text(struct cbr *r, void *out)
{
	return cbr_text(r, out);
}

static int proto_elem_rlimit(struct cbr *r, void *out)
{
	return proto_rlimit_decode(r, out);
}

/*
 * Decode an array of elements of <size> bytes into the arena.  An
 * indefinite array is counted first by skipping its items, then decoded.
 */
static int proto_list_decode(
	struct cbr *r, size_t size, proto_elem_decode_fn fn, void **v, size_t *n)
{
	const uint8_t *body;
	struct cbr_agg a;
	unsigned depth;
	uint8_t *out;
	size_t count = 0, i;
	int rc;

	rc = cbr_enter_array(r, &a);
	if (rc < 0)
		return rc;
	if (!a.indef) {
		count = (size_t)a.left; /* bounded by the input size (cbr_enter_array) */
	} else {
		body = r->p;
		depth = r->depth;
		while ((rc = cbr_agg_next(r, &a)) > 0) {
			rc = cbr_skip(r);
			if (rc < 0)
				return rc;
			count++;
		}
		if (rc < 0)
			return rc;
		r->p = body;
		r->depth = depth;
	}
	out = NULL;
	if (count > 0) {
		if (count > SIZE_MAX / size)
			return PROTO_E_NOSPACE;
		out = proto_arena_alloc(r->arena, count * size);
		if (!out)
			return PROTO_E_NOSPACE;
	}
	i = 0;
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		rc = fn(r, out + i * size);
		if (rc < 0)
			return rc;
		i++;
	}
	if (rc < 0)
		return rc;
	*v = out;
	*n = count;
	return 0;
}

int proto_rlimits_decode(struct cbr *r, struct proto_rlimit **rl, size_t *n)
{
	void *v;
	int rc = proto_list_decode(r, sizeof(**rl), proto_elem_rlimit, &v, n);

	if (rc == 0)
		*rl = v;
	return rc;
}

int proto_strs_decode(struct cbr *r, struct proto_str **v, size_t *n)
{
	void *p;
	int rc = proto_list_decode(r, sizeof(**v), proto_elem_text, &p, n);

	if (rc == 0)
		*v = p;
	return rc;
}
