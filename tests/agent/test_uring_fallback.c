/*
 * tests/agent/test_uring_fallback.c - the poll(2) interpreter of io_uring
 * SQEs (agent/uring_fallback.h): its ops one by one, then sandwire-agent
 * running on it, forced (--no-io-uring) and because io_uring_setup failed.
 *
 * The other agent suites run on the fallback too, as <module>.fallback
 * (tests/CMakeLists.txt); this file covers what only the fallback does.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/uring_fallback.h"
#include "tests/support/agent_harness.h"

static struct uring_fallback fb;

static void fb_setup(void)
{
	uring_fallback_init(&fb);
	signal(SIGPIPE, SIG_IGN);
	unsetenv("SW_AGENT_EXTRA_ARGS"); /* the agent tests below choose the engine themselves */
}

static void fb_teardown(void)
{
	uring_fallback_destroy(&fb);
}

TestSuite(uring_fallback, .init = fb_setup, .fini = fb_teardown, .timeout = 30);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A fresh SQE carrying <user_data> (io_uring_prep_* leaves user_data alone). */
static struct io_uring_sqe *sqe_for(uint64_t user_data)
{
	struct io_uring_sqe *sqe = uring_fallback_get_sqe(&fb);

	cr_assert_not_null(sqe);
	sqe->user_data = user_data;
	return sqe;
}

/* Submit, wait, and collect every completion at hand (at most <cap>). */
static size_t wait_cqes(struct io_uring_cqe *out, size_t cap)
{
	size_t n = 0;
	int rc = uring_fallback_submit_and_wait(&fb);

	cr_assert_eq(rc, 0, "submit_and_wait: %s", strerror(-rc));
	while (n < cap && uring_fallback_cqe_pop(&fb, &out[n]))
		n++;
	cr_assert_gt(n, 0);
	return n;
}

/* Wait until <n> completions arrived, in order, into <out>. */
static void wait_n(struct io_uring_cqe *out, size_t n)
{
	size_t got = 0;

	while (got < n)
		got += wait_cqes(out + got, n - got);
	cr_assert_not(uring_fallback_cqe_pop(&fb, &out[0]), "more completions than expected");
}

static void prep_timeout_ms(struct __kernel_timespec *ts, long ms, uint64_t user_data)
{
	struct io_uring_sqe *sqe = sqe_for(user_data);

	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
	io_uring_prep_timeout(sqe, ts, 0, 0);
	sqe->user_data = user_data;
}

static void pipe_small(int p[2])
{
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
}

Test(uring_fallback, read_completes_and_makes_the_fd_non_blocking)
{
	struct io_uring_cqe c;
	char buf[64] = {0};
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(write(p[1], "hello", 5), 5);
	io_uring_prep_read(sqe_for(1), p[0], buf, sizeof(buf), (__u64)-1);
	wait_n(&c, 1);
	cr_assert_eq(c.res, 5);
	cr_assert_str_eq(buf, "hello");
	cr_assert(fcntl(p[0], F_GETFL) & O_NONBLOCK);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, readv_fills_its_buffers_in_order)
{
	struct io_uring_cqe c;
	char a[3] = {0}, b[8] = {0};
	struct iovec iov[2] = {{a, sizeof(a)}, {b, 4}};
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(write(p[1], "abcdefghij", 10), 10);
	io_uring_prep_readv(sqe_for(1), p[0], iov, 2, (__u64)-1);
	wait_n(&c, 1);
	cr_assert_eq(c.res, 7, "exactly the two buffers: %d", c.res);
	cr_assert_arr_eq(a, "abc", 3);
	cr_assert_str_eq(b, "defg");
	cr_assert(fcntl(p[0], F_GETFL) & O_NONBLOCK);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, a_large_write_to_a_small_pipe_is_short_not_blocking)
{
	static char big[65536];
	struct io_uring_cqe c;
	int p[2];

	pipe_small(p);
	io_uring_prep_write(sqe_for(1), p[1], big, sizeof(big), (__u64)-1);
	wait_n(&c, 1);
	cr_assert(c.res > 0 && c.res <= 4096, "res %d", c.res);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, reads_of_one_fd_complete_in_submission_order)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe c[2];
	char a[4] = {0}, b[4] = {0};
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	io_uring_prep_read(sqe_for(1), p[0], a, 3, (__u64)-1);
	io_uring_prep_read(sqe_for(2), p[0], b, 3, (__u64)-1);
	prep_timeout_ms(&ts, 30, 9);
	wait_n(c, 1);
	cr_assert_eq(c[0].user_data, 9, "nothing to read yet: only the timer");
	cr_assert_eq(c[0].res, -ETIME);

	cr_assert_eq(write(p[1], "abcdef", 6), 6);
	wait_n(c, 2);
	cr_assert_eq(c[0].user_data, 1);
	cr_assert_eq(c[1].user_data, 2);
	cr_assert_eq(c[0].res, 3);
	cr_assert_eq(c[1].res, 3);
	cr_assert_str_eq(a, "abc");
	cr_assert_str_eq(b, "def");
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, writes_of_one_fd_complete_in_submission_order)
{
	static char fill[4096], got[4096];
	char A[100], B[10];
	struct __kernel_timespec ts;
	struct io_uring_cqe c[2];
	size_t have = 0;
	int p[2];

	memset(A, 'A', sizeof(A));
	memset(B, 'B', sizeof(B));
	pipe_small(p);
	cr_assert_eq(write(p[1], fill, sizeof(fill)), (ssize_t)sizeof(fill), "fill the pipe");
	io_uring_prep_write(sqe_for(1), p[1], A, sizeof(A), (__u64)-1);
	io_uring_prep_write(sqe_for(2), p[1], B, sizeof(B), (__u64)-1);
	prep_timeout_ms(&ts, 30, 9);
	wait_n(c, 1);
	cr_assert_eq(c[0].user_data, 9, "the pipe is full: only the timer");

	cr_assert_eq(read(p[0], got, sizeof(fill)), (ssize_t)sizeof(fill));
	wait_n(c, 2);
	cr_assert_eq(c[0].user_data, 1);
	cr_assert_eq(c[0].res, (int)sizeof(A));
	cr_assert_eq(c[1].user_data, 2);
	cr_assert_eq(c[1].res, (int)sizeof(B));
	while (have < sizeof(A) + sizeof(B)) {
		ssize_t n = read(p[0], got + have, sizeof(got) - have);

		cr_assert_gt(n, 0);
		have += (size_t)n;
	}
	cr_assert_eq(memcmp(got, A, sizeof(A)), 0);
	cr_assert_eq(memcmp(got + sizeof(A), B, sizeof(B)), 0);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, writev_send_and_recv)
{
	struct iovec iov[2] = {{"ab", 2}, {"cde", 3}};
	struct io_uring_cqe c[2];
	char buf[16] = {0};
	int p[2], sv[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	io_uring_prep_writev(sqe_for(1), p[1], iov, 2, (__u64)-1);
	wait_n(c, 1);
	cr_assert_eq(c[0].res, 5);
	cr_assert_eq(read(p[0], buf, sizeof(buf)), 5);
	cr_assert_str_eq(buf, "abcde");

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	io_uring_prep_recv(sqe_for(2), sv[1], buf, sizeof(buf), 0);
	io_uring_prep_send(sqe_for(3), sv[0], "ping", 4, MSG_NOSIGNAL);
	wait_n(c, 2);
	cr_assert_eq(c[0].user_data, 3, "the send is ready first; the recv then sees its data");
	cr_assert_eq(c[0].res, 4);
	cr_assert_eq(c[1].user_data, 2);
	cr_assert_eq(c[1].res, 4);
	cr_assert_str_eq(buf, "ping");
	cr_assert_not(fcntl(sv[0], F_GETFL) & O_NONBLOCK, "send and recv change no flag");
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/*
 * A recv and a send pending on each of 24 sockets: one pollfd per socket,
 * so 48 ops fit a poll(2) limited to fewer entries (RLIMIT_NOFILE), and a
 * socket that is only writable does not wake its recv.
 */
Test(uring_fallback, ops_of_one_fd_share_a_pollfd)
{
	enum { PAIRS = 12 };
	struct io_uring_cqe c[4 * PAIRS];
	char in[2 * PAIRS];
	int sv[2 * PAIRS], max_fd = 0;
	struct rlimit rl;

	for (int i = 0; i < PAIRS; i++)
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv + 2 * i), 0);
	for (int i = 0; i < 2 * PAIRS; i++) {
		io_uring_prep_recv(sqe_for(100 + (uint64_t)i), sv[i], &in[i], 1, 0);
		io_uring_prep_send(sqe_for(200 + (uint64_t)i), sv[i], "x", 1, MSG_NOSIGNAL);
		max_fd = sv[i] > max_fd ? sv[i] : max_fd;
	}
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = (rlim_t)max_fd + 4;
	cr_assert_lt(rl.rlim_cur, 4 * PAIRS, "fewer poll entries allowed than ops pending");
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

	wait_n(c, 2 * PAIRS);
	for (int i = 0; i < 2 * PAIRS; i++) {
		cr_assert(c[i].user_data >= 200, "the sends complete first: no data was there");
		cr_assert_eq(c[i].res, 1);
	}
	wait_n(c, 2 * PAIRS);
	for (int i = 0; i < 2 * PAIRS; i++) {
		cr_assert(c[i].user_data >= 100 && c[i].user_data < 200);
		cr_assert_eq(c[i].res, 1);
		cr_assert_eq(in[c[i].user_data - 100], 'x');
	}
	for (int i = 0; i < 2 * PAIRS; i++)
		close(sv[i]);
}

Test(uring_fallback, eof_and_epipe_are_results)
{
	struct io_uring_cqe c;
	char buf[8];
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[1]);
	io_uring_prep_read(sqe_for(1), p[0], buf, sizeof(buf), (__u64)-1);
	wait_n(&c, 1);
	cr_assert_eq(c.res, 0);
	close(p[0]);

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	io_uring_prep_write(sqe_for(2), p[1], "x", 1, (__u64)-1);
	wait_n(&c, 1);
	cr_assert_eq(c.res, -EPIPE);
	close(p[1]);
}

Test(uring_fallback, poll_add_reports_the_events)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe c;
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	io_uring_prep_poll_add(sqe_for(1), p[0], POLLIN);
	prep_timeout_ms(&ts, 20, 9);
	wait_n(&c, 1);
	cr_assert_eq(c.user_data, 9);
	cr_assert_eq(write(p[1], "x", 1), 1);
	wait_n(&c, 1);
	cr_assert_eq(c.user_data, 1);
	cr_assert_eq(c.res, POLLIN);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, a_timeout_expires_with_etime_on_time)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe c;
	uint64_t t0 = now_ms(), dt;

	prep_timeout_ms(&ts, 50, 7);
	wait_n(&c, 1);
	dt = now_ms() - t0;
	cr_assert_eq(c.user_data, 7);
	cr_assert_eq(c.res, -ETIME);
	cr_assert(dt >= 50 && dt < 1000, "took %llu ms", (unsigned long long)dt);
}

Test(uring_fallback, cancel_completes_the_target_with_ecanceled)
{
	struct io_uring_cqe c[3];
	char buf[8];
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	io_uring_prep_read(sqe_for(1), p[0], buf, sizeof(buf), (__u64)-1);
	io_uring_prep_cancel64(sqe_for(2), 1, 0);
	io_uring_prep_cancel64(sqe_for(3), 12345, 0);
	wait_n(c, 3);
	cr_assert_eq(c[0].user_data, 1);
	cr_assert_eq(c[0].res, -ECANCELED);
	cr_assert_eq(c[1].user_data, 2);
	cr_assert_eq(c[1].res, 0);
	cr_assert_eq(c[2].user_data, 3);
	cr_assert_eq(c[2].res, -ENOENT);
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, unsupported_requests_fail_with_einval)
{
	static const uint64_t order[] = {1, 2, 3, 4, 6, 5};
	struct __kernel_timespec ts = {1, 0};
	struct io_uring_cqe c[6];
	struct io_uring_sqe *sqe;
	char buf[8];
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	io_uring_prep_nop(sqe_for(1));
	sqe = sqe_for(2);
	io_uring_prep_read(sqe, p[0], buf, sizeof(buf), (__u64)-1);
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_prep_link_timeout(sqe_for(3), &ts, 0); /* no op to bind to */
	sqe = sqe_for(4);
	io_uring_prep_read(sqe, p[0], buf, sizeof(buf), (__u64)-1);
	io_uring_sqe_set_flags(sqe, IOSQE_IO_LINK); /* a chain, not a link timeout */
	io_uring_prep_read(sqe_for(5), p[0], buf, sizeof(buf), (__u64)-1);
	io_uring_prep_timeout(sqe_for(6), &ts, 1, 0); /* completion count */
	wait_n(c, 6);
	for (size_t i = 0; i < 6; i++) {
		cr_assert_eq(c[i].user_data, order[i], "cqe %zu: %llu", i,
			(unsigned long long)c[i].user_data);
		cr_assert_eq(c[i].res, order[i] == 5 ? 1 : -EINVAL, "op %llu: res %d",
			(unsigned long long)order[i], c[i].res);
	}
	close(p[0]);
	close(p[1]);
}

Test(uring_fallback, nothing_to_wait_for_is_enoent)
{
	cr_assert_eq(uring_fallback_submit_and_wait(&fb), -ENOENT);
}

/* ---- connect and its link timeout ---------------------------------------- */

/* A loopback listener; with <full>, its accept queue is full and drops SYNs. */
static int listener(uint16_t *port, bool full)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, full ? 0 : 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	if (full) {
		/* Backlog 0 queues one connection; a second one fills it for good. */
		for (int i = 0; i < 2; i++) {
			int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

			cr_assert_geq(c, 0);
			connect(c, (struct sockaddr *)&sa, sizeof(sa)); /* EINPROGRESS; kept open */
		}
		usleep(100 * 1000);
	}
	return fd;
}

static struct sockaddr_in loopback(uint16_t port)
{
	return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* CONNECT (user_data 1) linked to a LINK_TIMEOUT of <ms> (user_data 2). */
static int prep_connect_linked(struct sockaddr_in *sa, struct __kernel_timespec *ts, long ms)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct io_uring_sqe *sqe;

	cr_assert_geq(fd, 0);
	sqe = sqe_for(1);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)sa, sizeof(*sa));
	sqe->flags |= IOSQE_IO_LINK;
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
	io_uring_prep_link_timeout(sqe_for(2), ts, 0);
	return fd;
}

/* The res of the completions with user_data 1 and 2, whatever their order. */
static void connect_results(int *conn_res, int *link_res)
{
	struct io_uring_cqe c[2];

	wait_n(c, 2);
	for (int i = 0; i < 2; i++) {
		cr_assert(c[i].user_data == 1 || c[i].user_data == 2);
		*(c[i].user_data == 1 ? conn_res : link_res) = c[i].res;
	}
}

Test(uring_fallback, connect_succeeds_and_its_link_timeout_is_canceled)
{
	struct __kernel_timespec ts;
	uint16_t port;
	int l = listener(&port, false), fd, cr, lr;
	struct sockaddr_in sa = loopback(port);

	fd = prep_connect_linked(&sa, &ts, 5000);
	connect_results(&cr, &lr);
	cr_assert_eq(cr, 0, "connect: %s", strerror(-cr));
	cr_assert_eq(lr, -ECANCELED);
	close(fd);
	close(l);
}

Test(uring_fallback, connect_refused_is_its_errno)
{
	struct __kernel_timespec ts;
	uint16_t port;
	int l = listener(&port, false), fd, cr, lr;
	struct sockaddr_in sa = loopback(port);

	close(l); /* nobody listens on <port> any more */
	fd = prep_connect_linked(&sa, &ts, 5000);
	connect_results(&cr, &lr);
	cr_assert_eq(cr, -ECONNREFUSED, "connect: %d", cr);
	cr_assert_eq(lr, -ECANCELED);
	close(fd);
}

Test(uring_fallback, connect_times_out_through_its_link_timeout)
{
	struct __kernel_timespec ts;
	uint16_t port;
	int l = listener(&port, true), fd, cr, lr;
	struct sockaddr_in sa = loopback(port);
	uint64_t t0 = now_ms(), dt;

	fd = prep_connect_linked(&sa, &ts, 200);
	connect_results(&cr, &lr);
	dt = now_ms() - t0;
	cr_assert_eq(cr, -ECANCELED, "connect: %d", cr);
	cr_assert_eq(lr, -ETIME);
	cr_assert(dt >= 200 && dt < 900, "took %llu ms", (unsigned long long)dt);
	close(fd);
	close(l);
}

Test(uring_fallback, cancel_of_a_connect_cancels_its_link_timeout_too)
{
	struct __kernel_timespec ts, tick;
	struct io_uring_cqe c[3];
	uint16_t port;
	int l = listener(&port, true), fd, seen = 0;
	struct sockaddr_in sa = loopback(port);

	fd = prep_connect_linked(&sa, &ts, 5000);
	prep_timeout_ms(&tick, 20, 9);
	wait_n(c, 1);
	cr_assert_eq(c[0].user_data, 9, "the connect is still in progress");
	io_uring_prep_cancel64(sqe_for(3), 1, 0);
	wait_n(c, 3);
	for (int i = 0; i < 3; i++) {
		int want = c[i].user_data == 3 ? 0 : -ECANCELED;

		cr_assert_eq(c[i].res, want, "user_data %llu: res %d",
			(unsigned long long)c[i].user_data, c[i].res);
		seen |= 1 << c[i].user_data;
	}
	cr_assert_eq(seen, 0xe, "connect, link timeout and cancel each completed once");
	close(fd);
	close(l);
}

/* ---- sandwire-agent on the fallback -------------------------------------- */

static struct ah h;
static int log_fd = -1; /* the agent's stderr */

/* Start an agent whose stderr goes to a memfd we can read back. */
static void start_logged(const char *const *extra)
{
	int saved = fcntl(2, F_DUPFD_CLOEXEC, 10);

	log_fd = memfd_create("agent-stderr", MFD_CLOEXEC);
	cr_assert(saved >= 0 && log_fd >= 0);
	cr_assert_eq(dup2(log_fd, 2), 2);
	ah_start(&h, extra);
	dup2(saved, 2);
	close(saved);
	ah_boot(&h);
}

/* Everything the agent logged so far (malloc'd, NUL-terminated). */
static char *agent_log_text(void)
{
	off_t n = lseek(log_fd, 0, SEEK_END);
	char *s = malloc((size_t)n + 1);

	cr_assert_not_null(s);
	cr_assert_eq(pread(log_fd, s, (size_t)n, 0), (ssize_t)n);
	s[n] = '\0';
	return s;
}

static void stop_logged(void)
{
	int st = ah_stop(&h);

	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
	close(log_fd);
	log_fd = -1;
}

static void echo_works(uint32_t id)
{
	struct ah_exec_result r = {0};

	ah_exec(&h, id, false, "sh", "-c", "echo hi; echo there >&2", NULL);
	ah_exec_wait(&h, id, &r);
	cr_assert(r.exited);
	cr_assert_eq(r.code, 0);
	cr_assert_str_eq(r.out, "hi\n");
	cr_assert_str_eq(r.err, "there\n");
	ah_exec_result_free(&r);
}

Test(uring_fallback, agent_no_io_uring_forces_the_fallback_and_says_so)
{
	static const char *const args[] = {"--no-io-uring", NULL};
	char *log;

	start_logged(args);
	echo_works(1);
	log = agent_log_text();
	cr_assert_not_null(strstr(log,
		"warn: io_uring unavailable (disabled by --no-io-uring): using poll(2)"), "log: %s", log);
	free(log);
	stop_logged();
}

Test(uring_fallback, agent_io_uring_is_used_where_it_works)
{
	struct io_uring ring;
	char *log;

	if (io_uring_queue_init(8, &ring, 0) < 0)
		cr_skip_test("io_uring is not available here");
	io_uring_queue_exit(&ring);
	start_logged(NULL);
	echo_works(1);
	log = agent_log_text();
	cr_assert_null(strstr(log, "using poll(2)"), "log: %s", log);
	free(log);
	stop_logged();
}

#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef TEST_AUDIT_ARCH
/* Make io_uring_setup fail with ENOSYS in this process and its children. */
static void deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
		strerror(errno));
}

Test(uring_fallback, agent_a_failing_io_uring_setup_falls_back_and_says_why)
{
	struct io_uring ring;
	char *log;

	deny_io_uring();
	cr_assert_eq(io_uring_queue_init(8, &ring, 0), -ENOSYS, "the filter works");
	start_logged(NULL);
	echo_works(1);
	log = agent_log_text();
	cr_assert_not_null(strstr(log, "warn: io_uring unavailable (io_uring_setup: "
		"Function not implemented): using poll(2)"), "log: %s", log);
	free(log);
	stop_logged();
}
#endif

/* Descriptors the agent has open. */
static int agent_fds(void)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)h.c.pid);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Poll until the agent has <want> descriptors open (at most 5 s); returns the last count. */
static int agent_fds_reach(int want)
{
	int n = agent_fds();

	for (int i = 0; i < 500 && n != want; i++) {
		usleep(10 * 1000);
		n = agent_fds();
	}
	return n;
}

Test(uring_fallback, agent_tcp_close_cancels_a_pending_connect)
{
	static const char *const args[] = {"--no-io-uring", NULL};
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	uint16_t port;
	int l = listener(&port, true), base, n;

	start_logged(args);
	base = agent_fds();
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	ah_send(&h, 5, &m);
	n = agent_fds_reach(base + 1);
	cr_assert_eq(n, base + 1, "the connecting socket is open (%d fds, %d before)", n, base);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	ah_send(&h, 5, &m);
	/* Only the cancel ends the connect before its 30 s timeout and frees the socket. */
	n = agent_fds_reach(base);
	cr_assert_eq(n, base, "the socket is closed (%d fds, %d before)", n, base);
	echo_works(6); /* fails on any frame for id 5: tcp.close has no reply */
	stop_logged();
	close(l);
}
