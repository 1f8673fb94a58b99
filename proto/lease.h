/*
 * proto/lease.h - relay lease records "MSBL", format 1 (protocol-gen9.md
 * G7.1): a fixed 41-byte frame on id 0 with flags 0 whose body is not CBOR.
 *
 *   0     4     8    9       13   14    15     17         21        25         41
 *   [len ][id  ][fl][M S B L][fmt][evt][00 00][id_start ][id_end   ][incarnation]
 *   00000025 00000000 00      01   1|2         u32 BE     u32 BE     16 bytes
 *
 * The relay sends event 1 ("client connected", before any frame of that
 * client's range); the agent answers a core.relay.client.disconnected that
 * carries an incarnation with event 2 ("disconnect acknowledged", same range
 * and incarnation).  Offered only when core.ready.relay_lease.max_format
 * >= 1.  A receiver recognises the record by the magic on an id-0 frame
 * (proto_frame_is_lease, F38) before it tries CBOR.
 */
#ifndef SW_PROTO_LEASE_H
#define SW_PROTO_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"
#include "proto/msg_common.h"

#define PROTO_LEASE_SIZE 41u	 /* RELAY_CLIENT_LEASE_SIZE: the whole frame */
#define PROTO_LEASE_FORMAT_V1 1u /* RELAY_LEASE_FORMAT_V1 */
#define PROTO_LEASE_MAGIC "MSBL"
#define PROTO_LEASE_MAGIC_SIZE 4u
/* AGENT_RELAY_ID_RANGE_STEP: slot k owns ids [k*STEP + 1, (k+1)*STEP) (spec 5.3). */
#define PROTO_RELAY_ID_STEP 33554431u
#define PROTO_RELAY_SLOTS 128u

/* The event byte. */
enum proto_lease_event {
	PROTO_LEASE_CONNECTED = 1,	/* relay -> agent: range owned by <incarnation> */
	PROTO_LEASE_DISCONNECT_ACK = 2, /* agent -> relay: range drained, may be reused */
};

/* One lease record (format 1). */
struct proto_lease {
	enum proto_lease_event event;
	uint32_t id_start;
	uint32_t id_end_exclusive;
	struct proto_id16 incarnation;
};

/* True when frame <f> is on id 0 and its body starts with the MSBL magic. */
bool proto_frame_is_lease(const struct proto_frame *f);

/*
 * Check the 41 bytes at <buf> (<avail> bytes, the length prefix first) and
 * fill <l>.  Returns PROTO_LEASE_SIZE, PROTO_E_TRUNCATED when fewer than 41
 * bytes are there, or PROTO_E_LEASE for any deviation: len not 37, id or
 * flags not 0, magic, format not 1, event not 1 or 2, reserved bytes not 0.
 * The range is not checked here (proto_lease_range_canonical).  Any thread.
 */
int proto_lease_parse(const uint8_t *buf, size_t avail, struct proto_lease *l);

/*
 * Write lease record <l> at <dst> of <cap> bytes.  Returns
 * PROTO_LEASE_SIZE, PROTO_E_NOSPACE or PROTO_E_BAD_VALUE (unknown event).
 * Any thread.
 */
int proto_lease_write(uint8_t *dst, size_t cap, const struct proto_lease *l);

/*
 * True when [id_start, id_end_exclusive) is exactly one reference slot's
 * range, [k*STEP + 1, (k+1)*STEP) for k < 128: what the reference agent
 * requires of a lease.
 */
bool proto_lease_range_canonical(uint32_t id_start, uint32_t id_end_exclusive);

#endif /* SW_PROTO_LEASE_H */
