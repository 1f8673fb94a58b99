/*
 * proto/error.h - error codes of the wire codec.
 *
 * Every proto function that can fail returns a negative code.  Codes from
 * this enum live in a range disjoint from errno (-1000 and below), so a
 * caller can pass an errno-style value and a proto code through the same
 * int without ambiguity.  proto_strerror() names both kinds.
 *
 * struct proto_errinfo carries the context a log line needs (where in the
 * frame, which message type, which field); decoders fill it when the caller
 * passes one, and leave it untouched on success.
 */
#ifndef SW_PROTO_ERROR_H
#define SW_PROTO_ERROR_H

#include <stddef.h>
#include <stdint.h>

enum proto_err {
	PROTO_E_BASE = 1000,
	PROTO_E_TRUNCATED = -1001,     /* input ends inside an item or a frame */
	PROTO_E_OVERSIZE = -1002,      /* frame len > PROTO_MAX_FRAME_LEN, or item too large */
	PROTO_E_UNDERSIZE = -1003,     /* frame len < PROTO_FRAME_HEADER_SIZE (5) */
	PROTO_E_CBOR = -1004,          /* not well-formed CBOR (reserved head, bad break, ...) */
	PROTO_E_MISSING_FIELD = -1005, /* a required field is absent */
	PROTO_E_WRONG_TYPE = -1006,    /* an item has the wrong CBOR major type for its field */
	PROTO_E_RANGE = -1007,         /* integer out of range for its field (u16 port 70000 ...) */
	PROTO_E_UNKNOWN_TYPE = -1008,  /* envelope "t" names no known message type */
	PROTO_E_VERSION = -1009,       /* envelope "v" unusable (missing, > 255, too old) */
	PROTO_E_DUP_FIELD = -1010,     /* a known key appears twice in one map */
	PROTO_E_NOSPACE = -1011,       /* caller's output buffer or arena too small */
	PROTO_E_DEPTH = -1012,         /* nesting deeper than PROTO_MAX_DEPTH */
	PROTO_E_BAD_VALUE = -1013,     /* well-typed but not allowed (unknown enum name ...) */
	PROTO_E_FLAGS = -1014,         /* frame flags do not match the message type */
	PROTO_E_TRAILING = -1015,      /* bytes after the frame body's single item (strict mode) */
	/* generation 8/9: the raw bulk record (bulk.h, protocol-gen9.md G1.4, G4) */
	PROTO_E_BULK_RECORD = -1016,   /* the frame is a well-formed raw bulk record, not CBOR */
	PROTO_E_BULK_FLAGS = -1017,    /* flag 0x08 combined with other flags */
	PROTO_E_BULK_EMPTY = -1018,    /* bulk record without payload (len < 18) */
	PROTO_E_BULK_RESERVED = -1019, /* reserved bulk header bytes are not zero */
	PROTO_E_BULK_KIND = -1020,     /* bulk kind not 1 (fs) or 2 (tcp) */
	PROTO_E_BULK_FLOW = -1021,     /* bulk flow not 1 (h2g) or 2 (g2h) */
	PROTO_E_BULK_LENGTH = -1022,   /* payload empty or above the record limit */
	PROTO_E_BULK_OVERFLOW = -1023, /* offset + length overflows u64 */
	PROTO_E_BULK_MISMATCH = -1024, /* kind or flow does not match the correlation's flow */
	PROTO_E_BULK_FINISHED = -1025, /* record, finish or send after the flow finished */
	PROTO_E_BULK_OFFSET = -1026,   /* record offset is not the next expected offset (gap) */
	PROTO_E_BULK_CREDIT = -1027,   /* record end exceeds the credit limit (overrun) */
	PROTO_E_BULK_FINAL = -1028,    /* finish offset differs from the bytes of the flow */
	PROTO_E_BULK_GRANT = -1029,    /* credit update outside the rules of G4.4 */
	PROTO_E_BULK_FORMAT = -1030,   /* bulk format is not 1 (raw v1) */
	PROTO_E_BULK_LIMIT = -1031,    /* max_record_payload outside 16 KiB..3 MiB or above the offer */
	PROTO_E_BULK_FLOWS = -1032,    /* accepted kind or flow mask is not what the operation needs */
	/* generation 9: relay lease records (lease.h, protocol-gen9.md G7.1) */
	PROTO_E_LEASE_RECORD = -1033,  /* the frame is a well-formed MSBL lease record, not CBOR */
	PROTO_E_LEASE = -1034,         /* malformed MSBL lease record */
};

/* Decoding context for logs: filled on failure by decoders that take one. */
struct proto_errinfo {
	int code;            /* the negative code returned */
	size_t offset;       /* byte offset of the failing item, from the start of the decoded buffer */
	const char *type;    /* wire name of the message type being decoded, or NULL */
	const char *field;   /* payload field being decoded, or NULL (static string) */
};

/* Human-readable text for a proto code or a negative errno.  Never NULL. */
const char *proto_strerror(int code);

/*
 * Format <ei> as one log line ("core.exec.resize: field `cols`: missing field
 * at offset 12") into <buf> of <cap> bytes.  Returns <buf>.
 */
char *proto_errinfo_format(const struct proto_errinfo *ei, char *buf, size_t cap);

#endif /* SW_PROTO_ERROR_H */
