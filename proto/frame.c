/*
 * proto/frame.c - frame header parsing and the stream splitter (frame.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"

int proto_frame_parse(const uint8_t *buf, size_t avail, struct proto_frame *f)
{
	uint32_t len;
	size_t total;

	if (avail < PROTO_LEN_SIZE) {
		f->need = PROTO_LEN_SIZE;
		return 0;
	}
	len = proto_be32(buf);
	if (len > PROTO_MAX_FRAME_LEN)
		return PROTO_E_OVERSIZE;
	if (len < PROTO_FRAME_HEADER_SIZE)
		return PROTO_E_UNDERSIZE;
	total = PROTO_LEN_SIZE + (size_t)len;
	f->need = total;
	if (avail < total)
		return 0;
	f->id = proto_be32(buf + PROTO_LEN_SIZE);
	f->flags = buf[PROTO_HDR_SIZE - 1];
	f->body = buf + PROTO_HDR_SIZE;
	f->body_len = len - PROTO_FRAME_HEADER_SIZE;
	f->wire = buf;
	f->wire_len = total;
	return (int)total;
}

char *proto_flags_show(uint8_t flags, char *buf, size_t cap)
{
	static const struct {
		uint8_t bit;
		const char *name;
	} names[] = {
		{PROTO_FLAG_TERMINAL, "TERMINAL"},
		{PROTO_FLAG_SESSION_START, "SESSION_START"},
		{PROTO_FLAG_SHUTDOWN, "SHUTDOWN"},
		{PROTO_FLAG_BULK, "BULK"},
	};
	size_t i, n = 0;
	int w;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	if (flags == 0) {
		snprintf(buf, cap, "0");
		return buf;
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]) && n < cap; i++) {
		if (!(flags & names[i].bit))
			continue;
		flags &= (uint8_t)~names[i].bit;
		w = snprintf(buf + n, cap - n, "%s%s", n ? "|" : "", names[i].name);
		if (w < 0)
			return buf;
		n += (size_t)w;
	}
	if (flags && n < cap)
		snprintf(buf + n, cap - n, "%s0x%02x", n ? "|" : "", flags);
	return buf;
}

int proto_splitter_init(struct proto_splitter *s, void *buf, size_t cap)
{
	if (cap < PROTO_SPLITTER_BUF_SIZE)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->_buf = buf;
	s->_cap = cap;
	return 0;
}

void proto_splitter_feed(struct proto_splitter *s, const void *data, size_t len)
{
	s->_in = data;
	s->_in_len = len;
	s->_in_off = 0;
}

/* Move up to <want> bytes of input into the assembly buffer; returns how many. */
static size_t proto_splitter_take(struct proto_splitter *s, size_t want)
{
	size_t n = s->_in_len - s->_in_off;

	if (n > want)
		n = want;
	memcpy(s->_buf + s->_have, s->_in + s->_in_off, n);
	s->_have += n;
	s->_in_off += n;
	s->_copied += n;
	return n;
}

/* Continue assembling a straddling frame; 1 when it is complete. */
static int proto_splitter_assemble(struct proto_splitter *s, struct proto_frame *f)
{
	int rc;

	if (s->_have < PROTO_LEN_SIZE) {
		proto_splitter_take(s, PROTO_LEN_SIZE - s->_have);
		if (s->_have < PROTO_LEN_SIZE)
			return 0;
	}
	rc = proto_frame_parse(s->_buf, s->_have, f);
	if (rc == 0) { /* f->need is known now: the length was checked */
		proto_splitter_take(s, f->need - s->_have);
		rc = proto_frame_parse(s->_buf, s->_have, f);
	}
	if (rc < 0) {
		s->_err = rc;
		return rc;
	}
	if (rc == 0)
		return 0;
	s->_have = 0;
	s->_frames++;
	return 1;
}

int proto_splitter_next(struct proto_splitter *s, struct proto_frame *f)
{
	size_t left;
	int rc;

	if (s->_err)
		return s->_err;
	if (s->_have)
		return proto_splitter_assemble(s, f);
	left = s->_in_len - s->_in_off;
	if (left == 0)
		return 0;
	rc = proto_frame_parse(s->_in + s->_in_off, left, f);
	if (rc < 0) {
		s->_err = rc;
		return rc;
	}
	if (rc > 0) {
		s->_in_off += (size_t)rc;
		s->_frames++;
		s->_in_place++;
		return 1;
	}
	/* A partial frame (its length already checked if 4 bytes are here). */
	proto_splitter_take(s, left);
	return 0;
}
