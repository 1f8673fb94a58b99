/*
 * tests/agent/test_pid1.c - init mounts, done in a private mount namespace
 * under a scratch root so the host is untouched.
 */
#include <criterion/criterion.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include "agent/pid1.h"

/* Child: 0 = every mount present with the right type, twice in a row. */
static int check_in_namespace(const char *root)
{
	static const struct {
		const char *dir;
		long magic;
	} want[] = {
		{"proc", PROC_SUPER_MAGIC}, {"sys", SYSFS_MAGIC}, {"dev", TMPFS_MAGIC},
		{"dev/pts", DEVPTS_SUPER_MAGIC}, {"tmp", TMPFS_MAGIC}, {"run", TMPFS_MAGIC},
	};
	char err[256], path[512];
	struct statfs s;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 77;
	if (agent_pid1_mount_all(root, err, sizeof(err)) != 0) {
		fprintf(stderr, "first pass: %s\n", err);
		return 1;
	}
	if (agent_pid1_mount_all(root, err, sizeof(err)) != 0) { /* idempotent: nothing stacked */
		fprintf(stderr, "second pass: %s\n", err);
		return 2;
	}
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, want[i].dir);
		if (statfs(path, &s) < 0 || s.f_type != want[i].magic) {
			fprintf(stderr, "%s: wrong filesystem\n", path);
			return 3;
		}
	}
	snprintf(path, sizeof(path), "%s/proc/self/status", root);
	return access(path, R_OK) == 0 ? 0 : 4;
}

Test(agent_pid1, mounts_the_kernel_filesystems_once)
{
	char root[] = "/tmp/sw-root-XXXXXX";
	int st;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("needs root for a private mount namespace");
	cr_assert_not_null(mkdtemp(root));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(check_in_namespace(root));
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		cr_skip_test("mount namespaces are not available here");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	/* The namespace died with the child; only empty directories remain. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -r '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

Test(agent_pid1, reports_the_first_failure_with_its_cause)
{
	char err[256];
	int n = agent_pid1_mount_all("/nonexistent-sw-root/x", err, sizeof(err));

	cr_assert_eq(n, 6);
	cr_assert_not_null(strstr(err, "mount proc on `/nonexistent-sw-root/x/proc`"), "%s", err);
	cr_assert_not_null(strstr(err, "No such file or directory"), "%s", err);
}
