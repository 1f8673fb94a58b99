/*
 * agent/exec.c - exec sessions (spec 4.3, design/wire.md "Exec").
 *
 *   exec.request -> spawn -> exec.started{pid} | exec.failed (terminal)
 *   stdout/stderr (or the PTY) -> sources -> exec.stdout / exec.stderr
 *   exec.stdin -> sink (empty data closes stdin in pipe mode)
 *   exit: exec.exited once the child is reaped AND its output reached EOF,
 *         so it always follows the session's last output frame.
 *
 * A death by signal is reported as code -1 (the reference's value) plus
 * the extra key signal: N.
 *
 * The "credit" extension (wire.md "Flow control"), for a session whose
 * request carried sandwire_credit while the host's bootstrap named
 * "credit": stdout plus stderr never run more than the window ahead of the
 * bytes the host returned with sandwire.credit (io.c stops reading the
 * pipes or PTY), and stdin bytes written to the process (or dropped once
 * stdin is gone) go back to the host in sandwire.credit once half a window
 * has gathered.  A host that passes its stdin window or returns more than
 * it was sent gets core.error on the session's id; the session goes on.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/internal.h"
#include "agent/spawn.h"

/* NUL-terminated copies of a request's strings, in one allocation. */
struct exec_strings {
	char *mem;
	const char **args;
	const char **env;
	struct agent_rlimit *rl;
	size_t nrl;
	const char *cmd, *cwd, *user;
};

static char *dup_str(char **cursor, struct proto_str s)
{
	char *out = *cursor;

	memcpy(out, s.ptr, s.len);
	out[s.len] = '\0';
	*cursor += s.len + 1;
	return out;
}

static int exec_strings_build(struct exec_strings *x, const struct proto_exec_request *rq)
{
	size_t bytes = rq->cmd.len + 1, nptr = rq->nargs + rq->nenv + 2;
	char *cur;

	bytes += rq->cwd.set ? rq->cwd.v.len + 1 : 0;
	bytes += rq->user.set ? rq->user.v.len + 1 : 0;
	for (size_t i = 0; i < rq->nargs; i++)
		bytes += rq->args[i].len + 1;
	for (size_t i = 0; i < rq->nenv; i++)
		bytes += rq->env[i].len + 1;
	x->mem = malloc(nptr * sizeof(char *) + rq->nrlimits * sizeof(struct agent_rlimit) + bytes);
	if (!x->mem)
		return -ENOMEM;
	x->args = (const char **)x->mem;
	x->env = x->args + rq->nargs + 1;
	x->rl = (struct agent_rlimit *)(x->env + rq->nenv + 1);
	cur = (char *)(x->rl + rq->nrlimits);
	x->cmd = dup_str(&cur, rq->cmd);
	x->cwd = rq->cwd.set ? dup_str(&cur, rq->cwd.v) : NULL;
	x->user = rq->user.set ? dup_str(&cur, rq->user.v) : NULL;
	for (size_t i = 0; i < rq->nargs; i++)
		x->args[i] = dup_str(&cur, rq->args[i]);
	for (size_t i = 0; i < rq->nenv; i++)
		x->env[i] = dup_str(&cur, rq->env[i]);
	x->nrl = 0;
	for (size_t i = 0; i < rq->nrlimits; i++) {
		int res = proto_rlimit_resource(rq->rlimits[i].resource);

		if (res < 0)
			continue; /* unknown names are skipped, as the reference does */
		x->rl[x->nrl++] = (struct agent_rlimit){res, rq->rlimits[i].soft, rq->rlimits[i].hard};
	}
	return 0;
}

static bool blank(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\t')
			return false;
	return true;
}

static void send_failed(struct agent *a, uint32_t id, const char *kind, int err, const char *stage,
	const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void send_failed(struct agent *a, uint32_t id, const char *kind, int err, const char *stage,
	const char *fmt, ...)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_FAILED};
	const char *ename = err ? agent_errno_name(err) : NULL;
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	m.u.exec_failed.kind = PROTO_EXEC_FAIL_OTHER;
	for (int k = 0; k < PROTO_EXEC_FAIL__COUNT; k++)
		if (strcmp(proto_exec_fail_kind_name((enum proto_exec_fail_kind)k), kind) == 0)
			m.u.exec_failed.kind = (enum proto_exec_fail_kind)k;
	m.u.exec_failed.message = (struct proto_str){text, strlen(text)};
	if (err) {
		m.u.exec_failed.err_no = (struct proto_opt_i32){true, err};
		if (ename)
			m.u.exec_failed.errno_name = (struct proto_opt_str){true, {ename, strlen(ename)}};
	}
	if (stage)
		m.u.exec_failed.stage = (struct proto_opt_str){true, {stage, strlen(stage)}};
	agent_send(a, id, &m);
}

/* Put session <e> under the credit extension with <window> bytes each way. */
static void exec_credit_start(struct agent_exec *e, uint64_t window)
{
	e->xc.window = window;
	e->xc.out_limit = window;
	e->out.xc = &e->xc;
	e->err.xc = &e->xc;
	e->out.poll_first = true; /* no read may sit on the window while idle (io.c) */
	e->err.poll_first = true;
	e->in.credit_bounded = true; /* the window bounds stdin: never pause the console */
}

void agent_exec_request(struct agent *a, uint32_t id, const struct proto_exec_request *rq)
{
	struct agent_spawn_req sr = {0};
	struct agent_spawn_err se;
	struct agent_child child;
	struct exec_strings x;
	struct agent_exec *e;
	struct proto_msg m = {.type = PROTO_T_EXEC_STARTED};
	uint64_t window = a->ext_credit && rq->sandwire_credit.set ? rq->sandwire_credit.v : 0;

	if (a->ext_credit && rq->sandwire_credit.set &&
		(window == 0 || window > PROTO_SANDWIRE_CREDIT_MAX)) {
		agent_send_error(a, id, PROTO_ERROR_INVALID_PAYLOAD,
			proto_type_name(PROTO_T_EXEC_REQUEST),
			"sandwire_credit: a window of %llu bytes is outside 1..%u",
			(unsigned long long)window, PROTO_SANDWIRE_CREDIT_MAX);
		return;
	}
	if (exec_strings_build(&x, rq) < 0) {
		send_failed(a, id, "out_of_memory", ENOMEM, NULL, "exec: out of memory");
		return;
	}
	sr.cmd = x.cmd;
	sr.args = x.args;
	sr.nargs = rq->nargs;
	sr.env = x.env;
	sr.nenv = rq->nenv;
	sr.cwd = x.cwd ? x.cwd : a->have_default_cwd ? a->default_cwd : NULL;
	sr.tty = rq->tty;
	sr.rows = rq->rows;
	sr.cols = rq->cols;
	sr.rlimits = x.rl;
	sr.nrlimits = x.nrl;
	if (x.user && !blank(x.user)) {
		if (agent_user_resolve(x.user, &sr.uid, &sr.gid) < 0) {
			send_failed(a, id, "user_setup_failed", 0, NULL,
				"exec session error: guest user not found: %s", x.user);
			free(x.mem);
			return;
		}
		sr.set_user = true;
	} else if (a->have_default_user) {
		sr.uid = a->default_user.uid;
		sr.gid = a->default_user.gid;
		sr.set_user = true;
	}
	if (agent_spawn(&sr, &child, &se) < 0) {
		send_failed(a, id, agent_spawn_kind(&se), se.err, agent_spawn_stage_name(se.stage),
			"spawn \"%s\": %s (%s)", x.cmd, strerror(se.err), agent_spawn_stage_name(se.stage));
		free(x.mem);
		return;
	}
	free(x.mem);

	e = calloc(1, sizeof(*e));
	if (!e || sessmap_put(&a->ids, id, e) < 0 || sessmap_put(&a->pids, (uint32_t)child.pid, e) < 0) {
		/* Out of memory after the spawn: end the child at once, report, leave nothing. */
		if (e)
			sessmap_del(&a->ids, id);
		free(e);
		kill(-child.pid, SIGKILL);
		waitpid(child.pid, NULL, 0);
		close(child.stdin_fd);
		if (child.stdout_fd != child.stdin_fd)
			close(child.stdout_fd);
		if (child.stderr_fd >= 0)
			close(child.stderr_fd);
		send_failed(a, id, "out_of_memory", ENOMEM, NULL, "exec: out of memory");
		return;
	}
	e->s.kind = AGENT_SESS_EXEC;
	e->s.id = id;
	agent_sess_add(a, &e->s);
	e->pid = child.pid;
	e->tty = rq->tty;
	agent_src_init(&e->out, &e->s, child.stdout_fd, PROTO_T_EXEC_STDOUT, false);
	agent_src_init(&e->err, &e->s, child.stderr_fd, PROTO_T_EXEC_STDERR, false);
	agent_sink_init(&e->in, &e->s, child.stdin_fd, false);
	if (window)
		exec_credit_start(e, window);
	a->n_exec++;

	m.u.exec_started.pid = (uint32_t)child.pid;
	agent_send(a, id, &m); /* before any output: sources are armed after this */
	agent_src_arm(a, &e->out);
	agent_src_arm(a, &e->err);
}

/*
 * Under credit, return the stdin bytes the process took (or that were
 * dropped with its stdin) once half a window has gathered.
 */
void agent_exec_stdin_wrote(struct agent *a, struct agent_exec *e)
{
	struct proto_msg m = {.type = PROTO_T_SANDWIRE_CREDIT};
	uint64_t done = e->in.closed ? e->xc.in_received : e->in.written;

	if (!e->xc.window || e->s.done || done - e->xc.in_returned < e->xc.window / 2 ||
		done == e->xc.in_returned)
		return;
	m.u.sandwire_credit.bytes = done - e->xc.in_returned;
	if (agent_send(a, e->s.id, &m) < 0) {
		agent_log(a, 1, "cannot queue sandwire.credit for id %u; retried on the next write",
			e->s.id);
		return;
	}
	e->xc.in_returned = done;
}

void agent_exec_stdin(struct agent *a, struct agent_exec *e, const uint8_t *p, size_t n)
{
	if (e->s.done)
		return;
	if (n == 0) {
		/* EOF convention: empty data closes stdin in pipe mode; a PTY ignores it (^D is EOF). */
		if (!e->tty)
			agent_sink_close(a, &e->in);
		return;
	}
	if (e->xc.window) {
		if (e->xc.in_received + n > e->xc.in_returned + e->xc.window) {
			uint64_t left = e->xc.in_returned + e->xc.window - e->xc.in_received;

			agent_send_error(a, e->s.id, PROTO_ERROR_INVALID_PAYLOAD,
				proto_type_name(PROTO_T_EXEC_STDIN),
				"stdin past the sandwire credit window: %zu bytes, %llu left; dropped", n,
				(unsigned long long)left);
			return;
		}
		e->xc.in_received += n;
	}
	if (agent_sink_push(a, &e->in, p, n) == -ENOMEM)
		agent_exec_sink_error(a, e, ENOMEM);
	/* -EPIPE: stdin already closed; data is dropped silently (spec 4.3), and returned. */
	agent_exec_stdin_wrote(a, e);
}

void agent_exec_out_room(struct agent *a, struct agent_exec *e)
{
	agent_src_arm(a, &e->out);
	agent_src_arm(a, &e->err);
}

void agent_exec_credit(struct agent *a, uint32_t id, uint64_t bytes)
{
	struct agent_sess *s = sessmap_get(&a->ids, id);
	struct agent_exec *e = s && s->kind == AGENT_SESS_EXEC ? (struct agent_exec *)s : NULL;
	const char *t = proto_type_name(PROTO_T_SANDWIRE_CREDIT);
	uint64_t owed;

	if (!s) {
		a->st.dropped_unknown_id++; /* ended or never started: silent (F14) */
		return;
	}
	if (!e || !e->xc.window) {
		agent_send_error(a, id, PROTO_ERROR_INVALID_SESSION, t,
			"session %u is not an exec session under sandwire credit", id);
		return;
	}
	owed = e->xc.out_sent + e->xc.window - e->xc.out_limit; /* sent, not yet returned */
	if (bytes > owed) {
		agent_send_error(a, id, PROTO_ERROR_INVALID_PAYLOAD, t,
			"credit of %llu bytes, but only %llu were sent and not yet returned",
			(unsigned long long)bytes, (unsigned long long)owed);
		return;
	}
	e->xc.out_limit += bytes;
	agent_exec_out_room(a, e);
}

void agent_exec_resize(struct agent *a, struct agent_exec *e, const struct proto_exec_resize *rz)
{
	struct winsize ws = {.ws_row = rz->rows, .ws_col = rz->cols};

	if (e->tty && !e->s.done && ioctl(e->out.fd, TIOCSWINSZ, &ws) < 0)
		agent_log(a, 3, "resize id %u: %s", e->s.id, strerror(errno));
}

void agent_exec_signal(struct agent *a, struct agent_exec *e, int sig)
{
	if (sig < 1 || sig > 31 || e->s.done)
		return; /* spec 4.3: only standard signals; others are silent no-ops */
	/* The child leads its own process group; fall back to the pid before it is reaped. */
	if (kill(-e->pid, sig) < 0 && !e->reaped)
		kill(e->pid, sig);
}

void agent_exec_terminate_all(struct agent *a, int sig)
{
	for (struct agent_sess *s = a->sessions; s; s = s->next_all)
		if (s->kind == AGENT_SESS_EXEC && !s->done)
			agent_exec_signal(a, (struct agent_exec *)s, sig);
}

void agent_exec_sink_error(struct agent *a, struct agent_exec *e, int err)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_STDIN_ERROR};
	const char *ename = agent_errno_name(err);
	char text[160];

	if (e->s.done)
		return;
	agent_exec_stdin_wrote(a, e); /* the queued stdin is gone with the sink */
	if (err == EPIPE)
		ename = "EPIPE";
	snprintf(text, sizeof(text), "io error: %s (os error %d)", strerror(err), err);
	m.u.exec_stdin_error.err_no = (struct proto_opt_i32){true, err};
	if (ename)
		m.u.exec_stdin_error.errno_name = (struct proto_opt_str){true, {ename, strlen(ename)}};
	m.u.exec_stdin_error.message = (struct proto_str){text, strlen(text)};
	agent_send(a, e->s.id, &m);
}

void agent_exec_reaped(struct agent *a, struct agent_exec *e, int wstatus)
{
	e->reaped = true;
	e->wstatus = wstatus;
	agent_exec_maybe_finish(a, e);
}

void agent_exec_src_eof(struct agent *a, struct agent_exec *e)
{
	agent_exec_maybe_finish(a, e);
}

/* exec.exited once reaped and every output stream reached EOF. */
void agent_exec_maybe_finish(struct agent *a, struct agent_exec *e)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_EXITED};

	if (e->s.done || !e->reaped || !e->out.eof || !e->err.eof)
		return;
	if (WIFEXITED(e->wstatus)) {
		m.u.exec_exited.code = WEXITSTATUS(e->wstatus);
	} else {
		m.u.exec_exited.code = -1;
		if (WIFSIGNALED(e->wstatus))
			m.u.exec_exited.signal = (struct proto_opt_i32){true, WTERMSIG(e->wstatus)};
	}
	agent_send(a, e->s.id, &m);
	e->s.done = true;
	sessmap_del(&a->ids, e->s.id);
	agent_sink_drop(a, &e->in);
	a->n_exec--;
	agent_sess_put(a, &e->s); /* the live reference */
}

void agent_exec_free(struct agent *a, struct agent_exec *e)
{
	if (e->in.fd >= 0 && e->in.fd != e->out.fd)
		close(e->in.fd);
	if (e->out.fd >= 0)
		close(e->out.fd);
	if (e->err.fd >= 0)
		close(e->err.fd);
	if (!e->reaped)
		sessmap_del(&a->pids, (uint32_t)e->pid);
	free(e);
}
