/*
 * tests/proto/test_msg_fs.c - FsRequest / FsResponse payload codec.
 *
 * Vector payloads are read from SW_VECTORS_DIR/vectors-gen7.txt by id, so
 * the tests follow the spec file.  Hand-made bad inputs are written with
 * the project's own CBOR writer.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "proto/error.h"
#include "proto/msg_fs.h"
#include "tests/proto/proto_test.h"

/* ---- helpers ---- */

static void assert_setattrs_eq(const struct proto_fs_setattrs *a, const struct proto_fs_setattrs *b)
{
	cr_assert(OPT_EQ(a->mode, b->mode));
	cr_assert(OPT_EQ(a->uid, b->uid));
	cr_assert(OPT_EQ(a->gid, b->gid));
	cr_assert(OPT_EQ(a->size, b->size));
	cr_assert(OPT_EQ(a->atime, b->atime));
	cr_assert(OPT_EQ(a->mtime, b->mtime));
}

static void assert_req_eq(const struct proto_fs_request *a, const struct proto_fs_request *b)
{
	cr_assert_eq(a->kind, b->kind);
	cr_assert(str_same(a->path, b->path), "path");
	cr_assert_eq(a->follow_symlink, b->follow_symlink);
	assert_setattrs_eq(&a->attrs, &b->attrs);
	cr_assert(str_same(a->target, b->target), "target");
	cr_assert(str_same(a->link_path, b->link_path), "link_path");
	cr_assert(OPT_EQ(a->mode, b->mode), "mode");
	cr_assert_eq(a->recursive, b->recursive);
	cr_assert(str_same(a->src, b->src), "src");
	cr_assert(str_same(a->dst, b->dst), "dst");
	cr_assert_eq(a->options.read, b->options.read);
	cr_assert_eq(a->options.write, b->options.write);
	cr_assert_eq(a->options.append, b->options.append);
	cr_assert_eq(a->options.create, b->options.create);
	cr_assert_eq(a->options.truncate, b->options.truncate);
	cr_assert_eq(a->options.create_new, b->options.create_new);
	cr_assert(OPT_EQ(a->options.mode, b->options.mode), "options.mode");
	cr_assert_eq(a->handle, b->handle);
	cr_assert_eq(a->offset, b->offset);
	cr_assert(OPT_EQ(a->len, b->len), "len");
	cr_assert(OPT_EQ(a->limit, b->limit), "limit");
}

static void assert_entry_eq(const struct proto_fs_entry *a, const struct proto_fs_entry *b)
{
	cr_assert(str_same(a->path, b->path), "entry path");
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(a->size, b->size);
	cr_assert_eq(a->mode, b->mode);
	cr_assert(OPT_EQ(a->modified, b->modified));
	cr_assert_eq(a->uid, b->uid);
	cr_assert_eq(a->gid, b->gid);
	cr_assert(OPT_EQ(a->atime, b->atime));
	cr_assert(OPT_EQ(a->mtime, b->mtime));
}

static void assert_resp_eq(const struct proto_fs_response *a, const struct proto_fs_response *b)
{
	size_t i;

	cr_assert_eq(a->ok, b->ok);
	cr_assert_eq(a->error.set, b->error.set);
	if (a->error.set)
		cr_assert(str_same(a->error.v, b->error.v), "error");
	cr_assert_eq(a->data.kind, b->data.kind);
	switch (a->data.kind) {
	case PROTO_FS_DATA_STAT:
		assert_entry_eq(&a->data.stat, &b->data.stat);
		break;
	case PROTO_FS_DATA_LIST:
		cr_assert_eq(a->data.list.count, b->data.list.count);
		for (i = 0; i < a->data.list.count; i++)
			assert_entry_eq(&a->data.list.entries[i], &b->data.list.entries[i]);
		break;
	case PROTO_FS_DATA_HANDLE:
		cr_assert_eq(a->data.handle, b->data.handle);
		break;
	case PROTO_FS_DATA_PATH:
		cr_assert(str_same(a->data.path, b->data.path), "data path");
		break;
	default:
		break;
	}
}

PROTO_TEST_CODEC(req, struct proto_fs_request, proto_fs_request_encode, proto_fs_request_decode,
	assert_req_eq)
PROTO_TEST_CODEC(resp, struct proto_fs_response, proto_fs_response_encode, proto_fs_response_decode,
	assert_resp_eq)

/* ---- vectors ---- */

Test(msg_fs, v24_stat_request_matches_vector_both_ways)
{
	struct proto_fs_request m = {
		.kind = PROTO_FS_OP_STAT,
		.path = S("/etc/hostname"),
		.follow_symlink = true,
	};
	req_check_vector("V24", &m);
}

Test(msg_fs, v25_stat_response_matches_vector_both_ways)
{
	struct proto_fs_response m = {
		.ok = true,
		.data.kind = PROTO_FS_DATA_STAT,
		.data.stat =
			{
				.path = S("/etc/hostname"),
				.kind = PROTO_FS_KIND_FILE,
				.size = 13,
				.mode = 0100644,
				.modified = {true, 1787500000},
				.uid = 0,
				.gid = 0,
				.atime = {true, 1787500000},
				.mtime = {true, 1787500000},
			},
	};
	resp_check_vector("V25", &m);
}

Test(msg_fs, v26_open_file_request_matches_vector_both_ways)
{
	struct proto_fs_request m = {
		.kind = PROTO_FS_OP_OPEN_FILE,
		.path = S("/tmp/out.txt"),
		.options =
			{
				.write = true,
				.create = true,
				.truncate = true,
				.mode = {true, 0644},
			},
	};
	req_check_vector("V26", &m);
}

Test(msg_fs, v27_handle_response_matches_vector_both_ways)
{
	struct proto_fs_response m = {
		.ok = true,
		.data.kind = PROTO_FS_DATA_HANDLE,
		.data.handle = 1,
	};
	resp_check_vector("V27", &m);
}

Test(msg_fs, v28_write_request_matches_vector_both_ways)
{
	struct proto_fs_request m = {
		.kind = PROTO_FS_OP_WRITE,
		.handle = 1,
		.offset = 0,
		.len = {true, 5},
	};
	req_check_vector("V28", &m);
}

Test(msg_fs, v31_empty_ok_response_matches_vector_both_ways)
{
	struct proto_fs_response m = {.ok = true};

	resp_check_vector("V31", &m);
}

Test(msg_fs, v32_read_to_eof_writes_len_null)
{
	struct proto_fs_request m = {.kind = PROTO_FS_OP_READ, .handle = 1};

	req_check_vector("V32", &m);
}

Test(msg_fs, v33_mkdir_without_mode_writes_mode_null)
{
	struct proto_fs_request m = {.kind = PROTO_FS_OP_MKDIR, .path = S("/data/a/b")};

	req_check_vector("V33", &m);
}

Test(msg_fs, v34_error_response_matches_vector_both_ways)
{
	struct proto_fs_response m = {
		.ok = false,
		.error = {true, S("stat: No such file or directory (os error 2)")},
	};
	resp_check_vector("V34", &m);
}

/* ---- round trips ---- */

/* A request of <kind> with every spec field of that variant set; Options set iff <opts>. */
static struct proto_fs_request make_req(enum proto_fs_op_kind kind, bool opts)
{
	struct proto_fs_request m = {.kind = kind};
	struct proto_fs_setattrs attrs = {.mode = {true, 0755},
		.uid = {true, 1000},
		.gid = {true, 70000},
		.size = {true, 1ull << 40},
		.atime = {true, -5},
		.mtime = {true, INT64_MIN}};

	switch (kind) {
	case PROTO_FS_OP_SET_STAT:
		if (opts)
			m.attrs = attrs;
		/* fall through */
	case PROTO_FS_OP_STAT:
		m.follow_symlink = opts;
		/* fall through */
	case PROTO_FS_OP_REAL_PATH:
	case PROTO_FS_OP_LIST:
	case PROTO_FS_OP_READ_LINK:
	case PROTO_FS_OP_REMOVE:
	case PROTO_FS_OP_OPEN_DIR:
		m.path = S("/some/where/with a long name over twenty-three bytes");
		break;
	case PROTO_FS_OP_SYMLINK:
		m.target = S("../t");
		m.link_path = S("/l");
		break;
	case PROTO_FS_OP_MKDIR:
		m.path = S("/d");
		m.mode = (struct proto_opt_u32){opts, 01777};
		break;
	case PROTO_FS_OP_REMOVE_DIR:
		m.path = S("/d");
		m.recursive = true;
		break;
	case PROTO_FS_OP_COPY:
	case PROTO_FS_OP_RENAME:
		m.src = S("/a");
		m.dst = S("");
		break;
	case PROTO_FS_OP_OPEN_FILE:
		m.path = S("/f");
		m.options = (struct proto_fs_open_options){
			true, opts, !opts, true, false, opts, {opts, 0600}};
		break;
	case PROTO_FS_OP_READ:
	case PROTO_FS_OP_WRITE:
		m.handle = UINT64_MAX;
		m.offset = 1ull << 33;
		m.len = (struct proto_opt_u64){opts, 3145728};
		break;
	case PROTO_FS_OP_READ_DIR:
		m.handle = 24;
		m.limit = (struct proto_opt_u32){opts, UINT32_MAX};
		break;
	case PROTO_FS_OP_CLOSE_HANDLE:
	case PROTO_FS_OP_FSTAT:
		m.handle = 23;
		break;
	case PROTO_FS_OP_FSETSTAT:
		m.handle = 256;
		if (opts)
			m.attrs = attrs;
		break;
	default:
		cr_assert_fail("kind %d", kind);
	}
	return m;
}

Test(msg_fs, every_op_variant_round_trips_with_options_present_and_absent)
{
	uint8_t buf[1024], again[1024];
	struct proto_fs_request m, d;
	unsigned k;
	long n, n2;
	int opts;

	for (k = 0; k < PROTO_FS_OP_COUNT; k++) {
		for (opts = 0; opts < 2; opts++) {
			m = make_req((enum proto_fs_op_kind)k, opts);
			n = req_encode(&m, buf, sizeof(buf));
			cr_assert(n > 0, "%s: encode %ld", proto_fs_op_names[k], n);
			/* a1 62"op" a1 <text variant name> */
			cr_assert_eq(buf[5] - 0x60, (int)strlen(proto_fs_op_names[k]));
			cr_assert(memcmp(buf + 6, proto_fs_op_names[k], buf[5] - 0x60) == 0);
			cr_assert_eq(req_decode(buf, (size_t)n, &d), 0, "%s", proto_fs_op_names[k]);
			assert_req_eq(&d, &m);
			n2 = req_encode(&d, again, sizeof(again));
			assert_bytes(again, n2, buf, (size_t)n, proto_fs_op_names[k]);
		}
	}
}

static struct proto_fs_entry make_entry(unsigned i, bool opts)
{
	struct proto_fs_entry e = {
		.path = i % 2 ? S("/dir/x") : S("/dir/a-name-that-is-longer-than-twenty-three"),
		.kind = (enum proto_fs_kind)(i % PROTO_FS_KIND_COUNT),
		.size = i ? 1ull << (i * 7 % 64) : 0,
		.mode = 040755 + i,
		.modified = {opts, (int64_t)i * -1000003},
		.uid = i * 1000,
		.gid = 65534,
		.atime = {opts, INT64_MAX},
		.mtime = {opts, -1},
	};
	return e;
}

/* A List response of <n> entries make_entry(i, <opts>), written to <entries>. */
static struct proto_fs_response list_response(struct proto_fs_entry *entries, unsigned n, bool opts)
{
	struct proto_fs_response m = {.ok = true, .data.kind = PROTO_FS_DATA_LIST};
	unsigned i;

	for (i = 0; i < n; i++)
		entries[i] = make_entry(i, opts);
	m.data.list.entries = entries;
	m.data.list.count = n;
	return m;
}

Test(msg_fs, every_response_data_variant_round_trips)
{
	struct proto_fs_entry entries[5];
	struct proto_fs_response cases[9], d;
	uint8_t buf[4096], again[4096];
	unsigned i;
	long n;

	for (i = 0; i < 5; i++)
		entries[i] = make_entry(i, i % 2);
	memset(cases, 0, sizeof(cases));
	cases[0] = (struct proto_fs_response){.ok = false, .error = {true, S("x")}};
	cases[1].ok = true;
	cases[1].data.kind = PROTO_FS_DATA_STAT;
	cases[1].data.stat = make_entry(3, true);
	cases[2] = cases[1];
	cases[2].data.stat = make_entry(2, false);
	cases[3].ok = true;
	cases[3].data.kind = PROTO_FS_DATA_LIST; /* empty list */
	cases[4].ok = true;
	cases[4].data.kind = PROTO_FS_DATA_LIST;
	cases[4].data.list.entries = entries;
	cases[4].data.list.count = 5;
	cases[5].ok = true;
	cases[5].data.kind = PROTO_FS_DATA_HANDLE;
	cases[5].data.handle = UINT64_MAX;
	cases[6].ok = true;
	cases[6].data.kind = PROTO_FS_DATA_PATH;
	cases[6].data.path = S("/real/path");
	cases[7] = cases[6];
	cases[7].ok = false;
	cases[7].error = (struct proto_opt_str){true, S("")}; /* error and data both set */
	cases[8].ok = true;
	cases[8].data.kind = PROTO_FS_DATA_HANDLE; /* handle 0 */

	for (i = 0; i < 9; i++) {
		n = resp_encode(&cases[i], buf, sizeof(buf));
		cr_assert(n > 0, "case %u", i);
		cr_assert_eq(resp_decode(buf, (size_t)n, &d), 0, "case %u", i);
		assert_resp_eq(&d, &cases[i]);
		assert_bytes(
			again, resp_encode(&d, again, sizeof(again)), buf, (size_t)n, "re-encode");
	}
}

Test(msg_fs, entry_size_and_list_size_are_exact)
{
	static char longpath[70000];
	struct proto_fs_entry entries[8];
	struct proto_fs_response m = {.ok = true, .data.kind = PROTO_FS_DATA_LIST};
	static uint8_t buf[1 << 18];
	size_t sum = 0, one;
	unsigned i, count;
	long n;

	memset(longpath, 'p', sizeof(longpath) - 1);
	for (i = 0; i < 8; i++)
		entries[i] = make_entry(i * 3, i % 3 != 0);
	entries[5].path = (struct proto_str){longpath, 300};
	entries[6].path = (struct proto_str){longpath, sizeof(longpath) - 1};
	entries[7].size = UINT64_MAX;
	entries[7].mode = UINT32_MAX;
	entries[7].atime = (struct proto_opt_i64){true, INT64_MIN};

	m.data.list.entries = entries;
	for (count = 0; count <= 8; count++) {
		m.data.list.count = count;
		n = resp_encode(&m, buf, sizeof(buf));
		cr_assert(n > 0);
		cr_assert_eq((size_t)n, proto_fs_list_response_size(count, sum), "count %u", count);
		if (count < 8)
			sum += proto_fs_entry_encoded_size(&entries[count]);
	}
	for (i = 0; i < 8; i++) {
		struct proto_fs_response st = {.ok = true, .data.kind = PROTO_FS_DATA_STAT};

		st.data.stat = entries[i];
		one = proto_fs_entry_encoded_size(&entries[i]);
		n = resp_encode(&st, buf, sizeof(buf));
		/* a3 "ok" f5 "error" f6 "data" a1 "Stat" = 23 bytes around the entry */
		cr_assert_eq((size_t)n, 23 + one, "entry %u", i);
	}
}

Test(msg_fs, list_of_thousands_of_entries_round_trips)
{
	static struct proto_fs_entry entries[3000];
	static uint8_t buf[1 << 20];
	struct proto_fs_response m = list_response(entries, 3000, true), d;
	long n;

	n = resp_encode(&m, buf, sizeof(buf));
	cr_assert(n > 0);
	cr_assert_eq(resp_decode(buf, (size_t)n, &d), 0);
	assert_resp_eq(&d, &m);
}

/* ---- lenient reading ---- */

Test(msg_fs, unknown_keys_and_fields_of_other_variants_are_skipped)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	struct cbw w;
	size_t n;

	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 2);
	cbw_key(&w, "lease"); /* a field of a later generation: unknown here */
	cbw_map(&w, 1);
	cbw_key(&w, "x");
	cbw_array(&w, 2);
	cbw_uint(&w, 1);
	cbw_null(&w);
	cbw_key(&w, "op");
	cbw_map(&w, 1);
	cbw_key(&w, "Stat");
	cbw_map(&w, 4);
	cbw_key(&w, "handle"); /* a field of other variants */
	cbw_cstr(&w, "not a number");
	cbw_key(&w, "path");
	cbw_cstr(&w, "/p");
	cbw_key(&w, "user");
	cbw_cstr(&w, "root");
	cbw_key(&w, "follow_symlink");
	cbw_bool(&w, false);
	n = wr_done(&w);
	cr_assert_eq(req_decode(buf, n, &d), 0);
	cr_assert_eq(d.kind, PROTO_FS_OP_STAT);
	cr_assert(str_same(d.path, S("/p")));
	cr_assert_eq(d.handle, 0);
}

Test(msg_fs, missing_options_of_a_response_read_as_none)
{
	static const uint8_t p[] = {0xa1, 0x62, 'o', 'k', 0xf5}; /* {"ok": true} */
	struct proto_fs_response d;

	cr_assert_eq(resp_decode(p, sizeof(p), &d), 0);
	cr_assert(d.ok);
	cr_assert(!d.error.set);
	cr_assert_eq(d.data.kind, PROTO_FS_DATA_NONE);
}

Test(msg_fs, undefined_reads_as_none_and_missing_option_fields_are_none)
{
	/* {"op": {"Read": {"handle": 1, "offset": 0, "len": undefined}}} */
	static const uint8_t p[] = {0xa1, 0x62, 'o', 'p', 0xa1, 0x64, 'R', 'e', 'a', 'd', 0xa3,
		0x66, 'h', 'a', 'n', 'd', 'l', 'e', 0x01, 0x66, 'o', 'f', 'f', 's', 'e', 't', 0x00,
		0x63, 'l', 'e', 'n', 0xf7};
	/* {"op": {"ReadDir": {"handle": 2}}} */
	static const uint8_t q[] = {0xa1, 0x62, 'o', 'p', 0xa1, 0x67, 'R', 'e', 'a', 'd', 'D', 'i',
		'r', 0xa1, 0x66, 'h', 'a', 'n', 'd', 'l', 'e', 0x02};
	struct proto_fs_request d;

	cr_assert_eq(req_decode(p, sizeof(p), &d), 0);
	cr_assert_eq(d.kind, PROTO_FS_OP_READ);
	cr_assert(!d.len.set);
	cr_assert_eq(req_decode(q, sizeof(q), &d), 0);
	cr_assert_eq(d.kind, PROTO_FS_OP_READ_DIR);
	cr_assert_eq(d.handle, 2);
	cr_assert(!d.limit.set);
}

Test(msg_fs, tags_before_the_variant_map_are_skipped)
{
	uint8_t p[128], q[128];
	struct proto_fs_request d;
	size_t n = vec_payload("V24", p, sizeof(p));

	/* a1 62 6f 70 | c6 d8 40 | a1 "Stat" ... */
	memcpy(q, p, 4);
	q[4] = 0xc6;
	q[5] = 0xd8;
	q[6] = 0x40;
	memcpy(q + 7, p + 4, n - 4);
	cr_assert_eq(req_decode(q, n + 3, &d), 0);
	cr_assert_eq(d.kind, PROTO_FS_OP_STAT);
	cr_assert(d.follow_symlink);
}

Test(msg_fs, indefinite_list_and_maps_decode)
{
	struct proto_fs_entry entries[3] = {
		make_entry(0, true), make_entry(1, false), make_entry(2, true)};
	struct proto_fs_response m = {.ok = true, .data.kind = PROTO_FS_DATA_LIST}, d;
	uint8_t buf[1024];
	long n;
	size_t i;

	m.data.list.entries = entries;
	m.data.list.count = 3;
	n = resp_encode(&m, buf, sizeof(buf) - 2);
	cr_assert(n > 0);
	/* the array is the last item: 83 -> 9f ... ff; the top map a3 -> bf ... ff */
	for (i = 0; i + 5 < (size_t)n; i++)
		if (memcmp(buf + i, "\x64List\x83", 6) == 0)
			break;
	cr_assert(i + 5 < (size_t)n);
	buf[i + 5] = 0x9f;
	buf[n++] = 0xff;
	cr_assert_eq(buf[0], 0xa3);
	buf[0] = 0xbf;
	buf[n++] = 0xff;
	cr_assert_eq(resp_decode(buf, (size_t)n, &d), 0);
	assert_resp_eq(&d, &m);
}

Test(msg_fs, unknown_entry_kind_reads_as_other)
{
	struct proto_fs_response m = {.ok = true, .data.kind = PROTO_FS_DATA_STAT}, d;
	uint8_t buf[512];
	long n;
	size_t i;

	m.data.stat = make_entry(0, true); /* kind "file" */
	n = resp_encode(&m, buf, sizeof(buf));
	for (i = 0; i + 5 < (size_t)n; i++)
		if (memcmp(buf + i,
			    "\x64"
			    "file",
			    5) == 0)
			break;
	cr_assert(i + 5 < (size_t)n);
	memcpy(buf + i + 1, "sock", 4);
	cr_assert_eq(resp_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.data.stat.kind, PROTO_FS_KIND_OTHER);
}

/* ---- bad input ---- */

enum wr_mode { WR_VALID, WR_WRONG };

/* Spec field list per variant (independent of the codec's own table). */
static const char *const spec_fields[PROTO_FS_OP_COUNT][4] = {
	[PROTO_FS_OP_REAL_PATH] = {"path"},
	[PROTO_FS_OP_STAT] = {"path", "follow_symlink"},
	[PROTO_FS_OP_SET_STAT] = {"path", "follow_symlink", "attrs"},
	[PROTO_FS_OP_LIST] = {"path"},
	[PROTO_FS_OP_READ_LINK] = {"path"},
	[PROTO_FS_OP_SYMLINK] = {"target", "link_path"},
	[PROTO_FS_OP_MKDIR] = {"path", "mode"},
	[PROTO_FS_OP_REMOVE] = {"path"},
	[PROTO_FS_OP_REMOVE_DIR] = {"path", "recursive"},
	[PROTO_FS_OP_COPY] = {"src", "dst"},
	[PROTO_FS_OP_RENAME] = {"src", "dst"},
	[PROTO_FS_OP_OPEN_FILE] = {"path", "options"},
	[PROTO_FS_OP_OPEN_DIR] = {"path"},
	[PROTO_FS_OP_CLOSE_HANDLE] = {"handle"},
	[PROTO_FS_OP_READ] = {"handle", "offset", "len"},
	[PROTO_FS_OP_WRITE] = {"handle", "offset", "len"},
	[PROTO_FS_OP_READ_DIR] = {"handle", "limit"},
	[PROTO_FS_OP_FSTAT] = {"handle"},
	[PROTO_FS_OP_FSETSTAT] = {"handle", "attrs"},
};

static bool spec_optional(const char *f)
{
	return !strcmp(f, "mode") || !strcmp(f, "len") || !strcmp(f, "limit");
}

static void wr_options(struct cbw *w, int skip)
{
	static const char *const keys[] = {
		"read", "write", "append", "create", "truncate", "create_new"};
	int i;

	cbw_map(w, skip < 0 ? 6 : 5);
	for (i = 0; i < 6; i++) {
		if (i == skip)
			continue;
		cbw_key(w, keys[i]);
		cbw_bool(w, i == 1);
	}
}

/* One field value of the right type (null for Options), or of a wrong type. */
static void wr_field(struct cbw *w, const char *f, enum wr_mode mode)
{
	bool is_text = !strcmp(f, "path") || !strcmp(f, "target") || !strcmp(f, "link_path") ||
		       !strcmp(f, "src") || !strcmp(f, "dst");
	bool is_bool = !strcmp(f, "follow_symlink") || !strcmp(f, "recursive");

	if (mode == WR_WRONG) {
		if (is_text || is_bool)
			cbw_uint(w, 1);
		else if (!strcmp(f, "attrs") || !strcmp(f, "options"))
			cbw_array(w, 0);
		else
			cbw_cstr(w, "7");
		return;
	}
	if (is_text)
		cbw_cstr(w, "/x");
	else if (is_bool)
		cbw_bool(w, true);
	else if (!strcmp(f, "attrs"))
		cbw_map(w, 0);
	else if (!strcmp(f, "options"))
		wr_options(w, -1);
	else if (spec_optional(f))
		cbw_null(w);
	else
		cbw_uint(w, 9);
}

/* Start {"op": {<variant>: {<nfields> entries}}} in <w> over <buf>; the entries follow. */
static void wr_op(struct cbw *w, uint8_t *buf, size_t cap, const char *variant, size_t nfields)
{
	wr_begin(w, buf, cap, "op");
	cbw_map(w, 1);
	cbw_key(w, variant);
	cbw_map(w, nfields);
}

/* Start {"ok": true, "data": {<nvariants> entries}} in <w> over <buf>; the entries follow. */
static void wr_data(struct cbw *w, uint8_t *buf, size_t cap, size_t nvariants)
{
	cbw_init(w, buf, cap);
	cbw_map(w, 2);
	cbw_key(w, "ok");
	cbw_bool(w, true);
	cbw_key(w, "data");
	cbw_map(w, nvariants);
}

/* {"op": {"<kind>": {fields}}} with field <skip> left out and field <bad> of a wrong type. */
static size_t wr_request(uint8_t *buf, size_t cap, unsigned kind, int skip, int bad)
{
	struct cbw w;
	int i, nf = 0;

	while (nf < 4 && spec_fields[kind][nf])
		nf++;
	wr_op(&w, buf, cap, proto_fs_op_names[kind], (size_t)(nf - (skip >= 0)));
	for (i = 0; i < nf; i++) {
		if (i == skip)
			continue;
		cbw_key(&w, spec_fields[kind][i]);
		wr_field(&w, spec_fields[kind][i], i == bad ? WR_WRONG : WR_VALID);
	}
	return wr_done(&w);
}

Test(msg_fs, each_required_op_field_missing_is_missing_field)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	unsigned k;
	int i, rc;

	for (k = 0; k < PROTO_FS_OP_COUNT; k++) {
		size_t n = wr_request(buf, sizeof(buf), k, -1, -1);

		cr_assert_eq(req_decode(buf, n, &d), 0, "%s complete", proto_fs_op_names[k]);
		for (i = 0; i < 4 && spec_fields[k][i]; i++) {
			n = wr_request(buf, sizeof(buf), k, i, -1);
			rc = req_decode(buf, n, &d);
			if (spec_optional(spec_fields[k][i]))
				cr_assert_eq(rc, 0, "%s without %s", proto_fs_op_names[k],
					spec_fields[k][i]);
			else
				cr_assert_eq(rc, PROTO_E_MISSING_FIELD, "%s without %s: %d",
					proto_fs_op_names[k], spec_fields[k][i], rc);
		}
	}
}

Test(msg_fs, each_op_field_of_a_wrong_type_is_wrong_type)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	unsigned k;
	int i, rc;

	for (k = 0; k < PROTO_FS_OP_COUNT; k++) {
		for (i = 0; i < 4 && spec_fields[k][i]; i++) {
			size_t n = wr_request(buf, sizeof(buf), k, -1, i);

			rc = req_decode(buf, n, &d);
			cr_assert_eq(rc, PROTO_E_WRONG_TYPE, "%s with bad %s: %d",
				proto_fs_op_names[k], spec_fields[k][i], rc);
		}
	}
}

Test(msg_fs, each_open_option_bool_missing_is_missing_field)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	struct cbw w;
	int skip;

	for (skip = 0; skip < 6; skip++) {
		wr_op(&w, buf, sizeof(buf), "OpenFile", 2);
		cbw_key(&w, "path");
		cbw_cstr(&w, "/f");
		cbw_key(&w, "options");
		wr_options(&w, skip);
		cr_assert_eq(
			req_decode(buf, wr_done(&w), &d), PROTO_E_MISSING_FIELD, "skip %d", skip);
	}
}

Test(msg_fs, missing_op_or_ok_is_missing_field)
{
	static const uint8_t no_op[] = {0xa1, 0x61, 'x', 0x01};
	static const uint8_t no_ok[] = {
		0xa2, 0x65, 'e', 'r', 'r', 'o', 'r', 0xf6, 0x64, 'd', 'a', 't', 'a', 0xf6};
	static const uint8_t empty[] = {0xa0};
	struct proto_fs_request rq;
	struct proto_fs_response rs;

	cr_assert_eq(req_decode(no_op, sizeof(no_op), &rq), PROTO_E_MISSING_FIELD);
	cr_assert_eq(req_decode(empty, sizeof(empty), &rq), PROTO_E_MISSING_FIELD);
	cr_assert_eq(resp_decode(no_ok, sizeof(no_ok), &rs), PROTO_E_MISSING_FIELD);
	cr_assert_eq(resp_decode(empty, sizeof(empty), &rs), PROTO_E_MISSING_FIELD);
}

/* A Stat response whose entry has field <skip> left out. */
static size_t wr_entry_response(uint8_t *buf, size_t cap, int skip)
{
	static const char *const keys[] = {
		"path", "kind", "size", "mode", "modified", "uid", "gid", "atime", "mtime"};
	struct cbw w;
	int i;

	cbw_init(&w, buf, cap);
	cbw_map(&w, 3);
	cbw_key(&w, "ok");
	cbw_bool(&w, true);
	cbw_key(&w, "error");
	cbw_null(&w);
	cbw_key(&w, "data");
	cbw_map(&w, 1);
	cbw_key(&w, "Stat");
	cbw_map(&w, skip < 0 ? 9 : 8);
	for (i = 0; i < 9; i++) {
		if (i == skip)
			continue;
		cbw_key(&w, keys[i]);
		if (i == 0)
			cbw_cstr(&w, "/p");
		else if (i == 1)
			cbw_cstr(&w, "dir");
		else
			cbw_uint(&w, 5);
	}
	return wr_done(&w);
}

Test(msg_fs, each_required_entry_field_missing_is_missing_field)
{
	uint8_t buf[256];
	struct proto_fs_response d;
	int i, rc;

	cr_assert_eq(resp_decode(buf, wr_entry_response(buf, sizeof(buf), -1), &d), 0);
	cr_assert_eq(d.data.stat.kind, PROTO_FS_KIND_DIR);
	for (i = 0; i < 9; i++) {
		bool optional = i == 4 || i == 7 || i == 8; /* modified, atime, mtime */

		rc = resp_decode(buf, wr_entry_response(buf, sizeof(buf), i), &d);
		cr_assert_eq(rc, optional ? 0 : PROTO_E_MISSING_FIELD, "skip %d: %d", i, rc);
	}
}

Test(msg_fs, response_fields_of_wrong_types_are_wrong_type)
{
	static const uint8_t ok_text[] = {0xa1, 0x62, 'o', 'k', 0x61, 't'};
	static const uint8_t error_int[] = {
		0xa2, 0x62, 'o', 'k', 0xf4, 0x65, 'e', 'r', 'r', 'o', 'r', 0x02};
	static const uint8_t handle_text[] = {0xa2, 0x62, 'o', 'k', 0xf5, 0x64, 'd', 'a', 't', 'a',
		0xa1, 0x66, 'H', 'a', 'n', 'd', 'l', 'e', 0x61, '1'};
	static const uint8_t list_map[] = {0xa2, 0x62, 'o', 'k', 0xf5, 0x64, 'd', 'a', 't', 'a',
		0xa1, 0x64, 'L', 'i', 's', 't', 0xa0};
	static const uint8_t array_body[] = {0x81, 0xf5};
	static const struct {
		const uint8_t *p;
		size_t n;
	} cases[] = {
		{ok_text, sizeof(ok_text)},
		{error_int, sizeof(error_int)},
		{handle_text, sizeof(handle_text)},
		{list_map, sizeof(list_map)},
		{array_body, sizeof(array_body)},
	};
	struct proto_fs_response d;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(
			resp_decode(cases[i].p, cases[i].n, &d), PROTO_E_WRONG_TYPE, "case %zu", i);
}

Test(msg_fs, out_of_range_integers_are_range_errors)
{
	uint8_t buf[128];
	struct proto_fs_request d;
	struct cbw w;

	wr_op(&w, buf, sizeof(buf), "Mkdir", 2);
	cbw_key(&w, "path");
	cbw_cstr(&w, "/d");
	cbw_key(&w, "mode");
	cbw_uint(&w, 1ull << 32);
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_RANGE);
}

Test(msg_fs, enum_map_with_zero_or_two_entries_or_bare_text_is_wrong_type)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	struct proto_fs_response rs;
	struct cbw w;

	/* {"op": {"Stat": {...}, "List": {...}}} */
	wr_begin(&w, buf, sizeof(buf), "op");
	cbw_map(&w, 2);
	cbw_key(&w, "Stat");
	cbw_map(&w, 2);
	cbw_key(&w, "path");
	cbw_cstr(&w, "/a");
	cbw_key(&w, "follow_symlink");
	cbw_bool(&w, true);
	cbw_key(&w, "List");
	cbw_map(&w, 1);
	cbw_key(&w, "path");
	cbw_cstr(&w, "/b");
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_WRONG_TYPE);

	/* {"op": {}} */
	wr_begin(&w, buf, sizeof(buf), "op");
	cbw_map(&w, 0);
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_WRONG_TYPE);

	/* {"op": "List"} */
	wr_begin(&w, buf, sizeof(buf), "op");
	cbw_cstr(&w, "List");
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_WRONG_TYPE);

	/* {"ok": true, "data": {"Handle": 1, "Path": "/"}} */
	wr_data(&w, buf, sizeof(buf), 2);
	cbw_key(&w, "Handle");
	cbw_uint(&w, 1);
	cbw_key(&w, "Path");
	cbw_cstr(&w, "/");
	cr_assert_eq(resp_decode(buf, wr_done(&w), &rs), PROTO_E_WRONG_TYPE);
}

Test(msg_fs, indefinite_enum_map_is_wrong_type)
{
	/* {"op": {_ "CloseHandle": {"handle": 1}}} */
	static const uint8_t p[] = {0xa1, 0x62, 'o', 'p', 0xbf, 0x6b, 'C', 'l', 'o', 's', 'e', 'H',
		'a', 'n', 'd', 'l', 'e', 0xa1, 0x66, 'h', 'a', 'n', 'd', 'l', 'e', 0x01, 0xff};
	struct proto_fs_request d;

	cr_assert_eq(req_decode(p, sizeof(p), &d), PROTO_E_WRONG_TYPE);
	/* the same with a definite map decodes */
	{
		uint8_t q[sizeof(p) - 1];

		memcpy(q, p, sizeof(q));
		q[4] = 0xa1;
		cr_assert_eq(req_decode(q, sizeof(q), &d), 0);
		cr_assert_eq(d.kind, PROTO_FS_OP_CLOSE_HANDLE);
		cr_assert_eq(d.handle, 1);
	}
}

Test(msg_fs, unknown_variant_names_are_bad_value)
{
	uint8_t buf[128];
	struct proto_fs_request d;
	struct proto_fs_response rs;
	struct cbw w;

	wr_op(&w, buf, sizeof(buf), "stat", 1); /* names are case-sensitive */
	cbw_key(&w, "path");
	cbw_cstr(&w, "/");
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_BAD_VALUE);

	wr_op(&w, buf, sizeof(buf), "Truncate", 0);
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_BAD_VALUE);

	wr_data(&w, buf, sizeof(buf), 1);
	cbw_key(&w, "Blob");
	cbw_bytes(&w, "ab", 2);
	cr_assert_eq(resp_decode(buf, wr_done(&w), &rs), PROTO_E_BAD_VALUE);
}

Test(msg_fs, duplicate_keys_are_dup_field)
{
	uint8_t buf[256];
	struct proto_fs_request d;
	struct proto_fs_response rs;
	struct cbw w;

	/* duplicate inside a variant, even when the first value is null */
	wr_op(&w, buf, sizeof(buf), "Mkdir", 3);
	cbw_key(&w, "mode");
	cbw_null(&w);
	cbw_key(&w, "path");
	cbw_cstr(&w, "/d");
	cbw_key(&w, "mode");
	cbw_uint(&w, 0700);
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);

	/* duplicate "op" */
	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 2);
	for (int i = 0; i < 2; i++) {
		cbw_key(&w, "op");
		cbw_map(&w, 1);
		cbw_key(&w, "FStat");
		cbw_map(&w, 1);
		cbw_key(&w, "handle");
		cbw_uint(&w, 3);
	}
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);

	/* duplicate "ok" */
	cbw_init(&w, buf, sizeof(buf));
	cbw_map(&w, 2);
	cbw_key(&w, "ok");
	cbw_bool(&w, true);
	cbw_key(&w, "ok");
	cbw_bool(&w, false);
	cr_assert_eq(resp_decode(buf, wr_done(&w), &rs), PROTO_E_DUP_FIELD);

	/* duplicate in FsSetAttrs */
	wr_op(&w, buf, sizeof(buf), "FSetStat", 2);
	cbw_key(&w, "handle");
	cbw_uint(&w, 3);
	cbw_key(&w, "attrs");
	cbw_map(&w, 2);
	cbw_key(&w, "uid");
	cbw_uint(&w, 1);
	cbw_key(&w, "uid");
	cbw_uint(&w, 2);
	cr_assert_eq(req_decode(buf, wr_done(&w), &d), PROTO_E_DUP_FIELD);
}

Test(msg_fs, duplicate_entry_field_is_dup_field)
{
	uint8_t buf[256];
	struct proto_fs_response d;
	size_t n = wr_entry_response(buf, sizeof(buf), -1);

	/* rename "kind" -> "path": a second path */
	for (size_t i = 0; i + 5 < n; i++) {
		if (memcmp(buf + i, "\x64kind", 5) == 0) {
			memcpy(buf + i + 1, "path", 4);
			break;
		}
	}
	cr_assert_eq(resp_decode(buf, n, &d), PROTO_E_DUP_FIELD);
}

Test(msg_fs, truncation_at_every_offset_is_truncated)
{
	static const char *const reqs[] = {"V24", "V26", "V28", "V32", "V33"};
	static const char *const resps[] = {"V25", "V27", "V31", "V34"};
	struct proto_fs_entry entries[3] = {
		make_entry(0, true), make_entry(1, false), make_entry(2, true)};
	struct proto_fs_response m = {.ok = true, .data.kind = PROTO_FS_DATA_LIST};
	uint8_t p[2048];
	unsigned i;
	long n;

	for (i = 0; i < 5; i++)
		req_check_truncation(p, vec_payload(reqs[i], p, sizeof(p)));
	for (i = 0; i < 4; i++)
		resp_check_truncation(p, vec_payload(resps[i], p, sizeof(p)));
	for (i = 0; i < PROTO_FS_OP_COUNT; i++) {
		struct proto_fs_request rq = make_req((enum proto_fs_op_kind)i, true);

		n = req_encode(&rq, p, sizeof(p));
		req_check_truncation(p, (size_t)n);
	}
	m.data.list.entries = entries;
	m.data.list.count = 3;
	n = resp_encode(&m, p, sizeof(p));
	resp_check_truncation(p, (size_t)n);
}

Test(msg_fs, list_count_beyond_the_input_is_truncated_before_allocating)
{
	/* {"ok": true, "data": {"List": array(2^32)}} with nothing after */
	static const uint8_t p[] = {0xa2, 0x62, 'o', 'k', 0xf5, 0x64, 'd', 'a', 't', 'a', 0xa1,
		0x64, 'L', 'i', 's', 't', 0x9a, 0xff, 0xff, 0xff, 0xff};
	struct proto_fs_response d;
	uint8_t small[64];
	struct proto_arena a;

	proto_arena_init(&a, small, sizeof(small));
	cr_assert_eq(resp_decode_arena(p, sizeof(p), &d, &a), PROTO_E_TRUNCATED);
	cr_assert_eq(a.used, 0);
}

Test(msg_fs, big_list_exhausting_the_arena_is_nospace)
{
	static struct proto_fs_entry entries[100];
	static uint8_t buf[16384];
	struct proto_fs_response m = list_response(entries, 100, false), d;
	struct proto_arena a;
	uint8_t small[1024];
	long n;

	n = resp_encode(&m, buf, sizeof(buf));
	cr_assert(n > 0);
	proto_arena_init(&a, small, sizeof(small));
	cr_assert_eq(resp_decode_arena(buf, (size_t)n, &d, &a), PROTO_E_NOSPACE);
	cr_assert_eq(resp_decode_arena(buf, (size_t)n, &d, NULL), PROTO_E_NOSPACE);

	/* an empty List needs no arena */
	m.data.list.count = 0;
	n = resp_encode(&m, buf, sizeof(buf));
	cr_assert_eq(resp_decode_arena(buf, (size_t)n, &d, NULL), 0);
	cr_assert_eq(d.data.kind, PROTO_FS_DATA_LIST);
	cr_assert_eq(d.data.list.count, 0);
}

Test(msg_fs, encoders_report_nospace_at_every_short_capacity)
{
	struct proto_fs_request rq = make_req(PROTO_FS_OP_SET_STAT, true);
	struct proto_fs_response rs = {.ok = true, .data.kind = PROTO_FS_DATA_STAT};

	rs.data.stat = make_entry(1, true);
	req_check_nospace(&rq);
	resp_check_nospace(&rs);
}

Test(msg_fs, encoders_reject_out_of_range_kinds)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_COUNT};
	struct proto_fs_response rs = {.ok = true, .data.kind = PROTO_FS_DATA_COUNT};
	uint8_t buf[256];

	cr_assert_eq(req_encode(&rq, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
	cr_assert_eq(resp_encode(&rs, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
	rs.data.kind = PROTO_FS_DATA_STAT;
	rs.data.stat.kind = PROTO_FS_KIND_COUNT;
	cr_assert_eq(resp_encode(&rs, buf, sizeof(buf)), PROTO_E_BAD_VALUE);
}

Test(msg_fs, name_tables_match_the_spec)
{
	static const char *const ops[] = {"RealPath", "Stat", "SetStat", "List", "ReadLink",
		"Symlink", "Mkdir", "Remove", "RemoveDir", "Copy", "Rename", "OpenFile", "OpenDir",
		"CloseHandle", "Read", "Write", "ReadDir", "FStat", "FSetStat"};
	static const char *const kinds[] = {"file", "dir", "symlink", "other"};
	unsigned i;

	cr_assert_eq(PROTO_FS_OP_COUNT, 19);
	for (i = 0; i < 19; i++)
		cr_assert_str_eq(proto_fs_op_names[i], ops[i]);
	for (i = 0; i < 4; i++)
		cr_assert_str_eq(proto_fs_kind_names[i], kinds[i]);
}
