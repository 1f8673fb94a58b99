/*
 * agent/fs.c - filesystem sessions (spec 3.3 and 4.5; design/wire.md "Files").
 *
 *   simple op:  fs.request{op} -> fs.response{ok, error, data} (terminal)
 *   Read:       fs.request{Read} -> fs.data ... -> fs.response
 *   Write:      fs.request{Write} -> host fs.data ... empty fs.data
 *               -> fs.response (after the last byte reached the file)
 *
 * Errors read "<op>: <OS error text> (os error N)" as the reference's Rust
 * io::Error prints them.  All work runs with the agent's own credentials
 * (F25: root inside a microVM).
 *
 * What runs synchronously on the loop thread: every simple op.  Stat-like
 * calls, open, rename, readlink and friends are short.  Three can be long,
 * a documented limit of this version: Copy of a large file (copy_file_range
 * in one go), a recursive RemoveDir of a huge tree, and List/ReadDir of a
 * directory on slow storage.  Read and Write streams never block: their
 * bytes move through io.c's sources and sinks on io_uring.
 *
 * Handles.  A u64 from one global counter starting at 1, owned by the relay
 * slot of the opening request's id (slot = (id - 1) / 33,554,431, the
 * reference's relay_client_slot; id 0 has no slot, so an id-0 request can
 * neither open nor use a handle).  At most 1024 per slot.  The opening id is
 * kept too: core.relay.client.disconnected closes the handles whose opening
 * id lies in the departed range (spec 5.5).
 *
 * Streams.  A Read or Write gets a session (kind AGENT_SESS_FS) holding a
 * dup() of the handle's fd, so CloseHandle during a stream is safe.  The dup
 * shares the file position with the handle, and io.c reads and writes at
 * the current position, so streams of one handle run one after the other
 * (the reference holds the handle's lock for a whole stream): a later one
 * waits in the handle's queue, its host data held in its sink.  The next
 * stream starts when the previous one's session is freed, i.e. when no read
 * or write of it can still move the position.
 *
 * Replies that would not fit one frame (wire.md F15): ReadDir returns as
 * many entries as fit and keeps the next name for the following ReadDir; a
 * List that does not fit fails with a text naming OpenDir/ReadDir paging.
 *
 * Write length (F17): a chunk that would take the stream past its declared
 * len is refused at once (ok:false, stream ended, nothing of it written).
 * A shorter stream fails at its end as in the reference.  The reference's
 * "flush" before the final ok is Rust's File::flush, a no-op for a file, so
 * the agent does not fdatasync either: ok means the bytes are in the page
 * cache, as with the reference (the PID-1 shutdown path syncs).
 *
 * Raw bulk (protocol-gen9.md G4, G5.2).  A Read or Write request in a
 * v >= 8 frame may carry a `bulk` offer; the agent accepts it at once
 * (core.bulk.accepted is the first answer) and the stream's bytes then move
 * as raw records only:
 *
 *   Read:  file reads (io.c source) --record prefix in the chunk's
 *          headroom--> host, each read bounded by the host's g2h credit;
 *          EOF or len -> core.bulk.finish {1, 2, total} -> fs.response ok
 *   Write: host records (flow 1, checked against the flow, G4.6) --> the
 *          stream's sink --> the file, sequentially from Write.offset (records
 *          are contiguous, so record.offset lands at Write.offset + offset);
 *          core.bulk.credit as bytes reach the file (FS_BULK_WINDOW kept
 *          ahead); host core.bulk.finish -> applied once every record before
 *          it is written -> len check -> fs.response
 *
 * A bad record or bulk control frame fails only its operation:
 * core.bulk.cancel (reason 5) and fs.response ok:false; an I/O error while
 * the flow is open sends the cancel with reason 2 first.  A host cancel ends
 * the operation with ok:false.  Host records are checked as soon as their
 * prefix is in (agent_fs_record_begin) and their payload is then read by
 * the console reader straight into the sink's chunks, as TCP bulk records
 * are; only what came in one read with the prefix, or a record the reader
 * cannot take that way, is copied from the console buffer.
 *
 * State: the handle table hangs off struct agent (a->fs), owned by the loop
 * thread like everything else in the agent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/internal.h"

#define FS_RELAY_ID_RANGE_STEP 33554431u /* AGENT_RELAY_ID_RANGE_STEP, spec 5.3 */
#define FS_RELAY_SLOTS 128u
#define FS_MAX_HANDLES_PER_SLOT 1024u    /* MAX_OPEN_HANDLES_PER_OWNER */
#define FS_READ_DIR_DEFAULT 128u         /* DEFAULT_READ_DIR_LIMIT */
#define FS_BULK_WINDOW PROTO_BULK_DEFAULT_WINDOW /* h2g credit ahead of the file */
/*
 * Largest core.fs.response payload: a frame's len is 5 (id, flags) + the
 * envelope (35 bytes around a payload of 64 KiB or more) + the payload.
 * 64 keeps a margin.
 */
#define FS_REPLY_MAX (PROTO_MAX_FRAME_LEN - 64u)

/* Error codes of our own, beyond errno's range (negated like errno values). */
enum {
	FS_ERR_NUL_BYTE = 100000, /* a path holds a NUL byte */
	FS_ERR_NOT_REGULAR,       /* Copy source is not a regular file */
};

struct fs_stream;

struct fs_handle {
	uint64_t num;
	uint32_t owner_id;          /* id of the OpenFile/OpenDir request */
	unsigned slot;              /* relay slot of owner_id */
	bool is_dir;
	bool readable, writable, append;
	bool open;                  /* in the table; false once closed */
	int fd;                     /* file handles; -1 once closed */
	DIR *dir;                   /* directory handles */
	char *path;                 /* as opened: FStat's path, listing prefix */
	char *pending;              /* ReadDir: a name read that did not fit its page */
	unsigned refs;              /* the table + every stream queued on or using it */
	struct fs_stream *busy;     /* the stream using the file position */
	struct fs_stream *wait_head, *wait_tail;
	struct fs_handle *next, *prev; /* every open handle */
};

struct fs_stream {
	struct agent_sess s;        /* first: io.c and loop.c see only this */
	bool is_write;
	bool eos;                   /* write: the host's empty chunk arrived */
	bool waiting;               /* in the handle's queue */
	int fd;                     /* dup of the handle's fd */
	uint64_t offset;
	struct proto_opt_u64 len;
	uint64_t received;          /* write: bytes accepted from the host */
	struct fs_handle *h;
	struct fs_stream *wait_next;
	struct agent_src src;       /* read streams */
	struct agent_sink sink;     /* write streams */
	/* Raw bulk (G5.2), when the request carried an offer: accepted at once. */
	bool bulk;                  /* core.bulk.accepted sent: data moves as raw records only */
	struct proto_bulk_tx g2h;   /* read: file -> records to the host */
	struct proto_bulk_rx h2g;   /* write: host records -> file */
};

/* Open addressing on the handle number, linear probing, backward-shift delete. */
struct fs_htab {
	struct fs_handle **v;
	size_t cap;                 /* power of two, 0 before the first insert */
	size_t n;
};

struct agent_fs_state {
	struct fs_htab tab;
	struct fs_handle *all;      /* every open handle, for range closes */
	uint64_t next_num;          /* next handle number to try; 0 = never used yet */
	unsigned per_slot[FS_RELAY_SLOTS];
};

/* The agent is one thread and one instance per process: one fs state. */
static struct agent_fs_state *fs_state_of(struct agent *a)
{
	return a->fs;
}

/* Allocate the fs state of <a>.  Returns 0 or -ENOMEM.  Loop thread. */
int agent_fs_init(struct agent *a)
{
	a->fs = calloc(1, sizeof(*a->fs));
	return a->fs ? 0 : -ENOMEM;
}

/* ---- handle table ---------------------------------------------------------- */

static size_t htab_home(const struct fs_htab *t, uint64_t num)
{
	return (size_t)((num * 0x9E3779B97F4A7C15ull) >> 32) & (t->cap - 1);
}

static struct fs_handle *htab_get(const struct fs_htab *t, uint64_t num)
{
	size_t i;

	if (t->cap == 0)
		return NULL;
	for (i = htab_home(t, num); t->v[i]; i = (i + 1) & (t->cap - 1))
		if (t->v[i]->num == num)
			return t->v[i];
	return NULL;
}

static void htab_insert_nocheck(struct fs_htab *t, struct fs_handle *h)
{
	size_t i = htab_home(t, h->num);

	while (t->v[i])
		i = (i + 1) & (t->cap - 1);
	t->v[i] = h;
	t->n++;
}

/* Insert <h> (its number must be absent).  Returns 0 or -ENOMEM. */
static int htab_put(struct fs_htab *t, struct fs_handle *h)
{
	if ((t->n + 1) * 2 > t->cap) {
		struct fs_htab bigger = {.cap = t->cap ? t->cap * 2 : 64};

		bigger.v = calloc(bigger.cap, sizeof(*bigger.v));
		if (!bigger.v)
			return -ENOMEM;
		for (size_t i = 0; i < t->cap; i++)
			if (t->v[i])
				htab_insert_nocheck(&bigger, t->v[i]);
		free(t->v);
		*t = bigger;
	}
	htab_insert_nocheck(t, h);
	return 0;
}

static void htab_del(struct fs_htab *t, uint64_t num)
{
	size_t mask = t->cap - 1, i, j;

	for (i = htab_home(t, num); t->v[i]->num != num; i = (i + 1) & mask)
		;
	t->v[i] = NULL;
	t->n--;
	/* Pull later members of the probe run back over the hole. */
	for (j = (i + 1) & mask; t->v[j]; j = (j + 1) & mask) {
		size_t home = htab_home(t, t->v[j]->num);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->v[i] = t->v[j];
			t->v[j] = NULL;
			i = j;
		}
	}
}

/* ---- replies ------------------------------------------------------------------ */

/*
 * Rust's io::Error text for <err> (positive): "<strerror> (os error N)", or
 * the fixed text of one of our own codes.
 */
static void fs_errtext(char *buf, size_t cap, int err)
{
	if (err == FS_ERR_NUL_BYTE)
		snprintf(buf, cap, "file name contained an unexpected NUL byte");
	else if (err == FS_ERR_NOT_REGULAR)
		snprintf(buf, cap, "the source path is neither a regular file nor a symlink to a "
			"regular file");
	else
		snprintf(buf, cap, "%s (os error %d)", strerror(err), err);
}

static void fs_send(struct agent *a, uint32_t id, bool ok, const char *error,
	const struct proto_fs_data *data)
{
	struct proto_msg m = {.type = PROTO_T_FS_RESPONSE};
	int rc;

	m.u.fs_response.ok = ok;
	if (error)
		m.u.fs_response.error = (struct proto_opt_str){true, {error, strlen(error)}};
	if (data)
		m.u.fs_response.data = *data;
	rc = agent_send(a, id, &m);
	if (rc < 0 && data) {
		/* Never leave the host waiting (F15): answer with what went wrong. */
		char text[160];

		agent_log(a, 1, "fs reply on id %u not sent: %s", id, proto_strerror(rc));
		snprintf(text, sizeof(text), "reply could not be sent: %s", proto_strerror(rc));
		fs_send(a, id, false, text, NULL);
	} else if (rc < 0) {
		agent_log(a, 0, "cannot queue core.fs.response for id %u: %s", id, strerror(-rc));
	}
}

static void fs_reply(struct agent *a, uint32_t id, const struct proto_fs_data *data)
{
	fs_send(a, id, true, NULL, data);
}

static void fs_fail(struct agent *a, uint32_t id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fs_fail(struct agent *a, uint32_t id, const char *fmt, ...)
{
	char text[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fs_send(a, id, false, text, NULL);
}

/* ok:false "<op>: <error text>" for the negative code <rc>. */
static void fs_fail_os(struct agent *a, uint32_t id, const char *op, int rc)
{
	char why[200];

	fs_errtext(why, sizeof(why), -rc);
	fs_fail(a, id, "%s: %s", op, why);
}

/* The answer of an op without data: ok, or "<op>: <error text>" for a negative <rc>. */
static void fs_done(struct agent *a, uint32_t id, const char *op, int rc)
{
	if (rc < 0)
		fs_fail_os(a, id, op, rc);
	else
		fs_reply(a, id, NULL);
}

/* ---- paths and entries -------------------------------------------------------- */

/* Copy wire string <s> into <dst> (PATH_MAX bytes).  Returns 0 or a negative code. */
static int fs_path(char *dst, struct proto_str s)
{
	if (memchr(s.ptr, '\0', s.len))
		return -FS_ERR_NUL_BYTE;
	if (s.len >= PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(dst, s.ptr, s.len);
	dst[s.len] = '\0';
	return 0;
}

/*
 * Copy <n> bytes of <s> to <out> (room for 3 * n), replacing each maximal
 * ill-formed UTF-8 subpart with U+FFFD as Rust's from_utf8_lossy does, so a
 * non-UTF-8 file name still makes valid CBOR text.  Returns bytes written.
 */
static size_t fs_utf8_lossy(char *out, const char *src, size_t n)
{
	const uint8_t *s = (const uint8_t *)src;
	size_t i = 0, o = 0;

	while (i < n) {
		uint8_t c = s[i], lo = 0x80, hi = 0xBF;
		size_t need, k;

		if (c < 0x80) {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			lo = c == 0xE0 ? 0xA0 : 0x80;
			hi = c == 0xED ? 0x9F : 0xBF;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			lo = c == 0xF0 ? 0x90 : 0x80;
			hi = c == 0xF4 ? 0x8F : 0xBF;
		} else {
			need = 0; /* never valid as a lead byte */
		}
		for (k = 1; need && k <= need && i + k < n; k++) {
			uint8_t b = s[i + k];

			if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
				break;
		}
		if (need && k > need) {
			memcpy(out + o, s + i, need + 1);
			o += need + 1;
			i += need + 1;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i += need ? k : 1;
		}
	}
	return o;
}

static void fs_entry_fill(struct proto_fs_entry *e, const struct stat *st)
{
	if (S_ISREG(st->st_mode))
		e->kind = PROTO_FS_KIND_FILE;
	else if (S_ISDIR(st->st_mode))
		e->kind = PROTO_FS_KIND_DIR;
	else if (S_ISLNK(st->st_mode))
		e->kind = PROTO_FS_KIND_SYMLINK;
	else
		e->kind = PROTO_FS_KIND_OTHER;
	e->size = (uint64_t)st->st_size;
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
	e->modified = (struct proto_opt_i64){true, st->st_mtim.tv_sec};
	e->atime = (struct proto_opt_i64){true, st->st_atim.tv_sec};
	e->mtime = (struct proto_opt_i64){true, st->st_mtim.tv_sec};
}

/*
 * A listing being built.  Paths are appended to one text buffer; their
 * pointers are set by fs_list_finish() once the buffer stops moving.
 */
struct fs_list {
	struct proto_fs_entry *ents;
	size_t n, cap;
	char *text;
	size_t text_len, text_cap;
	size_t bytes;               /* sum of the entries' encoded sizes */
};

static int fs_list_reserve(struct fs_list *l, size_t text_more)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct proto_fs_entry *e = realloc(l->ents, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		l->ents = e;
		l->cap = cap;
	}
	if (l->text_len + text_more > l->text_cap) {
		size_t cap = l->text_cap ? l->text_cap : 4096;
		char *t;

		while (cap < l->text_len + text_more)
			cap *= 2;
		t = realloc(l->text, cap);
		if (!t)
			return -ENOMEM;
		l->text = t;
		l->text_cap = cap;
	}
	return 0;
}

/*
 * Add entry <name> of the directory open as <dfd>, listed as <dir> joined
 * with <name> and lstat'ed (a failed lstat gives kind "other" and zeros).
 * Returns 0, 1 when the reply would no longer fit one frame (nothing
 * added), or -ENOMEM.
 */
static int fs_list_add(struct fs_list *l, int dfd, const char *dir, const char *name)
{
	struct proto_fs_entry e = {.kind = PROTO_FS_KIND_OTHER};
	size_t dlen = strlen(dir), nlen = strlen(name), plen = dlen, esz;
	struct stat st;
	char *p;
	int rc = fs_list_reserve(l, dlen + 1 + 3 * nlen);

	if (rc < 0)
		return rc;
	p = l->text + l->text_len;
	memcpy(p, dir, dlen);
	if (dlen > 0 && dir[dlen - 1] != '/')
		p[plen++] = '/';
	plen += fs_utf8_lossy(p + plen, name, nlen);
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		fs_entry_fill(&e, &st);
	e.path.len = plen;
	esz = proto_fs_entry_encoded_size(&e);
	if (proto_fs_list_response_size(l->n + 1, l->bytes + esz) > FS_REPLY_MAX)
		return 1;
	l->ents[l->n++] = e;
	l->bytes += esz;
	l->text_len += plen;
	return 0;
}

static void fs_list_finish(struct fs_list *l, struct proto_fs_data *d)
{
	const char *p = l->text;

	for (size_t i = 0; i < l->n; i++) {
		l->ents[i].path.ptr = p;
		p += l->ents[i].path.len;
	}
	d->kind = PROTO_FS_DATA_LIST;
	d->list.entries = l->ents;
	d->list.count = l->n;
}

static void fs_list_free(struct fs_list *l)
{
	free(l->ents);
	free(l->text);
}

static bool fs_is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static bool fs_is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- simple operations -------------------------------------------------------- */

/* Reply {"Path": <p>}, made valid UTF-8. */
static void fs_reply_path(struct agent *a, uint32_t id, const char *p)
{
	size_t n = strlen(p);
	char *text = malloc(3 * n + 1);
	struct proto_fs_data d = {.kind = PROTO_FS_DATA_PATH};

	if (!text) {
		fs_fail_os(a, id, "realpath", -ENOMEM);
		return;
	}
	d.path = (struct proto_str){text, fs_utf8_lossy(text, p, n)};
	fs_reply(a, id, &d);
	free(text);
}

/*
 * RealPath of a path whose leaf may not exist yet: canonicalise the parent
 * and append the last component.  <p> is modified.  Returns 0 with the
 * result in <out> (PATH_MAX), or a negative code; -ENOENT when there is no
 * leaf to split off ("/", "..", ".").
 */
static int fs_real_path_parent(char *p, char *out)
{
	size_t n = strlen(p), olen;
	const char *parent, *leaf;
	char *slash;

	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	slash = strrchr(p, '/');
	leaf = slash ? slash + 1 : p;
	if (!*leaf || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0)
		return -ENOENT;
	if (!slash) {
		parent = ".";
	} else if (slash == p) {
		parent = "/";
	} else {
		*slash = '\0';
		parent = p;
	}
	if (!realpath(parent, out))
		return -errno;
	olen = strlen(out);
	if (olen + 1 + strlen(leaf) >= PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(out + olen, PATH_MAX - olen, "%s%s", out[olen - 1] == '/' ? "" : "/", leaf);
	return 0;
}

static void fs_op_real_path(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX], out[PATH_MAX];
	int rc = fs_path(p, rq->path), first;

	if (rc < 0) {
		fs_fail_os(a, id, "realpath", rc);
		return;
	}
	if (realpath(p, out)) {
		fs_reply_path(a, id, out);
		return;
	}
	first = -errno;
	rc = fs_real_path_parent(p, out);
	if (rc == 0)
		fs_reply_path(a, id, out);
	else
		fs_fail_os(a, id, "realpath", rc == -ENOENT ? first : rc);
}

static void fs_op_stat(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct proto_fs_data d = {.kind = PROTO_FS_DATA_STAT};
	char p[PATH_MAX];
	struct stat st;
	int rc = fs_path(p, rq->path);

	if (rc == 0 && (rq->follow_symlink ? stat(p, &st) : lstat(p, &st)) < 0)
		rc = -errno;
	if (rc < 0) {
		fs_fail_os(a, id, "stat", rc);
		return;
	}
	fs_entry_fill(&d.stat, &st);
	d.stat.path = rq->path;
	fs_reply(a, id, &d);
}

/*
 * Apply <at> to <p> in the reference's order: size, mode, owner, times.
 * Times use UTIME_OMIT for the side not given (the reference re-reads it
 * and loses its nanoseconds).  Returns 0, a negative code, or 1 for the
 * refused chmod of a symlink.
 */
static int fs_set_attrs_path(const char *p, bool follow, const struct proto_fs_setattrs *at)
{
	if (at->size.set) {
		int fd = open(p, O_WRONLY | O_CLOEXEC), rc = 0;

		if (fd < 0)
			return -errno;
		if (at->size.v > INT64_MAX)
			rc = -EFBIG;
		else if (ftruncate(fd, (off_t)at->size.v) < 0)
			rc = -errno;
		close(fd);
		if (rc < 0)
			return rc;
	}
	if (at->mode.set) {
		struct stat st;

		if (!follow) {
			if (lstat(p, &st) < 0)
				return -errno;
			if (S_ISLNK(st.st_mode))
				return 1;
		}
		if (chmod(p, at->mode.v) < 0)
			return -errno;
	}
	if (at->uid.set || at->gid.set) {
		uid_t u = at->uid.set ? at->uid.v : (uid_t)-1;
		gid_t g = at->gid.set ? at->gid.v : (gid_t)-1;

		if ((follow ? chown(p, u, g) : lchown(p, u, g)) < 0)
			return -errno;
	}
	if (at->atime.set || at->mtime.set) {
		struct timespec ts[2] = {
			{at->atime.v, at->atime.set ? 0 : UTIME_OMIT},
			{at->mtime.v, at->mtime.set ? 0 : UTIME_OMIT},
		};

		if (utimensat(AT_FDCWD, p, ts, follow ? 0 : AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	return 0;
}

static void fs_op_set_stat(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX];
	int rc = fs_path(p, rq->path);

	if (rc == 0)
		rc = fs_set_attrs_path(p, rq->follow_symlink, &rq->attrs);
	if (rc == 1)
		fs_fail(a, id, "setstat: chmod on symlink without following is not supported");
	else if (rc < 0)
		fs_fail_os(a, id, "setstat", rc);
	else
		fs_reply(a, id, NULL);
}

/* List: the whole directory in one reply, or a clear error when it cannot fit (F15). */
static void fs_op_list(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct proto_fs_data d;
	struct fs_list l = {0};
	char p[PATH_MAX];
	struct dirent *de;
	DIR *dir = NULL;
	int rc = fs_path(p, rq->path), fd;

	if (rc < 0)
		goto fail;
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = -errno;
			break;
		}
		if (fs_is_dot(de->d_name))
			continue;
		rc = fs_list_add(&l, dirfd(dir), p, de->d_name);
		if (rc == 1) {
			fs_fail(a, id, "readdir: directory listing too large for one reply (more than "
				"%zu entries, 4 MiB); page it with OpenDir and ReadDir", l.n);
			goto out;
		}
		if (rc < 0)
			break;
	}
	if (rc < 0)
		goto fail;
	fs_list_finish(&l, &d);
	fs_reply(a, id, &d);
	goto out;
fail:
	fs_fail_os(a, id, "readdir", rc);
out:
	if (dir)
		closedir(dir);
	fs_list_free(&l);
}

static void fs_op_read_link(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX], out[PATH_MAX];
	ssize_t n;
	int rc = fs_path(p, rq->path);

	if (rc == 0) {
		n = readlink(p, out, sizeof(out));
		if (n < 0)
			rc = -errno;
		else if ((size_t)n == sizeof(out))
			rc = -ENAMETOOLONG;
		else
			out[n] = '\0';
	}
	if (rc < 0)
		fs_fail_os(a, id, "readlink", rc);
	else
		fs_reply_path(a, id, out);
}

/* An op on two paths done by one call <fn>(first, second): symlink, rename. */
static void fs_two_paths(struct agent *a, uint32_t id, const char *op, struct proto_str first,
	struct proto_str second, int (*fn)(const char *, const char *))
{
	char p1[PATH_MAX], p2[PATH_MAX];
	int rc = fs_path(p1, first);

	if (rc == 0)
		rc = fs_path(p2, second);
	if (rc == 0 && fn(p1, p2) < 0)
		rc = -errno;
	fs_done(a, id, op, rc);
}

static void fs_op_symlink(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	fs_two_paths(a, id, "symlink", rq->target, rq->link_path, symlink);
}

/*
 * mkdir -p of the first <len> bytes of <p> (p[len] is '\0'; <p> is
 * modified and restored), the way Rust's create_dir_all walks: try, on
 * ENOENT create the parent, try again; an existing directory is success.
 * Returns 0 or -errno.
 */
static int fs_mkdir_all(char *p, size_t len)
{
	size_t n = len;
	char save;
	int rc;

	if (len == 0)
		return 0;
	if (mkdir(p, 0777) == 0)
		return 0;
	if (errno != ENOENT)
		return fs_is_dir(p) ? 0 : -errno;
	while (n > 0 && p[n - 1] == '/')
		n--;
	while (n > 0 && p[n - 1] != '/')
		n--;
	while (n > 1 && p[n - 1] == '/')
		n--;
	save = p[n];
	p[n] = '\0';
	rc = fs_mkdir_all(p, n);
	p[n] = save;
	if (rc < 0)
		return rc;
	if (mkdir(p, 0777) == 0)
		return 0;
	return fs_is_dir(p) ? 0 : -errno;
}

static void fs_op_mkdir(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX];
	int rc = fs_path(p, rq->path);

	if (rc == 0)
		rc = fs_mkdir_all(p, strlen(p));
	if (rc < 0) {
		fs_fail_os(a, id, "mkdir", rc);
		return;
	}
	if (rq->mode.set && chmod(p, rq->mode.v) < 0) {
		fs_fail_os(a, id, "chmod", -errno);
		return;
	}
	fs_reply(a, id, NULL);
}

static void fs_op_remove(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX];
	int rc = fs_path(p, rq->path);

	if (rc == 0 && unlink(p) < 0)
		rc = -errno;
	fs_done(a, id, "remove", rc);
}

/*
 * Delete directory <name> under <dfd> and everything in it, never following
 * a symlink (each level is opened O_NOFOLLOW relative to its parent).  One
 * fd per level: a tree deeper than the fd limit fails with EMFILE.
 * Returns 0 or -errno.
 */
static int fs_remove_tree(int dfd, const char *name)
{
	struct dirent *de;
	DIR *dir;
	int fd, rc = 0;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		return rc;
	}
	for (;;) {
		bool is_dir;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			rc = -errno;
			break;
		}
		if (fs_is_dot(de->d_name))
			continue;
		is_dir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;

			is_dir = fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				S_ISDIR(st.st_mode);
		}
		if (is_dir)
			rc = fs_remove_tree(fd, de->d_name);
		else
			rc = unlinkat(fd, de->d_name, 0) < 0 ? -errno : 0;
		if (rc == -ENOENT)
			rc = 0; /* gone meanwhile: that is what we wanted */
		if (rc < 0)
			break;
	}
	closedir(dir);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		rc = -errno;
	return rc;
}

static void fs_op_remove_dir(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX];
	struct stat st;
	int rc = fs_path(p, rq->path);

	if (rc == 0 && !rq->recursive) {
		if (rmdir(p) < 0)
			rc = -errno;
	} else if (rc == 0) {
		/* Like Rust's remove_dir_all: a symlink itself is removed, never followed. */
		if (lstat(p, &st) < 0)
			rc = -errno;
		else if (S_ISLNK(st.st_mode))
			rc = unlink(p) < 0 ? -errno : 0;
		else
			rc = fs_remove_tree(AT_FDCWD, p);
	}
	fs_done(a, id, "remove_dir", rc);
}

/* Copy every byte of <in> to <out>: copy_file_range, else sendfile.  Returns 0 or -errno. */
static int fs_copy_bytes(int in, int out)
{
	bool cfr = true;

	for (;;) {
		ssize_t n;

		if (cfr) {
			n = copy_file_range(in, NULL, out, NULL, 1u << 30, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				errno == EOPNOTSUPP)) {
				cfr = false;
				continue;
			}
		} else {
			n = sendfile(out, in, NULL, 1u << 30);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
	}
}

/* Copy: one regular file's bytes and permission bits (like Rust's fs::copy). */
static void fs_op_copy(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int in = -1, out = -1, rc;
	struct stat st;

	rc = fs_path(src, rq->src);
	if (rc == 0)
		rc = fs_path(dst, rq->dst);
	if (rc < 0)
		goto done;
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0 || fstat(in, &st) < 0) {
		rc = -errno;
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -FS_ERR_NOT_REGULAR;
		goto done;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777);
	if (out < 0 || fchmod(out, st.st_mode & 07777) < 0) {
		rc = -errno;
		goto done;
	}
	rc = fs_copy_bytes(in, out);
done:
	if (out >= 0 && close(out) < 0 && rc == 0)
		rc = -errno;
	if (in >= 0)
		close(in);
	fs_done(a, id, "copy", rc);
}

static void fs_op_rename(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	fs_two_paths(a, id, "rename", rq->src, rq->dst, rename);
}

/* ---- handles ------------------------------------------------------------------ */

static int fs_slot_of(uint32_t id)
{
	return id == 0 ? -1 : (int)((id - 1) / FS_RELAY_ID_RANGE_STEP);
}

/*
 * May <id> open one more handle?  Sends the refusal itself.
 * Returns the slot, or -1 after replying.
 */
static int fs_handle_admit(struct agent *a, uint32_t id, const char *op)
{
	struct agent_fs_state *fs = fs_state_of(a);
	int slot = fs_slot_of(id);

	if (slot < 0) {
		fs_fail(a, id, "%s: request id 0 belongs to no relay client, and filesystem handles "
			"are owned by relay clients", op);
		return -1;
	}
	if (fs->per_slot[slot] >= FS_MAX_HANDLES_PER_SLOT) {
		fs_fail(a, id, "too many open filesystem handles for relay client: %d", slot);
		return -1;
	}
	return slot;
}

/* Number and register <h> (fd/dir set).  Returns 0 or -ENOMEM. */
static int fs_handle_add(struct agent *a, struct fs_handle *h)
{
	struct agent_fs_state *fs = fs_state_of(a);
	int rc;

	do {
		h->num = fs->next_num ? fs->next_num : 1;
		fs->next_num = h->num + 1; /* wraps to 0, read as 1 */
	} while (htab_get(&fs->tab, h->num));
	rc = htab_put(&fs->tab, h);
	if (rc < 0)
		return rc;
	h->open = true;
	h->refs = 1;
	h->next = fs->all;
	h->prev = NULL;
	if (fs->all)
		fs->all->prev = h;
	fs->all = h;
	fs->per_slot[h->slot]++;
	return 0;
}

static void fs_handle_unref(struct fs_handle *h)
{
	if (--h->refs > 0)
		return;
	free(h->path);
	free(h->pending);
	free(h);
}

/* Take <h> out of the table and close its descriptor.  Returns 0 or -errno of the close. */
static int fs_handle_close(struct agent *a, struct fs_handle *h)
{
	struct agent_fs_state *fs = fs_state_of(a);
	int rc = 0;

	htab_del(&fs->tab, h->num);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->all = h->next;
	if (h->next)
		h->next->prev = h->prev;
	fs->per_slot[h->slot]--;
	h->open = false;
	if (h->dir) {
		rc = closedir(h->dir) < 0 ? -errno : 0;
		h->dir = NULL;
	} else {
		rc = close(h->fd) < 0 ? -errno : 0;
	}
	h->fd = -1;
	fs_handle_unref(h);
	return rc;
}

/*
 * The handle <num> for a request on <id>, checked for ownership.  Replies
 * with the reference's text and returns NULL when it cannot be used.
 */
static struct fs_handle *fs_handle_find(struct agent *a, uint32_t id, uint64_t num)
{
	struct fs_handle *h = htab_get(&fs_state_of(a)->tab, num);

	if (!h) {
		fs_fail(a, id, "invalid handle: %llu", (unsigned long long)num);
		return NULL;
	}
	if (fs_slot_of(id) != (int)h->slot) {
		fs_fail(a, id, "handle %llu is owned by a different relay client",
			(unsigned long long)num);
		return NULL;
	}
	return h;
}

/* fs_handle_find() that also wants a file (<want_file>) or a directory handle. */
static struct fs_handle *fs_handle_find_kind(struct agent *a, uint32_t id, uint64_t num,
	bool want_file)
{
	struct fs_handle *h = fs_handle_find(a, id, num);

	if (h && h->is_dir == want_file) {
		fs_fail(a, id, "handle %llu is a %s", (unsigned long long)num,
			h->is_dir ? "directory" : "file");
		return NULL;
	}
	return h;
}

/*
 * open(2) flags for <o>, the mapping of Rust's OpenOptions (access mode,
 * then creation mode).  Returns the flags or -EINVAL.
 */
static int fs_open_flags(const struct proto_fs_open_options *o)
{
	int flags;

	if (o->append)
		flags = (o->read ? O_RDWR : O_WRONLY) | O_APPEND;
	else if (o->read && o->write)
		flags = O_RDWR;
	else if (o->write)
		flags = O_WRONLY;
	else if (o->read)
		flags = O_RDONLY;
	else
		return -EINVAL;
	if (!o->write && !o->append) {
		if (o->truncate || o->create || o->create_new)
			return -EINVAL;
	} else if (o->append && o->truncate && !o->create_new) {
		return -EINVAL;
	}
	if (o->create_new)
		flags |= O_CREAT | O_EXCL;
	else
		flags |= (o->create ? O_CREAT : 0) | (o->truncate ? O_TRUNC : 0);
	return flags | O_CLOEXEC;
}

static void fs_reply_handle(struct agent *a, uint32_t id, uint64_t num)
{
	struct proto_fs_data d = {.kind = PROTO_FS_DATA_HANDLE};

	d.handle = num;
	fs_reply(a, id, &d);
}

/* Register a new handle for <fd> or <dir> and answer; cleans up on failure. */
static void fs_open_finish(struct agent *a, uint32_t id, int slot, const char *op,
	const char *path, int fd, DIR *dir, const struct proto_fs_open_options *o)
{
	struct fs_handle *h = calloc(1, sizeof(*h));
	int rc = -ENOMEM;

	if (h) {
		h->owner_id = id;
		h->slot = (unsigned)slot;
		h->is_dir = dir != NULL;
		h->fd = fd;
		h->dir = dir;
		if (o) {
			h->readable = o->read;
			h->writable = o->write || o->append;
			h->append = o->append;
		}
		h->path = strdup(path);
		if (h->path)
			rc = fs_handle_add(a, h);
	}
	if (rc < 0) {
		if (dir)
			closedir(dir);
		else
			close(fd);
		if (h)
			free(h->path);
		free(h);
		fs_fail_os(a, id, op, rc);
		return;
	}
	fs_reply_handle(a, id, h->num);
}

static void fs_op_open_file(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	const struct proto_fs_open_options *o = &rq->options;
	char p[PATH_MAX];
	int slot = fs_handle_admit(a, id, "open"), flags, fd = -1, rc;

	if (slot < 0)
		return;
	rc = fs_path(p, rq->path);
	flags = fs_open_flags(o);
	if (rc == 0 && flags < 0)
		rc = flags;
	if (rc == 0) {
		fd = open(p, flags, o->mode.set ? o->mode.v : 0666);
		if (fd < 0)
			rc = -errno;
	}
	if (rc < 0) {
		fs_fail_os(a, id, "open", rc);
		return;
	}
	fs_open_finish(a, id, slot, "open", p, fd, NULL, o);
}

static void fs_op_open_dir(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	char p[PATH_MAX];
	DIR *dir = NULL;
	int slot = fs_handle_admit(a, id, "opendir"), fd = -1, rc;

	if (slot < 0)
		return;
	rc = fs_path(p, rq->path);
	if (rc == 0) {
		fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			rc = -errno;
	}
	if (rc == 0) {
		dir = fdopendir(fd);
		if (!dir) {
			rc = -errno;
			close(fd);
		}
	}
	if (rc < 0) {
		fs_fail_os(a, id, "opendir", rc);
		return;
	}
	fs_open_finish(a, id, slot, "opendir", p, dirfd(dir), dir, NULL);
}

static void fs_op_close_handle(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find(a, id, rq->handle);
	int rc;

	if (!h)
		return;
	rc = fs_handle_close(a, h);
	fs_done(a, id, "close", rc);
}

/* ReadDir: up to <limit> further entries, fewer when the page fills a frame (F15). */
static void fs_op_read_dir(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find_kind(a, id, rq->handle, false);
	uint32_t limit = rq->limit.set ? rq->limit.v : FS_READ_DIR_DEFAULT;
	struct proto_fs_data d;
	struct fs_list l = {0};
	int rc = 0;

	if (!h)
		return;
	if (limit == 0)
		limit = 1;
	while (l.n < limit) {
		const char *name = h->pending;
		struct dirent *de;

		if (!name) {
			errno = 0;
			de = readdir(h->dir);
			if (!de) {
				rc = -errno;
				break;
			}
			name = de->d_name;
			if (fs_is_dot(name))
				continue;
		}
		rc = fs_list_add(&l, h->fd, h->path, name);
		if (rc == 1 && !h->pending) {
			/* Page full: keep the name for the next ReadDir. */
			h->pending = strdup(name);
			rc = h->pending ? 0 : -ENOMEM;
		} else if (rc == 0 && h->pending) {
			free(h->pending);
			h->pending = NULL;
			continue;
		}
		if (rc != 0 || h->pending)
			break;
	}
	if (rc < 0) {
		fs_fail_os(a, id, "readdir", rc);
	} else {
		fs_list_finish(&l, &d);
		fs_reply(a, id, &d);
	}
	fs_list_free(&l);
}

static void fs_op_fstat(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find(a, id, rq->handle);
	struct proto_fs_data d = {.kind = PROTO_FS_DATA_STAT};
	struct stat st;

	if (!h)
		return;
	/* A directory handle is stat'ed through its fd too: the same object the handle reads. */
	if (fstat(h->fd, &st) < 0) {
		fs_fail_os(a, id, "fstat", -errno);
		return;
	}
	fs_entry_fill(&d.stat, &st);
	d.stat.path = (struct proto_str){h->path, strlen(h->path)};
	fs_reply(a, id, &d);
}

static void fs_op_fsetstat(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find_kind(a, id, rq->handle, true);
	const struct proto_fs_setattrs *at = &rq->attrs;
	int rc = 0;

	if (!h)
		return;
	if (at->size.set && at->size.v > INT64_MAX)
		rc = -EFBIG;
	else if (at->size.set && ftruncate(h->fd, (off_t)at->size.v) < 0)
		rc = -errno;
	if (rc == 0 && at->mode.set && fchmod(h->fd, at->mode.v) < 0)
		rc = -errno;
	if (rc == 0 && (at->uid.set || at->gid.set) &&
		fchown(h->fd, at->uid.set ? at->uid.v : (uid_t)-1,
			at->gid.set ? at->gid.v : (gid_t)-1) < 0)
		rc = -errno;
	if (rc == 0 && (at->atime.set || at->mtime.set)) {
		struct timespec ts[2] = {
			{at->atime.v, at->atime.set ? 0 : UTIME_OMIT},
			{at->mtime.v, at->mtime.set ? 0 : UTIME_OMIT},
		};

		if (futimens(h->fd, ts) < 0)
			rc = -errno;
	}
	fs_done(a, id, "fsetstat", rc);
}

/* ---- streams ------------------------------------------------------------------ */

/* End <st>: optional terminal reply (<reply>: ok when <error> is NULL), forget its id. */
static void fs_stream_finish(struct agent *a, struct fs_stream *st, bool reply, const char *error)
{
	if (st->s.done)
		return;
	if (reply)
		fs_send(a, st->s.id, error == NULL, error, NULL);
	st->s.done = true;
	sessmap_del(&a->ids, st->s.id);
	if (st->is_write)
		agent_sink_drop(a, &st->sink);
	a->act.active_fs_streams--;
	agent_sess_put(a, &st->s); /* the live reference */
}

/* The stream's bulk flow is accepted and not finished yet. */
static bool fs_bulk_open(const struct fs_stream *st)
{
	return st->bulk && !(st->is_write ? st->h2g.finished : st->g2h.finished);
}

/* End <st> with ok:false <error>, preceded by core.bulk.cancel <reason> while its flow is open. */
static void fs_bulk_fail(struct agent *a, struct fs_stream *st,
	enum proto_bulk_cancel_reason reason, const char *error)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL};

	if (st->s.done)
		return;
	if (fs_bulk_open(st)) {
		m.u.bulk_cancel.kind = PROTO_BULK_KIND_FS;
		m.u.bulk_cancel.reason = reason;
		m.u.bulk_cancel.message = (struct proto_str){error, strlen(error)};
		agent_send(a, st->s.id, &m);
	}
	fs_stream_finish(a, st, true, error);
}

static void fs_stream_fail_os(struct agent *a, struct fs_stream *st, const char *op, int rc)
{
	char why[200], text[240];

	fs_errtext(why, sizeof(why), -rc);
	snprintf(text, sizeof(text), "%s: %s", op, why);
	fs_bulk_fail(a, st, PROTO_BULK_CANCEL_DESTINATION_IO, text);
}

/*
 * Accept the offer of stream <st> (G4.2, what agentd chooses for fs): the
 * offer's record limit; a read sends within the host's g2h credit, a write
 * gets FS_BULK_WINDOW of h2g credit kept ahead of what reached the file.
 */
static void fs_bulk_accept(struct agent *a, struct fs_stream *st, const struct proto_bulk_offer *o)
{
	struct proto_msg m = {.type = PROTO_T_BULK_ACCEPTED};
	struct proto_bulk_accepted *acc = &m.u.bulk_accepted;

	acc->kind = PROTO_BULK_KIND_FS;
	acc->format = PROTO_BULK_FORMAT_RAW_V1;
	acc->max_record_payload = o->max_record_payload;
	/* The offer was checked by agent_fs_request(): neither init can fail. */
	if (st->is_write) {
		proto_bulk_rx_init(&st->h2g, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			o->max_record_payload, FS_BULK_WINDOW, FS_BULK_WINDOW);
		acc->flows = PROTO_BULK_FLOWS_FS_WRITE;
		acc->host_to_guest_credit_limit = FS_BULK_WINDOW;
		st->sink.credit_bounded = true;
	} else {
		proto_bulk_tx_init(&st->g2h, PROTO_BULK_KIND_FS, PROTO_BULK_G2H,
			o->max_record_payload, o->guest_to_host_credit_limit);
		acc->flows = PROTO_BULK_FLOWS_FS_READ;
		acc->guest_to_host_credit_limit = o->guest_to_host_credit_limit;
		st->src.bulk = &st->g2h;
	}
	agent_send(a, st->s.id, &m);
	st->bulk = true;
}

/*
 * Give <st> the handle's file position: seek to its offset (not for an
 * append handle's writes) and let its bytes flow.  May end and free <st>.
 */
static void fs_stream_start(struct agent *a, struct fs_stream *st)
{
	st->h->busy = st;
	if (!(st->is_write && st->h->append)) {
		if (st->offset > INT64_MAX) {
			fs_stream_fail_os(a, st, "seek", -EINVAL);
			return;
		}
		if (lseek(st->fd, (off_t)st->offset, SEEK_SET) < 0) {
			fs_stream_fail_os(a, st, "seek", -errno);
			return;
		}
	}
	if (st->is_write) {
		st->sink.hold = false;
		agent_sink_kick(a, &st->sink);
	} else {
		agent_src_arm(a, &st->src);
	}
}

/*
 * Start the Read or Write stream of <rq> on handle <h>, over raw bulk when
 * the request carries an offer (checked by agent_fs_request()).
 */
static void fs_stream_open(struct agent *a, uint32_t id, const struct proto_fs_request *rq,
	struct fs_handle *h, bool is_write)
{
	const char *op = is_write ? "write" : "read";
	struct fs_stream *st = calloc(1, sizeof(*st));
	int fd = -1;

	if (st)
		fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
	if (!st || fd < 0 || sessmap_put(&a->ids, id, st) < 0) {
		int rc = !st ? -ENOMEM : fd < 0 ? -errno : -ENOMEM;

		if (fd >= 0)
			close(fd);
		free(st);
		fs_fail_os(a, id, op, rc);
		return;
	}
	st->s.kind = AGENT_SESS_FS;
	st->s.id = id;
	agent_sess_add(a, &st->s);
	st->is_write = is_write;
	st->fd = fd;
	st->offset = rq->offset;
	st->len = rq->len;
	st->h = h;
	h->refs++;
	agent_src_init(&st->src, &st->s, is_write ? -1 : fd, PROTO_T_FS_DATA, false);
	agent_sink_init(&st->sink, &st->s, is_write ? fd : -1, false);
	if (!is_write && st->len.set)
		st->src.limit = st->len.v;
	a->act.active_fs_streams++;
	if (rq->bulk.set)
		fs_bulk_accept(a, st, &rq->bulk.v);
	if (h->busy) {
		/* Another stream owns the position: wait (host data is held meanwhile). */
		st->sink.hold = true;
		st->waiting = true;
		if (h->wait_tail)
			h->wait_tail->wait_next = st;
		else
			h->wait_head = st;
		h->wait_tail = st;
		return;
	}
	fs_stream_start(a, st);
}

static void fs_op_read(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find_kind(a, id, rq->handle, true);

	if (!h)
		return;
	if (!h->readable) {
		fs_fail(a, id, "handle %llu is not open for reading", (unsigned long long)rq->handle);
		return;
	}
	if (rq->len.set && rq->len.v == 0) {
		fs_reply(a, id, NULL); /* nothing to read: no stream */
		return;
	}
	fs_stream_open(a, id, rq, h, false);
}

static void fs_op_write(struct agent *a, uint32_t id, const struct proto_fs_request *rq)
{
	struct fs_handle *h = fs_handle_find_kind(a, id, rq->handle, true);

	if (!h)
		return;
	if (!h->writable) {
		fs_fail(a, id, "handle %llu is not open for writing", (unsigned long long)rq->handle);
		return;
	}
	fs_stream_open(a, id, rq, h, true);
}

/* ---- entry points ------------------------------------------------------------- */

/*
 * Refuse the `bulk` offer of <rq> (in a frame of generation <v>) when it
 * cannot be accepted (G2.2, G4.6, G5): the ok:false answer is sent and
 * true returned.  A request without an offer passes.
 */
static bool fs_bulk_refused(
	struct agent *a, uint32_t id, uint8_t v, const struct proto_fs_request *rq)
{
	const struct proto_bulk_offer *o = &rq->bulk.v;
	int rc;

	if (!rq->bulk.set)
		return false;
	/* The gate is the request frame's own generation (F34). */
	if (v < PROTO_GEN_BULK) {
		fs_fail(a, id, "raw bulk offer requires protocol generation 8");
		return true;
	}
	if (rq->kind != PROTO_FS_OP_READ && rq->kind != PROTO_FS_OP_WRITE) {
		fs_fail(a, id, "raw bulk is only valid for streaming reads and writes");
		return true;
	}
	rc = proto_bulk_offer_check(o);
	if (rc < 0) {
		fs_fail(a, id, "invalid filesystem bulk offer: %s", proto_strerror(rc));
		return true;
	}
	if (rq->kind == PROTO_FS_OP_READ && o->guest_to_host_credit_limit == 0) {
		fs_fail(a, id, "filesystem read bulk offer must grant guest-to-host credit");
		return true;
	}
	if (rq->kind == PROTO_FS_OP_WRITE && o->guest_to_host_credit_limit != 0) {
		fs_fail(a, id, "filesystem write bulk offer must not grant guest-to-host credit");
		return true;
	}
	return false;
}

/*
 * core.fs.request <rq> on <id>, in a frame of generation <v> (the loop
 * checked that <id> has no live session and that the agent is not shutting
 * down).  Simple ops are answered before returning; Read and Write start a
 * stream session, over raw bulk when they carry an acceptable offer.
 * Loop thread.
 */
void agent_fs_request(struct agent *a, uint32_t id, uint8_t v, const struct proto_fs_request *rq)
{
	static void (*const ops[PROTO_FS_OP_COUNT])(struct agent *, uint32_t,
		const struct proto_fs_request *) = {
		[PROTO_FS_OP_REAL_PATH] = fs_op_real_path,
		[PROTO_FS_OP_STAT] = fs_op_stat,
		[PROTO_FS_OP_SET_STAT] = fs_op_set_stat,
		[PROTO_FS_OP_LIST] = fs_op_list,
		[PROTO_FS_OP_READ_LINK] = fs_op_read_link,
		[PROTO_FS_OP_SYMLINK] = fs_op_symlink,
		[PROTO_FS_OP_MKDIR] = fs_op_mkdir,
		[PROTO_FS_OP_REMOVE] = fs_op_remove,
		[PROTO_FS_OP_REMOVE_DIR] = fs_op_remove_dir,
		[PROTO_FS_OP_COPY] = fs_op_copy,
		[PROTO_FS_OP_RENAME] = fs_op_rename,
		[PROTO_FS_OP_OPEN_FILE] = fs_op_open_file,
		[PROTO_FS_OP_OPEN_DIR] = fs_op_open_dir,
		[PROTO_FS_OP_CLOSE_HANDLE] = fs_op_close_handle,
		[PROTO_FS_OP_READ] = fs_op_read,
		[PROTO_FS_OP_WRITE] = fs_op_write,
		[PROTO_FS_OP_READ_DIR] = fs_op_read_dir,
		[PROTO_FS_OP_FSTAT] = fs_op_fstat,
		[PROTO_FS_OP_FSETSTAT] = fs_op_fsetstat,
	};

	if ((unsigned)rq->kind >= PROTO_FS_OP_COUNT) {
		fs_fail(a, id, "unsupported filesystem operation %d", (int)rq->kind);
		return;
	}
	if (fs_bulk_refused(a, id, v, rq))
		return;
	ops[rq->kind](a, id, rq);
}

/* The live stream session of <id>, or NULL. */
static struct fs_stream *fs_stream_of(struct agent *a, uint32_t id)
{
	struct agent_sess *s = sessmap_get(&a->ids, id);

	return s && s->kind == AGENT_SESS_FS ? (struct fs_stream *)s : NULL;
}

/*
 * Host core.fs.data <p>/<n> on <id>: a chunk for the write stream of that
 * id, or its end when empty.  No such stream (or its end already seen):
 * ok:false "unknown write session: <id>" as the reference answers, counted.
 * A chunk that would pass the declared len ends the stream at once (F17).
 * Loop thread.
 */
void agent_fs_data(struct agent *a, uint32_t id, const uint8_t *p, size_t n)
{
	struct fs_stream *st = fs_stream_of(a, id);
	char text[200];

	if (!st || !st->is_write || st->eos) {
		a->st.dropped_unknown_id++;
		fs_fail(a, id, "unknown write session: %u", id);
		return;
	}
	if (st->bulk) {
		fs_stream_finish(
			a, st, true, "CBOR filesystem data is invalid after raw bulk acceptance");
		return;
	}
	if (n == 0) {
		st->eos = true;
		agent_sink_close(a, &st->sink); /* answered in agent_fs_sink_drained() */
		return;
	}
	if (st->len.set && n > st->len.v - st->received) {
		snprintf(text, sizeof(text), "write length mismatch: expected %llu, received at "
			"least %llu; the chunk past the declared length was not written",
			(unsigned long long)st->len.v, (unsigned long long)(st->received + n));
		fs_stream_finish(a, st, true, text);
		return;
	}
	if (agent_sink_push(a, &st->sink, p, n) < 0) {
		fs_stream_fail_os(a, st, "write", -ENOMEM);
		return;
	}
	st->received += n;
}

/*
 * A frame with flag 0x08 on the id of a live fs stream: a record of its
 * write flow goes to the file's sink; anything else fails that operation
 * (core.bulk.cancel reason 5, then ok:false).  Returns false, having done
 * nothing, when <f> is for no fs stream or is no record at all (a stray
 * 0x08 on a CBOR frame): the caller answers it.  Loop thread.
 */
bool agent_fs_record(struct agent *a, const struct proto_frame *f)
{
	struct fs_stream *st = fs_stream_of(a, f->id);
	struct proto_bulk_rec r;
	const uint8_t *payload;
	char msg[256];
	int rc;

	if (!st)
		return false;
	rc = proto_bulk_frame_parse(f, &r, &payload);
	if (rc == PROTO_E_BULK_FLAGS)
		return false;
	if (rc == 0 && !st->bulk)
		rc = PROTO_E_BULK_MISMATCH; /* no raw bulk flow on this operation */
	if (rc == 0)
		rc = proto_bulk_rx_record(&st->h2g, &r);
	if (rc < 0) {
		agent_bulk_record_error(msg, sizeof(msg), "filesystem", rc, &st->h2g, &r);
		fs_bulk_fail(a, st, PROTO_BULK_CANCEL_PROTOCOL, msg);
		return true;
	}
	if (st->len.set && r.len > st->len.v - st->received) {
		snprintf(msg, sizeof(msg), "write length mismatch: expected %llu, received at "
			"least %llu; the record past the declared length was not written",
			(unsigned long long)st->len.v, (unsigned long long)(st->received + r.len));
		fs_bulk_fail(a, st, PROTO_BULK_CANCEL_PROTOCOL, msg);
		return true;
	}
	rc = agent_sink_push(a, &st->sink, payload, r.len);
	if (rc < 0) {
		fs_stream_fail_os(a, st, "write", rc);
		return true;
	}
	st->received += r.len;
	return true;
}

/*
 * The prefix <r> of a raw record whose payload is still on the console:
 * when it is a valid record of a live write stream's flow within its
 * declared length (the checks of agent_fs_record) and the file's sink takes
 * data, it is counted as received and the sink is returned for the
 * payload.  NULL, nothing changed, otherwise: the whole frame goes to
 * agent_fs_record later.  Loop thread.
 */
struct agent_sink *agent_fs_record_begin(struct agent *a, const struct proto_bulk_rec *r)
{
	struct fs_stream *st = fs_stream_of(a, r->id);

	if (!st || !st->bulk || !st->is_write || st->sink.closed || st->sink.close_after)
		return NULL;
	if (st->len.set && r->len > st->len.v - st->received)
		return NULL;
	if (proto_bulk_rx_record(&st->h2g, r) < 0)
		return NULL;
	st->received += r->len;
	return &st->sink;
}

/*
 * core.bulk.credit / finish / cancel from the host on <id>.  Returns false
 * when <id> is no live fs stream (the caller tries TCP).  A host cancel
 * ends the operation with ok:false; credit moves a read's flow, finish ends
 * a write's flow once its records are written; anything else (a frame for
 * the other flow, a stream without raw bulk, a bad value) fails the
 * operation with core.bulk.cancel (reason 5) and ok:false.  Loop thread.
 */
bool agent_fs_bulk_control(struct agent *a, uint32_t id, const struct proto_msg *m)
{
	struct fs_stream *st = fs_stream_of(a, id);
	char msg[256];
	int rc = PROTO_E_BULK_MISMATCH;

	if (!st)
		return false;
	if (m->type == PROTO_T_BULK_CANCEL) {
		snprintf(msg, sizeof(msg), "cancelled by the host: %.*s",
			(int)m->u.bulk_cancel.message.len, m->u.bulk_cancel.message.ptr);
		fs_stream_finish(a, st, true, msg);
		return true;
	}
	if (st->bulk && m->type == PROTO_T_BULK_CREDIT && !st->is_write) {
		rc = proto_bulk_tx_credit(&st->g2h, &m->u.bulk_credit);
		if (rc == 1)
			agent_src_arm(a, &st->src); /* it may have been waiting for credit */
	} else if (st->bulk && m->type == PROTO_T_BULK_FINISH && st->is_write) {
		rc = proto_bulk_rx_finish(&st->h2g, &m->u.bulk_finish);
		if (rc == 0) {
			st->eos = true;
			agent_sink_close(a, &st->sink); /* answered in agent_fs_sink_drained() */
		}
	}
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "invalid filesystem %s: %s", proto_type_name(m->type),
			st->bulk ? proto_strerror(rc) : "no raw bulk flow on this operation");
		fs_bulk_fail(a, st, PROTO_BULK_CANCEL_PROTOCOL, msg);
	}
	return true;
}

/*
 * io.c: <n> bytes of write stream <s> reached the file: for a bulk write,
 * grant the host more credit as agentd does (G4.4).  Loop thread.
 */
void agent_fs_sink_wrote(struct agent *a, struct agent_sess *s, size_t n)
{
	struct fs_stream *st = (struct fs_stream *)s;
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT};

	(void)n; /* the sink counts every byte written */
	if (!st->bulk || st->s.done)
		return;
	if (proto_bulk_rx_consume(&st->h2g, st->sink.written, &m.u.bulk_credit) == 1)
		agent_send(a, st->s.id, &m);
}

/*
 * Relay client gone (spec 5.5): end, without a frame, every fs stream whose
 * id is in [<start>, <end>) and close every handle opened from that range.
 * Loop thread.
 */
void agent_fs_abort_range(struct agent *a, uint32_t start, uint32_t end)
{
	struct agent_fs_state *fs = fs_state_of(a);
	struct agent_sess *s, *snx;
	struct fs_handle *h, *hnx;

	for (s = a->sessions; s; s = snx) {
		snx = s->next_all;
		if (s->kind == AGENT_SESS_FS && !s->done && s->id >= start && s->id < end) {
			/* Freeing it may start the next stream of its handle: re-read the list head. */
			fs_stream_finish(a, (struct fs_stream *)s, false, NULL);
			snx = a->sessions;
		}
	}
	for (h = fs->all; h; h = hnx) {
		hnx = h->next;
		if (h->owner_id >= start && h->owner_id < end)
			fs_handle_close(a, h);
	}
}

/*
 * core.shutdown: end every fs stream without a frame and close every
 * handle; frees the handle table.  Loop thread.
 */
void agent_fs_close_all(struct agent *a)
{
	struct agent_fs_state *fs = fs_state_of(a);
	struct agent_sess *s, *nx;

	if (!fs)
		return;
	for (s = a->sessions; s; s = nx) {
		nx = s->next_all;
		if (s->kind == AGENT_SESS_FS && !s->done) {
			fs_stream_finish(a, (struct fs_stream *)s, false, NULL);
			nx = a->sessions;
		}
	}
	while (fs->all)
		fs_handle_close(a, fs->all);
	free(fs->tab.v);
	fs->tab = (struct fs_htab){0};
}

/*
 * io.c: the read stream <s> reached EOF or its len (<err> 0), or a read
 * failed (<err> = errno).  Sends the terminal response.  Loop thread.
 */
void agent_fs_src_eof(struct agent *a, struct agent_sess *s, int err)
{
	struct fs_stream *st = (struct fs_stream *)s;
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH};

	if (err) {
		fs_stream_fail_os(a, st, "read", -err);
		return;
	}
	if (st->bulk) {
		/* Every record is queued before it: the tx queue keeps order. */
		proto_bulk_tx_finish(&st->g2h, &m.u.bulk_finish);
		agent_send(a, st->s.id, &m);
	}
	fs_stream_finish(a, st, true, NULL);
}

/* io.c: a write of stream <s> failed with errno <err>: ok:false "write: ...".  Loop thread. */
void agent_fs_sink_error(struct agent *a, struct agent_sess *s, int err)
{
	fs_stream_fail_os(a, (struct fs_stream *)s, "write", -err);
}

/*
 * io.c: every byte of write stream <s> reached the file after the host's
 * end-of-stream chunk: ok, or the reference's length mismatch for a short
 * stream.  Loop thread.
 */
void agent_fs_sink_drained(struct agent *a, struct agent_sess *s)
{
	struct fs_stream *st = (struct fs_stream *)s;
	char text[160];

	if (st->len.set && st->received != st->len.v) {
		snprintf(text, sizeof(text), "write length mismatch: expected %llu, wrote %llu",
			(unsigned long long)st->len.v, (unsigned long long)st->received);
		fs_stream_finish(a, st, true, text);
		return;
	}
	fs_stream_finish(a, st, true, NULL);
}

/*
 * Last reference of stream <s> dropped: no read or write of it is in
 * flight, so the handle's position goes to the next waiting stream.
 * Loop thread.
 */
void agent_fs_free(struct agent *a, struct agent_sess *s)
{
	struct fs_stream *st = (struct fs_stream *)s, *next = NULL;
	struct fs_handle *h = st->h;

	/* Empty in normal operation; at teardown the ring is gone and buffers remain. */
	agent_src_release(a, &st->src);
	agent_sink_release(a, &st->sink);
	if (st->fd >= 0)
		close(st->fd);
	if (st->waiting) {
		struct fs_stream **pp = &h->wait_head, *prev = NULL;

		while (*pp != st) {
			prev = *pp;
			pp = &(*pp)->wait_next;
		}
		*pp = st->wait_next;
		if (h->wait_tail == st)
			h->wait_tail = prev;
	}
	if (h->busy == st) {
		h->busy = NULL;
		next = h->wait_head;
		if (next) {
			h->wait_head = next->wait_next;
			if (!h->wait_head)
				h->wait_tail = NULL;
			next->waiting = false;
		}
	}
	free(st);
	if (next && !a->tearing_down)
		fs_stream_start(a, next);
	fs_handle_unref(h);
}
