/*
 * tests/agent/test_fs.c - filesystem sessions end to end (spec 3.3, 4.5;
 * design/wire.md "Files"): a real sandwire-agent driven over a socketpair
 * (tests/support/agent_harness.h), working in a fresh directory per test.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/agent_harness.h"

#define STEP 33554431u /* relay id range per slot (spec 5.3) */
#define SLOT_ID(k, n) ((uint32_t)(k) * STEP + 1 + (uint32_t)(n))

static struct ah h;
static char root[64];
static uint32_t next_id = 1;

static void boot(void)
{
	struct rlimit rl;

	/* The handle-limit test keeps 1024 directories open in the agent. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
		rl.rlim_cur = 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	snprintf(root, sizeof(root), "/tmp/sw-fs-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	ah_start(&h, NULL);
	ah_boot(&h);
}

static void stop(void)
{
	int st = ah_stop(&h);

	ah_rm_tree(root);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
}

TestSuite(agent_fs, .init = boot, .fini = stop, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------ */

static struct proto_str S(const char *s)
{
	return (struct proto_str){s, strlen(s)};
}

/* <rel> under the test's directory; a ring of buffers so several can be live. */
static const char *P(const char *rel)
{
	static char bufs[8][PATH_MAX];
	static unsigned i;
	char *b = bufs[i++ % 8];

	snprintf(b, PATH_MAX, "%s/%s", root, rel);
	return b;
}

static uint32_t new_id(void)
{
	return next_id++;
}

static void send_req(uint32_t id, struct proto_fs_request rq)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST};

	m.u.fs_request = rq;
	ah_send(&h, id, &m);
}

static void send_data(uint32_t id, const void *p, size_t n)
{
	struct proto_msg m = {.type = PROTO_T_FS_DATA};

	m.u.data = (struct proto_data){p, n};
	ah_send(&h, id, &m);
}

/* The next frame, which must be the terminal core.fs.response of <id>. */
static const struct proto_fs_response *resp(uint32_t id)
{
	ah_recv(&h, 30000, false);
	cr_assert_eq(h.msg.type, PROTO_T_FS_RESPONSE, "got %s on id %u, wanted fs.response on %u",
		proto_type_name(h.msg.type), h.frame.id, id);
	cr_assert_eq(h.frame.id, id, "fs.response for id %u, wanted %u", h.frame.id, id);
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	return &h.msg.u.fs_response;
}

static const struct proto_fs_response *op(struct proto_fs_request rq)
{
	uint32_t id = new_id();

	send_req(id, rq);
	return resp(id);
}

static void check_ok(const struct proto_fs_response *r)
{
	cr_assert(r->ok, "fs op failed: %.*s", r->error.set ? (int)r->error.v.len : 0,
		r->error.set ? r->error.v.ptr : "");
	cr_assert(!r->error.set);
}

static void check_err(const struct proto_fs_response *r, const char *text)
{
	cr_assert(!r->ok, "expected failure \"%s\"", text);
	cr_assert(r->error.set);
	cr_assert(r->error.v.len == strlen(text) && memcmp(r->error.v.ptr, text, r->error.v.len) == 0,
		"error \"%.*s\", expected \"%s\"", (int)r->error.v.len, r->error.v.ptr, text);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_NONE);
}

static bool err_has(const struct proto_fs_response *r, const char *needle)
{
	char text[1024];

	snprintf(text, sizeof(text), "%.*s", (int)r->error.v.len, r->error.v.ptr);
	return !r->ok && r->error.set && strstr(text, needle) != NULL;
}

static void ok_op(struct proto_fs_request rq)
{
	check_ok(op(rq));
}

static void err_op(struct proto_fs_request rq, const char *text)
{
	check_err(op(rq), text);
}

static struct proto_fs_open_options opts(const char *flags)
{
	struct proto_fs_open_options o = {0};

	o.read = strchr(flags, 'r') != NULL;
	o.write = strchr(flags, 'w') != NULL;
	o.append = strchr(flags, 'a') != NULL;
	o.create = strchr(flags, 'c') != NULL;
	o.truncate = strchr(flags, 't') != NULL;
	o.create_new = strchr(flags, 'n') != NULL;
	return o;
}

static uint64_t open_file_as(uint32_t id, const char *path, const char *flags)
{
	const struct proto_fs_response *r;

	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(path),
		.options = opts(flags)});
	r = resp(id);
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_HANDLE);
	return r->data.handle;
}

static uint64_t open_file(const char *path, const char *flags)
{
	return open_file_as(new_id(), path, flags);
}

static uint64_t open_dir_as(uint32_t id, const char *path)
{
	const struct proto_fs_response *r;

	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_DIR, .path = S(path)});
	r = resp(id);
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_HANDLE);
	return r->data.handle;
}

static void close_handle(uint64_t hd)
{
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_CLOSE_HANDLE, .handle = hd});
}

/* A read or other stream being collected: data of <id> until its response. */
struct coll {
	uint32_t id;
	uint8_t *buf;
	size_t len, cap;
	bool done, ok;
	char err[512];
};

/* Receive until every collector in <c> saw its response; data frames are appended. */
static void collect(struct coll *c, size_t n)
{
	size_t left = n;

	while (left > 0) {
		struct coll *x = NULL;

		ah_recv(&h, 30000, false);
		for (size_t i = 0; i < n; i++)
			if (c[i].id == h.frame.id && !c[i].done)
				x = &c[i];
		cr_assert_not_null(x, "%s for unexpected id %u", proto_type_name(h.msg.type),
			h.frame.id);
		if (h.msg.type == PROTO_T_FS_DATA) {
			cr_assert_gt(h.msg.u.data.len, 0, "empty fs.data from the agent");
			cr_assert_leq(h.msg.u.data.len, 3145728u);
			if (x->len + h.msg.u.data.len > x->cap) {
				x->cap = 2 * (x->len + h.msg.u.data.len);
				x->buf = realloc(x->buf, x->cap);
				cr_assert_not_null(x->buf);
			}
			memcpy(x->buf + x->len, h.msg.u.data.ptr, h.msg.u.data.len);
			x->len += h.msg.u.data.len;
			continue;
		}
		cr_assert_eq(h.msg.type, PROTO_T_FS_RESPONSE, "got %s", proto_type_name(h.msg.type));
		cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
		x->done = true;
		x->ok = h.msg.u.fs_response.ok;
		if (h.msg.u.fs_response.error.set)
			snprintf(x->err, sizeof(x->err), "%.*s", (int)h.msg.u.fs_response.error.v.len,
				h.msg.u.fs_response.error.v.ptr);
		left--;
	}
}

static void send_read(uint32_t id, uint64_t hd, uint64_t off, bool has_len, uint64_t len)
{
	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_READ, .handle = hd,
		.offset = off, .len = {has_len, len}});
}

/* Read <hd> from <off> (<len> bytes, or to EOF when !has_len); returns malloc'd bytes. */
static uint8_t *read_all(uint64_t hd, uint64_t off, bool has_len, uint64_t len, size_t *n)
{
	struct coll c = {.id = new_id()};

	send_read(c.id, hd, off, has_len, len);
	collect(&c, 1);
	cr_assert(c.ok, "read failed: %s", c.err);
	*n = c.len;
	return c.buf;
}

/* Write <n> bytes at <off> in chunks of <chunk>, declaring len; expects ok. */
static void write_all(uint64_t hd, uint64_t off, const uint8_t *p, size_t n, size_t chunk)
{
	uint32_t id = new_id();

	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = hd,
		.offset = off, .len = {true, n}});
	for (size_t done = 0; done < n; done += chunk)
		send_data(id, p + done, n - done < chunk ? n - done : chunk);
	send_data(id, "", 0);
	check_ok(resp(id));
}

static uint8_t *pattern(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n);
	uint64_t x = seed | 1;

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	return p;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t x = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		x = (x ^ p[i]) * 0x100000001b3ull;
	return x;
}

static void make_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static size_t file_size(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
	return (size_t)st.st_size;
}

static char *slurp(const char *path, size_t *n)
{
	size_t sz = file_size(path);
	char *b = malloc(sz + 1);
	int fd = open(path, O_RDONLY);

	cr_assert(b && fd >= 0);
	cr_assert_eq(read(fd, b, sz), (ssize_t)sz);
	close(fd);
	b[sz] = '\0';
	*n = sz;
	return b;
}

static bool str_is(struct proto_str s, const char *c)
{
	return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* ---- streams ------------------------------------------------------------------ */

Test(agent_fs, write_then_read_back_multi_chunk_over_3_mib)
{
	size_t n = 3 * 1048576 + 777777, got;
	uint8_t *data = pattern(n, 42), *back, *disk;
	uint64_t w, r;

	w = open_file(P("big"), "wct");
	write_all(w, 0, data, n, 3145728); /* the SDKs' chunk size, then the rest */
	close_handle(w);
	cr_assert_eq(file_size(P("big")), n);
	disk = (uint8_t *)slurp(P("big"), &got);
	cr_assert_eq(fnv1a(disk, got), fnv1a(data, n));
	free(disk);

	w = open_file(P("big2"), "wct");
	write_all(w, 0, data, n, 100000); /* many small chunks */
	close_handle(w);

	r = open_file(P("big2"), "r");
	back = read_all(r, 0, false, 0, &got);
	cr_assert_eq(got, n);
	cr_assert_eq(fnv1a(back, got), fnv1a(data, n));
	cr_assert(memcmp(back, data, n) == 0);
	free(back);

	/* A window in the middle, then past EOF. */
	back = read_all(r, 1000001, true, 2000000, &got);
	cr_assert_eq(got, 2000000);
	cr_assert(memcmp(back, data + 1000001, got) == 0);
	free(back);
	back = read_all(r, n - 10, true, 100, &got);
	cr_assert_eq(got, 10);
	cr_assert(memcmp(back, data + n - 10, 10) == 0);
	free(back);
	back = read_all(r, n + 5, false, 0, &got);
	cr_assert_eq(got, 0);
	free(back);
	back = read_all(r, 0, true, 0, &got);
	cr_assert_eq(got, 0);
	free(back);
	close_handle(r);
	free(data);
}

Test(agent_fs, write_at_offsets_and_append_handle)
{
	size_t n;
	char *s;
	uint64_t w;

	w = open_file(P("f"), "wc");
	write_all(w, 0, (const uint8_t *)"hello world", 11, 4);
	write_all(w, 6, (const uint8_t *)"WORLD", 5, 5);
	close_handle(w);
	s = slurp(P("f"), &n);
	cr_assert_str_eq(s, "hello WORLD");
	free(s);

	/* An append handle appends whatever the offset says. */
	w = open_file(P("f"), "a");
	write_all(w, 0, (const uint8_t *)"!!", 2, 1);
	close_handle(w);
	s = slurp(P("f"), &n);
	cr_assert_str_eq(s, "hello WORLD!!");
	free(s);
}

Test(agent_fs, write_past_declared_len_is_refused_at_once)
{
	uint32_t id = new_id();
	uint64_t w = open_file(P("f"), "wct");
	const struct proto_fs_response *r;
	size_t n;
	char *s;

	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = w,
		.offset = 0, .len = {true, 10}});
	send_data(id, "12345678", 8);
	send_data(id, "abcdefgh", 8); /* 16 > 10: refused before any end-of-stream */
	r = resp(id);
	cr_assert(err_has(r, "write length mismatch: expected 10"), "%.*s", (int)r->error.v.len,
		r->error.v.ptr);
	/* The stream is over: the end marker now finds no session. */
	send_data(id, "", 0);
	{
		char want[64];

		snprintf(want, sizeof(want), "unknown write session: %u", id);
		check_err(resp(id), want);
	}
	close_handle(w);
	/* The accepted bytes may or may not have reached the file; the refused ones never. */
	s = slurp(P("f"), &n);
	cr_assert(n == 0 || (n == 8 && strcmp(s, "12345678") == 0), "file holds %zu bytes", n);
	free(s);
}

Test(agent_fs, short_write_fails_at_the_end_and_unknown_sessions_are_answered)
{
	uint32_t id;
	uint64_t w = open_file(P("f"), "wct");

	id = new_id();
	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = w,
		.offset = 0, .len = {true, 10}});
	send_data(id, "1234", 4);
	send_data(id, "", 0);
	check_err(resp(id), "write length mismatch: expected 10, wrote 4");

	/* No len: unchecked. */
	id = new_id();
	send_req(id, (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = w,
		.offset = 0});
	send_data(id, "abc", 3);
	send_data(id, "", 0);
	check_ok(resp(id));

	send_data(4242, "zz", 2);
	check_err(resp(4242), "unknown write session: 4242");
	send_data(4243, "", 0);
	check_err(resp(4243), "unknown write session: 4243");
	close_handle(w);
}

Test(agent_fs, close_handle_during_a_read_stream)
{
	size_t n = 8u << 20;
	uint8_t *data = pattern(n, 7);
	struct coll c[2] = {{.id = new_id()}, {.id = new_id()}};
	uint64_t r;

	make_file(P("f"), data, n);
	r = open_file(P("f"), "r");
	send_read(c[0].id, r, 0, false, 0);
	send_req(c[1].id, (struct proto_fs_request){.kind = PROTO_FS_OP_CLOSE_HANDLE, .handle = r});
	collect(c, 2);
	cr_assert(c[1].ok, "close: %s", c[1].err);
	cr_assert(c[0].ok, "read: %s", c[0].err);
	cr_assert_eq(c[0].len, n);
	cr_assert(memcmp(c[0].buf, data, n) == 0);
	/* The handle is gone now. */
	{
		char want[64];

		snprintf(want, sizeof(want), "invalid handle: %llu", (unsigned long long)r);
		send_read(c[0].id + 100, r, 0, false, 0);
		check_err(resp(c[0].id + 100), want);
	}
	free(c[0].buf);
	free(data);
}

Test(agent_fs, streams_on_one_handle_take_turns)
{
	size_t n = 3u << 20;
	uint8_t *data = pattern(n, 9);
	struct coll c[3] = {{.id = new_id()}, {.id = new_id()}, {.id = new_id()}};
	uint64_t r;

	make_file(P("f"), data, n);
	r = open_file(P("f"), "r");
	send_read(c[0].id, r, 0, false, 0);
	send_read(c[1].id, r, 1000, true, 5000);
	send_read(c[2].id, r, n - 300000, false, 0);
	collect(c, 3);
	for (int i = 0; i < 3; i++)
		cr_assert(c[i].ok, "read %d: %s", i, c[i].err);
	cr_assert_eq(c[0].len, n);
	cr_assert(memcmp(c[0].buf, data, n) == 0);
	cr_assert_eq(c[1].len, 5000);
	cr_assert(memcmp(c[1].buf, data + 1000, 5000) == 0);
	cr_assert_eq(c[2].len, 300000);
	cr_assert(memcmp(c[2].buf, data + n - 300000, 300000) == 0);
	for (int i = 0; i < 3; i++)
		free(c[i].buf);
	close_handle(r);
	free(data);
}

Test(agent_fs, read_and_write_stream_errors)
{
	uint64_t r, d;

	make_file(P("f"), "x", 1);
	r = open_file(P("f"), "r");
	d = open_dir_as(new_id(), root);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_READ, .handle = r,
		.offset = UINT64_MAX}, "seek: Invalid argument (os error 22)");
	{
		char want[64];

		snprintf(want, sizeof(want), "handle %llu is not open for writing",
			(unsigned long long)r);
		err_op((struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = r}, want);
		snprintf(want, sizeof(want), "handle %llu is a directory", (unsigned long long)d);
		err_op((struct proto_fs_request){.kind = PROTO_FS_OP_READ, .handle = d}, want);
	}
	close_handle(r);
	r = open_file(P("f"), "w");
	{
		char want[64];

		snprintf(want, sizeof(want), "handle %llu is not open for reading",
			(unsigned long long)r);
		err_op((struct proto_fs_request){.kind = PROTO_FS_OP_READ, .handle = r}, want);
	}
	/* A directory opened as a file reads as EISDIR. */
	{
		struct coll c = {.id = new_id()};
		uint64_t fd_dir = open_file(root, "r");

		send_read(c.id, fd_dir, 0, false, 0);
		collect(&c, 1);
		cr_assert(!c.ok);
		cr_assert_str_eq(c.err, "read: Is a directory (os error 21)");
	}
}

/* ---- path operations ---------------------------------------------------------- */

Test(agent_fs, stat_follows_symlinks_or_not)
{
	const struct proto_fs_response *r;
	struct stat st;

	make_file(P("f"), "hello", 5);
	cr_assert_eq(symlink(P("f"), P("l")), 0);
	cr_assert_eq(stat(P("f"), &st), 0);

	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_STAT, .path = S(P("l")),
		.follow_symlink = true});
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_STAT);
	cr_assert(str_is(r->data.stat.path, P("l")), "path is the requested one");
	cr_assert_eq(r->data.stat.kind, PROTO_FS_KIND_FILE);
	cr_assert_eq(r->data.stat.size, 5);
	cr_assert_eq(r->data.stat.mode, st.st_mode);
	cr_assert_eq(r->data.stat.mode, 0100644);
	cr_assert_eq(r->data.stat.uid, st.st_uid);
	cr_assert(r->data.stat.mtime.set && r->data.stat.mtime.v == st.st_mtim.tv_sec);
	cr_assert(r->data.stat.modified.set && r->data.stat.modified.v == st.st_mtim.tv_sec);
	cr_assert(r->data.stat.atime.set && r->data.stat.atime.v == st.st_atim.tv_sec);

	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_STAT, .path = S(P("l"))});
	check_ok(r);
	cr_assert_eq(r->data.stat.kind, PROTO_FS_KIND_SYMLINK);
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_STAT, .path = S(root)});
	check_ok(r);
	cr_assert_eq(r->data.stat.kind, PROTO_FS_KIND_DIR);

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_STAT, .path = S(P("nope")),
		.follow_symlink = true}, "stat: No such file or directory (os error 2)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_STAT, .path = {"/tmp\0x", 6}},
		"stat: file name contained an unexpected NUL byte");
}

Test(agent_fs, real_path_canonicalises_and_resolves_a_missing_leaf)
{
	const struct proto_fs_response *r;
	char real_root[PATH_MAX], want[PATH_MAX + 16];

	cr_assert_not_null(realpath(root, real_root));
	cr_assert_eq(mkdir(P("d"), 0755), 0);
	cr_assert_eq(symlink(P("d"), P("l")), 0);

	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_REAL_PATH, .path = S(P("l/../d/."))});
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_PATH);
	snprintf(want, sizeof(want), "%s/d", real_root);
	cr_assert(str_is(r->data.path, want), "%.*s", (int)r->data.path.len, r->data.path.ptr);

	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_REAL_PATH, .path = S(P("l/new"))});
	check_ok(r);
	snprintf(want, sizeof(want), "%s/d/new", real_root);
	cr_assert(str_is(r->data.path, want), "%.*s", (int)r->data.path.len, r->data.path.ptr);

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REAL_PATH, .path = S(P("no/new"))},
		"realpath: No such file or directory (os error 2)");
}

Test(agent_fs, set_stat_in_the_reference_order)
{
	struct stat st;

	make_file(P("f"), "0123456789", 10);
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_SET_STAT, .path = S(P("f")),
		.follow_symlink = true, .attrs = {.size = {true, 4}, .mode = {true, 0600},
		.uid = {true, getuid()}, .atime = {true, 1000000000}, .mtime = {true, 1200000000}}});
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_size, 4);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);

	/* Only mtime: atime stays. */
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_SET_STAT, .path = S(P("f")),
		.follow_symlink = true, .attrs = {.mtime = {true, 1300000000}}});
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_mtim.tv_sec, 1300000000);

	cr_assert_eq(symlink(P("f"), P("l")), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_SET_STAT, .path = S(P("l")),
		.attrs = {.mode = {true, 0644}}},
		"setstat: chmod on symlink without following is not supported");
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_SET_STAT, .path = S(P("l")),
		.follow_symlink = true, .attrs = {.mode = {true, 0640}}});
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_SET_STAT, .path = S(P("nope")),
		.attrs = {.size = {true, 1}}}, "setstat: No such file or directory (os error 2)");
}

Test(agent_fs, list_returns_every_entry_lstated)
{
	const struct proto_fs_response *r;
	bool seen[3] = {0};

	make_file(P("file"), "abc", 3);
	cr_assert_eq(mkdir(P("dir"), 0755), 0);
	cr_assert_eq(symlink("/nonexistent", P("link")), 0);
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_LIST, .path = S(root)});
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_LIST);
	cr_assert_eq(r->data.list.count, 3);
	for (size_t i = 0; i < 3; i++) {
		const struct proto_fs_entry *e = &r->data.list.entries[i];

		if (str_is(e->path, P("file"))) {
			cr_assert_eq(e->kind, PROTO_FS_KIND_FILE);
			cr_assert_eq(e->size, 3);
			seen[0] = true;
		} else if (str_is(e->path, P("dir"))) {
			cr_assert_eq(e->kind, PROTO_FS_KIND_DIR);
			seen[1] = true;
		} else if (str_is(e->path, P("link"))) {
			cr_assert_eq(e->kind, PROTO_FS_KIND_SYMLINK);
			seen[2] = true;
		}
	}
	cr_assert(seen[0] && seen[1] && seen[2]);

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_LIST, .path = S(P("nope"))},
		"readdir: No such file or directory (os error 2)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_LIST, .path = S(P("file"))},
		"readdir: Not a directory (os error 20)");
}

Test(agent_fs, listings_replace_invalid_utf8_in_names)
{
	const struct proto_fs_response *r;
	char want[PATH_MAX];

	make_file(P("bad\xff" "x\xe2\x82"), "", 0);
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_LIST, .path = S(root)});
	check_ok(r);
	cr_assert_eq(r->data.list.count, 1);
	snprintf(want, sizeof(want), "%s/bad\xef\xbf\xbdx\xef\xbf\xbd", root);
	cr_assert(str_is(r->data.list.entries[0].path, want), "%.*s",
		(int)r->data.list.entries[0].path.len, r->data.list.entries[0].path.ptr);
}

Test(agent_fs, symlink_and_read_link)
{
	const struct proto_fs_response *r;
	char buf[64];
	ssize_t n;

	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_SYMLINK, .target = S("some/target"),
		.link_path = S(P("l"))});
	n = readlink(P("l"), buf, sizeof(buf));
	cr_assert_eq(n, 11);
	cr_assert(memcmp(buf, "some/target", 11) == 0);
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_READ_LINK, .path = S(P("l"))});
	check_ok(r);
	cr_assert_eq(r->data.kind, PROTO_FS_DATA_PATH);
	cr_assert(str_is(r->data.path, "some/target"));

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_SYMLINK, .target = S("x"),
		.link_path = S(P("l"))}, "symlink: File exists (os error 17)");
	make_file(P("f"), "", 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_READ_LINK, .path = S(P("f"))},
		"readlink: Invalid argument (os error 22)");
}

Test(agent_fs, mkdir_creates_parents_and_sets_the_last_mode)
{
	struct stat st;

	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_MKDIR, .path = S(P("a/b/c/")),
		.mode = {true, 0700}});
	cr_assert_eq(stat(P("a/b/c"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_eq(stat(P("a/b"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755, "parents get 0777 minus the umask");
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_MKDIR, .path = S(P("a/b"))});

	make_file(P("f"), "", 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_MKDIR, .path = S(P("f"))},
		"mkdir: File exists (os error 17)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_MKDIR, .path = S(P("f/sub/x"))},
		"mkdir: Not a directory (os error 20)");
}

Test(agent_fs, remove_and_remove_dir)
{
	char outside[PATH_MAX];
	struct stat st;

	make_file(P("f"), "", 0);
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE, .path = S(P("f"))});
	cr_assert_neq(access(P("f"), F_OK), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE, .path = S(P("f"))},
		"remove: No such file or directory (os error 2)");
	cr_assert_eq(mkdir(P("d"), 0755), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE, .path = S(P("d"))},
		"remove: Is a directory (os error 21)");

	make_file(P("d/x"), "", 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE_DIR, .path = S(P("d"))},
		"remove_dir: Directory not empty (os error 39)");

	/* A tree with a symlink to a directory outside: the link goes, the target stays. */
	cr_assert_eq(mkdir(P("keep"), 0755), 0);
	make_file(P("keep/precious"), "p", 1);
	snprintf(outside, sizeof(outside), "%s", P("keep"));
	cr_assert_eq(mkdir(P("d/e"), 0755), 0);
	cr_assert_eq(mkdir(P("d/e/f"), 0755), 0);
	make_file(P("d/e/f/g"), "g", 1);
	cr_assert_eq(symlink(outside, P("d/e/to-keep")), 0);
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE_DIR, .path = S(P("d")),
		.recursive = true});
	cr_assert_neq(lstat(P("d"), &st), 0);
	cr_assert_eq(stat(P("keep/precious"), &st), 0);

	/* Recursive on a symlink removes the link only. */
	cr_assert_eq(symlink(outside, P("lk")), 0);
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE_DIR, .path = S(P("lk")),
		.recursive = true});
	cr_assert_neq(lstat(P("lk"), &st), 0);
	cr_assert_eq(stat(P("keep/precious"), &st), 0);

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE_DIR, .path = S(P("keep/precious")),
		.recursive = true}, "remove_dir: Not a directory (os error 20)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_REMOVE_DIR, .path = S(P("none"))},
		"remove_dir: No such file or directory (os error 2)");
}

Test(agent_fs, copy_and_rename)
{
	size_t n = 5u << 20, got;
	uint8_t *data = pattern(n, 3);
	char *back;
	struct stat st;

	make_file(P("src"), data, n);
	cr_assert_eq(chmod(P("src"), 0751), 0);
	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_COPY, .src = S(P("src")),
		.dst = S(P("dst"))});
	back = slurp(P("dst"), &got);
	cr_assert_eq(got, n);
	cr_assert(memcmp(back, data, n) == 0);
	free(back);
	cr_assert_eq(stat(P("dst"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751);

	cr_assert_eq(mkdir(P("d"), 0755), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_COPY, .src = S(P("d")),
		.dst = S(P("d2"))},
		"copy: the source path is neither a regular file nor a symlink to a regular file");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_COPY, .src = S(P("none")),
		.dst = S(P("d2"))}, "copy: No such file or directory (os error 2)");

	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_RENAME, .src = S(P("dst")),
		.dst = S(P("moved"))});
	cr_assert_eq(file_size(P("moved")), n);
	cr_assert_neq(access(P("dst"), F_OK), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_RENAME, .src = S(P("dst")),
		.dst = S(P("x"))}, "rename: No such file or directory (os error 2)");
	free(data);
}

/* ---- handles ------------------------------------------------------------------ */

Test(agent_fs, open_file_maps_options_like_rust)
{
	struct stat st;
	uint64_t a, b;

	/* Invalid combinations give EINVAL before touching the disk. */
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(P("f")),
		.options = opts("")}, "open: Invalid argument (os error 22)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(P("f")),
		.options = opts("rc")}, "open: Invalid argument (os error 22)");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(P("f")),
		.options = opts("act")}, "open: Invalid argument (os error 22)");
	cr_assert_neq(access(P("f"), F_OK), 0);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(P("f")),
		.options = opts("r")}, "open: No such file or directory (os error 2)");

	{
		struct proto_fs_open_options o = opts("wn");

		o.mode = (struct proto_opt_u32){true, 0640};
		check_ok(op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE,
			.path = S(P("f")), .options = o}));
	}
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_FILE, .path = S(P("f")),
		.options = opts("wn")}, "open: File exists (os error 17)");
	/* Default creation mode 0666 minus the umask; numbers grow from one counter. */
	a = open_file(P("g"), "wc");
	cr_assert_eq(stat(P("g"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0644);
	b = open_file(P("g"), "ac");
	cr_assert_gt(b, a);
	cr_assert_geq(a, 1);
}

Test(agent_fs, handle_errors_name_the_handle)
{
	uint64_t f, d;
	char want[96];

	make_file(P("f"), "abc", 3);
	f = open_file(P("f"), "rw");
	d = open_dir_as(new_id(), root);

	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT, .handle = 999999},
		"invalid handle: 999999");
	snprintf(want, sizeof(want), "handle %llu is a file", (unsigned long long)f);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_READ_DIR, .handle = f}, want);
	snprintf(want, sizeof(want), "handle %llu is a directory", (unsigned long long)d);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_FSETSTAT, .handle = d}, want);

	/* A handle belongs to the relay slot that opened it; id 0 has no slot. */
	snprintf(want, sizeof(want), "handle %llu is owned by a different relay client",
		(unsigned long long)f);
	send_req(SLOT_ID(1, 5), (struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT, .handle = f});
	check_err(resp(SLOT_ID(1, 5)), want);
	send_req(0, (struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT, .handle = f});
	check_err(resp(0), want);
	send_req(0, (struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_DIR, .path = S(root)});
	cr_assert(err_has(resp(0), "relay client"));
	/* The same slot, another id: fine. */
	send_req(SLOT_ID(0, 30000000), (struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT,
		.handle = f});
	check_ok(resp(SLOT_ID(0, 30000000)));

	close_handle(f);
	snprintf(want, sizeof(want), "invalid handle: %llu", (unsigned long long)f);
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_CLOSE_HANDLE, .handle = f}, want);
	close_handle(d);
}

Test(agent_fs, fstat_and_fsetstat)
{
	const struct proto_fs_response *r;
	struct stat st;
	uint64_t f, d;

	make_file(P("f"), "0123456789", 10);
	f = open_file(P("f"), "rw");
	d = open_dir_as(new_id(), root);
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT, .handle = f});
	check_ok(r);
	cr_assert_eq(r->data.stat.kind, PROTO_FS_KIND_FILE);
	cr_assert_eq(r->data.stat.size, 10);
	cr_assert(str_is(r->data.stat.path, P("f")));
	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT, .handle = d});
	check_ok(r);
	cr_assert_eq(r->data.stat.kind, PROTO_FS_KIND_DIR);

	ok_op((struct proto_fs_request){.kind = PROTO_FS_OP_FSETSTAT, .handle = f,
		.attrs = {.size = {true, 3}, .mode = {true, 0604}, .gid = {true, getgid()},
		.mtime = {true, 1111111111}}});
	cr_assert_eq(stat(P("f"), &st), 0);
	cr_assert_eq(st.st_size, 3);
	cr_assert_eq(st.st_mode & 07777, 0604);
	cr_assert_eq(st.st_mtim.tv_sec, 1111111111);
	close_handle(f);

	f = open_file(P("f"), "r");
	err_op((struct proto_fs_request){.kind = PROTO_FS_OP_FSETSTAT, .handle = f,
		.attrs = {.size = {true, 1}}}, "fsetstat: Invalid argument (os error 22)");
}

Test(agent_fs, read_dir_pages_by_limit)
{
	enum { N = 300 };
	bool seen[N] = {0};
	size_t total = 0, pages = 0;
	uint64_t d;

	cr_assert_eq(mkdir(P("d"), 0755), 0);
	for (int i = 0; i < N; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d/e%03d", i);
		make_file(P(name), "", 0);
	}
	d = open_dir_as(new_id(), P("d"));
	for (;;) {
		const struct proto_fs_response *r =
			op((struct proto_fs_request){.kind = PROTO_FS_OP_READ_DIR, .handle = d});
		size_t prefix = strlen(P("d/e"));

		check_ok(r);
		cr_assert_eq(r->data.kind, PROTO_FS_DATA_LIST);
		if (r->data.list.count == 0)
			break;
		cr_assert_leq(r->data.list.count, 128);
		for (size_t i = 0; i < r->data.list.count; i++) {
			struct proto_str p = r->data.list.entries[i].path;
			int k;

			cr_assert(p.len == prefix + 3 && memcmp(p.ptr, P("d/e"), prefix) == 0);
			k = atoi((const char[4]){p.ptr[prefix], p.ptr[prefix + 1], p.ptr[prefix + 2], 0});
			cr_assert(!seen[k], "entry %d twice", k);
			seen[k] = true;
		}
		total += r->data.list.count;
		pages++;
	}
	cr_assert_eq(total, N);
	cr_assert_eq(pages, 3);
	close_handle(d);

	/* limit 0 means 1. */
	d = open_dir_as(new_id(), P("d"));
	{
		const struct proto_fs_response *r = op((struct proto_fs_request){
			.kind = PROTO_FS_OP_READ_DIR, .handle = d, .limit = {true, 0}});

		check_ok(r);
		cr_assert_eq(r->data.list.count, 1);
	}
}

/*
 * Entries with ~2.9 KB paths: one 4 MiB reply holds about 1400, so 3000
 * entries need pages cut by size (F15), and List must refuse clearly.
 */
Test(agent_fs, big_listings_page_by_frame_size_never_lost)
{
	enum { N = 3000 };
	char deep[PATH_MAX], seg[201];
	size_t total = 0, pages = 0, len;
	bool *seen = calloc(N, 1);
	const struct proto_fs_response *r;
	uint64_t d;

	memset(seg, 's', 200);
	seg[200] = '\0';
	len = (size_t)snprintf(deep, sizeof(deep), "%s", root);
	for (int i = 0; i < 14; i++) {
		len += (size_t)snprintf(deep + len, sizeof(deep) - len, "/%s", seg);
		cr_assert_eq(mkdir(deep, 0755), 0, "%s", strerror(errno));
	}
	{
		int dfd = open(deep, O_RDONLY | O_DIRECTORY);

		cr_assert_geq(dfd, 0);
		for (int i = 0; i < N; i++) {
			char name[16];
			int fd;

			snprintf(name, sizeof(name), "%05d", i);
			fd = openat(dfd, name, O_WRONLY | O_CREAT, 0644);
			cr_assert_geq(fd, 0);
			close(fd);
		}
		close(dfd);
	}

	r = op((struct proto_fs_request){.kind = PROTO_FS_OP_LIST, .path = S(deep)});
	cr_assert(err_has(r, "page it with OpenDir and ReadDir"), "%.*s",
		r->error.set ? (int)r->error.v.len : 0, r->error.set ? r->error.v.ptr : "");
	cr_assert(err_has(r, "readdir: "));

	d = open_dir_as(new_id(), deep);
	for (;;) {
		r = op((struct proto_fs_request){.kind = PROTO_FS_OP_READ_DIR, .handle = d,
			.limit = {true, 1000000}});
		check_ok(r);
		if (r->data.list.count == 0)
			break;
		cr_assert_lt(r->data.list.count, N, "a page must be cut by size");
		for (size_t i = 0; i < r->data.list.count; i++) {
			struct proto_str p = r->data.list.entries[i].path;
			char num[6];
			int k;

			cr_assert(p.len == len + 6 && memcmp(p.ptr, deep, len) == 0);
			memcpy(num, p.ptr + len + 1, 5);
			num[5] = '\0';
			k = atoi(num);
			cr_assert(k >= 0 && k < N && !seen[k], "entry %d twice", k);
			seen[k] = true;
		}
		total += r->data.list.count;
		pages++;
	}
	cr_assert_eq(total, N);
	cr_assert_geq(pages, 3);
	close_handle(d);
	free(seen);
}

Test(agent_fs, handles_are_limited_per_relay_slot)
{
	uint64_t first = 0, last = 0;
	char want[96];

	for (uint32_t i = 0; i < 1024; i++) {
		last = open_dir_as(SLOT_ID(2, i), root);
		if (i == 0)
			first = last;
	}
	send_req(SLOT_ID(2, 5000), (struct proto_fs_request){.kind = PROTO_FS_OP_OPEN_DIR,
		.path = S(root)});
	check_err(resp(SLOT_ID(2, 5000)), "too many open filesystem handles for relay client: 2");
	/* Another slot is not affected. */
	send_req(SLOT_ID(3, 2), (struct proto_fs_request){.kind = PROTO_FS_OP_CLOSE_HANDLE,
		.handle = open_dir_as(SLOT_ID(3, 1), root)});
	check_ok(resp(SLOT_ID(3, 2)));
	/* Closing one makes room again. */
	send_req(SLOT_ID(2, 5001), (struct proto_fs_request){.kind = PROTO_FS_OP_CLOSE_HANDLE,
		.handle = last});
	check_ok(resp(SLOT_ID(2, 5001)));
	last = open_dir_as(SLOT_ID(2, 5002), root);

	/* The client of slot 2 goes away: all its handles close, nothing is answered. */
	{
		struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED};

		m.u.relay_client_disconnected.id_start = SLOT_ID(2, 0);
		m.u.relay_client_disconnected.id_end_exclusive = SLOT_ID(3, 0) - 1;
		ah_send(&h, 0, &m);
	}
	snprintf(want, sizeof(want), "invalid handle: %llu", (unsigned long long)first);
	send_req(SLOT_ID(2, 6000), (struct proto_fs_request){.kind = PROTO_FS_OP_FSTAT,
		.handle = first});
	check_err(resp(SLOT_ID(2, 6000)), want);
	/* The slot's count went back to zero. */
	for (uint32_t i = 0; i < 1024; i++)
		open_dir_as(SLOT_ID(2, 7000 + i), root);
}

Test(agent_fs, client_disconnect_ends_its_streams_silently)
{
	uint32_t wid = SLOT_ID(4, 1), other = new_id();
	uint64_t w = open_file_as(SLOT_ID(4, 0), P("f"), "wc");
	uint64_t mine = open_file_as(other, P("g"), "wc");
	struct proto_msg m = {.type = PROTO_T_RELAY_CLIENT_DISCONNECTED};

	send_req(wid, (struct proto_fs_request){.kind = PROTO_FS_OP_WRITE, .handle = w,
		.offset = 0, .len = {true, 100}});
	send_data(wid, "abc", 3);
	m.u.relay_client_disconnected.id_start = SLOT_ID(4, 0);
	m.u.relay_client_disconnected.id_end_exclusive = SLOT_ID(5, 0) - 1;
	ah_send(&h, 0, &m);
	/* No frame for the aborted stream: the next one is this answer. */
	send_data(wid, "def", 3);
	{
		char want[64];

		snprintf(want, sizeof(want), "unknown write session: %u", wid);
		check_err(resp(wid), want);
	}
	/* Other clients keep their handles. */
	write_all(mine, 0, (const uint8_t *)"ok", 2, 2);
	close_handle(mine);
}
