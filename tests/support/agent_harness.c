/*
 * tests/support/agent_harness.c - see agent_harness.h.
 */
#include "tests/support/agent_harness.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *ah_agent_path(void)
{
	const char *p = getenv("SW_AGENT_BIN");

	return p ? p : SW_AGENT_BIN;
}

void ah_start(struct ah *h, const char *const *extra)
{
	const char *argv[32] = {ah_agent_path(), "--fd", "3", "--heartbeat-dir", "/nonexistent"};
	const char *env = getenv("SW_AGENT_EXTRA_ARGS");
	char envbuf[256], *save = NULL, *tok;
	size_t n = 5;
	int rc;

	memset(h, 0, sizeof(*h));
	/* Arguments for every agent of a run, e.g. --no-io-uring (tests/CMakeLists.txt). */
	snprintf(envbuf, sizeof(envbuf), "%s", env ? env : "");
	for (tok = strtok_r(envbuf, " ", &save); tok && n < 31; tok = strtok_r(NULL, " ", &save))
		argv[n++] = tok;
	for (; extra && *extra && n < 31; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	rc = agent_client_spawn(&h->c, argv);
	cr_assert_eq(rc, 0, "start %s: %s", argv[0], strerror(-rc));
}

size_t ah_send(struct ah *h, uint32_t id, const struct proto_msg *m)
{
	long n = agent_client_send(&h->c, id, m);

	cr_assert_gt(n, 0, "send %s: %s", proto_type_name(m->type), proto_strerror((int)n));
	return (size_t)n;
}

void ah_send_raw(struct ah *h, const void *p, size_t n)
{
	int rc = agent_client_send_raw(&h->c, p, n);

	cr_assert_eq(rc, 0, "send to agent: %s", strerror(-rc));
}

bool ah_recv(struct ah *h, int timeout_ms, bool allow_eof)
{
	char why[256];
	int rc = agent_client_recv(&h->c, timeout_ms);

	if (rc == 1) {
		h->frame = h->c.frame;
		h->msg = h->c.msg;
		return true;
	}
	if (rc == 0) {
		cr_assert(allow_eof, "no frame from the agent within %d ms", timeout_ms);
		return false;
	}
	if (rc == -EPIPE || rc == -ECONNRESET) {
		cr_assert(allow_eof, "agent closed the console");
		return false;
	}
	proto_errinfo_format(&h->c.ei, why, sizeof(why));
	cr_assert_fail("bad frame from the agent: %s (%s)", proto_strerror(rc), why);
	return false;
}

void ah_boot(struct ah *h)
{
	int rc = agent_client_boot(&h->c, 10000);

	cr_assert_eq(rc, 0, "boot: %s", proto_strerror(rc));
	h->msg = h->c.msg;
	cr_assert_eq(h->c.frame.id, 0);
	cr_assert_eq(h->msg.v, 7);
	cr_assert(h->msg.u.ready.agent_version.len > 9 &&
		memcmp(h->msg.u.ready.agent_version.ptr, "sandwire/", 9) == 0);
}

void ah_boot_as(struct ah *h, uint8_t v)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP, .v = v};

	ah_send(h, 0, &m);
	ah_expect(h, 0, PROTO_T_INIT_RESOLVED, 10000);
	m = (struct proto_msg){.type = PROTO_T_INIT_ACK, .v = v};
	ah_send(h, 0, &m);
	ah_expect(h, 0, PROTO_T_READY, 10000);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

void ah_rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void ah_exec(struct ah *h, uint32_t id, bool tty, const char *cmd, ...)
{
	struct proto_str args[64];
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	size_t n = 0;
	va_list ap;
	const char *s;

	va_start(ap, cmd);
	while ((s = va_arg(ap, const char *)) != NULL && n < 64)
		args[n++] = (struct proto_str){s, strlen(s)};
	va_end(ap);
	m.u.exec_request.cmd = (struct proto_str){cmd, strlen(cmd)};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = n;
	m.u.exec_request.tty = tty;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	ah_send(h, id, &m);
}

size_t ah_send_data(struct ah *h, uint32_t id, enum proto_type t, const void *p, size_t n)
{
	struct proto_msg m = {.type = t};

	m.u.data = (struct proto_data){p, n};
	return ah_send(h, id, &m);
}

size_t ah_stdin(struct ah *h, uint32_t id, const void *p, size_t n)
{
	return ah_send_data(h, id, PROTO_T_EXEC_STDIN, p, n);
}

void ah_expect(struct ah *h, uint32_t id, enum proto_type t, int timeout_ms)
{
	ah_recv(h, timeout_ms, false);
	cr_assert_eq(h->frame.id, id, "frame %s for id %u, expected %s for %u",
		proto_type_name(h->msg.type), h->frame.id, proto_type_name(t), id);
	cr_assert_eq(h->msg.type, t, "id %u: got %s, expected %s", id,
		proto_type_name(h->msg.type), proto_type_name(t));
}

void ah_start_booted(struct ah *h)
{
	ah_start(h, NULL);
	ah_boot(h);
}

void ah_stop_ok(struct ah *h)
{
	int st = ah_stop(h);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
}

/* Append with geometric growth (a 64 MiB stream must not be quadratic). */
static void append(char **buf, size_t *len, const uint8_t *p, size_t n)
{
	size_t cap = *buf ? malloc_usable_size(*buf) : 0;

	if (*len + n + 1 > cap) {
		size_t want = cap ? cap : 4096;

		while (want < *len + n + 1)
			want *= 2;
		*buf = realloc(*buf, want);
	}
	cr_assert_not_null(*buf);
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void copy_str(char *dst, size_t cap, struct proto_str s)
{
	snprintf(dst, cap, "%.*s", (int)s.len, s.ptr);
}

void ah_exec_wait(struct ah *h, uint32_t id, struct ah_exec_result *r)
{
	bool started = r->started;

	memset(r, 0, sizeof(*r));
	r->started = started;
	append(&r->out, &r->out_len, (const uint8_t *)"", 0);
	append(&r->err, &r->err_len, (const uint8_t *)"", 0);
	for (;;) {
		ah_recv(h, 30000, false);
		cr_assert_eq(h->frame.id, id, "frame %s for id %u while waiting on %u",
			proto_type_name(h->msg.type), h->frame.id, id);
		switch (h->msg.type) {
		case PROTO_T_EXEC_STARTED:
			cr_assert(!r->started, "two exec.started");
			r->started = true;
			r->pid = h->msg.u.exec_started.pid;
			break;
		case PROTO_T_EXEC_STDOUT:
			cr_assert(r->started, "output before exec.started");
			append(&r->out, &r->out_len, h->msg.u.data.ptr, h->msg.u.data.len);
			break;
		case PROTO_T_EXEC_STDERR:
			append(&r->err, &r->err_len, h->msg.u.data.ptr, h->msg.u.data.len);
			break;
		case PROTO_T_EXEC_STDIN_ERROR:
			break;
		case PROTO_T_EXEC_EXITED:
			cr_assert(h->frame.flags & PROTO_FLAG_TERMINAL);
			r->exited = true;
			r->code = h->msg.u.exec_exited.code;
			r->signal = h->msg.u.exec_exited.signal.set ? h->msg.u.exec_exited.signal.v : 0;
			return;
		case PROTO_T_EXEC_FAILED:
			cr_assert(!r->started, "exec.failed after exec.started");
			copy_str(r->fail_kind, sizeof(r->fail_kind),
				(struct proto_str){proto_exec_fail_kind_name(h->msg.u.exec_failed.kind),
					strlen(proto_exec_fail_kind_name(h->msg.u.exec_failed.kind))});
			if (h->msg.u.exec_failed.stage.set)
				copy_str(r->fail_stage, sizeof(r->fail_stage), h->msg.u.exec_failed.stage.v);
			r->fail_errno = h->msg.u.exec_failed.err_no.set ? h->msg.u.exec_failed.err_no.v : 0;
			return;
		default:
			cr_assert_fail("unexpected %s on exec id %u", proto_type_name(h->msg.type), id);
		}
	}
}

void ah_exec_result_free(struct ah_exec_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r)); /* ready for the next ah_exec_wait */
}

int ah_stop(struct ah *h)
{
	int st = agent_client_close(&h->c, 5000);

	cr_assert_geq(st, 0, "agent did not exit within 5 s of the console closing");
	return st;
}
