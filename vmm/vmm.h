/*
 * vmm/vmm.h - sandbox backends: each gives the engine a console fd (a
 * byte stream to the agent inside) and a lifecycle.
 *
 *   struct vmm_spec spec = {.name = "web", .agent_argv = argv};
 *   struct vmm_sandbox sb;
 *   struct sw_err err = {0};
 *   const struct vmm_backend *b = vmm_backend_find("process");
 *   if (b->start(&spec, &sb, &err) < 0) ... err.msg says why and what to do
 *   ... the engine speaks the protocol on sb.console_fd ...
 *   b->stop(&sb, 2000);   SIGTERM, then SIGKILL after the grace period, reaped
 *
 * Backends today: "process" (the agent as a child process on a socketpair,
 * optionally in fresh namespaces with its own root).  "qemu" (a microVM
 * whose /init is the agent) plugs in beside it.
 *
 * Thread: a backend's functions run on the engine's control thread.  The
 * process backend sets PR_SET_PDEATHSIG, which fires when the *thread*
 * that started the sandbox exits, so that thread must live as long as the
 * daemon.
 */
#ifndef SW_VMM_VMM_H
#define SW_VMM_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/err.h"

/* Namespaces the process backend can give a sandbox (vmm_spec.ns). */
#define VMM_NS_USER 0x01u  /* user namespace; the daemon's uid/gid map to root inside */
#define VMM_NS_PID 0x02u   /* the agent is PID 1 with its own /proc (implies VMM_NS_MOUNT) */
#define VMM_NS_MOUNT 0x04u /* private mounts (required by a root directory) */
#define VMM_NS_NET 0x08u   /* only loopback, brought up; own /sys (implies VMM_NS_MOUNT) */
#define VMM_NS_UTS 0x10u   /* hostname = the sandbox name */
#define VMM_NS_IPC 0x20u
#define VMM_NS_ALL 0x3fu

/* One resource limit for the agent (and so for everything it starts). */
struct vmm_rlimit {
	int resource; /* RLIMIT_* */
	uint64_t soft, hard;
};

struct vmm_spec {
	const char *name;              /* sandbox name: logs, hostname in a UTS namespace */
	const char *const *agent_argv; /* agent command; "--fd 3" is appended, the console is fd 3 */
	unsigned ns;                   /* VMM_NS_* */
	const char *root;              /* directory to pivot_root into (needs VMM_NS_MOUNT), or NULL
					* to use the host's filesystem */
	const struct vmm_rlimit *rlimits;
	size_t nrlimits;
	int log_fd;                    /* the agent's stderr when > 2; else the daemon's is inherited */
};

/* owner: the engine's control thread. */
struct vmm_sandbox {
	const struct vmm_backend *backend;
	pid_t pid;       /* process backend: the agent (PID 1 of its namespace with VMM_NS_PID) */
	int console_fd;  /* host end of the console: read+write, close-on-exec, blocking */
	bool exited;     /* reaped */
	int wstatus;     /* valid once exited */
};

struct vmm_backend {
	const char *name;
	/* Start a sandbox; fills <sb>.  Returns 0, or < 0 with <err> set. */
	int (*start)(const struct vmm_spec *spec, struct vmm_sandbox *sb, struct sw_err *err);
	/*
	 * Reap without blocking: returns 1 once the sandbox has exited (sb->wstatus
	 * set), 0 while it runs, < 0 on error.
	 */
	int (*poll_exit)(struct vmm_sandbox *sb);
	/*
	 * Stop: SIGTERM, SIGKILL after <grace_ms>, reaped; closes the console.
	 * Returns 0 or < 0.  Safe on a sandbox that already exited.
	 */
	int (*stop)(struct vmm_sandbox *sb, int grace_ms);
};

extern const struct vmm_backend vmm_process_backend;

/* The backend called <name>, or NULL (names: "process"). */
const struct vmm_backend *vmm_backend_find(const char *name);

/*
 * Parse "user,pid,mount,net,uts,ipc" or "all" or "none" into VMM_NS_* bits.
 * Returns 0, or < 0 with <err> naming the unknown word and the valid ones.
 */
int vmm_parse_namespaces(const char *list, unsigned *ns, struct sw_err *err);

#endif /* SW_VMM_VMM_H */
