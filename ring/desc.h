/*
 * ring/desc.h - the descriptor the rings carry.
 *
 * A ring moves descriptors, never payload: a pointer to an object the
 * receiver may touch once it owns the descriptor (usually a struct chunk,
 * see ring/chunk.h) plus one word whose meaning the two ends agree on
 * (a session id, a length, an op code ...).  Descriptors are copied by
 * value into and out of the ring slots.
 *
 * This header has no atomics, so C++ code (the benchmark shim) may include it.
 */
#ifndef SW_RING_DESC_H
#define SW_RING_DESC_H

#include <stdint.h>

struct ring_desc {
	void *ptr;    /* object handed over (chunk or other); ownership moves with it */
	uint64_t aux; /* owner-defined word: session id, length, op ... */
};

_Static_assert(sizeof(struct ring_desc) == 16, "struct ring_desc must stay 16 bytes");

#endif /* SW_RING_DESC_H */
