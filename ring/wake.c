/*
 * ring/wake.c - eventfd wake helper with the armed protocol (see wake.h).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ring/wake.h"

int ring_wake_init(struct ring_wake *w)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	w->fd = fd;
	/* not atomic: <w> is not shared yet; whatever shares it orders this */
	atomic_init(&w->sleeping, 0);
	return 0;
}

void ring_wake_destroy(struct ring_wake *w)
{
	/* no retry on EINTR: on Linux the fd is released anyway */
	close(w->fd);
	w->fd = -1;
}

int ring_wake_fd(const struct ring_wake *w)
{
	return w->fd;
}

int ring_wake_signal(struct ring_wake *w)
{
	uint64_t one = 1;
	ssize_t n;

	do
		n = write(w->fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		/* EAGAIN: the counter is at its maximum, which already reads as signalled */
		return errno == EAGAIN ? 0 : -errno;
	return 0;
}

int ring_wake_drain(struct ring_wake *w)
{
	uint64_t count;
	ssize_t n;

	do
		n = read(w->fd, &count, sizeof(count));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return count > INT_MAX ? INT_MAX : (int)count;
}

void ring_wake_arm(struct ring_wake *w)
{
	/*
	 * acquire RMW: if a producer's notify came first, we read its release
	 * (sequence) and our re-check sees its push; if it comes later, it
	 * reads our 1 and signals.  See wake.h.
	 */
	atomic_exchange_explicit(&w->sleeping, 1, memory_order_acquire);
}

void ring_wake_disarm(struct ring_wake *w)
{
	/*
	 * acquire RMW, not a plain store: it keeps the producers' release
	 * sequence intact and acquires the pushes of producers that found 0
	 * and did not signal.  See wake.h.
	 */
	atomic_exchange_explicit(&w->sleeping, 0, memory_order_acquire);
}

int ring_wake_notify(struct ring_wake *w)
{
	int ret;

	/*
	 * release RMW: publishes our push to the consumer's next arm or
	 * disarm (both acquire RMWs); reading 1 means it may be blocked.
	 * Clearing the flag spares other producers a redundant write(2).
	 */
	if (atomic_exchange_explicit(&w->sleeping, 0, memory_order_release) == 0)
		return 0;
	ret = ring_wake_signal(w);
	return ret < 0 ? ret : 1;
}

int ring_wake_wait(struct ring_wake *w, int timeout_ms)
{
	struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
	int n, ret;

	n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return 0;
	ret = ring_wake_drain(w);
	if (ret < 0)
		return ret;
	return 1;
}
