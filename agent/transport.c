/*
 * agent/transport.c - find and open the console channel (see transport.h).
 */
#include "agent/transport.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Read a small file and strip trailing whitespace.  Returns its length or -errno. */
static int read_trimmed(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\t' ||
			 buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	return (int)n;
}

int agent_transport_find_port(const char *sysfs, const char *name, char *dev, size_t cap)
{
	char dir[512], path[1024], value[256];
	struct dirent *de;
	DIR *d;
	int rc = -ENOENT;

	snprintf(dir, sizeof(dir), "%s/class/virtio-ports", sysfs);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s/name", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (read_trimmed(path, value, sizeof(value)) < 0 || strcmp(value, name) != 0)
			continue;
		rc = snprintf(dev, cap, "/dev/%s", de->d_name) >= (int)cap ? -ENAMETOOLONG : 0;
		break;
	}
	closedir(d);
	return rc;
}

int agent_transport_open_port(const char *path)
{
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int agent_transport_adopt_fd(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return fd;
}
