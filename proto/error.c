/*
 * proto/error.c - names of the wire codec's error codes.
 *
 * proto_strerror() covers the proto range (PROTO_E_*) and negative errno
 * values (via glibc's strerrordesc_np, which returns a static string and is
 * thread-safe, unlike strerror).
 */
#include <stdio.h>
#include <string.h>

#include "proto/error.h"

const char *proto_strerror(int code)
{
	const char *s;

	switch (code) {
	case 0:
		return "success";
	case PROTO_E_TRUNCATED:
		return "truncated input";
	case PROTO_E_OVERSIZE:
		return "frame or item too large";
	case PROTO_E_UNDERSIZE:
		return "frame length below the 5-byte header";
	case PROTO_E_CBOR:
		return "malformed CBOR";
	case PROTO_E_MISSING_FIELD:
		return "missing field";
	case PROTO_E_WRONG_TYPE:
		return "wrong CBOR type for field";
	case PROTO_E_RANGE:
		return "integer out of range";
	case PROTO_E_UNKNOWN_TYPE:
		return "unknown message type";
	case PROTO_E_VERSION:
		return "unusable protocol version";
	case PROTO_E_DUP_FIELD:
		return "duplicate field";
	case PROTO_E_NOSPACE:
		return "no space in output buffer or arena";
	case PROTO_E_DEPTH:
		return "nesting too deep";
	case PROTO_E_BAD_VALUE:
		return "value not allowed";
	case PROTO_E_FLAGS:
		return "frame flags do not match the message type";
	case PROTO_E_TRAILING:
		return "trailing bytes after the item";
	case PROTO_E_BULK_RECORD:
		return "raw bulk record, not a CBOR message";
	case PROTO_E_BULK_FLAGS:
		return "bulk flag cannot be combined with control flags";
	case PROTO_E_BULK_EMPTY:
		return "bulk record has no payload";
	case PROTO_E_BULK_RESERVED:
		return "reserved bulk header bytes must be zero";
	case PROTO_E_BULK_KIND:
		return "unknown bulk kind";
	case PROTO_E_BULK_FLOW:
		return "unknown bulk flow";
	case PROTO_E_BULK_LENGTH:
		return "invalid bulk record payload length";
	case PROTO_E_BULK_OVERFLOW:
		return "bulk offset overflow";
	case PROTO_E_BULK_MISMATCH:
		return "bulk kind or flow does not match the correlation";
	case PROTO_E_BULK_FINISHED:
		return "bulk flow is already finished";
	case PROTO_E_BULK_OFFSET:
		return "bulk record offset does not match the expected offset";
	case PROTO_E_BULK_CREDIT:
		return "bulk record end exceeds the credit limit";
	case PROTO_E_BULK_FINAL:
		return "bulk finish offset does not match the bytes of the flow";
	case PROTO_E_BULK_GRANT:
		return "invalid bulk credit update";
	case PROTO_E_BULK_FORMAT:
		return "unsupported bulk format";
	case PROTO_E_BULK_LIMIT:
		return "invalid maximum bulk record payload";
	case PROTO_E_BULK_FLOWS:
		return "bulk acceptance does not match the operation's kind or flows";
	case PROTO_E_LEASE_RECORD:
		return "relay lease record, not a CBOR message";
	case PROTO_E_LEASE:
		return "malformed relay client lease frame";
	default:
		break;
	}
	if (code < 0 && code > -PROTO_E_BASE) {
		s = strerrordesc_np(-code);
		if (s)
			return s;
	}
	return "unknown error";
}

char *proto_errinfo_format(const struct proto_errinfo *ei, char *buf, size_t cap)
{
	int n = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	if (ei->type)
		n = snprintf(buf, cap, "%s: ", ei->type);
	if (n >= 0 && (size_t)n < cap && ei->field)
		n += snprintf(buf + n, cap - (size_t)n, "field `%s`: ", ei->field);
	if (n >= 0 && (size_t)n < cap)
		snprintf(buf + n, cap - (size_t)n, "%s at offset %zu", proto_strerror(ei->code),
			ei->offset);
	return buf;
}
