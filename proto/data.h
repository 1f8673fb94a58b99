/*
 * proto/data.h - zero-copy data frames: core.exec.stdin/stdout/stderr,
 * core.tcp.data and core.fs.data, whose payload is {data: bytes}.
 *
 * Sending: the payload is read straight into a chunk at CHUNK_HEADROOM;
 * proto_data_frame_prepend() then writes everything in front of it (frame
 * header, envelope, "p" head, {"data": head) into the headroom, so the
 * frame goes out from the same memory:
 *
 *   [len][id][flags] a3 61 76 07 61 74 <t> 61 70 <p head> a1 64 "data" <head> | payload
 *   |<-------------------- prefix (<= 50 bytes, in the headroom) ----------->|
 *
 * The bytes are the canonical encoding (shortest heads), identical to what
 * the reference writes (vectors V14-V17, V29, V30, V37).
 *
 * Receiving: proto_data_decode() returns a pointer into the receive buffer;
 * no allocation for a definite byte string, tagged or not.
 */
#ifndef SW_PROTO_DATA_H
#define SW_PROTO_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/envelope.h"
#include "proto/types.h"

struct chunk;

/* Payload of the data types: bytes into the frame (decode) or the caller's (encode). */
struct proto_data {
	const uint8_t *ptr;
	size_t len;
};

/* Size of the payload item {"data": <n bytes>} (the content of "p"). */
size_t proto_data_payload_size(size_t n);

/*
 * Bytes that precede <payload_len> data bytes in a whole frame of data type
 * <t> (header + envelope + heads), or 0 when <t> is not a data type.
 */
size_t proto_data_prefix_size(enum proto_type t, size_t payload_len);

/*
 * Write the prefix of a data frame (type <t>, id <id>, <payload_len> data
 * bytes to follow) at <dst> of <cap> bytes.  Returns the prefix size,
 * PROTO_E_BAD_VALUE when <t> is not a data type, PROTO_E_OVERSIZE when the
 * frame would exceed the maximum, PROTO_E_NOSPACE when <cap> is short.
 * Any thread.
 */
long proto_data_prefix_write(
	uint8_t *dst, size_t cap, enum proto_type t, uint32_t id, size_t payload_len);

/*
 * Turn chunk <c>, holding the payload at chunk_ptr(c) (c->len bytes), into
 * a whole frame of type <t> and id <id> by writing the prefix into its
 * headroom.  Returns 0 (c then spans the frame), PROTO_E_NOSPACE (headroom
 * short; c unchanged), PROTO_E_OVERSIZE or PROTO_E_BAD_VALUE.  Called by the
 * chunk's owner thread.
 */
int proto_data_frame_prepend(struct chunk *c, enum proto_type t, uint32_t id);

/*
 * Encode the payload item {"data": <len bytes at data>} into <w>, copying
 * the bytes (the control path; see proto_data_frame_prepend() for the
 * zero-copy one).  Returns 0 or PROTO_E_NOSPACE.
 */
int proto_data_payload_encode(struct cbw *w, const uint8_t *data, size_t len);

/*
 * Decode the {data: bytes} payload at <r>'s position: <data> points into
 * the reader's buffer for a definite byte string (tags skipped, unknown
 * keys ignored); an indefinite string or an array of integers is assembled
 * in the reader's arena (PROTO_E_NOSPACE without one).  Returns 0 or a
 * negative proto code.
 */
int proto_data_payload_decode(struct cbr *r, const uint8_t **data, size_t *len);

/*
 * Decode the payload of envelope <e> (a data type) without copying: same
 * rules as proto_data_payload_decode(); <a> may be NULL.
 */
int proto_data_decode(
	const struct proto_env *e, struct proto_arena *a, const uint8_t **data, size_t *len);

#endif /* SW_PROTO_DATA_H */
