/*
 * proto/msg.h - any message of generations 7 to 9 (and sandwire's extension
 * types) as one tagged struct, and the whole-frame encoder and decoder.
 *
 * Encode (control path; data frames normally go through data.h instead):
 *
 *	struct proto_msg m = {
 *		.type = PROTO_T_EXEC_RESIZE,
 *		.u.exec_resize = { .rows = 50, .cols = 132 },
 *	};
 *	long n = proto_frame_encode(buf, sizeof(buf), id, &m);
 *
 * Decode:
 *
 *	struct proto_msg m;
 *	struct proto_errinfo ei;
 *	rc = proto_frame_decode(&frame, &m, &arena, &ei);
 *
 * A decoded message points into the frame and the arena: both must outlive
 * it.  Decoding checks, in the agent's order (spec 4.2): the envelope, the
 * frame flags (the three control bits only, spec F2), then the payload.
 * Two kinds of frame are not CBOR messages and are recognised first: a
 * frame with flag 0x08 (a raw bulk record, bulk.h; protocol-gen9.md G1.4)
 * and an id-0 frame whose body starts with "MSBL" (a relay lease record,
 * lease.h; F38).  A receiver that handles them dispatches on
 * (flags & PROTO_FLAG_BULK) and proto_frame_is_lease() before decoding.
 */
#ifndef SW_PROTO_MSG_H
#define SW_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/bulk.h"
#include "proto/data.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/lease.h"
#include "proto/msg_boot.h"
#include "proto/msg_core.h"
#include "proto/msg_fs.h"
#include "proto/types.h"

/*
 * One message.  The union member is chosen by <type>; the empty-map types
 * (init.ack, ping, pong, touch, tcp.connected/eof/close/closed) and
 * core.shutdown have none; core.root_disk.prepare and .grow share
 * root_disk_grow.
 *
 * "v" on encode: the value given, or when 0 PROTO_VERSION (7) for a message
 * a generation-7 peer can read and PROTO_VERSION_MAX (9) for one that needs
 * generation 8 or later (a gen-8/9 type, a bulk offer, a gen-9 field): the
 * bytes a gen-7 peer sees never change, and an offer always travels in a
 * v >= 8 envelope (F34).
 */
struct proto_msg {
	enum proto_type type;
	uint8_t v;		/* "v": see above on encode; set by decode */
	struct proto_str tname; /* decode: "t" as received (also on PROTO_E_UNKNOWN_TYPE) */
	union {
		struct proto_bootstrap bootstrap;
		struct proto_init_resolved init_resolved;
		struct proto_ready ready;
		struct proto_relay_client_disconnected relay_client_disconnected;
		struct proto_clock_sync clock_sync;
		struct proto_touched touched;
		struct proto_core_error error;
		struct proto_exec_request exec_request;
		struct proto_exec_started exec_started;
		struct proto_exec_stdin_error exec_stdin_error;
		struct proto_exec_exited exec_exited;
		struct proto_exec_failed exec_failed;
		struct proto_exec_resize exec_resize;
		struct proto_exec_signal exec_signal;
		struct proto_fs_request fs_request;
		struct proto_fs_response fs_response;
		struct proto_tcp_connect tcp_connect;
		struct proto_tcp_failed tcp_failed;
		struct proto_data data; /* exec.stdin/stdout/stderr, tcp.data, fs.data */
		struct proto_bulk_accepted bulk_accepted;
		struct proto_bulk_credit bulk_credit;
		struct proto_bulk_finish bulk_finish;
		struct proto_bulk_cancel bulk_cancel;
		struct proto_workload_freeze workload_freeze;
		struct proto_workload_frozen workload_frozen;
		struct proto_workload_thaw workload_thaw;
		struct proto_workload_thawed workload_thawed;
		struct proto_workload_transport workload_transport_credit;
		struct proto_root_disk_grow root_disk_grow; /* root_disk.prepare and .grow */
		struct proto_root_disk_state root_disk_state;
		struct proto_sandwire_credit sandwire_credit;
	} u;
};

/*
 * Lowest generation a peer must speak to read <m>: the type's generation,
 * or more when a field of a later generation is set (a bulk offer: 8;
 * ready's, error's or relay.client.disconnected's gen-9 fields: 9).
 * A sender gates what it sends to a peer with it (G2.2).  Any thread.
 */
uint8_t proto_msg_min_gen(const struct proto_msg *m);

/*
 * Encode <m> as a whole frame with id <id> into <buf> of <cap> bytes: the
 * header with the type's flags, the canonical envelope, the payload.
 * Returns the frame size, PROTO_E_NOSPACE, PROTO_E_OVERSIZE (the frame
 * would exceed PROTO_MAX_FRAME_LEN), PROTO_E_BAD_VALUE (an enum out of
 * range) or -EINVAL (invalid type).  Any thread.
 */
long proto_frame_encode(void *buf, size_t cap, uint32_t id, const struct proto_msg *m);

/*
 * Decode frame <f> into <m>.  <a> receives lists and the rare assembled
 * strings (may be NULL when none are expected: PROTO_E_NOSPACE otherwise).
 * Bytes after the body's item or the payload's item are ignored.
 * A frame with flag 0x08 is never decoded as CBOR: the result is
 * PROTO_E_BULK_RECORD for a well-formed record, else the record's error
 * (PROTO_E_BULK_FLAGS for 0x08 combined with other flags, or a header error
 * of proto_bulk_prefix_parse()).  A lease record (proto_frame_is_lease) gives
 * PROTO_E_LEASE_RECORD, or PROTO_E_LEASE when malformed.  m->type stays
 * PROTO_T_UNKNOWN in these cases.
 * Returns 0 or a negative proto code; on failure <ei> (may be NULL) gets
 * the code, the offset from the start of the frame (length prefix = 0;
 * from the start of "p" when "p" was assembled in the arena), the type name
 * when known, and the field when known.  m->type, m->v and m->tname are set
 * as soon as the envelope decoded (PROTO_E_UNKNOWN_TYPE: type is
 * PROTO_T_UNKNOWN and tname holds the name for the error reply).
 * Any thread.
 */
int proto_frame_decode(const struct proto_frame *f, struct proto_msg *m, struct proto_arena *a,
	struct proto_errinfo *ei);

#endif /* SW_PROTO_MSG_H */
