/*
 * engine/cli/cli.h - the sandwire command line: what the modules of
 * engine/cli/ share.
 *
 *	main.c          global options, dispatch, the command table
 *	util.c          messages, number / duration / rlimit / env parsing
 *	wire.c          a non-blocking agent-protocol connection (after attach)
 *	daemon.c        reach the daemon, or start a private one; attach
 *	tty.c           local terminal: raw mode and its restore, window size
 *	exec_io.c       one exec session with the local stdio attached
 *	cmd_run_exec.c  sandwire run / exec
 *	cmd_manage.c    create, start, stop, rm, ls, inspect, publish, stats
 *	cmd_serve.c     sandwire serve (the engine in process) and --metrics
 *	rfs.c           filesystem requests on the attached connection
 *	cmd_cp.c        sandwire cp
 *	cmd_tcp.c       sandwire tcp
 *
 * Exit codes: the command's own; CLI_EXIT_ERR (125) for sandwire's own
 * errors (usage included); 126 the command cannot run; 127 not found;
 * 128+N killed by signal N.  Single-threaded, except `serve`.
 */
#ifndef SW_ENGINE_CLI_H
#define SW_ENGINE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/api.h"
#include "engine/swclient.h"
#include "proto/msg.h"

#define CLI_EXIT_ERR 125	/* sandwire itself failed (usage, daemon, sandbox) */
#define CLI_EXIT_CANNOT_RUN 126 /* the command was found but could not run */
#define CLI_EXIT_NOT_FOUND 127	/* the command was not found */
#define CLI_EXIT_TIMEOUT 124	/* --timeout expired (as timeout(1)) */
#define CLI_ENV_MAX 256u	/* -e per command */
#define CLI_STDIN_CHUNK 65536u	/* bytes read from stdin per frame */
#define CLI_OUT_HIGH (1u << 20) /* stop reading local input above this many queued bytes */

/* Global options, given before or after the command name. */
struct cli {
	const char *socket; /* --socket; NULL: SANDWIRE_SOCKET or the default path */
	int verbose;
};

/* One command: argv[0] is "sandwire NAME"; returns the process's exit code. */
typedef int (*cli_cmd_fn)(struct cli *cli, int argc, char **argv);

/* getopt_long entries every command takes: --socket PATH and -h/--help. */
#define CLI_OPT_SOCKET 0x1000
/* clang-format off */
#define CLI_LONG_COMMON {"socket", required_argument, NULL, CLI_OPT_SOCKET}, \
	{"help", no_argument, NULL, 'h'}
/* clang-format on */

/* The command's name from its argv[0] ("sandwire run" -> "run"). */
static inline const char *cli_cmd_name(char **argv)
{
	return argv[0] + sizeof("sandwire ") - 1;
}

/* ---- util.c ------------------------------------------------------------------ */

/* "sandwire: <message>\n" on stderr. */
__attribute__((format(printf, 1, 2))) void cli_err(const char *fmt, ...);
/* cli_err, then return CLI_EXIT_ERR (for `return cli_fail(...)`). */
__attribute__((format(printf, 1, 2))) int cli_fail(const char *fmt, ...);
/* Usage error of command <cmd>: the message and a pointer to --help; returns CLI_EXIT_ERR. */
__attribute__((format(printf, 2, 3))) int cli_usage(const char *cmd, const char *fmt, ...);
/* After getopt reported a bad option of <cmd>: point at --help; returns CLI_EXIT_ERR. */
int cli_bad_option(const char *cmd);
/*
 * The options of a command that has only --socket, --help and, when
 * <quiet> is not NULL, -q/--quiet.  Returns -1 when they are parsed (the
 * operands start at optind), else the exit code to return (help shown, or
 * a bad option).
 */
int cli_plain_opts(struct cli *cli, int argc, char **argv, const char *cmd, bool *quiet);

/* Parse a decimal unsigned <= max.  Returns 0 or -EINVAL. */
int cli_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* Parse a duration ("30", "1.5s", "500ms", "2m", "1h") into ms.  Returns 0 or -EINVAL. */
int cli_parse_duration(const char *s, int64_t *ms);
/*
 * Parse --rlimit NAME=SOFT[:HARD] (values: a number or "unlimited"; HARD
 * defaults to SOFT).  <name> receives the resource name (<= 15 bytes).
 * Returns 0, or -EINVAL with a sentence in <why>.
 */
int cli_parse_rlimit(
	const char *spec, char name[16], uint64_t *soft, uint64_t *hard, char *why, size_t cap);
/* Parse HOST:PORT (IPv6 in brackets).  <host> gets the host part.  Returns 0 or -EINVAL. */
int cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);
/* A fresh sandbox name "run-" + 8 hex digits into <buf> (>= 16 bytes). */
void cli_random_name(char *buf, size_t cap);
/* Human size: "12.5 MiB". */
const char *cli_fmt_bytes(double n, char *buf, size_t cap);
/* Monotonic clock, ms. */
int64_t cli_now_ms(void);
/* Write all <n> bytes to <fd> (blocking fd).  Returns 0 or -errno. */
int cli_write_all(int fd, const void *p, size_t n);

/* ---- wire.c: the attached connection -------------------------------------------- */

/*
 * An agent-protocol connection (the daemon's relay after attach), driven
 * non-blocking: frames to send are queued in <out> and written when the
 * socket takes them; received bytes are split into frames and decoded one
 * at a time into <frame> / <msg> (valid until the next wire_next).
 */
struct wire {
	int fd;
	uint8_t *in; /* received bytes, in_off..in_len not yet consumed */
	size_t in_off, in_len, in_cap;
	uint8_t *out; /* queued bytes, out_off..out_len not yet written */
	size_t out_off, out_len, out_cap;
	uint8_t *arena_mem;
	struct proto_arena arena;
	struct proto_frame frame;
	struct proto_msg msg;
	uint32_t id_lo, id_hi; /* the relay range from the attach handshake */
	uint32_t next_id;
	bool eof;	       /* the daemon closed the connection */
	uint8_t agent_gen;     /* v of the agent's core.ready replayed on attach (0: unknown) */
	bool agent_credit;     /* that ready named the sandwire "credit" extension */
	uint64_t bulk_streams; /* fs streams that moved over raw bulk (rfs.c) */
};

/* Take over <fd> (made non-blocking) with the id range [lo, hi).  Returns 0 or -ENOMEM. */
int wire_init(struct wire *w, int fd, uint32_t lo, uint32_t hi);
/* Close the descriptor and free the buffers. */
void wire_destroy(struct wire *w);
/*
 * Note the agent's generation and extensions from <ready>, the core.ready
 * frame (<n> bytes) the daemon replayed on attach; w->agent_gen stays 0
 * (and w->agent_credit false) when it does not decode.
 */
void wire_set_ready(struct wire *w, const uint8_t *ready, size_t n);
/* A fresh request id of the range. */
uint32_t wire_new_id(struct wire *w);
/* Queue message <m> on <id>.  Returns 0 or a negative proto code / -ENOMEM. */
int wire_send(struct wire *w, uint32_t id, const struct proto_msg *m);
/* Queue a {data: bytes} frame of type <t>.  Returns 0 or a negative code. */
int wire_send_data(struct wire *w, enum proto_type t, uint32_t id, const void *p, size_t n);
/*
 * Raw bulk records (protocol-gen9.md G1.3) built in place: wire_record_room()
 * returns where up to <n> payload bytes of the next record go in the output
 * queue (NULL: out of memory); fill them, then wire_record_commit() writes
 * the prefix of <r> (r->len <= n bytes) and queues the record.  Nothing
 * else may be queued in between.  Commit returns 0 or a negative proto code.
 */
uint8_t *wire_record_room(struct wire *w, size_t n);
int wire_record_commit(struct wire *w, const struct proto_bulk_rec *r);
/* Bytes queued and not yet written. */
size_t wire_pending(const struct wire *w);
/* poll() events the connection wants now. */
short wire_events(const struct wire *w);
/*
 * Act on poll() results <revents>: write what the socket takes, read what
 * it holds.  Returns 0, or -errno on a write error (-EPIPE: the daemon left).
 * EOF sets w->eof.
 */
int wire_io(struct wire *w, short revents);
/*
 * Decode the next complete buffered frame.  Returns 1 (w->frame, w->msg),
 * 0 when none is complete, PROTO_E_BULK_RECORD for a raw bulk record (in
 * w->frame, for proto_bulk_frame_parse()), or another negative code for a
 * frame that does not decode (the frame is skipped; w->frame still names
 * its id).  A framing error (bad length) is returned as -EPROTO and ends
 * the stream.
 */
int wire_next(struct wire *w);
/*
 * Wait up to <timeout_ms> (-1: forever) for the next frame, writing queued
 * bytes meanwhile.  Returns 1, 0 on timeout, -EPIPE when the daemon
 * closed the connection, or a negative code.
 */
int wire_recv(struct wire *w, int timeout_ms);
/*
 * Write queued bytes until at most <below> remain, reading (and buffering)
 * whatever arrives meanwhile.  Returns 0 or -errno.
 */
int wire_drain(struct wire *w, size_t below);

/* ---- daemon.c --------------------------------------------------------------------- */

/* A private daemon started for one command (`sandwire run` with no daemon). */
struct cli_daemon {
	pid_t pid;	  /* 0: none */
	char dir[84];	  /* its temporary directory (base <= 60 bytes) */
	char socket[108]; /* its socket */
	char log[300];	  /* its log file */
};

/*
 * Connect to the daemon the global options name.  Returns 0, or CLI_EXIT_ERR
 * after printing what failed and what to do.
 */
int cli_connect(struct cli *cli, struct swc *c);
/*
 * Connect to the daemon, or start a private one (this binary's `serve`, in
 * its own process group, on a socket in a fresh temporary directory) when
 * none answers.  <d>->pid is set when a private daemon runs.  Returns 0 or
 * CLI_EXIT_ERR (printed).
 */
int cli_connect_or_spawn(struct cli *cli, struct swc *c, struct cli_daemon *d);
/* Stop a private daemon (SIGTERM, then SIGKILL after 5 s) and remove its directory. */
void cli_daemon_stop(struct cli_daemon *d);
/*
 * Attach to sandbox <name> on the daemon at <socket> (NULL: the global
 * choice) and set up <w>.  Returns 0 or CLI_EXIT_ERR (printed).
 */
int cli_attach(struct cli *cli, const char *socket, const char *name, struct wire *w);
/*
 * One management call: returns 0 with <res> (ok), or CLI_EXIT_ERR after
 * printing the daemon's (or the connection's) error.
 */
int cli_call(struct swc *c, enum engine_verb v, const char *name, struct swc_result *res);

/* ---- tty.c ------------------------------------------------------------------------- */

/*
 * Put terminal <fd> in raw mode, remembering its settings; they are put
 * back by tty_restore(), at exit (atexit) and before a fatal signal kills
 * the process.  Returns 0 or -errno (-ENOTTY: not a terminal, nothing done).
 */
int tty_raw(int fd);
/* Put the remembered settings back (idempotent, async-signal-safe). */
void tty_restore(void);
/* Window size of the first terminal among stdin/stdout; 24x80 when none. */
void tty_size(uint16_t *rows, uint16_t *cols);

/* ---- exec_io.c ----------------------------------------------------------------------- */

/* What to run and how (run and exec). */
struct exec_opts {
	char **argv; /* the command and its arguments */
	int argc;
	const char *env[CLI_ENV_MAX];
	size_t nenv;
	const char *cwd;  /* NULL: the sandbox's default */
	const char *user; /* NULL: the sandbox's default */
	struct proto_rlimit rlimits[ENGINE_RLIMITS_MAX];
	char rlimit_names[ENGINE_RLIMITS_MAX][16];
	size_t nrlimits;
	bool tty;	    /* -t: a PTY inside, raw mode outside */
	bool interactive;   /* -i: forward stdin (implied by -t) */
	bool detach;	    /* -d: start and return */
	int64_t timeout_ms; /* 0: none */
	bool verbose;	    /* -v: say how the command's bytes travelled */
};

/*
 * Run <o> in the attached sandbox: stdin/stdout/stderr attached (TTY or
 * pipes), signals forwarded, window size changes sent as resize.  Returns
 * the exit code per the table in this header; prints why on sandwire's own
 * failures.  <sandbox> names the sandbox in messages.
 */
int exec_session(struct wire *w, const struct exec_opts *o, const char *sandbox);
/* Start <o> detached (exec -d): prints the pid; returns the exit code. */
int exec_detached(struct wire *w, const struct exec_opts *o, const char *sandbox);

/* ---- rfs.c: filesystem requests ------------------------------------------------------- */

/* One directory entry or stat result, owned (strings malloc'd). */
struct rfs_entry {
	char *path;
	enum proto_fs_kind kind;
	uint64_t size;
	uint32_t mode; /* full st_mode */
	int64_t mtime; /* seconds; INT64_MIN when unknown */
};

/* Progress callback of a stream: <done> of <total> bytes moved. */
typedef void (*rfs_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Every rfs_* call returns 0, or < 0 with a sentence in w's caller-supplied
 * <err>: -ENOENT (and the other errnos) when the agent said "(os error N)",
 * -EIO for anything else.
 */
int rfs_stat(
	struct wire *w, const char *path, bool follow, struct rfs_entry *e, char *err, size_t cap);
int rfs_mkdir(struct wire *w, const char *path, char *err, size_t cap);
int rfs_setstat(
	struct wire *w, const char *path, uint32_t mode, int64_t mtime, char *err, size_t cap);
int rfs_symlink(struct wire *w, const char *target, const char *link_path, char *err, size_t cap);
int rfs_readlink(struct wire *w, const char *path, char *out, size_t outcap, char *err, size_t cap);
int rfs_remove(struct wire *w, const char *path, char *err, size_t cap);
/* Open <path> for reading, or for writing (created / truncated with <mode>). */
int rfs_open(struct wire *w, const char *path, bool write, uint32_t mode, uint64_t *handle,
	char *err, size_t cap);
int rfs_opendir(struct wire *w, const char *path, uint64_t *handle, char *err, size_t cap);
int rfs_close(struct wire *w, uint64_t handle, char *err, size_t cap);
/* Next batch of a directory handle into *<v> (malloc'd), *<n> = 0 at the end. */
int rfs_readdir(
	struct wire *w, uint64_t handle, struct rfs_entry **v, size_t *n, char *err, size_t cap);
void rfs_entries_free(struct rfs_entry *v, size_t n);
/* Stream the whole file behind <handle> into <fd>; *<got> = bytes written. */
int rfs_read_to_fd(struct wire *w, uint64_t handle, int fd, uint64_t total, uint64_t *got,
	rfs_progress_fn fn, void *ctx, char *err, size_t cap);
/* Stream <size> bytes of <fd> into the file behind <handle>. */
int rfs_write_from_fd(struct wire *w, uint64_t handle, int fd, uint64_t size, rfs_progress_fn fn,
	void *ctx, char *err, size_t cap);

/* ---- commands --------------------------------------------------------------------------- */

int cmd_serve(struct cli *cli, int argc, char **argv);
int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_exec(struct cli *cli, int argc, char **argv);
int cmd_create(struct cli *cli, int argc, char **argv);
int cmd_named(struct cli *cli, int argc, char **argv); /* start, stop, rm, inspect */
int cmd_ls(struct cli *cli, int argc, char **argv);
int cmd_publish(struct cli *cli, int argc, char **argv);
int cmd_stats(struct cli *cli, int argc, char **argv);
int cmd_cp(struct cli *cli, int argc, char **argv);
int cmd_tcp(struct cli *cli, int argc, char **argv);

/* Print the --help text of <cmd> (the general one when unknown) to stdout; returns 0. */
int cli_help(const char *cmd);

#endif /* SW_ENGINE_CLI_H */
