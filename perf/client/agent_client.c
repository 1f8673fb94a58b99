/*
 * perf/client/agent_client.c - see agent_client.h.
 */
#include "perf/client/agent_client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int client_alloc(struct agent_client *c)
{
	memset(c, 0, sizeof(*c));
	c->pid = -1;
	c->fd = -1;
	c->cap = PROTO_MAX_WIRE_SIZE + 65536;
	c->buf = malloc(c->cap);
	c->arena_mem = malloc(AGENT_CLIENT_ARENA);
	c->out = malloc(PROTO_MAX_WIRE_SIZE);
	if (c->buf && c->arena_mem && c->out)
		return 0;
	free(c->buf);
	free(c->arena_mem);
	free(c->out);
	c->buf = c->arena_mem = c->out = NULL;
	return -ENOMEM;
}

int agent_client_attach(struct agent_client *c, int fd, pid_t pid)
{
	int rc = client_alloc(c);

	if (rc < 0)
		return rc;
	c->fd = fd;
	c->pid = pid;
	return 0;
}

int agent_client_spawn(struct agent_client *c, const char *const *argv)
{
	int sv[2], rc;

	if ((rc = client_alloc(c)) < 0)
		return rc;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		goto err;
	}
	c->pid = fork();
	if (c->pid < 0) {
		rc = -errno;
		close(sv[0]);
		close(sv[1]);
		goto err;
	}
	if (c->pid == 0) {
		if (dup2(sv[1], 3) < 0)
			_exit(120);
		execv(argv[0], (char *const *)argv);
		_exit(121);
	}
	close(sv[1]);
	c->fd = sv[0];
	return 0;
err:
	free(c->buf);
	free(c->arena_mem);
	free(c->out);
	c->buf = c->arena_mem = c->out = NULL;
	return rc;
}

int agent_client_send_raw(struct agent_client *c, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

long agent_client_send(struct agent_client *c, uint32_t id, const struct proto_msg *m)
{
	long n = proto_frame_encode(c->out, PROTO_MAX_WIRE_SIZE, id, m);
	int rc;

	if (n < 0)
		return n;
	rc = agent_client_send_raw(c, c->out, (size_t)n);
	return rc < 0 ? rc : n;
}

int agent_client_recv(struct agent_client *c, int timeout_ms)
{
	for (;;) {
		int rc = proto_frame_parse(c->buf + c->off, c->len - c->off, &c->frame);
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ssize_t r;

		if (rc < 0)
			return rc;
		if (rc > 0) {
			c->off += (size_t)rc;
			proto_arena_init(&c->arena, c->arena_mem, AGENT_CLIENT_ARENA);
			memset(&c->ei, 0, sizeof(c->ei));
			rc = proto_frame_decode(&c->frame, &c->msg, &c->arena, &c->ei);
			return rc < 0 ? rc : 1;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		rc = poll(&p, 1, timeout_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return rc < 0 ? -errno : 0;
		r = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EPIPE;
		c->len += (size_t)r;
	}
}

static int expect(struct agent_client *c, enum proto_type t, int timeout_ms)
{
	int rc = agent_client_recv(c, timeout_ms);

	if (rc <= 0)
		return rc == 0 ? -ETIMEDOUT : rc;
	return c->msg.type == t && c->frame.id == 0 ? 0 : -EPROTO;
}

int agent_client_boot(struct agent_client *c, int timeout_ms)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP};
	long rc;

	if ((rc = agent_client_send(c, 0, &m)) < 0)
		return (int)rc;
	if ((rc = expect(c, PROTO_T_INIT_RESOLVED, timeout_ms)) < 0)
		return (int)rc;
	m = (struct proto_msg){.type = PROTO_T_INIT_ACK};
	if ((rc = agent_client_send(c, 0, &m)) < 0)
		return (int)rc;
	return expect(c, PROTO_T_READY, timeout_ms);
}

int agent_client_close(struct agent_client *c, int grace_ms)
{
	int st = -1;

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->pid > 0) {
		for (int waited = 0; waited < grace_ms; waited += 5) {
			if (waitpid(c->pid, &st, WNOHANG) == c->pid)
				goto out;
			nanosleep(&(struct timespec){0, 5000000}, NULL);
		}
		kill(c->pid, SIGKILL);
		waitpid(c->pid, &st, 0);
		st = -ETIMEDOUT;
	}
out:
	c->pid = -1;
	free(c->buf);
	free(c->arena_mem);
	free(c->out);
	c->buf = c->arena_mem = c->out = NULL;
	return st;
}
