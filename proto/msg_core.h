/*
 * proto/msg_core.h - payloads of the core, exec and tcp message types
 * (spec 3.1, 3.2, 3.4), of the generation 8/9 types (protocol-gen9.md
 * G2.4, G2.5, G3) and of sandwire.credit: every type except
 * core.bootstrap, core.fs.request, core.fs.response (msg_boot.h, msg_fs.h)
 * and the {data: bytes} types (data.h).  The core.bulk.* payload structs
 * live in bulk.h, next to the record they control.
 *
 * The conventions of msg_common.h apply.  Field order, null-or-omitted and
 * defaults follow the spec's tables; each payload is described once by a
 * field table in msg_core.c, which drives both directions.  The fields that
 * generation 9 added to generation-7 payloads (ready, error,
 * relay.client.disconnected, tcp.connect) are Options omitted when unset,
 * so a message that sets none of them encodes to the generation-7 bytes.
 *
 * Payloads with no struct here: core.init.ack, core.ping, core.pong,
 * core.touch, core.tcp.connected/eof/close/closed are the empty map {}
 * (decoding requires a map and ignores its entries); core.shutdown is the
 * unit value null (decoding accepts anything: the agent never decodes it).
 */
#ifndef SW_PROTO_MSG_CORE_H
#define SW_PROTO_MSG_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/bulk.h"
#include "proto/error.h"
#include "proto/msg_common.h"
#include "proto/types.h"

#define PROTO_EXEC_ROWS_DEFAULT 24
#define PROTO_EXEC_COLS_DEFAULT 80

/* core.init.resolved: the default exec user resolved in the guest. */
struct proto_default_user {
	uint32_t uid;
	uint32_t gid;
};

struct proto_init_resolved {
	struct proto_default_user default_user;
};

/* Ready.bulk_transport (gen 9): the dual-port transport bound at boot (G7.3). */
struct proto_bulk_transport {
	struct proto_str profile;	 /* "dual-port-v1" */
	struct proto_str port;		 /* "agent-bulk" */
	struct proto_id16 connection_id; /* an array of 16 integers */
};

struct proto_opt_bulk_transport {
	bool set;
	struct proto_bulk_transport v;
};

/* Ready.relay_lease and Ready.local_transport (gen 9): {max_format: u8}. */
struct proto_max_format {
	uint8_t max_format;
};

struct proto_opt_max_format {
	bool set;
	struct proto_max_format v;
};

#define PROTO_WORKLOAD_BARRIER_VERSION 2 /* WORKLOAD_TRANSPORT_BARRIER_VERSION */

/* core.ready: the generation-9 fields are omitted when unset (G2.4). */
struct proto_ready {
	uint64_t boot_time_ns;		/* CLOCK_BOOTTIME at agent start, ns */
	uint64_t init_time_ns;		/* duration of the agent's init, ns */
	uint64_t ready_time_ns;		/* CLOCK_BOOTTIME before sending ready, ns */
	struct proto_str agent_version; /* omitted when empty (older agents) */
	struct proto_opt_bulk_transport bulk_transport;
	struct proto_opt_max_format relay_lease;     /* highest MSBL format read (lease.h) */
	struct proto_opt_max_format local_transport; /* injected by a local Unix relay only */
	struct proto_opt_u8 workload_transport_barrier_version; /* 2: G6/G8 implemented */
	/* sandwire extensions the agent uses with this host (msg_boot.h); omitted when none */
	const struct proto_str *ext;
	size_t n_ext;
};

/* core.clock.sync */
struct proto_clock_sync {
	uint64_t unix_time_nanos; /* host wall clock, ns since the epoch */
};

/* core.touched */
struct proto_touched {
	uint64_t activity_seq;
};

/* core.error kind, sent as its snake_case name. */
enum proto_error_kind {
	PROTO_ERROR_MALFORMED_MESSAGE,
	PROTO_ERROR_UNSUPPORTED_MESSAGE_TYPE,
	PROTO_ERROR_UNSUPPORTED_PROTOCOL_GENERATION,
	PROTO_ERROR_INVALID_FLAGS,
	PROTO_ERROR_INVALID_PAYLOAD,
	PROTO_ERROR_INVALID_SESSION,
	PROTO_ERROR_CAPABILITY_UNAVAILABLE, /* gen 9 */
	PROTO_ERROR__COUNT
};

/* WorkloadFailure.disposition, sent as its snake_case name. */
enum proto_workload_disposition {
	PROTO_WORKLOAD_UNAVAILABLE,	  /* no freezer, nothing was frozen */
	PROTO_WORKLOAD_RECOVERY_REQUIRED, /* a confirmed thaw is needed */
	PROTO_WORKLOAD_UNKNOWN,		  /* any other name (decoding never fails on it) */
	PROTO_WORKLOAD_DISPOSITION__COUNT
};

/* CoreError.workload_failure (gen 9) */
struct proto_workload_failure {
	struct proto_str attempt_id;
	enum proto_workload_disposition disposition;
};

struct proto_opt_workload_failure {
	bool set;
	struct proto_workload_failure v;
};

/* core.error */
struct proto_core_error {
	enum proto_error_kind kind;
	struct proto_str message;
	struct proto_opt_str offending_type;		    /* omitted when unset */
	struct proto_opt_workload_failure workload_failure; /* gen 9; omitted when unset */
};

/* core.relay.client.disconnected: the id range of a departed client. */
struct proto_relay_client_disconnected {
	uint32_t id_start;
	uint32_t id_end_exclusive;
	struct proto_opt_id16 incarnation; /* gen 9, with a lease (lease.h); omitted when unset */
};

/*
 * Window of the "credit" extension (wire.md "Flow control"): the default a
 * client asks for, and the largest an agent accepts.
 */
#define PROTO_SANDWIRE_CREDIT_WINDOW (256u * 1024)
#define PROTO_SANDWIRE_CREDIT_MAX (16u << 20)

/*
 * core.exec.request: the reference's nine keys are always written.
 * sandwire_credit (omitted when unset) opts the session into the "credit"
 * extension with that window in bytes (1..PROTO_SANDWIRE_CREDIT_MAX); a
 * client sets it only when the agent's core.ready named "credit".
 */
struct proto_exec_request {
	struct proto_str cmd;
	const struct proto_str *args; /* argv[1..]; default [] */
	size_t nargs;
	const struct proto_str *env; /* "KEY=VALUE"; default [] */
	size_t nenv;
	struct proto_opt_str cwd;	    /* null when unset */
	struct proto_opt_str user;	    /* null when unset */
	bool tty;			    /* default false */
	uint16_t rows;			    /* default 24 */
	uint16_t cols;			    /* default 80 */
	const struct proto_rlimit *rlimits; /* default [] */
	size_t nrlimits;
	struct proto_opt_u64 sandwire_credit; /* sandwire extension; omitted when unset */
};

/* core.exec.started */
struct proto_exec_started {
	uint32_t pid;
};

/* core.exec.stdin.error (not terminal) */
struct proto_exec_stdin_error {
	struct proto_opt_i32 err_no;	 /* wire key "errno"; null when unset */
	struct proto_opt_str errno_name; /* null when unset */
	struct proto_str message;
};

/* core.exec.exited */
struct proto_exec_exited {
	int32_t code;		     /* -1 after a death by signal */
	struct proto_opt_i32 signal; /* sandwire extension: the signal; omitted when unset */
};

/* core.exec.failed kind, sent as its snake_case name. */
enum proto_exec_fail_kind {
	PROTO_EXEC_FAIL_NOT_FOUND,
	PROTO_EXEC_FAIL_PERMISSION_DENIED,
	PROTO_EXEC_FAIL_NOT_EXECUTABLE,
	PROTO_EXEC_FAIL_BAD_CWD,
	PROTO_EXEC_FAIL_BAD_ARGS,
	PROTO_EXEC_FAIL_RESOURCE_LIMIT,
	PROTO_EXEC_FAIL_USER_SETUP_FAILED,
	PROTO_EXEC_FAIL_OUT_OF_MEMORY,
	PROTO_EXEC_FAIL_PTY_SETUP_FAILED,
	PROTO_EXEC_FAIL_OTHER,
	PROTO_EXEC_FAIL__COUNT
};

/* core.exec.failed: the program never ran. */
struct proto_exec_failed {
	enum proto_exec_fail_kind kind;
	struct proto_opt_i32 err_no;	 /* wire key "errno"; null when unset */
	struct proto_opt_str errno_name; /* null when unset */
	struct proto_str message;
	struct proto_opt_str stage; /* "fork", "execvp", ...; null when unset */
};

/* core.exec.resize */
struct proto_exec_resize {
	uint16_t rows;
	uint16_t cols;
};

/* core.exec.signal */
struct proto_exec_signal {
	int32_t signal; /* Linux numbering */
};

/* core.tcp.connect */
struct proto_tcp_connect {
	struct proto_str host; /* name or address, resolved in the guest */
	uint16_t port;
	struct proto_opt_bulk_offer bulk; /* gen 8 (needs v >= 8, F34); omitted when unset */
};

/* core.tcp.failed */
struct proto_tcp_failed {
	struct proto_str error;
};

/* Id of core.workload.transport.credit (G6, F37): outside every client range. */
#define PROTO_WORKLOAD_CREDIT_ID 0xFFFFFFFFu

/* Initial aggregate input window when the barrier version is 2 (G6, G9). */
#define PROTO_WORKLOAD_CONTROL_BYTES 8388608ull
#define PROTO_WORKLOAD_CONTROL_FRAMES 256ull
#define PROTO_WORKLOAD_DATA_BYTES 33554432ull
#define PROTO_WORKLOAD_DATA_FRAMES 256ull

/*
 * WorkloadTransportPosition (cumulative host input) and
 * WorkloadTransportCredit (absolute limits, the payload of
 * core.workload.transport.credit): the same four counters.  Bytes count
 * whole frames, length prefix included; "bulk" is the data class (exec
 * stdin, tcp data/eof, fs data, raw records), "control" everything else.
 */
struct proto_workload_transport {
	uint64_t control_bytes;
	uint64_t control_frames;
	uint64_t bulk_bytes;
	uint64_t bulk_frames;
};

/* core.workload.freeze (H->G, id 0) */
struct proto_workload_freeze {
	const struct proto_str *external_mount_tags; /* default [] */
	size_t n_external_mount_tags;
	struct proto_str attempt_id;
	struct proto_workload_transport host_input; /* the host's cumulative position */
};

/* core.workload.frozen (G->H, id 0) */
struct proto_workload_frozen {
	struct proto_str attempt_id;
	uint64_t guest_bulk_bytes_target;	      /* 0 with one port */
	struct proto_workload_transport input_credit; /* the grant at the cut */
	bool external_mounts_synced;		      /* default false */
};

/* WorkloadThaw.mode, sent as its snake_case name. */
enum proto_thaw_mode {
	PROTO_THAW_CONTINUE, /* resume the source */
	PROTO_THAW_RESTORE,  /* activate a restored guest, detach inherited clients */
	PROTO_THAW_MODE__COUNT
};

/* core.workload.thaw (H->G, id 0) */
struct proto_workload_thaw {
	struct proto_str attempt_id;
	enum proto_thaw_mode mode;
};

/* core.workload.thawed (G->H, id 0) */
struct proto_workload_thawed {
	struct proto_str attempt_id;
};

/* core.root_disk.prepare (dry run) and core.root_disk.grow (apply) */
struct proto_root_disk_grow {
	uint64_t size_bytes; /* a non-decreasing multiple of 4 KiB */
};

/* core.root_disk.state */
struct proto_root_disk_state {
	uint64_t filesystem_bytes;
	uint64_t device_bytes;
};

/*
 * sandwire.credit (both ways, on an exec session's id, "credit" extension):
 * the receiver delivered <bytes> more of the session's stream (stdout plus
 * stderr toward the host, stdin toward the process), so the sender may send
 * that many more beyond its window.
 */
struct proto_sandwire_credit {
	uint64_t bytes;
};

/* True when proto_core_encode/decode handle type <t>. */
bool proto_core_handles(enum proto_type t);

/*
 * Encode the payload item of type <t> from <payload> (the struct above for
 * that type; ignored for the empty and unit payloads) into <w>.  Returns 0,
 * PROTO_E_NOSPACE, PROTO_E_BAD_VALUE (an enum out of range) or -EINVAL when
 * <t> is not handled here.  Any thread.
 */
int proto_core_encode(struct cbw *w, enum proto_type t, const void *payload);

/*
 * Decode the payload item of type <t> at <r>'s position into <payload>
 * (the struct above; unused for empty and unit payloads), applying the
 * spec's defaults; lists go to <r>'s arena.  Returns 0 or a negative proto
 * code; on failure <ei> (may be NULL) gets the code, the offset in <r>'s
 * buffer, the type name and the field.  Any thread.
 */
int proto_core_decode(struct cbr *r, enum proto_type t, void *payload, struct proto_errinfo *ei);

/*
 * The `bulk` offer on its own, for core.fs.request (msg_fs.c): encode
 * returns 0 or the writer's error; decode returns 0 or a negative proto
 * code.  Any thread.
 */
int proto_bulk_offer_encode(struct cbw *w, const struct proto_bulk_offer *o);
int proto_bulk_offer_decode(struct cbr *r, struct proto_bulk_offer *o);

/* Wire names of the kinds ("invalid_payload", "not_found"), or "?" when out of range. */
const char *proto_error_kind_name(enum proto_error_kind k);
const char *proto_exec_fail_kind_name(enum proto_exec_fail_kind k);

#endif /* SW_PROTO_MSG_CORE_H */
