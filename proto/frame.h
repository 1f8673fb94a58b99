/*
 * proto/frame.h - the binary frame header and a zero-copy stream splitter.
 *
 *   offset 0    4    8     9                        4+len
 *          [len][id ][flags][body: one CBOR item .....]
 *          u32be u32be u8    len - 5 bytes
 *
 * With flag 0x08 (generation 8+) the body is a raw bulk record instead of
 * CBOR (bulk.h); on id 0 a body starting with "MSBL" is a relay lease
 * record (lease.h).  The splitter below does not care: both are frames.
 *
 * len counts id + flags + body, never itself (spec 1.2); 5 <= len <= 4 MiB.
 * The header is outside the CBOR so a router can forward a frame after
 * reading 9 bytes.  There is no resynchronisation: after a framing error the
 * byte stream is unusable (spec 1.3), and the splitter stays poisoned.
 *
 * Splitter use (one per byte stream, one thread at a time):
 *
 *	proto_splitter_init(&s, asm_buf, PROTO_SPLITTER_BUF_SIZE);
 *	for each read of n bytes into rbuf:
 *		proto_splitter_feed(&s, rbuf, n);
 *		while ((rc = proto_splitter_next(&s, &f)) > 0)
 *			handle(&f);       // f points into rbuf or into asm_buf
 *		if (rc < 0)
 *			close the stream;  // framing error, rc forever after
 *		// rc == 0: rbuf may be reused now
 *
 * Frames lying whole inside one read are yielded in place (no copy).  Only
 * a frame that straddles two reads is assembled in the splitter's buffer,
 * so memory is bounded by one maximal frame plus the caller's read buffer
 * (spec F5), and a legal frame is never refused.
 */
#ifndef SW_PROTO_FRAME_H
#define SW_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_LEN_SIZE 4	     /* the u32 length prefix */
#define PROTO_FRAME_HEADER_SIZE 5    /* id + flags: the minimum len */
#define PROTO_HDR_SIZE 9	     /* length prefix + id + flags */
#define PROTO_MAX_FRAME_LEN 4194304u /* bound on len (MAX_FRAME_SIZE, 4 MiB) */
#define PROTO_MAX_WIRE_SIZE (PROTO_MAX_FRAME_LEN + PROTO_LEN_SIZE) /* whole frame, bytes */

/*
 * Frame flags (spec 2.3, protocol-gen9.md G1.2).  The three control flags
 * are set by the sender from the message type; read by relays (routing,
 * session tracking) and checked by decoders on those three bits only (spec
 * F2).  PROTO_FLAG_BULK (generation 8+) switches the body from the CBOR
 * envelope to a raw bulk record (bulk.h) and is exclusive: a frame that has
 * it carries flags == 0x08 exactly, and a frame with 0x08 is never decoded
 * as CBOR (G1.4; wire.md: a stray 0x08 on a CBOR frame is malformed).  Bits
 * 0x10..0x80 stay unused and ignored.  Whoever adds a flag updates
 * PROTO_FLAGS_KNOWN and proto_flags_show().
 */
#define PROTO_FLAG_TERMINAL 0x01u      /* last frame of its id in this direction */
#define PROTO_FLAG_SESSION_START 0x02u /* first frame of a session */
#define PROTO_FLAG_SHUTDOWN 0x04u      /* core.shutdown */
#define PROTO_FLAG_BULK 0x08u	       /* gen 8+: the body is a raw bulk record (bulk.h) */
/* The flags a CBOR frame's type determines; the only bits its decoder compares. */
#define PROTO_FLAGS_CONTROL (PROTO_FLAG_TERMINAL | PROTO_FLAG_SESSION_START | PROTO_FLAG_SHUTDOWN)
/* Every defined bit. */
#define PROTO_FLAGS_KNOWN (PROTO_FLAGS_CONTROL | PROTO_FLAG_BULK)

/* One frame found in a buffer; every pointer points into that buffer. */
struct proto_frame {
	uint32_t id;	     /* correlation id */
	uint8_t flags;	     /* raw flags byte */
	const uint8_t *body; /* the body (CBOR, or a raw record with 0x08), body_len bytes */
	size_t body_len;     /* len - 5 */
	const uint8_t *wire; /* the whole frame (length prefix first), for forwarding */
	size_t wire_len;     /* 4 + len */
	size_t need;	     /* parse returned 0: total bytes needed (4 until len is known) */
};

/*
 * Parse one frame at <buf> of <avail> bytes into <f>.
 * Returns the frame's total size (> 0) when it is complete; 0 when more
 * bytes are needed (f->need = total bytes the frame needs, or 4 while the
 * length is unknown); PROTO_E_OVERSIZE or PROTO_E_UNDERSIZE as soon as the
 * 4 length bytes show an illegal len, before anything else is buffered.
 * Any thread.
 */
int proto_frame_parse(const uint8_t *buf, size_t avail, struct proto_frame *f);

/* Write the 9-byte header at <dst>: <len> (5 + body length), <id>, <flags>. */
static inline void proto_frame_header_write(uint8_t *dst, uint32_t len, uint32_t id, uint8_t flags)
{
	dst[0] = (uint8_t)(len >> 24);
	dst[1] = (uint8_t)(len >> 16);
	dst[2] = (uint8_t)(len >> 8);
	dst[3] = (uint8_t)len;
	dst[4] = (uint8_t)(id >> 24);
	dst[5] = (uint8_t)(id >> 16);
	dst[6] = (uint8_t)(id >> 8);
	dst[7] = (uint8_t)id;
	dst[8] = flags;
}

/* Read a big-endian u32. */
static inline uint32_t proto_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Name the bits of <flags> ("TERMINAL|SESSION_START|0x40", "0" for none)
 * into <buf> of <cap> bytes.  Returns <buf>.  Any thread.
 */
char *proto_flags_show(uint8_t flags, char *buf, size_t cap);

/* Size of the splitter's assembly buffer: one maximal frame. */
#define PROTO_SPLITTER_BUF_SIZE PROTO_MAX_WIRE_SIZE

/*
 * Incremental frame splitter over a byte stream.  owner: the thread reading
 * the stream.  Fields are private (leading _); read them through the
 * accessors below.
 */
struct proto_splitter {
	uint8_t *_buf;	    /* assembly buffer for a straddling frame */
	size_t _cap;	    /* its size, >= PROTO_SPLITTER_BUF_SIZE */
	size_t _have;	    /* bytes of the straddling frame in _buf */
	const uint8_t *_in; /* current input (caller's buffer) */
	size_t _in_len;	    /* its length */
	size_t _in_off;	    /* bytes of it consumed */
	int _err;	    /* 0, or the framing error (sticky) */
	uint64_t _frames;   /* frames yielded */
	uint64_t _in_place; /* of those, yielded from the caller's buffer */
	uint64_t _copied;   /* bytes copied into _buf */
};

/*
 * Set up <s> with an assembly buffer <buf> of <cap> bytes.  Only the first
 * bytes of a straddling frame are ever written, so a lazily backed mapping
 * costs memory only when a large frame straddles reads.
 * Returns 0, or -EINVAL when cap < PROTO_SPLITTER_BUF_SIZE.
 */
int proto_splitter_init(struct proto_splitter *s, void *buf, size_t cap);

/*
 * Hand the next <len> bytes of the stream to <s>.  Call it only after
 * proto_splitter_next() returned 0 (the previous input is consumed).  The
 * bytes must stay valid until proto_splitter_next() returns 0 again.
 */
void proto_splitter_feed(struct proto_splitter *s, const void *data, size_t len);

/*
 * Yield the next complete frame into <f>.  Returns 1 with <f> pointing into
 * the fed input or the assembly buffer (valid until the next call), 0 when
 * the input is used up (a partial frame was kept), or the framing error
 * (PROTO_E_OVERSIZE / PROTO_E_UNDERSIZE), again on every later call.
 */
int proto_splitter_next(struct proto_splitter *s, struct proto_frame *f);

/* Bytes copied into the assembly buffer so far (frames straddling reads). */
static inline uint64_t proto_splitter_copied_bytes(const struct proto_splitter *s)
{
	return s->_copied;
}

/* Frames yielded so far, and how many of them without any copy. */
static inline uint64_t proto_splitter_frames(const struct proto_splitter *s)
{
	return s->_frames;
}

static inline uint64_t proto_splitter_in_place(const struct proto_splitter *s)
{
	return s->_in_place;
}

/* Bytes of a partial frame held in the assembly buffer. */
static inline size_t proto_splitter_pending(const struct proto_splitter *s)
{
	return s->_have;
}

#endif /* SW_PROTO_FRAME_H */
