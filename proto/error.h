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
