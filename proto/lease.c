/*
 * proto/lease.c - MSBL relay lease records (lease.h).
 */
#include <string.h>

#include "proto/error.h"
#include "proto/lease.h"

/* Offsets in the record (from the length prefix). */
#define LEASE_OFF_MAGIC PROTO_HDR_SIZE
#define LEASE_OFF_FORMAT 13
#define LEASE_OFF_EVENT 14
#define LEASE_OFF_RESERVED 15
#define LEASE_OFF_START 17
#define LEASE_OFF_END 21
#define LEASE_OFF_INCARNATION 25

_Static_assert(LEASE_OFF_INCARNATION + PROTO_ID16_SIZE == PROTO_LEASE_SIZE, "lease layout");

static void lease_be32_write(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

bool proto_frame_is_lease(const struct proto_frame *f)
{
	return f->id == 0 && f->body_len >= PROTO_LEASE_MAGIC_SIZE &&
	       memcmp(f->body, PROTO_LEASE_MAGIC, PROTO_LEASE_MAGIC_SIZE) == 0;
}

int proto_lease_parse(const uint8_t *buf, size_t avail, struct proto_lease *l)
{
	static const uint8_t zero[5];

	if (avail < PROTO_LEASE_SIZE)
		return PROTO_E_TRUNCATED;
	if (proto_be32(buf) != PROTO_LEASE_SIZE - PROTO_LEN_SIZE ||
		memcmp(buf + PROTO_LEN_SIZE, zero, 5) != 0 || /* id 0, flags 0 */
		memcmp(buf + LEASE_OFF_MAGIC, PROTO_LEASE_MAGIC, PROTO_LEASE_MAGIC_SIZE) != 0 ||
		buf[LEASE_OFF_FORMAT] != PROTO_LEASE_FORMAT_V1 ||
		(buf[LEASE_OFF_EVENT] != PROTO_LEASE_CONNECTED &&
			buf[LEASE_OFF_EVENT] != PROTO_LEASE_DISCONNECT_ACK) ||
		buf[LEASE_OFF_RESERVED] != 0 || buf[LEASE_OFF_RESERVED + 1] != 0)
		return PROTO_E_LEASE;
	l->event = (enum proto_lease_event)buf[LEASE_OFF_EVENT];
	l->id_start = proto_be32(buf + LEASE_OFF_START);
	l->id_end_exclusive = proto_be32(buf + LEASE_OFF_END);
	memcpy(l->incarnation.b, buf + LEASE_OFF_INCARNATION, PROTO_ID16_SIZE);
	return PROTO_LEASE_SIZE;
}

int proto_lease_write(uint8_t *dst, size_t cap, const struct proto_lease *l)
{
	if (l->event != PROTO_LEASE_CONNECTED && l->event != PROTO_LEASE_DISCONNECT_ACK)
		return PROTO_E_BAD_VALUE;
	if (cap < PROTO_LEASE_SIZE)
		return PROTO_E_NOSPACE;
	proto_frame_header_write(dst, PROTO_LEASE_SIZE - PROTO_LEN_SIZE, 0, 0);
	memcpy(dst + LEASE_OFF_MAGIC, PROTO_LEASE_MAGIC, PROTO_LEASE_MAGIC_SIZE);
	dst[LEASE_OFF_FORMAT] = PROTO_LEASE_FORMAT_V1;
	dst[LEASE_OFF_EVENT] = (uint8_t)l->event;
	dst[LEASE_OFF_RESERVED] = 0;
	dst[LEASE_OFF_RESERVED + 1] = 0;
	lease_be32_write(dst + LEASE_OFF_START, l->id_start);
	lease_be32_write(dst + LEASE_OFF_END, l->id_end_exclusive);
	memcpy(dst + LEASE_OFF_INCARNATION, l->incarnation.b, PROTO_ID16_SIZE);
	return PROTO_LEASE_SIZE;
}

bool proto_lease_range_canonical(uint32_t id_start, uint32_t id_end_exclusive)
{
	uint32_t slot = id_start / PROTO_RELAY_ID_STEP;

	return slot < PROTO_RELAY_SLOTS && id_start == slot * PROTO_RELAY_ID_STEP + 1 &&
	       id_end_exclusive == (slot + 1) * PROTO_RELAY_ID_STEP;
}
