/*
 * tests/vmm/test_process.c - the process backend: a real sandwire-agent
 * started on a socketpair, with and without namespaces and a root
 * directory, driven over its console with the agent client.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perf/client/agent_client.h"
#include "vmm/vmm.h"

static const char *agent_argv[] = {SW_AGENT_BIN, "--heartbeat-dir", "/nonexistent", NULL};

static void start(struct vmm_sandbox *sb, const struct vmm_spec *spec)
{
	struct sw_err err = {0};
	int rc = vmm_process_backend.start(spec, sb, &err);

	cr_assert_eq(rc, 0, "start: %s", err.msg);
	cr_assert_gt(sb->pid, 0);
	cr_assert_geq(sb->console_fd, 0);
}

/* Boot the agent over the sandbox's console and run one shell command; returns its stdout. */
static void run(struct vmm_sandbox *sb, const char *script, char *out, size_t cap, int *code)
{
	struct agent_client c;
	struct proto_str args[] = {{"-c", 2}, {script, strlen(script)}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	size_t len = 0;
	int fd = dup(sb->console_fd), rc;

	cr_assert_eq(agent_client_attach(&c, fd, -1), 0);
	rc = agent_client_boot(&c, 10000);
	cr_assert_eq(rc, 0, "boot: %s", proto_strerror(rc));
	m.u.exec_request.cmd = (struct proto_str){"sh", 2};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	cr_assert_gt(agent_client_send(&c, 1, &m), 0);
	for (;;) {
		cr_assert_eq(agent_client_recv(&c, 10000), 1);
		if (c.msg.type == PROTO_T_EXEC_STDOUT && len + c.msg.u.data.len < cap) {
			memcpy(out + len, c.msg.u.data.ptr, c.msg.u.data.len);
			len += c.msg.u.data.len;
		} else if (c.msg.type == PROTO_T_EXEC_EXITED) {
			*code = c.msg.u.exec_exited.code;
			break;
		} else if (c.msg.type == PROTO_T_EXEC_FAILED) {
			cr_assert_fail("exec failed: %.*s", (int)c.msg.u.exec_failed.message.len,
				c.msg.u.exec_failed.message.ptr);
		}
	}
	out[len] = '\0';
	agent_client_close(&c, 0);
}

static void stop(struct vmm_sandbox *sb)
{
	cr_assert_eq(vmm_process_backend.stop(sb, 2000), 0);
	cr_assert(sb->exited);
	cr_assert_eq(sb->console_fd, -1);
}

Test(vmm_process, runs_the_agent_on_a_socketpair)
{
	struct vmm_spec spec = {.name = "plain", .agent_argv = agent_argv};
	struct vmm_sandbox sb;
	char out[256];
	int code;

	start(&sb, &spec);
	cr_assert_eq(vmm_process_backend.poll_exit(&sb), 0, "the agent is running");
	run(&sb, "echo hello from $(cat /proc/self/comm)", out, sizeof(out), &code);
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out, "hello from cat\n");
	stop(&sb);
}

Test(vmm_process, isolates_pid_uts_net_and_ipc)
{
	struct vmm_spec spec = {
		.name = "isolated",
		.agent_argv = agent_argv,
		.ns = VMM_NS_PID | VMM_NS_MOUNT | VMM_NS_UTS | VMM_NS_NET | VMM_NS_IPC,
	};
	struct vmm_sandbox sb;
	char out[256];
	int code;

	if (geteuid() != 0)
		cr_skip_test("namespaces need root here");
	start(&sb, &spec);
	/* The agent is PID 1, so the shell is its first child; only loopback exists. */
	run(&sb, "echo $$; hostname; ls /sys/class/net", out, sizeof(out), &code);
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out, "2\nisolated\nlo\n");
	stop(&sb);
}

Test(vmm_process, maps_the_daemon_to_root_in_a_user_namespace)
{
	struct vmm_spec spec = {.name = "userns", .agent_argv = agent_argv, .ns = VMM_NS_USER};
	struct vmm_sandbox sb;
	char out[256], want[64];
	int code;

	if (geteuid() != 0)
		cr_skip_test("needs root to map uid 0");
	start(&sb, &spec);
	run(&sb, "id -u; cat /proc/self/uid_map | tr -s ' '", out, sizeof(out), &code);
	cr_assert_eq(code, 0);
	snprintf(want, sizeof(want), "0\n 0 %u 1\n", (unsigned)getuid());
	cr_assert_str_eq(out, want, "got %s", out);
	stop(&sb);
}

Test(vmm_process, pivots_into_a_root_directory)
{
	char root[] = "/tmp/sw-root-XXXXXX", path[256];
	static const char *const dirs[] = {"usr", "proc", "sys", "dev", "tmp", "run"};
	static const char *const links[][2] = {
		{"usr/bin", "bin"}, {"usr/lib", "lib"}, {"usr/lib64", "lib64"}, {"usr/sbin", "sbin"}};
	struct vmm_spec spec = {
		.name = "rooted", .agent_argv = agent_argv, .ns = VMM_NS_PID | VMM_NS_MOUNT,
	};
	struct vmm_sandbox sb;
	char out[512];
	int code;

	if (geteuid() != 0)
		cr_skip_test("needs root to bind-mount /usr");
	cr_assert_not_null(mkdtemp(root));
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
		cr_assert_eq(mkdir(path, 0755), 0);
	}
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, links[i][1]);
		cr_assert_eq(symlink(links[i][0], path), 0);
	}
	snprintf(path, sizeof(path), "%s/usr", root);
	cr_assert_eq(mount("/usr", path, NULL, MS_BIND | MS_RDONLY, NULL), 0);
	spec.root = root;
	start(&sb, &spec);
	/* The agent binary was opened before pivot_root: it need not exist in the root. */
	run(&sb, "ls /; test -e /work && echo host-visible || echo sealed", out, sizeof(out), &code);
	stop(&sb);
	umount2(path, MNT_DETACH);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	cr_assert_eq(system(path), 0);
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out, "bin\ndev\nlib\nlib64\nproc\nrun\nsbin\nsys\ntmp\nusr\nsealed\n",
		"got %s", out);
}

Test(vmm_process, applies_rlimits_to_the_agent_and_its_commands)
{
	struct vmm_rlimit rl = {RLIMIT_NOFILE, 321, 654};
	struct vmm_spec spec = {.name = "limits", .agent_argv = agent_argv, .rlimits = &rl, .nrlimits = 1};
	struct vmm_sandbox sb;
	char out[64];
	int code;

	start(&sb, &spec);
	run(&sb, "ulimit -n; ulimit -Hn", out, sizeof(out), &code);
	cr_assert_str_eq(out, "321\n654\n");
	stop(&sb);
}

Test(vmm_process, explains_what_failed)
{
	static const char *missing[] = {"/nonexistent/sandwire-agent", NULL};
	struct vmm_spec spec = {.name = "broken", .agent_argv = missing};
	struct vmm_sandbox sb;
	struct sw_err err = {0};

	cr_assert_lt(vmm_process_backend.start(&spec, &sb, &err), 0);
	cr_assert_eq(err.status, -ENOENT);
	cr_assert_str_eq(err.msg,
		"sandbox `broken`: agent `/nonexistent/sandwire-agent`: No such file or directory");

	spec = (struct vmm_spec){.name = "noroot", .agent_argv = agent_argv, .root = "/srv"};
	err = (struct sw_err){0};
	cr_assert_eq(vmm_process_backend.start(&spec, &sb, &err), -EINVAL);
	cr_assert(strstr(err.msg, "needs a mount namespace"), "%s", err.msg);

	if (geteuid() == 0) {
		spec = (struct vmm_spec){
			.name = "badroot", .agent_argv = agent_argv, .ns = VMM_NS_MOUNT,
			.root = "/nonexistent-root",
		};
		err = (struct sw_err){0};
		cr_assert_eq(vmm_process_backend.start(&spec, &sb, &err), -ENOENT);
		cr_assert_str_eq(err.msg,
			"sandbox `badroot`: bind-mount the root directory: No such file or directory");
		/* The failed child was reaped: no zombie is left. */
		cr_assert_eq(waitpid(-1, NULL, WNOHANG | __WALL), -1);
	}
}

static void *start_and_exit(void *arg)
{
	struct vmm_spec spec = {.name = "orphan", .agent_argv = agent_argv};

	start(arg, &spec);
	return NULL;
}

Test(vmm_process, the_sandbox_dies_with_the_thread_that_started_it)
{
	struct vmm_sandbox sb;
	pthread_t t;
	int i;

	/* PR_SET_PDEATHSIG follows the starting thread: the daemon's control
	 * thread must live as long as the daemon (vmm.h). */
	pthread_create(&t, NULL, start_and_exit, &sb);
	pthread_join(t, NULL);
	for (i = 0; i < 400 && vmm_process_backend.poll_exit(&sb) == 0; i++)
		usleep(5000);
	cr_assert(sb.exited, "agent still running after its starting thread exited");
	cr_assert(WIFSIGNALED(sb.wstatus) && WTERMSIG(sb.wstatus) == SIGKILL);
	stop(&sb);
}

Test(vmm_process, parses_namespace_lists)
{
	struct sw_err err = {0};
	unsigned ns;

	cr_assert_eq(vmm_parse_namespaces("pid,net", &ns, &err), 0);
	cr_assert_eq(ns, VMM_NS_PID | VMM_NS_NET);
	cr_assert_eq(vmm_parse_namespaces("all", &ns, &err), 0);
	cr_assert_eq(ns, VMM_NS_ALL);
	cr_assert_eq(vmm_parse_namespaces("none", &ns, &err), 0);
	cr_assert_eq(ns, 0);
	cr_assert_eq(vmm_parse_namespaces("pid,cgroup", &ns, &err), -EINVAL);
	cr_assert(strstr(err.msg, "unknown namespace `cgroup`"), "%s", err.msg);
	cr_assert_not_null(vmm_backend_find("process"));
	cr_assert_null(vmm_backend_find("firecracker"));
}
