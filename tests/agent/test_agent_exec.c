/*
 * tests/agent/test_agent_exec.c - exec sessions end to end: a real
 * sandwire-agent driven over a socketpair (tests/support/agent_harness.h).
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/agent_harness.h"

static struct ah h;

static void boot(void)
{
	ah_start_booted(&h);
}

static void stop(void)
{
	ah_stop_ok(&h);
}

TestSuite(agent_exec, .init = boot, .fini = stop, .timeout = 60);

Test(agent_exec, reports_exit_codes_and_keeps_stdout_and_stderr_apart)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, 1, false, "sh", "-c", "echo out; echo err >&2; exit 3", NULL);
	ah_exec_wait(&h, 1, &r);
	cr_assert(r.started && r.exited);
	cr_assert_eq(r.code, 3);
	cr_assert_eq(r.signal, 0);
	cr_assert_str_eq(r.out, "out\n");
	cr_assert_str_eq(r.err, "err\n");
	ah_exec_result_free(&r);

	ah_exec(&h, 2, false, "true", NULL);
	ah_exec_wait(&h, 2, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.code, 0);
	ah_exec_result_free(&r);
}

Test(agent_exec, reports_death_by_signal_as_minus_one_plus_the_signal)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, 5, false, "sh", "-c", "kill -KILL $$", NULL);
	ah_exec_wait(&h, 5, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.code, -1);
	cr_assert_eq(r.signal, SIGKILL);
	ah_exec_result_free(&r);
}

Test(agent_exec, classifies_spawn_failures)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, 7, false, "sw-definitely-not-a-command", NULL);
	ah_exec_wait(&h, 7, &r);
	cr_assert(!r.exited && !r.started);
	cr_assert_str_eq(r.fail_kind, "not_found");
	cr_assert_str_eq(r.fail_stage, "execve");
	cr_assert_eq(r.fail_errno, 2);
	ah_exec_result_free(&r);

	ah_exec(&h, 8, true, "/dev/null", NULL);
	ah_exec_wait(&h, 8, &r);
	cr_assert_str_eq(r.fail_kind, "permission_denied");
	ah_exec_result_free(&r);
}

Test(agent_exec, streams_stdin_through_cat_with_eof)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, 9, false, "cat", NULL);
	ah_stdin(&h, 9, "hello ", 6);
	ah_stdin(&h, 9, "world\n", 6);
	ah_stdin(&h, 9, "", 0);
	ah_exec_wait(&h, 9, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.code, 0);
	cr_assert_str_eq(r.out, "hello world\n");
	ah_exec_result_free(&r);
}

Test(agent_exec, gives_a_pty_that_sees_resize)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_RESIZE};
	struct ah_exec_result r = {0};

	/* Wait for input, so the resize lands before stty runs. */
	ah_exec(&h, 11, true, "sh", "-c", "tty >/dev/null && echo tty-ok; read x; stty size", NULL);
	m.u.exec_resize = (struct proto_exec_resize){.rows = 50, .cols = 132};
	ah_send(&h, 11, &m);
	ah_stdin(&h, 11, "go\n", 3);
	ah_exec_wait(&h, 11, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.code, 0);
	cr_assert(strstr(r.out, "tty-ok\r\n"), "%s", r.out);
	cr_assert(strstr(r.out, "50 132\r\n"), "%s", r.out);
	cr_assert_eq(r.err_len, 0, "a PTY has no separate stderr");
	ah_exec_result_free(&r);
}

Test(agent_exec, delivers_signals_to_the_process_group)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_SIGNAL};
	struct ah_exec_result r = {0};

	ah_exec(&h, 13, false, "sh", "-c", "echo ready; sleep 30", NULL);
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STARTED);
	r.started = true;
	ah_recv(&h, 10000, false);
	cr_assert_eq(h.msg.type, PROTO_T_EXEC_STDOUT);
	m.u.exec_signal.signal = SIGTERM;
	ah_send(&h, 13, &m);
	ah_exec_wait(&h, 13, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.signal, SIGTERM);
	ah_exec_result_free(&r);
}

Test(agent_exec, applies_env_cwd_and_rlimits)
{
	struct proto_str env[] = {{"SW_X=42", 7}};
	struct proto_rlimit rl[] = {{{"NOFILE", 6}, 123, 456}, {{"bogus", 5}, 1, 1}};
	struct proto_str args[] = {{"-c", 2}, {"echo $SW_X $(pwd) $(ulimit -n)", 31}};
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	struct ah_exec_result r = {0};

	m.u.exec_request.cmd = (struct proto_str){"sh", 2};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.env = env;
	m.u.exec_request.nenv = 1;
	m.u.exec_request.cwd = (struct proto_opt_str){true, {"/tmp", 4}};
	m.u.exec_request.rlimits = rl;
	m.u.exec_request.nrlimits = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	ah_send(&h, 15, &m);
	ah_exec_wait(&h, 15, &r);
	cr_assert_eq(r.code, 0);
	cr_assert_str_eq(r.out, "42 /tmp 123\n");
	ah_exec_result_free(&r);
}

Test(agent_exec, streams_64_mib_of_stdout_intact)
{
	/* 62 bytes a line: 64 KiB chunks never line up with it, so a lost, doubled
	 * or reordered chunk shifts the pattern and is caught. */
	static const char line[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY\n";
	const size_t total = 64u << 20, ll = sizeof(line) - 1;
	struct ah_exec_result r = {0};
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "yes %.*s | head -c %zu", (int)(ll - 1), line, total);
	ah_exec(&h, 17, false, "sh", "-c", cmd, NULL);
	ah_exec_wait(&h, 17, &r);
	cr_assert_eq(r.code, 0);
	cr_assert_eq(r.out_len, total);
	for (size_t i = 0; i < total; i++)
		if (r.out[i] != line[i % ll])
			cr_assert_fail("byte %zu is %#x, expected %#x", i, r.out[i], line[i % ll]);
	ah_exec_result_free(&r);
}

Test(agent_exec, runs_200_sessions_at_once)
{
	enum { N = 200 };
	bool started[N + 1] = {0}, exited[N + 1] = {0};
	char out[N + 1][16];
	int done = 0;

	memset(out, 0, sizeof(out));
	for (uint32_t id = 1; id <= N; id++) {
		char script[64];

		snprintf(script, sizeof(script), "sleep 0.2; echo s%u", id);
		ah_exec(&h, id, false, "sh", "-c", script, NULL);
	}
	while (done < N) {
		uint32_t id;

		ah_recv(&h, 30000, false);
		id = h.frame.id;
		cr_assert(id >= 1 && id <= N, "id %u", id);
		switch (h.msg.type) {
		case PROTO_T_EXEC_STARTED:
			started[id] = true;
			break;
		case PROTO_T_EXEC_STDOUT:
			cr_assert(started[id]);
			strncat(out[id], (const char *)h.msg.u.data.ptr,
				h.msg.u.data.len < 15 - strlen(out[id]) ? h.msg.u.data.len : 0);
			break;
		case PROTO_T_EXEC_EXITED:
			cr_assert(!exited[id]);
			cr_assert_eq(h.msg.u.exec_exited.code, 0);
			exited[id] = true;
			done++;
			break;
		default:
			cr_assert_fail("unexpected %s", proto_type_name(h.msg.type));
		}
	}
	for (uint32_t id = 1; id <= N; id++) {
		char want[16];

		snprintf(want, sizeof(want), "s%u\n", id);
		cr_assert_str_eq(out[id], want);
	}
}
