/*
 * proto/msg_core.c - core, exec, tcp and generation 8/9 payloads, driven by
 * field tables.
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
#include "proto/msg_boot.h"
#include "proto/msg_core.h"

enum proto_field_kind {
	PF_U64,	       /* uint64_t */
	PF_U32,	       /* uint32_t */
	PF_U16,	       /* uint16_t */
	PF_I32,	       /* int32_t */
	PF_BOOL,       /* bool */
	PF_TEXT,       /* struct proto_str */
	PF_OPT_I32,    /* struct proto_opt_i32 */
	PF_OPT_TEXT,   /* struct proto_opt_str */
	PF_STRS,       /* const struct proto_str * at off, size_t count at count_off */
	PF_RLIMITS,    /* const struct proto_rlimit * at off, size_t count at count_off */
	PF_ENUM,       /* an enum (int-sized) sent as a name from names[] */
	PF_STRUCT,     /* a nested struct described by sub */
	PF_U8,	       /* uint8_t */
	PF_UENUM,      /* an enum (int-sized) sent as an unsigned integer in lo..hi */
	PF_OPT_U8,     /* struct proto_opt_u8 */
	PF_ID16,       /* struct proto_id16: an array of 16 integers */
	PF_OPT_ID16,   /* struct proto_opt_id16 */
	PF_OPT_STRUCT, /* an Option wrapper {bool set; ...} holding a sub struct at val_off */
	PF_OPT_U64,    /* struct proto_opt_u64 */
	PF_EXT,	       /* sandwire announcement (msg_boot.h): names at off, count at count_off */
};

#define PF_REQ 0x01u   /* required on decode (no default) */
#define PF_OMIT 0x02u  /* encode: left out when unset (Option) or empty (text) */
#define PF_OTHER 0x04u /* PF_ENUM: an unknown name decodes to the last entry of names[] */

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
	uint8_t lo, hi;			/* PF_UENUM: the valid values */
	uint16_t val_off;		/* PF_OPT_STRUCT: offset of the value in the wrapper */
	const struct proto_fields *sub; /* PF_STRUCT, PF_OPT_STRUCT */
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
/* A text enum whose unknown names decode to its last entry ("unknown"). */
#define FIELD_ENUM_OTHER(s, m, tbl)                                                                \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = PF_ENUM,                           \
		.flags = PF_REQ | PF_OTHER, .off = offsetof(s, m), .names = tbl,                   \
		.nnames = sizeof(tbl) / sizeof(tbl[0])                                             \
	}
/* An enum sent as an unsigned integer, valid from l to h. */
#define FIELD_UENUM(s, m, l, h)                                                                    \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = PF_UENUM, .flags = PF_REQ,         \
		.off = offsetof(s, m), .lo = l, .hi = h                                            \
	}
/* A required nested struct described by <d>. */
#define FIELD_STRUCT(s, m, d)                                                                      \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = PF_STRUCT, .flags = PF_REQ,        \
		.off = offsetof(s, m), .sub = &d                                                   \
	}
/* An Option<struct> (wrapper type <wrap>), omitted when unset. */
#define FIELD_OPT_STRUCT(s, m, wrap, d)                                                            \
	{                                                                                          \
		.name = #m, .name_len = sizeof(#m) - 1, .kind = PF_OPT_STRUCT, .flags = PF_OMIT,   \
		.off = offsetof(s, m), .val_off = offsetof(wrap, v), .sub = &d                     \
	}
/* The sandwire announcement under the key "sandwire", omitted when it names nothing. */
#define FIELD_EXT(s, m, cnt)                                                                       \
	{                                                                                          \
		.name = "sandwire", .name_len = sizeof("sandwire") - 1, .kind = PF_EXT,            \
		.flags = PF_OMIT, .off = offsetof(s, m), .count_off = offsetof(s, cnt)             \
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
	"capability_unavailable",
};

static const char *const proto_workload_disposition_names[PROTO_WORKLOAD_DISPOSITION__COUNT] = {
	"unavailable",
	"recovery_required",
	"unknown",
};

static const char *const proto_thaw_mode_names[PROTO_THAW_MODE__COUNT] = {
	"continue",
	"restore",
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
_Static_assert(
	sizeof(enum proto_workload_disposition) == sizeof(unsigned int), "enum is int-sized");
_Static_assert(sizeof(enum proto_thaw_mode) == sizeof(unsigned int), "enum is int-sized");
_Static_assert(sizeof(enum proto_bulk_kind) == sizeof(unsigned int), "enum is int-sized");
_Static_assert(sizeof(enum proto_bulk_flow) == sizeof(unsigned int), "enum is int-sized");
_Static_assert(sizeof(enum proto_bulk_cancel_reason) == sizeof(unsigned int), "enum is int-sized");

static const struct proto_field default_user_f[] = {
	FIELD(struct proto_default_user, uid, PF_U32, PF_REQ),
	FIELD(struct proto_default_user, gid, PF_U32, PF_REQ),
};
static const struct proto_fields default_user_d = FIELDS(default_user_f);

static const struct proto_field init_resolved_f[] = {
	FIELD_STRUCT(struct proto_init_resolved, default_user, default_user_d),
};

static const struct proto_field bulk_transport_f[] = {
	FIELD(struct proto_bulk_transport, profile, PF_TEXT, PF_REQ),
	FIELD(struct proto_bulk_transport, port, PF_TEXT, PF_REQ),
	FIELD(struct proto_bulk_transport, connection_id, PF_ID16, PF_REQ),
};
static const struct proto_fields bulk_transport_d = FIELDS(bulk_transport_f);

static const struct proto_field max_format_f[] = {
	FIELD(struct proto_max_format, max_format, PF_U8, PF_REQ),
};
static const struct proto_fields max_format_d = FIELDS(max_format_f);

static const struct proto_field ready_f[] = {
	FIELD(struct proto_ready, boot_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, init_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, ready_time_ns, PF_U64, PF_REQ),
	FIELD(struct proto_ready, agent_version, PF_TEXT, PF_OMIT),
	FIELD_OPT_STRUCT(struct proto_ready, bulk_transport, struct proto_opt_bulk_transport,
		bulk_transport_d),
	FIELD_OPT_STRUCT(
		struct proto_ready, relay_lease, struct proto_opt_max_format, max_format_d),
	FIELD_OPT_STRUCT(
		struct proto_ready, local_transport, struct proto_opt_max_format, max_format_d),
	FIELD(struct proto_ready, workload_transport_barrier_version, PF_OPT_U8, PF_OMIT),
	FIELD_EXT(struct proto_ready, ext, n_ext),
};

static const struct proto_field clock_sync_f[] = {
	FIELD(struct proto_clock_sync, unix_time_nanos, PF_U64, PF_REQ),
};

static const struct proto_field touched_f[] = {
	FIELD(struct proto_touched, activity_seq, PF_U64, PF_REQ),
};

static const struct proto_field workload_failure_f[] = {
	FIELD(struct proto_workload_failure, attempt_id, PF_TEXT, PF_REQ),
	FIELD_ENUM_OTHER(
		struct proto_workload_failure, disposition, proto_workload_disposition_names),
};
static const struct proto_fields workload_failure_d = FIELDS(workload_failure_f);

static const struct proto_field core_error_f[] = {
	FIELD_ENUM(struct proto_core_error, kind, proto_error_kind_names),
	FIELD(struct proto_core_error, message, PF_TEXT, PF_REQ),
	FIELD(struct proto_core_error, offending_type, PF_OPT_TEXT, PF_OMIT),
	FIELD_OPT_STRUCT(struct proto_core_error, workload_failure,
		struct proto_opt_workload_failure, workload_failure_d),
};

static const struct proto_field relay_client_disconnected_f[] = {
	FIELD(struct proto_relay_client_disconnected, id_start, PF_U32, PF_REQ),
	FIELD(struct proto_relay_client_disconnected, id_end_exclusive, PF_U32, PF_REQ),
	FIELD(struct proto_relay_client_disconnected, incarnation, PF_OPT_ID16, PF_OMIT),
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
	FIELD(struct proto_exec_request, sandwire_credit, PF_OPT_U64, PF_OMIT),
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

static const struct proto_field bulk_offer_f[] = {
	FIELD(struct proto_bulk_offer, format, PF_U8, PF_REQ),
	FIELD(struct proto_bulk_offer, max_record_payload, PF_U32, PF_REQ),
	FIELD(struct proto_bulk_offer, guest_to_host_credit_limit, PF_U64, PF_REQ),
};
static const struct proto_fields bulk_offer_d = FIELDS(bulk_offer_f);

static const struct proto_field tcp_connect_f[] = {
	FIELD(struct proto_tcp_connect, host, PF_TEXT, PF_REQ),
	FIELD(struct proto_tcp_connect, port, PF_U16, PF_REQ),
	FIELD_OPT_STRUCT(struct proto_tcp_connect, bulk, struct proto_opt_bulk_offer, bulk_offer_d),
};

static const struct proto_field tcp_failed_f[] = {
	FIELD(struct proto_tcp_failed, error, PF_TEXT, PF_REQ),
};

/* kind, flow and reason are integers on the wire (G3.1) */
#define BULK_KIND(s) FIELD_UENUM(s, kind, PROTO_BULK_KIND_FS, PROTO_BULK_KIND_TCP)
#define BULK_FLOW(s) FIELD_UENUM(s, flow, PROTO_BULK_H2G, PROTO_BULK_G2H)

static const struct proto_field bulk_accepted_f[] = {
	BULK_KIND(struct proto_bulk_accepted),
	FIELD(struct proto_bulk_accepted, flows, PF_U8, PF_REQ),
	FIELD(struct proto_bulk_accepted, format, PF_U8, PF_REQ),
	FIELD(struct proto_bulk_accepted, max_record_payload, PF_U32, PF_REQ),
	FIELD(struct proto_bulk_accepted, host_to_guest_credit_limit, PF_U64, PF_REQ),
	FIELD(struct proto_bulk_accepted, guest_to_host_credit_limit, PF_U64, PF_REQ),
};

static const struct proto_field bulk_credit_f[] = {
	BULK_KIND(struct proto_bulk_credit),
	BULK_FLOW(struct proto_bulk_credit),
	FIELD(struct proto_bulk_credit, consumed_offset, PF_U64, PF_REQ),
	FIELD(struct proto_bulk_credit, credit_limit, PF_U64, PF_REQ),
};

static const struct proto_field bulk_finish_f[] = {
	BULK_KIND(struct proto_bulk_finish),
	BULK_FLOW(struct proto_bulk_finish),
	FIELD(struct proto_bulk_finish, final_offset, PF_U64, PF_REQ),
};

static const struct proto_field bulk_cancel_f[] = {
	BULK_KIND(struct proto_bulk_cancel),
	FIELD_UENUM(struct proto_bulk_cancel, reason, PROTO_BULK_CANCEL_CALLER,
		PROTO_BULK_CANCEL_PROTOCOL),
	FIELD(struct proto_bulk_cancel, message, PF_TEXT, PF_REQ),
};

static const struct proto_field workload_transport_f[] = {
	FIELD(struct proto_workload_transport, control_bytes, PF_U64, PF_REQ),
	FIELD(struct proto_workload_transport, control_frames, PF_U64, PF_REQ),
	FIELD(struct proto_workload_transport, bulk_bytes, PF_U64, PF_REQ),
	FIELD(struct proto_workload_transport, bulk_frames, PF_U64, PF_REQ),
};
static const struct proto_fields workload_transport_d = FIELDS(workload_transport_f);

static const struct proto_field workload_freeze_f[] = {
	FIELD_LIST(
		struct proto_workload_freeze, external_mount_tags, n_external_mount_tags, PF_STRS),
	FIELD(struct proto_workload_freeze, attempt_id, PF_TEXT, PF_REQ),
	FIELD_STRUCT(struct proto_workload_freeze, host_input, workload_transport_d),
};

static const struct proto_field workload_frozen_f[] = {
	FIELD(struct proto_workload_frozen, attempt_id, PF_TEXT, PF_REQ),
	FIELD(struct proto_workload_frozen, guest_bulk_bytes_target, PF_U64, PF_REQ),
	FIELD_STRUCT(struct proto_workload_frozen, input_credit, workload_transport_d),
	FIELD_DEF(struct proto_workload_frozen, external_mounts_synced, PF_BOOL, 0),
};

static const struct proto_field workload_thaw_f[] = {
	FIELD(struct proto_workload_thaw, attempt_id, PF_TEXT, PF_REQ),
	FIELD_ENUM(struct proto_workload_thaw, mode, proto_thaw_mode_names),
};

static const struct proto_field workload_thawed_f[] = {
	FIELD(struct proto_workload_thawed, attempt_id, PF_TEXT, PF_REQ),
};

static const struct proto_field root_disk_grow_f[] = {
	FIELD(struct proto_root_disk_grow, size_bytes, PF_U64, PF_REQ),
};

static const struct proto_field sandwire_credit_f[] = {
	FIELD(struct proto_sandwire_credit, bytes, PF_U64, PF_REQ),
};

static const struct proto_field root_disk_state_f[] = {
	FIELD(struct proto_root_disk_state, filesystem_bytes, PF_U64, PF_REQ),
	FIELD(struct proto_root_disk_state, device_bytes, PF_U64, PF_REQ),
};

/*
 * Field table per type.  No entry ({NULL, 0}) for the empty-map types
 * (PROTO_TA_EMPTY), core.shutdown, and the types handled elsewhere.
 */
static const struct proto_fields proto_core_fields[PROTO_T__END] = {
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
	[PROTO_T_BULK_ACCEPTED] = FIELDS(bulk_accepted_f),
	[PROTO_T_BULK_CREDIT] = FIELDS(bulk_credit_f),
	[PROTO_T_BULK_FINISH] = FIELDS(bulk_finish_f),
	[PROTO_T_BULK_CANCEL] = FIELDS(bulk_cancel_f),
	[PROTO_T_WORKLOAD_FREEZE] = FIELDS(workload_freeze_f),
	[PROTO_T_WORKLOAD_FROZEN] = FIELDS(workload_frozen_f),
	[PROTO_T_WORKLOAD_THAW] = FIELDS(workload_thaw_f),
	[PROTO_T_WORKLOAD_THAWED] = FIELDS(workload_thawed_f),
	[PROTO_T_WORKLOAD_TRANSPORT_CREDIT] = FIELDS(workload_transport_f),
	[PROTO_T_ROOT_DISK_PREPARE] = FIELDS(root_disk_grow_f),
	[PROTO_T_ROOT_DISK_GROW] = FIELDS(root_disk_grow_f),
	[PROTO_T_ROOT_DISK_STATE] = FIELDS(root_disk_state_f),
	[PROTO_T_SANDWIRE_CREDIT] = FIELDS(sandwire_credit_f),
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
	if (f->kind == PF_EXT)
		return *(const size_t *)(obj + f->count_off) != 0;
	if (f->kind == PF_TEXT)
		return ((const struct proto_str *)v)->len > 0;
	return *(const bool *)v; /* every Option struct starts with its bool set */
}

static int proto_field_encode(struct cbw *w, const struct proto_field *f, const uint8_t *obj)
{
	const void *v = obj + f->off;
	const struct proto_opt_id16 *oid;
	const struct proto_opt_u64 *o64;
	const struct proto_opt_i32 *oi;
	const struct proto_opt_u8 *ou;
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
	case PF_U8:
		cbw_uint(w, *(const uint8_t *)v);
		break;
	case PF_UENUM:
		e = *(const unsigned int *)v;
		if (e < f->lo || e > f->hi)
			return PROTO_E_BAD_VALUE;
		cbw_uint(w, e);
		break;
	case PF_OPT_U8:
		ou = v;
		proto_put_opt_uint(w, ou->set, ou->v);
		break;
	case PF_ID16:
		proto_id16_encode(w, v);
		break;
	case PF_OPT_ID16:
		oid = v;
		if (oid->set)
			proto_id16_encode(w, &oid->v);
		else
			cbw_null(w);
		break;
	case PF_OPT_STRUCT:
		if (*(const bool *)v)
			return proto_fields_encode(w, f->sub, (const uint8_t *)v + f->val_off);
		cbw_null(w);
		break;
	case PF_OPT_U64:
		o64 = v;
		proto_put_opt_uint(w, o64->set, o64->v);
		break;
	case PF_EXT:
		return proto_ext_encode(w, *(const struct proto_str *const *)v,
			*(const size_t *)(obj + f->count_off));
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
		case PF_OPT_U8:
		case PF_OPT_ID16:
		case PF_OPT_STRUCT:
		case PF_OPT_U64:
			*(bool *)v = false; /* every Option struct starts with its bool set */
			break;
		case PF_U8:
			*(uint8_t *)v = (uint8_t)f->def;
			break;
		case PF_STRS:
		case PF_RLIMITS:
		case PF_EXT:
			*(const void **)v = NULL;
			*(size_t *)(obj + f->count_off) = 0;
			break;
		default:
			break; /* PF_ENUM, PF_UENUM, PF_STRUCT and PF_ID16 are always required */
		}
	}
}

static int proto_field_decode(
	struct cbr *r, const struct proto_field *f, uint8_t *obj, struct proto_errinfo *ei)
{
	void *v = obj + f->off;
	struct proto_rlimit *rl;
	struct proto_str *sv;
	bool set = false;
	uint8_t u;
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
		if (rc == PROTO_E_BAD_VALUE && (f->flags & PF_OTHER)) {
			k = f->nnames - 1;
			rc = 0;
		}
		if (rc == 0)
			*(unsigned int *)v = (unsigned int)k;
		return rc;
	case PF_STRUCT:
		return proto_fields_decode(r, f->sub, v, ei);
	case PF_U8:
		return cbr_u8(r, v);
	case PF_UENUM:
		rc = cbr_u8(r, &u);
		if (rc == 0 && (u < f->lo || u > f->hi))
			rc = PROTO_E_BAD_VALUE;
		if (rc == 0)
			*(unsigned int *)v = u;
		return rc;
	case PF_OPT_U8:
	case PF_OPT_ID16:
	case PF_OPT_STRUCT:
		rc = proto_opt_begin(r, &set);
		*(bool *)v = set;
		if (rc <= 0)
			return rc;
		if (f->kind == PF_OPT_U8)
			return cbr_u8(r, &((struct proto_opt_u8 *)v)->v);
		if (f->kind == PF_OPT_ID16)
			return proto_id16_decode(r, &((struct proto_opt_id16 *)v)->v);
		return proto_fields_decode(r, f->sub, (uint8_t *)v + f->val_off, ei);
	case PF_ID16:
		return proto_id16_decode(r, v);
	case PF_OPT_U64:
		return proto_opt_u64_decode(r, v);
	case PF_EXT:
		rc = proto_ext_decode(r, &sv, (size_t *)(obj + f->count_off));
		if (rc == 0)
			*(const struct proto_str **)v = sv;
		return rc;
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

int proto_bulk_offer_encode(struct cbw *w, const struct proto_bulk_offer *o)
{
	return proto_fields_encode(w, &bulk_offer_d, o);
}

int proto_bulk_offer_decode(struct cbr *r, struct proto_bulk_offer *o)
{
	return proto_fields_decode(r, &bulk_offer_d, o, NULL);
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
