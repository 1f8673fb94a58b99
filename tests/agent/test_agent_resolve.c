/*
 * tests/agent/test_agent_resolve.c - tcp.connect to host names, whose
 * lookups run off the agent's loop (agent/resolve.h).
 *
 * Suite agent_resolve_ns runs each test in private mount and network
 * namespaces (it needs root), which the agent inherits.  There /etc/hosts, /etc/resolv.conf and the hosts
 * line of /etc/nsswitch.conf are the test's, and the only DNS server is a
 * stub in this process on 127.0.0.1:53 that answers *.sw-test with
 * 127.0.0.1 and anything else with NXDOMAIN, and that can hold its
 * answers: a lookup "in flight" is then a state the test sets up, not a
 * race it hopes to win.  Where the namespaces cannot be made, these tests
 * skip and say why.
 *
 * Suite agent_resolve_sys uses the machine's own resolver: a name of its
 * /etc/hosts, and a name that resolves nowhere.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/agent_harness.h"

#define RESOLVE_MAX 128 /* AGENT_RESOLVE_MAX: lookups the agent keeps in flight */
#define PING_ID 100000u

static struct ah h;
static bool agent_up;

/* ---- frames ---------------------------------------------------------------- */

static void tcp_connect(uint32_t id, const char *host, uint16_t port)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};

	m.u.tcp_connect.host = (struct proto_str){host, strlen(host)};
	m.u.tcp_connect.port = port;
	ah_send(&h, id, &m);
}

static void expect_failed(uint32_t id, const char *want)
{
	ah_expect(&h, id, PROTO_T_TCP_FAILED, 20000);
	cr_assert(h.frame.flags & PROTO_FLAG_TERMINAL);
	cr_assert(h.msg.u.tcp_failed.error.len == strlen(want) &&
		memcmp(h.msg.u.tcp_failed.error.ptr, want, strlen(want)) == 0,
		"id %u failed with \"%.*s\", expected \"%s\"", id,
		(int)h.msg.u.tcp_failed.error.len, h.msg.u.tcp_failed.error.ptr, want);
}

/* Round trip through the agent's loop: nothing may arrive before the pong. */
static void ping_barrier(void)
{
	struct proto_msg m = {.type = PROTO_T_PING};

	ah_send(&h, PING_ID, &m);
	ah_expect(&h, PING_ID, PROTO_T_PONG, 20000);
}

static void expect_quiet(int ms)
{
	bool got = ah_recv(&h, ms, true);

	cr_assert_not(got, "unexpected %s on id %u", proto_type_name(h.msg.type), h.frame.id);
}

/* ---- sockets --------------------------------------------------------------- */

/* A listener on <sa> (its port 0: the kernel picks); returns the fd and the port. */
static int listen_at(const struct sockaddr *sa, socklen_t len, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (bind(fd, sa, len) < 0) {
		close(fd);
		return -1;
	}
	cr_assert_eq(listen(fd, 512), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = listen_at((struct sockaddr *)&sa, sizeof(sa), port);

	cr_assert_geq(fd, 0);
	return fd;
}

/* Accept with a deadline; -1 when nothing came.  Reads on the socket time out after 10 s. */
static int accept_within(int lfd, int ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	struct timeval tv = {.tv_sec = 10};
	int fd;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void recv_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(fd, (char *)buf + got, n - got, 0);

		cr_assert_gt(r, 0, "destination read: %zd after %zu of %zu bytes", r, got, n);
		got += (size_t)r;
	}
}

/* Collect <n> bytes of tcp.data for <id> into <buf>; any other frame fails. */
static void expect_data(uint32_t id, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ah_expect(&h, id, PROTO_T_TCP_DATA, 20000);
		cr_assert_leq(got + h.msg.u.data.len, n);
		memcpy((char *)buf + got, h.msg.u.data.ptr, h.msg.u.data.len);
		got += h.msg.u.data.len;
	}
}

/* ---- the namespaces and the DNS stub ------------------------------------------ */

#define STUB_HELD_MAX 64
#define STUB_LOG_MAX 1024

struct stub_query {
	uint8_t q[512];
	size_t n;
	struct sockaddr_in from;
};

static struct dns_stub {
	int fd;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool hold;                              /* keep answers back (under mu) */
	bool stop;
	unsigned queries;                       /* received so far */
	unsigned held_n;
	struct stub_query held[STUB_HELD_MAX];
	char log[STUB_LOG_MAX][64];             /* names asked, in order (first 63 bytes) */
	unsigned log_n;
} stub = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static struct {
	bool ok;
	char why[200];
} ns;

/* The question's name, dotted and lower-case; returns the offset after QTYPE/QCLASS or 0. */
static size_t dns_question(const uint8_t *q, size_t n, char *name, size_t cap, unsigned *qtype)
{
	size_t off = 12, out = 0;

	if (n < 12)
		return 0;
	while (off < n && q[off] != 0) {
		size_t l = q[off];

		if ((l & 0xc0) || off + 1 + l > n || out + l + 1 >= cap)
			return 0;
		if (out)
			name[out++] = '.';
		for (size_t i = 0; i < l; i++)
			name[out++] = (char)(q[off + 1 + i] | (q[off + 1 + i] >= 'A' &&
				q[off + 1 + i] <= 'Z' ? 0x20 : 0));
		off += 1 + l;
	}
	name[out] = '\0';
	if (off + 5 > n)
		return 0;
	*qtype = (unsigned)(q[off + 1] << 8 | q[off + 2]);
	return off + 5;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Answer one query: *.sw-test has A 127.0.0.1 (and no AAAA), the rest NXDOMAIN. */
static void dns_answer(const struct stub_query *sq)
{
	static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1};
	uint8_t r[600];
	char name[256];
	unsigned qtype;
	size_t qend = dns_question(sq->q, sq->n, name, sizeof(name), &qtype);
	bool known;

	if (!qend)
		return;
	known = ends_with(name, ".sw-test");
	memcpy(r, sq->q, qend);
	r[2] = (uint8_t)(0x80 | (sq->q[2] & 0x79) | 0x04); /* QR, opcode and RD kept, AA */
	r[3] = known ? 0x80 : 0x83;                        /* RA, NOERROR or NXDOMAIN */
	r[4] = 0;
	r[5] = 1;
	memset(r + 6, 0, 6);
	if (known && qtype == 1) {
		memcpy(r + qend, rr, sizeof(rr));
		r[7] = 1;
		qend += sizeof(rr);
	}
	sendto(stub.fd, r, qend, 0, (const struct sockaddr *)&sq->from, sizeof(sq->from));
}

static void *stub_main(void *arg)
{
	struct pollfd p = {.fd = stub.fd, .events = POLLIN};

	(void)arg;
	for (;;) {
		struct stub_query sq;
		socklen_t fl = sizeof(sq.from);
		ssize_t n;
		char name[256];
		unsigned qtype;

		pthread_mutex_lock(&stub.mu);
		if (stub.stop) {
			pthread_mutex_unlock(&stub.mu);
			return NULL;
		}
		pthread_mutex_unlock(&stub.mu);
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = recvfrom(stub.fd, sq.q, sizeof(sq.q), 0, (struct sockaddr *)&sq.from, &fl);
		if (n <= 0)
			continue;
		sq.n = (size_t)n;
		pthread_mutex_lock(&stub.mu);
		stub.queries++;
		if (dns_question(sq.q, sq.n, name, sizeof(name), &qtype) && stub.log_n < STUB_LOG_MAX)
			snprintf(stub.log[stub.log_n++], sizeof(stub.log[0]), "%.63s", name);
		if (stub.hold && stub.held_n < STUB_HELD_MAX)
			stub.held[stub.held_n++] = sq;
		else
			dns_answer(&sq);
		pthread_cond_broadcast(&stub.cv);
		pthread_mutex_unlock(&stub.mu);
	}
}

static void stub_hold(void)
{
	pthread_mutex_lock(&stub.mu);
	stub.hold = true;
	stub.queries = 0;
	pthread_mutex_unlock(&stub.mu);
}

/* Answer what was held and everything from now on. */
static void stub_release(void)
{
	pthread_mutex_lock(&stub.mu);
	stub.hold = false;
	for (unsigned i = 0; i < stub.held_n; i++)
		dns_answer(&stub.held[i]);
	stub.held_n = 0;
	pthread_mutex_unlock(&stub.mu);
}

/* Wait until the stub has seen a query since stub_hold(): a lookup is in flight. */
static void stub_wait_query(void)
{
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&stub.mu);
	while (stub.queries == 0 && rc == 0)
		rc = pthread_cond_timedwait(&stub.cv, &stub.mu, &until);
	pthread_mutex_unlock(&stub.mu);
	cr_assert_eq(rc, 0, "the DNS stub got no query");
}

static bool stub_saw(const char *name)
{
	bool seen = false;

	pthread_mutex_lock(&stub.mu);
	for (unsigned i = 0; i < stub.log_n && !seen; i++)
		seen = strcmp(stub.log[i], name) == 0;
	pthread_mutex_unlock(&stub.mu);
	return seen;
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t n = strlen(text);
	ssize_t w;

	if (fd < 0)
		return -errno;
	w = write(fd, text, n);
	close(fd);
	return w == (ssize_t)n ? 0 : -EIO;
}

/*
 * Mount <text> over <target>: written to a file of <dir>, bound, unlinked
 * (the mount keeps it), so nothing is left behind even if the test dies.
 */
static int cover(const char *dir, const char *text, const char *target)
{
	char path[128];
	int rc;

	snprintf(path, sizeof(path), "%s/file", dir);
	rc = write_text(path, text);
	if (rc == 0 && mount(path, target, NULL, MS_BIND, NULL) < 0)
		rc = -errno;
	unlink(path);
	return rc;
}

/* The system's nsswitch.conf with its hosts line replaced by "files dns". */
static void nsswitch_text(char *out, size_t cap)
{
	FILE *f = fopen("/etc/nsswitch.conf", "re");
	char line[512];
	size_t len = 0;

	out[0] = '\0';
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "hosts:", 6) != 0 && len + strlen(line) + 32 < cap)
			len += (size_t)snprintf(out + len, cap - len, "%s", line);
	if (f)
		fclose(f);
	snprintf(out + len, cap - len, "hosts: files dns\n");
}

static int lo_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		rc = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static const char hosts_text[] =
	"127.0.0.1\tlocalhost\n"
	"127.0.0.1\tone.sw-hosts\n"
	"127.0.0.2\tmulti.sw-hosts\n"
	"127.0.0.3\tmulti.sw-hosts\n"
	"127.0.0.4\tdead.sw-hosts\n"
	"127.0.0.5\tdead.sw-hosts\n";

/* Private namespaces, files and the stub; on failure ns.why says what failed. */
static int ns_setup(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static char nss[8192];
	int rc = 0;

	char dir[] = "/tmp/sw-resolve-XXXXXX";

	nsswitch_text(nss, sizeof(nss)); /* read before anything covers it */
	/*
	 * Root only: a user namespace would need a single-threaded caller, and
	 * Criterion's worker has threads (unshare says EINVAL there).
	 */
	if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0) {
		rc = -errno;
		snprintf(ns.why, sizeof(ns.why), "unshare(mount, network): %s (needs root)",
			strerror(errno));
		return rc;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || (rc = lo_up()) < 0) {
		rc = rc < 0 ? rc : -errno;
		snprintf(ns.why, sizeof(ns.why), "private mounts / loopback: %s", strerror(-rc));
		return rc;
	}
	if (!mkdtemp(dir)) {
		rc = -errno;
		snprintf(ns.why, sizeof(ns.why), "mkdtemp: %s", strerror(-rc));
		return rc;
	}
	rc = cover(dir, hosts_text, "/etc/hosts");
	if (rc == 0)
		rc = cover(dir, "nameserver 127.0.0.1\noptions timeout:30 attempts:2\n",
			"/etc/resolv.conf");
	if (rc == 0)
		rc = cover(dir, nss, "/etc/nsswitch.conf");
	rmdir(dir);
	if (rc < 0) {
		snprintf(ns.why, sizeof(ns.why), "cover /etc files: %s", strerror(-rc));
		return rc;
	}
	stub.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (stub.fd < 0 || bind(stub.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snprintf(ns.why, sizeof(ns.why), "DNS stub on 127.0.0.1:53: %s", strerror(errno));
		return rc;
	}
	rc = pthread_create(&stub.thread, NULL, stub_main, NULL);
	if (rc != 0) {
		snprintf(ns.why, sizeof(ns.why), "stub thread: %s", strerror(rc));
		return -rc;
	}
	stub.running = true;
	return 0;
}

static void ns_boot(void)
{
	ns.ok = ns_setup() == 0;
	if (!ns.ok)
		return;
	ah_start(&h, NULL);
	agent_up = true;
	ah_boot(&h);
}

static void ns_fini(void)
{
	int st = 0;

	if (agent_up)
		st = ah_stop(&h);
	agent_up = false;
	if (stub.running) {
		pthread_mutex_lock(&stub.mu);
		stub.stop = true;
		pthread_mutex_unlock(&stub.mu);
		pthread_join(stub.thread, NULL);
		stub.running = false;
	}
	if (stub.fd >= 0)
		close(stub.fd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
}

static void need_ns(void)
{
	if (!ns.ok)
		cr_skip_test("private namespaces unavailable: %s", ns.why);
}

TestSuite(agent_resolve_ns, .init = ns_boot, .fini = ns_fini, .timeout = 120);

/* ---- tests in the namespaces ----------------------------------------------------- */

Test(agent_resolve_ns, a_name_from_etc_hosts_connects_and_carries_data)
{
	uint16_t port;
	int lfd, fd;
	char buf[8];

	need_ns();
	lfd = listen_loopback(&port);
	tcp_connect(1, "one.sw-hosts", port);
	ah_expect(&h, 1, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0);
	ah_send_data(&h, 1, PROTO_T_TCP_DATA, "hello", 5);
	recv_exact(fd, buf, 5);
	cr_assert(memcmp(buf, "hello", 5) == 0);
	cr_assert_eq(send(fd, "back", 4, 0), 4);
	expect_data(1, buf, 4);
	cr_assert(memcmp(buf, "back", 4) == 0);
	ah_send_data(&h, 1, PROTO_T_TCP_CLOSE, NULL, 0);
	ping_barrier();
	cr_assert_not(stub_saw("one.sw-hosts"), "a name of /etc/hosts went to DNS");
	close(fd);
	close(lfd);
}

/* The addresses of <name> in getaddrinfo's order (the agent asks the same way). */
static size_t addrs_of(const char *name, struct sockaddr_storage *out, socklen_t *lens,
	size_t max)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	size_t n = 0;

	cr_assert_eq(getaddrinfo(name, NULL, &hints, &res), 0, "the test cannot resolve %s", name);
	for (ai = res; ai && n < max; ai = ai->ai_next, n++) {
		memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
		lens[n] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return n;
}

Test(agent_resolve_ns, every_address_is_tried_in_order_until_one_connects)
{
	struct sockaddr_storage ss[4], peer;
	socklen_t lens[4], pl = sizeof(peer);
	size_t n;
	uint16_t port;
	int lfd, fd;

	need_ns();
	n = addrs_of("multi.sw-hosts", ss, lens, 4);
	cr_assert_eq(n, 2, "multi.sw-hosts has %zu addresses", n);
	/* Only the last address listens: the first attempt is refused. */
	lfd = listen_at((struct sockaddr *)&ss[n - 1], lens[n - 1], &port);
	cr_assert_geq(lfd, 0);
	tcp_connect(2, "multi.sw-hosts", port);
	ah_expect(&h, 2, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&peer, &pl), 0);
	cr_assert_eq(((struct sockaddr_in *)&peer)->sin_addr.s_addr,
		((struct sockaddr_in *)&ss[n - 1])->sin_addr.s_addr);
	ah_send_data(&h, 2, PROTO_T_TCP_CLOSE, NULL, 0);
	ping_barrier();
	close(fd);
	close(lfd);
}

Test(agent_resolve_ns, when_every_address_refuses_the_last_failure_is_reported)
{
	uint16_t port;
	int lfd;
	char want[128];

	need_ns();
	lfd = listen_loopback(&port);
	close(lfd); /* nothing listens on that port, at any address */
	tcp_connect(3, "dead.sw-hosts", port);
	snprintf(want, sizeof(want), "connect dead.sw-hosts:%u: Connection refused (os error 111)",
		port);
	expect_failed(3, want);
	ping_barrier();
	expect_quiet(200);
}

Test(agent_resolve_ns, a_name_that_does_not_resolve_fails_once_with_the_resolver_text)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int rc;
	char want[256];

	need_ns();
	rc = getaddrinfo("sw-no-such-host.invalid", NULL, &hints, &res);
	cr_assert_eq(rc, EAI_NONAME, "the stub should answer NXDOMAIN, got %s", gai_strerror(rc));
	tcp_connect(4, "sw-no-such-host.invalid", 80);
	snprintf(want, sizeof(want),
		"connect sw-no-such-host.invalid:80: failed to lookup address information: %s",
		gai_strerror(rc));
	expect_failed(4, want);
	ping_barrier();
	expect_quiet(200);
}

Test(agent_resolve_ns, host_data_and_eof_sent_during_the_lookup_reach_the_destination)
{
	uint16_t port;
	int lfd, fd;
	char buf[32];

	need_ns();
	lfd = listen_loopback(&port);
	stub_hold();
	tcp_connect(5, "early.sw-test", port);
	stub_wait_query();
	ah_send_data(&h, 5, PROTO_T_TCP_DATA, "sent early", 10);
	ah_send_data(&h, 5, PROTO_T_TCP_EOF, NULL, 0);
	ping_barrier(); /* the loop took both while the lookup waits */
	stub_release();
	ah_expect(&h, 5, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0);
	recv_exact(fd, buf, 10);
	cr_assert(memcmp(buf, "sent early", 10) == 0);
	cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 0, "the host's EOF reaches the destination");
	ah_send_data(&h, 5, PROTO_T_TCP_CLOSE, NULL, 0);
	close(fd);
	close(lfd);
}

Test(agent_resolve_ns, close_during_a_lookup_drops_its_answer_even_when_the_id_is_reused)
{
	uint16_t port;
	int lfd, fd;

	need_ns();
	lfd = listen_loopback(&port);
	stub_hold();
	tcp_connect(6, "first.sw-test", port);
	stub_wait_query();                    /* the thread is inside that lookup */
	tcp_connect(7, "skipped.sw-test", port); /* queued behind it */
	ah_send_data(&h, 6, PROTO_T_TCP_CLOSE, NULL, 0);
	ah_send_data(&h, 7, PROTO_T_TCP_CLOSE, NULL, 0);
	tcp_connect(6, "second.sw-test", port); /* the same id, a new stream */
	ping_barrier();                       /* close gets no reply */
	stub_release();
	/* first's answer is dropped, skipped's lookup never runs, second's connects. */
	ah_expect(&h, 6, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0);
	ping_barrier();
	expect_quiet(300);
	cr_assert_lt(accept_within(lfd, 300), 0, "a closed stream's lookup made a connection");
	cr_assert(stub_saw("second.sw-test"));
	cr_assert_not(stub_saw("skipped.sw-test"), "a lookup closed before it ran still ran");
	ah_send_data(&h, 6, PROTO_T_TCP_CLOSE, NULL, 0);
	close(fd);
	close(lfd);
}

/* The system resolver would wait 30 s + 60 s (resolv.conf above): the agent's deadline ends it. */
Test(agent_resolve_ns, the_30_s_connect_deadline_covers_a_lookup_that_never_answers)
{
	struct timespec t0, t1;
	double secs;

	need_ns();
	stub_hold();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tcp_connect(8, "never.sw-test", 80);
	stub_wait_query();
	ping_barrier();
	ah_recv(&h, 40000, false);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(h.frame.id, 8);
	cr_assert_eq(h.msg.type, PROTO_T_TCP_FAILED, "got %s", proto_type_name(h.msg.type));
	cr_assert(h.msg.u.tcp_failed.error.len == strlen("connect never.sw-test:80 timed out") &&
		memcmp(h.msg.u.tcp_failed.error.ptr, "connect never.sw-test:80 timed out",
			h.msg.u.tcp_failed.error.len) == 0, "\"%.*s\"",
		(int)h.msg.u.tcp_failed.error.len, h.msg.u.tcp_failed.error.ptr);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert(secs >= 29.9 && secs < 35.0, "timed out after %.2f s", secs);
	stub_release(); /* the late answer is dropped */
	ping_barrier();
	expect_quiet(300);
}

Test(agent_resolve_ns, many_lookups_wait_while_another_stream_keeps_flowing)
{
	enum { NAMES = 64, ROUNDS = 200, SIZE = 1024, FLOW = 1000 };
	static uint8_t out[SIZE], in[SIZE];
	bool connected[NAMES] = {false};
	uint16_t port, eport;
	int lfd, efd, fd, conns[NAMES], nconn = 0;
	char name[64];

	need_ns();
	lfd = listen_loopback(&port);
	efd = listen_loopback(&eport);
	tcp_connect(FLOW, "127.0.0.1", eport);
	ah_expect(&h, FLOW, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(efd, 5000);
	cr_assert_geq(fd, 0);

	stub_hold();
	for (uint32_t i = 0; i < NAMES; i++) {
		snprintf(name, sizeof(name), "n%u.sw-test", i);
		tcp_connect(i + 1, name, port);
	}
	stub_wait_query();
	/* The loop is free: the other stream echoes round after round meanwhile. */
	for (int r = 0; r < ROUNDS; r++) {
		for (size_t i = 0; i < SIZE; i++)
			out[i] = (uint8_t)(i * 7 + (size_t)r);
		ah_send_data(&h, FLOW, PROTO_T_TCP_DATA, out, SIZE);
		recv_exact(fd, in, SIZE);
		cr_assert(memcmp(in, out, SIZE) == 0, "round %d host->destination", r);
		cr_assert_eq(send(fd, in, SIZE, 0), SIZE);
		expect_data(FLOW, in, SIZE); /* a frame for a waiting name would fail here */
		cr_assert(memcmp(in, out, SIZE) == 0, "round %d destination->host", r);
	}
	stub_release();
	for (int got = 0; got < NAMES; got++) {
		ah_recv(&h, 20000, false);
		cr_assert(h.frame.id >= 1 && h.frame.id <= NAMES, "frame for id %u", h.frame.id);
		cr_assert_eq(h.msg.type, PROTO_T_TCP_CONNECTED, "id %u: %s", h.frame.id,
			proto_type_name(h.msg.type));
		cr_assert_not(connected[h.frame.id - 1], "id %u connected twice", h.frame.id);
		connected[h.frame.id - 1] = true;
	}
	while (nconn < NAMES && (conns[nconn] = accept_within(lfd, 5000)) >= 0)
		nconn++;
	cr_assert_eq(nconn, NAMES);
	for (uint32_t i = 0; i < NAMES; i++)
		ah_send_data(&h, i + 1, PROTO_T_TCP_CLOSE, NULL, 0);
	ah_send_data(&h, FLOW, PROTO_T_TCP_CLOSE, NULL, 0);
	ping_barrier();
	for (int i = 0; i < nconn; i++)
		close(conns[i]);
	close(fd);
	close(efd);
	close(lfd);
}

Test(agent_resolve_ns, a_full_lookup_queue_fails_the_next_name_at_once)
{
	char name[64], want[160];
	unsigned failed = 0;
	uint16_t port;
	int lfd, fd;

	need_ns();
	stub_hold();
	for (uint32_t i = 0; i < RESOLVE_MAX; i++) {
		snprintf(name, sizeof(name), "gone%u.invalid", i);
		tcp_connect(i + 1, name, 80);
	}
	stub_wait_query();
	tcp_connect(RESOLVE_MAX + 1, "over.sw-test", 80);
	snprintf(want, sizeof(want),
		"connect over.sw-test:80: name lookup queue full (%u lookups in progress)",
		RESOLVE_MAX);
	expect_failed(RESOLVE_MAX + 1, want); /* while every other lookup still waits */
	stub_release();
	while (failed < RESOLVE_MAX) {
		ah_recv(&h, 20000, false);
		cr_assert(h.frame.id >= 1 && h.frame.id <= RESOLVE_MAX, "frame for id %u", h.frame.id);
		cr_assert_eq(h.msg.type, PROTO_T_TCP_FAILED);
		snprintf(name, sizeof(name), "gone%u.invalid", h.frame.id - 1);
		snprintf(want, sizeof(want),
			"connect %s:80: failed to lookup address information: %s", name,
			gai_strerror(EAI_NONAME));
		cr_assert(h.msg.u.tcp_failed.error.len == strlen(want) &&
			memcmp(h.msg.u.tcp_failed.error.ptr, want, strlen(want)) == 0,
			"id %u: \"%.*s\"", h.frame.id, (int)h.msg.u.tcp_failed.error.len,
			h.msg.u.tcp_failed.error.ptr);
		failed++;
	}
	/* Every slot is free again. */
	lfd = listen_loopback(&port);
	tcp_connect(RESOLVE_MAX + 2, "after.sw-test", port);
	ah_expect(&h, RESOLVE_MAX + 2, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0);
	ah_send_data(&h, RESOLVE_MAX + 2, PROTO_T_TCP_CLOSE, NULL, 0);
	ping_barrier();
	close(fd);
	close(lfd);
}

/* ---- tests against the machine's resolver ---------------------------------------- */

static void sys_boot(void)
{
	ah_start(&h, NULL);
	agent_up = true;
	ah_boot(&h);
}

static void sys_fini(void)
{
	int st = ah_stop(&h);

	agent_up = false;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "agent exit status %d", st);
}

TestSuite(agent_resolve_sys, .init = sys_boot, .fini = sys_fini, .timeout = 120);

/*
 * A name this machine's /etc/hosts has, as a fresh Debian's has
 * ip6-localhost and its own host name: the first of them whose first
 * address this process can listen on.
 */
Test(agent_resolve_sys, a_name_of_this_machine_connects)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	char self[256] = "";
	const char *names[] = {"ip6-localhost", "ip6-loopback", self};
	const char *name = NULL;
	uint16_t port = 0;
	int lfd = -1, fd;

	gethostname(self, sizeof(self) - 1);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && lfd < 0; i++) {
		if (!names[i][0] || getaddrinfo(names[i], NULL, &hints, &res) != 0)
			continue;
		lfd = listen_at(res->ai_addr, res->ai_addrlen, &port);
		freeaddrinfo(res);
		name = names[i];
	}
	if (lfd < 0)
		cr_skip_test("none of ip6-localhost, ip6-loopback, `%s` is a local address here", self);
	tcp_connect(1, name, port);
	ah_expect(&h, 1, PROTO_T_TCP_CONNECTED, 20000);
	fd = accept_within(lfd, 5000);
	cr_assert_geq(fd, 0, "%s: no connection", name);
	ah_send_data(&h, 1, PROTO_T_TCP_CLOSE, NULL, 0);
	ping_barrier();
	close(fd);
	close(lfd);
}

Test(agent_resolve_sys, a_name_that_resolves_nowhere_fails_with_the_resolver_text)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	char want[256];
	int rc = getaddrinfo("sw-no-such-host.invalid", NULL, &hints, &res);

	if (rc == 0) {
		freeaddrinfo(res);
		cr_skip_test("this machine's resolver answers for sw-no-such-host.invalid");
	}
	cr_assert_neq(rc, EAI_SYSTEM);
	tcp_connect(2, "sw-no-such-host.invalid", 443);
	snprintf(want, sizeof(want),
		"connect sw-no-such-host.invalid:443: failed to lookup address information: %s",
		gai_strerror(rc));
	expect_failed(2, want);
	ping_barrier();
	expect_quiet(200);
}
