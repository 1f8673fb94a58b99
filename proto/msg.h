/*
 * proto/msg.h - any message of generation 7 as one tagged struct, and the
 * whole-frame encoder and decoder.
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
 * frame flags (the three defined bits only, spec F2), then the payload.
 */
#ifndef SW_PROTO_MSG_H
#define SW_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/data.h"
#include "proto/error.h"
#include "proto/frame.h"
#include "proto/msg_boot.h"
#include "proto/msg_core.h"
#include "proto/msg_fs.h"
#include "proto/types.h"

/*
 * One message.  The union member is chosen by <type>; the empty-map types
 * (init.ack, ping, pong, touch, tcp.connected/eof/close/closed) and
 * core.shutdown have none.
 */
struct proto_msg {
	enum proto_type type;
	uint8_t v;		/* "v": 0 on encode means PROTO_VERSION; set by decode */
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
	} u;
};

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
