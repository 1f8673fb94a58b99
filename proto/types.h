/*
 * proto/types.h - the message types of generations 7, 8 and 9 (spec
 * section 3, protocol-gen9.md G3).
 *
 * One enum value per wire name: the generation-7 types in the order of the
 * spec's table, then the types of generations 8 and 9 (core.bulk.*,
 * core.workload.*, core.root_disk.*), and a table of what is fixed per
 * type: wire name, generation that introduced it, frame flags, direction
 * and payload shape.  A new type of the reference goes before
 * PROTO_T__COUNT, into the table and into proto_type_lookup() in types.c (a
 * test checks that every table name looks up to its own type).
 *
 * sandwire's own extension types ("sandwire.*", design/wire.md "Boot and
 * announcement") follow the reference catalogue, from PROTO_T__COUNT to
 * PROTO_T__END: PROTO_T__COUNT stays the size of microsandbox's catalogue,
 * arrays indexed by any type are sized PROTO_T__END.  An extension type is
 * written with v = 7 and is gated by the peer's announcement of its
 * extension, never by the generation: a reference agent treats an unknown
 * type as fatal (spec F1).
 *
 * Generations: sandwire writes "v" = PROTO_VERSION (7) unless a message
 * needs more (msg.h); it speaks up to PROTO_VERSION_MAX (9).  A peer's
 * generation gates what may be sent to it: raw bulk and core.bulk.* need
 * PROTO_GEN_BULK, core.workload.* and core.root_disk.* PROTO_GEN_WORKLOAD.
 */
#ifndef SW_PROTO_TYPES_H
#define SW_PROTO_TYPES_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 7	    /* generation written in "v" by default */
#define PROTO_VERSION_MAX 9 /* highest generation sandwire speaks (0.7.x) */
#define PROTO_GEN_BULK 8    /* raw bulk records, core.bulk.*, bulk offers (BULK_PROTOCOL_VERSION) */
#define PROTO_GEN_WORKLOAD 9 /* core.workload.*, core.root_disk.*, gen-9 optional fields */

enum proto_type {
	PROTO_T_UNKNOWN = -1, /* not one of ours (decoders keep the wire name) */
	PROTO_T_BOOTSTRAP = 0,
	PROTO_T_INIT_RESOLVED,
	PROTO_T_INIT_ACK,
	PROTO_T_READY,
	PROTO_T_SHUTDOWN,
	PROTO_T_RELAY_CLIENT_DISCONNECTED,
	PROTO_T_CLOCK_SYNC,
	PROTO_T_PING,
	PROTO_T_PONG,
	PROTO_T_TOUCH,
	PROTO_T_TOUCHED,
	PROTO_T_ERROR,
	PROTO_T_EXEC_REQUEST,
	PROTO_T_EXEC_STARTED,
	PROTO_T_EXEC_STDIN,
	PROTO_T_EXEC_STDIN_ERROR,
	PROTO_T_EXEC_STDOUT,
	PROTO_T_EXEC_STDERR,
	PROTO_T_EXEC_EXITED,
	PROTO_T_EXEC_FAILED,
	PROTO_T_EXEC_RESIZE,
	PROTO_T_EXEC_SIGNAL,
	PROTO_T_FS_REQUEST,
	PROTO_T_FS_RESPONSE,
	PROTO_T_FS_DATA,
	PROTO_T_TCP_CONNECT,
	PROTO_T_TCP_CONNECTED,
	PROTO_T_TCP_DATA,
	PROTO_T_TCP_EOF,
	PROTO_T_TCP_CLOSE,
	PROTO_T_TCP_CLOSED,
	PROTO_T_TCP_FAILED,
	/* generation 8: raw bulk control (protocol-gen9.md G3.1) */
	PROTO_T_BULK_ACCEPTED,
	PROTO_T_BULK_CREDIT,
	PROTO_T_BULK_FINISH,
	PROTO_T_BULK_CANCEL,
	/* generation 9: workload freeze/thaw, aggregate input credit, root disk (G3.2) */
	PROTO_T_WORKLOAD_FREEZE,
	PROTO_T_WORKLOAD_FROZEN,
	PROTO_T_WORKLOAD_THAW,
	PROTO_T_WORKLOAD_THAWED,
	PROTO_T_WORKLOAD_TRANSPORT_CREDIT,
	PROTO_T_ROOT_DISK_PREPARE,
	PROTO_T_ROOT_DISK_GROW,
	PROTO_T_ROOT_DISK_STATE,
	PROTO_T__COUNT, /* end of the reference catalogue (generations 7 to 9) */
	/* sandwire extensions: sent only to a peer that announced them */
	PROTO_T_SANDWIRE_CREDIT = PROTO_T__COUNT, /* "credit": exec stream credit */
	PROTO_T__END
};

/* Who sends a type (spec section 3 "dir"). */
enum proto_dir {
	PROTO_DIR_H2G = 1, /* host (engine, relay or client) to guest agent */
	PROTO_DIR_G2H = 2, /* guest agent to host */
	PROTO_DIR_BOTH = 3,
};

/* Payload shape attributes (proto_type_info.attrs). */
#define PROTO_TA_DATA 0x01u	  /* payload is {data: bytes}: zero-copy path (data.h) */
#define PROTO_TA_EMPTY 0x02u	  /* payload is the empty map {} */
#define PROTO_TA_CONTROL 0x04u	  /* sent on the control id 0 */
#define PROTO_TA_INPUT_DATA 0x08u /* counted as data by the aggregate input credit (G6) */

struct proto_type_info {
	const char *name; /* wire name ("core.exec.stdout"), NUL-terminated */
	uint8_t name_len; /* strlen(name) */
	uint8_t gen;	  /* generation that introduced the type */
	uint8_t flags;	  /* PROTO_FLAG_* the sender sets (spec 2.3) */
	uint8_t dir;	  /* enum proto_dir */
	uint8_t attrs;	  /* PROTO_TA_* */
};

extern const struct proto_type_info proto_type_table[PROTO_T__END];

/*
 * Type for the wire name <name> of <len> bytes (not NUL-terminated), or
 * PROTO_T_UNKNOWN.  Switches on the length, then compares the one or few
 * candidates of that length.  Any thread.
 */
enum proto_type proto_type_lookup(const char *name, size_t len);

/* True when <t> is a valid enum proto_type value (not UNKNOWN or out of range). */
static inline int proto_type_valid(enum proto_type t)
{
	return t >= 0 && t < PROTO_T__END;
}

/* Wire name of <t>, or "?" for an invalid value. */
static inline const char *proto_type_name(enum proto_type t)
{
	return proto_type_valid(t) ? proto_type_table[t].name : "?";
}

/* Frame flags the sender of <t> sets (0 for an invalid value). */
static inline uint8_t proto_type_flags(enum proto_type t)
{
	return proto_type_valid(t) ? proto_type_table[t].flags : 0;
}

/* True when <t> carries the {data: bytes} payload. */
static inline int proto_type_is_data(enum proto_type t)
{
	return proto_type_valid(t) && (proto_type_table[t].attrs & PROTO_TA_DATA);
}

/*
 * True when a host frame of type <t> counts against the data ("bulk_*")
 * class of the aggregate input credit (protocol-gen9.md G6: exec.stdin,
 * tcp.data, tcp.eof, fs.data; raw bulk records count as data too, by their
 * flag); every other type counts as control.
 */
static inline int proto_type_is_input_data(enum proto_type t)
{
	return proto_type_valid(t) && (proto_type_table[t].attrs & PROTO_TA_INPUT_DATA);
}

#endif /* SW_PROTO_TYPES_H */
