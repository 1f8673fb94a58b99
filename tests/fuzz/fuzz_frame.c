/*
 * tests/fuzz/fuzz_frame.c - libFuzzer entry for the codec: an arbitrary
 * byte stream goes through the splitter in two reads, and every frame it
 * yields is decoded and, when it decodes, encoded again and decoded once
 * more; the second decode must succeed.  Build and run with `make fuzz`
 * (clang), seeded from the spec's vectors (scripts/fuzz_seeds.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t splitter_buf[PROTO_SPLITTER_BUF_SIZE];
static uint8_t arena_mem[1 << 20], arena2_mem[1 << 20];
static uint8_t out[PROTO_MAX_WIRE_SIZE];

static void check_frame(const struct proto_frame *f)
{
	struct proto_arena a, a2;
	struct proto_errinfo ei;
	struct proto_msg m, m2;
	struct proto_frame f2;
	long n;

	proto_arena_init(&a, arena_mem, sizeof(arena_mem));
	if (proto_frame_decode(f, &m, &a, &ei) < 0)
		return;
	n = proto_frame_encode(out, sizeof(out), f->id, &m);
	if (n < 0)
		return; /* e.g. a decoded message too large to re-encode with canonical heads */
	if (proto_frame_parse(out, (size_t)n, &f2) != n)
		abort();
	proto_arena_init(&a2, arena2_mem, sizeof(arena2_mem));
	if (proto_frame_decode(&f2, &m2, &a2, &ei) < 0 || m2.type != m.type)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_splitter s;
	struct proto_frame f;
	size_t cut = size ? data[0] % (size + 1) : 0;
	int rc;

	if (proto_splitter_init(&s, splitter_buf, sizeof(splitter_buf)) < 0)
		abort();
	proto_splitter_feed(&s, data, cut);
	while ((rc = proto_splitter_next(&s, &f)) > 0)
		check_frame(&f);
	if (rc < 0)
		return 0; /* a framing error: the stream is over */
	proto_splitter_feed(&s, data + cut, size - cut);
	while (proto_splitter_next(&s, &f) > 0)
		check_frame(&f);
	return 0;
}
