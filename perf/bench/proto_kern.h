/*
 * perf/bench/proto_kern.h - benchmark kernels for the wire codec.
 *
 * Data frames (64 KiB of core.exec.stdout): sandwire's zero-copy path
 * (prefix written into a chunk's headroom; decode returns a pointer into
 * the frame), the same frame built by copying the payload
 * (proto_frame_encode), and the baseline: libcbor's item API (cbor_load,
 * cbor_serialize_alloc) producing the same bytes.  Small control frames:
 * core.exec.exited and core.exec.resize.
 *
 * Heap allocations are counted for the whole process (every thread counts
 * its own): proto_kern.c interposes malloc/calloc/realloc/free in normal
 * builds, forwarding to glibc, or installs the sanitizer's allocation hook
 * in sanitizer builds.
 *
 * C linkage, no project headers (ring/chunk.h uses stdatomic.h, which C++
 * cannot include).  Each kernel returns a positive byte count or a negative
 * code; one call = one frame.
 */
#ifndef SW_PERF_BENCH_PROTO_KERN_H
#define SW_PERF_BENCH_PROTO_KERN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct proto_kern;

/*
 * Set up buffers for data frames of <data_len> bytes and the control
 * frames; checks that libcbor's encoding of the data frame is byte for
 * byte sandwire's.  Returns NULL on failure.
 */
struct proto_kern *proto_kern_new(size_t data_len);
void proto_kern_free(struct proto_kern *k);

/* Heap allocations made by the calling thread so far. */
long proto_kern_allocs(void);

/* Data frame: prefix into the chunk headroom (zero copy). Returns the frame size. */
long proto_kern_data_encode(struct proto_kern *k);
/* Data frame: proto_frame_encode() copying the payload into a buffer. */
long proto_kern_data_encode_copy(struct proto_kern *k);
/* Data frame: parse + proto_frame_decode(); returns the data length. */
long proto_kern_data_decode(struct proto_kern *k);
/* Baseline: build the envelope with libcbor items and cbor_serialize_alloc() it. */
long proto_kern_data_encode_libcbor(struct proto_kern *k);
/* Baseline, kinder: the same items, cbor_serialize() into buffers sized by the caller. */
long proto_kern_data_encode_libcbor_prealloc(struct proto_kern *k);
/* Baseline: cbor_load() the body, then the payload; returns the data length. */
long proto_kern_data_decode_libcbor(struct proto_kern *k);

/* Control frames: encode into a buffer / decode the encoded frame. */
long proto_kern_exited_encode(struct proto_kern *k);
long proto_kern_exited_decode(struct proto_kern *k);
long proto_kern_resize_encode(struct proto_kern *k);
long proto_kern_resize_decode(struct proto_kern *k);

#ifdef __cplusplus
}
#endif

#endif /* SW_PERF_BENCH_PROTO_KERN_H */
