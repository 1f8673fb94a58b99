/*
 * agent/spawn.h - start one exec-session child: pipes or a PTY, env, cwd,
 * user, rlimits, with every failure before exec reported back precisely.
 *
 * The child reports a failure through a close-on-exec pipe as a fixed
 * record {stage, errno}; a successful execve closes the pipe, so the parent
 * learns the outcome with one read and no timeout.  Failures are classified
 * the same way in pipe and PTY mode (design/wire.md "Exec"): a bad cwd is
 * bad_cwd, a rejected rlimit is resource_limit, a failed user switch is
 * user_setup_failed, a PTY failure pty_setup_failed, and exec errors follow
 * the reference's errno table (spec 3.2).  rlimits are applied before the
 * user switch so a hard limit can still be raised.
 *
 * Thread: the agent's single loop thread (fork is only safe there).
 */
#ifndef SW_AGENT_SPAWN_H
#define SW_AGENT_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One resource limit, already resolved to its RLIMIT_* number. */
struct agent_rlimit {
	int resource;
	uint64_t soft; /* UINT64_MAX = RLIM_INFINITY */
	uint64_t hard;
};

struct agent_spawn_req {
	const char *cmd;          /* program; searched in the child's PATH when it has no '/' */
	const char *const *args;  /* argv[1..], <nargs> entries */
	size_t nargs;
	const char *const *env;   /* "KEY=VALUE" applied over the agent's environment */
	size_t nenv;
	const char *cwd;          /* NULL = inherit the agent's */
	bool set_user;            /* switch to uid/gid (with supplementary groups cleared) */
	uid_t uid;
	gid_t gid;
	bool tty;                 /* PTY mode: one master fd for input and output */
	uint16_t rows, cols;      /* initial window size, PTY mode */
	const struct agent_rlimit *rlimits;
	size_t nrlimits;
};

/* Where a spawn failed: the stage names are sent as exec.failed's "stage". */
enum agent_spawn_stage {
	AGENT_STAGE_NONE = 0,
	AGENT_STAGE_SETUP,    /* parent-side: pipes, environment, fork */
	AGENT_STAGE_PTY,      /* openpty, setsid, controlling tty */
	AGENT_STAGE_CWD,
	AGENT_STAGE_RLIMIT,
	AGENT_STAGE_USER,
	AGENT_STAGE_EXEC,
};

/*
 * The child as the agent's loop sees it.  PTY mode: stdin_fd == stdout_fd
 * (the master), stderr_fd = -1.  The fds stay blocking: the loop drives them
 * through io_uring, which waits for readiness itself (an O_NONBLOCK fd would
 * make io_uring complete with -EAGAIN instead).
 */
struct agent_child {
	pid_t pid;
	int stdin_fd;  /* write end, close-on-exec */
	int stdout_fd; /* read end, close-on-exec */
	int stderr_fd; /* read end, or -1 in PTY mode */
};

struct agent_spawn_err {
	enum agent_spawn_stage stage;
	int err; /* errno of the failed step */
};

/*
 * Start the child described by <req>.  On success fills <out> and returns 0;
 * the caller owns the fds and must reap the pid.  On failure returns -1 with
 * <e> set; nothing is left open and any child has been reaped.
 */
int agent_spawn(const struct agent_spawn_req *req, struct agent_child *out,
	struct agent_spawn_err *e);

/* exec.failed "kind" for a failure (spec 3.2 table, refined by stage). */
const char *agent_spawn_kind(const struct agent_spawn_err *e);
/* exec.failed "stage" text for a stage ("chdir", "execve", ...). */
const char *agent_spawn_stage_name(enum agent_spawn_stage s);
/* Symbolic errno name for the spec's list (ENOENT, EACCES, ...), or NULL. */
const char *agent_errno_name(int err);

#endif /* SW_AGENT_SPAWN_H */
