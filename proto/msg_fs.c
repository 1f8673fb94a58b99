/*
 * proto/msg_fs.c - FsRequest / FsResponse payload codec (spec 3.3).
 *
 * Structs are decoded by the table-driven loop of proto/internal.h
 * (proto_map_decode): a struct's keys are listed in a names table whose
 * order is also the order the encoder writes them in; a bit per key catches
 * duplicates and missing required fields.  FsOp variants share one table of all 14 field names;
 * each variant allows (and, except Option fields, requires) a subset.
 */
#include <stdint.h>
#include <string.h>

#include "proto/error.h"
#include "proto/internal.h"
#include "proto/msg_core.h"
#include "proto/msg_fs.h"

const char *const proto_fs_op_names[PROTO_FS_OP_COUNT] = {
	[PROTO_FS_OP_REAL_PATH] = "RealPath",
	[PROTO_FS_OP_STAT] = "Stat",
	[PROTO_FS_OP_SET_STAT] = "SetStat",
	[PROTO_FS_OP_LIST] = "List",
	[PROTO_FS_OP_READ_LINK] = "ReadLink",
	[PROTO_FS_OP_SYMLINK] = "Symlink",
	[PROTO_FS_OP_MKDIR] = "Mkdir",
	[PROTO_FS_OP_REMOVE] = "Remove",
	[PROTO_FS_OP_REMOVE_DIR] = "RemoveDir",
	[PROTO_FS_OP_COPY] = "Copy",
	[PROTO_FS_OP_RENAME] = "Rename",
	[PROTO_FS_OP_OPEN_FILE] = "OpenFile",
	[PROTO_FS_OP_OPEN_DIR] = "OpenDir",
	[PROTO_FS_OP_CLOSE_HANDLE] = "CloseHandle",
	[PROTO_FS_OP_READ] = "Read",
	[PROTO_FS_OP_WRITE] = "Write",
	[PROTO_FS_OP_READ_DIR] = "ReadDir",
	[PROTO_FS_OP_FSTAT] = "FStat",
	[PROTO_FS_OP_FSETSTAT] = "FSetStat",
};

const char *const proto_fs_kind_names[PROTO_FS_KIND_COUNT] = {
	[PROTO_FS_KIND_FILE] = "file",
	[PROTO_FS_KIND_DIR] = "dir",
	[PROTO_FS_KIND_SYMLINK] = "symlink",
	[PROTO_FS_KIND_OTHER] = "other",
};

/* FsResponseData variant names, indexed by kind - 1 (NONE has no name). */
static const char *const fs_data_names[PROTO_FS_DATA_COUNT - 1] = {
	[PROTO_FS_DATA_STAT - 1] = "Stat",
	[PROTO_FS_DATA_LIST - 1] = "List",
	[PROTO_FS_DATA_HANDLE - 1] = "Handle",
	[PROTO_FS_DATA_PATH - 1] = "Path",
};

/* Every field name an FsOp variant can carry. */
enum fs_field {
	F_PATH,
	F_FOLLOW_SYMLINK,
	F_ATTRS,
	F_TARGET,
	F_LINK_PATH,
	F_MODE,
	F_RECURSIVE,
	F_SRC,
	F_DST,
	F_OPTIONS,
	F_HANDLE,
	F_OFFSET,
	F_LEN,
	F_LIMIT,
	F_COUNT
};

static const char *const fs_field_names[F_COUNT] = {
	[F_PATH] = "path",
	[F_FOLLOW_SYMLINK] = "follow_symlink",
	[F_ATTRS] = "attrs",
	[F_TARGET] = "target",
	[F_LINK_PATH] = "link_path",
	[F_MODE] = "mode",
	[F_RECURSIVE] = "recursive",
	[F_SRC] = "src",
	[F_DST] = "dst",
	[F_OPTIONS] = "options",
	[F_HANDLE] = "handle",
	[F_OFFSET] = "offset",
	[F_LEN] = "len",
	[F_LIMIT] = "limit",
};

/* The Option fields: null or missing is None, never a missing field. */
#define FS_OPTIONAL (PROTO_BIT(F_MODE) | PROTO_BIT(F_LEN) | PROTO_BIT(F_LIMIT))

/* Fields of one FsOp variant, in serialization order. */
struct fs_op_desc {
	uint8_t nfields;
	uint8_t field[3];
};

static const struct fs_op_desc fs_ops[PROTO_FS_OP_COUNT] = {
	[PROTO_FS_OP_REAL_PATH] = {1, {F_PATH}},
	[PROTO_FS_OP_STAT] = {2, {F_PATH, F_FOLLOW_SYMLINK}},
	[PROTO_FS_OP_SET_STAT] = {3, {F_PATH, F_FOLLOW_SYMLINK, F_ATTRS}},
	[PROTO_FS_OP_LIST] = {1, {F_PATH}},
	[PROTO_FS_OP_READ_LINK] = {1, {F_PATH}},
	[PROTO_FS_OP_SYMLINK] = {2, {F_TARGET, F_LINK_PATH}},
	[PROTO_FS_OP_MKDIR] = {2, {F_PATH, F_MODE}},
	[PROTO_FS_OP_REMOVE] = {1, {F_PATH}},
	[PROTO_FS_OP_REMOVE_DIR] = {2, {F_PATH, F_RECURSIVE}},
	[PROTO_FS_OP_COPY] = {2, {F_SRC, F_DST}},
	[PROTO_FS_OP_RENAME] = {2, {F_SRC, F_DST}},
	[PROTO_FS_OP_OPEN_FILE] = {2, {F_PATH, F_OPTIONS}},
	[PROTO_FS_OP_OPEN_DIR] = {1, {F_PATH}},
	[PROTO_FS_OP_CLOSE_HANDLE] = {1, {F_HANDLE}},
	[PROTO_FS_OP_READ] = {3, {F_HANDLE, F_OFFSET, F_LEN}},
	[PROTO_FS_OP_WRITE] = {3, {F_HANDLE, F_OFFSET, F_LEN}},
	[PROTO_FS_OP_READ_DIR] = {2, {F_HANDLE, F_LIMIT}},
	[PROTO_FS_OP_FSTAT] = {1, {F_HANDLE}},
	[PROTO_FS_OP_FSETSTAT] = {2, {F_HANDLE, F_ATTRS}},
};

static const char *const fs_setattrs_keys[] = {"mode", "uid", "gid", "size", "atime", "mtime"};

static const char *const fs_options_keys[] = {
	"read",
	"write",
	"append",
	"create",
	"truncate",
	"create_new",
	"mode",
};

static const char *const fs_entry_keys[] = {
	"path",
	"kind",
	"size",
	"mode",
	"modified",
	"uid",
	"gid",
	"atime",
	"mtime",
};

static const char *const fs_response_keys[] = {"ok", "error", "data"};

/* ---- externally tagged variants ---- */

/*
 * Enter the one-entry map wrapping an externally tagged variant and read
 * its name into <name>; the value is next.  Tags in front are skipped.
 * Anything but a definite map of length 1 is PROTO_E_WRONG_TYPE: no FsOp or
 * FsResponseData variant is data-less, so the bare text form never fits.
 */
static int fs_variant_enter(struct cbr *r, struct cbr_agg *v, struct proto_str *name)
{
	struct cbr_item it;
	int rc;

	rc = cbr_peek_untagged(r, &it);
	if (rc < 0)
		return rc;
	if (it.kind != CBR_MAP || it.u != 1)
		return PROTO_E_WRONG_TYPE;
	rc = cbr_enter_map(r, v);
	if (rc < 0)
		return rc;
	rc = cbr_agg_next(r, v);
	if (rc < 0)
		return rc;
	return cbr_key(r, name);
}

/* Close the variant map entered by fs_variant_enter (restores the depth). */
static int fs_variant_leave(struct cbr *r, struct cbr_agg *v)
{
	int rc = cbr_agg_next(r, v);

	return rc < 0 ? rc : 0;
}

/* ---- FsSetAttrs, FsOpenOptions ---- */

static void fs_setattrs_encode(struct cbw *w, const struct proto_fs_setattrs *a)
{
	cbw_map(w, 6);
	cbw_key(w, "mode");
	proto_put_opt_uint(w, a->mode.set, a->mode.v);
	cbw_key(w, "uid");
	proto_put_opt_uint(w, a->uid.set, a->uid.v);
	cbw_key(w, "gid");
	proto_put_opt_uint(w, a->gid.set, a->gid.v);
	cbw_key(w, "size");
	proto_put_opt_uint(w, a->size.set, a->size.v);
	cbw_key(w, "atime");
	proto_put_opt_int(w, a->atime.set, a->atime.v);
	cbw_key(w, "mtime");
	proto_put_opt_int(w, a->mtime.set, a->mtime.v);
}

static int fs_setattrs_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_setattrs *a = obj;

	switch (field) {
	case 0:
		return proto_opt_u32_decode(r, &a->mode);
	case 1:
		return proto_opt_u32_decode(r, &a->uid);
	case 2:
		return proto_opt_u32_decode(r, &a->gid);
	case 3:
		return proto_opt_u64_decode(r, &a->size);
	case 4:
		return proto_opt_i64_decode(r, &a->atime);
	default:
		return proto_opt_i64_decode(r, &a->mtime);
	}
}

static int fs_setattrs_decode(struct cbr *r, struct proto_fs_setattrs *a)
{
	unsigned n = PROTO_NKEYS(fs_setattrs_keys);

	return proto_map_decode(r, fs_setattrs_keys, n, PROTO_ALL(n), 0, fs_setattrs_field, a);
}

static void fs_options_encode(struct cbw *w, const struct proto_fs_open_options *o)
{
	cbw_map(w, 7);
	cbw_key(w, "read");
	cbw_bool(w, o->read);
	cbw_key(w, "write");
	cbw_bool(w, o->write);
	cbw_key(w, "append");
	cbw_bool(w, o->append);
	cbw_key(w, "create");
	cbw_bool(w, o->create);
	cbw_key(w, "truncate");
	cbw_bool(w, o->truncate);
	cbw_key(w, "create_new");
	cbw_bool(w, o->create_new);
	cbw_key(w, "mode");
	proto_put_opt_uint(w, o->mode.set, o->mode.v);
}

static int fs_options_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_open_options *o = obj;
	bool *const flags[6] = {
		&o->read,
		&o->write,
		&o->append,
		&o->create,
		&o->truncate,
		&o->create_new,
	};

	if (field < 6)
		return cbr_bool(r, flags[field]);
	return proto_opt_u32_decode(r, &o->mode);
}

static int fs_options_decode(struct cbr *r, struct proto_fs_open_options *o)
{
	unsigned n = PROTO_NKEYS(fs_options_keys);

	/* the six bools are required, mode (last) is an Option */
	return proto_map_decode(
		r, fs_options_keys, n, PROTO_ALL(n), PROTO_ALL(6), fs_options_field, o);
}

/* ---- FsRequest ---- */

static void fs_op_field_encode(struct cbw *w, const struct proto_fs_request *m, unsigned field)
{
	switch (field) {
	case F_PATH:
		proto_put_str(w, m->path);
		break;
	case F_FOLLOW_SYMLINK:
		cbw_bool(w, m->follow_symlink);
		break;
	case F_ATTRS:
		fs_setattrs_encode(w, &m->attrs);
		break;
	case F_TARGET:
		proto_put_str(w, m->target);
		break;
	case F_LINK_PATH:
		proto_put_str(w, m->link_path);
		break;
	case F_MODE:
		proto_put_opt_uint(w, m->mode.set, m->mode.v);
		break;
	case F_RECURSIVE:
		cbw_bool(w, m->recursive);
		break;
	case F_SRC:
		proto_put_str(w, m->src);
		break;
	case F_DST:
		proto_put_str(w, m->dst);
		break;
	case F_OPTIONS:
		fs_options_encode(w, &m->options);
		break;
	case F_HANDLE:
		cbw_uint(w, m->handle);
		break;
	case F_OFFSET:
		cbw_uint(w, m->offset);
		break;
	case F_LEN:
		proto_put_opt_uint(w, m->len.set, m->len.v);
		break;
	default: /* F_LIMIT */
		proto_put_opt_uint(w, m->limit.set, m->limit.v);
		break;
	}
}

int proto_fs_request_encode(struct cbw *w, const struct proto_fs_request *m)
{
	const struct fs_op_desc *d;
	unsigned i;

	if ((unsigned)m->kind >= PROTO_FS_OP_COUNT)
		return PROTO_E_BAD_VALUE;
	d = &fs_ops[m->kind];
	cbw_map(w, m->bulk.set ? 2 : 1);
	cbw_key(w, "op");
	cbw_map(w, 1);
	cbw_key(w, proto_fs_op_names[m->kind]);
	cbw_map(w, d->nfields);
	for (i = 0; i < d->nfields; i++) {
		cbw_key(w, fs_field_names[d->field[i]]);
		fs_op_field_encode(w, m, d->field[i]);
	}
	if (m->bulk.set) {
		cbw_key(w, "bulk");
		return proto_bulk_offer_encode(w, &m->bulk.v);
	}
	return w->err;
}

static int fs_op_field_decode(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_request *m = obj;

	switch (field) {
	case F_PATH:
		return cbr_text(r, &m->path);
	case F_FOLLOW_SYMLINK:
		return cbr_bool(r, &m->follow_symlink);
	case F_ATTRS:
		return fs_setattrs_decode(r, &m->attrs);
	case F_TARGET:
		return cbr_text(r, &m->target);
	case F_LINK_PATH:
		return cbr_text(r, &m->link_path);
	case F_MODE:
		return proto_opt_u32_decode(r, &m->mode);
	case F_RECURSIVE:
		return cbr_bool(r, &m->recursive);
	case F_SRC:
		return cbr_text(r, &m->src);
	case F_DST:
		return cbr_text(r, &m->dst);
	case F_OPTIONS:
		return fs_options_decode(r, &m->options);
	case F_HANDLE:
		return cbr_u64(r, &m->handle);
	case F_OFFSET:
		return cbr_u64(r, &m->offset);
	case F_LEN:
		return proto_opt_u64_decode(r, &m->len);
	default: /* F_LIMIT */
		return proto_opt_u32_decode(r, &m->limit);
	}
}

/* FsOp: {"<Variant>": {fields}}. */
static int fs_op_decode(struct cbr *r, struct proto_fs_request *m)
{
	const struct fs_op_desc *d;
	struct cbr_agg v;
	struct proto_str name;
	uint32_t mask = 0;
	unsigned i;
	int rc, k;

	rc = fs_variant_enter(r, &v, &name);
	if (rc < 0)
		return rc;
	k = proto_name_index(name, proto_fs_op_names, PROTO_FS_OP_COUNT);
	if (k < 0)
		return PROTO_E_BAD_VALUE;
	m->kind = (enum proto_fs_op_kind)k;
	d = &fs_ops[k];
	for (i = 0; i < d->nfields; i++)
		mask |= PROTO_BIT(d->field[i]);
	rc = proto_map_decode(
		r, fs_field_names, F_COUNT, mask, mask & ~FS_OPTIONAL, fs_op_field_decode, m);
	if (rc < 0)
		return rc;
	return fs_variant_leave(r, &v);
}

static int fs_request_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_request *m = obj;
	int rc;

	if (field == 0)
		return fs_op_decode(r, m);
	rc = proto_opt_begin(r, &m->bulk.set); /* "bulk": an Option, null is None */
	return rc > 0 ? proto_bulk_offer_decode(r, &m->bulk.v) : rc;
}

int proto_fs_request_decode(struct cbr *r, struct proto_fs_request *m)
{
	static const char *const keys[] = {"op", "bulk"};

	memset(m, 0, sizeof(*m));
	/* only "op" is required */
	return proto_map_decode(r, keys, 2, PROTO_ALL(2), 1, fs_request_field, m);
}

/* ---- FsEntryInfo ---- */

static int fs_entry_encode(struct cbw *w, const struct proto_fs_entry *e)
{
	if ((unsigned)e->kind >= PROTO_FS_KIND_COUNT)
		return PROTO_E_BAD_VALUE;
	cbw_map(w, 9);
	cbw_key(w, "path");
	proto_put_str(w, e->path);
	cbw_key(w, "kind");
	cbw_cstr(w, proto_fs_kind_names[e->kind]);
	cbw_key(w, "size");
	cbw_uint(w, e->size);
	cbw_key(w, "mode");
	cbw_uint(w, e->mode);
	cbw_key(w, "modified");
	proto_put_opt_int(w, e->modified.set, e->modified.v);
	cbw_key(w, "uid");
	cbw_uint(w, e->uid);
	cbw_key(w, "gid");
	cbw_uint(w, e->gid);
	cbw_key(w, "atime");
	proto_put_opt_int(w, e->atime.set, e->atime.v);
	cbw_key(w, "mtime");
	proto_put_opt_int(w, e->mtime.set, e->mtime.v);
	return 0;
}

static int fs_entry_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_entry *e = obj;
	struct proto_str kind;
	int rc, k;

	switch (field) {
	case 0:
		return cbr_text(r, &e->path);
	case 1:
		/*
		 * The reference types `kind` as a free String, so a name this
		 * side does not know is still a valid entry: read it as "other".
		 */
		rc = cbr_text(r, &kind);
		if (rc < 0)
			return rc;
		k = proto_name_index(kind, proto_fs_kind_names, PROTO_FS_KIND_COUNT);
		e->kind = k < 0 ? PROTO_FS_KIND_OTHER : (enum proto_fs_kind)k;
		return 0;
	case 2:
		return cbr_u64(r, &e->size);
	case 3:
		return cbr_u32(r, &e->mode);
	case 4:
		return proto_opt_i64_decode(r, &e->modified);
	case 5:
		return cbr_u32(r, &e->uid);
	case 6:
		return cbr_u32(r, &e->gid);
	case 7:
		return proto_opt_i64_decode(r, &e->atime);
	default:
		return proto_opt_i64_decode(r, &e->mtime);
	}
}

static int fs_entry_decode(struct cbr *r, struct proto_fs_entry *e)
{
	/* required: path kind size mode uid gid (bits 0-3, 5, 6) */
	const uint32_t required = PROTO_ALL(4) | PROTO_BIT(5) | PROTO_BIT(6);
	unsigned n = PROTO_NKEYS(fs_entry_keys);

	return proto_map_decode(r, fs_entry_keys, n, PROTO_ALL(n), required, fs_entry_field, e);
}

/* One FsEntryInfo of a List into <elem>. */
static int fs_entry_elem(struct cbr *r, void *elem, const void *arg)
{
	return fs_entry_decode(r, elem);
}

/* ---- FsResponse ---- */

static int fs_data_encode(struct cbw *w, const struct proto_fs_data *d)
{
	size_t i;
	int rc = 0;

	if (d->kind == PROTO_FS_DATA_NONE) {
		cbw_null(w);
		return 0;
	}
	if ((unsigned)d->kind >= PROTO_FS_DATA_COUNT)
		return PROTO_E_BAD_VALUE;
	cbw_map(w, 1);
	cbw_key(w, fs_data_names[d->kind - 1]);
	switch (d->kind) {
	case PROTO_FS_DATA_STAT:
		rc = fs_entry_encode(w, &d->stat);
		break;
	case PROTO_FS_DATA_LIST:
		cbw_array(w, d->list.count);
		for (i = 0; i < d->list.count && rc == 0; i++)
			rc = fs_entry_encode(w, &d->list.entries[i]);
		break;
	case PROTO_FS_DATA_HANDLE:
		cbw_uint(w, d->handle);
		break;
	default: /* PROTO_FS_DATA_PATH */
		proto_put_str(w, d->path);
		break;
	}
	return rc;
}

int proto_fs_response_encode(struct cbw *w, const struct proto_fs_response *m)
{
	int rc;

	cbw_map(w, 3);
	cbw_key(w, "ok");
	cbw_bool(w, m->ok);
	cbw_key(w, "error");
	proto_put_opt_str(w, &m->error);
	cbw_key(w, "data");
	rc = fs_data_encode(w, &m->data);
	return rc < 0 ? rc : w->err;
}

/* FsResponseData or null: {"Stat": {...}}, {"List": [...]}, {"Handle": n}, {"Path": s}. */
static int fs_data_decode(struct cbr *r, struct proto_fs_data *d)
{
	struct proto_str name;
	struct cbr_agg agg;
	void *v;
	int rc, k;

	rc = cbr_absent(r);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* null: kind stays NONE */
	rc = fs_variant_enter(r, &agg, &name);
	if (rc < 0)
		return rc;
	k = proto_name_index(name, fs_data_names, PROTO_FS_DATA_COUNT - 1);
	if (k < 0)
		return PROTO_E_BAD_VALUE;
	d->kind = (enum proto_fs_data_kind)(k + 1);
	switch (d->kind) {
	case PROTO_FS_DATA_STAT:
		rc = fs_entry_decode(r, &d->stat);
		break;
	case PROTO_FS_DATA_LIST:
		rc = proto_list_decode(
			r, sizeof(*d->list.entries), fs_entry_elem, NULL, &v, &d->list.count);
		if (rc == 0)
			d->list.entries = v;
		break;
	case PROTO_FS_DATA_HANDLE:
		rc = cbr_u64(r, &d->handle);
		break;
	default: /* PROTO_FS_DATA_PATH */
		rc = cbr_text(r, &d->path);
		break;
	}
	if (rc < 0)
		return rc;
	return fs_variant_leave(r, &agg);
}

static int fs_response_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_response *m = obj;

	switch (field) {
	case 0:
		return cbr_bool(r, &m->ok);
	case 1:
		return proto_opt_str_decode(r, &m->error);
	default:
		return fs_data_decode(r, &m->data);
	}
}

int proto_fs_response_decode(struct cbr *r, struct proto_fs_response *m)
{
	memset(m, 0, sizeof(*m));
	/* only "ok" is required: error and data are Options */
	return proto_map_decode(r, fs_response_keys, 3, PROTO_ALL(3), 1, fs_response_field, m);
}

/* ---- sizes ---- */

static size_t fs_text_size(size_t n)
{
	return cbw_head_size(n) + n;
}

static size_t fs_opt_i64_size(const struct proto_opt_i64 *o)
{
	if (!o->set)
		return 1; /* null */
	/* major type 1 carries -1 - v, which for v < 0 is -(v + 1) (no overflow) */
	return cbw_head_size(o->v < 0 ? (uint64_t)(-(o->v + 1)) : (uint64_t)o->v);
}

size_t proto_fs_entry_encoded_size(const struct proto_fs_entry *e)
{
	size_t n = 1; /* a9: map of 9 */
	unsigned i;

	for (i = 0; i < PROTO_NKEYS(fs_entry_keys); i++)
		n += fs_text_size(strlen(fs_entry_keys[i]));
	n += fs_text_size(e->path.len);
	n += fs_text_size(strlen(proto_fs_kind_names[e->kind]));
	n += cbw_head_size(e->size) + cbw_head_size(e->mode);
	n += cbw_head_size(e->uid) + cbw_head_size(e->gid);
	n += fs_opt_i64_size(&e->modified) + fs_opt_i64_size(&e->atime);
	n += fs_opt_i64_size(&e->mtime);
	return n;
}

size_t proto_fs_list_response_size(size_t count, size_t entries_bytes)
{
	size_t n = 1; /* a3 */

	n += fs_text_size(2) + 1; /* "ok": true */
	n += fs_text_size(5) + 1; /* "error": null */
	n += fs_text_size(4) + 1; /* "data": a1 */
	n += fs_text_size(4);	  /* "List" */
	return n + cbw_head_size(count) + entries_bytes;
}
