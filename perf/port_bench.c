/*
 * perf/port_bench.c - sw-port-bench: published-port throughput (1 and 8
 * streams, each way), exec stdout, file copies with `sandwire cp` (fs
 * Write and Read, verified) and echo latency at 1,000 connections through a
 * real sandwired, each next to a direct baseline (loopback connection to
 * the same server, /bin/cp) measured in the same run.
 *
 * The "guest" servers run in this process on 127.0.0.1: a sandbox of the
 * process backend without a network namespace shares the host's loopback,
 * so the agent dials them exactly as it would dial a server in a sandbox.
 *
 *	sw-port-bench [--mib N] [--shards N] [--conns N] [--secs S] [--agent PATH]
 *
 * --agent runs the sandbox with another agent (e.g. microsandbox's agentd
 * through ../shared/peers/agentd/agentd-fd3.sh) behind the same daemon.
 * --peer PATH adds a second sandbox whose agent is PATH, measured in the
 * same run from the same client, with the ratio of the two (and exec
 * stdout MB/s through an attached client and file copies for both).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/swclient.h"
#include "perf/client/agent_client.h"

#define BUF_SIZE (1u << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "sw-port-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int listen_any(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0)
		die("listen");
	getsockname(fd, (struct sockaddr *)&a, &sl);
	*port = ntohs(a.sin_port);
	return fd;
}

static int dial(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* ---- guest-side servers ---------------------------------------------------- */

static uint64_t g_total; /* bytes per transfer (all streams together) */
static unsigned g_streams;

/* Sink: one thread per connection reads to EOF, then closes. */
static void *sink_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(BUF_SIZE);

	while (buf && read(fd, buf, BUF_SIZE) > 0) {
	}
	free(buf);
	close(fd);
	return NULL;
}

/* Source: one thread per connection writes total/streams bytes, then closes. */
static void *source_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(BUF_SIZE);
	uint64_t left = g_total / g_streams;

	memset(buf, 'x', BUF_SIZE);
	while (left) {
		ssize_t n = write(fd, buf, left < BUF_SIZE ? left : BUF_SIZE);

		if (n <= 0)
			break;
		left -= (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, BUF_SIZE) > 0) {
	}
	free(buf);
	close(fd);
	return NULL;
}

struct server {
	int fd;
	void *(*conn)(void *);
};

static void *server_loop(void *arg)
{
	struct server *sv = arg;

	for (;;) {
		int c = accept4(sv->fd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (c < 0)
			continue;
		pthread_create(&t, NULL, sv->conn, (void *)(intptr_t)c);
		pthread_detach(t);
	}
	return NULL;
}

/* Echo: one epoll thread for every connection. */
static void *echo_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg, ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
	char buf[65536];

	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

				if (c >= 0) {
					struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};

					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				close(fd);
				continue;
			}
			if (write(fd, buf, (size_t)r) != r) {
				/* a 64-byte echo always fits the socket buffer */
			}
		}
	}
	return NULL;
}

/* ---- clients ------------------------------------------------------------------ */

struct xfer_arg {
	uint16_t port;
	bool send;
	uint64_t bytes;
};

static void *client_stream(void *arg)
{
	struct xfer_arg *x = arg;
	int fd = dial(x->port);
	char *buf = malloc(BUF_SIZE);
	uint64_t left = x->bytes;

	memset(buf, 'y', BUF_SIZE);
	if (x->send) {
		while (left) {
			ssize_t n = write(fd, buf, left < BUF_SIZE ? left : BUF_SIZE);

			if (n <= 0)
				die("write");
			left -= (uint64_t)n;
		}
		shutdown(fd, SHUT_WR);
		while (read(fd, buf, BUF_SIZE) > 0) { /* the sink closes after EOF */
		}
	} else {
		ssize_t n;

		x->bytes = 0;
		while ((n = read(fd, buf, BUF_SIZE)) > 0)
			x->bytes += (uint64_t)n;
		shutdown(fd, SHUT_WR);
	}
	free(buf);
	close(fd);
	return NULL;
}

/* MB/s of moving g_total bytes over <streams> streams to <port>. */
static double throughput(uint16_t port, bool send, unsigned streams)
{
	pthread_t t[64];
	struct xfer_arg a[64];
	uint64_t t0 = now_ns(), got = 0;

	g_streams = streams;
	for (unsigned i = 0; i < streams; i++) {
		a[i] = (struct xfer_arg){.port = port, .send = send, .bytes = g_total / streams};
		pthread_create(&t[i], NULL, client_stream, &a[i]);
	}
	for (unsigned i = 0; i < streams; i++) {
		pthread_join(t[i], NULL);
		got += a[i].bytes;
	}
	if (got != g_total / streams * streams) {
		fprintf(stderr, "sw-port-bench: moved %llu of %llu bytes\n", (unsigned long long)got,
			(unsigned long long)g_total);
		exit(1);
	}
	return (double)got / ((double)(now_ns() - t0) / 1e9) / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Echo latency with <conns> connections, each with one 64-byte request in
 * flight, for <secs> seconds: p50/p99 in us and requests per second.
 */
static void echo_latency(uint16_t port, unsigned conns, double secs, double *p50, double *p99,
	double *rps)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int *fds = calloc(conns, sizeof(int));
	uint64_t *sent = calloc(conns, sizeof(uint64_t)), *lat, n = 0, cap = 1u << 22;
	char msg[64] = {0}, buf[64];
	uint64_t t0, end;
	struct epoll_event evs[256];

	lat = malloc(cap * sizeof(*lat));
	for (unsigned i = 0; i < conns; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

		fds[i] = dial(port);
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	/* Warm up: one round trip on every connection (the stream is set up end to end). */
	for (unsigned i = 0; i < conns; i++)
		if (write(fds[i], msg, sizeof(msg)) != sizeof(msg) || read(fds[i], buf, sizeof(buf)) <= 0)
			die("warm-up echo");
	t0 = now_ns();
	end = t0 + (uint64_t)(secs * 1e9);
	for (unsigned i = 0; i < conns; i++) {
		sent[i] = now_ns();
		if (write(fds[i], msg, sizeof(msg)) != sizeof(msg))
			die("write");
	}
	while (now_ns() < end) {
		int k = epoll_wait(ep, evs, 256, 100);

		for (int j = 0; j < k; j++) {
			unsigned i = evs[j].data.u32;
			ssize_t r = read(fds[i], buf, sizeof(buf));
			uint64_t t = now_ns();

			if (r <= 0)
				die("echo read");
			if (r != sizeof(buf)) /* a short read: finish the message first */
				if (read(fds[i], buf + r, sizeof(buf) - (size_t)r) < 0)
					die("echo read");
			if (n < cap)
				lat[n++] = t - sent[i];
			sent[i] = now_ns();
			if (write(fds[i], msg, sizeof(msg)) != sizeof(msg))
				die("write");
		}
	}
	*rps = (double)n / ((double)(now_ns() - t0) / 1e9);
	qsort(lat, n, sizeof(*lat), cmp_u64);
	*p50 = n ? (double)lat[n / 2] / 1e3 : 0;
	*p99 = n ? (double)lat[n * 99 / 100] / 1e3 : 0;
	for (unsigned i = 0; i < conns; i++)
		close(fds[i]);
	close(ep);
	free(fds);
	free(sent);
	free(lat);
}

/* ---- the daemon ------------------------------------------------------------------- */

static pid_t start_daemon(const char *sock, unsigned shards, const char *agent)
{
	char nshards[16];
	pid_t pid;

	snprintf(nshards, sizeof(nshards), "%u", shards);
	pid = fork();
	if (pid == 0) {
		if (agent)
			execl(SW_SANDWIRED_BIN, "sandwired", "--shards", nshards, "--socket", sock,
				"--no-agent-sock", "-q", "--agent", agent, (char *)NULL);
		else
			execl(SW_SANDWIRED_BIN, "sandwired", "--shards", nshards, "--socket", sock,
				"--no-agent-sock", "-q", (char *)NULL);
		_exit(127);
	}
	if (pid > 0 && swc_wait_ready(sock, 5000) == 0)
		return pid;
	fprintf(stderr, "sw-port-bench: sandwired did not come up on %s\n", sock);
	exit(1);
}

/*
 * Create sandbox <name> (agent <agent>, or the daemon's) publishing 0:<guest>
 * for each guest port; fills host ports.
 */
static void create_sandbox(const char *sock, const char *name, const char *agent,
	const uint16_t *guest, uint16_t *host, size_t n)
{
	struct engine_create cr = {0};
	struct swc c;
	struct swc_result res;
	char err[512];
	uint8_t buf[4096];
	struct engine_info in;
	struct cbr r;
	uint32_t id;
	long len;

	cr.name = (struct proto_str){name, strlen(name)};
	if (agent) {
		cr.agent[0] = (struct proto_str){agent, strlen(agent)};
		cr.nagent = 1;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(cr.ports[i].host_ip, sizeof(cr.ports[i].host_ip), "127.0.0.1");
		cr.ports[i].guest_port = guest[i];
		cr.ports[i].limit = 4096;
	}
	cr.nports = n;
	if (swc_connect(&c, sock, err, sizeof(err)) < 0)
		goto fail;
	id = c.next_id++;
	len = engine_req_create(buf, sizeof(buf), id, &cr);
	if (len < 0 || swc_call(&c, buf, (size_t)len, id, &res, err, sizeof(err)) < 0 || !res.ok)
		goto fail;
	cbr_init(&r, res.data, res.data_len, NULL);
	if (engine_decode_info(&r, &in) < 0 || in.nports != n) {
		snprintf(err, sizeof(err), "bad create answer");
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		host[i] = in.ports[i].port.host_port;
	swc_close(&c);
	return;
fail:
	fprintf(stderr, "sw-port-bench: create: %s\n", err);
	exit(1);
}

/* MB/s of `head -c <mib> MiB` as exec stdout, through a client attached to <name>. */
static double exec_stdout(const char *sock, const char *name, unsigned mib)
{
	char err[512], cmd[96];
	struct proto_str args[2];
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};
	struct agent_client ac;
	struct swc c;
	uint8_t *ready = NULL;
	size_t rl;
	uint32_t lo, hi;
	uint64_t got = 0, t0;

	if (swc_connect(&c, sock, err, sizeof(err)) < 0 ||
		swc_attach(&c, name, &lo, &hi, &ready, &rl, err, sizeof(err)) < 0) {
		fprintf(stderr, "sw-port-bench: attach %s: %s\n", name, err);
		exit(1);
	}
	free(ready);
	agent_client_attach(&ac, c.fd, -1);
	c.fd = -1;
	snprintf(cmd, sizeof(cmd), "head -c %llu /dev/zero", (unsigned long long)mib << 20);
	args[0] = (struct proto_str){"-c", 2};
	args[1] = (struct proto_str){cmd, strlen(cmd)};
	m.u.exec_request.cmd = (struct proto_str){"/bin/sh", 7};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = 2;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	t0 = now_ns();
	if (agent_client_send(&ac, lo, &m) < 0)
		die("exec request");
	for (;;) {
		if (agent_client_recv(&ac, 30000) <= 0)
			die("exec stdout");
		if (ac.msg.type == PROTO_T_EXEC_STDOUT)
			got += ac.msg.u.data.len;
		else if (ac.msg.type == PROTO_T_EXEC_EXITED || ac.msg.type == PROTO_T_EXEC_FAILED)
			break;
	}
	t0 = now_ns() - t0;
	agent_client_close(&ac, 0);
	swc_close(&c);
	if (got != (uint64_t)mib << 20) {
		fprintf(stderr, "sw-port-bench: exec stdout of %s: %llu bytes\n", name,
			(unsigned long long)got);
		exit(1);
	}
	return (double)got / ((double)t0 / 1e9) / 1e6;
}

/* ---- files: sandwire cp ------------------------------------------------------------ */

/* Run <argv> (argv[0] a path) to success; returns the seconds it took. */
static double run_timed(char *const *argv)
{
	uint64_t t0 = now_ns();
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "sw-port-bench: %s %s %s failed\n", argv[0], argv[1], argv[2]);
		exit(1);
	}
	return (double)(now_ns() - t0) / 1e9;
}

/* Fail unless files <a> and <b> hold the same bytes. */
static void check_same(const char *a, const char *b)
{
	static uint8_t x[1u << 20], y[1u << 20];
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	size_t na, nb;

	if (!fa || !fb)
		die("open a copied file");
	do {
		na = fread(x, 1, sizeof(x), fa);
		nb = fread(y, 1, sizeof(y), fb);
		if (na != nb || memcmp(x, y, na)) {
			fprintf(stderr, "sw-port-bench: %s and %s differ\n", a, b);
			exit(1);
		}
	} while (na);
	fclose(fa);
	fclose(fb);
}

/* A file of <bytes> pseudo-random bytes at <path>. */
static void make_file(const char *path, uint64_t bytes)
{
	static uint64_t w[1u << 17];
	uint64_t s = 0x9e3779b97f4a7c15ull;
	FILE *f = fopen(path, "wb");

	if (!f)
		die("create the test file");
	for (uint64_t done = 0; done < bytes; done += sizeof(w)) {
		for (size_t i = 0; i < sizeof(w) / 8; i++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			w[i] = s;
		}
		if (fwrite(w, 1, bytes - done < sizeof(w) ? bytes - done : sizeof(w), f) == 0)
			die("write the test file");
	}
	fclose(f);
}

/*
 * MB/s of `sandwire cp` writing <src> (<bytes>) into sandbox <name> and
 * reading it back (fs Write and Read streams), both copies verified; with
 * <name> NULL, of /bin/cp doing the same on the host (the baseline).
 */
static void fs_copy(const char *sock, const char *name, const char *dir, const char *src,
	uint64_t bytes, double *wr, double *rd)
{
	char up[256], remote[300], back[256];

	snprintf(up, sizeof(up), "%s/%s.up", dir, name ? name : "direct");
	snprintf(back, sizeof(back), "%s/%s.back", dir, name ? name : "direct");
	snprintf(remote, sizeof(remote), "%s:%s", name ? name : "", up);
	if (name) {
		*wr = (double)bytes / run_timed((char *[]){SW_SANDWIRE_BIN, "--socket", (char *)sock,
					      "cp", (char *)src, remote, NULL}) / 1e6;
		*rd = (double)bytes / run_timed((char *[]){SW_SANDWIRE_BIN, "--socket", (char *)sock,
					      "cp", remote, back, NULL}) / 1e6;
	} else {
		*wr = (double)bytes / run_timed((char *[]){"/bin/cp", (char *)src, up, NULL}) / 1e6;
		*rd = (double)bytes / run_timed((char *[]){"/bin/cp", up, back, NULL}) / 1e6;
	}
	check_same(src, up);
	check_same(src, back);
	unlink(up);
	unlink(back);
}

static void copy_stats(const char *sock, uint64_t *copies, uint64_t *bytes);

static void add_stats(const struct engine_shard_stats *st, void *ctx)
{
	uint64_t *v = ctx;

	v[0] += st->copies;
	v[1] += st->copy_bytes;
}

static void copy_stats(const char *sock, uint64_t *copies, uint64_t *bytes)
{
	struct swc c;
	struct swc_result res;
	char err[256];
	uint64_t v[2] = {0, 0};

	if (swc_connect(&c, sock, err, sizeof(err)) == 0 &&
		swc_call_simple(&c, ENGINE_V_STATS, NULL, &res, err, sizeof(err)) == 0 && res.ok)
		engine_decode_stats(res.data, res.data_len, add_stats, v);
	swc_close(&c);
	*copies = v[0];
	*bytes = v[1];
}

int main(int argc, char **argv)
{
	unsigned mib = 256, shards = 2, conns = 1000;
	double secs = 3;
	const char *agent = NULL, *peer = NULL;
	uint16_t phost[3];
	char dir[] = "/tmp/sw-port-bench.XXXXXX", sock[128];
	uint16_t guest[3], host[3];
	struct server sink, source;
	pthread_t t;
	int efd, status;
	pid_t pid;
	struct rlimit rl;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--shards"))
			shards = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--conns"))
			conns = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--secs"))
			secs = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--agent"))
			agent = argv[i + 1];
		else if (!strcmp(argv[i], "--peer"))
			peer = argv[i + 1];
		else {
			fprintf(stderr, "usage: sw-port-bench [--mib N] [--shards N] [--conns N] [--secs S] "
					"[--agent PATH] [--peer PATH]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	g_total = (uint64_t)mib << 20;
	sink = (struct server){listen_any(&guest[0]), sink_conn};
	source = (struct server){listen_any(&guest[1]), source_conn};
	efd = listen_any(&guest[2]);
	pthread_create(&t, NULL, server_loop, &sink);
	pthread_create(&t, NULL, server_loop, &source);
	pthread_create(&t, NULL, echo_loop, (void *)(intptr_t)efd);
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(sock, sizeof(sock), "%s/sandwired.sock", dir);
	pid = start_daemon(sock, shards, agent);
	create_sandbox(sock, "bench", NULL, guest, host, 3);
	if (peer)
		create_sandbox(sock, "peer", peer, guest, phost, 3);

	printf("sw-port-bench: sandwired --shards %u, agent %s, %u MiB per transfer, MB/s (port / "
	       "direct)\n",
		shards, agent ? agent : "sandwire-agent", mib);
	for (unsigned s = 1; s <= 8; s *= 8) {
		double d_in = throughput(guest[0], true, s), p_in = throughput(host[0], true, s);
		double d_out = throughput(guest[1], false, s), p_out = throughput(host[1], false, s);

		printf("  %u stream%s host->guest  %8.0f  direct %8.0f  ratio %.2fx\n", s, s > 1 ? "s" : " ",
			p_in, d_in, p_in / d_in);
		printf("  %u stream%s guest->host  %8.0f  direct %8.0f  ratio %.2fx\n", s, s > 1 ? "s" : " ",
			p_out, d_out, p_out / d_out);
		if (peer) {
			double q_in = throughput(phost[0], true, s), q_out = throughput(phost[1], false, s);

			printf("    peer agent: host->guest %8.0f (this/peer %.2fx), guest->host %8.0f "
			       "(this/peer %.2fx)\n",
				q_in, p_in / q_in, q_out, p_out / q_out);
		}
	}
	{
		double e = exec_stdout(sock, "bench", mib);

		printf("  exec stdout (head -c %u MiB)   %8.0f MB/s\n", mib, e);
		if (peer) {
			double q = exec_stdout(sock, "peer", mib);

			printf("    peer agent               %8.0f MB/s (this/peer %.2fx)\n", q, e / q);
		}
	}
	{
		char src[160];
		double dw, dr, w, r;

		snprintf(src, sizeof(src), "%s/file", dir);
		make_file(src, g_total);
		fs_copy(sock, NULL, dir, src, g_total, &dw, &dr);
		fs_copy(sock, "bench", dir, src, g_total, &w, &r);
		printf("  files, sandwire cp of %u MiB (process start included; direct: /bin/cp):\n", mib);
		printf("    write into the sandbox %8.0f  direct %8.0f  ratio %.2fx\n", w, dw, w / dw);
		printf("    read out of it         %8.0f  direct %8.0f  ratio %.2fx\n", r, dr, r / dr);
		if (peer) {
			double qw, qr;

			fs_copy(sock, "peer", dir, src, g_total, &qw, &qr);
			printf("    peer agent: write %8.0f (this/peer %.2fx), read %8.0f (this/peer %.2fx)\n",
				qw, w / qw, qr, r / qr);
		}
		unlink(src);
	}
	{
		double dp50, dp99, drps, pp50, pp99, prps;
		uint64_t copies, bytes;

		echo_latency(guest[2], conns, secs, &dp50, &dp99, &drps);
		echo_latency(host[2], conns, secs, &pp50, &pp99, &prps);
		printf("  echo, %u connections, 64 B, one in flight each (us):\n", conns);
		printf("    port   p50 %7.1f  p99 %7.1f  %8.0f req/s\n", pp50, pp99, prps);
		printf("    direct p50 %7.1f  p99 %7.1f  %8.0f req/s\n", dp50, dp99, drps);
		printf("    ratio  p50 %.2fx  p99 %.2fx  req/s %.2fx\n", pp50 / dp50, pp99 / dp99, prps / drps);
		copy_stats(sock, &copies, &bytes);
		printf("  user-space payload copies in the daemon: %llu (%llu bytes)\n",
			(unsigned long long)copies, (unsigned long long)bytes);
	}
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	rmdir(dir);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "sw-port-bench: sandwired ended with status 0x%x\n", status);
		return 1;
	}
	return 0;
}
