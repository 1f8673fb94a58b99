/*
 * tests/agent/test_spawn.c - agent_spawn: pipes, PTY, env, cwd, rlimits and
 * the classification of every failure before exec.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/spawn.h"

/* Read everything from a non-blocking fd until EOF (or EIO on a PTY). */
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		cr_assert_geq(poll(&p, 1, 10000), 1, "child output timed out");
		n = read(fd, buf + got, cap - 1 - got);
		if (n > 0) {
			got += (size_t)n;
			cr_assert_lt(got, cap - 1, "output larger than the test buffer");
			continue;
		}
		if (n == 0 || (n < 0 && errno == EIO))
			break;
		cr_assert(errno == EAGAIN || errno == EINTR, "read: %s", strerror(errno));
	}
	buf[got] = '\0';
	return got;
}

static int reap(pid_t pid)
{
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void close_child(struct agent_child *c)
{
	close(c->stdin_fd);
	if (c->stdout_fd != c->stdin_fd)
		close(c->stdout_fd);
	if (c->stderr_fd >= 0)
		close(c->stderr_fd);
}

/* Run <req>, expect success, return exit status with stdout/stderr captured. */
static int run_ok(struct agent_spawn_req *req, char *out, size_t ocap, char *err, size_t ecap)
{
	struct agent_child c;
	struct agent_spawn_err e;
	int st;

	cr_assert_eq(agent_spawn(req, &c, &e), 0, "spawn failed: stage %s errno %d",
		agent_spawn_stage_name(e.stage), e.err);
	close(c.stdin_fd);
	if (c.stdout_fd != c.stdin_fd)
		read_all(c.stdout_fd, out, ocap);
	if (c.stderr_fd >= 0)
		read_all(c.stderr_fd, err, ecap);
	st = reap(c.pid);
	if (c.stdout_fd != c.stdin_fd)
		close(c.stdout_fd);
	if (c.stderr_fd >= 0)
		close(c.stderr_fd);
	return st;
}

Test(agent_spawn, keeps_stdout_and_stderr_apart_and_reports_exit_code)
{
	const char *args[] = {"-c", "echo out; echo err >&2; exit 3"};
	struct agent_spawn_req req = {.cmd = "sh", .args = args, .nargs = 2};
	char out[256], err[256];
	int st = run_ok(&req, out, sizeof(out), err, sizeof(err));

	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 3);
	cr_assert_str_eq(out, "out\n");
	cr_assert_str_eq(err, "err\n");
}

Test(agent_spawn, applies_env_over_the_agents_environment_and_cwd)
{
	const char *args[] = {"-c", "printf '%s|%s|%s' \"$SW_A\" \"$HOME\" \"$(pwd)\""};
	const char *env[] = {"SW_A=one", "HOME=/nowhere", "IGNORED_NO_EQUALS"};
	struct agent_spawn_req req = {
		.cmd = "sh", .args = args, .nargs = 2, .env = env, .nenv = 3, .cwd = "/tmp",
	};
	char out[256], err[256];

	cr_assert_eq(run_ok(&req, out, sizeof(out), err, sizeof(err)), 0);
	cr_assert_str_eq(out, "one|/nowhere|/tmp");
}

Test(agent_spawn, resolves_cmd_through_the_childs_own_path)
{
	char dir[] = "/tmp/sw-spawn-XXXXXX", prog[64], out[64], err[64];
	const char *env[] = {"PATH=/nonexistent:/tmp/placeholder"};
	char pathvar[96];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(prog, sizeof(prog), "%s/sw-hello", dir);
	f = fopen(prog, "w");
	cr_assert_not_null(f);
	fputs("#!/bin/sh\necho found-me\n", f);
	fclose(f);
	cr_assert_eq(chmod(prog, 0755), 0);
	snprintf(pathvar, sizeof(pathvar), "PATH=/nonexistent:%s", dir);
	env[0] = pathvar;

	struct agent_spawn_req req = {.cmd = "sw-hello", .env = env, .nenv = 1};
	cr_assert_eq(run_ok(&req, out, sizeof(out), err, sizeof(err)), 0);
	cr_assert_str_eq(out, "found-me\n");
	unlink(prog);
	rmdir(dir);
}

Test(agent_spawn, applies_rlimits_before_exec)
{
	const char *args[] = {"-c", "ulimit -n; ulimit -Hn"};
	struct agent_rlimit rl = {.resource = RLIMIT_NOFILE, .soft = 77, .hard = 99};
	struct agent_spawn_req req = {
		.cmd = "sh", .args = args, .nargs = 2, .rlimits = &rl, .nrlimits = 1,
	};
	char out[64], err[64];

	cr_assert_eq(run_ok(&req, out, sizeof(out), err, sizeof(err)), 0);
	cr_assert_str_eq(out, "77\n99\n");
}

Test(agent_spawn, pty_mode_gives_a_terminal_with_the_requested_size)
{
	const char *args[] = {"-c", "tty >/dev/null && echo is-a-tty; stty size"};
	struct agent_spawn_req req = {
		.cmd = "sh", .args = args, .nargs = 2, .tty = true, .rows = 33, .cols = 111,
	};
	struct agent_child c;
	struct agent_spawn_err e;
	char out[256];

	cr_assert_eq(agent_spawn(&req, &c, &e), 0);
	cr_assert_eq(c.stdin_fd, c.stdout_fd, "PTY mode uses one master fd");
	cr_assert_eq(c.stderr_fd, -1);
	read_all(c.stdout_fd, out, sizeof(out));
	cr_assert(WIFEXITED(reap(c.pid)));
	close_child(&c);
	/* The line discipline turns \n into \r\n. */
	cr_assert_str_eq(out, "is-a-tty\r\n33 111\r\n");
}

struct failure_case {
	const char *cmd;
	const char *cwd;
	const char *kind;
	enum agent_spawn_stage stage;
	int err;
};

static void expect_failure(const struct failure_case *fc, bool tty)
{
	struct agent_spawn_req req = {.cmd = fc->cmd, .cwd = fc->cwd, .tty = tty, .rows = 24, .cols = 80};
	struct agent_child c;
	struct agent_spawn_err e;

	cr_assert_eq(agent_spawn(&req, &c, &e), -1, "%s should fail", fc->cmd);
	cr_assert_eq(e.stage, fc->stage, "%s: stage %s", fc->cmd, agent_spawn_stage_name(e.stage));
	cr_assert_eq(e.err, fc->err, "%s: errno %d", fc->cmd, e.err);
	cr_assert_str_eq(agent_spawn_kind(&e), fc->kind);
	/* Nothing is left behind: no zombie child of ours. */
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD);
}

Test(agent_spawn, classifies_failures_the_same_in_pipe_and_pty_mode)
{
	const struct failure_case cases[] = {
		{"sw-no-such-command-anywhere", NULL, "not_found", AGENT_STAGE_EXEC, ENOENT},
		{"/nonexistent/prog", NULL, "not_found", AGENT_STAGE_EXEC, ENOENT},
		{"/dev/null", NULL, "permission_denied", AGENT_STAGE_EXEC, EACCES},
		{"/tmp", NULL, "permission_denied", AGENT_STAGE_EXEC, EACCES},
		{"sh", "/nonexistent-dir", "bad_cwd", AGENT_STAGE_CWD, ENOENT},
		{"sh", "/dev/null", "bad_cwd", AGENT_STAGE_CWD, ENOTDIR},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_failure(&cases[i], false);
		expect_failure(&cases[i], true);
	}
}

Test(agent_spawn, reports_a_rejected_rlimit_as_resource_limit)
{
	/* soft above hard is EINVAL for every caller. */
	struct agent_rlimit rl = {.resource = RLIMIT_NOFILE, .soft = 100, .hard = 10};
	struct agent_spawn_req req = {.cmd = "true", .rlimits = &rl, .nrlimits = 1};
	struct agent_child c;
	struct agent_spawn_err e;

	cr_assert_eq(agent_spawn(&req, &c, &e), -1);
	cr_assert_eq(e.stage, AGENT_STAGE_RLIMIT);
	cr_assert_eq(e.err, EINVAL);
	cr_assert_str_eq(agent_spawn_kind(&e), "resource_limit");
	cr_assert_str_eq(agent_spawn_stage_name(e.stage), "setrlimit");
}

Test(agent_spawn, names_the_spec_errnos_and_nothing_else)
{
	cr_assert_str_eq(agent_errno_name(ENOENT), "ENOENT");
	cr_assert_str_eq(agent_errno_name(ETXTBSY), "ETXTBSY");
	cr_assert_null(agent_errno_name(ECONNRESET));
}

Test(agent_spawn, child_starts_with_default_signal_dispositions)
{
	const char *args[] = {"-c", "kill -TERM $$; echo survived"};
	struct agent_spawn_req req = {.cmd = "sh", .args = args, .nargs = 2};
	char out[64], err[64];
	int st;

	/* The agent ignores SIGTERM here; the child must not inherit that. */
	signal(SIGTERM, SIG_IGN);
	st = run_ok(&req, out, sizeof(out), err, sizeof(err));
	signal(SIGTERM, SIG_DFL);
	cr_assert(WIFSIGNALED(st));
	cr_assert_eq(WTERMSIG(st), SIGTERM);
	cr_assert_str_eq(out, "");
}

Test(agent_spawn, classifies_files_that_cannot_be_executed)
{
	char dir[] = "/tmp/sw-spawn-XXXXXX", plain[64], garbage[64];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(plain, sizeof(plain), "%s/plain", dir);
	snprintf(garbage, sizeof(garbage), "%s/garbage", dir);
	cr_assert_not_null(f = fopen(plain, "w"));
	fclose(f);
	cr_assert_not_null(f = fopen(garbage, "w"));
	fputs("\x7f\x01 not a program", f);
	fclose(f);
	cr_assert_eq(chmod(plain, 0644), 0);
	cr_assert_eq(chmod(garbage, 0755), 0);

	const struct failure_case no_x = {plain, NULL, "permission_denied", AGENT_STAGE_EXEC, EACCES};
	const struct failure_case bad = {garbage, NULL, "not_executable", AGENT_STAGE_EXEC, ENOEXEC};
	expect_failure(&no_x, false);
	expect_failure(&bad, false);
	expect_failure(&bad, true);
	unlink(plain);
	unlink(garbage);
	rmdir(dir);
}
