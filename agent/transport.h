/*
 * agent/transport.h - how sandwire-agent reaches its host: the console
 * channel is one byte stream, from an inherited socket (--fd N, the process
 * backend and tests), a character device (--port PATH), or, as PID 1 with
 * neither, the virtio-console port named "agent" (spec 1.1).
 */
#ifndef SW_AGENT_TRANSPORT_H
#define SW_AGENT_TRANSPORT_H

#include <stddef.h>

#define AGENT_PORT_NAME "agent"

/*
 * Find the virtio port called <name> under <sysfs> (normally "/sys"): scans
 * <sysfs>/class/virtio-ports/<entry>/name for a file whose trimmed content is
 * <name> and writes "/dev/<entry>" into <dev>.  Returns 0, -ENOENT when no
 * port has that name, -ENAMETOOLONG, or another negative errno.
 */
int agent_transport_find_port(const char *sysfs, const char *name, char *dev, size_t cap);

/*
 * Open a console device once, read+write, close-on-exec (a second open of a
 * virtio port fails with EBUSY).  Returns the fd or -errno.
 *
 * Console fds stay blocking: the agent drives them through io_uring, which
 * waits for readiness itself, while an O_NONBLOCK fd would make io_uring
 * complete reads with -EAGAIN.
 */
int agent_transport_open_port(const char *path);

/*
 * Adopt an inherited descriptor: checks it is open, makes it blocking (see
 * above) and close-on-exec (so exec'd commands do not inherit the console).
 * Returns <fd> or -errno (-EBADF when it is not open).
 */
int agent_transport_adopt_fd(int fd);

#endif /* SW_AGENT_TRANSPORT_H */
