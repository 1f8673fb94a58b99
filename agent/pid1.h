/*
 * agent/pid1.h - duties of sandwire-agent when it is the guest's init.
 *
 * As PID 1 the agent mounts the kernel filesystems a command expects
 * (proc, sys, devtmpfs, devpts, tmpfs on /tmp and /run), reaps every
 * orphan (the event loop's SIGCHLD handling reaps with waitpid(-1)), and
 * never exits by accident: on a framing error it reopens its port and waits
 * for a new core.bootstrap (design/wire.md).
 */
#ifndef SW_AGENT_PID1_H
#define SW_AGENT_PID1_H

#include <stddef.h>

/*
 * Mount the standard filesystems under <root> ("/" as init; a scratch
 * directory in tests).  Each target directory is created when missing; a
 * target that is already a mount point of the right kind is left alone.
 * Every failure is described in <err> (first one wins) and counted; the
 * others are still attempted.  Returns the number of failures (0 = all
 * mounted).
 */
int agent_pid1_mount_all(const char *root, char *err, size_t errcap);

#endif /* SW_AGENT_PID1_H */
