/*
 * engine/cli/exec_io.c - one exec session with the local stdio attached.
 *
 *   local stdin  -> core.exec.stdin (EOF: empty data in pipe mode, ^D with -t)
 *   core.exec.stdout / stderr -> local stdout / stderr
 *   SIGINT, SIGTERM, SIGQUIT (and SIGHUP without -t) -> core.exec.signal
 *   SIGWINCH (-t) -> core.exec.resize
 *   core.exec.exited {code, signal} -> our exit code (128+N after signal N)
 *   core.exec.failed {kind} -> 127 (not_found) or 126
 *
 * With -t and a terminal on stdin, the terminal is in raw mode for the
 * session (tty.c restores it on every way out) and Ctrl-P Ctrl-Q leaves the
 * session.  Leaving closes the connection, so the daemon hangs up the
 * command (SIGHUP, SIGKILL after its grace period) as a closed terminal
 * would; `exec -d` is the way to keep something running.
 *
 * Signals are taken through a signalfd so that the loop stays one poll().
 *
 * When the agent's ready named the "credit" extension (wire.md "Flow
 * control"), the session asks for it: output written to our stdout/stderr
 * is returned with sandwire.credit once half a window gathered, and local
 * stdin is read only while the window the agent returned has room.  A slow
 * reader of our stdout then holds back that one command, nothing else.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"

#define EXEC_KILL_GRACE_MS 2000 /* --timeout: SIGTERM, then SIGKILL after this */
#define EXEC_INT_GIVE_UP 3	/* this many SIGINTs and sandwire leaves */
#define KEY_CTRL_P 0x10
#define KEY_CTRL_Q 0x11
#define KEY_CTRL_D 0x04

struct session {
	struct wire *w;
	const struct exec_opts *o;
	const char *sandbox;
	uint32_t id;
	int sigfd;
	bool read_stdin;  /* local stdin is still forwarded */
	bool detach_keys; /* -t on a terminal: watch for Ctrl-P Ctrl-Q */
	bool held_ctrl_p; /* Ctrl-P seen, its fate decided by the next byte */
	bool stdout_gone; /* our stdout reader left: output is dropped */
	int nint;
	int64_t term_at, kill_at; /* --timeout deadlines, 0: none */
	bool timed_out;
	bool started;	      /* exec.started seen */
	char last_error[512]; /* the last core.error on the session's id */
	int result;	      /* exit code once the session ended, -1 before */
	uint8_t *collect;     /* exec_detached: stdout collected here */
	size_t collect_len;
	uint64_t window;		/* "credit" extension window, 0: not used */
	uint64_t out_got, out_returned; /* output delivered / returned with sandwire.credit */
	uint64_t in_sent, in_returned;	/* stdin sent / returned by the agent */
};

/* Block the signals the session handles and open a signalfd for them. */
static int session_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGWINCH);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Queue the exec request for <argv> with the options of <o>. */
static int send_request(struct session *s, char **argv, int argc, bool tty)
{
	const struct exec_opts *o = s->o;
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	struct proto_exec_request *rq = &m.u.exec_request;
	struct proto_str *args = calloc((size_t)argc + o->nenv + 1, sizeof(*args));
	struct proto_str *env = args + argc;
	int rc;

	if (!args)
		return -ENOMEM;
	for (int i = 1; i < argc; i++)
		args[i - 1] = (struct proto_str){argv[i], strlen(argv[i])};
	for (size_t i = 0; i < o->nenv; i++)
		env[i] = (struct proto_str){o->env[i], strlen(o->env[i])};
	rq->cmd = (struct proto_str){argv[0], strlen(argv[0])};
	rq->args = args;
	rq->nargs = (size_t)argc - 1;
	rq->env = env;
	rq->nenv = o->nenv;
	if (o->cwd)
		rq->cwd = (struct proto_opt_str){true, {o->cwd, strlen(o->cwd)}};
	if (o->user)
		rq->user = (struct proto_opt_str){true, {o->user, strlen(o->user)}};
	rq->tty = tty;
	tty_size(&rq->rows, &rq->cols);
	rq->rlimits = o->rlimits;
	rq->nrlimits = o->nrlimits;
	if (s->w->agent_credit) {
		s->window = PROTO_SANDWIRE_CREDIT_WINDOW;
		rq->sandwire_credit = (struct proto_opt_u64){true, s->window};
	}
	rc = wire_send(s->w, s->id, &m);
	free(args);
	return rc;
}

static int send_signal(struct session *s, int sig)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_SIGNAL, .u.exec_signal = {.signal = sig}};

	return wire_send(s->w, s->id, &m);
}

static int send_stdin(struct session *s, const void *p, size_t n)
{
	s->in_sent += n;
	return wire_send_data(s->w, PROTO_T_EXEC_STDIN, s->id, p, n);
}

/*
 * Stdin bytes the window lets us read now (without credit: a whole chunk).
 * A Ctrl-P held from the last read may add one byte to the next frame.
 */
static size_t stdin_room(const struct session *s)
{
	uint64_t room;

	if (!s->window)
		return CLI_STDIN_CHUNK;
	room = s->window - (s->in_sent - s->in_returned);
	room = room > s->held_ctrl_p ? room - s->held_ctrl_p : 0;
	return room < CLI_STDIN_CHUNK ? (size_t)room : CLI_STDIN_CHUNK;
}

/* Output of <n> bytes was delivered: return it once half a window gathered. */
static int output_delivered(struct session *s, size_t n)
{
	struct proto_msg m = {.type = PROTO_T_SANDWIRE_CREDIT};

	s->out_got += n;
	if (!s->window || s->out_got - s->out_returned < s->window / 2)
		return 0;
	m.u.sandwire_credit.bytes = s->out_got - s->out_returned;
	s->out_returned = s->out_got;
	return wire_send(s->w, s->id, &m);
}

/* Leave the session: the command gets the daemon's hang-up. */
static void session_leave(struct session *s, int code, const char *why)
{
	tty_restore();
	fprintf(stderr,
		"%ssandwire: %s; the daemon hangs up `%s` in %s (SIGHUP) as a closed "
		"terminal would\n",
		s->o->tty ? "\r\n" : "", why, s->o->argv[0], s->sandbox);
	s->result = code;
}

static int on_signal(struct session *s)
{
	struct signalfd_siginfo si;
	struct proto_msg m = {.type = PROTO_T_EXEC_RESIZE};

	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;

		if (sig == SIGWINCH) {
			if (!s->o->tty)
				continue;
			tty_size(&m.u.exec_resize.rows, &m.u.exec_resize.cols);
			if (wire_send(s->w, s->id, &m) < 0)
				return -ENOMEM;
			continue;
		}
		if (sig == SIGHUP && s->o->tty) {
			session_leave(s, 128 + SIGHUP, "the terminal hung up");
			return 0;
		}
		if (sig == SIGINT && ++s->nint >= EXEC_INT_GIVE_UP) {
			session_leave(s, 128 + SIGINT, "interrupted three times: leaving");
			return 0;
		}
		if (send_signal(s, sig) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Forward one read of local stdin (TTY mode watches for the detach keys). */
static int on_stdin(struct session *s)
{
	uint8_t buf[CLI_STDIN_CHUNK], out[CLI_STDIN_CHUNK + 1];
	ssize_t n = read(0, buf, stdin_room(s));
	size_t k = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) { /* EOF (or a terminal that went away) */
		s->read_stdin = false;
		if (s->o->tty)
			return send_stdin(s, (uint8_t[]){KEY_CTRL_D}, 1);
		return send_stdin(s, NULL, 0);
	}
	if (!s->detach_keys)
		return send_stdin(s, buf, (size_t)n);
	for (ssize_t i = 0; i < n; i++) {
		if (s->held_ctrl_p) {
			s->held_ctrl_p = false;
			if (buf[i] == KEY_CTRL_Q) {
				session_leave(s, 0, "detached (Ctrl-P Ctrl-Q)");
				return 0;
			}
			out[k++] = KEY_CTRL_P;
		}
		if (buf[i] == KEY_CTRL_P)
			s->held_ctrl_p = true;
		else
			out[k++] = buf[i];
	}
	return k ? send_stdin(s, out, k) : 0;
}

/* Output of the command to local fd <fd>; what is dropped counts as delivered too. */
static int on_output(struct session *s, int fd, const uint8_t *p, size_t n)
{
	if (s->collect) {
		size_t room = 4095 - s->collect_len;

		memcpy(s->collect + s->collect_len, p, n < room ? n : room);
		s->collect_len += n < room ? n : room;
		return output_delivered(s, n);
	}
	if (s->stdout_gone && fd == 1)
		return output_delivered(s, n);
	if (cli_write_all(fd, p, n) == -EPIPE && fd == 1) {
		/* as a pipeline would: the writer learns its reader left */
		s->stdout_gone = true;
		if (send_signal(s, SIGPIPE) < 0)
			return -ENOMEM;
	}
	return output_delivered(s, n);
}

/* Exit code for core.exec.exited. */
static int exited_code(struct session *s, const struct proto_exec_exited *x)
{
	if (x->signal.set && x->signal.v > 0)
		return 128 + x->signal.v;
	if (x->code < 0) {
		cli_err("`%s` in %s ended without an exit status", s->o->argv[0], s->sandbox);
		return 255;
	}
	return x->code & 0xff;
}

static int failed_code(struct session *s, const struct proto_exec_failed *f, const char *cmd)
{
	bool nf = f->kind == PROTO_EXEC_FAIL_NOT_FOUND;

	tty_restore();
	cli_err("cannot run `%s` in sandbox %s: %.*s (%s)%s", cmd, s->sandbox, (int)f->message.len,
		f->message.ptr, proto_exec_fail_kind_name(f->kind),
		nf ? "; check the name and the PATH inside the sandbox" : "");
	return nf ? CLI_EXIT_NOT_FOUND : CLI_EXIT_CANNOT_RUN;
}

static void on_frame(struct session *s, const char *cmd)
{
	struct proto_msg *m = &s->w->msg;

	if (s->w->frame.id != s->id)
		return;
	switch (m->type) {
	case PROTO_T_EXEC_STDOUT:
		on_output(s, 1, m->u.data.ptr, m->u.data.len);
		break;
	case PROTO_T_EXEC_STDERR:
		on_output(s, 2, m->u.data.ptr, m->u.data.len);
		break;
	case PROTO_T_EXEC_EXITED:
		s->result = exited_code(s, &m->u.exec_exited);
		if (s->timed_out) {
			tty_restore();
			cli_err("`%s` timed out after %lld ms", cmd, (long long)s->o->timeout_ms);
			s->result = CLI_EXIT_TIMEOUT;
		}
		break;
	case PROTO_T_EXEC_FAILED:
		s->result = failed_code(s, &m->u.exec_failed, cmd);
		break;
	case PROTO_T_ERROR:
		/*
		 * Before exec.started the request itself was refused; later it
		 * means one frame failed and the session goes on (wire.md), unless
		 * the daemon closes the connection next: then this is why.
		 */
		snprintf(s->last_error, sizeof(s->last_error), "%.*s", (int)m->u.error.message.len,
			m->u.error.message.ptr);
		if (!s->started) {
			tty_restore();
			cli_err("sandbox %s: %s", s->sandbox, s->last_error);
			s->result = CLI_EXIT_ERR;
		}
		break;
	case PROTO_T_EXEC_STARTED:
		s->started = true;
		break;
	case PROTO_T_SANDWIRE_CREDIT:
		/* never more than was sent: a bogus grant must not open the window wider */
		if (m->u.sandwire_credit.bytes <= s->in_sent - s->in_returned)
			s->in_returned += m->u.sandwire_credit.bytes;
		break;
	default: /* exec.stdin.error: the command closed its stdin */
		break;
	}
}

/* --timeout: SIGTERM at the deadline, SIGKILL after the grace. */
static int on_clock(struct session *s)
{
	int64_t now = cli_now_ms();

	if (s->term_at && now >= s->term_at) {
		s->term_at = 0;
		s->timed_out = true;
		s->kill_at = now + EXEC_KILL_GRACE_MS;
		return send_signal(s, SIGTERM);
	}
	if (s->kill_at && now >= s->kill_at) {
		s->kill_at = 0;
		return send_signal(s, SIGKILL);
	}
	return 0;
}

static int poll_timeout(const struct session *s)
{
	int64_t next = s->term_at ? s->term_at : s->kill_at, left;

	if (!next)
		return -1;
	left = next - cli_now_ms();
	return left < 0 ? 0 : (int)left;
}

/* The loop: until the session ended or sandwire gave up. */
static int session_run(struct session *s, const char *cmd)
{
	struct pollfd p[3];
	int rc, n;

	while (s->result < 0) {
		p[0] = (struct pollfd){.fd = s->w->fd, .events = wire_events(s->w)};
		p[1] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
		p[2] = (struct pollfd){.fd = -1};
		if (s->read_stdin && wire_pending(s->w) < CLI_OUT_HIGH && stdin_room(s) > 0)
			p[2] = (struct pollfd){.fd = 0, .events = POLLIN};
		n = poll(p, 3, poll_timeout(s));
		if (n < 0 && errno != EINTR)
			return cli_fail("poll: %s", strerror(errno));
		rc = on_clock(s);
		if (rc == 0 && n > 0 && p[1].revents)
			rc = on_signal(s);
		if (rc == 0 && n > 0 && p[2].revents && s->result < 0)
			rc = on_stdin(s);
		if (rc == 0 && n > 0)
			rc = wire_io(s->w, p[0].revents);
		while (rc == 0 && s->result < 0 && (n = wire_next(s->w)) != 0) {
			if (n == -EPROTO)
				break;
			if (n > 0)
				on_frame(s, cmd);
		}
		if (rc < 0 && rc != -EPIPE)
			return cli_fail("sandbox %s: %s", s->sandbox, proto_strerror(rc));
		if (s->result < 0 && (rc == -EPIPE || s->w->eof)) {
			tty_restore();
			if (s->last_error[0])
				return cli_fail("%s", s->last_error);
			return cli_fail("sandbox %s: the daemon closed the connection before `%s` "
					"ended (did the sandbox stop? see `sandwire inspect %s`)",
				s->sandbox, cmd, s->sandbox);
		}
	}
	return s->result;
}

/* -v: how the session's bytes travelled. */
static void session_note(const struct session *s)
{
	if (s->window)
		fprintf(stderr,
			"sandwire: exec: %s: %llu bytes out, %llu in, under sandwire credit "
			"(window %llu bytes)\n",
			s->o->argv[0], (unsigned long long)s->out_got,
			(unsigned long long)s->in_sent, (unsigned long long)s->window);
	else
		fprintf(stderr, "sandwire: exec: %s: %llu bytes out, %llu in, without credit\n",
			s->o->argv[0], (unsigned long long)s->out_got,
			(unsigned long long)s->in_sent);
}

int exec_session(struct wire *w, const struct exec_opts *o, const char *sandbox)
{
	struct session s = {.w = w, .o = o, .sandbox = sandbox, .result = -1};
	int rc;

	s.id = wire_new_id(w);
	s.sigfd = session_signals();
	if (s.sigfd < 0)
		return cli_fail("signalfd: %s", strerror(errno));
	s.read_stdin = o->interactive || o->tty;
	if (send_request(&s, o->argv, o->argc, o->tty) < 0) {
		close(s.sigfd);
		return cli_fail("the command line is too large for one request");
	}
	if (!s.read_stdin)
		send_stdin(&s, NULL, 0); /* the command's stdin is at EOF at once */
	if (o->tty && isatty(0) && tty_raw(0) == 0)
		s.detach_keys = true;
	if (o->timeout_ms > 0)
		s.term_at = cli_now_ms() + o->timeout_ms;
	rc = session_run(&s, o->argv[0]);
	tty_restore();
	close(s.sigfd);
	if (o->verbose)
		session_note(&s);
	return rc;
}

/*
 * exec -d: a shell inside starts the command in a new session with nohup
 * (so neither the daemon's hang-up of this client's commands nor a
 * signal to the shell's group reaches it), output to a log file, and
 * prints "PID LOG".
 */
static const char detach_script[] =
	"command -v \"$1\" >/dev/null 2>&1 || { echo \"$1: command not found\" >&2; exit 127; }\n"
	"log=\"${TMPDIR:-/tmp}/sandwire-detached-$$.log\"\n"
	"if command -v setsid >/dev/null 2>&1; then\n"
	"  setsid nohup \"$@\" >\"$log\" 2>&1 </dev/null &\n"
	"else\n"
	"  nohup \"$@\" >\"$log\" 2>&1 </dev/null &\n"
	"fi\n"
	"echo \"$! $log\"\n";

int exec_detached(struct wire *w, const struct exec_opts *o, const char *sandbox)
{
	struct session s = {.w = w, .o = o, .sandbox = sandbox, .result = -1};
	char **argv = calloc((size_t)o->argc + 5, sizeof(*argv));
	char pid[32] = "", log[4096] = "";
	int rc = CLI_EXIT_ERR;

	s.collect = malloc(4096);
	s.sigfd = session_signals();
	if (!argv || !s.collect || s.sigfd < 0) {
		rc = cli_fail("out of resources: %s", strerror(errno));
		goto out;
	}
	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = (char *)detach_script;
	argv[3] = "sandwire-detach";
	memcpy(argv + 4, o->argv, sizeof(*argv) * (size_t)o->argc);
	s.id = wire_new_id(w);
	if (send_request(&s, argv, o->argc + 4, false) < 0 || send_stdin(&s, NULL, 0) < 0) {
		rc = cli_fail("the command line is too large for one request");
		goto out;
	}
	rc = session_run(&s, o->argv[0]);
	s.collect[s.collect_len] = '\0';
	if (rc == 0 && sscanf((char *)s.collect, "%31s %4095s", pid, log) == 2) {
		printf("%s\n", pid);
		fflush(stdout);
		cli_err("started `%s` in sandbox %s as pid %s; its output goes to %s inside the "
			"sandbox",
			o->argv[0], sandbox, pid, log);
	} else if (rc == CLI_EXIT_NOT_FOUND) {
		cli_err("cannot run `%s` in sandbox %s: command not found", o->argv[0], sandbox);
	} else if (rc != CLI_EXIT_ERR) {
		cli_err("could not start `%s` detached in sandbox %s (the shell there said: %s)",
			o->argv[0], sandbox, s.collect_len ? (char *)s.collect : "nothing");
		rc = rc ? rc : CLI_EXIT_ERR;
	}
out:
	if (s.sigfd >= 0)
		close(s.sigfd);
	free(s.collect);
	free(argv);
	return rc;
}
