/*
 * engine/msbsock.c - each sandbox's agent.sock in microsandbox's layout
 * (spec 5.1), so a microsandbox client attaches to a sandwire sandbox
 * unchanged: <home>/run/sandboxes/<h24>/agent.sock, and the compatibility
 * link <home>/run/agent/<h32>.sock.  A connection gets the relay handshake
 * at once (spec 5.2) and then speaks the agent protocol.
 *
 * owner: the listener, the sandbox's home shard; paths, the control thread.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/internal.h"

/* owner: the home shard. */
struct msb_listener {
	struct msb_listener *next;
	struct eshard *es;
	struct sandbox *sb; /* a reference */
	int fd;
	struct shard_accept acc;
};

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int msb_paths(const char *home, const char *name, char **dir, char **sock, char **link)
{
	uint8_t h[32];
	char h24[25], h32[33];

	sha256(name, strlen(name), h);
	hex(h, 12, h24);
	hex(h, 16, h32);
	*dir = *sock = *link = NULL;
	if (asprintf(dir, "%s/run/sandboxes/%s", home, h24) < 0 ||
		asprintf(sock, "%s/agent.sock", *dir) < 0 ||
		asprintf(link, "%s/run/agent/%s.sock", home, h32) < 0) {
		free(*dir);
		free(*sock);
		*dir = *sock = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* mkdir -p with mode 0700 for the directories we create. */
static int mkdirs(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void msb_accept(struct shard *s, struct shard_accept *a, int res)
{
	struct msb_listener *ml = (struct msb_listener *)((char *)a - offsetof(struct msb_listener, acc));

	if (res >= 0) {
		sandbox_get(ml->sb);
		client_adopt_relay(s, res, ml->sb);
		return;
	}
	for (struct msb_listener **pp = &ml->es->msbs; *pp; pp = &(*pp)->next)
		if (*pp == ml) {
			*pp = ml->next;
			break;
		}
	close(ml->fd);
	sandbox_put(ml->sb);
	free(ml);
}

static void msb_listen_on_home(struct shard *s, void *arg)
{
	struct msb_listener *ml = arg;

	ml->es = eshard_of(s);
	if (shard_accept_start(s, &ml->acc, ml->fd, msb_accept) < 0) {
		shard_log(s, SHARD_LOG_WARN, "sandbox %s: cannot accept on agent.sock", ml->sb->name);
		close(ml->fd);
		sandbox_put(ml->sb);
		free(ml);
		return;
	}
	ml->next = ml->es->msbs;
	ml->es->msbs = ml;
}

static void msb_unlisten_on_home(struct shard *s, void *arg)
{
	struct sandbox *sb = arg;

	for (struct msb_listener *ml = eshard_of(s)->msbs; ml; ml = ml->next)
		if (ml->sb == sb)
			shard_accept_stop(s, &ml->acc);
	sandbox_put(sb);
}

int msb_publish(struct engine *e, struct sandbox *sb)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct msb_listener *ml = NULL;
	char *linkdir = NULL;
	int fd = -1, rc;

	if (sb->msb_live)
		return 0;
	if (!sb->msb_sock) {
		rc = msb_paths(e->cfg.msb_home, sb->name, &sb->msb_dir, &sb->msb_sock, &sb->msb_link);
		if (rc < 0)
			return rc;
	}
	if (strlen(sb->msb_sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if ((rc = mkdirs(sb->msb_dir)) < 0)
		return rc;
	unlink(sb->msb_sock); /* a stale socket (spec 5.1) */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, sb->msb_sock, strlen(sb->msb_sock) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sb->msb_sock, 0600) < 0 ||
		listen(fd, 128) < 0) {
		rc = -errno;
		goto fail;
	}
	linkdir = strdup(sb->msb_link);
	if (linkdir && strrchr(linkdir, '/')) {
		*strrchr(linkdir, '/') = '\0';
		if (mkdirs(linkdir) == 0) {
			unlink(sb->msb_link);
			if (symlink(sb->msb_sock, sb->msb_link) < 0)
				engine_log(e, SHARD_LOG_WARN, "sandbox %s: cannot link %s: %s", sb->name,
					sb->msb_link, strerror(errno));
		}
	}
	free(linkdir);
	ml = calloc(1, sizeof(*ml));
	if (!ml) {
		rc = -ENOMEM;
		goto fail;
	}
	ml->sb = sb;
	ml->fd = fd;
	sandbox_get(sb);
	while ((rc = shard_call(sb->home, msb_listen_on_home, ml)) == -EAGAIN)
		sleep_ms(1);
	if (rc < 0) {
		sandbox_put(sb);
		free(ml);
		goto fail;
	}
	sb->msb_live = true;
	return 0;
fail:
	close(fd);
	unlink(sb->msb_sock);
	return rc;
}

void msb_unpublish(struct engine *e, struct sandbox *sb)
{
	int rc;

	if (!sb->msb_live)
		return;
	sb->msb_live = false;
	sandbox_get(sb);
	while ((rc = shard_call(sb->home, msb_unlisten_on_home, sb)) == -EAGAIN)
		sleep_ms(1);
	if (rc < 0)
		sandbox_put(sb);
	unlink(sb->msb_sock);
	unlink(sb->msb_link);
	rmdir(sb->msb_dir);
	(void)e;
}

void msb_close_all_on_shard(struct eshard *es)
{
	for (struct msb_listener *ml = es->msbs; ml; ml = ml->next)
		shard_accept_stop(es->s, &ml->acc);
}
