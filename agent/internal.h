/*
 * agent/internal.h - what the modules of sandwire-agent share (agent/ only).
 *
 * One thread, one io_uring (or, where io_uring_setup fails, the poll(2)
 * interpreter of uring_fallback.h fed the same SQEs).  Every object below
 * is owned by that thread; nothing here crosses threads.  The one helper
 * thread, the name resolver, sees only its own lookup records (resolve.h).
 *
 * Console channel, both directions (perspective: the agent's):
 *
 *   console fd --read--> rx[] --frames parsed in place--> dispatch
 *                                     (stdin/tcp payload copied into a chunk
 *                                      only when it must wait for its fd)
 *   console fd --readv of a raw record's payload--> chunks --> its sink
 *                                     (bulk TCP and fs Write flows: no copy;
 *                                      struct agent_rx_record)
 *   exec pipe / tcp socket --read into chunk payload--> header framed in the
 *   chunk's headroom --> tx queue --writev (batched)--> console fd
 *
 * Every in-flight io_uring operation is a struct agent_op embedded in the
 * object it works for; the object is freed only when its ops and its queued
 * chunks are all gone (refs).
 */
#ifndef SW_AGENT_INTERNAL_H
#define SW_AGENT_INTERNAL_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/heartbeat.h"
#include "agent/sessmap.h"
#include "agent/uring_fallback.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"

/* Bounds (README "Bounds" lists them too). */
#define AGENT_CHUNK_PAYLOAD 65536u    /* payload bytes per chunk (a pipe's or TCP read's size) */
#define AGENT_POOL_CHUNKS 512u        /* chunks per agent: 32 MiB + headroom at most */
#define AGENT_CTRL_RESERVE 32u        /* chunks data reads may not take (control frames) */
#define AGENT_OUT_BUDGET 4u           /* chunks one output source may have queued */
#define AGENT_IN_QUEUE_MAX (1u << 20) /* bytes queued toward one fd before the console pauses */
#define AGENT_RX_READ 65536u          /* console read size */
#define AGENT_RX_CAP (PROTO_MAX_WIRE_SIZE + AGENT_RX_READ) /* one maximal frame + one read */
#define AGENT_TX_IOV 64u              /* chunks per console writev */
#define AGENT_RX_IOV 16u              /* chunks per console readv of record payload */
#define AGENT_RX_HEADER_FRAMES 8u     /* frames read one by one after a record (AGENT_RX_HEADER) */
#define AGENT_RING_ENTRIES 1024u
#define AGENT_ARENA_SIZE (256u * 1024) /* decode scratch for one frame's lists */
#define AGENT_SHUTDOWN_GRACE_MS 1500  /* SIGTERM -> SIGKILL on core.shutdown (wire.md) */
#define AGENT_TCP_CONNECT_TIMEOUT_S 30
#define AGENT_BULK_H2G_WINDOW (4u << 20) /* host->guest credit kept ahead per TCP bulk stream */

enum agent_op_kind {
	AGENT_OP_CON_READ = 1,
	AGENT_OP_CON_WRITE,
	AGENT_OP_SIGNAL,      /* signalfd readable: SIGCHLD, SIGTERM, SIGINT */
	AGENT_OP_TICK,        /* 100 ms timer: heartbeat, grace periods */
	AGENT_OP_SRC_READ,    /* an output source (exec pipe/pty, tcp socket) read */
	AGENT_OP_SINK_WRITE,  /* an input sink (exec stdin, tcp socket) write */
	AGENT_OP_TCP_CONNECT,
	AGENT_OP_RESOLVED,    /* the name resolver's eventfd is readable (resolve.h) */
	AGENT_OP_IGNORE,      /* completions nobody waits for (cancels, timeouts) */
};

struct agent_op {
	uint8_t kind;
};

struct addrinfo;
struct agent;
struct agent_sess;
struct agent_fs_state;
struct agent_lookup;
struct agent_resolver;

/*
 * The "credit" extension of one exec session (wire.md "Flow control"): the
 * host's window over stdout plus stderr, and the stdin bytes to return to
 * it.  window 0: the session did not opt in.
 */
struct agent_xcredit {
	uint64_t window;      /* bytes, from exec.request's sandwire_credit */
	uint64_t out_sent;    /* stdout and stderr payload bytes framed for the host */
	uint64_t out_held;    /* window bytes the reads in flight hold */
	uint64_t out_limit;   /* window + every credit the host returned */
	uint64_t in_received; /* stdin payload bytes taken from the host */
	uint64_t in_returned; /* stdin bytes returned to the host with sandwire.credit */
};

/* Window bytes a source of the session may still read. */
static inline uint64_t agent_xcredit_room(const struct agent_xcredit *x)
{
	return x->out_limit - x->out_sent - x->out_held;
}

/*
 * An output source: reads into chunks and frames them as <type> on the
 * session's id.  At most AGENT_OUT_BUDGET of its chunks sit in the tx queue;
 * past that it stops reading (the guest->host budget of wire.md F9).
 */
struct agent_src {
	struct agent_op op;
	struct agent_sess *sess;
	int fd;
	enum proto_type type;   /* PROTO_T_EXEC_STDOUT/STDERR or PROTO_T_TCP_DATA */
	bool reading;           /* a read is in flight */
	bool eof;
	bool is_socket;
	uint64_t limit;         /* bytes it may still read (fs Read len); UINT64_MAX = no limit */
	struct chunk *buf;      /* chunk the in-flight read fills */
	unsigned queued;        /* chunks of this source in the tx queue */
	struct agent_src *wait_next; /* on agent.src_waiting when no chunk was free */
	bool waiting;
	bool polling;           /* the op in flight is a readiness poll, not a read */
	bool poll_first;        /* socket drained: wait for readiness before taking a chunk */
	/* Raw bulk flow its reads go out as (records, within its credit), or NULL: CBOR frames. */
	struct proto_bulk_tx *bulk;
	/* Exec credit window it shares with its sibling source, or NULL; <held>: its read's part. */
	struct agent_xcredit *xc;
	uint32_t held;
};

#define AGENT_SINK_MARKS 16u /* credit marks per sink; later frames share the last one */

/*
 * Host data frames whose payload waits in a sink (protocol-gen9.md G6):
 * they count as consumed once the sink has written up to <end>.
 */
struct agent_credit_mark {
	uint64_t end;    /* sink stream offset just past their payload */
	uint64_t bytes;  /* their wire bytes, length prefix included */
	uint64_t frames;
};

/*
 * An input sink: chunks (copies of host payload) queued toward an fd, one
 * write in flight.  <close_after> shuts it once drained (stdin EOF, tcp eof).
 */
struct agent_sink {
	struct agent_op op;
	struct agent_sess *sess;
	int fd;
	bool writing;
	bool close_after;
	bool closed;
	bool hold;              /* queue but do not write yet (TCP still connecting) */
	bool is_socket;
	bool credit_bounded;    /* a bulk flow's credit bounds it: never pauses the console */
	struct chunk *head, *tail;
	size_t bytes;           /* queued, bounded by AGENT_IN_QUEUE_MAX */
	uint64_t pushed;        /* payload bytes ever queued */
	uint64_t written;       /* payload bytes ever written to the fd */
	struct agent_credit_mark marks[AGENT_SINK_MARKS]; /* ring, oldest at mark_head */
	unsigned mark_head, mark_n;
};

enum agent_sess_kind { AGENT_SESS_EXEC = 1, AGENT_SESS_TCP, AGENT_SESS_FS };

/* Common head of every session, keyed by its wire id. */
struct agent_sess {
	enum agent_sess_kind kind;
	uint32_t id;
	unsigned refs;          /* in-flight ops + queued chunks + 1 while live */
	bool done;              /* terminal frame queued; no more frames for this id */
	struct agent_sess *next_all; /* agent.sessions list */
	struct agent_sess *prev_all;
};

struct agent_exec {
	struct agent_sess s;
	pid_t pid;
	bool tty;
	bool reaped;
	int wstatus;
	struct agent_src out, err;  /* err unused (fd -1) in PTY mode */
	struct agent_sink in;
	uint64_t term_deadline_ms;  /* SIGKILL after this (shutdown grace), 0 = none */
	struct agent_xcredit xc;    /* sandwire "credit" extension (window 0: off) */
};

enum agent_tcp_state { AGENT_TCP_CONNECTING = 1, AGENT_TCP_OPEN, AGENT_TCP_CLOSED };

struct agent_tcp {
	struct agent_sess s;
	enum agent_tcp_state state;
	struct agent_op op_connect;
	bool connecting_op;         /* the connect is in flight */
	struct __kernel_timespec connect_timeout;
	uint64_t deadline_ms;       /* lookup + every connect attempt end by then (30 s) */
	struct agent_lookup *lookup; /* its name lookup in flight (resolve.h), or NULL */
	struct addrinfo *addrs;     /* resolved addresses, tried in order; freed with the stream */
	struct addrinfo *next_addr; /* the next one to try after a failed attempt */
	int last_err;               /* errno of the last failed attempt */
	char where[300];            /* "host:port", for error texts */
	struct agent_src rd;
	struct agent_sink wr;
	/* Raw bulk (protocol-gen9.md G4, G5.1), when the connect carried an offer. */
	bool offered;               /* an offer came with the connect: accept it once connected */
	struct proto_bulk_offer offer;
	bool bulk;                  /* core.bulk.accepted sent: data moves as raw records only */
	struct proto_bulk_rx h2g;   /* host records -> socket */
	struct proto_bulk_tx g2h;   /* socket -> records to the host */
	uint64_t h2g_written;       /* record bytes written to the socket (consumed_offset) */
	size_t pre_bulk;            /* CBOR bytes queued before the acceptance, not yet written */
	bool h2g_shut;              /* host finish applied: the socket's write side is shut */
};

/*
 * What the next console read is for.  FRAMES: big reads into rx[], frames
 * parsed in place.  When the parser stops at a raw record whose prefix is
 * in and whose flow's sink takes chunks, PAYLOAD: the rest of its payload is
 * read straight into chunks handed to that sink.  Then HEADER: only the
 * frame at hand is read into rx[] (a record prefix, or the rest of a frame
 * of at most AGENT_RX_READ bytes); another such record goes to PAYLOAD
 * again, so does one after a few control frames between records; a larger
 * frame, or more than AGENT_RX_HEADER_FRAMES frames, go back to FRAMES.
 */
enum agent_rx_mode { AGENT_RX_FRAMES = 0, AGENT_RX_PAYLOAD, AGENT_RX_HEADER };

/* The raw record whose payload the console reader takes straight into chunks. */
struct agent_rx_record {
	struct agent_sink *sink;
	struct agent_sess *sess;        /* referenced until the payload is all read */
	uint32_t left;                  /* payload bytes still on the console */
	size_t wire;                    /* the record's wire size (G6) */
	struct chunk *c[AGENT_RX_IOV];  /* chunks of the next read, c[0] maybe partly filled */
	unsigned n;                     /* 0: no chunk was free, the read goes to rx[] (a copy) */
	struct iovec iov[AGENT_RX_IOV];
};

enum agent_boot_state { AGENT_BOOT_WAIT_BOOTSTRAP = 1, AGENT_BOOT_WAIT_ACK, AGENT_BOOT_RUNNING };

struct agent_stats {
	uint64_t frames_in, frames_out;
	uint64_t bytes_in, bytes_out;
	uint64_t copies, copied_bytes;     /* user-space payload copies (host->guest queueing) */
	uint64_t zero_copy_bytes;          /* record payload read straight into sink chunks */
	uint64_t dropped_unknown_id;       /* frames for ids with no session (counted, F14) */
	uint64_t bad_frames;               /* answered with core.error */
	uint64_t pool_overflow;            /* control chunks taken from the heap */
};

struct agent {
	struct io_uring ring;
	bool ring_ready;
	bool fallback;                 /* no io_uring: SQEs go to fb, the poll(2) interpreter */
	struct uring_fallback fb;
	const struct agent_config *cfg;
	int con_fd;
	int sig_fd;
	enum agent_boot_state boot;
	uint64_t init_start_ns;
	struct proto_default_user default_user;
	bool have_default_user;
	char default_cwd[512];
	bool have_default_cwd;
	uint8_t host_gen;              /* "v" of the host's core.bootstrap */
	bool ext_credit;               /* the bootstrap named the "credit" extension (wire.md) */

	/*
	 * Aggregate input credit (protocol-gen9.md G6), for a host of generation
	 * 9 or later: counted from the first frame after core.init.ack.  A host
	 * past its grant meets the sinks' backpressure only (wire.md F33).
	 */
	bool wt_on;
	bool wt_moved;                 /* wt_consumed grew since the last grant sent */
	bool wt_over_logged;
	struct proto_workload_transport wt_in;       /* received */
	struct proto_workload_transport wt_consumed; /* handled, written or dropped */
	size_t wt_cur_wire;            /* the data frame being handled: its wire size... */
	bool wt_cur_data;              /* ...while it may still be attached to a sink */

	/* console in */
	struct agent_op op_con_read, op_con_write, op_signal, op_tick;
	struct __kernel_timespec tick;
	uint8_t *rx;
	size_t rx_off;                 /* first unprocessed byte */
	size_t rx_len;                 /* bytes in rx[] */
	bool rx_reading, rx_eof;
	enum agent_rx_mode rx_mode;
	unsigned rx_header_frames;     /* AGENT_RX_HEADER: frames handled since the record */
	struct agent_rx_record rx_rec; /* AGENT_RX_PAYLOAD: the record being read */
	bool console_lost;             /* the host end is gone: nothing more can be sent */
	unsigned rx_paused;            /* sinks over their queue limit: stop reading the console */
	uint8_t *arena_mem;

	/* console out */
	struct chunk_pool *pool;
	struct chunk *tx_head, *tx_tail;   /* queued, not yet in a writev */
	struct chunk *txw[AGENT_TX_IOV];   /* in the writev in flight */
	struct iovec txiov[AGENT_TX_IOV];
	unsigned txw_n;
	bool tx_writing;

	struct agent_src *src_waiting;     /* sources waiting for a free chunk */
	struct sessmap ids;                /* wire id -> struct agent_sess */
	struct sessmap pids;               /* pid -> struct agent_exec */
	struct agent_sess *sessions;       /* every live session */
	unsigned n_exec, n_tcp;
	struct agent_fs_state *fs;         /* fs.c: handle table and stream queues */
	struct agent_resolver *resolver;   /* resolve.c: started on the first name to look up */

	bool shutting_down;
	bool tearing_down;                 /* agent_destroy: the ring is gone, start no I/O */
	uint64_t shutdown_deadline_ms;
	bool quit;
	int exit_code;

	struct agent_heartbeat hb;
	struct agent_activity act;
	uint64_t next_heartbeat_ms;
	struct agent_stats st;
};

/* loop.c */
uint64_t agent_now_ms(void);
struct chunk *agent_chunk_get(struct agent *a, bool control);
void agent_chunk_release(struct agent *a, struct chunk *c);
void agent_tx_chunk(struct agent *a, struct chunk *c);
int agent_send(struct agent *a, uint32_t id, const struct proto_msg *m);
void agent_send_error(struct agent *a, uint32_t id, enum proto_error_kind kind,
	const char *offending_type, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
struct io_uring_sqe *agent_sqe(struct agent *a);
void agent_sqe_reserve(struct agent *a, unsigned n);
void agent_log(struct agent *a, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void agent_sess_add(struct agent *a, struct agent_sess *s);
void agent_sess_put(struct agent *a, struct agent_sess *s);
void agent_credit_release(struct agent *a, bool data, uint64_t bytes, uint64_t frames);

/* user.c */
int agent_user_resolve(const char *spec, uid_t *uid, gid_t *gid);
void agent_relay_client_gone(struct agent *a, const struct proto_relay_client_disconnected *r);
void agent_clock_sync(struct agent *a, uint64_t unix_time_nanos);

/* fs.c */
int agent_fs_init(struct agent *a);
void agent_fs_request(struct agent *a, uint32_t id, uint8_t v, const struct proto_fs_request *rq);
void agent_fs_data(struct agent *a, uint32_t id, const uint8_t *p, size_t n);
bool agent_fs_record(struct agent *a, const struct proto_frame *f);
struct agent_sink *agent_fs_record_begin(struct agent *a, const struct proto_bulk_rec *r);
bool agent_fs_bulk_control(struct agent *a, uint32_t id, const struct proto_msg *m);
void agent_fs_abort_range(struct agent *a, uint32_t start, uint32_t end);
void agent_fs_close_all(struct agent *a);
/* Callbacks from io.c for AGENT_SESS_FS sessions (read and write streams). */
void agent_fs_src_eof(struct agent *a, struct agent_sess *s, int err);
void agent_fs_sink_error(struct agent *a, struct agent_sess *s, int err);
void agent_fs_sink_drained(struct agent *a, struct agent_sess *s);
void agent_fs_sink_wrote(struct agent *a, struct agent_sess *s, size_t n);
void agent_fs_free(struct agent *a, struct agent_sess *s);

/* io.c: sources and sinks */
void agent_src_init(struct agent_src *src, struct agent_sess *s, int fd, enum proto_type type,
	bool is_socket);
void agent_src_arm(struct agent *a, struct agent_src *src);
void agent_src_complete(struct agent *a, struct agent_src *src, int res);
void agent_src_chunk_sent(struct agent *a, struct agent_src *src);
void agent_sink_init(struct agent_sink *k, struct agent_sess *s, int fd, bool is_socket);
int agent_sink_push(struct agent *a, struct agent_sink *k, const uint8_t *p, size_t n);
int agent_sink_push_chunks(struct agent *a, struct agent_sink *k, struct chunk **v, unsigned n);
/*
 * The text of record <r>'s fault <rc> against receiver flow <rx> of a <op>
 * ("TCP", "filesystem") stream, worded as agentd words it (G4.6).
 */
void agent_bulk_record_error(char *buf, size_t cap, const char *op, int rc,
	const struct proto_bulk_rx *rx, const struct proto_bulk_rec *r);
void agent_sink_fail(struct agent *a, struct agent_sink *k, int err);
void agent_sink_close(struct agent *a, struct agent_sink *k);
void agent_sink_kick(struct agent *a, struct agent_sink *k);
void agent_sink_complete(struct agent *a, struct agent_sink *k, int res);
void agent_sink_drop(struct agent *a, struct agent_sink *k);
void agent_sources_retry(struct agent *a);
void agent_src_release(struct agent *a, struct agent_src *src);
void agent_sink_release(struct agent *a, struct agent_sink *k);

/* exec.c */
void agent_exec_request(struct agent *a, uint32_t id, const struct proto_exec_request *rq);
void agent_exec_stdin(struct agent *a, struct agent_exec *e, const uint8_t *p, size_t n);
void agent_exec_resize(struct agent *a, struct agent_exec *e, const struct proto_exec_resize *rz);
void agent_exec_signal(struct agent *a, struct agent_exec *e, int sig);
void agent_exec_reaped(struct agent *a, struct agent_exec *e, int wstatus);
void agent_exec_maybe_finish(struct agent *a, struct agent_exec *e);
void agent_exec_src_eof(struct agent *a, struct agent_exec *e);
void agent_exec_sink_error(struct agent *a, struct agent_exec *e, int err);
void agent_exec_terminate_all(struct agent *a, int sig);
void agent_exec_free(struct agent *a, struct agent_exec *e);
void agent_exec_kill_range(struct agent *a, uint32_t start, uint32_t end);
void agent_exec_credit(struct agent *a, uint32_t id, uint64_t bytes);
void agent_exec_out_room(struct agent *a, struct agent_exec *e);
void agent_exec_stdin_wrote(struct agent *a, struct agent_exec *e);

/* tcp.c */
void agent_tcp_connect(struct agent *a, uint32_t id, uint8_t v, const struct proto_tcp_connect *c);
void agent_tcp_record(struct agent *a, const struct proto_frame *f);
struct agent_sink *agent_tcp_record_begin(struct agent *a, const struct proto_bulk_rec *r);
void agent_tcp_bulk_control(struct agent *a, uint32_t id, const struct proto_msg *m);
void agent_tcp_sink_wrote(struct agent *a, struct agent_tcp *t, size_t n);
void agent_tcp_data(struct agent *a, uint32_t id, const uint8_t *p, size_t n);
void agent_tcp_eof(struct agent *a, uint32_t id);
void agent_tcp_close(struct agent *a, uint32_t id);
void agent_tcp_connected(struct agent *a, struct agent_tcp *t, int res);
void agent_tcp_src_eof(struct agent *a, struct agent_tcp *t, int err);
void agent_tcp_sink_error(struct agent *a, struct agent_tcp *t, int err);
void agent_tcp_sink_drained(struct agent *a, struct agent_tcp *t);
void agent_tcp_abort(struct agent *a, struct agent_tcp *t);
void agent_tcp_free(struct agent *a, struct agent_tcp *t);
void agent_tcp_resolved(struct agent *a, struct agent_tcp *t, struct addrinfo *list, int gai_err,
	int sys_err);
void agent_tcp_lookup_expired(struct agent *a, struct agent_tcp *t);

#endif /* SW_AGENT_INTERNAL_H */
