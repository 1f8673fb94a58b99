/*
 * engine/cli/rfs.c - filesystem requests on the attached connection
 * (spec 3.3 and 4.5), one at a time, for `sandwire cp`.
 *
 *   simple op:  fs.request{op} -> fs.response{ok, error, data}
 *   Read:       fs.request{Read} -> fs.data ... -> fs.response
 *   Write:      fs.request{Write} -> fs.data ... empty fs.data -> fs.response
 *
 * The agent answers errors with "<op>: <OS text> (os error N)"; the N
 * becomes the negative errno the functions return, so a caller can tell
 * "does not exist" from other failures.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define RFS_TIMEOUT_MS 120000		/* one simple request (a slow disk, a big directory) */
#define RFS_CHUNK (1024u * 1024u)	/* bytes per fs.data frame we send */
#define RFS_QUEUE_HIGH (4u * RFS_CHUNK) /* queued bytes before waiting for the socket */
#define RFS_READDIR_LIMIT 512u

/* The errno in "... (os error N)", or -EIO. */
static int rfs_errno(struct proto_str text)
{
	static const char tag[] = "(os error ";
	const char *p = text.ptr, *end = text.ptr + text.len;
	int n = 0;

	for (; p + sizeof(tag) - 1 < end; p++) {
		if (memcmp(p, tag, sizeof(tag) - 1))
			continue;
		for (p += sizeof(tag) - 1; p < end && *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (*p - '0');
		return n > 0 && n < 4096 ? -n : -EIO;
	}
	return -EIO;
}

/* Wait for the next frame of <id>: 1 (w->msg), or < 0 with <err> set. */
static int rfs_wait(struct wire *w, uint32_t id, int timeout_ms, char *err, size_t cap)
{
	int rc;

	for (;;) {
		rc = wire_recv(w, timeout_ms);
		if (rc == 0) {
			snprintf(err, cap, "no answer from the sandbox within %d s",
				timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		if (rc == -EPIPE) {
			snprintf(err, cap,
				"the daemon closed the connection (did the sandbox stop?)");
			return rc;
		}
		if (rc == -EPROTO || (rc < 0 && w->frame.id == id)) {
			snprintf(err, cap, "bad frame from the sandbox: %s", proto_strerror(rc));
			return -EPROTO;
		}
		if (rc < 0 || w->frame.id != id)
			continue;
		if (w->msg.type == PROTO_T_ERROR) {
			snprintf(err, cap, "%.*s", (int)w->msg.u.error.message.len,
				w->msg.u.error.message.ptr);
			return -EIO;
		}
		return 1;
	}
}

/* The response in w->msg: 0, or the agent's error in <err> (prefixed with <path>). */
static int rfs_response(struct wire *w, const char *path, char *err, size_t cap)
{
	const struct proto_fs_response *r = &w->msg.u.fs_response;

	if (w->msg.type != PROTO_T_FS_RESPONSE) {
		snprintf(err, cap, "%s: unexpected %s from the sandbox", path,
			proto_type_name(w->msg.type));
		return -EPROTO;
	}
	if (r->ok)
		return 0;
	snprintf(err, cap, "%s: %.*s", path, r->error.set ? (int)r->error.v.len : 13,
		r->error.set ? r->error.v.ptr : "unknown error");
	return r->error.set ? rfs_errno(r->error.v) : -EIO;
}

/* Send <rq> on a fresh id; wait for its response (in w->msg on 0). */
static int rfs_call(
	struct wire *w, const struct proto_fs_request *rq, const char *path, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST, .u.fs_request = *rq};
	uint32_t id = wire_new_id(w);
	int rc = wire_send(w, id, &m);

	if (rc < 0) {
		snprintf(err, cap, "%s: cannot encode the request: %s", path, proto_strerror(rc));
		return rc;
	}
	rc = rfs_wait(w, id, RFS_TIMEOUT_MS, err, cap);
	return rc < 0 ? rc : rfs_response(w, path, err, cap);
}

static struct proto_str pstr(const char *s)
{
	return (struct proto_str){s, strlen(s)};
}

/* Copy an entry of the decoded message into <e>. */
static int rfs_entry_take(const struct proto_fs_entry *in, struct rfs_entry *e)
{
	e->path = strndup(in->path.ptr, in->path.len);
	e->kind = in->kind;
	e->size = in->size;
	e->mode = in->mode;
	e->mtime = in->mtime.set ? in->mtime.v : INT64_MIN;
	return e->path ? 0 : -ENOMEM;
}

int rfs_stat(
	struct wire *w, const char *path, bool follow, struct rfs_entry *e, char *err, size_t cap)
{
	struct proto_fs_request rq = {
		.kind = PROTO_FS_OP_STAT, .path = pstr(path), .follow_symlink = follow};
	int rc = rfs_call(w, &rq, path, err, cap);

	if (rc < 0)
		return rc;
	if (w->msg.u.fs_response.data.kind != PROTO_FS_DATA_STAT) {
		snprintf(err, cap, "%s: the answer to Stat holds no stat", path);
		return -EPROTO;
	}
	return rfs_entry_take(&w->msg.u.fs_response.data.stat, e);
}

int rfs_mkdir(struct wire *w, const char *path, char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_MKDIR, .path = pstr(path)};

	return rfs_call(w, &rq, path, err, cap);
}

int rfs_setstat(
	struct wire *w, const char *path, uint32_t mode, int64_t mtime, char *err, size_t cap)
{
	struct proto_fs_request rq = {
		.kind = PROTO_FS_OP_SET_STAT, .path = pstr(path), .follow_symlink = true};

	rq.attrs.mode = (struct proto_opt_u32){true, mode & 07777};
	if (mtime != INT64_MIN)
		rq.attrs.mtime = (struct proto_opt_i64){true, mtime};
	return rfs_call(w, &rq, path, err, cap);
}

int rfs_symlink(struct wire *w, const char *target, const char *link_path, char *err, size_t cap)
{
	struct proto_fs_request rq = {
		.kind = PROTO_FS_OP_SYMLINK, .target = pstr(target), .link_path = pstr(link_path)};

	return rfs_call(w, &rq, link_path, err, cap);
}

int rfs_readlink(struct wire *w, const char *path, char *out, size_t outcap, char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_READ_LINK, .path = pstr(path)};
	const struct proto_fs_data *d = &w->msg.u.fs_response.data;
	int rc = rfs_call(w, &rq, path, err, cap);

	if (rc < 0)
		return rc;
	if (d->kind != PROTO_FS_DATA_PATH || d->path.len >= outcap) {
		snprintf(err, cap, "%s: the link's target is missing or too long", path);
		return -EPROTO;
	}
	memcpy(out, d->path.ptr, d->path.len);
	out[d->path.len] = '\0';
	return 0;
}

int rfs_remove(struct wire *w, const char *path, char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_REMOVE, .path = pstr(path)};

	return rfs_call(w, &rq, path, err, cap);
}

/* The Handle of the response in w->msg. */
static int rfs_handle(struct wire *w, const char *path, uint64_t *handle, char *err, size_t cap)
{
	if (w->msg.u.fs_response.data.kind != PROTO_FS_DATA_HANDLE) {
		snprintf(err, cap, "%s: the answer to an open holds no handle", path);
		return -EPROTO;
	}
	*handle = w->msg.u.fs_response.data.handle;
	return 0;
}

int rfs_open(struct wire *w, const char *path, bool write, uint32_t mode, uint64_t *handle,
	char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_OPEN_FILE, .path = pstr(path)};
	int rc;

	if (write) {
		rq.options.write = rq.options.create = rq.options.truncate = true;
		rq.options.mode = (struct proto_opt_u32){true, mode & 07777};
	} else {
		rq.options.read = true;
	}
	rc = rfs_call(w, &rq, path, err, cap);
	return rc < 0 ? rc : rfs_handle(w, path, handle, err, cap);
}

int rfs_opendir(struct wire *w, const char *path, uint64_t *handle, char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_OPEN_DIR, .path = pstr(path)};
	int rc = rfs_call(w, &rq, path, err, cap);

	return rc < 0 ? rc : rfs_handle(w, path, handle, err, cap);
}

int rfs_close(struct wire *w, uint64_t handle, char *err, size_t cap)
{
	struct proto_fs_request rq = {.kind = PROTO_FS_OP_CLOSE_HANDLE, .handle = handle};

	return rfs_call(w, &rq, "close", err, cap);
}

void rfs_entries_free(struct rfs_entry *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].path);
	free(v);
}

int rfs_readdir(
	struct wire *w, uint64_t handle, struct rfs_entry **v, size_t *n, char *err, size_t cap)
{
	struct proto_fs_request rq = {
		.kind = PROTO_FS_OP_READ_DIR, .handle = handle, .limit = {true, RFS_READDIR_LIMIT}};
	const struct proto_fs_data *d = &w->msg.u.fs_response.data;
	int rc = rfs_call(w, &rq, "readdir", err, cap);

	*v = NULL;
	*n = 0;
	if (rc < 0)
		return rc;
	if (d->kind != PROTO_FS_DATA_LIST) {
		snprintf(err, cap, "readdir: the answer holds no list");
		return -EPROTO;
	}
	if (!d->list.count)
		return 0;
	*v = calloc(d->list.count, sizeof(**v));
	if (!*v)
		goto oom;
	for (size_t i = 0; i < d->list.count; i++, (*n)++)
		if (rfs_entry_take(&d->list.entries[i], &(*v)[i]) < 0)
			goto oom;
	return 0;
oom:
	rfs_entries_free(*v, *n);
	*v = NULL;
	*n = 0;
	snprintf(err, cap, "readdir: out of memory");
	return -ENOMEM;
}

int rfs_read_to_fd(struct wire *w, uint64_t handle, int fd, uint64_t total, uint64_t *got,
	rfs_progress_fn fn, void *ctx, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST};
	uint32_t id = wire_new_id(w);
	int rc;

	m.u.fs_request = (struct proto_fs_request){.kind = PROTO_FS_OP_READ, .handle = handle};
	*got = 0;
	if ((rc = wire_send(w, id, &m)) < 0) {
		snprintf(err, cap, "read: cannot encode the request: %s", proto_strerror(rc));
		return rc;
	}
	for (;;) {
		rc = rfs_wait(w, id, RFS_TIMEOUT_MS, err, cap);
		if (rc < 0)
			return rc;
		if (w->msg.type != PROTO_T_FS_DATA)
			return rfs_response(w, "read", err, cap);
		rc = cli_write_all(fd, w->msg.u.data.ptr, w->msg.u.data.len);
		if (rc < 0) {
			snprintf(err, cap, "write: %s", strerror(-rc));
			return rc; /* the stream's remaining frames are left unread: the caller
				      quits */
		}
		*got += w->msg.u.data.len;
		if (fn)
			fn(ctx, *got, total);
	}
}

/* An early answer to a Write stream (an error): < 0, or 0 when none came. */
static int rfs_write_early(struct wire *w, uint32_t id, char *err, size_t cap)
{
	int rc;

	while ((rc = wire_next(w)) != 0) {
		if (rc == -EPROTO)
			break;
		if (rc < 0 || w->frame.id != id)
			continue;
		rc = rfs_response(w, "write", err, cap);
		return rc < 0 ? rc : -EPROTO;
	}
	if (w->eof) {
		snprintf(err, cap, "the daemon closed the connection (did the sandbox stop?)");
		return -EPIPE;
	}
	return 0;
}

int rfs_write_from_fd(struct wire *w, uint64_t handle, int fd, uint64_t size, rfs_progress_fn fn,
	void *ctx, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST};
	uint32_t id = wire_new_id(w);
	uint8_t *buf = malloc(RFS_CHUNK);
	uint64_t done = 0;
	ssize_t n;
	int rc;

	if (!buf) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	m.u.fs_request = (struct proto_fs_request){
		.kind = PROTO_FS_OP_WRITE, .handle = handle, .len = {true, size}};
	rc = wire_send(w, id, &m);
	if (rc < 0)
		snprintf(err, cap, "write: cannot encode the request: %s", proto_strerror(rc));
	while (rc == 0 && done < size) {
		n = read(fd, buf, size - done < RFS_CHUNK ? (size_t)(size - done) : RFS_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, cap, "read: %s",
				n ? strerror(errno)
				  : "the file shrank during "
				    "the copy");
			rc = n ? -errno : -EIO;
			break;
		}
		rc = wire_send_data(w, PROTO_T_FS_DATA, id, buf, (size_t)n);
		if (rc < 0) {
			snprintf(err, cap, "write: %s", proto_strerror(rc));
			break;
		}
		rc = wire_drain(w, RFS_QUEUE_HIGH);
		if (rc < 0) {
			snprintf(err, cap,
				"the daemon closed the connection (did the sandbox stop?)");
			break;
		}
		rc = rfs_write_early(w, id, err, cap);
		done += (size_t)n;
		if (rc == 0 && fn)
			fn(ctx, done, size);
	}
	free(buf);
	if (rc < 0)
		return rc; /* the caller closes the connection: the agent drops the stream */
	if ((rc = wire_send_data(w, PROTO_T_FS_DATA, id, NULL, 0)) < 0) {
		snprintf(err, cap, "out of memory");
		return rc;
	}
	rc = rfs_wait(w, id, RFS_TIMEOUT_MS, err, cap);
	return rc < 0 ? rc : rfs_response(w, "write", err, cap);
}
