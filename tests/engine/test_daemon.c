/*
 * tests/engine/test_daemon.c - sandwired end to end: the real daemon binary
 * (tests/support/daemon_harness.h) with real sandwire-agent sandboxes.
 * Clients on different shards sharing a sandbox, id-range refusals, a
 * client killed mid-stream, an agent killed mid-stream, published ports
 * (1,000 concurrent connections, half-close, 256 MiB each way without
 * user-space copies), the per-sandbox agent.sock and management errors.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/daemon_harness.h"

#define SH(script) ((const char *const[]){"/bin/sh", "-c", (script), NULL})

/* Poll until <cond> holds or <ms> pass; evaluates to the final <cond>. */
/* The shard whose client count went up by one from <a> to <b> (the others unchanged), or -1. */
static int shard_gained_client(
	const struct engine_shard_stats *a, const struct engine_shard_stats *b, unsigned n)
{
	int which = -1;

	for (unsigned i = 0; i < n; i++) {
		if (b[i].clients == a[i].clients)
			continue;
		if (b[i].clients != a[i].clients + 1 || which >= 0)
			return -1;
		which = (int)i;
	}
	return which;
}

/* Drain the frames <ac> has for <x> without waiting; false on EOF. */
static bool drain_exec(struct agent_client *ac, struct dh_exec *x)
{
	int rc;

	while (!x->done && (rc = dh_recv(ac, 0)) != 0) {
		if (rc < 0)
			return false;
		dh_exec_take(x, ac);
	}
	return true;
}

Test(daemon, two_clients_on_two_shards_share_a_sandbox, .timeout = 120)
{
	struct engine_shard_stats s0[DH_SHARDS_MAX], s1[DH_SHARDS_MAX], s2[DH_SHARDS_MAX];
	struct agent_client a, b;
	struct dh_exec xa, xb;
	uint32_t alo, ahi, blo, bhi;
	int sha, shb;
	char *want;
	size_t off = 0;
	int64_t deadline;
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "shared", NULL, 0, NULL);
	dh_stats(&d, s0);
	dh_attach(&d, "shared", &a, &alo, &ahi);
	dh_stats(&d, s1);
	dh_attach(&d, "shared", &b, &blo, &bhi);
	dh_stats(&d, s2);
	sha = shard_gained_client(s0, s1, 2);
	shb = shard_gained_client(s1, s2, 2);
	cr_assert(sha >= 0 && shb >= 0, "each attach adds one client to one shard");
	cr_assert_neq(sha, shb, "both clients landed on shard %d", sha);
	cr_assert(
		ahi <= blo || bhi <= alo, "ranges [%u,%u) and [%u,%u) overlap", alo, ahi, blo, bhi);

	dh_exec_send(&a, alo, SH("seq 1 20000"));
	dh_exec_send(&b, blo, SH("yes abc | head -c 300000; exit 7"));
	dh_exec_init(&xa, alo);
	dh_exec_init(&xb, blo);
	deadline = dh_now_ms() + 30000;
	while (!xa.done || !xb.done) {
		struct pollfd pfd[2] = {
			{.fd = a.fd, .events = POLLIN}, {.fd = b.fd, .events = POLLIN}};

		cr_assert(
			drain_exec(&a, &xa) && drain_exec(&b, &xb), "a client lost its connection");
		if (xa.done && xb.done)
			break;
		cr_assert_lt(dh_now_ms(), deadline,
			"execs not done in 30 s: %zu and %zu bytes so far", xa.out_len, xb.out_len);
		poll(pfd, 2, 1000);
	}
	cr_assert(xa.exited && xb.exited, "a: %s, b: %s", xa.text, xb.text);
	cr_assert_eq(xa.code, 0);
	cr_assert_eq(xb.code, 7);
	want = malloc(20000 * 6 + 1);
	cr_assert_not_null(want);
	for (int i = 1; i <= 20000; i++)
		off += (size_t)snprintf(want + off, 20000 * 6 + 1 - off, "%d\n", i);
	cr_assert_eq(xa.out_len, off, "seq output is %zu bytes, want %zu", xa.out_len, off);
	cr_assert(!memcmp(xa.out, want, off), "seq output differs");
	cr_assert_eq(xb.out_len, 300000u);
	for (size_t i = 0; i < 300000; i += 4)
		cr_assert(!memcmp(xb.out + i, "abc\n", 4), "yes output differs at %zu", i);
	free(want);
	dh_exec_free(&xa);
	dh_exec_free(&xb);
	agent_client_close(&a, 0);
	agent_client_close(&b, 0);
	dh_stop(&d);
}

/* Send an exec on <id> that the daemon must refuse: a core.error (invalid_session) comes back. */
static void expect_refused(struct agent_client *ac, uint32_t id)
{
	struct dh_exec x;

	dh_exec_send(ac, id, SH("echo intruder"));
	dh_exec_init(&x, id);
	dh_exec_wait(ac, &x, 10000);
	cr_assert(x.error, "id %u: not refused (started %d, exited %d)", id, x.started, x.exited);
	cr_assert_eq(x.error_kind, PROTO_ERROR_INVALID_SESSION, "id %u: core.error kind %s", id,
		proto_error_kind_name(x.error_kind));
	cr_assert(strstr(x.text, "not this client's"), "id %u: error text \"%s\"", id, x.text);
	dh_exec_free(&x);
}

Test(daemon, ids_outside_the_range_are_refused, .timeout = 120)
{
	struct engine_shard_stats before[DH_SHARDS_MAX], after[DH_SHARDS_MAX];
	struct agent_client a, b;
	uint32_t alo, ahi, blo, bhi;
	struct dh_exec x;
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "ranges", NULL, 0, NULL);
	dh_attach(&d, "ranges", &a, &alo, &ahi);
	dh_attach(&d, "ranges", &b, &blo, &bhi);
	cr_assert(ahi <= blo, "second client's range [%u,%u) is not above [%u,%u)", blo, bhi, alo,
		ahi);
	dh_stats(&d, before);

	expect_refused(&a, alo - 1);
	expect_refused(&a, ahi);
	expect_refused(&a, blo); /* the other client's id */
	dh_stats(&d, after);
	cr_assert_eq(DH_STATS_SUM(after, 2, refused) - DH_STATS_SUM(before, 2, refused), 3u,
		"refused counter went from %lu to %lu",
		(unsigned long)DH_STATS_SUM(before, 2, refused),
		(unsigned long)DH_STATS_SUM(after, 2, refused));

	/* The other client's exec on that very id runs, and only its own output arrives. */
	dh_exec_run(&b, blo, SH("echo mine"), &x);
	cr_assert(x.exited && x.code == 0, "b's exec: %s", x.text);
	cr_assert_str_eq(x.out, "mine\n");
	dh_exec_free(&x);
	/* The refused client is still attached and its own ids work. */
	dh_exec_run(&a, alo, SH("echo still-ok"), &x);
	cr_assert(x.exited && x.code == 0, "a's exec: %s", x.text);
	cr_assert_str_eq(x.out, "still-ok\n");
	dh_exec_free(&x);
	agent_client_close(&a, 0);
	agent_client_close(&b, 0);
	dh_stop(&d);
}

/*
 * A client process: attach to <name>, start two streaming commands (the
 * first traps SIGHUP and writes <hupfile>, the second ignores SIGHUP), and
 * once both streamed 64 KiB write their pids to <out>; then read forever.
 * No assertions here: a forked process of the test.
 */
static void streaming_client(const char *sock, const char *name, const char *hupfile, int out)
{
	char script[512], err[512];
	struct swc c;
	struct agent_client ac;
	uint32_t lo, hi, pids[2] = {0, 0};
	size_t bytes[2] = {0, 0};
	uint8_t *ready;
	size_t rl;
	bool told = false;

	if (swc_connect(&c, sock, err, sizeof(err)) < 0 ||
		swc_attach(&c, name, &lo, &hi, &ready, &rl, err, sizeof(err)) < 0 ||
		agent_client_attach(&ac, c.fd, -1) < 0)
		_exit(2);
	snprintf(script, sizeof(script),
		"trap 'echo hup > %s; exit 3' HUP; while :; do echo y; done", hupfile);
	if (dh_exec_request(&ac, lo, SH(script)) < 0 ||
		dh_exec_request(&ac, lo + 1, SH("trap '' HUP; exec yes")) < 0)
		_exit(3);
	for (;;) {
		if (agent_client_recv(&ac, -1) != 1)
			_exit(4);
		if (ac.frame.id != lo && ac.frame.id != lo + 1)
			continue;
		if (ac.msg.type == PROTO_T_EXEC_STARTED)
			pids[ac.frame.id - lo] = ac.msg.u.exec_started.pid;
		else if (ac.msg.type == PROTO_T_EXEC_STDOUT)
			bytes[ac.frame.id - lo] += ac.msg.u.data.len;
		else
			_exit(5); /* exited early */
		if (!told && pids[0] && pids[1] && bytes[0] >= 65536 && bytes[1] >= 65536) {
			if (write(out, pids, sizeof(pids)) != (ssize_t)sizeof(pids))
				_exit(6);
			told = true;
		}
	}
}

/* What a client costs the daemon while connected: buffers, client objects, descriptors. */
struct footprint {
	uint64_t pool_in_use, clients;
	int fds;
};

static struct footprint footprint(struct dh *d)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	unsigned n = dh_stats(d, st);

	return (struct footprint){
		.pool_in_use = DH_STATS_SUM(st, n, pool_in_use),
		.clients = DH_STATS_SUM(st, n, clients),
		.fds = dh_fd_count(d->pid),
	};
}

static bool footprint_eq(struct footprint a, struct footprint b)
{
	return a.pool_in_use == b.pool_in_use && a.clients == b.clients && a.fds == b.fds;
}

Test(daemon, killed_client_leaves_nothing_behind, .timeout = 120)
{
	struct footprint before, now = {0};
	int pfd[2], status;
	uint32_t pids[2];
	char hupfile[200], buf[16] = "";
	int64_t t0, t, died = -1;
	struct pollfd p;
	pid_t child;
	ssize_t n;
	FILE *f;
	struct dh d;

	dh_start(&d, 2, (const char *[]){"--grace", "500", NULL});
	dh_create(&d, "k", NULL, 0, NULL);
	snprintf(hupfile, sizeof(hupfile), "%s/hup", d.dir);
	dh_sleep_ms(500); /* a stats refresh (every 200 ms) after the boot */
	before = footprint(&d);

	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(pfd[0]);
		streaming_client(d.sock, "k", hupfile, pfd[1]);
	}
	close(pfd[1]);
	p = (struct pollfd){.fd = pfd[0], .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 15000), 1, "the client did not get both commands streaming");
	n = read(pfd[0], pids, sizeof(pids));
	cr_assert_eq(n, (ssize_t)sizeof(pids), "client process failed (read %zd)", n);
	close(pfd[0]);
	cr_assert(dh_pid_alive((pid_t)pids[0]) && dh_pid_alive((pid_t)pids[1]));

	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	t0 = dh_now_ms();
	dh_sleep_ms(200);
	t = dh_now_ms();
	/* SIGKILL comes no earlier than --grace after the daemon saw the close. */
	if (t - t0 < 450)
		cr_assert(dh_pid_alive((pid_t)pids[1]),
			"the SIGHUP-ignoring command died %ld ms after its client, within the "
			"grace",
			(long)(t - t0));
	while (dh_now_ms() - t0 < 5000) {
		if (!dh_pid_alive((pid_t)pids[0]) && !dh_pid_alive((pid_t)pids[1])) {
			died = dh_now_ms() - t0;
			break;
		}
		dh_sleep_ms(20);
	}
	cr_assert_geq(died, 0, "commands still running 5 s after their client died: %s %s",
		dh_pid_alive((pid_t)pids[0]) ? "the SIGHUP-trapping one" : "",
		dh_pid_alive((pid_t)pids[1]) ? "the SIGHUP-ignoring one" : "");
	cr_log_info("both commands gone %ld ms after the client was killed", (long)died);
	f = fopen(hupfile, "r");
	cr_assert_not_null(f, "the first command never got SIGHUP (%s missing)", hupfile);
	cr_assert_not_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	cr_assert_str_eq(buf, "hup\n");

	cr_assert(WAIT_FOR((now = footprint(&d), footprint_eq(now, before)), 5000),
		"5 s after: pool_in_use %lu (was %lu), clients %lu (was %lu), fds %d (was %d)",
		(unsigned long)now.pool_in_use, (unsigned long)before.pool_in_use,
		(unsigned long)now.clients, (unsigned long)before.clients, now.fds, before.fds);
	dh_stop(&d);
}

Test(daemon, killed_agent_fails_its_sandbox_only, .timeout = 120)
{
	struct engine_info victim, other, in = {0}, list[4];
	struct agent_client ac;
	uint32_t lo, hi;
	struct dh_exec x;
	unsigned errors = 0, terminal_errors = 0;
	bool eof = false, got_output = false;
	int64_t deadline;
	char err[600];
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "victim", NULL, 0, &victim);
	dh_create(&d, "other", NULL, 0, &other);
	cr_assert_gt(victim.pid, 0, "create's info has no agent pid");
	dh_attach(&d, "victim", &ac, &lo, &hi);
	dh_exec_send(&ac, lo, SH("exec yes"));
	/* Streaming: exec.started and some output, then the agent dies. */
	while (!got_output) {
		cr_assert_eq(dh_recv(&ac, 10000), 1, "no output from yes");
		got_output = ac.msg.type == PROTO_T_EXEC_STDOUT;
	}
	cr_assert_eq(kill((pid_t)victim.pid, SIGKILL), 0, "kill agent %ld: %s", (long)victim.pid,
		strerror(errno));
	deadline = dh_now_ms() + 10000;
	while (!eof) {
		int rc = dh_recv(&ac, 1000);

		cr_assert_lt(dh_now_ms(), deadline, "no EOF 10 s after the agent died");
		if (rc < 0)
			eof = true;
		else if (rc == 1 && ac.msg.type == PROTO_T_ERROR) {
			errors++;
			if (ac.frame.id == lo && (ac.frame.flags & PROTO_FLAG_TERMINAL))
				terminal_errors++;
		} else if (rc == 1) {
			cr_assert(ac.msg.type == PROTO_T_EXEC_STDOUT && errors == 0,
				"%s on id %u after the agent died", proto_type_name(ac.msg.type),
				ac.frame.id);
		}
	}
	cr_assert_geq(errors, 1, "EOF without a core.error");
	cr_assert_eq(terminal_errors, 1, "no terminal core.error on the running exec's id");
	agent_client_close(&ac, 0);

	cr_assert(WAIT_FOR((dh_call(&d, ENGINE_V_INSPECT, "victim", &in, err, sizeof(err)),
				   !strcmp(in.state, "failed")),
			  5000),
		"victim's state is %s", in.state);
	cr_assert_neq(in.error[0], '\0', "a failed sandbox says why");
	cr_assert_eq(in.pid, 0);
	cr_log_info("failed sandbox's error: %s", in.error);

	dh_attach(&d, "other", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, SH("echo alive"), &x);
	cr_assert(x.exited && x.code == 0);
	cr_assert_str_eq(x.out, "alive\n");
	dh_exec_free(&x);
	agent_client_close(&ac, 0);
	cr_assert_eq(dh_list(&d, list, 4), 2u);
	dh_stop(&d);
}

/* ---- published ports ------------------------------------------------------------------ */

/* A sandbox "web" with one published port to <guest_port>; returns the host port. */
static uint16_t publish(struct dh *d, uint16_t guest_port)
{
	struct engine_port p = {.host_ip = "127.0.0.1", .host_port = 0, .guest_port = guest_port};
	struct engine_info in;

	dh_create(d, "web", &p, 1, &in);
	cr_assert_eq(in.nports, 1u);
	cr_assert_eq(in.ports[0].port.guest_port, guest_port);
	cr_assert_neq(in.ports[0].port.host_port, 0, "the bound host port is not reported");
	return in.ports[0].port.host_port;
}

#define NCONN 1000 /* concurrent published-port connections */
#define CONN_BYTES (64u * 1024u)

struct tconn {
	int fd;
	size_t sent, rcvd;
	bool done, eof;
};

static void conns_report(
	struct dh *d, const struct tconn *c, const struct dh_tcpsrv *srv, const char *phase)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	unsigned sent = 0, done = 0, eof = 0, none = 0;
	char tail[1500];

	for (int i = 0; i < NCONN; i++) {
		sent += c[i].sent == CONN_BYTES;
		done += c[i].done;
		eof += c[i].eof;
		none += c[i].rcvd == 0;
	}
	dh_stats(d, st);
	cr_assert_fail(
		"%s: of %d connections %u sent all, %u got all back (%u nothing), %u saw EOF; "
		"echo server accepted %lu, in %lu, out %lu, closed %lu; daemon: port_conns "
		"%lu+%lu, frames in %lu out %lu, bytes in %lu out %lu, stalls %lu, drops %lu, "
		"pool_in_use %lu+%lu; log:\n%s",
		phase, NCONN, sent, done, none, eof, (unsigned long)srv->accepted,
		(unsigned long)srv->bytes_in, (unsigned long)srv->bytes_out,
		(unsigned long)srv->closed, (unsigned long)st[0].port_conns,
		(unsigned long)st[1].port_conns, (unsigned long)DH_STATS_SUM(st, 2, frames_in),
		(unsigned long)DH_STATS_SUM(st, 2, frames_out),
		(unsigned long)DH_STATS_SUM(st, 2, bytes_in),
		(unsigned long)DH_STATS_SUM(st, 2, bytes_out),
		(unsigned long)DH_STATS_SUM(st, 2, stalls),
		(unsigned long)DH_STATS_SUM(st, 2, drops), (unsigned long)st[0].pool_in_use,
		(unsigned long)st[1].pool_in_use, dh_log_tail(d, tail, sizeof(tail)));
}

/*
 * Each connection costs two descriptors here (client and echo server) and
 * two in the daemon and its agent, which inherit this limit: raise it.
 */
static void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_assert_geq(rl.rlim_max, want,
		"RLIMIT_NOFILE hard limit %lu is below the %lu this test needs",
		(unsigned long)rl.rlim_max, (unsigned long)want);
	if (rl.rlim_cur < want) {
		rl.rlim_cur = want;
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit: %s", strerror(errno));
	}
}

/* Read what is there on conn <i>; the echo must be stream i+1. */
static void conn_read(struct tconn *c, int i, uint8_t *buf)
{
	for (;;) {
		ssize_t r = read(c->fd, buf, CONN_BYTES);

		if (r < 0) {
			cr_assert(errno == EAGAIN, "conn %d: read: %s", i, strerror(errno));
			return;
		}
		if (r == 0) {
			cr_assert_eq(
				c->rcvd, CONN_BYTES, "conn %d: EOF after %zu bytes", i, c->rcvd);
			c->eof = true;
			return;
		}
		cr_assert_leq(c->rcvd + (size_t)r, CONN_BYTES, "conn %d: more bytes than sent", i);
		cr_assert(dh_pattern_check(buf, (size_t)r, (uint64_t)i + 1, c->rcvd),
			"conn %d: echoed bytes differ at %zu", i, c->rcvd);
		c->rcvd += (size_t)r;
		c->done = c->rcvd == CONN_BYTES;
	}
}

static void conn_send(struct tconn *c, int i, uint8_t *buf)
{
	while (c->sent < CONN_BYTES) {
		size_t n = CONN_BYTES - c->sent;
		ssize_t w;

		dh_pattern(buf, n, (uint64_t)i + 1, c->sent);
		w = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (w < 0) {
			cr_assert(errno == EAGAIN, "conn %d: send: %s", i, strerror(errno));
			return;
		}
		c->sent += (size_t)w;
	}
}

Test(daemon, published_port_1000_concurrent_connections, .timeout = 180)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	struct epoll_event evs[256];
	struct tconn *c = calloc(NCONN, sizeof(*c));
	uint8_t *buf = malloc(CONN_BYTES);
	struct dh_tcpsrv srv;
	struct engine_info in;
	unsigned done = 0, eofs = 0;
	uint16_t port;
	int efd;
	int64_t t0, deadline;
	char err[600];
	struct dh d;

	cr_assert(c && buf);
	raise_nofile(4 * NCONN + 256);
	dh_tcpsrv_start(&srv, DH_ECHO, 0, 0);
	dh_start(&d, 2, NULL);
	port = publish(&d, srv.port);
	efd = epoll_create1(EPOLL_CLOEXEC);
	cr_assert_geq(efd, 0);
	t0 = dh_now_ms();
	for (int i = 0; i < NCONN; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};

		c[i].fd = dh_tcp_connect(port, true);
		cr_assert_eq(epoll_ctl(efd, EPOLL_CTL_ADD, c[i].fd, &ev), 0);
	}
	/* All send 64 KiB and read it back, concurrently; all stay open. */
	deadline = dh_now_ms() + 40000;
	while (done < NCONN) {
		int n = epoll_wait(efd, evs, 256, 1000);

		if (dh_now_ms() > deadline)
			conns_report(&d, c, &srv, "echo not complete in 40 s");
		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;
			struct tconn *ci = &c[i];
			bool was_done = ci->done;

			if (evs[k].events & EPOLLERR) {
				int soerr = 0;
				socklen_t sl = sizeof(soerr);
				char what[96];

				getsockopt(ci->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
				snprintf(what, sizeof(what), "conn %d: %s after %zu bytes back", i,
					strerror(soerr), ci->rcvd);
				conns_report(&d, c, &srv, what);
			}
			if ((evs[k].events & EPOLLOUT) && ci->sent < CONN_BYTES) {
				conn_send(ci, i, buf);
				if (ci->sent == CONN_BYTES) {
					struct epoll_event ev = {
						.events = EPOLLIN, .data.u32 = (uint32_t)i};

					epoll_ctl(efd, EPOLL_CTL_MOD, ci->fd, &ev);
				}
			}
			if (evs[k].events & (EPOLLIN | EPOLLHUP))
				conn_read(ci, i, buf);
			cr_assert(!ci->eof, "conn %d: EOF before the client finished", i);
			if (ci->done && !was_done) {
				done++;
				epoll_ctl(efd, EPOLL_CTL_DEL, ci->fd, NULL);
			}
		}
	}
	cr_log_info("%d x 64 KiB echoed in %ld ms", NCONN, (long)(dh_now_ms() - t0));

	/* Every connection is open now: each shard must be serving some of them. */
	dh_stats(&d, st);
	cr_assert_eq(DH_STATS_SUM(st, 2, port_conns), (uint64_t)NCONN, "port_conns %lu + %lu",
		(unsigned long)st[0].port_conns, (unsigned long)st[1].port_conns);
	cr_assert(st[0].port_conns > 0 && st[1].port_conns > 0,
		"connections per shard: %lu and %lu", (unsigned long)st[0].port_conns,
		(unsigned long)st[1].port_conns);
	cr_log_info("port connections per shard: %lu, %lu", (unsigned long)st[0].port_conns,
		(unsigned long)st[1].port_conns);
	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "web", &in, err, sizeof(err)), "%s", err);
	cr_assert_eq(in.ports[0].accepted, (uint64_t)NCONN);
	cr_assert_eq(in.ports[0].active, (uint64_t)NCONN);
	cr_assert_eq(in.ports[0].refused, 0u);
	cr_assert_eq(srv.accepted, (uint64_t)NCONN);

	/* Half-close all: the echo server closes after our EOF, we see EOF. */
	for (int i = 0; i < NCONN; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

		cr_assert_eq(shutdown(c[i].fd, SHUT_WR), 0);
		cr_assert_eq(epoll_ctl(efd, EPOLL_CTL_ADD, c[i].fd, &ev), 0);
	}
	deadline = dh_now_ms() + 30000;
	while (eofs < NCONN) {
		int n = epoll_wait(efd, evs, 256, 1000);

		if (dh_now_ms() > deadline)
			conns_report(&d, c, &srv, "no EOF 30 s after the half-close");
		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;

			conn_read(&c[i], i, buf);
			if (c[i].eof) {
				eofs++;
				epoll_ctl(efd, EPOLL_CTL_DEL, c[i].fd, NULL);
			}
		}
	}
	for (int i = 0; i < NCONN; i++)
		close(c[i].fd);
	close(efd);
	cr_assert(WAIT_FOR((dh_stats(&d, st), DH_STATS_SUM(st, 2, port_conns) == 0), 10000),
		"10 s after every connection closed the daemon still has %lu port connections",
		(unsigned long)DH_STATS_SUM(st, 2, port_conns));
	cr_assert(WAIT_FOR(srv.closed == NCONN, 10000), "echo server closed %lu of %d",
		(unsigned long)srv.closed, NCONN);
	cr_assert_eq(srv.errors, 0u);
	dh_stop(&d);
	dh_tcpsrv_stop(&srv);
	free(c);
	free(buf);
}

/*
 * Send <n> bytes of stream <seed> on <fd> while reading the echo, then
 * shut the write side and require exactly the echo and then EOF.
 */
static void echo_half_close(int fd, uint64_t seed, size_t n)
{
	static uint8_t buf[65536];
	size_t sent = 0, rcvd = 0;
	bool shut = false;
	int64_t deadline = dh_now_ms() + 30000;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
		ssize_t r;

		cr_assert_lt(dh_now_ms(), deadline, "sent %zu of %zu, got back %zu", sent, n, rcvd);
		if (sent == n && !shut) {
			cr_assert_eq(shutdown(fd, SHUT_WR), 0);
			shut = true;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		if (p.revents & POLLOUT) {
			size_t k = n - sent < sizeof(buf) ? n - sent : sizeof(buf);
			ssize_t w;

			dh_pattern(buf, k, seed, sent);
			w = send(fd, buf, k, MSG_NOSIGNAL | MSG_DONTWAIT);
			cr_assert(w > 0 || errno == EAGAIN, "send: %s", strerror(errno));
			if (w > 0)
				sent += (size_t)w;
		}
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0) {
			cr_assert_eq(errno, EAGAIN, "recv: %s", strerror(errno));
			continue;
		}
		if (r == 0)
			break;
		cr_assert(
			dh_pattern_check(buf, (size_t)r, seed, rcvd), "echo differs at %zu", rcvd);
		rcvd += (size_t)r;
	}
	cr_assert(shut, "EOF before we finished sending (%zu of %zu)", sent, n);
	cr_assert_eq(rcvd, n, "EOF after %zu of %zu echoed bytes", rcvd, n);
}

Test(daemon, published_port_half_close, .timeout = 120)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	struct dh_tcpsrv srv;
	uint16_t port;
	struct dh d;

	dh_tcpsrv_start(&srv, DH_ECHO, 0, 0);
	dh_start(&d, 2, NULL);
	port = publish(&d, srv.port);
	for (int i = 0; i < 4; i++) {
		int fd = dh_tcp_connect(port, false);

		echo_half_close(fd, 100 + (uint64_t)i, (size_t)(1u << 20) + 3 * (size_t)i);
		close(fd);
	}
	/* An empty stream: EOF right away both ways. */
	{
		int fd = dh_tcp_connect(port, false);

		echo_half_close(fd, 7, 0);
		close(fd);
	}
	cr_assert(WAIT_FOR((dh_stats(&d, st), DH_STATS_SUM(st, 2, port_conns) == 0), 10000),
		"the daemon still has %lu port connections",
		(unsigned long)DH_STATS_SUM(st, 2, port_conns));
	cr_assert_eq(srv.accepted, 5u);
	cr_assert_eq(srv.errors, 0u);
	dh_stop(&d);
	dh_tcpsrv_stop(&srv);
}

#define BULK (256ull << 20)
#define COPY_BOUND (1ull << 20)

static void bulk_report(struct dh *d, const char *what, uint64_t done, const struct dh_tcpsrv *srv)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	char tail[1500];

	dh_stats(d, st);
	cr_assert_fail("%s after %lu of %llu bytes (guest side: in %lu, out %lu); stalls %lu, "
		       "pool_in_use %lu of %lu, drops %lu; log:\n%s",
		what, (unsigned long)done, BULK, (unsigned long)srv->bytes_in,
		(unsigned long)srv->bytes_out, (unsigned long)DH_STATS_SUM(st, 2, stalls),
		(unsigned long)DH_STATS_SUM(st, 2, pool_in_use),
		(unsigned long)DH_STATS_SUM(st, 2, pool_total),
		(unsigned long)DH_STATS_SUM(st, 2, drops), dh_log_tail(d, tail, sizeof(tail)));
}

static void set_timeouts(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* Host -> guest: BULK bytes into the sink; returns the ms it took. */
static int64_t bulk_to_guest(struct dh *d, uint16_t port, struct dh_tcpsrv *sink)
{
	const size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	int64_t t0 = dh_now_ms();
	uint64_t sent = 0;
	int fd = dh_tcp_connect(port, false);
	ssize_t r;

	cr_assert_not_null(buf);
	set_timeouts(fd, 20);
	while (sent < BULK) {
		size_t off = 0;

		dh_pattern(buf, chunk, sink->seed, sent);
		while (off < chunk) {
			ssize_t w = send(fd, buf + off, chunk - off, MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				bulk_report(d,
					errno == EAGAIN ? "host->guest: send blocked 20 s"
							: "host->guest: send failed",
					sent + off, sink);
			off += (size_t)w;
		}
		sent += chunk;
	}
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	r = read(fd, buf, chunk);
	if (r != 0)
		bulk_report(d,
			r > 0 ? "host->guest: bytes came back from a sink"
			      : "host->guest: no EOF 20 s after ours",
			sent, sink);
	close(fd);
	free(buf);
	if (!WAIT_FOR(sink->sunk == 1, 20000))
		bulk_report(d, "host->guest: the sink did not see EOF", sent, sink);
	cr_assert_eq(sink->bad, 0u, "the guest received different bytes");
	cr_assert_eq(sink->bytes_in, BULK, "the guest received %lu bytes",
		(unsigned long)sink->bytes_in);
	return dh_now_ms() - t0;
}

/* Guest -> host: BULK bytes from the source; returns the ms it took. */
static int64_t bulk_from_guest(struct dh *d, uint16_t port, struct dh_tcpsrv *src)
{
	const size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	int64_t t0 = dh_now_ms();
	uint64_t got = 0;
	int fd = dh_tcp_connect(port, false);

	cr_assert_not_null(buf);
	set_timeouts(fd, 20);
	for (;;) {
		ssize_t r = read(fd, buf, chunk);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			bulk_report(d,
				errno == EAGAIN ? "guest->host: nothing to read for 20 s"
						: "guest->host: read failed",
				got, src);
		if (r == 0)
			break;
		if (!dh_pattern_check(buf, (size_t)r, src->seed, got))
			cr_assert_fail("guest->host: bytes differ in [%lu, %lu)",
				(unsigned long)got, (unsigned long)(got + (uint64_t)r));
		got += (uint64_t)r;
	}
	close(fd);
	free(buf);
	cr_assert_eq(got, BULK, "guest->host: EOF after %lu bytes", (unsigned long)got);
	return dh_now_ms() - t0;
}

Test(daemon, published_port_bulk_without_copies, .timeout = 180)
{
	struct engine_shard_stats st[DH_SHARDS_MAX];
	struct dh_tcpsrv sink, src;
	struct engine_port p = {.host_ip = "127.0.0.1", .guest_port = 0};
	struct engine_info in;
	uint64_t copies0, bytes0, copies, bytes, bulk0;
	int64_t up_ms, down_ms;
	char err[600];
	struct dh d;

	dh_tcpsrv_start(&sink, DH_SINK, 11, 0);
	dh_tcpsrv_start(&src, DH_SOURCE, 12, BULK);
	dh_start(&d, 2, NULL);
	p.guest_port = sink.port;
	dh_create(&d, "bulk", &p, 1, &in);
	p.guest_port = src.port;
	cr_assert(dh_create_try(&d, "bulk-out", &p, 1, &in, err, sizeof(err)), "%s", err);
	dh_stats(&d, st);
	copies0 = DH_STATS_SUM(st, 2, copies);
	bytes0 = DH_STATS_SUM(st, 2, copy_bytes);
	bulk0 = DH_STATS_SUM(st, 2, bulk_streams);

	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "bulk", &in, err, sizeof(err)), "%s", err);
	up_ms = bulk_to_guest(&d, in.ports[0].port.host_port, &sink);
	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "bulk-out", &in, err, sizeof(err)), "%s", err);
	down_ms = bulk_from_guest(&d, in.ports[0].port.host_port, &src);

	dh_stats(&d, st);
	copies = DH_STATS_SUM(st, 2, copies) - copies0;
	bytes = DH_STATS_SUM(st, 2, copy_bytes) - bytes0;
	cr_log_info(
		"256 MiB host->guest in %ld ms (%.0f MiB/s), guest->host in %ld ms (%.0f MiB/s); "
		"user-space copies meanwhile: %lu, %lu bytes (bound %llu)",
		(long)up_ms, 256000.0 / (double)(up_ms ? up_ms : 1), (long)down_ms,
		256000.0 / (double)(down_ms ? down_ms : 1), (unsigned long)copies,
		(unsigned long)bytes, COPY_BOUND);
	cr_assert_leq(bytes, COPY_BOUND,
		"%lu bytes copied in user space for 2 x 256 MiB (%lu copies)", (unsigned long)bytes,
		(unsigned long)copies);
	/* sandwire-agent announces generation 9: both streams moved as raw bulk records. */
	cr_assert_eq(DH_STATS_SUM(st, 2, bulk_streams) - bulk0, 2u, "bulk streams: %lu",
		(unsigned long)(DH_STATS_SUM(st, 2, bulk_streams) - bulk0));
	dh_stop(&d);
	dh_tcpsrv_stop(&sink);
	dh_tcpsrv_stop(&src);
}

/* ---- agent.sock and management -------------------------------------------------------- */

Test(daemon, agent_sock_speaks_the_relay_protocol, .timeout = 120)
{
	/* SHA-256("a") = ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb */
	static const char h24[] = "ca978112ca1bbdcafac231b3";
	static const char h32[] = "ca978112ca1bbdcafac231b39a23dc4d";
	char path[300], link[300], err[600];
	struct agent_client ac;
	struct stat sb;
	uint32_t lo, hi;
	struct dh_exec x;
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "a", NULL, 0, NULL);
	snprintf(path, sizeof(path), "%s/run/sandboxes/%s/agent.sock", d.msb_home, h24);
	snprintf(link, sizeof(link), "%s/run/agent/%s.sock", d.msb_home, h32);
	cr_assert_eq(stat(path, &sb), 0, "%s: %s", path, strerror(errno));
	cr_assert(S_ISSOCK(sb.st_mode), "%s is not a socket", path);
	cr_assert_eq(lstat(link, &sb), 0, "compatibility link %s: %s", link, strerror(errno));

	dh_attach_path(path, &ac, &lo, &hi);
	dh_exec_run(&ac, lo, SH("echo via agent.sock; exit 5"), &x);
	cr_assert(x.exited, "%s", x.text);
	cr_assert_eq(x.code, 5);
	cr_assert_str_eq(x.out, "via agent.sock\n");
	dh_exec_free(&x);
	agent_client_close(&ac, 0);

	cr_assert(dh_call(&d, ENGINE_V_REMOVE, "a", NULL, err, sizeof(err)), "remove: %s", err);
	cr_assert(WAIT_FOR(stat(path, &sb) < 0, 5000), "%s still exists after remove", path);
	dh_stop(&d);
}

static bool listed(struct dh *d, const char *name)
{
	struct engine_info list[8];
	size_t n = dh_list(d, list, 8);

	for (size_t i = 0; i < n && i < 8; i++)
		if (!strcmp(list[i].name, name))
			return true;
	return false;
}

Test(daemon, management_errors_and_lifecycle, .timeout = 120)
{
	struct engine_info in;
	struct agent_client ac;
	uint32_t lo, hi;
	uint8_t *ready = NULL;
	size_t rl;
	struct dh_exec x;
	struct swc c;
	char err[600];
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "dup", NULL, 0, &in);
	cr_assert_str_eq(in.state, "running");
	cr_assert_str_eq(in.name, "dup");
	dh_create(&d, "second", NULL, 0, NULL);

	cr_assert(!dh_create_try(&d, "dup", NULL, 0, NULL, err, sizeof(err)), "duplicate created");
	cr_assert(strstr(err, "exists already"), "duplicate create: \"%s\"", err);
	cr_assert(!dh_create_try(&d, "bad/name", NULL, 0, NULL, err, sizeof(err)),
		"bad name created");
	cr_assert(strstr(err, "/"), "bad name: \"%s\" does not name the byte", err);

	dh_connect(&d, &c);
	cr_assert_lt(swc_attach(&c, "nope", &lo, &hi, &ready, &rl, err, sizeof(err)), 0);
	cr_assert(strstr(err, "nope") && strstr(err, "dup") && strstr(err, "second"),
		"attach to an unknown name: \"%s\" (should name it and list dup, second)", err);
	swc_close(&c);
	cr_assert(!dh_call(&d, ENGINE_V_INSPECT, "nope", NULL, err, sizeof(err)));
	cr_assert(strstr(err, "nope"), "inspect unknown: \"%s\"", err);

	cr_assert(dh_call(&d, ENGINE_V_STOP, "dup", &in, err, sizeof(err)), "stop: %s", err);
	cr_assert_str_eq(in.state, "stopped");
	cr_assert_eq(in.pid, 0);
	dh_connect(&d, &c);
	cr_assert_lt(swc_attach(&c, "dup", &lo, &hi, &ready, &rl, err, sizeof(err)), 0);
	cr_assert(strstr(err, "stopped"), "attach to a stopped sandbox: \"%s\"", err);
	swc_close(&c);

	cr_assert(dh_call(&d, ENGINE_V_START, "dup", &in, err, sizeof(err)), "start: %s", err);
	cr_assert_str_eq(in.state, "running");
	cr_assert_gt(in.pid, 0);
	dh_attach(&d, "dup", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, SH("echo again"), &x);
	cr_assert(x.exited && x.code == 0);
	cr_assert_str_eq(x.out, "again\n");
	dh_exec_free(&x);
	agent_client_close(&ac, 0);

	cr_assert(dh_call(&d, ENGINE_V_REMOVE, "dup", NULL, err, sizeof(err)), "remove: %s", err);
	cr_assert(!listed(&d, "dup"), "a removed sandbox is still listed");
	cr_assert(listed(&d, "second"));
	cr_assert(!dh_call(&d, ENGINE_V_INSPECT, "dup", NULL, err, sizeof(err)));
	dh_stop(&d);
}

/*
 * Generation 9 through the relay: a client attached to a sandwire-agent
 * sandbox (the daemon bootstraps with v = 9, so the agent announces 9)
 * offers bulk on tcp.connect and sends raw records (flag 0x08) under the
 * agent's credit; the relay forwards them unchanged and the destination gets
 * every byte.
 */
#define RELAY_BULK (4u << 20)
#define RELAY_REC (256u << 10)

Test(daemon, bulk_records_cross_the_relay, .timeout = 120)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	struct proto_bulk_rec rec = {.kind = PROTO_BULK_KIND_TCP, .flow = PROTO_BULK_H2G};
	uint64_t limit = 0, sent = 0;
	bool connected = false, accepted = false;
	struct agent_client ac;
	struct dh_tcpsrv sink;
	uint8_t *buf = malloc(PROTO_BULK_PREFIX_SIZE + RELAY_REC);
	uint32_t lo, hi;
	struct dh d;

	cr_assert_not_null(buf);
	dh_tcpsrv_start(&sink, DH_SINK, 21, 0);
	dh_start(&d, 2, NULL);
	dh_create(&d, "bulk", NULL, 0, NULL);
	dh_attach(&d, "bulk", &ac, &lo, &hi);
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = sink.port;
	m.u.tcp_connect.bulk.set = true;
	m.u.tcp_connect.bulk.v = (struct proto_bulk_offer){1, RELAY_REC, 1u << 20};
	cr_assert_gt(agent_client_send(&ac, lo, &m), 0);
	while (!connected || !accepted) {
		cr_assert_eq(dh_recv(&ac, 10000), 1, "no answer to the bulk offer");
		cr_assert_eq(ac.frame.id, lo);
		if (ac.msg.type == PROTO_T_TCP_CONNECTED)
			connected = true;
		else if (ac.msg.type == PROTO_T_BULK_ACCEPTED) {
			accepted = true;
			limit = ac.msg.u.bulk_accepted.host_to_guest_credit_limit;
		} else
			cr_assert_fail("unexpected %s", proto_type_name(ac.msg.type));
	}
	rec.id = lo;
	while (sent < RELAY_BULK) {
		uint32_t n = RELAY_REC;

		while (sent + n > limit) { /* wait for credit: never pass it */
			cr_assert_eq(dh_recv(&ac, 10000), 1, "no credit at %lu", (unsigned long)sent);
			if (ac.msg.type == PROTO_T_BULK_CREDIT &&
				ac.msg.u.bulk_credit.credit_limit > limit)
				limit = ac.msg.u.bulk_credit.credit_limit;
		}
		rec.offset = sent;
		rec.len = n;
		cr_assert_eq(proto_bulk_prefix_write(buf, PROTO_BULK_PREFIX_SIZE, &rec),
			(int)PROTO_BULK_PREFIX_SIZE);
		dh_pattern(buf + PROTO_BULK_PREFIX_SIZE, n, sink.seed, sent);
		cr_assert_eq(agent_client_send_raw(&ac, buf, PROTO_BULK_PREFIX_SIZE + n), 0);
		sent += n;
	}
	m = (struct proto_msg){.type = PROTO_T_BULK_FINISH};
	m.u.bulk_finish = (struct proto_bulk_finish){PROTO_BULK_KIND_TCP, PROTO_BULK_H2G, sent};
	cr_assert_gt(agent_client_send(&ac, lo, &m), 0);
	cr_assert(WAIT_FOR(sink.sunk == 1, 20000), "the destination got %lu of %u bytes",
		(unsigned long)sink.bytes_in, RELAY_BULK);
	cr_assert_eq(sink.bytes_in, RELAY_BULK);
	cr_assert_eq(sink.bad, 0u, "the destination received different bytes");
	free(buf);
	agent_client_close(&ac, 0);
	dh_stop(&d);
	dh_tcpsrv_stop(&sink);
}

/*
 * Generation 9 relays reject reused ids (protocol-gen9.md G7.1): a second
 * session start on an id the client already used, even after its terminal
 * frame, ends that client's connection with a terminal core.error on the id;
 * fresh ids before it work, and the sandbox serves the next client.
 */
Test(daemon, reused_id_ends_a_generation_9_client, .timeout = 120)
{
	struct agent_client ac, again;
	struct dh_exec x;
	uint32_t lo, hi;
	int rc;
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "reuse", NULL, 0, NULL);
	dh_attach(&d, "reuse", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, SH("exit 3"), &x);
	cr_assert_eq(x.code, 3);
	dh_exec_free(&x);
	dh_exec_run(&ac, lo + 2, SH("exit 4"), &x); /* a gap is not a reuse */
	cr_assert_eq(x.code, 4);
	dh_exec_free(&x);
	dh_exec_run(&ac, lo + 1, SH("exit 5"), &x); /* nor is an id skipped earlier */
	cr_assert_eq(x.code, 5);
	dh_exec_free(&x);

	dh_exec_send(&ac, lo, SH("echo must-not-run"));
	cr_assert_eq(dh_recv(&ac, 10000), 1, "no answer to the reused id");
	cr_assert_eq(ac.frame.id, lo);
	cr_assert_eq(ac.msg.type, PROTO_T_ERROR, "got %s", proto_type_name(ac.msg.type));
	cr_assert(ac.frame.flags & PROTO_FLAG_TERMINAL);
	while ((rc = dh_recv(&ac, 10000)) == 1)
		cr_assert_neq(ac.msg.type, PROTO_T_EXEC_STARTED, "the reused id reached the agent");
	cr_assert_eq(rc, -EPIPE, "the client was not disconnected");
	cr_assert(dh_log_contains(&d, "already used on this connection"));
	agent_client_close(&ac, 0);

	dh_attach(&d, "reuse", &again, &lo, &hi);
	dh_exec_run(&again, lo, SH("exit 6"), &x);
	cr_assert_eq(x.code, 6);
	dh_exec_free(&x);
	agent_client_close(&again, 0);
	dh_stop(&d);
}

/*
 * Raw bulk on published ports: one host peer that stops reading stalls only
 * its own stream (the agent's records stop at the engine's grant, so the
 * console never pauses for it, nor disconnects it after the 10 s a client
 * not reading gets); another stream of the same sandbox moves BULK bytes
 * meanwhile, and the stalled one then drains intact.
 */
Test(daemon, stalled_bulk_port_stream_leaves_others_moving, .timeout = 180)
{
	struct engine_port p = {.host_ip = "127.0.0.1"};
	struct engine_shard_stats st[DH_SHARDS_MAX];
	struct dh_tcpsrv src;
	struct engine_info in;
	uint8_t *buf = malloc(1u << 20);
	uint64_t got = 0, sent;
	int64_t t0;
	int stalled;
	struct dh d;

	cr_assert_not_null(buf);
	dh_tcpsrv_start(&src, DH_SOURCE, 31, BULK);
	p.guest_port = src.port;
	dh_start(&d, 1, NULL);
	dh_create(&d, "stall", &p, 1, &in);
	stalled = dh_tcp_connect(in.ports[0].port.host_port, false);
	set_timeouts(stalled, 20);
	/* Let the stalled stream fill the host socket buffers and its credit window. */
	cr_assert(WAIT_FOR(src.bytes_out >= (8u << 20), 10000), "the source sent %lu bytes",
		(unsigned long)src.bytes_out);
	do {
		sent = src.bytes_out;
		dh_sleep_ms(300);
	} while (src.bytes_out != sent);
	t0 = dh_now_ms();
	bulk_from_guest(&d, in.ports[0].port.host_port, &src);
	dh_stats(&d, st);
	cr_assert_eq(DH_STATS_SUM(st, 1, bulk_streams), 2u);
	while (dh_now_ms() - t0 < 11000) /* past the deadline of a client not reading */
		dh_sleep_ms(100);
	for (;;) {
		ssize_t r = read(stalled, buf, 1u << 20);

		if (r < 0 && errno == EINTR)
			continue;
		cr_assert_geq(r, 0, "the stalled stream failed after %lu bytes", (unsigned long)got);
		if (r == 0)
			break;
		cr_assert(dh_pattern_check(buf, (size_t)r, src.seed, got), "bytes differ at %lu",
			(unsigned long)got);
		got += (uint64_t)r;
	}
	cr_assert_eq(got, BULK, "the stalled stream got %lu bytes", (unsigned long)got);
	close(stalled);
	free(buf);
	dh_stop(&d);
	dh_tcpsrv_stop(&src);
}

/*
 * A hostile agent: after the boot it sends a frame whose length field is
 * far above the 4 MiB limit.  The engine ends that sandbox's console with a
 * logged reason (F6) and its client gets an error and EOF; the daemon and a
 * second sandbox are untouched.
 */
Test(daemon, oversize_frame_from_an_agent_ends_only_its_sandbox, .timeout = 120)
{
	char dir[] = "/tmp/sw-hostile-XXXXXX", script[128], tail[2000];
	const char *extra[] = {"--agent", script, NULL};
	struct agent_client ac;
	struct dh_exec x;
	uint32_t lo, hi;
	struct dh d;
	FILE *f;
	int rc;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(script, sizeof(script), "%s/agent.sh", dir);
	f = fopen(script, "w");
	cr_assert_not_null(f);
	/* The real agent; in the first sandbox a helper waits for the go file, then writes an
	 * oversize frame header (len 0x7fffffff) onto the console behind the agent's back. */
	fprintf(f, "#!/bin/sh\n"
		   "if mkdir %s/claimed 2>/dev/null; then\n"
		   "  ( while [ ! -e %s/go ]; do sleep 0.05; done; printf '\\177\\377\\377\\377' >&3 ) &\n"
		   "fi\n"
		   "exec %s \"$@\"\n",
		dir, dir, SW_AGENT_BIN);
	fclose(f);
	cr_assert_eq(chmod(script, 0755), 0);
	dh_start(&d, 2, extra);
	dh_create(&d, "hostile", NULL, 0, NULL);
	dh_create(&d, "calm", NULL, 0, NULL);
	dh_attach(&d, "hostile", &ac, &lo, &hi);
	f = fopen(strcat(strcpy(tail, dir), "/go"), "w");
	cr_assert_not_null(f);
	fclose(f);
	while ((rc = dh_recv(&ac, 10000)) == 1)
		;
	cr_assert_eq(rc, -EPIPE, "the hostile sandbox's client was not disconnected");
	agent_client_close(&ac, 0);
	cr_assert(WAIT_FOR(dh_log_contains(&d, "framing error from the agent"), 10000), "log:\n%s",
		dh_log_tail(&d, tail, sizeof(tail)));
	dh_attach(&d, "calm", &ac, &lo, &hi);
	dh_exec_run(&ac, lo, SH("exit 9"), &x);
	cr_assert_eq(x.code, 9);
	dh_exec_free(&x);
	agent_client_close(&ac, 0);
	dh_stop(&d);
	unlink(script);
	unlink(strcat(strcpy(tail, dir), "/go"));
	rmdir(strcat(strcpy(tail, dir), "/claimed"));
	rmdir(dir);
}

/*
 * A published port's connection limit: past it a connection is reset at
 * once and counted as refused; the connections within it keep working, and
 * a new one is taken again once one of them closed.
 */
Test(daemon, published_port_limit_refuses_with_a_reset_and_counts, .timeout = 120)
{
	struct engine_port p = {.host_ip = "127.0.0.1", .limit = 2};
	struct dh_tcpsrv echo;
	struct engine_info in;
	char buf[8], err[300];
	int fd[3], extra;
	struct dh d;
	ssize_t r;

	dh_tcpsrv_start(&echo, DH_ECHO, 0, 0);
	p.guest_port = echo.port;
	dh_start(&d, 1, NULL);
	dh_create(&d, "limited", &p, 1, &in);
	for (int i = 0; i < 2; i++) {
		fd[i] = dh_tcp_connect(in.ports[0].port.host_port, false);
		set_timeouts(fd[i], 10);
		cr_assert_eq(write(fd[i], "ping", 4), 4);
		cr_assert_eq(read(fd[i], buf, sizeof(buf)), 4, "connection %d within the limit", i);
	}
	fd[2] = dh_tcp_connect(in.ports[0].port.host_port, false);
	set_timeouts(fd[2], 10);
	r = read(fd[2], buf, sizeof(buf));
	cr_assert(r < 0 && errno == ECONNRESET, "the third connection: read %zd (%s)", r,
		r < 0 ? strerror(errno) : "no error");
	close(fd[2]);
	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "limited", &in, err, sizeof(err)), "%s", err);
	cr_assert_eq(in.ports[0].refused, 1u);
	cr_assert_eq(in.ports[0].active, 2u);
	cr_assert(dh_log_contains(&d, "connection limit 2 reached"));

	close(fd[0]);
	cr_assert(WAIT_FOR((dh_call(&d, ENGINE_V_INSPECT, "limited", &in, err, sizeof(err)),
				   in.ports[0].active == 1),
		10000));
	extra = dh_tcp_connect(in.ports[0].port.host_port, false);
	set_timeouts(extra, 10);
	cr_assert_eq(write(extra, "pong", 4), 4);
	cr_assert_eq(read(extra, buf, sizeof(buf)), 4, "a connection after one closed");
	close(extra);
	close(fd[1]);
	dh_stop(&d);
	dh_tcpsrv_stop(&echo);
}

/*
 * A client that stops reading while its command floods it: the console
 * pauses for it (bounded queue), and after 10 s the client is disconnected
 * with a logged reason; another client's session of the same sandbox then
 * completes intact.
 */
Test(daemon, client_not_reading_for_10_s_is_disconnected, .timeout = 120)
{
	struct agent_client deaf, other;
	struct dh_exec x;
	uint32_t lo, hi, olo, ohi;
	char tail[2000];
	int64_t t0;
	int rc;
	struct dh d;

	dh_start(&d, 2, NULL);
	dh_create(&d, "flood", NULL, 0, NULL);
	dh_attach(&d, "flood", &deaf, &lo, &hi);
	dh_attach(&d, "flood", &other, &olo, &ohi);
	t0 = dh_now_ms();
	dh_exec_send(&deaf, lo, SH("exec cat /dev/zero"));
	cr_assert(WAIT_FOR(dh_log_contains(&d, "has not read"), 20000), "no disconnect; log:\n%s",
		dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert_geq(dh_now_ms() - t0, 9000, "disconnected before its 10 s");
	/* The departed client's connection ends (after what was already in flight). */
	while ((rc = dh_recv(&deaf, 10000)) == 1)
		;
	cr_assert_eq(rc, -EPIPE);
	agent_client_close(&deaf, 0);
	dh_exec_run(&other, olo, SH("head -c 3000000 /dev/zero | wc -c"), &x);
	cr_assert(x.exited && x.code == 0);
	cr_assert_str_eq(x.out, "3000000\n");
	dh_exec_free(&x);
	agent_client_close(&other, 0);
	dh_stop(&d);
}

/* ---- a hostile generation-9 agent on the bulk path ------------------------------------------ */

/*
 * Start a daemon whose agent is tests/support/hostile_bulk_agent.py in
 * <mode>, publish a port and connect to it with a small receive buffer; not
 * reading, wait until the agent got the engine's core.bulk.cancel, then read
 * until the reset.  Every byte before it must be the agent's "y"; returns
 * how many came.  The agent's log of the host's frames is <log>.
 */
static uint64_t hostile_bulk_stream(struct dh *d, const char *mode, char *dir, char *log)
{
	const char *extra[] = {"--agent", NULL, NULL};
	struct engine_port p = {.host_ip = "127.0.0.1", .guest_port = 9};
	char script[256], buf[65536];
	struct engine_info in;
	uint64_t got = 0;
	ssize_t r;
	FILE *f;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(script, sizeof(script), "%s/agent.sh", dir);
	snprintf(log, 256, "%s/frames.log", dir);
	f = fopen(script, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\nexec /usr/bin/python3 %s/tests/support/hostile_bulk_agent.py %s %s \"$@\"\n",
		SW_SOURCE_DIR, mode, log);
	fclose(f);
	cr_assert_eq(chmod(script, 0755), 0);
	extra[1] = script;
	dh_start(d, 1, extra);
	dh_create(d, "hostile", &p, 1, &in);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){65536}, sizeof(int)), 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&(struct sockaddr_in){.sin_family = AF_INET,
				     .sin_port = htons(in.ports[0].port.host_port),
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)},
			     sizeof(struct sockaddr_in)),
		0);
	set_timeouts(fd, 20);
	cr_assert(WAIT_FOR(dh_file_contains(log, "core.bulk.cancel"), 20000),
		"the agent got no core.bulk.cancel");
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r; i++)
			cr_assert_eq(buf[i], 'y', "byte %lu is not the agent's",
				(unsigned long)(got + (uint64_t)i));
		got += (uint64_t)r;
	}
	cr_assert(r < 0 && errno == ECONNRESET, "the stream was not reset: read %zd (%s)", r,
		r < 0 ? strerror(errno) : "EOF");
	close(fd);
	return got;
}

static void hostile_bulk_cleanup(const char *dir, const char *log)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/agent.sh", dir);
	unlink(path);
	unlink(log);
	rmdir(dir);
}

/*
 * A guest record that does not start where the stream stands (an offset
 * gap) fails only its stream: the host peer is reset, the agent gets
 * core.bulk.cancel on the stream's id, and the sandbox goes on serving.
 */
Test(daemon, guest_record_with_an_offset_gap_fails_only_its_stream, .timeout = 120)
{
	char dir[] = "/tmp/sw-hostile-gap-XXXXXX", log[256], tail[2000];
	struct engine_info in;
	char err[300];
	struct dh d;

	cr_assert_eq(hostile_bulk_stream(&d, "gap", dir, log), 0u);
	cr_assert(WAIT_FOR(dh_log_contains(&d, "raw record from the guest"), 10000), "log:\n%s",
		dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert(dh_log_contains(&d, proto_strerror(PROTO_E_BULK_OFFSET)));
	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "hostile", &in, err, sizeof(err)), "%s", err);
	cr_assert_str_eq(in.state, "running");
	dh_stop(&d);
	hostile_bulk_cleanup(dir, log);
}

/*
 * A guest that sends without waiting for credit: once the host peer stops
 * reading, a record ends past the engine's guest -> host grant; the stream is
 * cancelled and reset, the bytes before that were the guest's own, and the
 * sandbox goes on serving.
 */
Test(daemon, guest_record_past_the_engine_grant_fails_only_its_stream, .timeout = 120)
{
	char dir[] = "/tmp/sw-hostile-over-XXXXXX", log[256], tail[2000];
	struct engine_info in;
	char err[300];
	struct dh d;

	hostile_bulk_stream(&d, "overrun", dir, log);
	cr_assert(WAIT_FOR(dh_log_contains(&d, proto_strerror(PROTO_E_BULK_CREDIT)), 10000),
		"log:\n%s", dh_log_tail(&d, tail, sizeof(tail)));
	cr_assert(dh_call(&d, ENGINE_V_INSPECT, "hostile", &in, err, sizeof(err)), "%s", err);
	cr_assert_str_eq(in.state, "running");
	dh_stop(&d);
	hostile_bulk_cleanup(dir, log);
}
