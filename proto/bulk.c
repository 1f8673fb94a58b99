/*
 * proto/bulk.c - raw bulk record prefixes, offer/acceptance checks and the
 * per-flow state of generation 8 (bulk.h).
 */
#include <string.h>

#include "proto/bulk.h"
#include "proto/error.h"
#include "ring/chunk.h"

_Static_assert(PROTO_BULK_PREFIX_SIZE == PROTO_HDR_SIZE + PROTO_BULK_HDR_SIZE, "prefix layout");
_Static_assert(PROTO_BULK_PREFIX_SIZE <= CHUNK_HEADROOM, "a record prefix fits a chunk's headroom");
_Static_assert(PROTO_BULK_MAX_LEN <= PROTO_MAX_FRAME_LEN, "a maximal record is a legal frame");

/* Offsets in the prefix (from the length prefix). */
#define BULK_OFF_KIND 9
#define BULK_OFF_FLOW 10
#define BULK_OFF_RESERVED 11
#define BULK_OFF_OFFSET 13

static uint64_t bulk_be64(const uint8_t *p)
{
	return (uint64_t)proto_be32(p) << 32 | proto_be32(p + 4);
}

static bool bulk_kind_valid(unsigned kind)
{
	return kind == PROTO_BULK_KIND_FS || kind == PROTO_BULK_KIND_TCP;
}

static bool bulk_flow_valid(unsigned flow)
{
	return flow == PROTO_BULK_H2G || flow == PROTO_BULK_G2H;
}

static bool bulk_limit_valid(uint32_t limit)
{
	return limit >= PROTO_BULK_MIN_RECORD && limit <= PROTO_BULK_MAX_RECORD;
}

int proto_bulk_prefix_parse(const uint8_t *buf, size_t avail, struct proto_bulk_rec *r)
{
	uint32_t len;

	if (avail < PROTO_LEN_SIZE)
		return PROTO_E_TRUNCATED;
	len = proto_be32(buf);
	/* the frame limits first, whatever the flags (G1.3) */
	if (len > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (len < PROTO_FRAME_HEADER_SIZE)
		return PROTO_E_UNDERSIZE;
	if (avail < PROTO_HDR_SIZE)
		return PROTO_E_TRUNCATED;
	if (buf[PROTO_HDR_SIZE - 1] != PROTO_FLAG_BULK)
		return PROTO_E_BULK_FLAGS;
	if (len < PROTO_BULK_MIN_LEN)
		return PROTO_E_BULK_EMPTY;
	if (avail < PROTO_BULK_PREFIX_SIZE)
		return PROTO_E_TRUNCATED;
	if (buf[BULK_OFF_RESERVED] != 0 || buf[BULK_OFF_RESERVED + 1] != 0)
		return PROTO_E_BULK_RESERVED;
	if (!bulk_kind_valid(buf[BULK_OFF_KIND]))
		return PROTO_E_BULK_KIND;
	if (!bulk_flow_valid(buf[BULK_OFF_FLOW]))
		return PROTO_E_BULK_FLOW;
	if (len > PROTO_BULK_MAX_LEN)
		return PROTO_E_BULK_LENGTH;
	r->id = proto_be32(buf + PROTO_LEN_SIZE);
	r->kind = (enum proto_bulk_kind)buf[BULK_OFF_KIND];
	r->flow = (enum proto_bulk_flow)buf[BULK_OFF_FLOW];
	r->offset = bulk_be64(buf + BULK_OFF_OFFSET);
	r->len = len - PROTO_FRAME_HEADER_SIZE - PROTO_BULK_HDR_SIZE;
	if (r->offset > UINT64_MAX - r->len)
		return PROTO_E_BULK_OVERFLOW;
	return PROTO_BULK_PREFIX_SIZE;
}

int proto_bulk_frame_parse(
	const struct proto_frame *f, struct proto_bulk_rec *r, const uint8_t **payload)
{
	int rc = proto_bulk_prefix_parse(f->wire, f->wire_len, r);

	if (rc < 0)
		return rc;
	if (payload)
		*payload = f->wire + PROTO_BULK_PREFIX_SIZE;
	return 0;
}

int proto_bulk_prefix_write(uint8_t *dst, size_t cap, const struct proto_bulk_rec *r)
{
	uint64_t off = r->offset;
	int i;

	if (r->id == 0)
		return PROTO_E_BAD_VALUE;
	if (!bulk_kind_valid(r->kind))
		return PROTO_E_BULK_KIND;
	if (!bulk_flow_valid(r->flow))
		return PROTO_E_BULK_FLOW;
	if (r->len == 0 || r->len > PROTO_BULK_MAX_RECORD)
		return PROTO_E_BULK_LENGTH;
	if (off > UINT64_MAX - r->len)
		return PROTO_E_BULK_OVERFLOW;
	if (cap < PROTO_BULK_PREFIX_SIZE)
		return PROTO_E_NOSPACE;
	proto_frame_header_write(dst, PROTO_BULK_LEN(r->len), r->id, PROTO_FLAG_BULK);
	dst[BULK_OFF_KIND] = (uint8_t)r->kind;
	dst[BULK_OFF_FLOW] = (uint8_t)r->flow;
	dst[BULK_OFF_RESERVED] = 0;
	dst[BULK_OFF_RESERVED + 1] = 0;
	for (i = 7; i >= 0; i--, off >>= 8)
		dst[BULK_OFF_OFFSET + i] = (uint8_t)off;
	return PROTO_BULK_PREFIX_SIZE;
}

int proto_bulk_frame_prepend(struct chunk *c, uint32_t id, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint64_t offset)
{
	struct proto_bulk_rec r = {id, kind, flow, offset, c->len};
	uint8_t hdr[PROTO_BULK_PREFIX_SIZE];
	int rc;

	rc = proto_bulk_prefix_write(hdr, sizeof(hdr), &r);
	if (rc < 0)
		return rc;
	if (chunk_headroom(c) < PROTO_BULK_PREFIX_SIZE)
		return PROTO_E_NOSPACE;
	memcpy(chunk_push_front(c, PROTO_BULK_PREFIX_SIZE), hdr, sizeof(hdr));
	return 0;
}

/* ---- offer and acceptance (G3.1, G4.2) ---- */

int proto_bulk_offer_check(const struct proto_bulk_offer *o)
{
	if (!bulk_limit_valid(o->max_record_payload))
		return PROTO_E_BULK_LIMIT;
	if (o->format != PROTO_BULK_FORMAT_RAW_V1)
		return PROTO_E_BULK_FORMAT;
	if (o->guest_to_host_credit_limit > PROTO_BULK_MAX_WINDOW)
		return PROTO_E_BULK_GRANT;
	return 0;
}

int proto_bulk_accepted_check(const struct proto_bulk_accepted *a, const struct proto_bulk_offer *o,
	enum proto_bulk_kind kind, uint8_t flows)
{
	bool h2g = a->flows & PROTO_BULK_MASK_H2G, g2h = a->flows & PROTO_BULK_MASK_G2H;
	int rc = proto_bulk_offer_check(o);

	if (rc < 0)
		return rc;
	if (!bulk_limit_valid(a->max_record_payload))
		return PROTO_E_BULK_LIMIT;
	if (a->kind != kind || a->flows != flows || (a->flows & ~PROTO_BULK_FLOWS_TCP))
		return PROTO_E_BULK_FLOWS;
	if (a->format != PROTO_BULK_FORMAT_RAW_V1)
		return PROTO_E_BULK_FORMAT;
	if (a->max_record_payload > o->max_record_payload)
		return PROTO_E_BULK_LIMIT;
	if (a->guest_to_host_credit_limit != o->guest_to_host_credit_limit ||
		a->host_to_guest_credit_limit > PROTO_BULK_MAX_WINDOW ||
		h2g != (a->host_to_guest_credit_limit != 0) ||
		g2h != (a->guest_to_host_credit_limit != 0))
		return PROTO_E_BULK_GRANT;
	return 0;
}

/* ---- sender (G4.3, G4.4) ---- */

int proto_bulk_tx_init(struct proto_bulk_tx *tx, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint32_t max_record, uint64_t credit_limit)
{
	if (!bulk_kind_valid(kind))
		return PROTO_E_BULK_KIND;
	if (!bulk_flow_valid(flow))
		return PROTO_E_BULK_FLOW;
	if (!bulk_limit_valid(max_record))
		return PROTO_E_BULK_LIMIT;
	if (credit_limit > PROTO_BULK_MAX_WINDOW)
		return PROTO_E_BULK_GRANT;
	*tx = (struct proto_bulk_tx){
		.kind = kind, .flow = flow, .max_record = max_record, .credit_limit = credit_limit};
	return 0;
}

int proto_bulk_tx_admit(struct proto_bulk_tx *tx, size_t n, uint64_t *offset)
{
	if (tx->finished)
		return PROTO_E_BULK_FINISHED;
	if (n == 0 || n > tx->max_record)
		return PROTO_E_BULK_LENGTH;
	if (tx->next_offset > UINT64_MAX - n)
		return PROTO_E_BULK_OVERFLOW;
	if (tx->next_offset + n > tx->credit_limit)
		return PROTO_E_BULK_CREDIT;
	*offset = tx->next_offset;
	tx->next_offset += n;
	return 0;
}

int proto_bulk_tx_credit(struct proto_bulk_tx *tx, const struct proto_bulk_credit *c)
{
	if (c->kind != tx->kind || c->flow != tx->flow)
		return PROTO_E_BULK_MISMATCH;
	if (c->consumed_offset > tx->next_offset)
		return PROTO_E_BULK_GRANT; /* consumed bytes that were never sent */
	if (c->credit_limit < c->consumed_offset ||
		c->credit_limit - c->consumed_offset > PROTO_BULK_MAX_WINDOW)
		return PROTO_E_BULK_GRANT; /* outside the allowed absolute window */
	if (c->consumed_offset <= tx->consumed && c->credit_limit <= tx->credit_limit)
		return 0; /* nothing grows: a repeated or stale update */
	if (c->consumed_offset < tx->consumed || c->credit_limit < tx->credit_limit ||
		c->credit_limit < tx->next_offset)
		return PROTO_E_BULK_GRANT; /* advanced inconsistently */
	tx->consumed = c->consumed_offset;
	tx->credit_limit = c->credit_limit;
	return 1;
}

int proto_bulk_tx_finish(struct proto_bulk_tx *tx, struct proto_bulk_finish *f)
{
	if (tx->finished)
		return PROTO_E_BULK_FINISHED;
	tx->finished = true;
	*f = (struct proto_bulk_finish){tx->kind, tx->flow, tx->next_offset};
	return 0;
}

/* ---- receiver (G4.4 - G4.6) ---- */

int proto_bulk_rx_init(struct proto_bulk_rx *rx, enum proto_bulk_kind kind,
	enum proto_bulk_flow flow, uint32_t max_record, uint64_t credit_limit, uint64_t window)
{
	if (!bulk_kind_valid(kind))
		return PROTO_E_BULK_KIND;
	if (!bulk_flow_valid(flow))
		return PROTO_E_BULK_FLOW;
	if (!bulk_limit_valid(max_record))
		return PROTO_E_BULK_LIMIT;
	if (window == 0 || window > PROTO_BULK_MAX_WINDOW || credit_limit > window)
		return PROTO_E_BULK_GRANT;
	*rx = (struct proto_bulk_rx){.kind = kind,
		.flow = flow,
		.max_record = max_record,
		.window = window,
		.credit_limit = credit_limit};
	return 0;
}

int proto_bulk_rx_record(struct proto_bulk_rx *rx, const struct proto_bulk_rec *r)
{
	if (rx->finished)
		return PROTO_E_BULK_FINISHED;
	if (r->kind != rx->kind || r->flow != rx->flow)
		return PROTO_E_BULK_MISMATCH;
	if (r->len == 0 || r->len > rx->max_record)
		return PROTO_E_BULK_LENGTH;
	if (r->offset != rx->next_expected)
		return PROTO_E_BULK_OFFSET;
	if (r->offset > UINT64_MAX - r->len)
		return PROTO_E_BULK_OVERFLOW;
	if (r->offset + r->len > rx->credit_limit)
		return PROTO_E_BULK_CREDIT;
	rx->next_expected = r->offset + r->len;
	return 0;
}

int proto_bulk_rx_consume(
	struct proto_bulk_rx *rx, uint64_t consumed_offset, struct proto_bulk_credit *grant)
{
	if (consumed_offset < rx->consumed || consumed_offset > rx->next_expected)
		return PROTO_E_BULK_GRANT;
	rx->consumed = consumed_offset;
	/* consumed <= next_expected <= credit_limit: no underflow */
	if (rx->credit_limit - consumed_offset > rx->window / 2)
		return 0;
	if (consumed_offset > UINT64_MAX - rx->window)
		return 0; /* the limit cannot grow past 2^64: the flow ends first */
	rx->credit_limit = consumed_offset + rx->window;
	*grant = (struct proto_bulk_credit){rx->kind, rx->flow, consumed_offset, rx->credit_limit};
	return 1;
}

int proto_bulk_rx_finish(struct proto_bulk_rx *rx, const struct proto_bulk_finish *f)
{
	if (rx->finished)
		return PROTO_E_BULK_FINISHED;
	if (f->kind != rx->kind || f->flow != rx->flow)
		return PROTO_E_BULK_MISMATCH;
	if (f->final_offset != rx->next_expected)
		return PROTO_E_BULK_FINAL;
	rx->finished = true;
	return 0;
}
