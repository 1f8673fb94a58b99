/*
 * proto/msg_common.h - small payload types shared by several message
 * families (exec requests and the bootstrap both carry rlimits), and the
 * optional-value types every payload uses.
 *
 * Conventions for every payload struct in proto/msg_*.h:
 *  - strings are struct proto_str (pointer+length into the decoded frame or
 *    the decode arena; not NUL-terminated); on encode they are read as given;
 *  - an Option field is a proto_opt_* with .set; unset is written as CBOR
 *    null or omitted, exactly as the spec's tables say for that field;
 *  - lists are a pointer + count; decode places them in the cbr arena;
 *  - encode functions write ONE payload item (the CBOR that goes inside the
 *    envelope's "p" byte string) and return 0 or a negative proto code;
 *  - decode functions read one payload item from a struct cbr positioned on
 *    it, apply the spec's defaults, and return 0 or a negative proto code.
 */
#ifndef SW_PROTO_MSG_COMMON_H
#define SW_PROTO_MSG_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"

struct proto_opt_u8 { bool set; uint8_t v; };
struct proto_opt_u16 { bool set; uint16_t v; };
struct proto_opt_u32 { bool set; uint32_t v; };
struct proto_opt_u64 { bool set; uint64_t v; };
struct proto_opt_i32 { bool set; int32_t v; };
struct proto_opt_i64 { bool set; int64_t v; };
struct proto_opt_str { bool set; struct proto_str v; };

/*
 * A 16-byte identity (a relay client incarnation, a bulk-port connection
 * id): Rust [u8; 16], written as an array of 16 integers, never as a byte
 * string; decoding accepts both forms.
 */
#define PROTO_ID16_SIZE 16
struct proto_id16 { uint8_t b[PROTO_ID16_SIZE]; };
struct proto_opt_id16 { bool set; struct proto_id16 v; };

/* Encode <id> as an array of 16 integers. */
void proto_id16_encode(struct cbw *w, const struct proto_id16 *id);
/*
 * Decode an array of 16 integers 0..255, or a byte string of 16 bytes, into
 * <id> (no arena needed).  Returns 0, PROTO_E_BAD_VALUE for another count,
 * PROTO_E_RANGE for an element above 255, or the reader's error.
 */
int proto_id16_decode(struct cbr *r, struct proto_id16 *id);

/* ExecRlimit: {resource: text, soft: u64, hard: u64}; RLIM_INFINITY = 2^64-1. */
struct proto_rlimit {
	struct proto_str resource; /* "nofile", "as", ... (matched case-insensitively) */
	uint64_t soft;
	uint64_t hard;
};

/* Encode / decode one ExecRlimit map. */
int proto_rlimit_encode(struct cbw *w, const struct proto_rlimit *rl);
int proto_rlimit_decode(struct cbr *r, struct proto_rlimit *rl);
/* Encode an array of <n> rlimits; decode an array into the arena. */
int proto_rlimits_encode(struct cbw *w, const struct proto_rlimit *rl, size_t n);
int proto_rlimits_decode(struct cbr *r, struct proto_rlimit **rl, size_t *n);
/* Decode an array of text strings into the arena (args, env, ...). */
int proto_strs_decode(struct cbr *r, struct proto_str **v, size_t *n);
/* Encode an array of <n> text strings. */
void proto_strs_encode(struct cbw *w, const struct proto_str *v, size_t n);

/*
 * Linux RLIMIT_* number for an rlimit name (case-insensitive: cpu, fsize,
 * data, stack, core, rss, nproc, nofile, memlock, as, locks, sigpending,
 * msgqueue, nice, rtprio, rttime), or -1 for an unknown name.
 */
int proto_rlimit_resource(struct proto_str name);

#endif /* SW_PROTO_MSG_COMMON_H */
