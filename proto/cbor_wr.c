/*
 * proto/cbor_wr.c - CBOR writer into caller memory (see cbor_wr.h).
 *
 * Heads come from libcbor's cbor_encode_* functions, which always pick the
 * shortest form and return 0 when the output is too small; the first
 * failure sets the sticky error and every later call does nothing.
 * Any thread; a struct cbw is used by one thread at a time.
 */
#include <string.h>

#include <cbor.h>

#include "proto/cbor_wr.h"
#include "proto/error.h"

void cbw_init(struct cbw *w, void *buf, size_t cap)
{
	w->start = buf;
	w->p = buf;
	w->end = w->start + cap;
	w->err = 0;
}

long cbw_finish(const struct cbw *w)
{
	if (w->err)
		return w->err;
	return (long)(w->p - w->start);
}

/* Account for <n> bytes produced by a libcbor encoder (0 = did not fit). */
static void cbw_advance(struct cbw *w, size_t n)
{
	if (n == 0)
		w->err = PROTO_E_NOSPACE;
	else
		w->p += n;
}

static size_t cbw_room(const struct cbw *w)
{
	return (size_t)(w->end - w->p);
}

void cbw_uint(struct cbw *w, uint64_t v)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_uint(v, w->p, cbw_room(w)));
}

void cbw_int(struct cbw *w, int64_t v)
{
	if (w->err)
		return;
	if (v >= 0)
		cbw_advance(w, cbor_encode_uint((uint64_t)v, w->p, cbw_room(w)));
	else /* -1 - v never overflows, even for INT64_MIN */
		cbw_advance(w, cbor_encode_negint((uint64_t)(-1 - v), w->p, cbw_room(w)));
}

void cbw_bool(struct cbw *w, bool v)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_bool(v, w->p, cbw_room(w)));
}

void cbw_null(struct cbw *w)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_null(w->p, cbw_room(w)));
}

/* Write <n> raw content bytes after a head. */
static void cbw_raw(struct cbw *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (n > cbw_room(w)) {
		w->err = PROTO_E_NOSPACE;
		return;
	}
	if (n)
		memcpy(w->p, p, n);
	w->p += n;
}

void cbw_text(struct cbw *w, const char *s, size_t n)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_string_start(n, w->p, cbw_room(w)));
	cbw_raw(w, s, n);
}

void cbw_cstr(struct cbw *w, const char *s)
{
	cbw_text(w, s, strlen(s));
}

void cbw_bytes_head(struct cbw *w, size_t n)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_bytestring_start(n, w->p, cbw_room(w)));
}

void cbw_bytes(struct cbw *w, const void *p, size_t n)
{
	cbw_bytes_head(w, n);
	cbw_raw(w, p, n);
}

void cbw_map(struct cbw *w, size_t entries)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_map_start(entries, w->p, cbw_room(w)));
}

void cbw_array(struct cbw *w, size_t items)
{
	if (w->err)
		return;
	cbw_advance(w, cbor_encode_array_start(items, w->p, cbw_room(w)));
}
