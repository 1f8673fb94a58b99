/*
 * tests/proto/test_frame.c - the frame header and the stream splitter.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/error.h"
#include "proto/frame.h"
#include "proto/msg.h"
#include "tests/proto/proto_test.h"

Test(frame, parses_a_complete_frame)
{
	static const uint8_t fr[] = {0, 0, 0, 7, 0, 0, 1, 2, 0x01, 0xa0, 0xff, 0x55};
	struct proto_frame f;

	cr_assert_eq(proto_frame_parse(fr, sizeof(fr), &f), 11); /* the 0x55 is the next frame */
	cr_assert_eq(f.id, 0x102);
	cr_assert_eq(f.flags, PROTO_FLAG_TERMINAL);
	cr_assert_eq(f.body, fr + 9);
	cr_assert_eq(f.body_len, 2);
	cr_assert_eq(f.wire, fr);
	cr_assert_eq(f.wire_len, 11);
}

Test(frame, says_need_more_with_the_size_once_known)
{
	static const uint8_t fr[] = {0, 0, 0, 7, 0, 0, 1, 2, 0x01, 0xa0, 0xff};
	struct proto_frame f;
	size_t k;

	for (k = 0; k < sizeof(fr); k++) {
		cr_assert_eq(proto_frame_parse(fr, k, &f), 0);
		cr_assert_eq(f.need, k < 4 ? 4u : sizeof(fr));
	}
}

Test(frame, refuses_an_oversize_length_from_four_bytes)
{
	static const uint8_t big[] = {0x00, 0x40, 0x00, 0x01}; /* 4 MiB + 1 */
	static const uint8_t max[] = {0x00, 0x40, 0x00, 0x00}; /* exactly 4 MiB */
	static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
	struct proto_frame f;

	cr_assert_eq(proto_frame_parse(big, 4, &f), PROTO_E_OVERSIZE);
	cr_assert_eq(proto_frame_parse(huge, 4, &f), PROTO_E_OVERSIZE);
	cr_assert_eq(proto_frame_parse(max, 4, &f), 0);
	cr_assert_eq(f.need, PROTO_MAX_WIRE_SIZE);
}

Test(frame, refuses_a_length_below_the_header)
{
	static const uint8_t four[] = {0, 0, 0, 4, 0, 0, 0, 0};
	static const uint8_t zero[] = {0, 0, 0, 0};
	static const uint8_t five[] = {0, 0, 0, 5, 0, 0, 0, 9, 0};
	struct proto_frame f;

	cr_assert_eq(proto_frame_parse(four, 4, &f), PROTO_E_UNDERSIZE);
	cr_assert_eq(proto_frame_parse(zero, 4, &f), PROTO_E_UNDERSIZE);
	cr_assert_eq(
		proto_frame_parse(five, sizeof(five), &f), 9); /* empty body: framing is fine */
	cr_assert_eq(f.body_len, 0);
}

Test(frame, shows_flags_by_name)
{
	char buf[64];

	cr_assert_str_eq(proto_flags_show(0, buf, sizeof(buf)), "0");
	cr_assert_str_eq(proto_flags_show(0x03, buf, sizeof(buf)), "TERMINAL|SESSION_START");
	cr_assert_str_eq(proto_flags_show(0x44, buf, sizeof(buf)), "SHUTDOWN|0x40");
	cr_assert_str_eq(proto_flags_show(0x08, buf, sizeof(buf)), "BULK");
	cr_assert_str_eq(proto_flags_show(0x80, buf, sizeof(buf)), "0x80");
}

/* --- splitter ---------------------------------------------------------------- */

#define NFRAMES 40

struct stream {
	uint8_t *bytes;
	size_t len;
	size_t off[NFRAMES]; /* start of each frame */
	size_t size[NFRAMES];
};

/* A stream of NFRAMES frames of assorted sizes (tiny, 24..300 bytes, 70 KiB). */
static void stream_build(struct stream *s)
{
	static uint8_t data[70000];
	struct proto_msg m = {.type = PROTO_T_EXEC_STDOUT};
	size_t i, sz;
	long n;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	s->bytes = malloc(NFRAMES * (sizeof(data) + 64));
	cr_assert_not_null(s->bytes);
	s->len = 0;
	for (i = 0; i < NFRAMES; i++) {
		sz = i % 10 == 9 ? sizeof(data) : (i * 37) % 300;
		m.u.data = (struct proto_data){data, sz};
		n = proto_frame_encode(s->bytes + s->len, sizeof(data) + 64, (uint32_t)i, &m);
		cr_assert_gt(n, 0);
		s->off[i] = s->len;
		s->size[i] = (size_t)n;
		s->len += (size_t)n;
	}
}

struct split_result {
	size_t frames;
	uint64_t copied;
	uint64_t in_place;
};

/*
 * Feed <s> in reads whose sizes come from <next_size>; check that every
 * frame comes out once, in order, intact.
 */
static struct split_result split(
	const struct stream *s, size_t (*next_size)(size_t, void *), void *arg)
{
	static uint8_t *asm_buf;
	struct split_result res = {0};
	struct proto_splitter sp;
	struct proto_frame f;
	uint8_t *rbuf;
	size_t pos = 0, n;
	int rc;

	if (!asm_buf)
		asm_buf = malloc(PROTO_SPLITTER_BUF_SIZE);
	cr_assert_not_null(asm_buf);
	cr_assert_eq(proto_splitter_init(&sp, asm_buf, PROTO_SPLITTER_BUF_SIZE), 0);
	while (pos < s->len) {
		n = next_size(pos, arg);
		if (n > s->len - pos)
			n = s->len - pos;
		/* a private copy per read, scribbled over afterwards like a reused buffer */
		rbuf = malloc(n);
		cr_assert_not_null(rbuf);
		memcpy(rbuf, s->bytes + pos, n);
		proto_splitter_feed(&sp, rbuf, n);
		while ((rc = proto_splitter_next(&sp, &f)) > 0) {
			cr_assert_lt(res.frames, NFRAMES);
			cr_assert_eq(f.wire_len, s->size[res.frames]);
			cr_assert_eq(f.id, res.frames);
			cr_assert_arr_eq(f.wire, s->bytes + s->off[res.frames], f.wire_len);
			res.frames++;
		}
		cr_assert_eq(rc, 0);
		memset(rbuf, 0xee, n);
		free(rbuf);
		pos += n;
	}
	cr_assert_eq(res.frames, NFRAMES);
	cr_assert_eq(proto_splitter_frames(&sp), NFRAMES);
	cr_assert_eq(proto_splitter_pending(&sp), 0);
	res.copied = proto_splitter_copied_bytes(&sp);
	res.in_place = proto_splitter_in_place(&sp);
	return res;
}

static size_t size_fixed(size_t pos, void *arg)
{
	return *(size_t *)arg;
}

static size_t size_random(size_t pos, void *arg)
{
	unsigned *seed = arg;

	*seed = *seed * 1103515245u + 12345u; /* fixed-seed LCG: reproducible */
	return 1 + (*seed >> 8) % 100000;
}

/* Cut once at <*arg>, then everything. */
static size_t size_cut(size_t pos, void *arg)
{
	size_t cut = *(size_t *)arg;

	return pos < cut ? cut - pos : SIZE_MAX;
}

Test(splitter, yields_every_frame_fed_byte_by_byte)
{
	struct stream s;
	struct split_result r;
	size_t one = 1;

	stream_build(&s);
	r = split(&s, size_fixed, &one);
	cr_assert_eq(r.in_place, 0);
	cr_assert_eq(r.copied, s.len); /* each byte copied exactly once */
	free(s.bytes);
}

Test(splitter, yields_all_frames_of_one_read_in_place)
{
	struct stream s;
	struct split_result r;
	size_t all;

	stream_build(&s);
	all = s.len;
	r = split(&s, size_fixed, &all);
	cr_assert_eq(r.in_place, NFRAMES);
	cr_assert_eq(r.copied, 0);
	free(s.bytes);
}

Test(splitter, yields_every_frame_with_random_read_sizes)
{
	struct stream s;
	struct split_result r;
	unsigned seed;
	int round;

	stream_build(&s);
	for (round = 0; round < 20; round++) {
		seed = 42u + (unsigned)round;
		r = split(&s, size_random, &seed);
		cr_assert_eq(r.frames, NFRAMES);
		cr_assert_lt(r.copied, s.len);
	}
	free(s.bytes);
}

Test(splitter, yields_every_frame_for_a_split_at_every_offset)
{
	struct stream s;
	struct split_result r;
	size_t cut, i, straddler;

	stream_build(&s);
	for (cut = 1; cut < s.off[10] + 64; cut += cut < s.off[9] + 64 ? 1 : 997) {
		r = split(&s, size_cut, &cut);
		/* exactly the frame containing the cut is copied, and only its bytes */
		for (straddler = 0, i = 0; i < NFRAMES; i++) {
			if (s.off[i] < cut && cut < s.off[i] + s.size[i])
				straddler = i + 1;
		}
		cr_assert_eq(r.in_place, straddler ? NFRAMES - 1 : NFRAMES, "cut %zu", cut);
		cr_assert_eq(r.copied, straddler ? s.size[straddler - 1] : 0, "cut %zu", cut);
	}
	free(s.bytes);
}

Test(splitter, poisons_itself_on_a_framing_error)
{
	static const uint8_t good[] = {0, 0, 0, 5, 0, 0, 0, 1, 0};
	static const uint8_t bad[] = {0x00, 0x40, 0x00};
	static const uint8_t bad_tail[] = {0x01};
	static uint8_t asm_buf[PROTO_SPLITTER_BUF_SIZE];
	struct proto_splitter sp;
	struct proto_frame f;

	cr_assert_eq(proto_splitter_init(&sp, asm_buf, sizeof(asm_buf)), 0);
	proto_splitter_feed(&sp, good, sizeof(good));
	cr_assert_eq(proto_splitter_next(&sp, &f), 1);
	cr_assert_eq(proto_splitter_next(&sp, &f), 0);
	proto_splitter_feed(&sp, bad, sizeof(bad)); /* 3 of the 4 length bytes */
	cr_assert_eq(proto_splitter_next(&sp, &f), 0);
	proto_splitter_feed(&sp, bad_tail, sizeof(bad_tail));
	cr_assert_eq(proto_splitter_next(&sp, &f), PROTO_E_OVERSIZE);
	proto_splitter_feed(&sp, good, sizeof(good));
	cr_assert_eq(proto_splitter_next(&sp, &f), PROTO_E_OVERSIZE); /* no resync */
	cr_assert_eq(proto_splitter_copied_bytes(&sp), 4); /* only the length was buffered */

	cr_assert_eq(proto_splitter_init(&sp, asm_buf, sizeof(asm_buf)), 0);
	proto_splitter_feed(&sp, "\0\0\0\1", 4);
	cr_assert_eq(proto_splitter_next(&sp, &f), PROTO_E_UNDERSIZE);
	cr_assert_eq(proto_splitter_next(&sp, &f), PROTO_E_UNDERSIZE);
}

Test(splitter, accepts_a_maximal_frame_split_anywhere)
{
	static uint8_t asm_buf[PROTO_SPLITTER_BUF_SIZE];
	struct proto_splitter sp;
	struct proto_frame f;
	uint8_t *fr;
	size_t half;

	fr = calloc(1, PROTO_MAX_WIRE_SIZE + 9);
	cr_assert_not_null(fr);
	proto_frame_header_write(fr, PROTO_MAX_FRAME_LEN, 3, 0);
	proto_frame_header_write(fr + PROTO_MAX_WIRE_SIZE, 5, 4, 0); /* a second, tiny frame */
	cr_assert_eq(proto_splitter_init(&sp, asm_buf, sizeof(asm_buf)), 0);
	for (half = 1; half < PROTO_MAX_WIRE_SIZE; half += PROTO_MAX_WIRE_SIZE / 3) {
		proto_splitter_feed(&sp, fr, half);
		cr_assert_eq(proto_splitter_next(&sp, &f), 0);
		proto_splitter_feed(&sp, fr + half, PROTO_MAX_WIRE_SIZE + 9 - half);
		cr_assert_eq(proto_splitter_next(&sp, &f), 1);
		cr_assert_eq(f.wire_len, PROTO_MAX_WIRE_SIZE);
		cr_assert_eq(f.id, 3);
		cr_assert_eq(proto_splitter_next(&sp, &f), 1);
		cr_assert_eq(f.id, 4);
		cr_assert_eq(proto_splitter_next(&sp, &f), 0);
	}
	free(fr);
}

Test(splitter, refuses_a_buffer_smaller_than_one_frame)
{
	struct proto_splitter sp;
	uint8_t small[16];

	cr_assert_eq(proto_splitter_init(&sp, small, sizeof(small)), -EINVAL);
}
