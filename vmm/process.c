/*
 * vmm/process.c - the "process" backend: the agent as a child process whose
 * console is one end of a socketpair.
 *
 *   daemon                                   child (clone, new namespaces)
 *   socketpair ------------------------------ fd 3 of sandwire-agent --fd 3
 *   report pipe (close-on-exec) <----------- {stage, errno} if setup fails
 *   sync pipe -----------------------------> "uid/gid maps written" (user ns)
 *
 * The child sets PR_SET_PDEATHSIG so the sandbox dies with the daemon, then,
 * per the spec: private mounts, pivot_root into the root directory, the
 * hostname, loopback up, rlimits, and execs the agent.  The agent binary is
 * opened before pivot_root and run with execveat(fd), so it need not exist
 * inside the sandbox's root.  Every failure before exec reaches the daemon as
 * one message naming the step ("pivot_root into `/srv/root`: ...").
 *
 * Without a root directory the sandbox sees the host's filesystem (with
 * VMM_NS_MOUNT and VMM_NS_PID, the agent as PID 1 mounts its own /proc,
 * /sys, /dev, /tmp and /run over them, inside its private mount namespace).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/vmm.h"

extern char **environ;

#define PROC_STACK_SIZE (256 * 1024)
#define PROC_MAX_ARGS 64

/* Where the child failed; the names appear in the daemon's error message. */
enum proc_stage {
	PROC_STAGE_SYNC = 1,
	PROC_STAGE_IDS,
	PROC_STAGE_MOUNT_PRIVATE,
	PROC_STAGE_BIND_ROOT,
	PROC_STAGE_PIVOT,
	PROC_STAGE_HOSTNAME,
	PROC_STAGE_PROC,
	PROC_STAGE_SYS,
	PROC_STAGE_LOOPBACK,
	PROC_STAGE_RLIMIT,
	PROC_STAGE_FDS,
	PROC_STAGE_EXEC,
};

static const char *stage_text(int stage)
{
	switch (stage) {
	case PROC_STAGE_SYNC: return "wait for the daemon";
	case PROC_STAGE_IDS: return "become root in the user namespace";
	case PROC_STAGE_MOUNT_PRIVATE: return "make mounts private";
	case PROC_STAGE_BIND_ROOT: return "bind-mount the root directory";
	case PROC_STAGE_PIVOT: return "pivot_root into the root directory";
	case PROC_STAGE_HOSTNAME: return "set the hostname";
	case PROC_STAGE_PROC: return "mount /proc for the new pid namespace";
	case PROC_STAGE_SYS: return "mount /sys for the new network namespace";
	case PROC_STAGE_LOOPBACK: return "bring the loopback interface up";
	case PROC_STAGE_RLIMIT: return "apply an rlimit";
	case PROC_STAGE_FDS: return "set up descriptors";
	case PROC_STAGE_EXEC: return "execute the agent";
	default: return "start";
	}
}

struct proc_report {
	int stage;
	int err;
};

/* What the cloned child needs; it lives on the parent's stack until exec. */
struct proc_child {
	const struct vmm_spec *spec;
	char *const *argv;
	int console;   /* child's end of the socketpair */
	int report_wr; /* close-on-exec */
	int sync_rd;   /* parent writes one byte after the id maps, or closes */
	int agent_fd;  /* the agent binary, opened before pivot_root */
};

static void child_fail(const struct proc_child *c, int stage, int err)
{
	struct proc_report r = {stage, err};

	while (write(c->report_wr, &r, sizeof(r)) < 0 && errno == EINTR)
		;
	_exit(127);
}

static int loopback_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		rc = -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		rc = -1;
	close(fd);
	return rc;
}

/* dup2 that also clears close-on-exec when <fd> already is <to>. */
static int move_fd(int fd, int to)
{
	if (fd == to)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, to) < 0 ? -1 : 0;
}

static int child_main(void *arg)
{
	const struct proc_child *c = arg;
	const struct vmm_spec *s = c->spec;
	sigset_t none;
	char byte;
	int devnull;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* The daemon writes the id maps (user ns) or just lets us go; EOF = it died. */
	if (read(c->sync_rd, &byte, 1) != 1)
		child_fail(c, PROC_STAGE_SYNC, errno ? errno : EPIPE);
	if ((s->ns & VMM_NS_USER) && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
		child_fail(c, PROC_STAGE_IDS, errno);
	if ((s->ns & VMM_NS_MOUNT) && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(c, PROC_STAGE_MOUNT_PRIVATE, errno);
	if (s->root) {
		/* pivot_root needs a mount point: bind the directory onto itself. */
		if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) < 0)
			child_fail(c, PROC_STAGE_BIND_ROOT, errno);
		if (chdir(s->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
			umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
			child_fail(c, PROC_STAGE_PIVOT, errno);
	}
	if ((s->ns & VMM_NS_UTS) && s->name && sethostname(s->name, strlen(s->name)) < 0)
		child_fail(c, PROC_STAGE_HOSTNAME, errno);
	/* /proc and /sys show the namespaces of whoever mounted them: remount both. */
	if ((s->ns & VMM_NS_PID) &&
		mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		child_fail(c, PROC_STAGE_PROC, errno);
	if ((s->ns & VMM_NS_NET) &&
		mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		child_fail(c, PROC_STAGE_SYS, errno);
	if ((s->ns & VMM_NS_NET) && loopback_up() < 0)
		child_fail(c, PROC_STAGE_LOOPBACK, errno);
	for (size_t i = 0; i < s->nrlimits; i++) {
		struct rlimit rl = {
			.rlim_cur = s->rlimits[i].soft == UINT64_MAX ? RLIM_INFINITY
								      : (rlim_t)s->rlimits[i].soft,
			.rlim_max = s->rlimits[i].hard == UINT64_MAX ? RLIM_INFINITY
								      : (rlim_t)s->rlimits[i].hard,
		};

		if (setrlimit(s->rlimits[i].resource, &rl) < 0)
			child_fail(c, PROC_STAGE_RLIMIT, errno);
	}
	/* fd 0 and 1 from /dev/null (when it exists in the root), 2 the log, 3 the console. */
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (move_fd(c->console, 3) < 0 ||
		(devnull >= 0 && (move_fd(devnull, 0) < 0 || move_fd(devnull, 1) < 0)) ||
		(s->log_fd > 2 && move_fd(s->log_fd, 2) < 0))
		child_fail(c, PROC_STAGE_FDS, errno);
	/*
	 * Without a root the path still names the program: execve it, which also
	 * runs a script agent (execveat of a close-on-exec fd cannot: the
	 * interpreter would open /dev/fd/N after the exec closed it).
	 */
	if (!s->root)
		execve(c->argv[0], c->argv, environ);
	else
		syscall(SYS_execveat, c->agent_fd, "", c->argv, environ, AT_EMPTY_PATH);
	child_fail(c, PROC_STAGE_EXEC, errno);
	return 127;
}

static int write_file(pid_t pid, const char *name, const char *text)
{
	char path[64];
	int fd, rc = 0;
	size_t n = strlen(text);

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, text, n) != (ssize_t)n)
		rc = -errno;
	close(fd);
	return rc;
}

/* uid/gid maps: the daemon's ids become root inside. */
static int write_id_maps(pid_t pid, struct sw_err *err)
{
	char map[64];
	int rc;

	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getuid());
	if ((rc = write_file(pid, "uid_map", map)) < 0)
		return sw_err_sys(err, rc, "write uid_map");
	if ((rc = write_file(pid, "setgroups", "deny")) < 0 && rc != -ENOENT)
		return sw_err_sys(err, rc, "write setgroups");
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)getgid());
	if ((rc = write_file(pid, "gid_map", map)) < 0)
		return sw_err_sys(err, rc, "write gid_map");
	return 0;
}

static void reap(pid_t pid, int *wstatus)
{
	while (waitpid(pid, wstatus, __WALL) < 0 && errno == EINTR)
		;
}

static int process_start(const struct vmm_spec *spec, struct vmm_sandbox *sb, struct sw_err *err)
{
	char *argv[PROC_MAX_ARGS + 3];
	int sv[2] = {-1, -1}, rep[2] = {-1, -1}, syn[2] = {-1, -1};
	struct proc_child child;
	struct proc_report r;
	unsigned ns = spec->ns;
	int flags = SIGCHLD, rc, st;
	size_t n = 0;
	char *stack = NULL;
	ssize_t got;
	pid_t pid;

	memset(sb, 0, sizeof(*sb));
	sb->pid = -1;
	sb->console_fd = -1;
	if (!spec->agent_argv || !spec->agent_argv[0])
		return sw_err_set(err, -EINVAL, "no agent command given");
	if (ns & (VMM_NS_PID | VMM_NS_NET))
		ns |= VMM_NS_MOUNT; /* their /proc and /sys are remounted: keep that private */
	if (spec->root && !(ns & VMM_NS_MOUNT))
		return sw_err_set(err, -EINVAL,
			"a root directory needs a mount namespace (add \"mount\" to the namespaces)");
	while (spec->agent_argv[n] && n < PROC_MAX_ARGS)
		n++;
	memcpy(argv, spec->agent_argv, n * sizeof(*argv));
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n] = NULL;

	child = (struct proc_child){.spec = spec, .argv = argv, .agent_fd = -1};
	child.agent_fd = open(argv[0], O_PATH | O_CLOEXEC);
	if (child.agent_fd < 0) {
		rc = sw_err_sys(err, -errno, "agent `%s`", argv[0]);
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
		pipe2(rep, O_CLOEXEC) < 0 || pipe2(syn, O_CLOEXEC) < 0) {
		rc = sw_err_sys(err, -errno, "console and control pipes");
		goto out;
	}
	stack = malloc(PROC_STACK_SIZE);
	if (!stack) {
		rc = sw_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	child.console = sv[1];
	child.report_wr = rep[1];
	child.sync_rd = syn[0];
	flags |= (ns & VMM_NS_USER ? CLONE_NEWUSER : 0) | (ns & VMM_NS_PID ? CLONE_NEWPID : 0) |
		 (ns & VMM_NS_MOUNT ? CLONE_NEWNS : 0) | (ns & VMM_NS_NET ? CLONE_NEWNET : 0) |
		 (ns & VMM_NS_UTS ? CLONE_NEWUTS : 0) | (ns & VMM_NS_IPC ? CLONE_NEWIPC : 0);
	pid = clone(child_main, stack + PROC_STACK_SIZE, flags, &child);
	if (pid < 0) {
		rc = sw_err_sys(err, -errno, "clone with namespaces %#x", ns);
		goto out;
	}
	close(sv[1]);
	close(rep[1]);
	close(syn[0]);
	sv[1] = rep[1] = syn[0] = -1;
	if ((ns & VMM_NS_USER) && write_id_maps(pid, err) < 0) {
		close(syn[1]); /* the child sees EOF and gives up */
		syn[1] = -1;
		reap(pid, &st);
		rc = sw_err_wrap(err, "user namespace");
		goto out;
	}
	rc = write(syn[1], "g", 1) == 1 ? 0 : -errno;
	do
		got = read(rep[0], &r, sizeof(r));
	while (got < 0 && errno == EINTR);
	if (got != 0) {
		reap(pid, &st);
		if (got == (ssize_t)sizeof(r))
			rc = sw_err_sys(err, -r.err, "%s", stage_text(r.stage));
		else
			rc = sw_err_sys(err, rc ? rc : -EIO, "start the agent");
		if (r.stage == PROC_STAGE_EXEC && got == (ssize_t)sizeof(r))
			sw_err_wrap(err, "agent `%s`", argv[0]);
		goto out;
	}
	sb->backend = &vmm_process_backend;
	sb->pid = pid;
	sb->console_fd = sv[0];
	sv[0] = -1;
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (rep[i] >= 0)
			close(rep[i]);
		if (syn[i] >= 0)
			close(syn[i]);
	}
	if (child.agent_fd >= 0)
		close(child.agent_fd);
	free(stack);
	if (rc < 0)
		sw_err_wrap(err, "sandbox `%s`", spec->name ? spec->name : "?");
	return rc;
}

static int process_poll_exit(struct vmm_sandbox *sb)
{
	pid_t r;

	if (sb->exited)
		return 1;
	r = waitpid(sb->pid, &sb->wstatus, WNOHANG | __WALL);
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	sb->exited = true;
	return 1;
}

static int process_stop(struct vmm_sandbox *sb, int grace_ms)
{
	struct timespec step = {0, 5 * 1000 * 1000};

	if (sb->pid > 0 && !sb->exited) {
		kill(sb->pid, SIGTERM);
		for (int waited = 0; waited < grace_ms; waited += 5) {
			if (process_poll_exit(sb) != 0)
				break;
			nanosleep(&step, NULL);
		}
		if (!sb->exited) {
			kill(sb->pid, SIGKILL);
			reap(sb->pid, &sb->wstatus);
			sb->exited = true;
		}
	}
	if (sb->console_fd >= 0)
		close(sb->console_fd);
	sb->console_fd = -1;
	return 0;
}

const struct vmm_backend vmm_process_backend = {
	.name = "process",
	.start = process_start,
	.poll_exit = process_poll_exit,
	.stop = process_stop,
};

const struct vmm_backend *vmm_backend_find(const char *name)
{
	if (strcmp(name, vmm_process_backend.name) == 0)
		return &vmm_process_backend;
	return NULL;
}

int vmm_parse_namespaces(const char *list, unsigned *ns, struct sw_err *err)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{"user", VMM_NS_USER}, {"pid", VMM_NS_PID}, {"mount", VMM_NS_MOUNT},
		{"net", VMM_NS_NET}, {"uts", VMM_NS_UTS}, {"ipc", VMM_NS_IPC},
		{"all", VMM_NS_ALL}, {"none", 0},
	};
	const char *p = list;

	*ns = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		size_t i;

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == len && strncmp(p, names[i].name, len) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0]))
			return sw_err_set(err, -EINVAL,
				"unknown namespace `%.*s` (use user, pid, mount, net, uts, ipc, all "
				"or none, separated by commas)", (int)len, p);
		*ns |= names[i].bit;
		p += len + (p[len] == ',');
	}
	return 0;
}
