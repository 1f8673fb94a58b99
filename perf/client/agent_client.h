/*
 * perf/client/agent_client.h - a minimal host for sandwire-agent (or any
 * agent speaking the protocol): spawn it on a socketpair, run the boot
 * sequence, send messages, receive decoded frames.  Used by the
 * benchmarks and, wrapped with assertions, by the tests
 * (tests/support/agent_harness.h).  Blocking, one thread.
 *
 * Every function returns 0 (or a positive count) or a negative errno /
 * proto code; agent_client_strerror-style text comes from proto_strerror().
 */
#ifndef SW_PERF_AGENT_CLIENT_H
#define SW_PERF_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/frame.h"
#include "proto/msg.h"

#define AGENT_CLIENT_ARENA (1u << 20)

struct agent_client {
	pid_t pid;             /* the agent process, or -1 */
	int fd;                /* host end of the console */
	uint8_t *buf;          /* receive buffer: one maximal frame + one read */
	size_t cap, off, len;
	uint8_t *arena_mem;
	struct proto_arena arena;
	struct proto_frame frame; /* last frame received */
	struct proto_msg msg;     /* ... and its decoded message */
	struct proto_errinfo ei;  /* why the last decode failed */
	uint8_t *out;             /* encode buffer, one maximal frame */
};

/*
 * Start <argv> (argv[0] is the program) with the console socket as
 * descriptor 3.  Returns 0 or -errno.
 */
int agent_client_spawn(struct agent_client *c, const char *const *argv);
/*
 * Use an existing console: <fd> (ownership passes to the client) to an
 * agent that someone else started (pid -1: the client waits for nothing on
 * close).  Returns 0 or -ENOMEM.
 */
int agent_client_attach(struct agent_client *c, int fd, pid_t pid);
/* Send one message; returns the frame size or a negative code. */
long agent_client_send(struct agent_client *c, uint32_t id, const struct proto_msg *m);
/* Send raw bytes.  Returns 0 or -errno. */
int agent_client_send_raw(struct agent_client *c, const void *p, size_t n);
/*
 * Receive the next frame into c->frame / c->msg (valid until the next
 * call).  Returns 1, 0 on timeout, -EPIPE on EOF, or a negative code for a
 * bad frame (c->ei says where).
 */
int agent_client_recv(struct agent_client *c, int timeout_ms);
/* Boot sequence: bootstrap -> init.resolved -> init.ack -> ready.  Returns 0 or < 0. */
int agent_client_boot(struct agent_client *c, int timeout_ms);
/* Close the console and wait for the agent (SIGKILL after <grace_ms>); returns its wait status. */
int agent_client_close(struct agent_client *c, int grace_ms);

#endif /* SW_PERF_AGENT_CLIENT_H */
