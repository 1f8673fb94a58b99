/*
 * proto/msg_core.c - core, exec and tcp payloads, driven by field tables.
 *
 * Each payload struct is described by a table of fields in serialization
 * order (spec section 3).  One encoder and one decoder walk the tables:
 *  - encode: a definite map of the fields actually written; an unset
 *    Option is null, or left out for fields marked PF_OMIT;
 *  - decode: keys in any order, unknown keys skipped, a known key twice is
 *    PROTO_E_DUP_FIELD, defaults applied first, a missing required field is
 *    PROTO_E_MISSING_FIELD, null/undefined mean "absent" for Options.
 */
#include <errno.h>
#include <string.h>

#include "proto/internal.h"
#include "proto/msg_core.h"

enum proto_field_kind {
	PF_U64,	     /* uint64_t */
	PF_U32,	     /* uint32_t */
	PF_U16,	     /* uint16_t */
	PF_I32,	     /* int32_t */
	PF_BOOL,     /* bool */
	PF_TEXT,     /* struct proto_str */
	PF_OPT_I32,  /* struct proto_opt_i32 */
	PF_OPT_TEXT, /* struct proto_opt_str */
	PF_STRS,     /* const struct proto_str * at off, size_t count at count_off */
	PF_RLIMITS,  /* const struct proto_rlimit * at off, size_t count at count_off */
	PF_ENUM,     /* an enum (int-sized) sent as a name from names[] */
	PF_STRUCT,   /* a nested struct described by sub */
};

#define PF_REQ 0x01u  /* required on decode (no default) */
#define PF_OMIT 0x02u /* encode: left out when unset (Option) or empty (text) */

struct proto_fields;

struct proto_field {
	const char *name;
	uint8_t name_len;
	uint8_t kind;			/* enum proto_field_kind */
	uint8_t flags;			/* PF_REQ, PF_OMIT */
	uint16_t off;			/* offset of the value in the struct */
	uint16_t count_off;		/* PF_STRS, PF_RLIMITS: offset of the size_t count */
	uint16_t def;			/* default of an integer or bool field that is not PF_REQ */
	const char *const *names;	/* PF_ENUM: wire names by value */
	uint8_t nnames;			/* PF_ENUM: number of names */
	const struct proto_fields *sub; /* PF_STRUCT */
};

struct proto_fields {
	const struct proto_field *f;
	uint8_t n;
};

#define FIELD(s, m, k, fl)                                                                         \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = k, .flags = fl,                    \
		.off = offsetof(s, m)                                                              \
	}
#define FIELD_DEF(s, m, k, d)                                                                      \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = k, .off = offsetof(s, m), .def = d \
	}
#define FIELD_LIST(s, m, cnt, k)                                                                   \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = k, .off = offsetof(s, m),          \
		.count_off = offsetof(s, cnt)                                                      \
	}
/* A field whose C name differs from the wire key. */
#define FIELD_AS(key, s, m, k, fl)                                                                 \
	{                                                                                          \
		.name = key, .name_len = sizeof(key) - 1, .kind = k, .flags = fl,                  \
		.off = offsetof(s, m)                                                              \
	}
#define FIELD_ENUM(s, m, tbl)                                                                      \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = PF_ENUM, .flags = PF_REQ,          \
		.off = offsetof(s, m), .names = tbl, .nnames = sizeof(tbl) / sizeof(tbl[0])        \
	}
#define FIELDS(tbl)                                                                                \
	{                                                                                          \
		tbl, sizeof(tbl) / sizeof(tbl[0])                                                  \
	}

static const char *const proto_error_kind_names[PROTO_ERROR__COUNT] = {
	"malformed_message",
	"unsupported_message_type",
	"unsupported_protocol_generation",
	"invalid_flags",
	"invalid_payload",
	"invalid_session",
};

static const char *const proto_exec_fail_kind_names[PROTO_EXEC_FAIL__COUNT] = {
	"not_found",
	"permission_denied",
	"not_executable",
	"bad_cwd",
	"bad_args",
	"resource_limit",
	"user_setup_failed",
	"out_of_memory",
	"pty_setup_failed",
	"other",
};

_Static_assert(sizeof(enum proto_error_kind) == sizeof(unsigned int), "enum is int-sized");
_Static_assert(sizeof(enum proto_exec_fail_kind) == sizeof(unsigned int), "enum is int-sized");

static const struct proto_field default_user_f[] = {
	FIELD(struct proto_default_user, uid, PF_U32, PF_REQ),
	FIELD(struct proto_default_user, gid, PF_U32, PF_REQ),
};
static const struct proto_fields default_user_d = FIELDS(default_user_f);

static const struct proto_field init_resolved_f[] = {
	{.name = "default_user",
		.name_len = 12,
		.kind = PF_STRUCT,
		.flags = PF_REQ,
		.off = offsetof(struct proto_init_resolved, default_user),
		.sub = &default_user_d},
};

static const struct proto_field ready_f[] = {
	FIELD(struct proto_ready, boot_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, init_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, ready_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, agent_version, PF_TEXT, PF_OMIT),
};

static const struct proto_field clock_sync_f[] = {
	FIELD(struct proto_clock_sync, unix_time_nanos, PF_U64, PF_REQ),
};

static const struct proto_field touched_f[] = {
	FIELD(struct proto_touched, activity_seq, PF_U64, PF_REQ),
};

static const struct proto_field core_error_f[] = {
	FIELD_ENUM(struct proto_core_error, kind, proto_error_kind_names),
	FIELD(struct proto_core_error, message, PF_TEXT, PF_REQ),
	FIELD(struct proto_core_error, offending_type, PF_OPT_TEXT, PF_OMIT),
};

static const struct proto_field relay_client_disconnected_f[] = {
	FIELD(struct proto_relay_client_disconnected, id_start, PF_U32, PF_REQ),
	FIELD(struct proto_relay_client_disconnected, id_end_exclusive, PF_U32, PF_REQ),
};

static const struct proto_field exec_request_f[] = {
	FIELD(struct proto_exec_request, cmd, PF_TEXT, PF_REQ),
	FIELD_LIST(struct proto_exec_request, args, nargs, PF_STRS),
	FIELD_LIST(struct proto_exec_request, env, nenv, PF_STRS),
	FIELD(struct proto_exec_request, cwd, PF_OPT_TEXT, 0),
	FIELD(struct proto_exec_request, user, PF_OPT_TEXT, 0),
	FIELD_DEF(struct proto_exec_request, tty, PF_BOOL, 0),
	FIELD_DEF(struct proto_exec_request, rows, PF_U16, PROTO_EXEC_ROWS_DEFAULT),
	FIELD_DEF(struct proto_exec_request, cols, PF_U16, PROTO_EXEC_COLS_DEFAULT),
	FIELD_LIST(struct proto_exec_request, rlimits, nrlimits, PF_RLIMITS),
};

static const struct proto_field exec_started_f[] = {
	FIELD(struct proto_exec_started, pid, PF_U32, PF_REQ),
};

static const struct proto_field exec_stdin_error_f[] = {
	FIELD_AS("errno", struct proto_exec_stdin_error, err_no, PF_OPT_I32, 0),
	FIELD(struct proto_exec_stdin_error, errno_name, PF_OPT_TEXT, 0),
	FIELD(struct proto_exec_stdin_error, message, PF_TEXT, PF_REQ),
};

static const struct proto_field exec_exited_f[] = {
	FIELD(struct proto_exec_exited, code, PF_I32, PF_REQ),
	FIELD(struct proto_exec_exited, signal, PF_OPT_I32, PF_OMIT),
};

static const struct proto_field exec_failed_f[] = {
	FIELD_ENUM(struct proto_exec_failed, kind, proto_exec_fail_kind_names),
	FIELD_AS("errno", struct proto_exec_failed, err_no, PF_OPT_I32, 0),
	FIELD(struct proto_exec_failed, errno_name, PF_OPT_TEXT, 0),
	FIELD(struct proto_exec_failed, message, PF_TEXT, PF_REQ),
	FIELD(struct proto_exec_failed, stage, PF_OPT_TEXT, 0),
};

static const struct proto_field exec_resize_f[] = {
	FIELD(struct proto_exec_resize, rows, PF_U16, PF_REQ),
	FIELD(struct proto_exec_resize, cols, PF_U16, PF_REQ),
};

static const struct proto_field exec_signal_f[] = {
	FIELD(struct proto_exec_signal, signal, PF_I32, PF_REQ),
};

static const struct proto_field tcp_connect_f[] = {
	FIELD(struct proto_tcp_connect, host, PF_TEXT, PF_REQ),
	FIELD(struct proto_tcp_connect, port, PF_U16, PF_REQ),
};

static const struct proto_field tcp_failed_f[] = {
	FIELD(struct proto_tcp_failed, error, PF_TEXT, PF_REQ),
};

/*
 * Field table per type.  No entry ({NULL, 0}) for the empty-map types
 * (PROTO_TA_EMPTY), core.shutdown, and the types handled elsewhere.
 */
static const struct proto_fields proto_core_fields[PROTO_T__COUNT] = {
	[PROTO_T_INIT_RESOLVED] = FIELDS(init_resolved_f),
	[PROTO_T_READY] = FIELDS(ready_f),
	[PROTO_T_RELAY_CLIENT_DISCONNECTED] = FIELDS(relay_client_disconnected_f),
	[PROTO_T_CLOCK_SYNC] = FIELDS(clock_sync_f),
	[PROTO_T_TOUCHED] = FIELDS(touched_f),
	[PROTO_T_ERROR] = FIELDS(core_error_f),
	[PROTO_T_EXEC_REQUEST] = FIELDS(exec_request_f),
	[PROTO_T_EXEC_STARTED] = FIELDS(exec_started_f),
	[PROTO_T_EXEC_STDIN_ERROR] = FIELDS(exec_stdin_error_f),
	[PROTO_T_EXEC_EXITED] = FIELDS(exec_exited_f),
	[PROTO_T_EXEC_FAILED] = FIELDS(exec_failed_f),
	[PROTO_T_EXEC_RESIZE] = FIELDS(exec_resize_f),
	[PROTO_T_EXEC_SIGNAL] = FIELDS(exec_signal_f),
	[PROTO_T_TCP_CONNECT] = FIELDS(tcp_connect_f),
	[PROTO_T_TCP_FAILED] = FIELDS(tcp_failed_f),
};

/* Empty-map types have no table entries but are handled: they carry PROTO_TA_EMPTY. */
static bool proto_core_has_table(enum proto_type t)
{
	return proto_core_fields[t].n > 0 || (proto_type_table[t].attrs & PROTO_TA_EMPTY);
}

bool proto_core_handles(enum proto_type t)
{
	return proto_type_valid(t) && (t == PROTO_T_SHUTDOWN || proto_core_has_table(t));
}

const char *proto_error_kind_name(enum proto_error_kind k)
{
	return (unsigned)k < PROTO_ERROR__COUNT ? proto_error_kind_names[k] : "?";
}

const char *proto_exec_fail_kind_name(enum proto_exec_fail_kind k)
{
	return (unsigned)k < PROTO_EXEC_FAIL__COUNT ? proto_exec_fail_kind_names[k] : "?";
}

/* --- encode --------------------------------------------------------------- */

static int proto_fields_encode(struct cbw *w, const struct proto_fields *d, const void *obj);

/* Whether field <f> of <obj> is written at all. */
static bool proto_field_present(const struct proto_field *f, const uint8_t *obj)
{
	const void *v = obj + f->off;

	if (!(f->flags & PF_OMIT))
		return true;
	if (f->kind == PF_TEXT)
		return ((const struct proto_str *)v)->len > 0;
	if (f->kind == PF_OPT_I32)
		return ((const struct proto_opt_i32 *)v)->set;
	return ((const struct proto_opt_str *)v)->set; /* PF_OPT_TEXT */
}

static int proto_field_encode(struct cbw *w, const struct proto_field *f, const uint8_t *obj)
{
	const void *v = obj + f->off;
	const struct proto_opt_i32 *oi;
	unsigned int e;

	switch (f->kind) {
	case PF_U64:
		cbw_uint(w, *(const uint64_t *)v);
		break;
	case PF_U32:
		cbw_uint(w, *(const uint32_t *)v);
		break;
	case PF_U16:
		cbw_uint(w, *(const uint16_t *)v);
		break;
	case PF_I32:
		cbw_int(w, *(const int32_t *)v);
		break;
	case PF_BOOL:
		cbw_bool(w, *(const bool *)v);
		break;
	case PF_TEXT:
		proto_put_str(w, *(const struct proto_str *)v);
		break;
	case PF_OPT_I32:
		oi = v;
		proto_put_opt_int(w, oi->set, oi->v);
		break;
	case PF_OPT_TEXT:
		proto_put_opt_str(w, v);
		break;
	case PF_STRS:
		proto_strs_encode(w, *(const struct proto_str *const *)v,
			*(const size_t *)(obj + f->count_off));
		break;
	case PF_RLIMITS:
		proto_rlimits_encode(w, *(const struct proto_rlimit *const *)v,
			*(const size_t *)(obj + f->count_off));
		break;
	case PF_ENUM:
		e = *(const unsigned int *)v;
		if (e >= f->nnames)
			return PROTO_E_BAD_VALUE;
		cbw_cstr(w, f->names[e]);
		break;
	case PF_STRUCT:
		return proto_fields_encode(w, f->sub, v);
	}
	return w->err;
}

static int proto_fields_encode(struct cbw *w, const struct proto_fields *d, const void *obj)
{
	size_t i, n = 0;
	int rc;

	for (i = 0; i < d->n; i++)
		n += proto_field_present(&d->f[i], obj);
	cbw_map(w, n);
	for (i = 0; i < d->n; i++) {
		if (!proto_field_present(&d->f[i], obj))
			continue;
		cbw_text(w, d->f[i].name, d->f[i].name_len);
		rc = proto_field_encode(w, &d->f[i], obj);
		if (rc < 0)
			return rc;
	}
	return w->err;
}

int proto_core_encode(struct cbw *w, enum proto_type t, const void *payload)
{
	if (!proto_core_handles(t))
		return -EINVAL;
	if (t == PROTO_T_SHUTDOWN) {
		cbw_null(w);
		return w->err;
	}
	return proto_fields_encode(w, &proto_core_fields[t], payload);
}

/* --- decode --------------------------------------------------------------- */

static int proto_fields_decode(
	struct cbr *r, const struct proto_fields *d, void *obj, struct proto_errinfo *ei);

/* Set every field that is not required to its default. */
static void proto_fields_defaults(const struct proto_fields *d, uint8_t *obj)
{
	size_t i;

	for (i = 0; i < d->n; i++) {
		const struct proto_field *f = &d->f[i];
		void *v = obj + f->off;

		if (f->flags & PF_REQ)
			continue;
		switch (f->kind) {
		case PF_U64:
			*(uint64_t *)v = f->def;
			break;
		case PF_U32:
			*(uint32_t *)v = f->def;
			break;
		case PF_U16:
			*(uint16_t *)v = f->def;
			break;
		case PF_I32:
			*(int32_t *)v = f->def;
			break;
		case PF_BOOL:
			*(bool *)v = f->def != 0;
			break;
		case PF_TEXT:
			*(struct proto_str *)v = (struct proto_str){"", 0};
			break;
		case PF_OPT_I32:
			((struct proto_opt_i32 *)v)->set = false;
			break;
		case PF_OPT_TEXT:
			((struct proto_opt_str *)v)->set = false;
			break;
		case PF_STRS:
		case PF_RLIMITS:
			*(const void **)v = NULL;
			*(size_t *)(obj + f->count_off) = 0;
			break;
		default:
			break; /* PF_ENUM and PF_STRUCT are always required */
		}
	}
}

static int proto_field_decode(
	struct cbr *r, const struct proto_field *f, uint8_t *obj, struct proto_errinfo *ei)
{
	void *v = obj + f->off;
	struct proto_rlimit *rl;
	struct proto_str *sv;
	int rc, k;

	switch (f->kind) {
	case PF_U64:
		return cbr_u64(r, v);
	case PF_U32:
		return cbr_u32(r, v);
	case PF_U16:
		return cbr_u16(r, v);
	case PF_I32:
		return cbr_i32(r, v);
	case PF_BOOL:
		return cbr_bool(r, v);
	case PF_TEXT:
		return cbr_text(r, v);
	case PF_OPT_I32:
		return proto_opt_i32_decode(r, v);
	case PF_OPT_TEXT:
		return proto_opt_str_decode(r, v);
	case PF_STRS:
		rc = proto_strs_decode(r, &sv, (size_t *)(obj + f->count_off));
		if (rc == 0)
			*(const struct proto_str **)v = sv;
		return rc;
	case PF_RLIMITS:
		rc = proto_rlimits_decode(r, &rl, (size_t *)(obj + f->count_off));
		if (rc == 0)
			*(const struct proto_rlimit **)v = rl;
		return rc;
	case PF_ENUM:
		rc = proto_name_decode(r, f->names, f->nnames, &k);
		if (rc == 0)
			*(unsigned int *)v = (unsigned int)k;
		return rc;
	case PF_STRUCT:
		return proto_fields_decode(r, f->sub, v, ei);
	}
	return -EINVAL;
}

/* Record a failure in <ei> unless a nested decoder already did. */
static int proto_fields_fail(struct proto_errinfo *ei, int code, size_t off, const char *field)
{
	if (ei && !ei->field) {
		ei->code = code;
		ei->offset = off;
		ei->field = field;
	}
	return code;
}

static int proto_fields_decode(
	struct cbr *r, const struct proto_fields *d, void *obj, struct proto_errinfo *ei)
{
	uint32_t seen = 0, all = 0;
	struct proto_str key;
	struct cbr_agg m;
	size_t i, off = cbr_offset(r);
	int rc;

	proto_fields_defaults(d, obj);
	rc = cbr_enter_map(r, &m);
	if (rc < 0)
		return proto_fields_fail(ei, rc, off, NULL);
	while ((rc = cbr_agg_next(r, &m)) > 0) {
		off = cbr_offset(r);
		rc = cbr_key(r, &key);
		if (rc < 0)
			return proto_fields_fail(ei, rc, off, NULL);
		for (i = 0; i < d->n; i++) {
			if (key.len == d->f[i].name_len &&
				memcmp(key.ptr, d->f[i].name, key.len) == 0)
				break;
		}
		off = cbr_offset(r);
		if (i == d->n) {
			rc = cbr_skip(r);
			if (rc < 0)
				return proto_fields_fail(ei, rc, off, NULL);
			continue;
		}
		if (seen & (1u << i))
			return proto_fields_fail(ei, PROTO_E_DUP_FIELD, off, d->f[i].name);
		seen |= 1u << i;
		rc = proto_field_decode(r, &d->f[i], obj, ei);
		if (rc < 0)
			return proto_fields_fail(ei, rc, off, d->f[i].name);
	}
	if (rc < 0)
		return proto_fields_fail(ei, rc, cbr_offset(r), NULL);
	for (i = 0; i < d->n; i++) {
		if (d->f[i].flags & PF_REQ)
			all |= 1u << i;
	}
	if ((seen & all) != all) {
		for (i = 0; !(all & ~seen & (1u << i)); i++)
			;
		return proto_fields_fail(ei, PROTO_E_MISSING_FIELD, cbr_offset(r), d->f[i].name);
	}
	return 0;
}

int proto_core_decode(struct cbr *r, enum proto_type t, void *payload, struct proto_errinfo *ei)
{
	int rc;

	if (!proto_core_handles(t))
		return -EINVAL;
	if (t == PROTO_T_SHUTDOWN)
		return 0; /* never decoded: any payload is accepted (spec 3.1) */
	if (ei)
		ei->field = NULL;
	rc = proto_fields_decode(r, &proto_core_fields[t], payload, ei);
	if (rc < 0 && ei)
		ei->type = proto_type_table[t].name;
	return rc;
}
