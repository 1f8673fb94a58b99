/*
 * engine/segq.h - byte segments and queues of them: how the engine moves
 * frames without copying their payload.
 *
 * A segment names bytes that live in a chunk (one chunk reference held by
 * the segment) or in a heap block (owned by the segment: small frames the
 * engine writes itself, e.g. core.exec.signal).  A frame received over a
 * socket is a list of segments of the receive chunks it spans; it is
 * forwarded as that list and written out with one vectored write per
 * queue, so the bytes are never memcpy'd.
 *
 * owner: a segq belongs to one thread; segments move between threads only
 * inside a struct xfer (engine.h), whose handover is the synchronisation.
 */
#ifndef SW_ENGINE_SEGQ_H
#define SW_ENGINE_SEGQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct chunk;

struct seg {
	struct chunk *c;  /* holder of one reference, or NULL */
	void *heap;	  /* malloc'd block to free, when c is NULL */
	const uint8_t *p; /* first byte */
	uint32_t len;	  /* bytes */
	void *tag;	  /* the queue owner's use (e.g. the link the bytes came from) */
};

/* A FIFO of segments (a growing ring), with its byte count. */
struct segq {
	struct seg *v;
	uint32_t head, n, cap; /* cap: 0 or a power of two */
	uint64_t bytes;	       /* sum of len over the queue */
};

/* Drop what <s> holds (chunk_put or free). */
void seg_release(struct seg *s);

/* A heap segment holding a copy of <p>/<n>, or {0} with len 0 on ENOMEM. */
struct seg seg_heap_copy(const void *p, size_t n);

/* Empty queue. */
static inline void segq_init(struct segq *q)
{
	*q = (struct segq){0};
}

/* Append <s> (ownership moves in).  Returns 0 or -ENOMEM (<s> untouched). */
int segq_push(struct segq *q, const struct seg *s);

/* Take the head segment into <out> (ownership moves out).  Returns 0 or -ENOENT (empty). */
int segq_shift(struct segq *q, struct seg *out);

/* The head segment, or NULL when empty (it stays queued). */
static inline struct seg *segq_head(struct segq *q)
{
	return q->n ? &q->v[q->head] : NULL;
}

/*
 * Fill <iov> with up to <max> entries from the head; returns how many.
 */
unsigned segq_iov(const struct segq *q, struct iovec *iov, unsigned max);

/*
 * Drop <bytes> written bytes from the head, releasing whole segments.
 * <fn> (may be NULL) sees each segment's share of them before a release.
 */
void segq_consume(struct segq *q, size_t bytes, void (*fn)(void *ctx, struct seg *s, uint32_t n),
	void *ctx);

/*
 * Move every segment of <from> to the tail of <to>; <from> is left empty
 * (its ring freed).  Returns 0 or -ENOMEM (nothing moved).
 */
int segq_splice(struct segq *to, struct segq *from);

/* Release everything and free the ring. */
void segq_clear(struct segq *q);

/*
 * Frames over a stream of receive chunks.  Each frame is handed out as an
 * array of segments (each holding its own chunk reference) plus its header
 * fields; the bytes are never copied.  Framing errors (len < 5 or over
 * the maximum) are sticky, as in proto_splitter.
 */
struct seg_frame {
	uint32_t len;	/* the frame's len field (bytes after the prefix) */
	uint32_t id;
	uint8_t flags;
	struct seg *seg; /* the whole frame, length prefix first */
	uint32_t nseg;
};

struct framer {
	uint8_t hdr[9];	    /* the header of the current frame, as it arrives */
	uint32_t got;	    /* bytes of the current frame seen */
	uint32_t total;	    /* its whole size (prefix included), 0 until the prefix is in */
	struct seg *seg;    /* segments of the current frame */
	uint32_t nseg, cap;
	uint32_t max_len;   /* largest legal len */
	int err;	    /* 0 or PROTO_E_OVERSIZE / PROTO_E_UNDERSIZE / -ENOMEM, sticky */
};

void framer_init(struct framer *f, uint32_t max_len);
void framer_destroy(struct framer *f);

/*
 * Cut chunk <c> (the caller's reference moves in; its bytes are
 * chunk_ptr(c), c->len) into frames: <fn> is called for each frame that
 * completes, and takes the frame's segments (it must release or keep each
 * one; the array itself is the framer's and is reused).  Returns 0 or the
 * sticky error.
 */
int framer_feed(struct framer *f, struct chunk *c,
	void (*fn)(void *ctx, struct seg_frame *fr), void *ctx);

/* The same for a chunk segment <sg> (sg->c != NULL; its reference moves in). */
int framer_feed_seg(struct framer *f, struct seg *sg,
	void (*fn)(void *ctx, struct seg_frame *fr), void *ctx);

/* Release every segment of <fr> (a frame not passed on). */
void seg_frame_release(struct seg_frame *fr);

/*
 * Copy the first <cap> bytes (or fewer, the whole frame) of <fr> into <buf>;
 * returns how many.  Used to read a frame's envelope (type name) or a whole
 * small control frame; the caller counts copies of payload.
 */
size_t seg_frame_peek(const struct seg_frame *fr, void *buf, size_t cap);

/*
 * The message type of CBOR frame <fr>, read from its first 64 bytes (the
 * canonical envelope puts "t" second: a3 61 76 <v> 61 74 <text>), or
 * PROTO_T_UNKNOWN (a raw record, a non-canonical envelope, an unknown
 * name).  For routing decisions only; decoders check properly.
 */
int seg_frame_type(const struct seg_frame *fr);

#endif /* SW_ENGINE_SEGQ_H */
