/*
 * tests/agent/test_agent_bad_input.c - a hostile or buggy host: every bad
 * frame gets its exact reply (design/wire.md "Errors never kill the
 * channel") and a following valid request still works; framing errors end
 * the channel with exit status 3.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/proto/proto_test.h"
#include "tests/support/agent_harness.h"

static struct ah h;

static void boot(void)
{
	ah_start(&h, NULL);
	ah_boot(&h);
}

TestSuite(agent_bad_input, .init = boot, .timeout = 60);

/* A frame with a hand-built body {v, t, p} where p is <payload> bytes. */
static void send_envelope(uint32_t id, uint8_t flags, unsigned v, const char *t,
	const void *payload, size_t plen)
{
	uint8_t body[512], frame[512];

	ah_send_raw(&h, frame,
		tframe(frame, sizeof(frame), id, flags, body,
			tbody(body, sizeof(body), v, t, payload, plen)));
}

static void send_body(uint32_t id, const void *body, size_t n)
{
	uint8_t frame[512];

	ah_send_raw(&h, frame, tframe(frame, sizeof(frame), id, 0, body, n));
}

static void expect_error(uint32_t id, enum proto_error_kind kind, const char *offending)
{
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.frame.id, id);
	cr_assert_eq(h.msg.type, PROTO_T_ERROR, "got %s", proto_type_name(h.msg.type));
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	cr_assert_eq(h.msg.u.error.kind, kind, "kind %s, message %.*s",
		proto_error_kind_name(h.msg.u.error.kind), (int)h.msg.u.error.message.len,
		h.msg.u.error.message.ptr);
	if (offending) {
		cr_assert(h.msg.u.error.offending_type.set);
		cr_assert(proto_str_eq(h.msg.u.error.offending_type.v, offending));
	}
}

/* The channel still serves a request after the bad frame. */
static void still_works(uint32_t id)
{
	struct proto_msg m = {.type = PROTO_T_PING};

	ah_send(&h, id, &m);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.frame.id, id);
	cr_assert_eq(h.msg.type, PROTO_T_PONG);
}

static void stop_ok(void)
{
	int st = ah_stop(&h);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
}

Test(agent_bad_input, unknown_type_gets_unsupported_message_type)
{
	static const uint8_t empty_map[] = {0xa0};

	send_envelope(3, 0, 7, "core.made.up", empty_map, 1);
	expect_error(3, PROTO_ERROR_UNSUPPORTED_MESSAGE_TYPE, "core.made.up");
	still_works(4);
	stop_ok();
}

Test(agent_bad_input, bad_payload_gets_invalid_payload_and_the_session_lives_on)
{
	static const uint8_t resize_no_cols[] = {0xa1, 0x64, 'r', 'o', 'w', 's', 0x18, 50};
	struct ah_exec_result r = {0};

	ah_exec(&h, 1, false, "cat", NULL);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STARTED);
	r.started = true;
	send_envelope(1, 0, 7, "core.exec.resize", resize_no_cols, sizeof(resize_no_cols));
	expect_error(1, PROTO_ERROR_INVALID_PAYLOAD, "core.exec.resize");
	/* core.error on a live exec id is "that frame failed", not the end (F3). */
	ah_stdin(&h, 1, "ok\n", 3);
	ah_stdin(&h, 1, "", 0);
	ah_exec_wait(&h, 1, &r);
	cr_assert_str_eq(r.out, "ok\n");
	cr_assert_eq(r.code, 0);
	ah_exec_result_free(&r);
	stop_ok();
}

Test(agent_bad_input, wrong_flags_get_invalid_flags_but_unknown_bits_are_ignored)
{
	static const uint8_t empty_map[] = {0xa0};

	send_envelope(5, PROTO_FLAG_TERMINAL, 7, "core.ping", empty_map, 1);
	expect_error(5, PROTO_ERROR_INVALID_FLAGS, "core.ping");
	/* Bits beyond the three defined ones are ignored (F2): this ping is answered. */
	send_envelope(6, 0x80, 7, "core.ping", empty_map, 1);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.frame.id, 6);
	cr_assert_eq(h.msg.type, PROTO_T_PONG);
	stop_ok();
}

Test(agent_bad_input, undecodable_envelope_gets_malformed_message)
{
	static const uint8_t not_a_map[] = {0x83, 0x01, 0x02, 0x03};
	static const uint8_t reserved[] = {0xfc};

	send_body(7, not_a_map, sizeof(not_a_map));
	expect_error(7, PROTO_ERROR_MALFORMED_MESSAGE, NULL);
	send_body(8, reserved, sizeof(reserved));
	expect_error(8, PROTO_ERROR_MALFORMED_MESSAGE, NULL);
	still_works(9);
	stop_ok();
}

Test(agent_bad_input, a_second_start_on_a_live_id_gets_invalid_session)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, 10, false, "cat", NULL);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STARTED);
	r.started = true;
	ah_exec(&h, 10, false, "true", NULL);
	expect_error(10, PROTO_ERROR_INVALID_SESSION, "core.exec.request");
	/* The live session is untouched. */
	ah_stdin(&h, 10, "still mine\n", 11);
	ah_stdin(&h, 10, "", 0);
	ah_exec_wait(&h, 10, &r);
	cr_assert_str_eq(r.out, "still mine\n");
	ah_exec_result_free(&r);
	stop_ok();
}

Test(agent_bad_input, frames_for_unknown_ids_are_dropped_silently)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_SIGNAL};

	ah_stdin(&h, 40, "lost", 4);
	m.u.exec_signal.signal = 9;
	ah_send(&h, 41, &m);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	ah_send(&h, 42, &m);
	still_works(43); /* the pong is the very next frame: nothing answered the three above */
	stop_ok();
}

Test(agent_bad_input, oversize_length_ends_the_channel_with_status_3)
{
	static const uint8_t huge[] = {0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 0};
	int st;

	ah_send_raw(&h, huge, sizeof(huge)); /* len = 4 MiB + 1 */
	cr_assert_not(ah_recv(&h, 10000, true), "the agent closes the channel");
	st = ah_stop(&h);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d", st);
}

Test(agent_bad_input, undersize_length_ends_the_channel_with_status_3)
{
	static const uint8_t tiny[] = {0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1};
	int st;

	ah_send_raw(&h, tiny, sizeof(tiny));
	cr_assert_not(ah_recv(&h, 10000, true));
	st = ah_stop(&h);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d", st);
}

Test(agent_bad_input, a_maximal_legal_frame_is_accepted)
{
	/* 4 MiB frame: exec.stdin with the largest payload that fits (spec 1.2). */
	size_t n = 4194259;
	uint8_t *big = malloc(n);
	struct ah_exec_result r = {0};
	char want[32];

	memset(big, 'z', n);
	ah_exec(&h, 50, false, "wc", "-c", NULL);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STARTED);
	r.started = true;
	cr_assert_eq(ah_stdin(&h, 50, big, n), PROTO_MAX_WIRE_SIZE);
	ah_stdin(&h, 50, "", 0);
	ah_exec_wait(&h, 50, &r);
	snprintf(want, sizeof(want), "%zu\n", n);
	cr_assert_str_eq(r.out, want);
	ah_exec_result_free(&r);
	free(big);
	stop_ok();
}
