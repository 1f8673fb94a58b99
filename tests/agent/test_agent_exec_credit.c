/*
 * tests/agent/test_agent_exec_credit.c - the "credit" extension for exec
 * (design/wire.md "Boot and announcement", "Flow control"): a test host
 * drives a real sandwire-agent over a socketpair
 * (tests/support/agent_harness.h), announces "credit" in its bootstrap and
 * opts sessions in with exec.request's sandwire_credit.
 *
 * The host plays the client's part exactly: it returns stdout+stderr bytes
 * with sandwire.credit once half a window has arrived, and sends stdin only
 * within the window the agent returned.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/agent_harness.h"

#define WIN (64u * 1024)
#define BIG (8u << 20)
/* `yes LINE` writes LINE and a newline: 64 bytes a line */
#define LINE_A "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+"
#define LINE_B "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba9876543210-"

static struct ah h;

static const struct proto_str credit_ext[] = {{PROTO_EXT_CREDIT, sizeof(PROTO_EXT_CREDIT) - 1}};

/* Boot a host of generation <v>, naming "credit" when <credit>; returns whether ready named it. */
static bool boot_host(uint8_t v, bool credit)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP, .v = v};

	if (credit) {
		m.u.bootstrap.ext = (struct proto_str *)credit_ext;
		m.u.bootstrap.n_ext = 1;
	}
	ah_start(&h, NULL);
	ah_send(&h, 0, &m);
	ah_expect(&h, 0, PROTO_T_INIT_RESOLVED, 10000);
	m = (struct proto_msg){.type = PROTO_T_INIT_ACK, .v = v};
	ah_send(&h, 0, &m);
	ah_expect(&h, 0, PROTO_T_READY, 10000);
	return proto_ext_named(h.msg.u.ready.ext, h.msg.u.ready.n_ext, PROTO_EXT_CREDIT);
}

static void boot_credit(void)
{
	cr_assert(boot_host(7, true), "ready must name credit after a bootstrap that did");
}

static void stop(void)
{
	ah_stop_ok(&h);
}

/* exec.request "sh -c <script>", opted into credit with <window> when non-zero. */
static void exec_sh(uint32_t id, const char *script, uint64_t window)
{
	struct proto_str args[] = {{"-c", 2}, {script, strlen(script)}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};

	m.u.exec_request.cmd = (struct proto_str){"sh", 2};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	if (window)
		m.u.exec_request.sandwire_credit = (struct proto_opt_u64){true, window};
	ah_send(&h, id, &m);
}

static void send_credit(uint32_t id, uint64_t bytes)
{
	struct proto_msg m = {.type = PROTO_T_SANDWIRE_CREDIT};

	m.u.sandwire_credit.bytes = bytes;
	ah_send(&h, id, &m);
}

static void expect_error(uint32_t id, enum proto_error_kind kind, const char *offending)
{
	ah_expect(&h, id, PROTO_T_ERROR, 10000);
	cr_assert_eq(h.msg.u.error.kind, kind, "error kind %s, expected %s (%.*s)",
		proto_error_kind_name(h.msg.u.error.kind), proto_error_kind_name(kind),
		(int)h.msg.u.error.message.len, h.msg.u.error.message.ptr);
	cr_assert(h.msg.u.error.offending_type.set);
	cr_assert(h.msg.u.error.offending_type.v.len == strlen(offending) &&
			  memcmp(h.msg.u.error.offending_type.v.ptr, offending,
				  strlen(offending)) == 0,
		"offending type %.*s, expected %s", (int)h.msg.u.error.offending_type.v.len,
		h.msg.u.error.offending_type.v.ptr, offending);
}

/* Ping on <id> and require the pong: the channel and the agent are fine. */
static void ping_ok(uint32_t id)
{
	struct proto_msg m = {.type = PROTO_T_PING};

	ah_send(&h, id, &m);
	ah_expect(&h, id, PROTO_T_PONG, 10000);
}

/* <n> bytes at stream offset <off> of `yes <line>` output. */
static bool yes_matches(const uint8_t *p, size_t n, uint64_t off, const char *line)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t k = (off + i) % 64;

		if (p[i] != (k == 63 ? '\n' : (uint8_t)line[k]))
			return false;
	}
	return true;
}

/* Byte <i> of the stdin pattern. */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 2654435761u >> 13);
}

/* What a host collects of one credit session's output. */
struct out_state {
	uint64_t got[2];   /* stdout, stderr bytes */
	uint64_t returned; /* credit sent back */
	uint64_t window;
	bool exited;
	int code;
};

/*
 * Take one frame of session <id> (must come within 10 s): output is checked
 * against the window and returned like a client (<give> false: withheld).
 * Returns the frame's type.
 */
static enum proto_type take(uint32_t id, struct out_state *o, bool give)
{
	enum proto_type t;
	uint64_t sum;

	ah_recv(&h, 10000, false);
	cr_assert_eq(h.frame.id, id, "%s on id %u", proto_type_name(h.msg.type), h.frame.id);
	t = h.msg.type;
	if (t == PROTO_T_EXEC_STDOUT || t == PROTO_T_EXEC_STDERR) {
		o->got[t == PROTO_T_EXEC_STDERR] += h.msg.u.data.len;
		sum = o->got[0] + o->got[1];
		cr_assert_leq(sum, o->returned + o->window,
			"agent passed its window: %llu bytes out, %llu returned",
			(unsigned long long)sum, (unsigned long long)o->returned);
		if (give && sum - o->returned >= o->window / 2) {
			send_credit(id, sum - o->returned);
			o->returned = sum;
		}
	} else if (t == PROTO_T_EXEC_EXITED) {
		o->exited = true;
		o->code = h.msg.u.exec_exited.code;
	}
	return t;
}

/* Frames until exactly <bytes> of output arrived, then silence for 300 ms (credit withheld). */
static void take_until_stalled(uint32_t id, struct out_state *o, uint64_t bytes)
{
	while (o->got[0] + o->got[1] < bytes) {
		enum proto_type t = take(id, o, false);

		cr_assert(t == PROTO_T_EXEC_STDOUT || t == PROTO_T_EXEC_STDERR, "got %s",
			proto_type_name(t));
	}
	cr_assert_eq(o->got[0] + o->got[1], bytes);
	cr_assert_not(ah_recv(&h, 300, true), "%s after the window was spent",
		proto_type_name(h.msg.type));
}

/* Return everything that arrived so far. */
static void give_back(uint32_t id, struct out_state *o)
{
	send_credit(id, o->got[0] + o->got[1] - o->returned);
	o->returned = o->got[0] + o->got[1];
}

TestSuite(agent_exec_credit, .timeout = 120);

Test(agent_exec_credit, ready_names_credit_only_when_the_bootstrap_did)
{
	cr_assert_not(boot_host(7, false));
	cr_assert_eq(h.msg.u.ready.n_ext, 0);
	stop();
	cr_assert(boot_host(7, true));
	stop();
	cr_assert(boot_host(9, true), "with a generation-9 host too");
	cr_assert_eq(h.msg.v, 9);
	stop();
}

Test(agent_exec_credit, stdout_stops_at_the_window_and_resumes_on_credit, .init = boot_credit,
	.fini = stop)
{
	struct out_state o = {.window = WIN};
	enum proto_type t;
	char script[256];
	uint64_t off = 0;

	snprintf(script, sizeof(script), "yes %s | head -c %u", LINE_A, BIG);
	exec_sh(1, script, WIN);
	ah_expect(&h, 1, PROTO_T_EXEC_STARTED, 10000);
	take_until_stalled(1, &o, WIN);
	/* one credit of the whole window: the agent may send exactly one more window */
	give_back(1, &o);
	take_until_stalled(1, &o, 2 * WIN);
	/* then the rest, returned like a client */
	give_back(1, &o);
	do {
		size_t before = o.got[0];

		t = take(1, &o, true);
		if (t == PROTO_T_EXEC_STDOUT) {
			cr_assert(yes_matches(h.msg.u.data.ptr, h.msg.u.data.len, before, LINE_A),
				"stdout differs near offset %llu", (unsigned long long)before);
			off = o.got[0];
		} else {
			cr_assert(t == PROTO_T_EXEC_EXITED, "got %s", proto_type_name(t));
		}
	} while (!o.exited);
	cr_assert_eq(off, BIG);
	cr_assert_eq(o.got[1], 0);
	cr_assert_eq(o.code, 0);
}

Test(agent_exec_credit, stdout_and_stderr_share_one_window, .init = boot_credit, .fini = stop)
{
	struct out_state o = {.window = WIN};
	enum proto_type t;
	char script[512];

	snprintf(script, sizeof(script), "yes %s | head -c %u & yes %s | head -c %u >&2; wait",
		LINE_A, BIG / 2, LINE_B, BIG / 2);
	exec_sh(2, script, WIN);
	ah_expect(&h, 2, PROTO_T_EXEC_STARTED, 10000);
	take_until_stalled(2, &o, WIN);
	give_back(2, &o);
	do {
		uint64_t before[2] = {o.got[0], o.got[1]};

		t = take(2, &o, true);
		if (t == PROTO_T_EXEC_STDOUT)
			cr_assert(
				yes_matches(h.msg.u.data.ptr, h.msg.u.data.len, before[0], LINE_A));
		else if (t == PROTO_T_EXEC_STDERR)
			cr_assert(
				yes_matches(h.msg.u.data.ptr, h.msg.u.data.len, before[1], LINE_B));
		else
			cr_assert(t == PROTO_T_EXEC_EXITED, "got %s", proto_type_name(t));
	} while (!o.exited);
	cr_assert_eq(o.got[0], BIG / 2);
	cr_assert_eq(o.got[1], BIG / 2);
	cr_assert_eq(o.code, 0);
}

/* Send stdin within the agent's returned window; <o> takes `cat`'s echo. */
static void stdin_pump(uint32_t id, uint64_t total, uint64_t window, struct out_state *o)
{
	uint8_t chunk[16384];
	uint64_t sent = 0, returned = 0, echoed = 0;
	bool eof = false;

	while (!o->exited) {
		while (sent < total && sent - returned < window) {
			uint64_t n = total - sent;

			if (n > sizeof(chunk))
				n = sizeof(chunk);
			if (n > window - (sent - returned))
				n = window - (sent - returned);
			for (uint64_t i = 0; i < n; i++)
				chunk[i] = pattern(sent + i);
			ah_stdin(&h, id, chunk, n);
			sent += n;
		}
		if (sent == total && !eof) {
			ah_stdin(&h, id, NULL, 0);
			eof = true;
		}
		switch (take(id, o, true)) {
		case PROTO_T_SANDWIRE_CREDIT:
			returned += h.msg.u.sandwire_credit.bytes;
			cr_assert_leq(returned, sent, "the agent returned stdin it never got");
			break;
		case PROTO_T_EXEC_STDOUT:
			for (size_t i = 0; i < h.msg.u.data.len; i++)
				cr_assert_eq(h.msg.u.data.ptr[i], pattern(echoed + i),
					"echo differs at %llu", (unsigned long long)(echoed + i));
			echoed += h.msg.u.data.len;
			break;
		case PROTO_T_EXEC_EXITED:
			break;
		default:
			cr_assert_fail("unexpected %s", proto_type_name(h.msg.type));
		}
	}
	cr_assert_eq(echoed, total);
}

Test(agent_exec_credit, stdin_and_stdout_under_credit_echo_intact, .init = boot_credit,
	.fini = stop)
{
	struct out_state o = {.window = WIN};

	exec_sh(3, "exec cat", WIN);
	ah_expect(&h, 3, PROTO_T_EXEC_STARTED, 10000);
	stdin_pump(3, BIG, WIN, &o);
	cr_assert_eq(o.code, 0);
}

Test(agent_exec_credit, stdin_credit_follows_what_the_process_consumes, .init = boot_credit,
	.fini = stop)
{
	static uint8_t buf[1u << 20];
	struct out_state o = {.window = sizeof(buf)};
	uint64_t returned = 0;

	/* the process reads nothing for a while: the pipe takes 64 KiB, far below half a window */
	exec_sh(4, "sleep 1; exec wc -c", sizeof(buf));
	ah_expect(&h, 4, PROTO_T_EXEC_STARTED, 10000);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	for (size_t off = 0; off < sizeof(buf); off += 65536)
		ah_stdin(&h, 4, buf + off, 65536);
	ah_stdin(&h, 4, NULL, 0); /* EOF: wc answers once it read the window */
	cr_assert_not(ah_recv(&h, 300, true), "%s before the process read its stdin",
		proto_type_name(h.msg.type));
	/* past the window: refused, reported on the session's id, nothing else happens */
	ah_stdin(&h, 4, "x", 1);
	expect_error(4, PROTO_ERROR_INVALID_PAYLOAD, "core.exec.stdin");
	/* once the process reads, half a window at least comes back in one credit */
	cr_assert_eq(
		take(4, &o, true), PROTO_T_SANDWIRE_CREDIT, "got %s", proto_type_name(h.msg.type));
	do {
		cr_assert_geq(h.msg.u.sandwire_credit.bytes, sizeof(buf) / 2, "coalesced");
		returned += h.msg.u.sandwire_credit.bytes;
	} while (take(4, &o, true) == PROTO_T_SANDWIRE_CREDIT);
	cr_assert_leq(returned, sizeof(buf));
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STDOUT, "got %s", proto_type_name(h.msg.type));
	cr_assert_eq(h.msg.u.data.len, 8);
	cr_assert_arr_eq(
		h.msg.u.data.ptr, "1048576\n", 8, "wc counted the window, not the extra byte");
	cr_assert_eq(take(4, &o, true), PROTO_T_EXEC_EXITED);
	cr_assert_eq(o.code, 0);
}

Test(agent_exec_credit, a_session_without_the_key_behaves_as_before, .init = boot_credit,
	.fini = stop)
{
	struct ah_exec_result r = {0};
	uint8_t chunk[65536];
	char script[256];

	snprintf(script, sizeof(script), "yes %s | head -c %u", LINE_A, BIG);
	exec_sh(5, script, 0);
	ah_exec_wait(&h, 5, &r); /* fails on any frame but started, output, exited */
	cr_assert(r.exited && r.code == 0);
	cr_assert_eq(r.out_len, BIG);
	cr_assert(yes_matches((const uint8_t *)r.out, r.out_len, 0, LINE_A));
	ah_exec_result_free(&r);

	/* stdin past any window: no credit comes back, nothing is refused */
	exec_sh(6, "exec wc -c", 0);
	memset(chunk, 'z', sizeof(chunk));
	for (int i = 0; i < 32; i++)
		ah_stdin(&h, 6, chunk, sizeof(chunk));
	ah_stdin(&h, 6, NULL, 0);
	ah_exec_wait(&h, 6, &r);
	cr_assert_str_eq(r.out, "2097152\n");
	ah_exec_result_free(&r);

	/* credit on it is an error for that session only */
	exec_sh(7, "exec cat", 0);
	ah_expect(&h, 7, PROTO_T_EXEC_STARTED, 10000);
	send_credit(7, 1);
	expect_error(7, PROTO_ERROR_INVALID_SESSION, "sandwire.credit");
	ah_stdin(&h, 7, "hi\n", 3);
	ah_stdin(&h, 7, NULL, 0);
	r.started = true;
	ah_exec_wait(&h, 7, &r);
	cr_assert_str_eq(r.out, "hi\n");
	ah_exec_result_free(&r);
}

Test(agent_exec_credit, bogus_credit_is_an_error_for_that_session_only, .init = boot_credit,
	.fini = stop)
{
	struct out_state o = {.window = WIN};
	struct ah_exec_result r = {0};

	exec_sh(8, "read -r line; echo \"got $line\"; read -r line || true", WIN);
	ah_expect(&h, 8, PROTO_T_EXEC_STARTED, 10000);
	send_credit(8, 1); /* nothing was sent yet */
	expect_error(8, PROTO_ERROR_INVALID_PAYLOAD, "sandwire.credit");
	/* unknown and ended ids: dropped without a word */
	send_credit(4000, 10);
	ping_ok(4001);
	/* a window out of range refuses the request, no session */
	exec_sh(9, "true", 0);
	ah_exec_wait(&h, 9, &r);
	ah_exec_result_free(&r);
	send_credit(9, 10);
	exec_sh(10, "true", (uint64_t)PROTO_SANDWIRE_CREDIT_MAX + 1);
	expect_error(10, PROTO_ERROR_INVALID_PAYLOAD, "core.exec.request");
	ping_ok(10);
	/* session 8 goes on */
	ah_stdin(&h, 8, "one\n", 4);
	cr_assert_eq(take(8, &o, true), PROTO_T_EXEC_STDOUT);
	cr_assert_eq(h.msg.u.data.len, 8);
	cr_assert_arr_eq(h.msg.u.data.ptr, "got one\n", 8);
	send_credit(8, 9); /* one more than it got */
	expect_error(8, PROTO_ERROR_INVALID_PAYLOAD, "sandwire.credit");
	send_credit(8, 8); /* exactly what it got: fine */
	ah_stdin(&h, 8, NULL, 0);
	cr_assert_eq(take(8, &o, true), PROTO_T_EXEC_EXITED);
	cr_assert_eq(o.code, 0);
	ping_ok(11);
}

Test(agent_exec_credit, a_host_without_the_extension_never_gets_a_sandwire_frame, .fini = stop)
{
	struct ah_exec_result r = {0};
	uint64_t echoed = 0;
	uint8_t chunk[65536];

	cr_assert_not(boot_host(7, false));
	/* the key is ignored: no window, no sandwire.credit, all output flows */
	exec_sh(1, "exec cat", WIN);
	ah_expect(&h, 1, PROTO_T_EXEC_STARTED, 10000);
	for (int i = 0; i < 16; i++) { /* all at once: no more than the queues hold */
		for (size_t k = 0; k < sizeof(chunk); k++)
			chunk[k] = pattern((uint64_t)i * sizeof(chunk) + k);
		ah_stdin(&h, 1, chunk, sizeof(chunk));
	}
	ah_stdin(&h, 1, NULL, 0);
	for (;;) {
		ah_recv(&h, 10000, false);
		cr_assert_eq(h.frame.id, 1);
		cr_assert_neq(h.msg.type, PROTO_T_SANDWIRE_CREDIT,
			"a sandwire.* frame to a reference host");
		if (h.msg.type == PROTO_T_EXEC_EXITED)
			break;
		cr_assert_eq(
			h.msg.type, PROTO_T_EXEC_STDOUT, "got %s", proto_type_name(h.msg.type));
		for (size_t i = 0; i < h.msg.u.data.len; i++)
			cr_assert_eq(h.msg.u.data.ptr[i], pattern(echoed + i));
		echoed += h.msg.u.data.len;
	}
	cr_assert_eq(echoed, 16 * sizeof(chunk));
	/* and sandwire.credit from it is a type the agent does not know */
	exec_sh(2, "exec cat", 0);
	ah_expect(&h, 2, PROTO_T_EXEC_STARTED, 10000);
	send_credit(2, 1);
	expect_error(2, PROTO_ERROR_UNSUPPORTED_MESSAGE_TYPE, "sandwire.credit");
	ah_stdin(&h, 2, NULL, 0);
	r.started = true;
	ah_exec_wait(&h, 2, &r);
	cr_assert(r.exited && r.code == 0);
	ah_exec_result_free(&r);
	ping_ok(3);
}
