/*
 * proto/bulk.h - generation-8 raw bulk records (protocol-gen9.md G1, G3.1,
 * G4, G9): the record prefix codec, the payload structs of core.bulk.* and
 * of the `bulk` offer, and the per-flow state that checks records, credit
 * and finish.
 *
 * A raw record is a frame whose flags byte is exactly 0x08 and whose body
 * is a 12-byte header and the payload, no CBOR:
 *
 *   0     4     8    9     10    11      13             21
 *   [len ][id  ][08 ][kind][flow][00 00 ][offset u64 BE][payload: n bytes]
 *   |<------------ prefix: PROTO_BULK_PREFIX_SIZE = 21 bytes ---------->|
 *
 *   len = 5 + 12 + n, 1 <= n <= PROTO_BULK_MAX_RECORD (3 MiB); id != 0.
 *
 * Receiving: once 21 bytes are in, proto_bulk_prefix_parse() checks them
 * (G1.4) and says how many payload bytes follow, so the payload can be
 * read straight into a chunk; proto_bulk_rx_record() then checks the
 * record against its flow (G4.6).  A frame that proto_frame_parse() already
 * split goes through proto_bulk_frame_parse().  The reference agent treats
 * a bad prefix as fatal and flow errors as per-correlation; sandwire fails
 * only the stream in both cases (wire.md), so the codes only name the
 * fault and the caller decides.
 *
 * Sending: the payload sits in a chunk at CHUNK_HEADROOM;
 * proto_bulk_frame_prepend() writes the prefix into the headroom, so the
 * record leaves from the memory the bytes were received into.
 * proto_bulk_tx_room() bounds the next record by the record limit and the
 * credit, proto_bulk_tx_admit() assigns its offset.
 *
 * Flow state: one struct proto_bulk_tx per flow this side sends, one struct
 * proto_bulk_rx per flow it receives (G4.1).  Credit is absolute: a record
 * may end at credit_limit, not beyond.  Owner: the thread running the
 * correlation; no locking.  Every function here is pure (no I/O).
 */
#ifndef SW_PROTO_BULK_H
#define SW_PROTO_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/frame.h"

struct chunk;

#define PROTO_BULK_FORMAT_RAW_V1 1u    /* BULK_FORMAT_RAW_V1, the only format */
#define PROTO_BULK_HDR_SIZE 12u	       /* BULK_HEADER_SIZE: kind, flow, reserved, offset */
#define PROTO_BULK_PREFIX_SIZE 21u     /* frame header + bulk header: bytes before the payload */
#define PROTO_BULK_MIN_RECORD 16384u   /* MIN_BULK_RECORD_PAYLOAD: lowest negotiable limit */
#define PROTO_BULK_TCP_RECORD 262144u  /* DEFAULT_BULK_RECORD_PAYLOAD (TCP) */
#define PROTO_BULK_MAX_RECORD 3145728u /* MAX_BULK_RECORD_PAYLOAD = the fs default */
#define PROTO_BULK_DEFAULT_WINDOW 8388608ull /* DEFAULT_BULK_WINDOW */
#define PROTO_BULK_MAX_WINDOW 33554432ull    /* MAX_BULK_WINDOW: initial credit, limit - consumed */
/* Frame len of a record with a payload of <n> bytes, and its bounds (18 .. 3,145,745). */
#define PROTO_BULK_LEN(n) (PROTO_FRAME_HEADER_SIZE + PROTO_BULK_HDR_SIZE + (n))
#define PROTO_BULK_MIN_LEN PROTO_BULK_LEN(1u)
#define PROTO_BULK_MAX_LEN PROTO_BULK_LEN(PROTO_BULK_MAX_RECORD)

/* Operation family of a bulk correlation (u8 on the wire). */
enum proto_bulk_kind {
	PROTO_BULK_KIND_FS = 1,	 /* core.fs.request Read / Write */
	PROTO_BULK_KIND_TCP = 2, /* core.tcp.connect */
};

/* Direction of one flow (u8 on the wire). */
enum proto_bulk_flow {
	PROTO_BULK_H2G = 1, /* host -> guest */
	PROTO_BULK_G2H = 2, /* guest -> host */
};

/* Bits of BulkAccepted.flows; what each operation needs (G5). */
#define PROTO_BULK_MASK_H2G 0x01u
#define PROTO_BULK_MASK_G2H 0x02u
#define PROTO_BULK_FLOWS_TCP (PROTO_BULK_MASK_H2G | PROTO_BULK_MASK_G2H)
#define PROTO_BULK_FLOWS_FS_READ PROTO_BULK_MASK_G2H
#define PROTO_BULK_FLOWS_FS_WRITE PROTO_BULK_MASK_H2G

/* BulkCancel.reason (u8 on the wire). */
enum proto_bulk_cancel_reason {
	PROTO_BULK_CANCEL_CALLER = 1,	      /* caller_cancelled */
	PROTO_BULK_CANCEL_DESTINATION_IO = 2, /* destination_io */
	PROTO_BULK_CANCEL_RESOURCE_LIMIT = 3, /* resource_limit */
	PROTO_BULK_CANCEL_TRANSPORT = 4,      /* transport_failure */
	PROTO_BULK_CANCEL_PROTOCOL = 5,	      /* protocol_state */
};

/* The `bulk` field of core.tcp.connect and core.fs.request (H->G). */
struct proto_bulk_offer {
	uint8_t format;			     /* must be 1 */
	uint32_t max_record_payload;	     /* largest record the host accepts, 16 KiB..3 MiB */
	uint64_t guest_to_host_credit_limit; /* initial g2h credit, <= 32 MiB; 0: no g2h flow */
};

/* An Option<BulkOffer>: omitted when unset. */
struct proto_opt_bulk_offer {
	bool set;
	struct proto_bulk_offer v;
};

/* core.bulk.accepted (G->H) */
struct proto_bulk_accepted {
	enum proto_bulk_kind kind;
	uint8_t flows;			     /* PROTO_BULK_MASK_* */
	uint8_t format;			     /* 1 */
	uint32_t max_record_payload;	     /* effective limit of both flows, <= the offer's */
	uint64_t host_to_guest_credit_limit; /* initial h2g credit; non-zero iff h2g enabled */
	uint64_t guest_to_host_credit_limit; /* echoes the offer; non-zero iff g2h enabled */
};

/* core.bulk.credit, sent by the receiver of <flow>. */
struct proto_bulk_credit {
	enum proto_bulk_kind kind;
	enum proto_bulk_flow flow;
	uint64_t consumed_offset; /* bytes the receiver took responsibility for */
	uint64_t credit_limit;	  /* absolute exclusive offset the sender may reach */
};

/* core.bulk.finish, sent by the sender of <flow>. */
struct proto_bulk_finish {
	enum proto_bulk_kind kind;
	enum proto_bulk_flow flow;
	uint64_t final_offset; /* exact total bytes of the flow */
};

/* core.bulk.cancel (either side; stops both flows; not TERMINAL). */
struct proto_bulk_cancel {
	enum proto_bulk_kind kind;
	enum proto_bulk_cancel_reason reason;
	struct proto_str message; /* diagnostic, never payload data */
};

/* One raw record's header fields. */
struct proto_bulk_rec {
	uint32_t id;
	enum proto_bulk_kind kind;
	enum proto_bulk_flow flow;
	uint64_t offset; /* stream offset of the first payload byte */
	uint32_t len;	 /* payload bytes */
};

/* Bit of <flow> in BulkAccepted.flows. */
static inline uint8_t proto_bulk_flow_mask(enum proto_bulk_flow flow)
{
	return flow == PROTO_BULK_H2G ? PROTO_BULK_MASK_H2G : PROTO_BULK_MASK_G2H;
}

/*
 * Check the record prefix at <buf> (<avail> bytes, the length prefix
 * first) in the order of G1.4 and fill <r>.  Returns PROTO_BULK_PREFIX_SIZE
 * (r->len payload bytes follow the prefix), PROTO_E_TRUNCATED when <avail>
 * is too short to decide, or: PROTO_E_OVERSIZE / PROTO_E_UNDERSIZE (the
 * frame length itself is illegal, a framing error), PROTO_E_BULK_FLAGS
 * (flags not exactly 0x08), PROTO_E_BULK_EMPTY (len < 18),
 * PROTO_E_BULK_RESERVED, PROTO_E_BULK_KIND, PROTO_E_BULK_FLOW,
 * PROTO_E_BULK_LENGTH (payload above 3 MiB), PROTO_E_BULK_OVERFLOW (offset
 * + length overflows u64).  Any thread.
 */
int proto_bulk_prefix_parse(const uint8_t *buf, size_t avail, struct proto_bulk_rec *r);

/*
 * The same checks on a whole frame split by proto_frame_parse(); <payload>
 * (may be NULL) points at the payload inside the frame.  Returns 0 or the
 * codes of proto_bulk_prefix_parse() (a body shorter than the header is
 * PROTO_E_BULK_EMPTY).  Any thread.
 */
int proto_bulk_frame_parse(
	const struct proto_frame *f, struct proto_bulk_rec *r, const uint8_t **payload);

/*
 * Write the 21-byte prefix of record <r> (r->len payload bytes to follow)
 * at <dst> of <cap> bytes.  Returns PROTO_BULK_PREFIX_SIZE,
 * PROTO_E_NOSPACE, PROTO_E_BAD_VALUE (id 0), PROTO_E_BULK_KIND,
 * PROTO_E_BULK_FLOW, PROTO_E_BULK_LENGTH (0 or above 3 MiB) or
 * PROTO_E_BULK_OVERFLOW.  Any thread.
 */
int proto_bulk_prefix_write(uint8_t *dst, size_t cap, const struct proto_bulk_rec *r);

/*
 * Turn chunk <c>, holding the payload at chunk_ptr(c) (c->len bytes), into
 * a whole record (id <id>, <kind>, <flow>, <offset>) by writing the prefix
 * into its headroom.  Returns 0 (c then spans the record), PROTO_E_NOSPACE
 * (headroom short; c unchanged) or the codes of proto_bulk_prefix_write().
 * Called by the chunk's owner thread.
 */
int proto_bulk_frame_prepend(struct chunk *c, uint32_t id, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint64_t offset);

/*
 * Check an offer on its own (G3.1): PROTO_E_BULK_LIMIT (max_record_payload
 * outside 16 KiB..3 MiB), PROTO_E_BULK_FORMAT, PROTO_E_BULK_GRANT
 * (guest_to_host_credit_limit above 32 MiB), or 0.  What each operation
 * additionally requires of the g2h credit (G5) is the agent's check.
 */
int proto_bulk_offer_check(const struct proto_bulk_offer *o);

/*
 * Check acceptance <a> against offer <o> for an operation of <kind> that
 * needs the flows <flows> (PROTO_BULK_FLOWS_*), as a host must (G4.2):
 * 0, or the offer's error, PROTO_E_BULK_LIMIT, PROTO_E_BULK_FLOWS (kind or
 * flows differ), PROTO_E_BULK_FORMAT, PROTO_E_BULK_GRANT (g2h not echoed,
 * h2g above 32 MiB, a credit zero for an enabled flow or non-zero for a
 * disabled one).  On an error the host cancels with reason 5.
 */
int proto_bulk_accepted_check(const struct proto_bulk_accepted *a, const struct proto_bulk_offer *o,
	enum proto_bulk_kind kind, uint8_t flows);

/* Sender side of one flow. */
struct proto_bulk_tx {
	enum proto_bulk_kind kind;
	enum proto_bulk_flow flow;
	uint32_t max_record;   /* negotiated max_record_payload */
	bool finished;	       /* core.bulk.finish sent */
	uint64_t next_offset;  /* bytes admitted: offset of the next record */
	uint64_t consumed;     /* the receiver's last consumed_offset */
	uint64_t credit_limit; /* absolute exclusive limit */
};

/*
 * Start a sender flow with the negotiated record limit and initial credit.
 * Returns 0, PROTO_E_BULK_KIND, PROTO_E_BULK_FLOW, PROTO_E_BULK_LIMIT or
 * PROTO_E_BULK_GRANT (credit above 32 MiB).
 */
int proto_bulk_tx_init(struct proto_bulk_tx *tx, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint32_t max_record, uint64_t credit_limit);

/*
 * Largest payload the next record may carry now: min(record limit,
 * credit_limit - next_offset); 0 means wait for credit (or finished).
 */
static inline uint32_t proto_bulk_tx_room(const struct proto_bulk_tx *tx)
{
	uint64_t credit =
		tx->credit_limit > tx->next_offset ? tx->credit_limit - tx->next_offset : 0;

	if (tx->finished)
		return 0;
	return credit < tx->max_record ? (uint32_t)credit : tx->max_record;
}

/*
 * Admit a record of <n> payload bytes: <offset> gets its stream offset and
 * next_offset advances.  Returns 0, PROTO_E_BULK_FINISHED,
 * PROTO_E_BULK_LENGTH (0 or above the limit), PROTO_E_BULK_OVERFLOW or
 * PROTO_E_BULK_CREDIT (beyond credit_limit); nothing changes on an error.
 */
int proto_bulk_tx_admit(struct proto_bulk_tx *tx, size_t n, uint64_t *offset);

/*
 * Apply the receiver's core.bulk.credit <c> (G4.4).  Returns 1 when it
 * moved the credit, 0 for a harmless duplicate, PROTO_E_BULK_MISMATCH
 * (another kind or flow) or PROTO_E_BULK_GRANT (consumed beyond what was
 * sent, a window above 32 MiB, or fields that shrink or leave credit below
 * what was sent); nothing changes on an error.
 */
int proto_bulk_tx_credit(struct proto_bulk_tx *tx, const struct proto_bulk_credit *c);

/*
 * End the flow: <f> gets the core.bulk.finish to send (final_offset =
 * next_offset).  Returns 0 or PROTO_E_BULK_FINISHED.
 */
int proto_bulk_tx_finish(struct proto_bulk_tx *tx, struct proto_bulk_finish *f);

/* Receiver side of one flow. */
struct proto_bulk_rx {
	enum proto_bulk_kind kind;
	enum proto_bulk_flow flow;
	uint32_t max_record;	/* negotiated max_record_payload */
	bool finished;		/* core.bulk.finish accepted */
	uint64_t window;	/* credit kept ahead of consumed_offset */
	uint64_t next_expected; /* bytes received: offset the next record must have */
	uint64_t consumed;	/* bytes delivered to the destination */
	uint64_t credit_limit;	/* absolute exclusive limit granted */
};

/*
 * Start a receiver flow: record limit, initial credit granted (the offer's
 * or the acceptance's) and the window replenished from then on.  Returns 0,
 * PROTO_E_BULK_KIND, PROTO_E_BULK_FLOW, PROTO_E_BULK_LIMIT or
 * PROTO_E_BULK_GRANT (window 0 or above 32 MiB, credit above the window).
 */
int proto_bulk_rx_init(struct proto_bulk_rx *rx, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint32_t max_record, uint64_t credit_limit, uint64_t window);

/*
 * Check record <r> against the flow (G4.6, in this order) and count it as
 * received.  Returns 0, PROTO_E_BULK_FINISHED, PROTO_E_BULK_MISMATCH,
 * PROTO_E_BULK_LENGTH (0 or above the negotiated limit), PROTO_E_BULK_OFFSET
 * (not next_expected: a gap or a repeat), PROTO_E_BULK_OVERFLOW or
 * PROTO_E_BULK_CREDIT (ends beyond credit_limit); nothing changes on an
 * error.
 */
int proto_bulk_rx_record(struct proto_bulk_rx *rx, const struct proto_bulk_rec *r);

/*
 * Record that the destination has taken every byte below <consumed_offset>
 * and, by agentd's rule, decide on a grant: when credit_limit -
 * consumed_offset <= window / 2 the limit moves to consumed_offset + window
 * and <grant> gets the core.bulk.credit to send (returns 1); otherwise
 * returns 0.  PROTO_E_BULK_GRANT when <consumed_offset> moves backwards or
 * beyond the bytes received (nothing changes).
 */
int proto_bulk_rx_consume(
	struct proto_bulk_rx *rx, uint64_t consumed_offset, struct proto_bulk_credit *grant);

/*
 * Accept the sender's core.bulk.finish <f>: 0 (the flow is finished),
 * PROTO_E_BULK_FINISHED, PROTO_E_BULK_MISMATCH or PROTO_E_BULK_FINAL
 * (final_offset differs from the bytes received).
 */
int proto_bulk_rx_finish(struct proto_bulk_rx *rx, const struct proto_bulk_finish *f);

#endif /* SW_PROTO_BULK_H */
