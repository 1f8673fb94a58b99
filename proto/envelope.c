/*
 * proto/envelope.c - decode and encode the {v, t, p} body (envelope.h).
 */
#include <stdint.h>
#include <string.h>

#include <cbor.h>

#include "proto/envelope.h"
#include "proto/frame.h"

/* Record a failure in <ei> (may be NULL) and return <code>. */
static int proto_env_fail(struct proto_errinfo *ei, int code, size_t off, const char *field)
{
	if (ei) {
		ei->code = code;
		ei->offset = off;
		ei->type = NULL;
		ei->field = field;
	}
	return code;
}

int proto_env_decode(const uint8_t *body, size_t len, struct proto_arena *a, struct proto_env *e,
	struct proto_errinfo *ei)
{
	enum { SEEN_V = 1, SEEN_T = 2, SEEN_P = 4 };
	struct proto_str key;
	const char *field = NULL;
	struct cbr_agg m;
	struct cbr r;
	unsigned seen = 0, bit;
	size_t off = 0;
	int rc;

	cbr_init(&r, body, len, a);
	rc = cbr_enter_map(&r, &m);
	if (rc < 0)
		goto fail;
	while ((rc = cbr_agg_next(&r, &m)) > 0) {
		off = cbr_offset(&r);
		field = NULL;
		rc = cbr_key(&r, &key);
		if (rc < 0)
			goto fail;
		bit = 0;
		if (key.len == 1 && key.ptr[0] == 'v') {
			bit = SEEN_V;
			field = "v";
		} else if (key.len == 1 && key.ptr[0] == 't') {
			bit = SEEN_T;
			field = "t";
		} else if (key.len == 1 && key.ptr[0] == 'p') {
			bit = SEEN_P;
			field = "p";
		}
		if (seen & bit) {
			rc = PROTO_E_DUP_FIELD;
			goto fail;
		}
		seen |= bit;
		off = cbr_offset(&r);
		switch (bit) {
		case SEEN_V:
			rc = cbr_u8(&r, &e->v);
			if (rc == PROTO_E_RANGE)
				rc = PROTO_E_VERSION;
			break;
		case SEEN_T:
			e->t_off = off;
			rc = cbr_text(&r, &e->t);
			break;
		case SEEN_P:
			rc = cbr_bytes(&r, &e->p, &e->p_len);
			break;
		default:
			rc = cbr_skip(&r);
			break;
		}
		if (rc < 0)
			goto fail;
	}
	if (rc < 0)
		goto fail;
	off = cbr_offset(&r);
	if (!(seen & SEEN_V) || !(seen & SEEN_T) || !(seen & SEEN_P)) {
		field = !(seen & SEEN_V) ? "v" : !(seen & SEEN_T) ? "t" : "p";
		rc = PROTO_E_MISSING_FIELD;
		goto fail;
	}
	/* p is in the body unless it was assembled in the arena (indefinite form) */
	e->p_off = (uintptr_t)e->p - (uintptr_t)body <= len ? (size_t)(e->p - body) : SIZE_MAX;
	e->type = proto_type_lookup(e->t.ptr, e->t.len);
	if (e->type == PROTO_T_UNKNOWN)
		return proto_env_fail(ei, PROTO_E_UNKNOWN_TYPE, e->t_off, "t");
	return 0;
fail:
	if (rc == PROTO_E_TRUNCATED || rc == PROTO_E_CBOR)
		off = cbr_offset(&r);
	return proto_env_fail(ei, rc, off, field);
}

void proto_env_begin(struct proto_env_wr *e, void *buf, size_t cap, enum proto_type t, uint8_t v,
	size_t p_len_hint)
{
	const struct proto_type_info *ti = &proto_type_table[t];
	struct cbw *w = &e->w;
	size_t room = p_len_hint ? cbw_head_size(p_len_hint) : PROTO_ENV_P_RESERVE;

	cbw_init(w, buf, cap);
	e->type = t;
	e->head_off = 0;
	e->payload_off = 0;
	if (cap < PROTO_HDR_SIZE) {
		w->err = PROTO_E_NOSPACE;
		return;
	}
	w->p += PROTO_HDR_SIZE; /* header written by proto_env_end() */
	cbw_map(w, 3);
	cbw_key(w, "v");
	cbw_uint(w, v);
	cbw_key(w, "t");
	cbw_text(w, ti->name, ti->name_len);
	cbw_key(w, "p");
	if (w->err)
		return;
	if ((size_t)(w->end - w->p) < room) {
		w->err = PROTO_E_NOSPACE;
		return;
	}
	e->head_off = (size_t)(w->p - w->start);
	w->p += room;
	e->payload_off = (size_t)(w->p - w->start);
}

long proto_env_end(struct proto_env_wr *e, uint32_t id)
{
	struct cbw *w = &e->w;
	uint8_t *payload = w->start + e->payload_off;
	uint8_t *head = w->start + e->head_off;
	size_t room = e->payload_off - e->head_off;
	size_t plen, hs, total;

	if (w->err)
		return w->err;
	plen = (size_t)(w->p - payload);
	hs = cbw_head_size(plen);
	if (hs > room && (size_t)(w->end - w->p) < hs - room)
		return PROTO_E_NOSPACE;
	total = e->head_off + hs + plen;
	if (total - PROTO_LEN_SIZE > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (hs != room)
		memmove(head + hs, payload, plen);
	cbor_encode_bytestring_start(plen, head, hs);
	proto_frame_header_write(
		w->start, (uint32_t)(total - PROTO_LEN_SIZE), id, proto_type_flags(e->type));
	w->p = w->start + total;
	return (long)total;
}
