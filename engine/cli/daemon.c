/*
 * engine/cli/daemon.c - reach sandwired, or start a private one for the
 * duration of one command; management calls and attach.
 *
 * The private daemon is this very binary's `serve` (the engine is linked
 * in), started with a socket in a fresh temporary directory, without
 * agent.sock files, in its own process group (a Ctrl-C on the terminal is
 * for the command, not for the daemon) and with PR_SET_PDEATHSIG so that it
 * never outlives the sandwire that started it.  Its log goes to a file in
 * that directory and is shown only when it fails to start.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DAEMON_START_WAIT_MS 10000
#define DAEMON_STOP_WAIT_MS 5000

static const char *cli_socket(struct cli *cli, char *buf, size_t cap)
{
	return swc_socket_path(cli->socket, buf, cap);
}

int cli_connect(struct cli *cli, struct swc *c)
{
	char path[108], err[512];

	if (swc_connect(c, cli_socket(cli, path, sizeof(path)), err, sizeof(err)) < 0)
		return cli_fail("%s", err);
	return 0;
}

int cli_call(struct swc *c, enum engine_verb v, const char *name, struct swc_result *res)
{
	char err[1024];

	if (swc_call_simple(c, v, name, res, err, sizeof(err)) < 0 || !res->ok)
		return cli_fail("%s", err);
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Print the last lines of the private daemon's log (why it did not start). */
static void daemon_show_log(const struct cli_daemon *d)
{
	char buf[4096];
	ssize_t n = 0;
	off_t size;
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0)
		fprintf(stderr, "sandwire: the private daemon's log:\n%.*s", (int)n, buf);
}

/* The child side of the spawn: never returns.  <ready> becomes its fd 3. */
static void daemon_child(const struct cli_daemon *d, pid_t parent, int ready)
{
	sigset_t none;
	int fd;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (ready == 3)
		fcntl(3, F_SETFD, 0);
	else if (dup2(ready, 3) < 0)
		_exit(1);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		dup2(fd, 0);
	fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execl("/proc/self/exe", "sandwire", "serve", "--socket", d->socket, "--no-agent-sock",
		"--shards", "1", "--ready-fd", "3", (char *)NULL);
	fprintf(stderr, "sandwire: cannot run /proc/self/exe: %s\n", strerror(errno));
	_exit(127);
}

/*
 * Wait for the private daemon's readiness byte on <fd> (written by `serve
 * --ready-fd` once the engine is fully up).  Returns 0, or CLI_EXIT_ERR.
 */
static int daemon_wait_ready(struct cli_daemon *d, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char byte;
	int rc;

	do
		rc = poll(&p, 1, DAEMON_START_WAIT_MS);
	while (rc < 0 && errno == EINTR);
	if (rc > 0 && read(fd, &byte, 1) == 1)
		return 0;
	daemon_show_log(d);
	if (rc == 0)
		return cli_fail(
			"the private daemon was not ready within %d ms", DAEMON_START_WAIT_MS);
	return cli_fail("the private daemon exited before it was ready (see its log above); or "
			"start one yourself with `sandwire serve`");
}

/* Start a private daemon and connect <c> to it. */
static int daemon_spawn(struct swc *c, struct cli_daemon *d)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	pid_t parent = getpid();
	char err[512];
	int ready[2], rc;

	if (!base || !*base || access(base, W_OK) < 0)
		base = getenv("TMPDIR");
	if (!base || !*base || strlen(base) > 60)
		base = "/tmp";
	snprintf(d->dir, sizeof(d->dir), "%s/sandwire-run-XXXXXX", base);
	if (!mkdtemp(d->dir))
		return cli_fail(
			"cannot start a private daemon: mkdtemp %s: %s", d->dir, strerror(errno));
	snprintf(d->socket, sizeof(d->socket), "%s/sandwired.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/sandwired.log", d->dir);
	if (pipe2(ready, O_CLOEXEC) < 0) {
		cli_daemon_stop(d);
		return cli_fail("cannot start a private daemon: pipe: %s", strerror(errno));
	}
	fflush(NULL);
	d->pid = fork();
	if (d->pid == 0)
		daemon_child(d, parent, ready[1]);
	close(ready[1]);
	if (d->pid < 0) {
		d->pid = 0;
		close(ready[0]);
		cli_daemon_stop(d);
		return cli_fail("cannot start a private daemon: fork: %s", strerror(errno));
	}
	rc = daemon_wait_ready(d, ready[0]);
	close(ready[0]);
	if (rc == 0 && swc_connect(c, d->socket, err, sizeof(err)) < 0)
		rc = cli_fail("%s", err);
	if (rc)
		cli_daemon_stop(d);
	return rc;
}

int cli_connect_or_spawn(struct cli *cli, struct swc *c, struct cli_daemon *d)
{
	char path[108], err[512];
	int rc;

	memset(d, 0, sizeof(*d));
	rc = swc_connect(c, cli_socket(cli, path, sizeof(path)), err, sizeof(err));
	if (rc == 0)
		return 0;
	if (rc != -ENOENT && rc != -ECONNREFUSED)
		return cli_fail("%s", err);
	if (cli->verbose)
		cli_err("no daemon at %s: starting a private one for this command", path);
	return daemon_spawn(c, d);
}

void cli_daemon_stop(struct cli_daemon *d)
{
	int64_t deadline = cli_now_ms() + DAEMON_STOP_WAIT_MS;
	int st;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		while (waitpid(d->pid, &st, WNOHANG) == 0) {
			if (cli_now_ms() > deadline) {
				cli_err("the private daemon (pid %d) did not stop in %d ms: "
					"killing it",
					(int)d->pid, DAEMON_STOP_WAIT_MS);
				kill(d->pid, SIGKILL);
				waitpid(d->pid, &st, 0);
				break;
			}
			sleep_ms(5);
		}
		d->pid = 0;
	}
	if (d->dir[0]) {
		unlink(d->socket);
		unlink(d->log);
		rmdir(d->dir);
		d->dir[0] = '\0';
	}
}

int cli_attach(struct cli *cli, const char *socket, const char *name, struct wire *w)
{
	char path[108], err[1024];
	uint8_t *ready = NULL;
	size_t ready_len = 0;
	uint32_t lo, hi;
	struct swc c;
	int fd;

	if (!socket)
		socket = cli_socket(cli, path, sizeof(path));
	if (swc_connect(&c, socket, err, sizeof(err)) < 0)
		return cli_fail("%s", err);
	if (swc_attach(&c, name, &lo, &hi, &ready, &ready_len, err, sizeof(err)) < 0) {
		swc_close(&c);
		return cli_fail("%s", err);
	}
	fd = c.fd;
	c.fd = -1; /* the descriptor moves to the wire */
	swc_close(&c);
	if (wire_init(w, fd, lo, hi) < 0) {
		free(ready);
		close(fd);
		return cli_fail("out of memory");
	}
	wire_set_ready(w, ready, ready_len);
	free(ready);
	return 0;
}
