/*
 * tests/support/daemon_harness.h - run the real sandwired for integration
 * tests: a child process with its own socket, agent.sock home and log in a
 * temporary directory, real sandwire-agent sandboxes, and helpers to
 * manage sandboxes, attach, run commands and read the daemon's counters.
 *
 *   struct dh d;
 *   dh_start(&d, 2, (const char *[]){"--grace", "500", NULL});
 *   struct engine_info in;
 *   dh_create(&d, "box", NULL, 0, &in);
 *   struct agent_client ac;
 *   uint32_t lo, hi;
 *   dh_attach(&d, "box", &ac, &lo, &hi);
 *   struct dh_exec x;
 *   dh_exec_run(&ac, lo, (const char *[]){"/bin/sh", "-c", "echo hi", NULL}, &x);
 *   ... x.out / x.code ...
 *   dh_exec_free(&x);
 *   agent_client_close(&ac, 0);
 *   dh_stop(&d);             SIGTERM; exit status 0 (no chunk leak), no sanitizer report
 *
 * The daemon runs with PR_SET_PDEATHSIG, so a failed test (its process
 * ends) takes the daemon and its sandboxes with it.  Every function fails
 * the current Criterion test on error, and must run on the test's thread;
 * the pattern and dh_tcpsrv helpers are thread-safe and never assert.
 */
#ifndef SW_TESTS_DAEMON_HARNESS_H
#define SW_TESTS_DAEMON_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/api.h"
#include "engine/swclient.h"
#include "perf/client/agent_client.h"

#define DH_SHARDS_MAX 16u

/* One running daemon. */
struct dh {
	pid_t pid; /* sandwired, or -1 once stopped */
	unsigned nshards;
	char dir[64];	    /* the temporary directory holding everything below */
	char sock[128];	    /* --socket */
	char msb_home[128]; /* --msb-home */
	char log[128];	    /* the daemon's stderr (and its agents') */
	struct swc ctl;	    /* a management connection kept open for the test's calls */
};

/* What one exec session produced. */
struct dh_exec {
	uint32_t id;
	bool started; /* exec.started seen */
	uint32_t pid; /* ... its pid */
	char *out;    /* stdout, malloc'd, NUL-terminated */
	size_t out_len;
	size_t err_len; /* stderr bytes (kept in <err>) */
	char *err;
	bool done;   /* a terminal frame arrived */
	bool exited; /* ... exec.exited (code valid) */
	int code;
	bool failed; /* ... exec.failed */
	bool error;  /* ... core.error (kind in error_kind) */
	enum proto_error_kind error_kind;
	char text[256]; /* exec.failed kind or core.error message */
};

/* Path of the sandwired under test: $SW_SANDWIRED_BIN, else beside the agent's build dir. */
const char *dh_sandwired_path(void);

/*
 * Start sandwired with <nshards> shards and <extra> arguments (NULL-terminated,
 * may be NULL) in a new temporary directory; returns once its socket
 * accepts and d->ctl is connected.
 */
void dh_start(struct dh *d, unsigned nshards, const char *const *extra);
/*
 * Stop it with SIGTERM and require exit status 0 (the engine reports chunk
 * leaks as a failure) and a log free of sanitizer reports; removes the
 * temporary directory.
 */
void dh_stop(struct dh *d);
/* The last <cap>-1 bytes of the daemon's log, for failure messages. */
const char *dh_log_tail(const struct dh *d, char *buf, size_t cap);
/* Whether the daemon's log contains <needle>. */
bool dh_log_contains(const struct dh *d, const char *needle);
/* Whether the file at <path> contains <needle> (false when it cannot be read). */
bool dh_file_contains(const char *path, const char *needle);

/* Open another management connection. */
void dh_connect(struct dh *d, struct swc *c);

/*
 * create <name> with <nports> published ports.  dh_create_try returns the
 * result's ok (false: the daemon's text in <err>); dh_create requires ok.
 * <info> (may be NULL) gets the new sandbox's info.
 */
bool dh_create_try(struct dh *d, const char *name, const struct engine_port *ports, size_t nports,
	struct engine_info *info, char *err, size_t cap);
void dh_create(struct dh *d, const char *name, const struct engine_port *ports, size_t nports,
	struct engine_info *info);
/*
 * A verb taking a name (inspect, stop, start, remove, attach is not one of
 * them) on d->ctl.  Returns ok; <info> (may be NULL) gets the data when it
 * is an info map, <err> the daemon's text when not ok.
 */
bool dh_call(struct dh *d, enum engine_verb v, const char *name, struct engine_info *info,
	char *err, size_t cap);
/* list: up to <cap> infos into <out>; returns how many sandboxes there are. */
size_t dh_list(struct dh *d, struct engine_info *out, size_t cap);
/* stats: one entry per shard into <out> (at least DH_SHARDS_MAX); returns the shard count. */
unsigned dh_stats(struct dh *d, struct engine_shard_stats *out);
/* Sum over <n> shards of the uint64_t counter at <offset> (use DH_STATS_SUM). */
uint64_t dh_stats_sum(const struct engine_shard_stats *st, unsigned n, size_t offset);
#define DH_STATS_SUM(st, n, field)                                                                 \
	dh_stats_sum((st), (n), offsetof(struct engine_shard_stats, field))

/*
 * Attach to <name> on a new connection and hand it to <ac> (an agent
 * client: agent_client_send/recv; close it with agent_client_close(ac, 0)).
 * *<lo>, *<hi>: the relay id range.
 */
void dh_attach(struct dh *d, const char *name, struct agent_client *ac, uint32_t *lo, uint32_t *hi);
/* Connect to the per-sandbox agent.sock at <path>: the handshake, then as dh_attach. */
void dh_attach_path(const char *path, struct agent_client *ac, uint32_t *lo, uint32_t *hi);

/* Descriptors open in process <pid> (/proc/PID/fd). */
int dh_fd_count(pid_t pid);
/* Whether <pid> exists and is not a zombie. */
bool dh_pid_alive(pid_t pid);
/* Poll <cond> every 20 ms for at most <ms>; the value of <cond> at the end. */
#define WAIT_FOR(cond, ms)                                                                         \
	({                                                                                         \
		int64_t until_ = dh_now_ms() + (ms);                                               \
		while (!(cond) && dh_now_ms() < until_)                                            \
			dh_sleep_ms(20);                                                           \
		(cond);                                                                            \
	})

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t dh_now_ms(void);
void dh_sleep_ms(unsigned ms);

/* ---- exec through an attached client -------------------------------------------------- */

/*
 * Send a pipe-mode core.exec.request on <id> for <argv> (NULL-terminated,
 * argv[0] is the command).  dh_exec_request returns the frame size or a
 * negative code and never asserts (for forked helpers); dh_exec_send fails
 * the test on error.
 */
long dh_exec_request(struct agent_client *ac, uint32_t id, const char *const *argv);
void dh_exec_send(struct agent_client *ac, uint32_t id, const char *const *argv);
/* Prepare <x> to collect session <id>. */
void dh_exec_init(struct dh_exec *x, uint32_t id);
/*
 * Receive one frame (1), or time out (0) or see EOF (-EPIPE); a bad frame
 * fails the test.  The frame is in ac->frame / ac->msg.
 */
int dh_recv(struct agent_client *ac, int timeout_ms);
/* Take the frame in <ac> (for x->id) into <x>; returns true once <x> is done. */
bool dh_exec_take(struct dh_exec *x, const struct agent_client *ac);
/* Collect <x> until done; a frame for another id, EOF or <timeout_ms> of silence fails. */
void dh_exec_wait(struct agent_client *ac, struct dh_exec *x, int timeout_ms);
/* dh_exec_send + dh_exec_init + dh_exec_wait (30 s). */
void dh_exec_run(struct agent_client *ac, uint32_t id, const char *const *argv, struct dh_exec *x);
void dh_exec_free(struct dh_exec *x);

/* ---- test data ------------------------------------------------------------------------ */

/* Bytes [off, off+n) of the pseudo-random stream <seed> into <buf>. */
void dh_pattern(void *buf, size_t n, uint64_t seed, uint64_t off);
/* Whether <buf> holds bytes [off, off+n) of stream <seed>. */
bool dh_pattern_check(const void *buf, size_t n, uint64_t seed, uint64_t off);

/* ---- a TCP server standing in for a service inside the sandbox --------------------------- */

enum dh_tcpsrv_mode {
	DH_ECHO = 0, /* echo everything; close after the peer's EOF once all is echoed */
	DH_SINK,     /* read to EOF, check the bytes are stream <seed>, count them */
	DH_SOURCE,   /* send <bytes> of stream <seed>, then close */
};

/*
 * Listens on 127.0.0.1:<port> (kernel-picked) and serves every connection
 * from one thread with epoll.  The process backend without namespaces shares
 * the host network, so this is what the agent dials for a guest port.
 */
struct dh_tcpsrv {
	enum dh_tcpsrv_mode mode;
	uint64_t seed, bytes;
	uint16_t port;
	int lfd, efd, wake;
	pthread_t thr;
	_Atomic uint64_t accepted, closed, bytes_in, bytes_out;
	_Atomic uint64_t bad;	 /* SINK: connections whose bytes were not the stream */
	_Atomic uint64_t sunk;	 /* SINK: connections read to EOF */
	_Atomic uint64_t errors; /* socket errors (resets) */
};

void dh_tcpsrv_start(struct dh_tcpsrv *t, enum dh_tcpsrv_mode mode, uint64_t seed, uint64_t bytes);
void dh_tcpsrv_stop(struct dh_tcpsrv *t);

/* Connect to 127.0.0.1:<port>; blocking unless <nonblock>.  Fails the test on error. */
int dh_tcp_connect(uint16_t port, bool nonblock);

#endif /* SW_TESTS_DAEMON_HARNESS_H */
