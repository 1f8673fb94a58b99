/*
 * tests/cli/test_cli.c - the sandwire command line, end to end: every
 * command run as a real process against a real daemon (`sandwire serve`
 * started by the test), the exit-code table, TTY mode through a real
 * pseudo-terminal, cp of 100 MiB both ways, tcp with a real TCP server, the
 * private daemon of `sandwire run`, and the metrics endpoint.
 *
 * The sandboxes use the process backend without namespaces, so they share
 * the host's filesystem, pids and network: the tests check effects inside
 * a sandbox directly on the host.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 120000

/* ---- helpers: processes ------------------------------------------------------------------ */

/* The sandwire binary: build/engine/sandwire beside build/agent/sandwire-agent. */
static const char *sw_path(void)
{
	static char path[PATH_MAX];
	char agent[PATH_MAX];

	if (!path[0]) {
		snprintf(agent, sizeof(agent), "%s", SW_AGENT_BIN);
		snprintf(path, sizeof(path), "%s/../engine/sandwire", dirname(agent));
	}
	return path;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* What a finished sandwire run produced. */
struct out {
	int code; /* exit status, 128+N after signal N */
	char *out, *err;
	size_t out_len, err_len;
};

static void out_free(struct out *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
}

static void buf_add(char **b, size_t *n, const char *p, size_t k)
{
	*b = realloc(*b, *n + k + 1);
	cr_assert(*b);
	memcpy(*b + *n, p, k);
	*n += k;
	(*b)[*n] = '\0';
}

static int wait_code(pid_t pid)
{
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Start sandwire <argv> (argv[0] is the first argument) with pipes on 0/1/2. */
static pid_t sw_spawn(char *const *argv, int *in, int *out, int *err)
{
	int pi[2], po[2], pe[2];
	char *args[64];
	size_t n = 0;
	pid_t pid;

	args[n++] = (char *)sw_path();
	while (argv[n - 1] && n < 63) {
		args[n] = argv[n - 1];
		n++;
	}
	args[n] = NULL;
	cr_assert(pipe2(pi, O_CLOEXEC) == 0 && pipe2(po, O_CLOEXEC) == 0 &&
		  pipe2(pe, O_CLOEXEC) == 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(pi[0], 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(args[0], args);
		_exit(99);
	}
	close(pi[0]);
	close(po[1]);
	close(pe[1]);
	*in = pi[1];
	*out = po[0];
	*err = pe[0];
	return pid;
}

/*
 * Run sandwire with <argv> (NULL-terminated, without the program), feeding
 * <in_len> bytes of <in> (NULL: none; stdin then closed at once).
 */
static void sw_runv(struct out *o, const void *in, size_t in_len, char *const *argv)
{
	int fin, fout, ferr;
	pid_t pid = sw_spawn(argv, &fin, &fout, &ferr);
	int64_t deadline = now_ms() + RUN_TIMEOUT_MS;
	size_t sent = 0;
	char buf[65536];

	memset(o, 0, sizeof(*o));
	buf_add(&o->out, &o->out_len, "", 0);
	buf_add(&o->err, &o->err_len, "", 0);
	signal(SIGPIPE, SIG_IGN);
	if (!in || !in_len) {
		close(fin);
		fin = -1;
	} else {
		fcntl(fin, F_SETFL, O_NONBLOCK); /* never block on stdin while stdout fills */
	}
	while (fout >= 0 || ferr >= 0) {
		struct pollfd p[3] = {{fout, POLLIN, 0}, {ferr, POLLIN, 0}, {fin, POLLOUT, 0}};
		ssize_t n;

		cr_assert(now_ms() < deadline, "sandwire %s did not finish", argv[0]);
		cr_assert(poll(p, 3, 1000) >= 0);
		if (p[2].revents) {
			n = write(fin, (const char *)in + sent, in_len - sent);
			if (n > 0)
				sent += (size_t)n;
			if ((n < 0 && errno != EAGAIN) || sent == in_len) {
				close(fin);
				fin = -1;
			}
		}
		for (int i = 0; i < 2; i++) {
			int *fd = i ? &ferr : &fout;

			if (!p[i].revents)
				continue;
			n = read(*fd, buf, sizeof(buf));
			if (n <= 0) {
				close(*fd);
				*fd = -1;
			} else if (i) {
				buf_add(&o->err, &o->err_len, buf, (size_t)n);
			} else {
				buf_add(&o->out, &o->out_len, buf, (size_t)n);
			}
		}
	}
	if (fin >= 0)
		close(fin);
	o->code = wait_code(pid);
}

#define SW(o, ...) sw_runv((o), NULL, 0, (char *const[]){__VA_ARGS__, NULL})
#define SW_IN(o, in, n, ...) sw_runv((o), (in), (n), (char *const[]){__VA_ARGS__, NULL})

/* Run and require exit code <code>. */
#define SW_EXPECT(o, want, ...)                                                                    \
	do {                                                                                       \
		SW(o, __VA_ARGS__);                                                                \
		cr_assert_eq((o)->code, (want), "exit %d, want %d; stdout: %s; stderr: %s",        \
			(o)->code, (want), (o)->out, (o)->err);                                    \
	} while (0)

/* ---- helpers: the daemon ------------------------------------------------------------------ */

struct daemon {
	pid_t pid;
	char dir[32];
	char sock[64];
	char log[64];
};

/*
 * `sandwire serve` on a private socket, <extra> appended; SANDWIRE_SOCKET
 * points at it.  Ready when it wrote its --ready-fd byte (connecting before
 * that is not safe: the engine can crash on a connection accepted while it
 * starts; reported).
 */
static void daemon_start_with(struct daemon *d, const char *extra1, const char *extra2)
{
	struct pollfd p = {.events = POLLIN};
	int ready[2];
	char byte;

	snprintf(d->dir, sizeof(d->dir), "/tmp/sw-cli-XXXXXX");
	cr_assert(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/d.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/d.log", d->dir);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	d->pid = fork();
	cr_assert(d->pid >= 0);
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		dup2(ready[1], 5);
		execl(sw_path(), "sandwire", "serve", "--socket", d->sock, "--shards", "2",
			"--no-agent-sock", "--grace", "300", "--ready-fd", "5", extra1, extra2,
			(char *)NULL);
		_exit(99);
	}
	close(ready[1]);
	p.fd = ready[0];
	cr_assert_eq(poll(&p, 1, 15000), 1, "sandwire serve did not get ready");
	cr_assert_eq(read(ready[0], &byte, 1), 1, "sandwire serve exited before it was ready");
	close(ready[0]);
	setenv("SANDWIRE_SOCKET", d->sock, 1);
}

static void daemon_start(struct daemon *d)
{
	daemon_start_with(d, NULL, NULL);
}

/* SIGTERM; the daemon must stop cleanly (exit 0) and remove its socket. */
static void daemon_stop(struct daemon *d)
{
	char cmd[200];

	cr_assert_eq(kill(d->pid, SIGTERM), 0);
	cr_assert_eq(wait_code(d->pid), 0, "sandwire serve did not stop cleanly");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	cr_assert_eq(system(cmd), 0);
}

static void make_sandbox(const char *name)
{
	struct out o;

	SW_EXPECT(&o, 0, "create", "--name", (char *)name);
	out_free(&o);
}

/* ---- helpers: TCP -------------------------------------------------------------------------- */

struct echo_srv {
	int lfd;
	uint16_t port;
	pthread_t thr;
};

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			break;
	close(fd); /* after the peer's EOF, once everything is echoed */
	return NULL;
}

static void *echo_main(void *arg)
{
	struct echo_srv *s = arg;
	pthread_t t;
	int fd;

	while ((fd = accept(s->lfd, NULL, NULL)) >= 0) {
		pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

static int listen_any(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 64), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void echo_start(struct echo_srv *s)
{
	s->lfd = listen_any(&s->port);
	cr_assert_eq(pthread_create(&s->thr, NULL, echo_main, s), 0);
}

static void echo_stop(struct echo_srv *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->thr, NULL);
	close(s->lfd);
}

static int tcp_connect(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %u: %s", port,
		strerror(errno));
	return fd;
}

/* ---- help and errors --------------------------------------------------------------------------
 */

Test(cli, every_command_has_help_with_examples)
{
	static const char *cmds[] = {"serve", "run", "exec", "create", "start", "stop", "rm",
		"inspect", "ls", "publish", "stats", "cp", "tcp"};
	struct out o;

	SW_EXPECT(&o, 0, "--help");
	cr_assert(strstr(o.out, "commands:") && strstr(o.out, "--socket"));
	out_free(&o);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		SW_EXPECT(&o, 0, (char *)cmds[i], "--help");
		cr_assert(strstr(o.out, "usage: sandwire ") && strstr(o.out, "example"),
			"%s --help: %s", cmds[i], o.out);
		out_free(&o);
	}
	SW_EXPECT(&o, 0, "help", "cp");
	cr_assert(strstr(o.out, "usage: sandwire cp"));
	out_free(&o);
	SW_EXPECT(&o, 125, "frobnicate");
	cr_assert(strstr(o.err, "unknown command") && strstr(o.err, "--help"));
	out_free(&o);
	SW_EXPECT(&o, 125, "exec", "--bogus", "x", "--", "true");
	cr_assert(strstr(o.err, "sandwire exec --help"), "%s", o.err);
	out_free(&o);
}

Test(cli, no_daemon_says_how_to_start_one)
{
	struct out o;

	setenv("SANDWIRE_SOCKET", "/tmp/sw-cli-no-such-dir/d.sock", 1);
	SW_EXPECT(&o, 125, "ls");
	cr_assert(strstr(o.err, "sandwire serve") && strstr(o.err, "/tmp/sw-cli-no-such-dir"), "%s",
		o.err);
	out_free(&o);
	/* --socket wins over SANDWIRE_SOCKET, on either side of the command name */
	SW_EXPECT(&o, 125, "--socket", "/tmp/sw-cli-other/x.sock", "ls");
	cr_assert(strstr(o.err, "/tmp/sw-cli-other/x.sock"), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 125, "ls", "--socket", "/tmp/sw-cli-third/x.sock");
	cr_assert(strstr(o.err, "/tmp/sw-cli-third/x.sock"), "%s", o.err);
	out_free(&o);
}

/* ---- lifecycle ----------------------------------------------------------------------------------
 */

Test(cli, create_ls_inspect_stop_start_rm, .timeout = 120)
{
	struct daemon d;
	struct out o;

	daemon_start(&d);
	SW_EXPECT(&o, 0, "create", "--name", "box");
	cr_assert_str_eq(o.out, "box\n");
	out_free(&o);
	SW_EXPECT(&o, 125, "create", "--name", "box");
	cr_assert(strstr(o.err, "box"), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 125, "create", "--name", "bad/name");
	out_free(&o);

	SW_EXPECT(&o, 0, "ls");
	cr_assert(strstr(o.out, "NAME") && strstr(o.out, "STATE") && strstr(o.out, "PORTS") &&
			  strstr(o.out, "AGENT"),
		"%s", o.out);
	cr_assert(strstr(o.out, "box") && strstr(o.out, "running") && strstr(o.out, "sandwire/"),
		"%s", o.out);
	out_free(&o);
	SW_EXPECT(&o, 0, "inspect", "box");
	cr_assert(strstr(o.out, "\"name\": \"box\"") && strstr(o.out, "\"state\": \"running\""),
		"%s", o.out);
	cr_assert(o.out[0] == '[');
	out_free(&o);

	SW_EXPECT(&o, 0, "stop", "box");
	out_free(&o);
	SW_EXPECT(&o, 0, "ls");
	cr_assert(strstr(o.out, "stopped"), "%s", o.out);
	out_free(&o);
	SW_EXPECT(&o, 125, "exec", "box", "--", "true");
	cr_assert(strstr(o.err, "sandwire start box"), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 0, "start", "box");
	out_free(&o);
	SW_EXPECT(&o, 0, "exec", "box", "--", "true");
	out_free(&o);

	SW_EXPECT(&o, 0, "rm", "box");
	out_free(&o);
	SW_EXPECT(&o, 0, "ls", "-q");
	cr_assert_str_eq(o.out, "");
	out_free(&o);
	SW_EXPECT(&o, 125, "inspect", "box");
	cr_assert(strstr(o.err, "no sandbox named") && strstr(o.err, "sandwire ls"), "%s", o.err);
	out_free(&o);
	daemon_stop(&d);
}

/* ---- exec --------------------------------------------------------------------------------------
 */

Test(cli, exit_code_table, .timeout = 120)
{
	char script[] = "/tmp/sw-cli-noexec-XXXXXX";
	struct daemon d;
	struct out o;
	int fd;

	daemon_start(&d);
	make_sandbox("x");
	SW_EXPECT(&o, 3, "exec", "x", "--", "sh", "-c", "exit 3");
	out_free(&o);
	SW_EXPECT(&o, 0, "exec", "x", "--", "true");
	out_free(&o);
	SW_EXPECT(&o, 137, "exec", "x", "--", "sh", "-c", "kill -9 $$");
	out_free(&o);
	SW_EXPECT(&o, 143, "exec", "x", "sh", "-c", "kill -TERM $$"); /* no `--` needed */
	out_free(&o);
	SW_EXPECT(&o, 127, "exec", "x", "--", "sw-cli-no-such-command");
	cr_assert(
		strstr(o.err, "sw-cli-no-such-command") && strstr(o.err, "not_found"), "%s", o.err);
	out_free(&o);
	fd = mkstemp(script);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "#!/bin/sh\necho no\n", 18), 18);
	close(fd);
	chmod(script, 0644);
	SW_EXPECT(&o, 126, "exec", "x", "--", script);
	out_free(&o);
	unlink(script);
	SW_EXPECT(&o, 125, "exec", "nosuchbox", "--", "true");
	cr_assert(strstr(o.err, "no sandbox named") && strstr(o.err, "known: x"), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 125, "exec", "x");
	cr_assert(strstr(o.err, "no command"), "%s", o.err);
	out_free(&o);
	/* a command killed by --timeout */
	SW_EXPECT(&o, 124, "exec", "--timeout", "300ms", "x", "--", "sleep", "30");
	cr_assert(strstr(o.err, "timed out"), "%s", o.err);
	out_free(&o);
	daemon_stop(&d);
}

Test(cli, exec_streams_stdio_env_and_workdir, .timeout = 120)
{
	size_t n = 3u << 20;
	unsigned char *in = malloc(n);
	struct daemon d;
	struct out o;

	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 2654435761u >> 13);
	daemon_start(&d);
	make_sandbox("io");
	/* -i: stdin through, EOF included (cat ends) */
	SW_IN(&o, in, n, "exec", "-i", "io", "--", "cat");
	cr_assert_eq(o.code, 0, "%s", o.err);
	cr_assert_eq(o.out_len, n);
	cr_assert(!memcmp(o.out, in, n));
	out_free(&o);
	/* without -i the command's stdin is empty */
	SW_IN(&o, "ignored", 7, "exec", "io", "--", "wc", "-c");
	cr_assert_eq(o.code, 0);
	cr_assert_eq(atoi(o.out), 0, "%s", o.out);
	out_free(&o);
	/* stdout and stderr stay apart; -e and -w apply */
	SW_EXPECT(&o, 0, "exec", "-e", "SW_A=one", "--env", "SW_B=two", "-w", "/tmp", "io", "--",
		"sh", "-c", "echo $SW_A $SW_B; pwd; echo oops >&2");
	cr_assert_str_eq(o.out, "one two\n/tmp\n");
	cr_assert_str_eq(o.err, "oops\n");
	out_free(&o);
	/* --rlimit reaches the command */
	SW_EXPECT(&o, 0, "exec", "--rlimit", "nofile=77:88", "io", "--", "sh", "-c",
		"ulimit -n; ulimit -Hn");
	cr_assert_str_eq(o.out, "77\n88\n");
	out_free(&o);
	SW_EXPECT(&o, 125, "exec", "--rlimit", "bogus=1", "io", "--", "true");
	cr_assert(strstr(o.err, "unknown resource"), "%s", o.err);
	out_free(&o);
	free(in);
	daemon_stop(&d);
}

/* Read from <fd> into <acc> until <needle> shows up or <ms> pass. */
static bool read_until(int fd, char *acc, size_t cap, size_t *len, const char *needle, int ms)
{
	int64_t deadline = now_ms() + ms;

	while (!strstr(acc, needle)) {
		struct pollfd p = {fd, POLLIN, 0};
		int left = (int)(deadline - now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return false;
		n = read(fd, acc + *len, cap - 1 - *len);
		if (n <= 0)
			return false;
		*len += (size_t)n;
		acc[*len] = '\0';
	}
	return true;
}

Test(cli, exec_forwards_sigterm_and_sigint, .timeout = 120)
{
	static const char *sigs[] = {"TERM", "INT"};
	struct daemon d;

	daemon_start(&d);
	make_sandbox("sig");
	for (int i = 0; i < 2; i++) {
		char script[200], acc[4096] = "";
		size_t len = 0;
		int fin, fout, ferr;
		pid_t pid;

		snprintf(script, sizeof(script),
			"trap 'echo got %s; exit 7' %s; echo ready; while :; do sleep 0.05; done",
			sigs[i], sigs[i]);
		pid = sw_spawn((char *[]){"exec", "sig", "--", "sh", "-c", script, NULL}, &fin,
			&fout, &ferr);
		cr_assert(read_until(fout, acc, sizeof(acc), &len, "ready", 10000));
		kill(pid, i ? SIGINT : SIGTERM);
		cr_assert(read_until(fout, acc, sizeof(acc), &len, "got", 10000), "%s", acc);
		cr_assert_eq(wait_code(pid), 7);
		close(fin);
		close(fout);
		close(ferr);
	}
	daemon_stop(&d);
}

Test(cli, exec_detach_keeps_running_after_sandwire_left, .timeout = 120)
{
	char logpath[256] = "", *at;
	struct daemon d;
	struct out o;
	FILE *f;
	int pid;

	daemon_start(&d);
	make_sandbox("bg");
	SW_EXPECT(&o, 0, "exec", "-d", "bg", "--", "sh", "-c", "echo detached-out; exec sleep 60");
	pid = atoi(o.out);
	cr_assert(pid > 0, "%s", o.out);
	at = strstr(o.err, "goes to ");
	cr_assert(at, "%s", o.err);
	sscanf(at + 8, "%255s", logpath);
	out_free(&o);
	sleep_ms(1000); /* past the daemon's --grace 300 for a departed client's commands */
	cr_assert_eq(kill(pid, 0), 0, "the detached command died with its client");
	f = fopen(logpath, "r");
	cr_assert(f, "no log %s", logpath);
	cr_assert(fgets((char[64]){0}, 64, f));
	fclose(f);
	kill(pid, SIGKILL);
	unlink(logpath);
	SW_EXPECT(&o, 127, "exec", "-d", "bg", "--", "sw-cli-no-such-command");
	out_free(&o);
	daemon_stop(&d);
}

/* ---- TTY ----------------------------------------------------------------------------------------
 */

/* sandwire <argv> (without the program) on a new pseudo-terminal of <rows> x <cols>. */
static pid_t pty_spawn(
	int *master, int *slave, char *const *argv, unsigned short rows, unsigned short cols)
{
	struct winsize ws = {.ws_row = rows, .ws_col = cols};
	char *args[16] = {(char *)sw_path()};
	pid_t pid;

	for (int i = 0; argv[i] && i < 14; i++)
		args[i + 1] = argv[i];
	cr_assert_eq(openpty(master, slave, NULL, NULL, &ws), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		setsid();
		ioctl(*slave, TIOCSCTTY, 0);
		dup2(*slave, 0);
		dup2(*slave, 1);
		dup2(*slave, 2);
		close(*master);
		execv(args[0], args);
		_exit(99);
	}
	return pid;
}

/* `sandwire exec -t NAME -- sh` on a new pseudo-terminal. */
static pid_t tty_spawn(
	int *master, int *slave, const char *name, unsigned short rows, unsigned short cols)
{
	return pty_spawn(master, slave, (char *[]){"exec", "-t", (char *)name, "--", "sh", NULL},
		rows, cols);
}

static bool termios_same(const struct termios *a, const struct termios *b)
{
	return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
	       a->c_lflag == b->c_lflag && !memcmp(a->c_cc, b->c_cc, sizeof(a->c_cc));
}

Test(cli, tty_mode_echo_size_resize_and_restore, .timeout = 120)
{
	struct winsize ws = {.ws_row = 41, .ws_col = 123};
	struct termios orig, during, after;
	char acc[16384] = "";
	int master, slave;
	struct daemon d;
	size_t len = 0;
	pid_t pid;

	daemon_start(&d);
	make_sandbox("term");
	pid = tty_spawn(&master, &slave, "term", 30, 100);
	cr_assert_eq(tcgetattr(slave, &orig), 0);
	cr_assert(orig.c_lflag & ECHO);
	cr_assert_eq(write(master, "stty size\r", 10), 10);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "30 100", 15000), "%s", acc);
	cr_assert(strstr(acc, "stty size"), "the remote terminal echoes: %s", acc);
	/* the local terminal is raw while the session runs */
	cr_assert_eq(tcgetattr(slave, &during), 0);
	cr_assert(!(during.c_lflag & (ECHO | ICANON | ISIG)), "not raw: lflag %o", during.c_lflag);
	/* a resize: the kernel signals the foreground group; send SIGWINCH too, as a terminal would
	 */
	cr_assert_eq(ioctl(master, TIOCSWINSZ, &ws), 0);
	kill(pid, SIGWINCH);
	sleep_ms(300);
	cr_assert_eq(write(master, "stty size\r", 10), 10);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "41 123", 15000), "%s", acc);
	/* Ctrl-C is a byte for the remote terminal, not a signal for sandwire */
	cr_assert_eq(write(master, "sleep 30\r", 9), 9);
	sleep_ms(300);
	cr_assert_eq(write(master, "\003", 1), 1);
	cr_assert_eq(write(master, "echo after-$((6*7))\r", 20), 20);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "after-42", 15000), "%s", acc);
	cr_assert_eq(write(master, "exit 5\r", 7), 7);
	cr_assert_eq(wait_code(pid), 5, "%s", acc);
	cr_assert_eq(tcgetattr(slave, &after), 0);
	cr_assert(termios_same(&orig, &after), "terminal not restored");
	close(master);
	close(slave);
	daemon_stop(&d);
}

Test(cli, tty_detach_keys_leave_and_restore, .timeout = 120)
{
	struct termios orig, after;
	char acc[8192] = "";
	int master, slave;
	struct daemon d;
	size_t len = 0;
	pid_t pid;

	daemon_start(&d);
	make_sandbox("det");
	pid = tty_spawn(&master, &slave, "det", 24, 80);
	cr_assert_eq(tcgetattr(slave, &orig), 0);
	cr_assert_eq(write(master, "echo hello-$((6*7))\r", 20), 20);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "hello-42", 15000), "%s", acc);
	/* Ctrl-P alone passes through; Ctrl-P Ctrl-Q leaves */
	cr_assert_eq(write(master, "\020\021", 2), 2);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "detached", 15000), "%s", acc);
	cr_assert_eq(wait_code(pid), 0);
	cr_assert_eq(tcgetattr(slave, &after), 0);
	cr_assert(termios_same(&orig, &after), "terminal not restored");
	close(master);
	close(slave);
	daemon_stop(&d);
}

Test(cli, tty_restored_when_sandwire_is_terminated, .timeout = 120)
{
	struct termios orig, after;
	char acc[8192] = "";
	int master, slave;
	struct daemon d;
	size_t len = 0;
	pid_t pid;

	daemon_start(&d);
	make_sandbox("hup");
	pid = tty_spawn(&master, &slave, "hup", 24, 80);
	cr_assert_eq(tcgetattr(slave, &orig), 0);
	cr_assert_eq(write(master, "echo up-$((6*7))\r", 17), 17);
	cr_assert(read_until(master, acc, sizeof(acc), &len, "up-42", 15000), "%s", acc);
	kill(pid, SIGHUP);
	cr_assert_eq(wait_code(pid), 128 + SIGHUP);
	cr_assert_eq(tcgetattr(slave, &after), 0);
	cr_assert(termios_same(&orig, &after), "terminal not restored");
	close(master);
	close(slave);
	daemon_stop(&d);
}

Test(cli, tty_mode_with_piped_stdin, .timeout = 60)
{
	static const char script[] = "echo $((2+3))-ok\nexit 9\n";
	struct daemon d;
	struct out o;

	daemon_start(&d);
	make_sandbox("pipe");
	/* a PTY inside, a pipe outside: no raw mode here, the remote terminal echoes */
	SW_IN(&o, script, sizeof(script) - 1, "exec", "-t", "pipe", "--", "sh");
	cr_assert_eq(o.code, 9, "%s %s", o.out, o.err);
	cr_assert(strstr(o.out, "5-ok\r\n"), "%s", o.out);
	out_free(&o);
	daemon_stop(&d);
}

/* ---- cp -----------------------------------------------------------------------------------------
 */

/* sha256sum of <path> (64 hex digits) into <out>. */
static void sha256_file(const char *path, char out[65])
{
	char cmd[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
	p = popen(cmd, "r");
	cr_assert(p);
	cr_assert(fgets(out, 65, p), "sha256sum %s", path);
	pclose(p);
	cr_assert_eq(strlen(out), 64);
}

static void write_random(const char *path, size_t n, mode_t mode)
{
	int in = open("/dev/urandom", O_RDONLY),
	    out = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	char buf[1 << 16];

	cr_assert(in >= 0 && out >= 0);
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t r = read(in, buf, k);

		cr_assert(r > 0);
		cr_assert_eq(write(out, buf, (size_t)r), r);
		done += (size_t)r;
	}
	close(in);
	close(out);
	chmod(path, mode);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	cr_assert_eq(lstat(path, &st), 0, "%s", path);
	return st.st_mode & 07777;
}

Test(cli, cp_100_mib_both_ways_with_checksums, .timeout = 300)
{
	char src[256], up[300], back[300], a[65], b[65], c[65], remote[320],
		dir[] = "/tmp/sw-cp-XXXXXX";
	struct daemon d;
	struct out o;

	daemon_start(&d);
	make_sandbox("files");
	cr_assert(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/big.bin", dir);
	snprintf(up, sizeof(up), "%s/up.bin", dir);
	snprintf(back, sizeof(back), "%s/back.bin", dir);
	write_random(src, 100u << 20, 0640);
	sha256_file(src, a);

	snprintf(remote, sizeof(remote), "files:%s", up);
	SW_EXPECT(&o, 0, "cp", src, remote);
	cr_assert_eq(o.err_len, 0, "no progress bar without a terminal: %s", o.err);
	out_free(&o);
	sha256_file(up, b);
	cr_assert_str_eq(a, b, "upload changed the bytes");
	cr_assert_eq(mode_of(up), 0640);

	SW_EXPECT(&o, 0, "cp", remote, back);
	out_free(&o);
	sha256_file(back, c);
	cr_assert_str_eq(a, c, "download changed the bytes");
	cr_assert_eq(mode_of(back), 0640);

	/* on a terminal: a progress bar, and the same bytes */
	{
		char acc[65536] = "";
		int master, slave;
		size_t len = 0;
		pid_t pid;

		unlink(back);
		pid = pty_spawn(&master, &slave, (char *[]){"cp", remote, back, NULL}, 24, 80);
		close(slave); /* the terminal's output ends (EIO) when sandwire is gone */
		read_until(master, acc, sizeof(acc), &len, "never printed", 60000);
		cr_assert_eq(wait_code(pid), 0, "%s", acc);
		cr_assert(strstr(acc, "% ") && strstr(acc, " / 100.0 MiB") && strstr(acc, "/s"),
			"no progress bar: %s", acc);
		close(master);
		sha256_file(back, c);
		cr_assert_str_eq(a, c, "download on a terminal changed the bytes");
	}
	snprintf(remote, sizeof(remote), "rm -rf %s", dir);
	cr_assert_eq(system(remote), 0);
	daemon_stop(&d);
}

Test(cli, cp_directories_both_ways_keeps_modes_links_and_times, .timeout = 120)
{
	char dir[] = "/tmp/sw-cpd-XXXXXX", p[512], q[512], remote[600];
	struct stat st;
	struct daemon d;
	struct out o;

	daemon_start(&d);
	make_sandbox("tree");
	cr_assert(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/src", dir);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/src/sub", dir);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/src/sub/deep.txt", dir);
	write_random(p, 70000, 0600);
	snprintf(p, sizeof(p), "%s/src/run.sh", dir);
	write_random(p, 10, 0755);
	snprintf(p, sizeof(p), "%s/src/empty", dir);
	write_random(p, 0, 0444);
	snprintf(p, sizeof(p), "%s/src/link", dir);
	cr_assert_eq(symlink("sub/deep.txt", p), 0);
	snprintf(p, sizeof(p), "%s/src/run.sh", dir);
	utimensat(AT_FDCWD, p, (struct timespec[]){{0, UTIME_OMIT}, {1000000000, 0}}, 0);
	snprintf(p, sizeof(p), "%s/in", dir);
	mkdir(p, 0700);

	/* up: an existing directory as DST receives src inside it */
	snprintf(p, sizeof(p), "%s/src", dir);
	snprintf(remote, sizeof(remote), "tree:%s/in", dir);
	SW_EXPECT(&o, 0, "cp", p, remote);
	out_free(&o);
	snprintf(q, sizeof(q), "diff -r %s/src %s/in/src", dir, dir);
	cr_assert_eq(system(q), 0, "trees differ after upload");
	snprintf(q, sizeof(q), "%s/in/src/sub", dir);
	cr_assert_eq(mode_of(q), 0750);
	snprintf(q, sizeof(q), "%s/in/src/run.sh", dir);
	cr_assert_eq(mode_of(q), 0755);
	cr_assert_eq(stat(q, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1000000000);
	snprintf(q, sizeof(q), "%s/in/src/empty", dir);
	cr_assert_eq(mode_of(q), 0444);
	snprintf(q, sizeof(q), "%s/in/src/link", dir);
	cr_assert_eq(readlink(q, p, sizeof(p)), 12);
	cr_assert(!memcmp(p, "sub/deep.txt", 12));

	/* down: a new name as DST */
	snprintf(remote, sizeof(remote), "tree:%s/in/src", dir);
	snprintf(p, sizeof(p), "%s/out", dir);
	SW_EXPECT(&o, 0, "cp", remote, p);
	out_free(&o);
	snprintf(q, sizeof(q), "diff -r %s/src %s/out", dir, dir);
	cr_assert_eq(system(q), 0, "trees differ after download");
	snprintf(q, sizeof(q), "%s/out/sub", dir);
	cr_assert_eq(mode_of(q), 0750);
	snprintf(q, sizeof(q), "%s/out/run.sh", dir);
	cr_assert_eq(stat(q, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1000000000);
	snprintf(q, sizeof(q), "%s/out/link", dir);
	cr_assert_eq(readlink(q, p, sizeof(p)), 12);

	/* errors: a missing source, two local paths */
	snprintf(remote, sizeof(remote), "tree:%s/nothing-here", dir);
	SW_EXPECT(&o, 125, "cp", remote, "/tmp/x");
	cr_assert(strstr(o.err, "No such file"), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 125, "cp", "/etc/hostname", "/tmp/x");
	cr_assert(strstr(o.err, "NAME:PATH"), "%s", o.err);
	out_free(&o);
	snprintf(q, sizeof(q), "rm -rf %s", dir);
	cr_assert_eq(system(q), 0);
	daemon_stop(&d);
}

/* ---- tcp ----------------------------------------------------------------------------------------
 */

Test(cli, tcp_joins_stdio_to_a_stream_inside, .timeout = 120)
{
	size_t n = 4u << 20;
	unsigned char *in = malloc(n);
	struct echo_srv s;
	struct daemon d;
	char target[64];
	struct out o;

	for (size_t i = 0; i < n; i++)
		in[i] = (unsigned char)(i * 40503u >> 7);
	daemon_start(&d);
	make_sandbox("net");
	echo_start(&s);
	snprintf(target, sizeof(target), "127.0.0.1:%u", s.port);
	/* stdin's EOF half-closes; the server echoes the rest and closes; sandwire ends */
	SW_IN(&o, in, n, "tcp", "net", target);
	cr_assert_eq(o.code, 0, "%s", o.err);
	cr_assert_eq(o.out_len, n);
	cr_assert(!memcmp(o.out, in, n));
	out_free(&o);
	/* an empty stdin: EOF at once, nothing back */
	SW_EXPECT(&o, 0, "tcp", "net", target);
	cr_assert_eq(o.out_len, 0);
	out_free(&o);
	echo_stop(&s);
	/* nothing listens any more */
	SW_EXPECT(&o, 125, "tcp", "net", target);
	cr_assert(strstr(o.err, "cannot connect") && strstr(o.err, target), "%s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 125, "tcp", "net", "no-port");
	out_free(&o);
	free(in);
	daemon_stop(&d);
}

/* ---- run ----------------------------------------------------------------------------------------
 */

Test(cli, run_without_a_daemon_uses_a_private_one, .timeout = 120)
{
	char rt[] = "/tmp/sw-cli-rt-XXXXXX", cmd[128];
	struct out o;

	cr_assert(mkdtemp(rt));
	setenv("SANDWIRE_SOCKET", "/tmp/sw-cli-no-such-dir/none.sock", 1);
	setenv("XDG_RUNTIME_DIR", rt, 1); /* the private daemon's directory goes here */
	SW_EXPECT(&o, 4, "run", "--", "sh", "-c", "echo private run; exit 4");
	cr_assert_str_eq(o.out, "private run\n");
	out_free(&o);
	SW_IN(&o, "piped\n", 6, "run", "-i", "--", "cat");
	cr_assert_eq(o.code, 0, "%s", o.err);
	cr_assert_str_eq(o.out, "piped\n");
	out_free(&o);
	SW_EXPECT(&o, 127, "run", "--", "sw-cli-no-such-command");
	out_free(&o);
	/* nothing left behind: the private daemon removed its directory */
	snprintf(cmd, sizeof(cmd), "rmdir %s", rt);
	cr_assert_eq(system(cmd), 0, "the private daemon left files in %s", rt);
}

Test(cli, run_on_a_daemon_keeps_or_removes_the_sandbox, .timeout = 120)
{
	struct daemon d;
	struct out o;

	daemon_start(&d);
	SW_EXPECT(&o, 0, "run", "--name", "kept", "--", "sh", "-c", "echo kept");
	cr_assert_str_eq(o.out, "kept\n");
	out_free(&o);
	SW_EXPECT(&o, 6, "run", "--rm", "--name", "gone", "-e", "V=6", "--", "sh", "-c", "exit $V");
	out_free(&o);
	SW_EXPECT(&o, 0, "ls", "-q");
	cr_assert_str_eq(o.out, "kept\n");
	out_free(&o);
	SW_EXPECT(&o, 0, "run", "--rm", "-w", "/", "--timeout", "10s", "--rlimit", "nofile=64",
		"--", "sh", "-c", "pwd; ulimit -n");
	cr_assert_str_eq(o.out, "/\n64\n");
	out_free(&o);
	SW_EXPECT(&o, 0, "ls", "-q");
	cr_assert_str_eq(o.out, "kept\n", "a generated sandbox was not removed");
	out_free(&o);
	SW_EXPECT(&o, 125, "run", "--name", "kept", "--", "true");
	out_free(&o);
	SW_EXPECT(&o, 125, "run", "a", "b", "--", "true");
	cr_assert(strstr(o.err, "ROOT"), "%s", o.err);
	out_free(&o);
	daemon_stop(&d);
}

/* ---- ports, stats, metrics ---------------------------------------------------------------------
 */

/* The host port published for <guest> in `inspect` output. */
static unsigned published_port(const char *json, unsigned guest)
{
	char key[64];
	const char *at;

	snprintf(key, sizeof(key), "\"guest_port\": %u", guest);
	at = strstr(json, key);
	cr_assert(at, "no port %u in %s", guest, json);
	while (at > json && strncmp(at, "\"host_port\": ", 13))
		at--;
	return (unsigned)atoi(at + 13);
}

static void port_roundtrip(unsigned port)
{
	char buf[16] = "";
	int fd = tcp_connect((uint16_t)port);

	cr_assert_eq(write(fd, "ping", 4), 4);
	cr_assert_eq(read(fd, buf, 4), 4);
	cr_assert_str_eq(buf, "ping");
	close(fd);
}

Test(cli, create_and_publish_ports, .timeout = 120)
{
	char spec[64];
	struct echo_srv s;
	struct daemon d;
	struct out o;

	daemon_start(&d);
	echo_start(&s);
	snprintf(spec, sizeof(spec), "127.0.0.1:0:%u", s.port);
	SW_EXPECT(&o, 0, "create", "--name", "web", "-p", spec);
	out_free(&o);
	SW_EXPECT(&o, 0, "inspect", "web");
	port_roundtrip(published_port(o.out, s.port));
	out_free(&o);
	SW_EXPECT(&o, 0, "ls");
	snprintf(spec, sizeof(spec), "->%u", s.port);
	cr_assert(strstr(o.out, "127.0.0.1:") && strstr(o.out, spec), "%s", o.out);
	out_free(&o);
	snprintf(spec, sizeof(spec), "0:%u", s.port);
	SW_EXPECT(&o, 0, "publish", "web", "-p", spec);
	out_free(&o);
	SW_EXPECT(&o, 0, "inspect", "web");
	cr_assert_eq(strstr(strstr(o.out, "\"guest_port\"") + 1, "\"guest_port\"") != NULL, 1,
		"two ports: %s", o.out);
	out_free(&o);
	SW_EXPECT(&o, 125, "create", "--name", "bad", "-p", "notaport");
	cr_assert(strstr(o.err, "-p notaport"), "%s", o.err);
	out_free(&o);
	echo_stop(&s);
	daemon_stop(&d);
}

Test(cli, stats_table_per_shard, .timeout = 60)
{
	struct daemon d;
	struct out o;

	daemon_start(&d);
	make_sandbox("st");
	SW_EXPECT(&o, 0, "stats", "--interval", "200ms");
	cr_assert(strstr(o.out, "SHARD") && strstr(o.out, "FRAMES/S") && strstr(o.out, "BYTES/S") &&
			  strstr(o.out, "XSHARD/S") && strstr(o.out, "COPIES") &&
			  strstr(o.out, "DROPS"),
		"%s", o.out);
	cr_assert(strstr(o.out, "\n0 ") && strstr(o.out, "\n1 ") && strstr(o.out, "\nall "), "%s",
		o.out);
	out_free(&o);
	SW_EXPECT(&o, 125, "stats", "--interval", "soon");
	out_free(&o);
	daemon_stop(&d);
}

Test(cli, serve_metrics_endpoint, .timeout = 60)
{
	char addr[32], req[] = "GET /metrics HTTP/1.0\r\n\r\n", resp[65536] = "";
	struct daemon d;
	uint16_t port;
	size_t len = 0;
	ssize_t n;
	int fd = listen_any(&port);

	close(fd); /* a free port, most likely still free in a moment */
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	daemon_start_with(&d, "--metrics", addr);
	make_sandbox("metered");
	fd = tcp_connect(port);
	cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	while ((n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	cr_assert(strstr(resp, "HTTP/1.0 200 OK"), "%s", resp);
	cr_assert(strstr(resp, "text/plain; version=0.0.4"));
	cr_assert(strstr(resp, "# TYPE sandwire_shard_frames_in_total counter"), "%s", resp);
	cr_assert(strstr(resp, "sandwire_shard_clients{shard=\"1\"}"), "%s", resp);
	cr_assert(strstr(resp, "sandwire_sandbox_info{sandbox=\"metered\",state=\"running\""), "%s",
		resp);
	daemon_stop(&d);
}

Test(cli, cp_moves_file_bytes_over_raw_bulk_with_a_gen9_agent, .timeout = 120)
{
	char src[256], back[300], a[65], b[65], remote[320], dir[] = "/tmp/sw-cpb-XXXXXX";
	struct daemon d;
	struct out o;

	daemon_start(&d);
	make_sandbox("bulky");
	cr_assert(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/src.bin", dir);
	snprintf(back, sizeof(back), "%s/back.bin", dir);
	write_random(src, (16u << 20) + 12345, 0600);
	sha256_file(src, a);
	/* -v names how each file travelled: the agent's ready says generation 9. */
	snprintf(remote, sizeof(remote), "bulky:%s/up.bin", dir);
	SW_EXPECT(&o, 0, "-v", "cp", src, remote);
	cr_assert(strstr(o.err, "16789561 bytes over raw bulk"), "upload: %s", o.err);
	out_free(&o);
	SW_EXPECT(&o, 0, "-v", "cp", remote, back);
	cr_assert(strstr(o.err, "16789561 bytes over raw bulk"), "download: %s", o.err);
	out_free(&o);
	sha256_file(back, b);
	cr_assert_str_eq(a, b, "the bytes changed on the way up and back");
	snprintf(remote, sizeof(remote), "rm -rf %s", dir);
	cr_assert_eq(system(remote), 0);
	daemon_stop(&d);
}

Test(cli, exec_pipes_64_mib_through_cat_under_sandwire_credit, .timeout = 300)
{
	char dir[] = "/tmp/sw-cre-XXXXXX", in[64], out[64], err[64], cmd[4400], a[65], b[65];
	char note[4096] = "";
	struct daemon d;
	FILE *fp;

	cr_assert(mkdtemp(dir));
	snprintf(in, sizeof(in), "%s/in.bin", dir);
	snprintf(out, sizeof(out), "%s/out.bin", dir);
	snprintf(err, sizeof(err), "%s/err.txt", dir);
	write_random(in, 64u << 20, 0600);
	sha256_file(in, a);
	daemon_start(&d);
	make_sandbox("credit");
	/* -v names how the bytes travelled: the daemon announced "credit" and the agent took it */
	snprintf(cmd, sizeof(cmd), "%s -v exec -i credit -- cat < %s > %s 2> %s", sw_path(), in,
		out, err);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	sha256_file(out, b);
	cr_assert_str_eq(a, b, "the bytes changed on the way through cat");
	fp = fopen(err, "r");
	cr_assert(fp);
	cr_assert_gt(fread(note, 1, sizeof(note) - 1, fp), 0);
	fclose(fp);
	cr_assert(strstr(note, "67108864 bytes out, 67108864 in, under sandwire credit"), "%s",
		note);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	daemon_stop(&d);
}
