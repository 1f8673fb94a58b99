/*
 * proto/msg_common.c - payload pieces shared by several message families:
 * ExecRlimit maps, lists of rlimits and lists of text strings; and the
 * decoding helpers every payload codec uses (proto/internal.h): the map
 * and list loops, name tables, Option fields.  Any thread.
 */
#include <string.h>
#include <strings.h>

#include "proto/error.h"
#include "proto/internal.h"
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
	proto_put_str(w, rl->resource);
	cbw_key(w, "soft");
	cbw_uint(w, rl->soft);
	cbw_key(w, "hard");
	cbw_uint(w, rl->hard);
	return w->err;
}

static const char *const proto_rlimit_keys[] = {"resource", "soft", "hard"};

static int proto_rlimit_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_rlimit *rl = obj;

	switch (field) {
	case 0:
		return cbr_text(r, &rl->resource);
	case 1:
		return cbr_u64(r, &rl->soft);
	default:
		return cbr_u64(r, &rl->hard);
	}
}

int proto_rlimit_decode(struct cbr *r, struct proto_rlimit *rl)
{
	return proto_map_decode(
		r, proto_rlimit_keys, 3, PROTO_ALL(3), PROTO_ALL(3), proto_rlimit_field, rl);
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
		proto_put_str(w, v[i]);
}

static int proto_elem_text(struct cbr *r, void *elem, const void *arg)
{
	return cbr_text(r, elem);
}

static int proto_elem_rlimit(struct cbr *r, void *elem, const void *arg)
{
	return proto_rlimit_decode(r, elem);
}

int proto_rlimits_decode(struct cbr *r, struct proto_rlimit **rl, size_t *n)
{
	void *v;
	int rc = proto_list_decode(r, sizeof(**rl), proto_elem_rlimit, NULL, &v, n);

	if (rc == 0)
		*rl = v;
	return rc;
}

int proto_strs_decode(struct cbr *r, struct proto_str **v, size_t *n)
{
	void *p;
	int rc = proto_list_decode(r, sizeof(**v), proto_elem_text, NULL, &p, n);

	if (rc == 0)
		*v = p;
	return rc;
}

/* ---- decoding helpers of proto/internal.h ---- */

int proto_name_index(struct proto_str s, const char *const *names, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (proto_str_eq(s, names[i]))
			return (int)i;
	return -1;
}

int proto_name_decode(struct cbr *r, const char *const *names, unsigned n, int *k)
{
	struct proto_str s;
	int rc, i;

	rc = cbr_text(r, &s);
	if (rc < 0)
		return rc;
	i = proto_name_index(s, names, n);
	if (i < 0)
		return PROTO_E_BAD_VALUE;
	*k = i;
	return 0;
}

int proto_map_decode(struct cbr *r, const char *const *names, unsigned n, uint32_t allowed,
	uint32_t required, proto_field_fn fn, void *obj)
{
	struct cbr_agg m;
	struct proto_str key;
	uint32_t seen = 0;
	int rc, idx;

	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		rc = cbr_key(r, &key);
		if (rc < 0)
			return rc;
		idx = proto_name_index(key, names, n);
		if (idx < 0 || !(allowed & PROTO_BIT(idx)))
			rc = cbr_skip(r);
		else if (seen & PROTO_BIT(idx))
			rc = PROTO_E_DUP_FIELD;
		else {
			seen |= PROTO_BIT(idx);
			rc = fn(r, obj, (unsigned)idx);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	return (seen & required) == required ? 0 : PROTO_E_MISSING_FIELD;
}

int proto_list_decode(
	struct cbr *r, size_t size, proto_elem_fn fn, const void *arg, void **v, size_t *n)
{
	struct cbr_agg a, a0;
	struct cbr r0;
	uint8_t *out = NULL;
	size_t count = 0, i = 0;
	int rc;

	rc = cbr_enter_array(r, &a);
	if (rc < 0)
		return rc;
	if (a.indef) {
		r0 = *r;
		a0 = a;
		while ((rc = cbr_agg_next(r, &a)) > 0) {
			rc = cbr_skip(r);
			if (rc < 0)
				return rc;
			count++;
		}
		if (rc < 0)
			return rc;
		*r = r0;
		a = a0;
	} else {
		count = (size_t)a.left; /* cbr_enter_array bounded it by the bytes left */
	}
	if (count > 0) {
		if (count > SIZE_MAX / size)
			return PROTO_E_NOSPACE;
		out = proto_arena_alloc(r->arena, count * size);
		if (!out)
			return PROTO_E_NOSPACE;
		memset(out, 0, count * size);
	}
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		rc = fn(r, out + size * i++, arg);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	*v = out;
	*n = count;
	return 0;
}

int proto_opt_begin(struct cbr *r, bool *set)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	*set = rc == 0;
	return *set;
}

/* Define <name>(r, o): an Option whose value is read by the typed getter <get>. */
#define PROTO_OPT_DECODER(name, type, get)                                                         \
	int name(struct cbr *r, struct type *o)                                                    \
	{                                                                                          \
		int rc = proto_opt_begin(r, &o->set);                                              \
                                                                                                   \
		return rc > 0 ? get(r, &o->v) : rc;                                                \
	}

PROTO_OPT_DECODER(proto_opt_u32_decode, proto_opt_u32, cbr_u32)
PROTO_OPT_DECODER(proto_opt_u64_decode, proto_opt_u64, cbr_u64)
PROTO_OPT_DECODER(proto_opt_i32_decode, proto_opt_i32, cbr_i32)
PROTO_OPT_DECODER(proto_opt_i64_decode, proto_opt_i64, cbr_i64)
PROTO_OPT_DECODER(proto_opt_str_decode, proto_opt_str, cbr_text)

/* ---- 16-byte identities ---- */

void proto_id16_encode(struct cbw *w, const struct proto_id16 *id)
{
	size_t i;

	cbw_array(w, PROTO_ID16_SIZE);
	for (i = 0; i < PROTO_ID16_SIZE; i++)
		cbw_uint(w, id->b[i]);
}

int proto_id16_decode(struct cbr *r, struct proto_id16 *id)
{
	struct cbr_item it;
	struct cbr_agg a;
	const uint8_t *p;
	size_t n = 0;
	int rc;

	rc = cbr_peek_untagged(r, &it);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_ARRAY && it.kind != CBR_ARRAY_INDEF) {
		rc = cbr_bytes(r, &p, &n); /* the byte-string form */
		if (rc < 0)
			return rc;
		if (n != PROTO_ID16_SIZE)
			return PROTO_E_BAD_VALUE;
		memcpy(id->b, p, PROTO_ID16_SIZE);
		return 0;
	}
	rc = cbr_enter_array(r, &a);
	if (rc < 0)
		return rc;
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		if (n == PROTO_ID16_SIZE)
			return PROTO_E_BAD_VALUE;
		rc = cbr_u8(r, &id->b[n++]);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	return n == PROTO_ID16_SIZE ? 0 : PROTO_E_BAD_VALUE;
}
