/*
 * perf/agent_bench.c - sw-agent-bench: what sandwire-agent costs, measured
 * against the direct path in the same run (machines here are noisy, so
 * every figure comes with its baseline and the ratio).
 *
 *   exec round trip   exec.request(/bin/true) -> exec.exited, p50/p99,
 *                     vs posix_spawn + waitpid of /bin/true
 *   exec stdout       `head -c SIZE /dev/zero` through the agent, MB/s,
 *                     vs the same command writing into a plain pipe
 *   tcp host->guest   tcp.data frames through the agent to a loopback sink,
 *                     MB/s, vs the same bytes sent straight over loopback
 *   tcp guest->host   a loopback source through the agent, MB/s, vs the
 *                     same source read directly
 *
 * Usage: sw-agent-bench [--agent PATH] [--runs N] [--mib N]
 * Any agent that speaks the protocol over --fd 3 can be measured with --agent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "perf/client/agent_client.h"

extern char **environ;

struct bench {
	struct agent_client c;
	uint32_t next_id;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(size_t)(p * (double)(n - 1))];
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "sw-agent-bench: %s: %s\n", what,
		rc <= -1000 ? proto_strerror(rc) : strerror(-rc));
	exit(1);
}

/*
 * Next frame for <id>.  Late frames for streams this host already closed
 * (a destination's tcp.eof after our tcp.close) are skipped, as spec F14 asks
 * of every receiver; a frame for an id not opened yet is a bug.
 */
static void recv_for(struct bench *b, uint32_t id)
{
	for (;;) {
		int rc = agent_client_recv(&b->c, 30000);

		if (rc <= 0)
			die("receive", rc == 0 ? -ETIMEDOUT : rc);
		if (b->c.frame.id == id)
			return;
		if (b->c.frame.id > id) {
			fprintf(stderr, "sw-agent-bench: frame for id %u while waiting on %u\n",
				b->c.frame.id, id);
			exit(1);
		}
	}
}

static void send_msg(struct bench *b, uint32_t id, const struct proto_msg *m)
{
	long rc = agent_client_send(&b->c, id, m);

	if (rc < 0)
		die("send", (int)rc);
}

static void exec_start(struct bench *b, uint32_t id, const char *cmd, const struct proto_str *args,
	size_t nargs)
{
	struct proto_msg m = {.type = PROTO_T_EXEC_REQUEST};

	m.u.exec_request.cmd = (struct proto_str){cmd, strlen(cmd)};
	m.u.exec_request.args = args;
	m.u.exec_request.nargs = nargs;
	m.u.exec_request.rows = 24;
	m.u.exec_request.cols = 80;
	send_msg(b, id, &m);
}

/* Run the session to its end; returns the stdout bytes seen. */
static uint64_t exec_drain(struct bench *b, uint32_t id)
{
	uint64_t bytes = 0;

	for (;;) {
		recv_for(b, id);
		switch (b->c.msg.type) {
		case PROTO_T_EXEC_STDOUT:
		case PROTO_T_EXEC_STDERR:
			bytes += b->c.msg.u.data.len;
			break;
		case PROTO_T_EXEC_EXITED:
			return bytes;
		case PROTO_T_EXEC_FAILED:
			fprintf(stderr, "sw-agent-bench: exec failed: %.*s\n",
				(int)b->c.msg.u.exec_failed.message.len,
				b->c.msg.u.exec_failed.message.ptr);
			exit(1);
		default:
			break;
		}
	}
}

static void bench_exec_rtt(struct bench *b, int runs)
{
	double *agent = calloc((size_t)runs, sizeof(double));
	double *direct = calloc((size_t)runs, sizeof(double));
	char *const argv[] = {"/bin/true", NULL};

	for (int i = 0; i < runs; i++) {
		double t0 = now_s();
		uint32_t id = ++b->next_id;

		exec_start(b, id, "/bin/true", NULL, 0);
		exec_drain(b, id);
		agent[i] = now_s() - t0;
	}
	for (int i = 0; i < runs; i++) {
		double t0 = now_s();
		pid_t pid;
		int st;

		if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
			die("posix_spawn", -errno);
		waitpid(pid, &st, 0);
		direct[i] = now_s() - t0;
	}
	double ap50 = pct(agent, (size_t)runs, 0.5), ap99 = pct(agent, (size_t)runs, 0.99);
	double dp50 = pct(direct, (size_t)runs, 0.5), dp99 = pct(direct, (size_t)runs, 0.99);
	printf("exec round trip (/bin/true, %d runs)\n", runs);
	printf("  agent          p50 %8.3f ms   p99 %8.3f ms\n", ap50 * 1e3, ap99 * 1e3);
	printf("  posix_spawn    p50 %8.3f ms   p99 %8.3f ms\n", dp50 * 1e3, dp99 * 1e3);
	printf("  ratio agent/direct p50 %.2fx  p99 %.2fx\n", ap50 / dp50, ap99 / dp99);
	free(agent);
	free(direct);
}

static void bench_exec_stdout(struct bench *b, unsigned mib)
{
	char cmd[96], buf[1 << 16];
	struct proto_str args[2];
	uint64_t bytes, total = (uint64_t)mib << 20, got = 0;
	double t0, t_agent, t_pipe;
	uint32_t id = ++b->next_id;
	int p[2];
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "head -c %llu /dev/zero", (unsigned long long)total);
	args[0] = (struct proto_str){"-c", 2};
	args[1] = (struct proto_str){cmd, strlen(cmd)};
	t0 = now_s();
	exec_start(b, id, "sh", args, 2);
	bytes = exec_drain(b, id);
	t_agent = now_s() - t0;
	if (bytes != total) {
		fprintf(stderr, "sw-agent-bench: exec stdout: got %llu bytes, expected %llu\n",
			(unsigned long long)bytes, (unsigned long long)total);
		exit(1);
	}

	if (pipe(p) < 0)
		die("pipe", -errno);
	t0 = now_s();
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (ssize_t r; (r = read(p[0], buf, sizeof(buf))) > 0;)
		got += (uint64_t)r;
	close(p[0]);
	waitpid(pid, NULL, 0);
	t_pipe = now_s() - t0;
	printf("exec stdout (%u MiB of `head -c`)\n", mib);
	printf("  agent          %8.1f MB/s\n", (double)total / t_agent / 1e6);
	printf("  plain pipe     %8.1f MB/s\n", (double)got / t_pipe / 1e6);
	printf("  ratio agent/direct %.2fx\n", ((double)total / t_agent) / ((double)got / t_pipe));
}

/* A loopback peer for the TCP figures: sinks or sources <total> bytes on one connection. */
struct peer {
	int lfd;
	uint16_t port;
	uint64_t total;
	bool source; /* send <total> bytes then close; else read until EOF */
	uint64_t moved;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	static char buf[1 << 16];
	int fd = accept(p->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	if (p->source) {
		while (p->moved < p->total) {
			size_t n = p->total - p->moved < sizeof(buf) ? p->total - p->moved : sizeof(buf);
			ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			p->moved += (uint64_t)w;
		}
	} else {
		for (ssize_t r; (r = recv(fd, buf, sizeof(buf), 0)) > 0;)
			p->moved += (uint64_t)r;
	}
	close(fd);
	return NULL;
}

static void peer_start(struct peer *p, pthread_t *t, uint64_t total, bool source)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	p->total = total;
	p->source = source;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		listen(p->lfd, 4) < 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &len) < 0)
		die("loopback listener", -errno);
	p->port = ntohs(sa.sin_port);
	pthread_create(t, NULL, peer_main, p);
}

static int direct_connect(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		.sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect", -errno);
	return fd;
}

static uint32_t agent_tcp_open(struct bench *b, uint16_t port)
{
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT};
	uint32_t id = ++b->next_id;

	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	send_msg(b, id, &m);
	recv_for(b, id);
	if (b->c.msg.type != PROTO_T_TCP_CONNECTED) {
		fprintf(stderr, "sw-agent-bench: tcp.connect got %s\n", proto_type_name(b->c.msg.type));
		exit(1);
	}
	return id;
}

static void bench_tcp(struct bench *b, unsigned mib)
{
	static uint8_t payload[1 << 16];
	uint64_t total = (uint64_t)mib << 20, got = 0;
	struct proto_msg m = {.type = PROTO_T_TCP_DATA};
	double t0, t_up, t_up_direct, t_down, t_down_direct;
	struct peer p;
	pthread_t t;
	uint32_t id;
	int fd;

	/* host -> guest: tcp.data frames of 64 KiB, then EOF; timed until the sink saw all. */
	peer_start(&p, &t, total, false);
	id = agent_tcp_open(b, p.port);
	t0 = now_s();
	m.u.data = (struct proto_data){payload, sizeof(payload)};
	for (uint64_t sent = 0; sent < total; sent += sizeof(payload))
		send_msg(b, id, &m);
	m = (struct proto_msg){.type = PROTO_T_TCP_EOF};
	send_msg(b, id, &m);
	pthread_join(t, NULL);
	t_up = now_s() - t0;
	if (p.moved != total)
		die("tcp host->guest: short transfer", -EIO);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	send_msg(b, id, &m);
	close(p.lfd);

	peer_start(&p, &t, total, false);
	fd = direct_connect(p.port);
	t0 = now_s();
	for (uint64_t sent = 0; sent < total;) {
		ssize_t w = send(fd, payload, sizeof(payload), MSG_NOSIGNAL);

		if (w <= 0)
			die("direct send", -errno);
		sent += (uint64_t)w;
	}
	shutdown(fd, SHUT_WR);
	pthread_join(t, NULL);
	t_up_direct = now_s() - t0;
	close(fd);
	close(p.lfd);

	/* guest -> host: the peer sends <total> bytes; timed until the EOF frame. */
	peer_start(&p, &t, total, true);
	t0 = now_s();
	id = agent_tcp_open(b, p.port);
	for (;;) {
		recv_for(b, id);
		if (b->c.msg.type == PROTO_T_TCP_DATA)
			got += b->c.msg.u.data.len;
		else if (b->c.msg.type == PROTO_T_TCP_EOF)
			break;
		else
			die("tcp guest->host: unexpected frame", -EPROTO);
	}
	t_down = now_s() - t0;
	pthread_join(t, NULL);
	if (got != total)
		die("tcp guest->host: short transfer", -EIO);
	m = (struct proto_msg){.type = PROTO_T_TCP_CLOSE};
	send_msg(b, id, &m);
	close(p.lfd);

	peer_start(&p, &t, total, true);
	t0 = now_s();
	fd = direct_connect(p.port);
	got = 0;
	for (ssize_t r; (r = recv(fd, payload, sizeof(payload), 0)) > 0;)
		got += (uint64_t)r;
	t_down_direct = now_s() - t0;
	pthread_join(t, NULL);
	close(fd);
	close(p.lfd);

	printf("tcp stream (%u MiB each way)\n", mib);
	printf("  host->guest agent %8.1f MB/s   direct %8.1f MB/s   ratio %.2fx\n",
		(double)total / t_up / 1e6, (double)total / t_up_direct / 1e6, t_up_direct / t_up);
	printf("  guest->host agent %8.1f MB/s   direct %8.1f MB/s   ratio %.2fx\n",
		(double)total / t_down / 1e6, (double)total / t_down_direct / 1e6,
		t_down_direct / t_down);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"agent", required_argument, NULL, 'a'},
		{"runs", required_argument, NULL, 'r'},
		{"mib", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *agent = SW_AGENT_BIN;
	int runs = 300, c, rc;
	unsigned mib = 1024;
	struct bench b = {0};

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			agent = optarg;
			break;
		case 'r':
			runs = atoi(optarg);
			break;
		case 'm':
			mib = (unsigned)atoi(optarg);
			break;
		default:
			printf("usage: sw-agent-bench [--agent PATH] [--runs N] [--mib N]\n"
			       "Measures an agent (default: the sandwire-agent built beside this\n"
			       "program) against the direct path in the same run.\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (runs < 2 || mib < 1) {
		fprintf(stderr, "sw-agent-bench: --runs must be >= 2 and --mib >= 1\n");
		return 2;
	}
	const char *args[] = {agent, "--fd", "3", "--heartbeat-dir", "/nonexistent", NULL};

	rc = agent_client_spawn(&b.c, args);
	if (rc < 0)
		die("start agent", rc);
	rc = agent_client_boot(&b.c, 10000);
	if (rc < 0)
		die("boot agent", rc);
	printf("agent: %s\n\n", agent);
	bench_exec_rtt(&b, runs);
	bench_exec_stdout(&b, mib);
	bench_tcp(&b, mib);
	rc = agent_client_close(&b.c, 5000);
	return rc == 0 ? 0 : 1;
}
