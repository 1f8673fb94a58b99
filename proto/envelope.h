/*
 * proto/envelope.h - the frame body: the CBOR map {v, t, p} (spec 2.1).
 *
 *   a3 61 76 <v> 61 74 <text t> 61 70 <bytes p>      (canonical, as written)
 *
 * "p" is a byte string holding the payload's own CBOR encoding.  Decoding
 * accepts the reader rules of spec 2.2: keys in any order, unknown keys
 * skipped, tags skipped, any head width, an indefinite "p" or one sent as
 * an array of integers (assembled in the arena); bytes after the map are
 * ignored (rule 8).
 *
 * Encoding writes the envelope in front of a payload encoded in place:
 *
 *	struct proto_env_wr e;
 *	proto_env_begin(&e, buf, cap, PROTO_T_EXEC_RESIZE, PROTO_VERSION, 0);
 *	encode the payload into &e.w;
 *	total = proto_env_end(&e, id);   // frame bytes at buf, or < 0
 *
 * proto_env_begin() leaves room for the 9-byte header and writes the map
 * head and keys, then room for the head of "p"; proto_env_end() writes the
 * real head of "p" (moving the payload forward by a few bytes when the
 * room was not the exact size) and the frame header.
 */
#ifndef SW_PROTO_ENVELOPE_H
#define SW_PROTO_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/error.h"
#include "proto/types.h"

/*
 * Head bytes left for "p" when its size is not known in advance: 1, exact
 * for payloads under 24 bytes.  A larger payload moves forward by 1..4
 * bytes at the end, which the buffer always has room for when it can hold
 * the finished frame: a buffer of exactly the frame's size suffices.
 */
#define PROTO_ENV_P_RESERVE 1

/* A decoded envelope; pointers go into the decoded body or the arena. */
struct proto_env {
	uint8_t v;	      /* sender's generation */
	enum proto_type type; /* PROTO_T_UNKNOWN when "t" names no known type */
	struct proto_str t;   /* "t" as received, kept for error replies */
	const uint8_t *p;     /* payload bytes */
	size_t p_len;	      /* bytes at p */
	size_t p_off;	      /* offset of p in the body, or SIZE_MAX when assembled in the arena */
	size_t t_off;	      /* offset of the value of "t" in the body */
};

/*
 * Decode the body <body> of <len> bytes into <e>.  <a> may be NULL (then an
 * indefinite "t" or "p" gives PROTO_E_NOSPACE).  Returns 0 or a negative
 * proto code: PROTO_E_TRUNCATED, _CBOR, _WRONG_TYPE, _DUP_FIELD,
 * _MISSING_FIELD, _VERSION ("v" not 0..255), _UNKNOWN_TYPE (e->t is set and
 * the rest of the envelope is valid), _DEPTH, _NOSPACE.  On failure, <ei>
 * (may be NULL) gets code, offset in the body, and field ("v", "t", "p").
 * Any thread.
 */
int proto_env_decode(const uint8_t *body, size_t len, struct proto_arena *a, struct proto_env *e,
	struct proto_errinfo *ei);

/* A frame being encoded: header, envelope, then the payload written through <w>. */
struct proto_env_wr {
	struct cbw w; /* positioned on the payload between begin and end */
	enum proto_type type;
	size_t head_off;    /* where the head of "p" goes */
	size_t payload_off; /* first payload byte */
};

/*
 * Start a frame of type <t> with "v" = <v> in <buf> of <cap> bytes: room for
 * the 9-byte header, the envelope up to "p", and room for the head of "p"
 * sized for <p_len_hint> payload bytes (0 when unknown: PROTO_ENV_P_RESERVE
 * bytes).  Encode the payload into e->w next.  Errors are sticky in e->w.
 */
void proto_env_begin(struct proto_env_wr *e, void *buf, size_t cap, enum proto_type t, uint8_t v,
	size_t p_len_hint);

/*
 * Finish the frame: the payload is everything written to e->w since
 * proto_env_begin().  Writes the head of "p" (moving the payload when the
 * room left for it was not the exact size) and the frame header with id
 * <id> and the flags of the type.  Returns the frame's total size,
 * PROTO_E_NOSPACE, or PROTO_E_OVERSIZE when len would exceed the maximum.
 */
long proto_env_end(struct proto_env_wr *e, uint32_t id);

#endif /* SW_PROTO_ENVELOPE_H */
