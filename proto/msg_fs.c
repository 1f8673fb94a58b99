/*
 * proto/msg_fs.c - FsRequest / FsResponse payload codec (spec 3.3).
 *
 * Structs are decoded by one table-driven loop (fs_map_decode): a struct's
 * keys are listed in a names table whose order is also the order the
 * encoder writes them in; a bit per key catches duplicates and missing
 * required fields.  FsOp variants share one table of all 14 field names;
 * each variant allows (and, except Option fields, requires) a subset.
 */
#include <stdint.h>
#include <string.h>

#include "proto/error.h"
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

#define FS_BIT(f) (1u << (f))

/* The Option fields: null or missing is None, never a missing field. */
#define FS_OPTIONAL (FS_BIT(F_MODE) | FS_BIT(F_LEN) | FS_BIT(F_LIMIT))

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

#define FS_NKEYS(t) ((unsigned)(sizeof(t) / sizeof((t)[0])))
#define FS_ALL(n) ((uint32_t)((1ull << (n)) - 1))

/* ---- helpers shared by the decoders ---- */

/* Index of <s> in <names> (<n> entries), or -1. */
static int fs_lookup(struct proto_str s, const char *const *names, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (proto_str_eq(s, names[i]))
			return (int)i;
	return -1;
}

typedef int (*fs_field_fn)(struct cbr *r, void *obj, unsigned field);

/*
 * Decode the map at <r>: a key found in <names> (<n> <= 32 entries) whose
 * bit is in <allowed> goes to <fn> with its index; other keys are skipped.
 * Returns 0, PROTO_E_DUP_FIELD, PROTO_E_MISSING_FIELD when a bit of
 * <required> was not seen, or the first error of the reader or <fn>.
 */
static int fs_map_decode(struct cbr *r, const char *const *names, unsigned n, uint32_t allowed,
	uint32_t required, fs_field_fn fn, void *obj)
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
		idx = fs_lookup(key, names, n);
		if (idx < 0 || !(allowed & FS_BIT(idx)))
			rc = cbr_skip(r);
		else if (seen & FS_BIT(idx))
			rc = PROTO_E_DUP_FIELD;
		else {
			seen |= FS_BIT(idx);
			rc = fn(r, obj, (unsigned)idx);
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	return (seen & required) == required ? 0 : PROTO_E_MISSING_FIELD;
}

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

	for (;;) {
		rc = cbr_peek(r, &it);
		if (rc < 0)
			return rc;
		if (it.kind != CBR_TAG)
			break;
		rc = cbr_next(r, &it);
		if (rc < 0)
			return rc;
	}
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

static int fs_opt_u32(struct cbr *r, struct proto_opt_u32 *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_u32(r, &o->v) : 0;
}

static int fs_opt_u64(struct cbr *r, struct proto_opt_u64 *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_u64(r, &o->v) : 0;
}

static int fs_opt_i64(struct cbr *r, struct proto_opt_i64 *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_i64(r, &o->v) : 0;
}

static int fs_opt_str(struct cbr *r, struct proto_opt_str *o)
{
	int rc = cbr_absent(r);

	if (rc < 0)
		return rc;
	o->set = rc == 0;
	return o->set ? cbr_text(r, &o->v) : 0;
}

/* ---- helpers shared by the encoders ---- */

static void fs_put_str(struct cbw *w, struct proto_str s)
{
	cbw_text(w, s.ptr, s.len);
}

static void fs_put_opt_u32(struct cbw *w, const struct proto_opt_u32 *o)
{
	if (o->set)
		cbw_uint(w, o->v);
	else
		cbw_null(w);
}

static void fs_put_opt_u64(struct cbw *w, const struct proto_opt_u64 *o)
{
	if (o->set)
		cbw_uint(w, o->v);
	else
		cbw_null(w);
}

static void fs_put_opt_i64(struct cbw *w, const struct proto_opt_i64 *o)
{
	if (o->set)
		cbw_int(w, o->v);
	else
		cbw_null(w);
}

/* ---- FsSetAttrs, FsOpenOptions ---- */

static void fs_setattrs_encode(struct cbw *w, const struct proto_fs_setattrs *a)
{
	cbw_map(w, 6);
	cbw_key(w, "mode");
	fs_put_opt_u32(w, &a->mode);
	cbw_key(w, "uid");
	fs_put_opt_u32(w, &a->uid);
	cbw_key(w, "gid");
	fs_put_opt_u32(w, &a->gid);
	cbw_key(w, "size");
	fs_put_opt_u64(w, &a->size);
	cbw_key(w, "atime");
	fs_put_opt_i64(w, &a->atime);
	cbw_key(w, "mtime");
	fs_put_opt_i64(w, &a->mtime);
}

static int fs_setattrs_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_setattrs *a = obj;

	switch (field) {
	case 0:
		return fs_opt_u32(r, &a->mode);
	case 1:
		return fs_opt_u32(r, &a->uid);
	case 2:
		return fs_opt_u32(r, &a->gid);
	case 3:
		return fs_opt_u64(r, &a->size);
	case 4:
		return fs_opt_i64(r, &a->atime);
	default:
		return fs_opt_i64(r, &a->mtime);
	}
}

static int fs_setattrs_decode(struct cbr *r, struct proto_fs_setattrs *a)
{
	unsigned n = FS_NKEYS(fs_setattrs_keys);

	return fs_map_decode(r, fs_setattrs_keys, n, FS_ALL(n), 0, fs_setattrs_field, a);
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
	fs_put_opt_u32(w, &o->mode);
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
	return fs_opt_u32(r, &o->mode);
}

static int fs_options_decode(struct cbr *r, struct proto_fs_open_options *o)
{
	unsigned n = FS_NKEYS(fs_options_keys);

	/* the six bools are required, mode (last) is an Option */
	return fs_map_decode(r, fs_options_keys, n, FS_ALL(n), FS_ALL(6), fs_options_field, o);
}

/* ---- FsRequest ---- */

static void fs_op_field_encode(struct cbw *w, const struct proto_fs_request *m, unsigned field)
{
	switch (field) {
	case F_PATH:
		fs_put_str(w, m->path);
		break;
	case F_FOLLOW_SYMLINK:
		cbw_bool(w, m->follow_symlink);
		break;
	case F_ATTRS:
		fs_setattrs_encode(w, &m->attrs);
		break;
	case F_TARGET:
		fs_put_str(w, m->target);
		break;
	case F_LINK_PATH:
		fs_put_str(w, m->link_path);
		break;
	case F_MODE:
		fs_put_opt_u32(w, &m->mode);
		break;
	case F_RECURSIVE:
		cbw_bool(w, m->recursive);
		break;
	case F_SRC:
		fs_put_str(w, m->src);
		break;
	case F_DST:
		fs_put_str(w, m->dst);
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
		fs_put_opt_u64(w, &m->len);
		break;
	default: /* F_LIMIT */
		fs_put_opt_u32(w, &m->limit);
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
	cbw_map(w, 1);
	cbw_key(w, "op");
	cbw_map(w, 1);
	cbw_key(w, proto_fs_op_names[m->kind]);
	cbw_map(w, d->nfields);
	for (i = 0; i < d->nfields; i++) {
		cbw_key(w, fs_field_names[d->field[i]]);
		fs_op_field_encode(w, m, d->field[i]);
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
		return fs_opt_u32(r, &m->mode);
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
		return fs_opt_u64(r, &m->len);
	default: /* F_LIMIT */
		return fs_opt_u32(r, &m->limit);
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
	k = fs_lookup(name, proto_fs_op_names, PROTO_FS_OP_COUNT);
	if (k < 0)
		return PROTO_E_BAD_VALUE;
	m->kind = (enum proto_fs_op_kind)k;
	d = &fs_ops[k];
	for (i = 0; i < d->nfields; i++)
		mask |= FS_BIT(d->field[i]);
	rc = fs_map_decode(
		r, fs_field_names, F_COUNT, mask, mask & ~FS_OPTIONAL, fs_op_field_decode, m);
	if (rc < 0)
		return rc;
	return fs_variant_leave(r, &v);
}

static int fs_request_field(struct cbr *r, void *obj, unsigned field)
{
	(void)field; /* "op" is the only key */
	return fs_op_decode(r, obj);
}

int proto_fs_request_decode(struct cbr *r, struct proto_fs_request *m)
{
	static const char *const keys[] = {"op"};

	memset(m, 0, sizeof(*m));
	return fs_map_decode(r, keys, 1, 1, 1, fs_request_field, m);
}

/* ---- FsEntryInfo ---- */

static int fs_entry_encode(struct cbw *w, const struct proto_fs_entry *e)
{
	if ((unsigned)e->kind >= PROTO_FS_KIND_COUNT)
		return PROTO_E_BAD_VALUE;
	cbw_map(w, 9);
	cbw_key(w, "path");
	fs_put_str(w, e->path);
	cbw_key(w, "kind");
	cbw_cstr(w, proto_fs_kind_names[e->kind]);
	cbw_key(w, "size");
	cbw_uint(w, e->size);
	cbw_key(w, "mode");
	cbw_uint(w, e->mode);
	cbw_key(w, "modified");
	fs_put_opt_i64(w, &e->modified);
	cbw_key(w, "uid");
	cbw_uint(w, e->uid);
	cbw_key(w, "gid");
	cbw_uint(w, e->gid);
	cbw_key(w, "atime");
	fs_put_opt_i64(w, &e->atime);
	cbw_key(w, "mtime");
	fs_put_opt_i64(w, &e->mtime);
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
		k = fs_lookup(kind, proto_fs_kind_names, PROTO_FS_KIND_COUNT);
		e->kind = k < 0 ? PROTO_FS_KIND_OTHER : (enum proto_fs_kind)k;
		return 0;
	case 2:
		return cbr_u64(r, &e->size);
	case 3:
		return cbr_u32(r, &e->mode);
	case 4:
		return fs_opt_i64(r, &e->modified);
	case 5:
		return cbr_u32(r, &e->uid);
	case 6:
		return cbr_u32(r, &e->gid);
	case 7:
		return fs_opt_i64(r, &e->atime);
	default:
		return fs_opt_i64(r, &e->mtime);
	}
}

static int fs_entry_decode(struct cbr *r, struct proto_fs_entry *e)
{
	/* required: path kind size mode uid gid (bits 0-3, 5, 6) */
	const uint32_t required = FS_ALL(4) | FS_BIT(5) | FS_BIT(6);
	unsigned n = FS_NKEYS(fs_entry_keys);

	return fs_map_decode(r, fs_entry_keys, n, FS_ALL(n), required, fs_entry_field, e);
}

/*
 * Decode an array of FsEntryInfo into r->arena.  A definite array's count
 * comes from its head (the reader refuses a count larger than the bytes
 * left, so a hostile head allocates nothing); an indefinite array is
 * counted by a skipping pass first, so the entries land in one block.
 */
static int fs_entries_decode(struct cbr *r, struct proto_fs_entry **out, size_t *count)
{
	struct proto_fs_entry *v = NULL;
	struct cbr_agg a, a0;
	struct cbr r0;
	size_t n = 0, i = 0;
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
			n++;
		}
		if (rc < 0)
			return rc;
		*r = r0;
		a = a0;
	} else {
		n = (size_t)a.left; /* cbr_enter_array bounded it by the bytes left */
	}
	if (n) {
		v = r->arena ? proto_arena_alloc(r->arena, n * sizeof(*v)) : NULL;
		if (!v)
			return PROTO_E_NOSPACE;
		memset(v, 0, n * sizeof(*v));
	}
	while ((rc = cbr_agg_next(r, &a)) > 0) {
		rc = fs_entry_decode(r, &v[i++]);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	*out = v;
	*count = n;
	return 0;
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
		fs_put_str(w, d->path);
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
	if (m->error.set)
		fs_put_str(w, m->error.v);
	else
		cbw_null(w);
	cbw_key(w, "data");
	rc = fs_data_encode(w, &m->data);
	return rc < 0 ? rc : w->err;
}

/* FsResponseData or null: {"Stat": {...}}, {"List": [...]}, {"Handle": n}, {"Path": s}. */
static int fs_data_decode(struct cbr *r, struct proto_fs_data *d)
{
	struct cbr_agg v;
	struct proto_str name;
	int rc, k;

	rc = cbr_absent(r);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* null: kind stays NONE */
	rc = fs_variant_enter(r, &v, &name);
	if (rc < 0)
		return rc;
	k = fs_lookup(name, fs_data_names, PROTO_FS_DATA_COUNT - 1);
	if (k < 0)
		return PROTO_E_BAD_VALUE;
	d->kind = (enum proto_fs_data_kind)(k + 1);
	switch (d->kind) {
	case PROTO_FS_DATA_STAT:
		rc = fs_entry_decode(r, &d->stat);
		break;
	case PROTO_FS_DATA_LIST:
		rc = fs_entries_decode(r, &d->list.entries, &d->list.count);
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
	return fs_variant_leave(r, &v);
}

static int fs_response_field(struct cbr *r, void *obj, unsigned field)
{
	struct proto_fs_response *m = obj;

	switch (field) {
	case 0:
		return cbr_bool(r, &m->ok);
	case 1:
		return fs_opt_str(r, &m->error);
	default:
		return fs_data_decode(r, &m->data);
	}
}

int proto_fs_response_decode(struct cbr *r, struct proto_fs_response *m)
{
	memset(m, 0, sizeof(*m));
	/* only "ok" is required: error and data are Options */
	return fs_map_decode(r, fs_response_keys, 3, FS_ALL(3), 1, fs_response_field, m);
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

	for (i = 0; i < FS_NKEYS(fs_entry_keys); i++)
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
