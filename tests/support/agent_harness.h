/*
 * tests/support/agent_harness.h - a host for tests: drives a real
 * sandwire-agent process over a socketpair with the proto/ codec.
 *
 *   struct ah h;
 *   ah_start(&h, NULL);            fork+exec sandwire-agent --fd 3
 *   ah_boot(&h);                   bootstrap -> init.resolved -> init.ack -> ready
 *   ah_exec(&h, 1, false, "sh", "-c", "echo hi", NULL);
 *   struct ah_exec_result r;
 *   ah_exec_wait(&h, 1, &r);       collects stdout/stderr until exited/failed
 *   ah_stop(&h);                   closes the console, returns the exit status
 *
 * ah_recv() returns every frame in order; a frame and its decoded message
 * stay valid until the next ah_recv().  Frames for ids a test is not
 * waiting on are kept in no queue: ah_exec_wait() and friends fail the test
 * if a frame for another id arrives, unless the test uses ah_recv() itself.
 * All functions fail the current Criterion test on error.
 */
#ifndef SW_TESTS_AGENT_HARNESS_H
#define SW_TESTS_AGENT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "perf/client/agent_client.h"
#include "proto/frame.h"
#include "proto/msg.h"

/* The client state; the harness only adds assertions. */
struct ah {
	struct agent_client c;
	struct proto_frame frame; /* last frame returned by ah_recv (copy of c.frame) */
	struct proto_msg msg;     /* ... and its message */
};

struct ah_exec_result {
	char *out;        /* malloc'd, NUL-terminated (binary safe with out_len) */
	size_t out_len;
	char *err;
	size_t err_len;
	bool exited;      /* exec.exited (else exec.failed) */
	int code;         /* exited.code */
	int signal;       /* exited.signal, 0 when absent */
	bool started;
	uint32_t pid;
	char fail_kind[64];   /* exec.failed kind */
	char fail_stage[64];
	int fail_errno;
};

/* Path of the agent binary under test. */
const char *ah_agent_path(void);
/*
 * Start the agent (extra arguments after --fd 3, NULL-terminated, may be
 * NULL).  The words of env SW_AGENT_EXTRA_ARGS (space-separated) go before
 * <extra>.
 */
void ah_start(struct ah *h, const char *const *extra);
/* Run the boot sequence; fails the test unless ready arrives (v 7, sandwire/ version). */
void ah_boot(struct ah *h);
/*
 * The boot sequence of a host that writes generation <v> on its frames
 * (bootstrap and init.ack); leaves core.ready in h->msg.
 */
void ah_boot_as(struct ah *h, uint8_t v);
/* Remove directory tree <dir> (a test's scratch directory), links not followed. */
void ah_rm_tree(const char *dir);
/* Send one message on <id>.  Returns the frame size. */
size_t ah_send(struct ah *h, uint32_t id, const struct proto_msg *m);
/* Send raw bytes (malformed frames). */
void ah_send_raw(struct ah *h, const void *p, size_t n);
/*
 * Next frame, decoded into h->msg (decode errors fail the test).  Returns
 * false on timeout or EOF when <allow_eof>; fails the test otherwise.
 */
bool ah_recv(struct ah *h, int timeout_ms, bool allow_eof);
/* Send exec.request (pipe mode unless <tty>) for a NULL-terminated argv. */
void ah_exec(struct ah *h, uint32_t id, bool tty, const char *cmd, ...);
/* Send exec.stdin with <n> bytes (n = 0: EOF); returns the frame size. */
size_t ah_stdin(struct ah *h, uint32_t id, const void *p, size_t n);
/*
 * Collect a session's frames until exec.exited/failed.  <r> must be
 * initialised; set r->started when the test already consumed exec.started.
 */
void ah_exec_wait(struct ah *h, uint32_t id, struct ah_exec_result *r);
void ah_exec_result_free(struct ah_exec_result *r);
/* Close the console and wait for the agent; returns its wait status. */
int ah_stop(struct ah *h);
/* ah_start + ah_boot, and ah_stop expecting exit status 0: suite fixtures. */
void ah_start_booted(struct ah *h);
void ah_stop_ok(struct ah *h);
/* Send a data message (exec.stdin, tcp.data, fs.data) or an empty-map one (tcp.eof ...). */
size_t ah_send_data(struct ah *h, uint32_t id, enum proto_type t, const void *p, size_t n);
/* Receive the next frame and require it to be <t> on <id>. */
void ah_expect(struct ah *h, uint32_t id, enum proto_type t, int timeout_ms);

#endif /* SW_TESTS_AGENT_HARNESS_H */
