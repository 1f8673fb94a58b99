/*
 * engine/cli/rfs.c - filesystem requests on the attached connection
 * (spec 3.3 and 4.5), one at a time, for `sandwire cp`.
 *
 *   simple op:  fs.request{op} -> fs.response{ok, error, data}
 *   Read:       fs.request{Read} -> fs.data ... -> fs.response
 *   Write:      fs.request{Write} -> fs.data ... empty fs.data -> fs.response
 *
 * Raw bulk (protocol-gen9.md G4, G5.2).  When the agent's core.ready said
 * generation 8 or later, Read and Write carry a `bulk` offer (in a v = 9
 * envelope) and, once the agent answers core.bulk.accepted, the bytes move
 * as raw records:
 *
 *   Read:   records (flow 2) --written to the local file--> core.bulk.credit
 *           as they are written (RFS_BULK_WINDOW kept ahead)
 *           -> core.bulk.finish {1, 2, total} -> fs.response
 *   Write:  local file --read into the output queue--> records (flow 1),
 *           never past the agent's credit, which is taken as it comes
 *           -> core.bulk.finish {1, 1, total} -> fs.response
 *
 * A read whose agent answers without core.bulk.accepted stays on fs.data
 * (G2.3); a Write waits for the acceptance, the only answer a generation-8
 * agent gives to a good Write before its end (G4.2).  A bad record or
 * control frame from the agent is answered with core.bulk.cancel (reason 5)
 * and ends the copy (-EPROTO: the caller drops the connection).
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
#define RFS_BULK_WINDOW PROTO_BULK_DEFAULT_WINDOW /* g2h credit kept ahead of the local file */
#define RFS_RECORD RFS_CHUNK /* record limit offered: bytes per record either way */

/* What rfs_wait() got: a CBOR message (w->msg) or a raw record (w->frame). */
enum { RFS_MSG = 1, RFS_REC = 2 };

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

/*
 * Wait for the next frame of <id>: RFS_MSG (w->msg), RFS_REC for a raw
 * record when <records> (w->frame), or < 0 with <err> set.
 */
static int rfs_wait(
	struct wire *w, uint32_t id, bool records, int timeout_ms, char *err, size_t cap)
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
		if (rc == PROTO_E_BULK_RECORD && w->frame.id == id && records)
			return RFS_REC;
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
		return RFS_MSG;
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
	rc = rfs_wait(w, id, false, RFS_TIMEOUT_MS, err, cap);
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

/* Queue core.bulk.<type> <m> on <id>; an encoding failure goes to <err>. */
static int rfs_bulk_send(struct wire *w, uint32_t id, struct proto_msg *m, char *err, size_t cap)
{
	int rc = wire_send(w, id, m);

	if (rc < 0)
		snprintf(err, cap, "cannot queue %s: %s", proto_type_name(m->type),
			proto_strerror(rc));
	return rc;
}

/*
 * A protocol fault of bulk stream <id>: cancel it (reason 5, best effort)
 * and fail with -EPROTO, "<op>: <what>: <proto error>" in <err>.
 */
static int rfs_bulk_fault(struct wire *w, uint32_t id, const char *op, const char *what, int rc,
	char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CANCEL};

	snprintf(err, cap, "%s: %s from the sandbox: %s", op, what, proto_strerror(rc));
	m.u.bulk_cancel = (struct proto_bulk_cancel){
		PROTO_BULK_KIND_FS, PROTO_BULK_CANCEL_PROTOCOL, {err, strlen(err)}};
	wire_send(w, id, &m);
	return -EPROTO;
}

/* The offer of a Read (<write> false) or Write on an agent of generation 8 or later. */
static struct proto_opt_bulk_offer rfs_offer(const struct wire *w, bool write)
{
	struct proto_opt_bulk_offer o = {0};

	if (w->agent_gen < PROTO_GEN_BULK)
		return o;
	o.set = true;
	o.v.format = PROTO_BULK_FORMAT_RAW_V1;
	o.v.max_record_payload = RFS_RECORD;
	o.v.guest_to_host_credit_limit = write ? 0 : RFS_BULK_WINDOW;
	return o;
}

/* A read stream being received: its bulk flow once accepted. */
struct rfs_rd {
	uint32_t id;
	struct proto_opt_bulk_offer offer;
	bool bulk; /* core.bulk.accepted seen */
	struct proto_bulk_rx rx;
};

/* Write <n> bytes of the stream to <fd>; <err> on failure. */
static int rfs_put(int fd, const uint8_t *p, size_t n, char *err, size_t cap)
{
	int rc = cli_write_all(fd, p, n);

	if (rc < 0)
		snprintf(err, cap, "write: %s", strerror(-rc));
	return rc;
}

/*
 * The raw record in w->frame for read <r>: checked against the flow,
 * written to <fd>, credited as written.  Returns its payload size or < 0.
 */
static long rfs_rd_record(struct wire *w, struct rfs_rd *r, int fd, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_BULK_CREDIT};
	struct proto_bulk_rec rec;
	const uint8_t *p;
	int rc = proto_bulk_frame_parse(&w->frame, &rec, &p);

	if (rc == 0 && !r->bulk)
		rc = PROTO_E_BULK_MISMATCH; /* no flow accepted */
	if (rc == 0)
		rc = proto_bulk_rx_record(&r->rx, &rec);
	if (rc < 0)
		return rfs_bulk_fault(w, r->id, "read", "bad raw bulk record", rc, err, cap);
	rc = rfs_put(fd, p, rec.len, err, cap);
	if (rc < 0) {
		m.type = PROTO_T_BULK_CANCEL;
		m.u.bulk_cancel = (struct proto_bulk_cancel){
			PROTO_BULK_KIND_FS, PROTO_BULK_CANCEL_DESTINATION_IO, {err, strlen(err)}};
		wire_send(w, r->id, &m);
		return rc;
	}
	if (proto_bulk_rx_consume(&r->rx, r->rx.next_expected, &m.u.bulk_credit) == 1 &&
		(rc = rfs_bulk_send(w, r->id, &m, err, cap)) < 0)
		return rc;
	return rec.len;
}

/*
 * A bulk control message of read <r> in w->msg: the acceptance (checked
 * against the offer, G4.2) opens the flow, the finish ends it, a cancel
 * is a notice ahead of the response.  Returns 0 or < 0.
 */
static int rfs_rd_control(struct wire *w, struct rfs_rd *r, char *err, size_t cap)
{
	const struct proto_bulk_accepted *acc = &w->msg.u.bulk_accepted;
	int rc = 0;

	switch (w->msg.type) {
	case PROTO_T_BULK_ACCEPTED:
		rc = !r->offer.set || r->bulk
			     ? PROTO_E_BULK_MISMATCH
			     : proto_bulk_accepted_check(acc, &r->offer.v, PROTO_BULK_KIND_FS,
				       PROTO_BULK_FLOWS_FS_READ);
		if (rc == 0)
			rc = proto_bulk_rx_init(&r->rx, PROTO_BULK_KIND_FS, PROTO_BULK_G2H,
				acc->max_record_payload, acc->guest_to_host_credit_limit,
				RFS_BULK_WINDOW);
		r->bulk = rc == 0;
		break;
	case PROTO_T_BULK_FINISH:
		rc = r->bulk ? proto_bulk_rx_finish(&r->rx, &w->msg.u.bulk_finish)
			     : PROTO_E_BULK_MISMATCH;
		break;
	default: /* core.bulk.cancel: the response follows */
		break;
	}
	return rc < 0 ? rfs_bulk_fault(w, r->id, "read", proto_type_name(w->msg.type), rc, err, cap)
		      : 0;
}

int rfs_read_to_fd(struct wire *w, uint64_t handle, int fd, uint64_t total, uint64_t *got,
	rfs_progress_fn fn, void *ctx, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST};
	struct rfs_rd r = {.id = wire_new_id(w), .offer = rfs_offer(w, false)};
	long n;
	int rc;

	m.u.fs_request = (struct proto_fs_request){
		.kind = PROTO_FS_OP_READ, .handle = handle, .bulk = r.offer};
	*got = 0;
	if ((rc = wire_send(w, r.id, &m)) < 0) {
		snprintf(err, cap, "read: cannot encode the request: %s", proto_strerror(rc));
		return rc;
	}
	for (;;) {
		rc = rfs_wait(w, r.id, r.bulk, RFS_TIMEOUT_MS, err, cap);
		if (rc < 0)
			return rc;
		if (rc == RFS_REC) {
			n = rfs_rd_record(w, &r, fd, err, cap);
		} else if (w->msg.type == PROTO_T_FS_DATA && !r.bulk) {
			n = rfs_put(fd, w->msg.u.data.ptr, w->msg.u.data.len, err, cap);
			n = n < 0 ? n : (long)w->msg.u.data.len;
		} else if (w->msg.type == PROTO_T_BULK_ACCEPTED ||
			   w->msg.type == PROTO_T_BULK_FINISH ||
			   w->msg.type == PROTO_T_BULK_CANCEL) {
			n = rfs_rd_control(w, &r, err, cap);
		} else {
			break;
		}
		if (n < 0)
			return (int)n; /* the rest of the stream is left unread: the caller quits */
		*got += (uint64_t)n;
		if (n > 0 && fn)
			fn(ctx, *got, total);
	}
	rc = rfs_response(w, "read", err, cap);
	if (rc == 0 && r.bulk && !r.rx.finished) {
		snprintf(err, cap, "read: the sandbox ended the stream without core.bulk.finish");
		return -EPROTO;
	}
	w->bulk_streams += r.bulk && rc == 0;
	return rc;
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

/* Read exactly <n> bytes of the local file into <p>. */
static int rfs_get(int fd, uint8_t *p, size_t n, char *err, size_t cap)
{
	while (n > 0) {
		ssize_t got = read(fd, p, n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(err, cap, "read: %s",
				got ? strerror(errno) : "the file shrank during the copy");
			return got ? -errno : -EIO;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

/*
 * A frame of bulk Write <id> in w->msg (<rc> from rfs_wait or wire_next):
 * credit moves <tx>; a cancel is a notice ahead of the response; anything
 * else ends the stream early.  Returns 0 or < 0.
 */
static int rfs_wr_frame(
	struct wire *w, uint32_t id, struct proto_bulk_tx *tx, char *err, size_t cap)
{
	int rc;

	if (w->msg.type == PROTO_T_BULK_CANCEL)
		return 0;
	if (w->msg.type == PROTO_T_BULK_CREDIT) {
		rc = proto_bulk_tx_credit(tx, &w->msg.u.bulk_credit);
		return rc < 0 ? rfs_bulk_fault(w, id, "write", "core.bulk.credit", rc, err, cap)
			      : 0;
	}
	rc = rfs_response(w, "write", err, cap);
	return rc < 0 ? rc : -EPROTO;
}

/*
 * Send <size> bytes of <fd> as records of bulk Write <id>, each read
 * straight into the output queue, within the agent's credit <tx>; then
 * core.bulk.finish.  Returns 0 or < 0.
 */
static int rfs_wr_records(struct wire *w, uint32_t id, struct proto_bulk_tx *tx, int fd,
	uint64_t size, rfs_progress_fn fn, void *ctx, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_BULK_FINISH};
	uint64_t done = 0;
	int rc = 0;

	while (rc == 0 && done < size) {
		struct proto_bulk_rec rec = {.id = id, .kind = tx->kind, .flow = tx->flow};
		uint32_t room = proto_bulk_tx_room(tx);
		uint8_t *p;

		if (room == 0) { /* wait for credit, sending what is queued meanwhile */
			rc = rfs_wait(w, id, false, RFS_TIMEOUT_MS, err, cap);
			if (rc > 0)
				rc = rfs_wr_frame(w, id, tx, err, cap);
			continue;
		}
		rec.len = size - done < room ? (uint32_t)(size - done) : room;
		p = wire_record_room(w, rec.len);
		if (!p) {
			snprintf(err, cap, "out of memory");
			return -ENOMEM;
		}
		if ((rc = rfs_get(fd, p, rec.len, err, cap)) < 0)
			return rc;
		proto_bulk_tx_admit(tx, rec.len, &rec.offset); /* within the room: cannot fail */
		if ((rc = wire_record_commit(w, &rec)) < 0) {
			snprintf(err, cap, "write: %s", proto_strerror(rc));
			return rc;
		}
		done += rec.len;
		if ((rc = wire_drain(w, RFS_QUEUE_HIGH)) < 0) {
			snprintf(err, cap,
				"the daemon closed the connection (did the sandbox stop?)");
			return rc;
		}
		/* Take what arrived meanwhile (credit, an early answer) without waiting. */
		while (rc == 0 && (rc = wire_next(w)) != 0) {
			if (rc == -EPROTO) {
				snprintf(err, cap, "bad frame from the sandbox: %s",
					proto_strerror(rc));
				return rc;
			}
			rc = rc < 0 || w->frame.id != id ? 0 : rfs_wr_frame(w, id, tx, err, cap);
		}
		if (rc == 0 && fn)
			fn(ctx, done, size);
	}
	if (rc < 0)
		return rc;
	proto_bulk_tx_finish(tx, &m.u.bulk_finish);
	return rfs_bulk_send(w, id, &m, err, cap);
}

/*
 * After a bulk Write's request: the agent's first answer must be
 * core.bulk.accepted (checked against <o>, G4.2), which starts <tx>.
 * Returns 0 or < 0 (the agent's refusal or a protocol fault).
 */
static int rfs_wr_accepted(struct wire *w, uint32_t id, const struct proto_bulk_offer *o,
	struct proto_bulk_tx *tx, char *err, size_t cap)
{
	const struct proto_bulk_accepted *acc = &w->msg.u.bulk_accepted;
	int rc = rfs_wait(w, id, false, RFS_TIMEOUT_MS, err, cap);

	if (rc < 0)
		return rc;
	if (w->msg.type != PROTO_T_BULK_ACCEPTED) {
		rc = rfs_response(w, "write", err, cap);
		return rc < 0 ? rc : -EPROTO;
	}
	rc = proto_bulk_accepted_check(acc, o, PROTO_BULK_KIND_FS, PROTO_BULK_FLOWS_FS_WRITE);
	if (rc == 0)
		rc = proto_bulk_tx_init(tx, PROTO_BULK_KIND_FS, PROTO_BULK_H2G,
			acc->max_record_payload, acc->host_to_guest_credit_limit);
	return rc < 0 ? rfs_bulk_fault(w, id, "write", "core.bulk.accepted", rc, err, cap) : 0;
}

/* The CBOR Write stream: fs.data frames of RFS_CHUNK bytes, then the empty one. */
static int rfs_wr_cbor(struct wire *w, uint32_t id, int fd, uint64_t size, rfs_progress_fn fn,
	void *ctx, char *err, size_t cap)
{
	uint8_t *buf = malloc(RFS_CHUNK);
	uint64_t done = 0;
	int rc = 0;

	if (!buf) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	while (rc == 0 && done < size) {
		size_t n = size - done < RFS_CHUNK ? (size_t)(size - done) : RFS_CHUNK;

		if ((rc = rfs_get(fd, buf, n, err, cap)) < 0)
			break;
		rc = wire_send_data(w, PROTO_T_FS_DATA, id, buf, n);
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
		done += n;
		if (rc == 0 && fn)
			fn(ctx, done, size);
	}
	free(buf);
	if (rc == 0 && (rc = wire_send_data(w, PROTO_T_FS_DATA, id, NULL, 0)) < 0)
		snprintf(err, cap, "out of memory");
	return rc;
}

int rfs_write_from_fd(struct wire *w, uint64_t handle, int fd, uint64_t size, rfs_progress_fn fn,
	void *ctx, char *err, size_t cap)
{
	struct proto_msg m = {.type = PROTO_T_FS_REQUEST};
	struct proto_opt_bulk_offer offer = rfs_offer(w, true);
	struct proto_bulk_tx tx;
	uint32_t id = wire_new_id(w);
	int rc;

	m.u.fs_request = (struct proto_fs_request){
		.kind = PROTO_FS_OP_WRITE, .handle = handle, .len = {true, size}, .bulk = offer};
	rc = wire_send(w, id, &m);
	if (rc < 0) {
		snprintf(err, cap, "write: cannot encode the request: %s", proto_strerror(rc));
		return rc;
	}
	if (offer.set) {
		rc = rfs_wr_accepted(w, id, &offer.v, &tx, err, cap);
		if (rc == 0)
			rc = rfs_wr_records(w, id, &tx, fd, size, fn, ctx, err, cap);
	} else {
		rc = rfs_wr_cbor(w, id, fd, size, fn, ctx, err, cap);
	}
	if (rc < 0)
		return rc; /* the caller closes the connection: the agent drops the stream */
	/* The response, after any late credit or a cancel notice. */
	while ((rc = rfs_wait(w, id, false, RFS_TIMEOUT_MS, err, cap)) > 0 && offer.set &&
		(w->msg.type == PROTO_T_BULK_CREDIT || w->msg.type == PROTO_T_BULK_CANCEL))
		;
	if (rc < 0)
		return rc;
	rc = rfs_response(w, "write", err, cap);
	w->bulk_streams += offer.set && rc == 0;
	return rc;
}
