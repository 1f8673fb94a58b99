/*
 * engine/segq.c - see segq.h.
 */
#include "engine/segq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"
#include "proto/types.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"

void seg_release(struct seg *s)
{
	if (s->c)
		chunk_put(s->c);
	else
		free(s->heap);
	*s = (struct seg){0};
}

struct seg seg_heap_copy(const void *p, size_t n)
{
	struct seg s = {0};
	void *m = malloc(n ? n : 1);

	if (!m)
		return s;
	if (n)
		memcpy(m, p, n);
	s.heap = m;
	s.p = m;
	s.len = (uint32_t)n;
	return s;
}

static int segq_grow(struct segq *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : 16;
	struct seg *v = malloc(sizeof(*v) * cap);

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->n; i++)
		v[i] = q->v[(q->head + i) & (q->cap - 1)];
	free(q->v);
	q->v = v;
	q->cap = cap;
	q->head = 0;
	return 0;
}

int segq_push(struct segq *q, const struct seg *s)
{
	if (q->n == q->cap && segq_grow(q) < 0)
		return -ENOMEM;
	q->v[(q->head + q->n) & (q->cap - 1)] = *s;
	q->n++;
	q->bytes += s->len;
	return 0;
}

int segq_shift(struct segq *q, struct seg *out)
{
	if (!q->n)
		return -ENOENT;
	*out = q->v[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
	q->bytes -= out->len;
	return 0;
}

unsigned segq_iov(const struct segq *q, struct iovec *iov, unsigned max)
{
	unsigned k = 0;

	for (; k < max && k < q->n; k++) {
		const struct seg *s = &q->v[(q->head + k) & (q->cap - 1)];

		iov[k].iov_base = (void *)s->p;
		iov[k].iov_len = s->len;
	}
	return k;
}

void segq_consume(struct segq *q, size_t bytes, void (*fn)(void *ctx, struct seg *s, uint32_t n),
	void *ctx)
{
	q->bytes -= bytes;
	while (bytes && q->n) {
		struct seg *s = &q->v[q->head];

		if (bytes < s->len) {
			if (fn)
				fn(ctx, s, (uint32_t)bytes);
			s->p += bytes;
			s->len -= (uint32_t)bytes;
			return;
		}
		bytes -= s->len;
		if (fn)
			fn(ctx, s, s->len);
		seg_release(s);
		q->head = (q->head + 1) & (q->cap - 1);
		q->n--;
	}
}

int segq_splice(struct segq *to, struct segq *from)
{
	while (to->cap - to->n < from->n)
		if (segq_grow(to) < 0)
			return -ENOMEM;
	for (uint32_t i = 0; i < from->n; i++)
		to->v[(to->head + to->n + i) & (to->cap - 1)] = from->v[(from->head + i) & (from->cap - 1)];
	to->n += from->n;
	to->bytes += from->bytes;
	free(from->v);
	segq_init(from);
	return 0;
}

void segq_clear(struct segq *q)
{
	while (q->n) {
		seg_release(&q->v[q->head]);
		q->head = (q->head + 1) & (q->cap - 1);
		q->n--;
	}
	free(q->v);
	segq_init(q);
}

void framer_init(struct framer *f, uint32_t max_len)
{
	*f = (struct framer){.max_len = max_len};
}

void framer_destroy(struct framer *f)
{
	for (uint32_t i = 0; i < f->nseg; i++)
		seg_release(&f->seg[i]);
	free(f->seg);
	*f = (struct framer){0};
}

/* Append bytes [p, p+n) of chunk <c> to the current frame (a new reference). */
static int framer_take(struct framer *f, struct chunk *c, const uint8_t *p, uint32_t n)
{
	if (f->nseg == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : 8;
		struct seg *v = realloc(f->seg, sizeof(*v) * cap);

		if (!v)
			return -ENOMEM;
		f->seg = v;
		f->cap = cap;
	}
	chunk_ref(c);
	f->seg[f->nseg++] = (struct seg){.c = c, .p = p, .len = n};
	return 0;
}

int framer_feed(struct framer *f, struct chunk *c,
	void (*fn)(void *ctx, struct seg_frame *fr), void *ctx)
{
	struct seg sg = {.c = c, .p = chunk_ptr(c), .len = c->len};

	return framer_feed_seg(f, &sg, fn, ctx);
}

int framer_feed_seg(struct framer *f, struct seg *sg,
	void (*fn)(void *ctx, struct seg_frame *fr), void *ctx)
{
	struct chunk *c = sg->c;
	const uint8_t *p = sg->p;
	uint32_t n = sg->len;

	while (n && !f->err) {
		uint32_t want, take;

		if (!f->total)
			want = PROTO_LEN_SIZE - f->got;
		else if (f->got < PROTO_HDR_SIZE)
			want = PROTO_HDR_SIZE - f->got;
		else
			want = f->total - f->got;
		take = want < n ? want : n;
		if (f->got < PROTO_HDR_SIZE)
			memcpy(f->hdr + f->got, p, take);
		if (framer_take(f, c, p, take) < 0) {
			f->err = -ENOMEM;
			break;
		}
		f->got += take;
		p += take;
		n -= take;
		if (!f->total && f->got == PROTO_LEN_SIZE) {
			uint32_t len = proto_be32(f->hdr);

			if (len < PROTO_FRAME_HEADER_SIZE)
				f->err = PROTO_E_UNDERSIZE;
			else if (len > f->max_len)
				f->err = PROTO_E_OVERSIZE;
			f->total = len + PROTO_LEN_SIZE;
		}
		if (!f->err && f->total && f->got == f->total) {
			struct seg_frame fr = {
				.len = f->total - PROTO_LEN_SIZE,
				.id = proto_be32(f->hdr + 4),
				.flags = f->hdr[8],
				.seg = f->seg,
				.nseg = f->nseg,
			};

			fn(ctx, &fr);
			f->nseg = 0;
			f->got = 0;
			f->total = 0;
		}
	}
	seg_release(sg);
	return f->err;
}

void seg_frame_release(struct seg_frame *fr)
{
	for (uint32_t i = 0; i < fr->nseg; i++)
		seg_release(&fr->seg[i]);
}

size_t seg_frame_peek(const struct seg_frame *fr, void *buf, size_t cap)
{
	size_t got = 0;

	for (uint32_t i = 0; i < fr->nseg && got < cap; i++) {
		size_t k = fr->seg[i].len < cap - got ? fr->seg[i].len : cap - got;

		memcpy((uint8_t *)buf + got, fr->seg[i].p, k);
		got += k;
	}
	return got;
}

int seg_frame_type(const struct seg_frame *fr)
{
	uint8_t b[64];
	size_t n = seg_frame_peek(fr, b, sizeof(b)), i = PROTO_HDR_SIZE, len;

	if (fr->flags & PROTO_FLAG_BULK)
		return PROTO_T_UNKNOWN;
	/* a3, "v" key and value (one byte for v < 24), "t" key */
	if (n < i + 6 || b[i] != 0xa3 || b[i + 1] != 0x61 || b[i + 2] != 'v' || b[i + 3] > 0x17 ||
		b[i + 4] != 0x61 || b[i + 5] != 't')
		return PROTO_T_UNKNOWN;
	i += 6;
	if (b[i] >= 0x60 && b[i] <= 0x77) {
		len = b[i] - 0x60u;
		i += 1;
	} else if (b[i] == 0x78 && i + 1 < n) {
		len = b[i + 1];
		i += 2;
	} else {
		return PROTO_T_UNKNOWN;
	}
	if (i + len > n)
		return PROTO_T_UNKNOWN;
	return proto_type_lookup((const char *)b + i, len);
}
