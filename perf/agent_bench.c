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
 *   tcp bulk          the same two streams as generation-9 raw bulk records
 *                     (protocol-gen9.md G1, G4, G5.1) on a fresh agent each,
 *                     booted by a gen-9 host: 256 KiB records, an 8 MiB
 *                     guest->host window; every byte checked against a pattern
 *                     at the receiver, direct baselines checked the same way
 *
 * Usage: sw-agent-bench [--agent PATH] [--runs N] [--mib N]
 * Any agent that speaks the protocol over --fd 3 can be measured with --agent
 * (only sandwire-agent gets its own options).  A host that the agent meters
 * (ready announces barrier version 2) keeps within the aggregate input grant
 * of G6 on every row; an agent below generation 8 gets no bulk rows.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "perf/client/agent_client.h"
#include "proto/bulk.h"

extern char **environ;

struct bench {
	struct agent_client c;
	uint32_t next_id;
	bool metered;			       /* the agent meters host input (G6) */
	struct proto_workload_transport grant; /* largest aggregate grant seen */
	struct proto_workload_transport used;  /* host input since init.ack */
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
 * Whether the frame just decoded is an aggregate input grant (G6, id
 * 0xFFFFFFFF); the largest value of each counter is kept.
 */
static bool take_grant(struct bench *b)
{
	const struct proto_workload_transport *g = &b->c.msg.u.workload_transport_credit;
	struct proto_workload_transport *k = &b->grant;

	if (b->c.frame.id != PROTO_WORKLOAD_CREDIT_ID ||
		b->c.msg.type != PROTO_T_WORKLOAD_TRANSPORT_CREDIT)
		return false;
	k->control_bytes =
		g->control_bytes > k->control_bytes ? g->control_bytes : k->control_bytes;
	k->control_frames =
		g->control_frames > k->control_frames ? g->control_frames : k->control_frames;
	k->bulk_bytes = g->bulk_bytes > k->bulk_bytes ? g->bulk_bytes : k->bulk_bytes;
	k->bulk_frames = g->bulk_frames > k->bulk_frames ? g->bulk_frames : k->bulk_frames;
	return true;
}

/* After boot (ready in b->c.msg): meter our input from the implicit initial window if announced. */
static void meter_from_ready(struct bench *b)
{
	const struct proto_ready *r = &b->c.msg.u.ready;

	b->metered = r->workload_transport_barrier_version.set &&
		     r->workload_transport_barrier_version.v == PROTO_WORKLOAD_BARRIER_VERSION;
	b->grant = (struct proto_workload_transport){PROTO_WORKLOAD_CONTROL_BYTES,
		PROTO_WORKLOAD_CONTROL_FRAMES, PROTO_WORKLOAD_DATA_BYTES,
		PROTO_WORKLOAD_DATA_FRAMES};
	b->used = (struct proto_workload_transport){0};
}

/* Whether a data (else control) frame of <size> bytes fits the aggregate grant now. */
static bool g6_fits(const struct bench *b, bool data, size_t size)
{
	if (!b->metered)
		return true;
	if (data)
		return b->used.bulk_bytes + size <= b->grant.bulk_bytes &&
		       b->used.bulk_frames + 1 <= b->grant.bulk_frames;
	return b->used.control_bytes + size <= b->grant.control_bytes &&
	       b->used.control_frames + 1 <= b->grant.control_frames;
}

static void g6_count(struct bench *b, bool data, size_t size)
{
	if (data) {
		b->used.bulk_bytes += size;
		b->used.bulk_frames++;
	} else {
		b->used.control_bytes += size;
		b->used.control_frames++;
	}
}

/*
 * Next frame for <id>.  Aggregate grants are taken on the way, and late
 * frames for streams this host already closed (a destination's tcp.eof after
 * our tcp.close) are skipped, as spec F14 asks of every receiver; a frame for
 * an id not opened yet is a bug.
 */
static void recv_for(struct bench *b, uint32_t id)
{
	for (;;) {
		int rc = agent_client_recv(&b->c, 30000);

		if (rc <= 0)
			die("receive", rc == 0 ? -ETIMEDOUT : rc);
		if (take_grant(b))
			continue;
		if (b->c.frame.id == id)
			return;
		if (b->c.frame.id > id) {
			fprintf(stderr, "sw-agent-bench: frame for id %u while waiting on %u\n",
				b->c.frame.id, id);
			exit(1);
		}
	}
}

/* Whether G6 counts <t> as data input (exec stdin, tcp data/eof, fs data) rather than control. */
static bool is_data_input(enum proto_type t)
{
	return t == PROTO_T_EXEC_STDIN || t == PROTO_T_TCP_DATA || t == PROTO_T_TCP_EOF ||
	       t == PROTO_T_FS_DATA;
}

/* Encode <m> for <id> into the client's buffer; returns the frame size. */
static size_t encode_msg(struct bench *b, uint32_t id, const struct proto_msg *m)
{
	long n = proto_frame_encode(b->c.out, PROTO_MAX_WIRE_SIZE, id, m);

	if (n < 0)
		die("encode", (int)n);
	return (size_t)n;
}

/* Send <m> on <id> if it fits the aggregate grant now; returns whether it was sent. */
static bool try_send(struct bench *b, uint32_t id, const struct proto_msg *m)
{
	bool data = is_data_input(m->type);
	size_t n = encode_msg(b, id, m);
	int rc;

	if (!g6_fits(b, data, n))
		return false;
	rc = agent_client_send_raw(&b->c, b->c.out, n);
	if (rc < 0)
		die("send", rc);
	g6_count(b, data, n);
	return true;
}

/*
 * Send <m> on <id>.  A metered host first waits, taking grants, until the
 * frame fits its aggregate grant; nothing but grants and late frames of
 * earlier ids may arrive meanwhile (no caller has a stream in flight then).
 */
static void send_msg(struct bench *b, uint32_t id, const struct proto_msg *m)
{
	while (!try_send(b, id, m)) {
		int rc = agent_client_recv(&b->c, 30000);

		if (rc <= 0)
			die("waiting for aggregate credit", rc == 0 ? -ETIMEDOUT : rc);
		if (!take_grant(b) && b->c.frame.id >= id)
			die("frame while waiting for aggregate credit", -EPROTO);
	}
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

/*
 * The byte stream of the checked rows: byte i is pat[i % PAT_PERIOD], and
 * pat holds PAT_SPAN more bytes past the period, so any run of up to
 * PAT_SPAN bytes is one memcmp (or one send) at pat_at(offset).  The period
 * is prime, so a record sent at the wrong offset or a lost or repeated byte
 * shows.
 */
#define PAT_PERIOD 1000003u
#define PAT_SPAN PROTO_BULK_TCP_RECORD
static uint8_t *pat;

static void pat_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	pat = malloc(PAT_PERIOD + PAT_SPAN);
	if (!pat)
		die("pattern", -ENOMEM);
	for (size_t i = 0; i < PAT_PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pat[i] = (uint8_t)(x >> 56);
	}
	memcpy(pat + PAT_PERIOD, pat, PAT_SPAN);
}

static const uint8_t *pat_at(uint64_t offset)
{
	return pat + offset % PAT_PERIOD;
}

/*
 * A loopback peer for the TCP figures: sinks or sources <total> bytes on one
 * connection; with <pattern> the bytes are the pattern stream and the sink
 * checks every one.
 */
struct peer {
	int lfd;
	uint16_t port;
	uint64_t total;
	bool source;  /* send <total> bytes then close; else read until EOF */
	bool pattern; /* send / check pat_at() bytes; else send zeroes, count only */
	uint64_t moved;
	uint64_t bad_at; /* sink: offset of the first read that differs, or UINT64_MAX */
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
			size_t n = p->total - p->moved < sizeof(buf) ? p->total - p->moved
								     : sizeof(buf);
			const void *src = p->pattern ? (const void *)pat_at(p->moved) : buf;
			ssize_t w = send(fd, src, n, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			p->moved += (uint64_t)w;
		}
	} else {
		for (ssize_t r; (r = recv(fd, buf, sizeof(buf), 0)) > 0;) {
			if (p->pattern && p->bad_at == UINT64_MAX &&
				memcmp(buf, pat_at(p->moved), (size_t)r) != 0)
				p->bad_at = p->moved;
			p->moved += (uint64_t)r;
		}
	}
	close(fd);
	return NULL;
}

static void peer_start(struct peer *p, pthread_t *t, uint64_t total, bool source, bool pattern)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	p->total = total;
	p->source = source;
	p->pattern = pattern;
	p->bad_at = UINT64_MAX;
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
	peer_start(&p, &t, total, false, false);
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

	peer_start(&p, &t, total, false, false);
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
	peer_start(&p, &t, total, true, false);
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

	peer_start(&p, &t, total, true, false);
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

/* ---- TCP raw bulk (generation 9) ------------------------------------------ */

#define BULK_WINDOW PROTO_BULK_DEFAULT_WINDOW /* the host's guest->host window */

/* Report a frame that has no place here (with tcp.failed's text) and stop. */
static void unexpected(struct bench *b, const char *what)
{
	const struct proto_str *e = &b->c.msg.u.tcp_failed.error;
	bool failed = b->c.msg.type == PROTO_T_TCP_FAILED;

	fprintf(stderr, "sw-agent-bench: %s: got %s on id %u%s%.*s\n", what,
		proto_type_name(b->c.msg.type), b->c.frame.id, failed ? ": " : "",
		failed ? (int)e->len : 0, failed ? e->ptr : "");
	exit(1);
}

/* The boot sequence as a generation-9 host (v 9 bootstrap and init.ack); leaves ready in b->c.msg.
 */
static void boot9(struct bench *b)
{
	struct proto_msg m = {.type = PROTO_T_BOOTSTRAP, .v = 9};

	send_msg(b, 0, &m);
	recv_for(b, 0);
	if (b->c.msg.type != PROTO_T_INIT_RESOLVED)
		unexpected(b, "boot");
	m = (struct proto_msg){.type = PROTO_T_INIT_ACK, .v = 9};
	send_msg(b, 0, &m);
	recv_for(b, 0);
	if (b->c.msg.type != PROTO_T_READY)
		unexpected(b, "boot");
	meter_from_ready(b);
}

/* One TCP stream in bulk mode, driven by the host: <h2g_total> pattern bytes out, records in. */
struct bulk_stream {
	uint32_t id;
	uint64_t h2g_total;
	struct proto_bulk_accepted acc;
	struct proto_bulk_tx h2g;	    /* our records, within the agent's credit */
	struct proto_bulk_rx g2h;	    /* the agent's records, within ours */
	struct proto_bulk_credit grant_out; /* our next g2h credit, when <grant_due> */
	bool grant_due, finish_sent, g2h_finished, closed;
	double g2h_finished_at; /* when the agent's bulk.finish came */
	uint64_t bad_at;	/* offset of the first g2h record not matching the pattern */
};

/* core.tcp.connect with a bulk offer; then tcp.connected and a valid core.bulk.accepted. */
static void bulk_open(struct bench *b, struct bulk_stream *s, uint16_t port)
{
	const struct proto_bulk_offer o = {
		PROTO_BULK_FORMAT_RAW_V1, PROTO_BULK_TCP_RECORD, BULK_WINDOW};
	struct proto_msg m = {.type = PROTO_T_TCP_CONNECT, .v = 9};
	int rc;

	s->id = ++b->next_id;
	s->bad_at = UINT64_MAX;
	m.u.tcp_connect.host = (struct proto_str){"127.0.0.1", 9};
	m.u.tcp_connect.port = port;
	m.u.tcp_connect.bulk.set = true;
	m.u.tcp_connect.bulk.v = o;
	send_msg(b, s->id, &m);
	recv_for(b, s->id);
	if (b->c.msg.type != PROTO_T_TCP_CONNECTED)
		unexpected(b, "tcp.connect with a bulk offer");
	recv_for(b, s->id);
	if (b->c.msg.type != PROTO_T_BULK_ACCEPTED)
		unexpected(b, "waiting for core.bulk.accepted");
	s->acc = b->c.msg.u.bulk_accepted;
	rc = proto_bulk_accepted_check(&s->acc, &o, PROTO_BULK_KIND_TCP, PROTO_BULK_FLOWS_TCP);
	if (rc == 0)
		rc = proto_bulk_tx_init(&s->h2g, PROTO_BULK_KIND_TCP, PROTO_BULK_H2G,
			s->acc.max_record_payload, s->acc.host_to_guest_credit_limit);
	if (rc == 0)
		rc = proto_bulk_rx_init(&s->g2h, PROTO_BULK_KIND_TCP, PROTO_BULK_G2H,
			s->acc.max_record_payload, BULK_WINDOW, BULK_WINDOW);
	if (rc < 0)
		die("core.bulk.accepted", rc);
}

/*
 * Take the frame agent_client_recv() returned <rc> for: a record of <s> is
 * checked against our credit and the pattern and granted back, the agent's
 * credit, finish and tcp.closed update <s>; grants and late frames of
 * earlier ids are taken quietly.
 */
static void bulk_take(struct bench *b, struct bulk_stream *s, int rc)
{
	struct proto_bulk_rec r;
	const uint8_t *p;

	if (rc == PROTO_E_BULK_RECORD) {
		rc = proto_bulk_frame_parse(&b->c.frame, &r, &p);
		if (rc == 0 && r.id != s->id)
			rc = PROTO_E_BULK_MISMATCH;
		if (rc == 0)
			rc = proto_bulk_rx_record(&s->g2h, &r);
		if (rc < 0)
			die("guest->host record", rc);
		if (s->bad_at == UINT64_MAX && memcmp(p, pat_at(r.offset), r.len) != 0)
			s->bad_at = r.offset;
		if (proto_bulk_rx_consume(&s->g2h, s->g2h.next_expected, &s->grant_out) == 1)
			s->grant_due = true;
		return;
	}
	if (rc < 0)
		die("receive", rc);
	if (take_grant(b) || b->c.frame.id < s->id)
		return;
	if (b->c.frame.id != s->id)
		unexpected(b, "bulk stream");
	switch (b->c.msg.type) {
	case PROTO_T_BULK_CREDIT:
		rc = proto_bulk_tx_credit(&s->h2g, &b->c.msg.u.bulk_credit);
		if (rc < 0)
			die("the agent's core.bulk.credit", rc);
		break;
	case PROTO_T_BULK_FINISH:
		rc = proto_bulk_rx_finish(&s->g2h, &b->c.msg.u.bulk_finish);
		if (rc < 0)
			die("the agent's core.bulk.finish", rc);
		s->g2h_finished = true;
		s->g2h_finished_at = now_s();
		break;
	case PROTO_T_TCP_CLOSED:
		s->closed = true;
		break;
	default:
		unexpected(b, "bulk stream");
	}
}

/* Receive one frame for <s> within <timeout_ms>; false on timeout. */
static bool bulk_pump(struct bench *b, struct bulk_stream *s, int timeout_ms)
{
	int rc = agent_client_recv(&b->c, timeout_ms);

	if (rc == 0)
		return false;
	bulk_take(b, s, rc);
	return true;
}

/* sendmsg() all of <iov>. */
static void send_iov(int fd, struct iovec *iov, size_t cnt)
{
	while (cnt > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = cnt};
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("send", w < 0 ? -errno : -EPIPE);
		for (; cnt > 0 && (size_t)w >= iov->iov_len; iov++, cnt--)
			w -= (ssize_t)iov->iov_len;
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
}

/* The next host->guest record of <s>: <n> pattern bytes, prefix and payload in one sendmsg. */
static void bulk_send_record(struct bench *b, struct bulk_stream *s, size_t n)
{
	uint8_t prefix[PROTO_BULK_PREFIX_SIZE];
	struct proto_bulk_rec r = {.id = s->id,
		.kind = PROTO_BULK_KIND_TCP,
		.flow = PROTO_BULK_H2G,
		.len = (uint32_t)n};
	struct iovec iov[2];
	int rc = proto_bulk_tx_admit(&s->h2g, n, &r.offset);

	if (rc == 0)
		rc = proto_bulk_prefix_write(prefix, sizeof(prefix), &r);
	if (rc < 0)
		die("host->guest record", rc);
	iov[0] = (struct iovec){prefix, sizeof(prefix)};
	iov[1] = (struct iovec){(void *)pat_at(r.offset), n};
	send_iov(b->c.fd, iov, 2);
	g6_count(b, true, PROTO_BULK_PREFIX_SIZE + n);
}

/*
 * Drive <s> to its tcp.closed as a host that keeps every rule: records only
 * within the agent's credit and the aggregate grant, our guest->host credit
 * granted back as records are checked, bulk.finish once all is sent, and
 * reading whenever nothing can be sent.
 */
static void bulk_run(struct bench *b, struct bulk_stream *s)
{
	while (!s->closed) {
		uint64_t left = s->h2g_total - s->h2g.next_offset;
		uint32_t room = proto_bulk_tx_room(&s->h2g);
		size_t n = left < room ? (size_t)left : room;
		bool moved = false;

		if (s->grant_due) {
			struct proto_msg m = {.type = PROTO_T_BULK_CREDIT, .v = 9};

			m.u.bulk_credit = s->grant_out;
			moved = try_send(b, s->id, &m);
			s->grant_due = !moved;
		}
		if (n > 0 && g6_fits(b, true, PROTO_BULK_PREFIX_SIZE + n)) {
			bulk_send_record(b, s, n);
			moved = true;
		} else if (left == 0 && !s->finish_sent) {
			struct proto_msg m = {.type = PROTO_T_BULK_FINISH, .v = 9};
			struct proto_bulk_tx tx = s->h2g;

			if (proto_bulk_tx_finish(&tx, &m.u.bulk_finish) == 0 &&
				try_send(b, s->id, &m)) {
				s->h2g = tx;
				s->finish_sent = moved = true;
			}
		}
		if (moved) {
			while (bulk_pump(b, s, 0))
				;
			continue;
		}
		if (!bulk_pump(b, s, 30000)) {
			fprintf(stderr,
				"sw-agent-bench: bulk stream %u stuck: sent %llu of %llu (credit "
				"%llu), received %llu (credit %llu)\n",
				s->id, (unsigned long long)s->h2g.next_offset,
				(unsigned long long)s->h2g_total,
				(unsigned long long)s->h2g.credit_limit,
				(unsigned long long)s->g2h.next_expected,
				(unsigned long long)s->g2h.credit_limit);
			exit(1);
		}
	}
}

/* Start <argv> as the agent of <b> with its stderr going to a memfd, returned. */
static int spawn_logged(struct bench *b, const char *const *argv)
{
	int log = memfd_create("agent-stderr", MFD_CLOEXEC);
	int saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
	int rc;

	if (log < 0 || saved < 0 || dup2(log, 2) < 0)
		die("agent log", -errno);
	rc = agent_client_spawn(&b->c, argv);
	dup2(saved, 2);
	close(saved);
	if (rc < 0)
		die("start agent", rc);
	return log;
}

/*
 * Copy what the agent wrote to its stderr (<log>, closed here) to ours and
 * put the payload counters of sandwire-agent's exit line ("payload copies N
 * (B bytes), zero-copy payload Z bytes") in <out>, or "" without one.
 */
static void agent_log_replay(int log, char *out, size_t cap)
{
	unsigned long long copies, bytes, zc;
	struct stat st;
	char *text = NULL, *at;

	out[0] = '\0';
	if (fstat(log, &st) < 0 || st.st_size == 0)
		goto out;
	text = malloc((size_t)st.st_size + 1);
	if (!text || pread(log, text, (size_t)st.st_size, 0) != st.st_size)
		goto out;
	text[st.st_size] = '\0';
	fputs(text, stderr);
	at = strstr(text, "payload copies ");
	if (at && sscanf(at, "payload copies %llu (%llu bytes), zero-copy payload %llu bytes",
			  &copies, &bytes, &zc) == 3)
		snprintf(out, cap, "agent copies %llu (%.1f MiB), zero-copy %.1f MiB", copies,
			(double)bytes / 1048576.0, (double)zc / 1048576.0);
out:
	free(text);
	close(log);
}

/* One bulk figure: the agent's time, the direct time, the exit counters. */
struct bulk_row {
	double agent_s, direct_s;
	struct proto_bulk_accepted acc;
	char counters[128];
};

/* Send <total> pattern bytes on <fd> in record-sized pieces. */
static void direct_send_pattern(int fd, uint64_t total)
{
	for (uint64_t sent = 0; sent < total;) {
		size_t n = total - sent < PAT_SPAN ? (size_t)(total - sent) : PAT_SPAN;
		ssize_t w = send(fd, pat_at(sent), n, MSG_NOSIGNAL);

		if (w <= 0)
			die("direct send", w < 0 ? -errno : -EPIPE);
		sent += (uint64_t)w;
	}
}

/* Receive pattern bytes on <fd> to EOF; returns the count, <bad_at> the first mismatch. */
static uint64_t direct_recv_pattern(int fd, uint64_t *bad_at)
{
	static uint8_t buf[PAT_SPAN];
	uint64_t got = 0;

	*bad_at = UINT64_MAX;
	for (ssize_t r; (r = recv(fd, buf, sizeof(buf), 0)) > 0; got += (uint64_t)r)
		if (*bad_at == UINT64_MAX && memcmp(buf, pat_at(got), (size_t)r) != 0)
			*bad_at = got;
	return got;
}

/* Stop with a message unless <moved> == <total> and no byte differed. */
static void check_moved(const char *what, uint64_t moved, uint64_t total, uint64_t bad_at)
{
	if (moved == total && bad_at == UINT64_MAX)
		return;
	fprintf(stderr, "sw-agent-bench: %s: %llu of %llu bytes, first bad read at %lld\n", what,
		(unsigned long long)moved, (unsigned long long)total,
		bad_at == UINT64_MAX ? -1ll : (long long)bad_at);
	exit(1);
}

/*
 * Measure one direction of bulk TCP on a fresh agent (<argv>) booted by a
 * gen-9 host, then the same bytes directly.  Returns false, measuring
 * nothing, when the agent's ready is below generation 8 (no raw bulk).
 */
static bool bulk_row(const char *const *argv, bool h2g, uint64_t total, struct bulk_row *row)
{
	struct bench b = {0};
	struct bulk_stream s = {.h2g_total = h2g ? total : 0};
	struct peer p;
	pthread_t t;
	uint64_t got, bad_at;
	double t0;
	int log = spawn_logged(&b, argv), st, fd;

	boot9(&b);
	if (b.c.msg.v < 8) {
		agent_client_close(&b.c, 5000);
		agent_log_replay(log, row->counters, sizeof(row->counters));
		return false;
	}
	peer_start(&p, &t, total, !h2g, true);
	t0 = now_s();
	bulk_open(&b, &s, p.port);
	if (h2g)
		t0 = now_s(); /* host->guest: from the first record, as the CBOR row */
	bulk_run(&b, &s);
	row->agent_s = (h2g ? now_s() : s.g2h_finished_at) - t0;
	pthread_join(t, NULL);
	close(p.lfd);
	if (h2g)
		check_moved("tcp bulk host->guest", p.moved, total, p.bad_at);
	else
		check_moved("tcp bulk guest->host", s.g2h.next_expected, total, s.bad_at);
	row->acc = s.acc;
	st = agent_client_close(&b.c, 5000);
	agent_log_replay(log, row->counters, sizeof(row->counters));
	if (st != 0)
		fprintf(stderr, "sw-agent-bench: the bulk agent ended with status %d\n", st);

	peer_start(&p, &t, total, !h2g, true);
	t0 = now_s();
	fd = direct_connect(p.port);
	if (h2g) {
		direct_send_pattern(fd, total);
		shutdown(fd, SHUT_WR);
		pthread_join(t, NULL);
		got = p.moved;
		bad_at = p.bad_at;
	} else {
		got = direct_recv_pattern(fd, &bad_at);
	}
	row->direct_s = now_s() - t0;
	if (!h2g)
		pthread_join(t, NULL);
	close(fd);
	close(p.lfd);
	check_moved(h2g ? "direct host->guest" : "direct guest->host", got, total, bad_at);
	return true;
}

static void bench_tcp_bulk(const char *const *argv, unsigned mib)
{
	uint64_t total = (uint64_t)mib << 20;
	struct bulk_row up, down;

	if (!bulk_row(argv, true, total, &up)) {
		printf("tcp bulk: skipped, the agent's ready is below generation 8\n");
		return;
	}
	bulk_row(argv, false, total, &down);
	printf("tcp bulk, gen-9 raw records (%u MiB each way; records <= %u KiB, agent window "
	       "%llu KiB, host window %llu KiB; bytes checked)\n",
		mib, up.acc.max_record_payload >> 10,
		(unsigned long long)up.acc.host_to_guest_credit_limit >> 10,
		(unsigned long long)BULK_WINDOW >> 10);
	printf("  host->guest agent %8.1f MB/s   direct %8.1f MB/s   ratio %.2fx\n",
		(double)total / up.agent_s / 1e6, (double)total / up.direct_s / 1e6,
		up.direct_s / up.agent_s);
	if (up.counters[0])
		printf("                    %s\n", up.counters);
	printf("  guest->host agent %8.1f MB/s   direct %8.1f MB/s   ratio %.2fx\n",
		(double)total / down.agent_s / 1e6, (double)total / down.direct_s / 1e6,
		down.direct_s / down.agent_s);
	if (down.counters[0])
		printf("                    %s\n", down.counters);
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
	/* Only sandwire-agent knows --heartbeat-dir; other agents get just --fd 3. */
	const char *base = strrchr(agent, '/') ? strrchr(agent, '/') + 1 : agent;
	bool ours = strcmp(base, "sandwire-agent") == 0;
	const char *args[] = {
		agent, "--fd", "3", ours ? "--heartbeat-dir" : NULL, "/nonexistent", NULL};

	pat_init();
	rc = agent_client_spawn(&b.c, args);
	if (rc < 0)
		die("start agent", rc);
	rc = agent_client_boot(&b.c, 10000);
	if (rc < 0)
		die("boot agent", rc);
	meter_from_ready(&b);
	printf("agent: %s\n\n", agent);
	bench_exec_rtt(&b, runs);
	bench_exec_stdout(&b, mib);
	bench_tcp(&b, mib);
	rc = agent_client_close(&b.c, 5000);
	fflush(stdout);
	bench_tcp_bulk(args, mib);
	free(pat);
	return rc == 0 ? 0 : 1;
}
