/*
 * engine/swclient.c - blocking client of sandwired's socket (swclient.h).
 *
 * Every wait is a poll() against one deadline per answer, so a silent
 * daemon costs at most c->timeout_ms.  Reads take exactly the bytes asked
 * for (the 4-byte length, then the rest of the frame), never more: after
 * swc_attach() the descriptor holds nothing but the relay stream.  After a
 * timeout or an error in the middle of a frame the stream is out of step:
 * close the connection.  One thread per struct swc.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/swclient.h"
#include "proto/envelope.h"
#include "proto/error.h"
#include "proto/frame.h"

/* Room for a request without a port list: the envelope, a verb and a name. */
#define SWC_SIMPLE_REQ_MAX 256

/* Format a sentence into <err> (may be NULL) and return <rc>. */
__attribute__((format(printf, 4, 5))) static int swc_err(
	char *err, size_t cap, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && cap) {
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int64_t swc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline <timeout_ms> from now; -1 (none) for a negative timeout. */
static int64_t swc_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : swc_now_ms() + timeout_ms;
}

/*
 * Wait until <fd> is readable or <deadline> (ms, -1: none) passes.
 * Returns 1 when readable (or hung up: the read tells), 0 on timeout, -errno.
 */
static int swc_wait_readable(int fd, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int64_t left;
	int rc;

	for (;;) {
		left = deadline < 0 ? -1 : deadline - swc_now_ms();
		if (deadline >= 0 && left < 0)
			left = 0;
		rc = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (rc > 0)
			return 1;
		if (rc == 0 && deadline >= 0 && swc_now_ms() >= deadline)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

/*
 * Read exactly <n> bytes into <p> before <deadline>.  Returns 1 when done,
 * 0 on timeout, -EPIPE on EOF, -errno.
 */
static int swc_read_exact(int fd, void *p, size_t n, int64_t deadline)
{
	uint8_t *at = p;
	ssize_t got;
	int rc;

	while (n > 0) {
		rc = swc_wait_readable(fd, deadline);
		if (rc <= 0)
			return rc;
		got = read(fd, at, n);
		if (got == 0)
			return -EPIPE;
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		at += got;
		n -= (size_t)got;
	}
	return 1;
}

/* swc_read_frame() against a deadline. */
static long swc_read_frame_by(int fd, uint8_t **buf, size_t *cap, int64_t deadline)
{
	uint8_t lenb[PROTO_LEN_SIZE];
	uint32_t len;
	size_t total;
	uint8_t *nb;
	int rc;

	rc = swc_read_exact(fd, lenb, sizeof(lenb), deadline);
	if (rc <= 0)
		return rc;
	len = proto_be32(lenb);
	if (len > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (len < PROTO_FRAME_HEADER_SIZE)
		return PROTO_E_UNDERSIZE;
	total = PROTO_LEN_SIZE + (size_t)len;
	if (*cap < total) {
		nb = realloc(*buf, total);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = total;
	}
	memcpy(*buf, lenb, sizeof(lenb));
	rc = swc_read_exact(fd, *buf + PROTO_LEN_SIZE, len, deadline);
	if (rc <= 0)
		return rc;
	return (long)total;
}

long swc_read_frame(int fd, uint8_t **buf, size_t *cap, int timeout_ms)
{
	return swc_read_frame_by(fd, buf, cap, swc_deadline(timeout_ms));
}

int swc_write_all(int fd, const void *p, size_t n)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	const uint8_t *at = p;
	bool sock = true;
	ssize_t put;

	while (n > 0) {
		/* MSG_NOSIGNAL: a daemon that went away is -EPIPE, not a SIGPIPE */
		put = sock ? send(fd, at, n, MSG_NOSIGNAL) : write(fd, at, n);
		if (put < 0) {
			if (errno == ENOTSOCK && sock) {
				sock = false;
			} else if (errno == EAGAIN) {
				if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
					return -errno;
			} else if (errno != EINTR) {
				return -errno;
			}
			continue;
		}
		at += put;
		n -= (size_t)put;
	}
	return 0;
}

const char *swc_socket_path(const char *explicit_path, char *buf, size_t cap)
{
	const char *env = getenv("SANDWIRE_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (explicit_path)
		snprintf(buf, cap, "%s", explicit_path);
	else if (env && env[0])
		snprintf(buf, cap, "%s", env);
	else if (xdg && xdg[0])
		snprintf(buf, cap, "%s/sandwire/sandwired.sock", xdg);
	else
		snprintf(buf, cap, "/run/sandwire/sandwired.sock");
	return buf;
}

/* Finish a connect() that EINTR interrupted: wait for it and fetch its result. */
static int swc_connect_finish(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	socklen_t len = sizeof(int);
	int soerr = 0;

	while (poll(&pfd, 1, -1) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

int swc_connect(struct swc *c, const char *path, char *err, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	int fd, rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->next_id = 1;
	c->timeout_ms = SWC_TIMEOUT_MS_DEF;
	if (n == 0 || n >= sizeof(sa.sun_path))
		return swc_err(err, cap, -ENAMETOOLONG,
			"cannot reach sandwired at `%s`: a socket path is 1 to %zu bytes", path,
			sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, n);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return swc_err(
			err, cap, -errno, "cannot reach sandwired: socket: %s", strerror(errno));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	if (rc == -EINTR)
		rc = swc_connect_finish(fd);
	if (rc < 0)
		goto err_close;
	c->fd = fd;
	return 0;
err_close:
	close(fd);
	if (rc == -ENOENT || rc == -ECONNREFUSED)
		return swc_err(err, cap, rc,
			"cannot reach sandwired at %s: %s; start the daemon with `sandwire serve` "
			"(or set SANDWIRE_SOCKET / --socket to the daemon's socket)",
			path, proto_strerror(rc));
	if (rc == -EACCES)
		return swc_err(err, cap, rc,
			"cannot reach sandwired at %s: %s; the socket is private to the daemon's "
			"user: run as that user",
			path, proto_strerror(rc));
	return swc_err(err, cap, rc, "cannot reach sandwired at %s: %s", path, proto_strerror(rc));
}

void swc_close(struct swc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->frame);
	c->frame = NULL;
	c->frame_cap = 0;
}

/* The sentence for a failed read of an answer (<rc> from swc_read_frame, <= 0). */
static int swc_read_failed(long rc, int timeout_ms, char *err, size_t cap)
{
	if (rc == 0)
		return swc_err(err, cap, -ETIMEDOUT,
			"no answer from sandwired within %d ms (the connection is closed)",
			timeout_ms);
	if (rc == -EPIPE || rc == -ECONNRESET)
		return swc_err(err, cap, -EPIPE,
			"sandwired closed the connection before answering (did it stop? see its "
			"log)");
	return swc_err(
		err, cap, (int)rc, "cannot read sandwired's answer: %s", proto_strerror((int)rc));
}

int swc_call(struct swc *c, const void *frame, size_t n, uint32_t id, struct swc_result *res,
	char *err, size_t cap)
{
	int64_t deadline = swc_deadline(c->timeout_ms);
	struct proto_frame f;
	struct proto_env e;
	long got;
	int rc;

	if (err && cap)
		err[0] = '\0';
	rc = swc_write_all(c->fd, frame, n);
	if (rc < 0)
		return swc_err(err, cap, rc, "cannot send to sandwired: %s%s", proto_strerror(rc),
			rc == -EPIPE ? " (did it stop? see its log)" : "");
	do {
		got = swc_read_frame_by(c->fd, &c->frame, &c->frame_cap, deadline);
		if (got <= 0)
			return swc_read_failed(got, c->timeout_ms, err, cap);
		proto_frame_parse(c->frame, (size_t)got, &f);
	} while (f.id != id); /* another request's answer: not ours to take */
	rc = proto_env_decode(f.body, f.body_len, NULL, &e, NULL);
	if (rc < 0 && rc != PROTO_E_UNKNOWN_TYPE) /* the engine's types are not agent types */
		return swc_err(err, cap, rc, "bad answer from sandwired: envelope: %s",
			proto_strerror(rc));
	if (!proto_str_eq(e.t, ENGINE_API_RESULT))
		return swc_err(err, cap, PROTO_E_UNKNOWN_TYPE,
			"bad answer from sandwired: a `%.*s` frame instead of " ENGINE_API_RESULT,
			(int)(e.t.len > 64 ? 64 : e.t.len), e.t.ptr);
	rc = engine_decode_result(e.p, e.p_len, &res->ok, err, cap, &res->data, &res->data_len);
	if (rc < 0)
		return swc_err(
			err, cap, rc, "bad answer from sandwired: result: %s", proto_strerror(rc));
	return 0;
}

int swc_call_simple(struct swc *c, enum engine_verb v, const char *name, struct swc_result *res,
	char *err, size_t cap)
{
	uint8_t buf[SWC_SIMPLE_REQ_MAX];
	uint32_t id;
	long n;
	int rc;

	if (name && (rc = engine_name_check(name, strlen(name), err, cap)) < 0)
		return rc;
	id = c->next_id++;
	if (c->next_id == 0) /* id 0 is the control id: never a request's */
		c->next_id = 1;
	n = engine_req_simple(buf, sizeof(buf), id, v, name);
	if (n < 0)
		return swc_err(err, cap, (int)n, "cannot build the %s request: %s",
			engine_verb_name(v) ? engine_verb_name(v) : "?", proto_strerror((int)n));
	return swc_call(c, buf, (size_t)n, id, res, err, cap);
}

int swc_attach(struct swc *c, const char *name, uint32_t *id_start, uint32_t *id_end,
	uint8_t **ready, size_t *ready_len, char *err, size_t cap)
{
	struct swc_result res;
	uint8_t range[8], *frame = NULL;
	struct proto_frame f;
	struct proto_env e;
	size_t frame_cap = 0;
	int64_t deadline;
	long got;
	int rc;

	rc = swc_call_simple(c, ENGINE_V_ATTACH, name, &res, err, cap);
	if (rc < 0)
		return rc;
	if (!res.ok)
		return -ECONNREFUSED; /* <err> holds the daemon's text */
	deadline = swc_deadline(c->timeout_ms);
	rc = swc_read_exact(c->fd, range, sizeof(range), deadline);
	if (rc <= 0) {
		rc = swc_read_failed(rc, c->timeout_ms, err, cap);
		goto err_free;
	}
	*id_start = proto_be32(range);
	*id_end = proto_be32(range + 4);
	if (*id_start >= *id_end || (*id_start == 0 && *id_end == 1)) {
		rc = swc_err(err, cap, PROTO_E_BAD_VALUE,
			"bad relay handshake from sandwired: id range [%u, %u) holds no id",
			*id_start, *id_end);
		goto err_free;
	}
	got = swc_read_frame_by(c->fd, &frame, &frame_cap, deadline);
	if (got <= 0) {
		rc = swc_read_failed(got, c->timeout_ms, err, cap);
		goto err_free;
	}
	proto_frame_parse(frame, (size_t)got, &f);
	rc = proto_env_decode(f.body, f.body_len, NULL, &e, NULL);
	if (rc == 0 && e.type != PROTO_T_READY)
		rc = PROTO_E_UNKNOWN_TYPE;
	if (rc < 0) {
		rc = swc_err(err, cap, rc,
			"bad relay handshake from sandwired: the frame after the id range is not "
			"core.ready (%s)",
			proto_strerror(rc));
		goto err_free;
	}
	*ready = frame;
	*ready_len = (size_t)got;
	return 0;
err_free:
	free(frame);
	return rc;
}

int swc_wait_ready(const char *path, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		struct swc c;
		char err[256];

		if (swc_connect(&c, path, err, sizeof(err)) == 0) {
			swc_close(&c);
			return 0;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}
