/*
 * tests/agent/test_transport.c - console discovery and fd adoption.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/transport.h"

static void make_port(const char *root, const char *entry, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/class/virtio-ports/%s", root, entry);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/class/virtio-ports/%s/name", root, entry);
	cr_assert_not_null(f = fopen(path, "w"));
	fprintf(f, "%s\n", name);
	fclose(f);
}

Test(agent_transport, finds_the_port_named_agent)
{
	char root[] = "/tmp/sw-sysfs-XXXXXX", path[512], dev[64];

	cr_assert_not_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/class", root);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/class/virtio-ports", root);
	cr_assert_eq(mkdir(path, 0755), 0);
	make_port(root, "vport0p1", "console-log");
	make_port(root, "vport0p2", "agent");
	make_port(root, "vport0p3", "agentx");

	cr_assert_eq(agent_transport_find_port(root, "agent", dev, sizeof(dev)), 0);
	cr_assert_str_eq(dev, "/dev/vport0p2");
	cr_assert_eq(agent_transport_find_port(root, "missing", dev, sizeof(dev)), -ENOENT);
	cr_assert_eq(agent_transport_find_port(root, "agent", dev, 8), -ENAMETOOLONG);
	cr_assert_eq(agent_transport_find_port("/nonexistent", "agent", dev, sizeof(dev)), -ENOENT);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	cr_assert_eq(system(path), 0);
}

Test(agent_transport, adopts_an_inherited_socket_as_blocking_cloexec)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cr_assert_eq(agent_transport_adopt_fd(sv[0]), sv[0]);
	cr_assert_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
	cr_assert(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(agent_transport_adopt_fd(sv[0]), -EBADF);
}

Test(agent_transport, opens_a_device_read_write_cloexec)
{
	int fd = agent_transport_open_port("/dev/null");

	cr_assert_geq(fd, 0);
	cr_assert_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	cr_assert_eq(agent_transport_open_port("/nonexistent/port"), -ENOENT);
}
