/*
 * agent/spawn.c - fork + exec of one exec-session child (see spawn.h).
 */
#include "agent/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

/* What a failing child writes to the error pipe before _exit(127). */
struct spawn_report {
	int stage;
	int err;
};

/* Parent- and child-side fds of one spawn; -1 when unused. */
struct spawn_fds {
	int report[2]; /* close-on-exec pipe: child writes a spawn_report on failure */
	int in[2];     /* pipe mode: child's stdin */
	int out[2];
	int errp[2];
	int master;    /* PTY mode */
	int slave;
};

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd); /* never retried: the fd is released even on EINTR */
		*fd = -1;
	}
}

static void spawn_fds_close(struct spawn_fds *f)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&f->report[i]);
		close_fd(&f->in[i]);
		close_fd(&f->out[i]);
		close_fd(&f->errp[i]);
	}
	close_fd(&f->master);
	close_fd(&f->slave);
}

static int open_pty(struct spawn_fds *f, uint16_t rows, uint16_t cols)
{
	char name[128];
	struct winsize ws = {.ws_row = rows, .ws_col = cols};

	f->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (f->master < 0)
		return -errno;
	if (grantpt(f->master) < 0 || unlockpt(f->master) < 0 ||
		ptsname_r(f->master, name, sizeof(name)) != 0)
		return -errno;
	f->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (f->slave < 0)
		return -errno;
	if (ioctl(f->master, TIOCSWINSZ, &ws) < 0)
		return -errno;
	return 0;
}

/*
 * The environment for the child: the agent's own, with each "KEY=VALUE" of
 * the request replacing or adding its key (entries without '=' are ignored,
 * as the reference does).  The array is malloc'd; the strings are borrowed.
 */
static char **build_env(const struct agent_spawn_req *req)
{
	size_t base = 0, n;
	char **envp;

	while (environ && environ[base])
		base++;
	envp = calloc(base + req->nenv + 1, sizeof(*envp));
	if (!envp)
		return NULL;
	memcpy(envp, environ, base * sizeof(*envp));
	n = base;
	for (size_t i = 0; i < req->nenv; i++) {
		const char *kv = req->env[i], *eq = strchr(kv, '=');
		size_t klen, j;

		if (!eq)
			continue;
		klen = (size_t)(eq - kv) + 1; /* compare "KEY=" */
		for (j = 0; j < n; j++)
			if (strncmp(envp[j], kv, klen) == 0)
				break;
		envp[j] = (char *)kv;
		if (j == n)
			n++;
	}
	envp[n] = NULL;
	return envp;
}

static const char *env_get(char *const *envp, const char *key)
{
	size_t klen = strlen(key);

	for (; *envp; envp++)
		if (strncmp(*envp, key, klen) == 0 && (*envp)[klen] == '=')
			return *envp + klen + 1;
	return NULL;
}

/*
 * execve <cmd>, searching the child's own PATH when it has no '/'.  Like
 * execvp: keeps going past ENOENT/ENOTDIR, remembers EACCES.  Child only;
 * returns the errno to report.
 */
static int exec_search(const char *cmd, char *const *argv, char *const *envp)
{
	char path[PATH_MAX];
	const char *dirs, *p;
	size_t clen = strlen(cmd);
	bool saw_eacces = false;

	if (clen == 0)
		return ENOENT;
	if (strchr(cmd, '/')) {
		execve(cmd, argv, envp);
		return errno;
	}
	dirs = env_get(envp, "PATH");
	if (!dirs)
		dirs = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = dirs;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);

		if (dlen == 0) { /* an empty element means the current directory */
			p = ".";
			dlen = 1;
		}
		if (dlen + 1 + clen + 1 <= sizeof(path)) {
			memcpy(path, p, dlen);
			path[dlen] = '/';
			memcpy(path + dlen + 1, cmd, clen + 1);
			execve(path, argv, envp);
			if (errno == EACCES)
				saw_eacces = true;
			else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
				errno != ENODEV && errno != ETIMEDOUT)
				return errno; /* found but not runnable: stop, as execvp does */
		}
		if (*end == '\0')
			break;
		p = end;
	}
	return saw_eacces ? EACCES : ENOENT;
}

/* dup2 that also clears close-on-exec when <fd> already is <to>. */
static int move_fd(int fd, int to)
{
	if (fd == to)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, to) < 0 ? -1 : 0;
}

static void child_fail(int report_fd, enum agent_spawn_stage stage, int err)
{
	struct spawn_report r = {.stage = (int)stage, .err = err};
	ssize_t n;

	do
		n = write(report_fd, &r, sizeof(r));
	while (n < 0 && errno == EINTR);
	_exit(127);
}

/* Runs in the forked child; never returns. */
static void child_run(const struct agent_spawn_req *req, const struct spawn_fds *f,
	char *const *argv, char *const *envp)
{
	sigset_t none;
	int rep = f->report[1];

	/* The agent's loop blocks or handles signals; a command starts clean. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);

	if (setsid() < 0)
		child_fail(rep, req->tty ? AGENT_STAGE_PTY : AGENT_STAGE_SETUP, errno);
	if (req->tty) {
		if (ioctl(f->slave, TIOCSCTTY, 0) < 0)
			child_fail(rep, AGENT_STAGE_PTY, errno);
		if (move_fd(f->slave, 0) < 0 || move_fd(f->slave, 1) < 0 || move_fd(f->slave, 2) < 0)
			child_fail(rep, AGENT_STAGE_PTY, errno);
	} else if (move_fd(f->in[0], 0) < 0 || move_fd(f->out[1], 1) < 0 ||
		move_fd(f->errp[1], 2) < 0) {
		child_fail(rep, AGENT_STAGE_SETUP, errno);
	}
	if (req->cwd && chdir(req->cwd) < 0)
		child_fail(rep, AGENT_STAGE_CWD, errno);
	/* rlimits before the user switch: root may still raise a hard limit. */
	for (size_t i = 0; i < req->nrlimits; i++) {
		const struct agent_rlimit *rl = &req->rlimits[i];
		struct rlimit lim = {
			.rlim_cur = rl->soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)rl->soft,
			.rlim_max = rl->hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)rl->hard,
		};

		if (setrlimit(rl->resource, &lim) < 0)
			child_fail(rep, AGENT_STAGE_RLIMIT, errno);
	}
	if (req->set_user) {
		if ((getuid() == 0 && setgroups(0, NULL) < 0) || setgid(req->gid) < 0 ||
			setuid(req->uid) < 0)
			child_fail(rep, AGENT_STAGE_USER, errno);
	}
	child_fail(rep, AGENT_STAGE_EXEC, exec_search(req->cmd, argv, envp));
}

int agent_spawn(const struct agent_spawn_req *req, struct agent_child *out,
	struct agent_spawn_err *e)
{
	struct spawn_fds f = {
		.report = {-1, -1}, .in = {-1, -1}, .out = {-1, -1}, .errp = {-1, -1},
		.master = -1, .slave = -1,
	};
	struct spawn_report rep;
	char **argv = NULL, **envp = NULL;
	ssize_t n;
	pid_t pid;
	int rc;

	*e = (struct agent_spawn_err){0};
	argv = calloc(req->nargs + 2, sizeof(*argv));
	envp = build_env(req);
	if (!argv || !envp) {
		rc = ENOMEM;
		goto err_setup;
	}
	argv[0] = (char *)req->cmd;
	for (size_t i = 0; i < req->nargs; i++)
		argv[i + 1] = (char *)req->args[i];

	if (pipe2(f.report, O_CLOEXEC) < 0) {
		rc = errno;
		goto err_setup;
	}
	if (req->tty) {
		rc = open_pty(&f, req->rows, req->cols);
		if (rc < 0) {
			e->stage = AGENT_STAGE_PTY;
			e->err = -rc;
			goto err;
		}
	} else if (pipe2(f.in, O_CLOEXEC) < 0 || pipe2(f.out, O_CLOEXEC) < 0 ||
		pipe2(f.errp, O_CLOEXEC) < 0) {
		rc = errno;
		goto err_setup;
	}

	/* vfork: the parent waits until the child execs or fails, and nothing is copied.
	 * The child only calls async-signal-safe functions and never returns. */
	pid = vfork();
	if (pid < 0) {
		rc = errno;
		goto err_setup;
	}
	if (pid == 0)
		child_run(req, &f, argv, envp);

	/* Parent: drop the child's ends, then learn whether exec happened. */
	close_fd(&f.report[1]);
	close_fd(&f.slave);
	close_fd(&f.in[0]);
	close_fd(&f.out[1]);
	close_fd(&f.errp[1]);
	do
		n = read(f.report[0], &rep, sizeof(rep));
	while (n < 0 && errno == EINTR);
	if (n != 0) {
		e->stage = n == (ssize_t)sizeof(rep) ? (enum agent_spawn_stage)rep.stage
						      : AGENT_STAGE_SETUP;
		e->err = n == (ssize_t)sizeof(rep) ? rep.err : (n < 0 ? errno : EIO);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto err;
	}
	close_fd(&f.report[0]);

	if (req->tty) {
		*out = (struct agent_child){pid, f.master, f.master, -1};
		f.master = -1;
	} else {
		*out = (struct agent_child){pid, f.in[1], f.out[0], f.errp[0]};
		f.in[1] = f.out[0] = f.errp[0] = -1;
	}
	free(argv);
	free(envp);
	return 0;

err_setup:
	e->stage = AGENT_STAGE_SETUP;
	e->err = rc;
err:
	spawn_fds_close(&f);
	free(argv);
	free(envp);
	return -1;
}

const char *agent_spawn_stage_name(enum agent_spawn_stage s)
{
	switch (s) {
	case AGENT_STAGE_SETUP: return "setup";
	case AGENT_STAGE_PTY: return "pty";
	case AGENT_STAGE_CWD: return "chdir";
	case AGENT_STAGE_RLIMIT: return "setrlimit";
	case AGENT_STAGE_USER: return "setuid";
	case AGENT_STAGE_EXEC: return "execve";
	case AGENT_STAGE_NONE: break;
	}
	return "unknown";
}

const char *agent_spawn_kind(const struct agent_spawn_err *e)
{
	switch (e->stage) {
	case AGENT_STAGE_CWD: return "bad_cwd";
	case AGENT_STAGE_RLIMIT: return "resource_limit";
	case AGENT_STAGE_USER: return "user_setup_failed";
	case AGENT_STAGE_PTY: return "pty_setup_failed";
	default: break;
	}
	/* The reference's errno table (spec 3.2 classify_spawn_errno). */
	switch (e->err) {
	case ENOENT: return "not_found";
	case ENOTDIR: return "bad_cwd";
	case EACCES: case EPERM: return "permission_denied";
	case ENOEXEC: case EISDIR: case ETXTBSY: return "not_executable";
	case E2BIG: case ELOOP: case ENAMETOOLONG: case EFAULT: return "bad_args";
	case EMFILE: case ENFILE: case EAGAIN: return "resource_limit";
	case ENOMEM: return "out_of_memory";
	default: return "other";
	}
}

const char *agent_errno_name(int err)
{
	switch (err) {
	case E2BIG: return "E2BIG";
	case EACCES: return "EACCES";
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case EFAULT: return "EFAULT";
	case EINVAL: return "EINVAL";
	case EIO: return "EIO";
	case EISDIR: return "EISDIR";
	case ELOOP: return "ELOOP";
	case EMFILE: return "EMFILE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENFILE: return "ENFILE";
	case ENOENT: return "ENOENT";
	case ENOEXEC: return "ENOEXEC";
	case ENOMEM: return "ENOMEM";
	case ENOSYS: return "ENOSYS";
	case ENOTDIR: return "ENOTDIR";
	case ENXIO: return "ENXIO";
	case EPERM: return "EPERM";
	case ETXTBSY: return "ETXTBSY";
	default: return NULL;
	}
}
