/*
 * agent/pid1.c - init duties: the kernel filesystems (see pid1.h).
 */
#include "agent/pid1.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

struct pid1_mount {
	const char *source;
	const char *target; /* relative to the root */
	const char *fstype;
	unsigned long flags;
	const char *data;
	long magic;         /* statfs f_type when already mounted */
};

/* Order matters: /dev before /dev/pts. */
static const struct pid1_mount pid1_mounts[] = {
	{"proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, PROC_SUPER_MAGIC},
	{"sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, SYSFS_MAGIC},
	{"devtmpfs", "dev", "devtmpfs", MS_NOSUID, "mode=0755", TMPFS_MAGIC},
	{"devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620",
		DEVPTS_SUPER_MAGIC},
	{"tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC},
	{"tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", TMPFS_MAGIC},
};

/* True when <path> is the root of a mount (its device differs from its parent's). */
static int is_mount_point(const char *path)
{
	char parent[1100];
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(path, &a) < 0 || stat(parent, &b) < 0)
		return 0;
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

int agent_pid1_mount_all(const char *root, char *err, size_t errcap)
{
	int failures = 0;

	if (errcap)
		err[0] = '\0';
	for (size_t i = 0; i < sizeof(pid1_mounts) / sizeof(pid1_mounts[0]); i++) {
		const struct pid1_mount *m = &pid1_mounts[i];
		char target[1024];
		struct statfs sfs;

		snprintf(target, sizeof(target), "%s/%s", strcmp(root, "/") ? root : "", m->target);
		if (mkdir(target, 0755) < 0 && errno != EEXIST)
			goto fail;
		if (is_mount_point(target) && statfs(target, &sfs) == 0 && sfs.f_type == m->magic)
			continue;
		if (mount(m->source, target, m->fstype, m->flags, m->data) == 0)
			continue;
fail:
		if (failures++ == 0 && errcap)
			snprintf(err, errcap, "mount %s on `%s`: %s", m->fstype, target,
				strerror(errno));
	}
	return failures;
}
