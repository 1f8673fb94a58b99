/*
 * proto/internal.h - helpers shared by the payload codecs of proto/
 * (msg_common.c defines them).  Nothing outside proto/ includes this file.
 *
 * Decoding a struct: its keys are listed in a names table; one loop
 * (proto_map_decode) reads the map, a bit per key catches duplicates and
 * missing required fields, and a per-struct callback decodes the value of
 * a known key by its index.  Lists go to the reader's arena in one block
 * (proto_list_decode).  Any thread; the struct cbr is the caller's.
 */
#ifndef SW_PROTO_INTERNAL_H
#define SW_PROTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"
#include "proto/msg_common.h"

/* Bit of key <i> in a seen/allowed/required mask, and the mask of keys 0..n-1. */
#define PROTO_BIT(i) (1u << (i))
#define PROTO_ALL(n) ((uint32_t)((1ull << (n)) - 1))
/* Number of entries of a names table. */
#define PROTO_NKEYS(t) ((unsigned)(sizeof(t) / sizeof((t)[0])))

/* Index of <s> in <names> (<n> entries), or -1. */
int proto_name_index(struct proto_str s, const char *const *names, unsigned n);

/*
 * A text enum at <r>: its index in <names> (<n> entries) goes to <k>.
 * Returns 0, PROTO_E_BAD_VALUE for a name not in the table (<k> untouched)
 * or the reader's error.
 */
int proto_name_decode(struct cbr *r, const char *const *names, unsigned n, int *k);

/* Decoder of the value of key <field> (its index in the names table) into <obj>. */
typedef int (*proto_field_fn)(struct cbr *r, void *obj, unsigned field);

/*
 * Decode the map at <r>: a key found in <names> (<n> <= 32 entries) whose
 * bit is in <allowed> goes to <fn> with its index; other keys are skipped.
 * Returns 0, PROTO_E_DUP_FIELD for a key seen twice, PROTO_E_MISSING_FIELD
 * when a bit of <required> was not seen, or the first error of the reader
 * or of <fn>.
 */
int proto_map_decode(struct cbr *r, const char *const *names, unsigned n, uint32_t allowed,
	uint32_t required, proto_field_fn fn, void *obj);

/* Decoder of one list element into <elem> (zeroed); <arg> is proto_list_decode's. */
typedef int (*proto_elem_fn)(struct cbr *r, void *elem, const void *arg);

/*
 * Decode the array at <r> into one zeroed block of <size>-byte elements
 * in r->arena, each by <fn>(r, elem, <arg>).  A definite array's count
 * comes from its head (cbr_enter_array refuses a count larger than the
 * bytes left, so a hostile head allocates nothing); an indefinite one is
 * counted by a skipping pass first.  An empty array gives NULL, 0 and needs
 * no arena.  On success <v> and <n> are set.  Returns 0, PROTO_E_NOSPACE
 * (arena missing or too small) or the first error of the reader or <fn>.
 */
int proto_list_decode(
	struct cbr *r, size_t size, proto_elem_fn fn, const void *arg, void **v, size_t *n);

/*
 * Start an Option at <r>: null or undefined is consumed and makes <*set>
 * false (returns 0); anything else makes it true and is left for the
 * caller to read (returns 1).  Or the reader's negative code.
 */
int proto_opt_begin(struct cbr *r, bool *set);

/*
 * Option fields: null or undefined leave <o>->set false; anything else
 * must be a value of the type.  Return 0 or a negative proto code.
 */
int proto_opt_u32_decode(struct cbr *r, struct proto_opt_u32 *o);
int proto_opt_u64_decode(struct cbr *r, struct proto_opt_u64 *o);
int proto_opt_i32_decode(struct cbr *r, struct proto_opt_i32 *o);
int proto_opt_i64_decode(struct cbr *r, struct proto_opt_i64 *o);
int proto_opt_str_decode(struct cbr *r, struct proto_opt_str *o);

/* ---- inline functions ---- */

/* Write <s> as a definite text string. */
static inline void proto_put_str(struct cbw *w, struct proto_str s)
{
	cbw_text(w, s.ptr, s.len);
}

/* Write an Option unsigned integer: <v>, or null when not <set>. */
static inline void proto_put_opt_uint(struct cbw *w, bool set, uint64_t v)
{
	if (set)
		cbw_uint(w, v);
	else
		cbw_null(w);
}

/* Write an Option signed integer: <v>, or null when not <set>. */
static inline void proto_put_opt_int(struct cbw *w, bool set, int64_t v)
{
	if (set)
		cbw_int(w, v);
	else
		cbw_null(w);
}

/* Write an Option string: its text, or null when unset. */
static inline void proto_put_opt_str(struct cbw *w, const struct proto_opt_str *o)
{
	if (o->set)
		proto_put_str(w, o->v);
	else
		cbw_null(w);
}

#endif /* SW_PROTO_INTERNAL_H */
