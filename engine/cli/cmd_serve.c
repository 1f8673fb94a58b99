/*
 * engine/cli/cmd_serve.c - `sandwire serve`: the engine in this process,
 * in the foreground, and optionally a Prometheus endpoint.
 *
 * The control loop runs on the main thread (it must outlive the sandboxes:
 * see engine/daemon.h).  SIGTERM and SIGINT are blocked before any thread
 * starts and read from a signalfd by engine_run.
 *
 * --metrics ADDR: one more thread accepts HTTP connections on ADDR and
 * answers each with the daemon's counters in the Prometheus text format.
 * It gathers them as any client would: a list and a stats request on the
 * daemon's own socket, so it shares no state with the engine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "engine/daemon.h"

#define METRICS_IO_TIMEOUT_S 5 /* a metrics client that stalls longer is dropped */

enum {
	OPT_SHARDS = 0x1300,
	OPT_PIN,
	OPT_AGENT,
	OPT_MSB_HOME,
	OPT_NO_AGENT_SOCK,
	OPT_BOOT_TIMEOUT,
	OPT_GRACE,
	OPT_POOL_CHUNKS,
	OPT_METRICS,
	OPT_READY_FD,
};

struct metrics {
	int lfd;
	char socket[108];
	pthread_t thread;
};

#define SHARD_FIELD(f) offsetof(struct engine_shard_stats, f)

/* One per-shard series: a field of struct engine_shard_stats. */
static const struct metric_def {
	const char *name;
	const char *type;
	const char *help;
	size_t off;
	bool u32;
} metric_defs[] = {
	{"clients", "gauge", "client connections", SHARD_FIELD(clients), false},
	{"consoles", "gauge", "sandbox consoles", SHARD_FIELD(consoles), false},
	{"port_connections", "gauge", "published-port connections", SHARD_FIELD(port_conns), false},
	{"frames_in_total", "counter", "frames routed from guests", SHARD_FIELD(frames_in), false},
	{"frames_out_total", "counter", "frames routed to guests", SHARD_FIELD(frames_out), false},
	{"bytes_in_total", "counter", "bytes routed from guests", SHARD_FIELD(bytes_in), false},
	{"bytes_out_total", "counter", "bytes routed to guests", SHARD_FIELD(bytes_out), false},
	{"cross_shard_sent_total", "counter", "messages sent to other shards",
		SHARD_FIELD(calls_sent), false},
	{"cross_shard_run_total", "counter", "messages run from other shards",
		SHARD_FIELD(calls_run), false},
	{"inbox_depth", "gauge", "messages waiting in the shard's inbox", SHARD_FIELD(inbox_depth),
		true},
	{"copies_total", "counter", "user-space payload copies", SHARD_FIELD(copies), false},
	{"copy_bytes_total", "counter", "bytes of user-space payload copies",
		SHARD_FIELD(copy_bytes), false},
	{"drops_total", "counter", "frames dropped (no owner)", SHARD_FIELD(drops), false},
	{"refused_total", "counter", "client frames refused (id not the client's)",
		SHARD_FIELD(refused), false},
	{"stalls_total", "counter", "times a reader paused for a full queue", SHARD_FIELD(stalls),
		false},
	{"bulk_streams_total", "counter", "published-port streams moved as raw bulk records",
		SHARD_FIELD(bulk_streams), false},
	{"pool_chunks_in_use", "gauge", "buffer chunks in use", SHARD_FIELD(pool_in_use), false},
	{"pool_chunks", "gauge", "buffer chunks", SHARD_FIELD(pool_total), false},
};

#define SANDBOX_FIELD(f) offsetof(struct engine_info, f)

/* One per-sandbox series: a field of struct engine_info. */
static const struct metric_def sandbox_defs[] = {
	{"clients", "gauge", "attached clients", SANDBOX_FIELD(clients), true},
	{"frames_in_total", "counter", "console frames from the guest", SANDBOX_FIELD(frames_in),
		false},
	{"frames_out_total", "counter", "console frames to the guest", SANDBOX_FIELD(frames_out),
		false},
	{"bytes_in_total", "counter", "console bytes from the guest", SANDBOX_FIELD(bytes_in),
		false},
	{"bytes_out_total", "counter", "console bytes to the guest", SANDBOX_FIELD(bytes_out),
		false},
};

struct metrics_body {
	FILE *f;
	struct engine_shard_stats *shards;
	size_t nshards;
	struct engine_info *sbs;
	size_t nsbs;
	bool oom;
};

static void metrics_shard(const struct engine_shard_stats *st, void *ctx)
{
	struct metrics_body *b = ctx;
	struct engine_shard_stats *v = realloc(b->shards, (b->nshards + 1) * sizeof(*v));

	if (!v) {
		b->oom = true;
		return;
	}
	b->shards = v;
	b->shards[b->nshards++] = *st;
}

static void metrics_sandbox(const struct engine_info *in, void *ctx)
{
	struct metrics_body *b = ctx;
	struct engine_info *v = realloc(b->sbs, (b->nsbs + 1) * sizeof(*v));

	if (!v) {
		b->oom = true;
		return;
	}
	b->sbs = v;
	b->sbs[b->nsbs++] = *in;
}

/* The value of series <d> in the struct at <base>. */
static uint64_t metric_value(const struct metric_def *d, const void *base)
{
	const char *p = (const char *)base + d->off;

	return d->u32 ? *(const uint32_t *)p : *(const uint64_t *)p;
}

/* Every series of the samples in <b>, one group per metric name (the format wants that). */
static void metrics_write(struct metrics_body *b)
{
	for (size_t i = 0; i < sizeof(metric_defs) / sizeof(metric_defs[0]); i++) {
		const struct metric_def *d = &metric_defs[i];

		fprintf(b->f, "# HELP sandwire_shard_%s %s\n# TYPE sandwire_shard_%s %s\n", d->name,
			d->help, d->name, d->type);
		for (size_t s = 0; s < b->nshards; s++)
			fprintf(b->f, "sandwire_shard_%s{shard=\"%u\"} %" PRIu64 "\n", d->name,
				b->shards[s].shard, metric_value(d, &b->shards[s]));
	}
	fprintf(b->f, "# HELP sandwire_sandbox_info sandboxes and their state\n"
		      "# TYPE sandwire_sandbox_info gauge\n");
	for (size_t s = 0; s < b->nsbs; s++)
		fprintf(b->f,
			"sandwire_sandbox_info{sandbox=\"%s\",state=\"%s\",backend=\"%s\"} 1\n",
			b->sbs[s].name, b->sbs[s].state, b->sbs[s].backend);
	for (size_t i = 0; i < sizeof(sandbox_defs) / sizeof(sandbox_defs[0]); i++) {
		const struct metric_def *d = &sandbox_defs[i];

		fprintf(b->f, "# HELP sandwire_sandbox_%s %s\n# TYPE sandwire_sandbox_%s %s\n",
			d->name, d->help, d->name, d->type);
		for (size_t s = 0; s < b->nsbs; s++)
			fprintf(b->f, "sandwire_sandbox_%s{sandbox=\"%s\"} %" PRIu64 "\n", d->name,
				b->sbs[s].name, metric_value(d, &b->sbs[s]));
	}
}

/* The exposition text into <b->f>.  Returns 0 or -1 when the daemon did not answer. */
static int metrics_gather(struct metrics *m, struct metrics_body *b)
{
	struct swc_result res;
	char err[512];
	struct swc c;
	int rc = -1;

	if (swc_connect(&c, m->socket, err, sizeof(err)) < 0)
		return -1;
	c.timeout_ms = METRICS_IO_TIMEOUT_S * 1000;
	if (swc_call_simple(&c, ENGINE_V_STATS, NULL, &res, err, sizeof(err)) < 0 || !res.ok ||
		engine_decode_stats(res.data, res.data_len, metrics_shard, b) < 0 || b->oom)
		goto out;
	if (swc_call_simple(&c, ENGINE_V_LIST, NULL, &res, err, sizeof(err)) < 0 || !res.ok ||
		engine_decode_list(res.data, res.data_len, metrics_sandbox, b) < 0 || b->oom)
		goto out;
	metrics_write(b);
	rc = 0;
out:
	swc_close(&c);
	return rc;
}

/* Answer one HTTP connection (whatever it asked) with the metrics. */
static void metrics_answer(struct metrics *m, int fd)
{
	struct timeval tv = {METRICS_IO_TIMEOUT_S, 0};
	struct metrics_body b = {0};
	char req[4096], head[256];
	size_t got = 0, len = 0;
	char *text = NULL;
	ssize_t n;
	int ok;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1 && (n = read(fd, req + got, sizeof(req) - 1 - got)) > 0) {
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	b.f = open_memstream(&text, &len);
	if (!b.f)
		return;
	ok = metrics_gather(m, &b) == 0;
	if (!ok)
		fprintf(b.f, "sandwired at %s did not answer\n", m->socket);
	fclose(b.f);
	snprintf(head, sizeof(head),
		"HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		"Content-Length: %zu\r\nConnection: close\r\n\r\n",
		ok ? "200 OK" : "503 Service Unavailable", len);
	if (cli_write_all(fd, head, strlen(head)) == 0 && strncmp(req, "HEAD ", 5))
		cli_write_all(fd, text, len);
	free(text);
	free(b.shards);
	free(b.sbs);
}

static void *metrics_main(void *arg)
{
	struct metrics *m = arg;
	int fd;

	for (;;) {
		fd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
				errno == ENFILE)
				continue;
			return NULL; /* shut down by serve_metrics_stop */
		}
		metrics_answer(m, fd);
		close(fd);
	}
}

/* Listen on ADDR ([IP:]PORT, IPv6 in brackets). */
static int metrics_listen(const char *addr, struct metrics *m)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	char host[64] = "127.0.0.1", shown[96];
	const char *colon = strrchr(addr, ':'), *port = colon ? colon + 1 : addr;
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	socklen_t len;
	uint64_t p;
	int one = 1;

	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') { /* [v6]:PORT */
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host) || cli_parse_uint(port, 65535, &p) < 0)
		return cli_usage("serve", "--metrics wants [IP:]PORT, not \"%s\"", addr);
	if (hl) {
		memcpy(host, addr, hl);
		host[hl] = '\0';
	}
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		len = sizeof(*s6);
	} else {
		return cli_usage("serve", "--metrics: \"%s\" is not a numeric IP address", host);
	}
	m->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->lfd < 0)
		return cli_fail("--metrics: socket: %s", strerror(errno));
	setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(m->lfd, (struct sockaddr *)&ss, len) < 0 || listen(m->lfd, 16) < 0) {
		close(m->lfd);
		m->lfd = -1;
		return cli_fail("--metrics %s: %s%s", addr, strerror(errno),
			errno == EADDRINUSE ? " (pick another port)" : "");
	}
	getsockname(m->lfd, (struct sockaddr *)&ss, &len);
	inet_ntop(ss.ss_family, ss.ss_family == AF_INET ? (void *)&s4->sin_addr : &s6->sin6_addr,
		shown, sizeof(shown));
	fprintf(stderr, "sandwire serve: metrics on http://%s%s%s:%u/metrics\n",
		ss.ss_family == AF_INET6 ? "[" : "", shown, ss.ss_family == AF_INET6 ? "]" : "",
		ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port));
	return 0;
}

static void metrics_stop(struct metrics *m)
{
	shutdown(m->lfd, SHUT_RDWR); /* accept() returns: the thread ends */
	pthread_join(m->thread, NULL);
	close(m->lfd);
}

/* Parse one number flag of serve. */
static int serve_uint(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	if (cli_parse_uint(s, max, v) < 0 || *v < min)
		return cli_usage("serve",
			"%s wants a number from %" PRIu64 " to %" PRIu64 ", not \"%s\"", flag, min,
			max, s);
	return 0;
}

/* What serve takes besides the engine's configuration. */
struct serve_opts {
	const char *metrics; /* --metrics ADDR, or NULL */
	int ready_fd;	     /* --ready-fd N, or -1 */
};

static int serve_parse(
	struct cli *cli, int argc, char **argv, struct engine_config *cfg, struct serve_opts *so)
{
	static const struct option lopts[] = {
		{"shards", required_argument, NULL, OPT_SHARDS},
		{"pin", required_argument, NULL, OPT_PIN},
		{"agent", required_argument, NULL, OPT_AGENT},
		{"msb-home", required_argument, NULL, OPT_MSB_HOME},
		{"no-agent-sock", no_argument, NULL, OPT_NO_AGENT_SOCK},
		{"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
		{"grace", required_argument, NULL, OPT_GRACE},
		{"pool-chunks", required_argument, NULL, OPT_POOL_CHUNKS},
		{"metrics", required_argument, NULL, OPT_METRICS},
		{"ready-fd", required_argument, NULL, OPT_READY_FD},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		CLI_LONG_COMMON,
		{0},
	};
	uint64_t v;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+vqh", lopts, NULL)) != -1) {
		switch (ch) {
		case OPT_SHARDS:
			if (serve_uint("--shards", optarg, 0, SHARD_MAX, &v))
				return CLI_EXIT_ERR;
			cfg->shards = (unsigned)v;
			break;
		case OPT_PIN:
			if (shard_parse_pin(optarg, &cfg->pin) < 0)
				return cli_usage("serve",
					"--pin wants none, auto or a CPU list like "
					"0-3,8; not \"%s\"",
					optarg);
			break;
		case OPT_AGENT:
			snprintf(cfg->agent_path, sizeof(cfg->agent_path), "%s", optarg);
			break;
		case OPT_MSB_HOME:
			snprintf(cfg->msb_home, sizeof(cfg->msb_home), "%s", optarg);
			break;
		case OPT_NO_AGENT_SOCK:
			cfg->msb_sockets = 0;
			break;
		case OPT_BOOT_TIMEOUT:
			if (serve_uint("--boot-timeout", optarg, 1, 3600000, &v))
				return CLI_EXIT_ERR;
			cfg->boot_timeout_ms = (uint32_t)v;
			break;
		case OPT_GRACE:
			if (serve_uint("--grace", optarg, 0, 3600000, &v))
				return CLI_EXIT_ERR;
			cfg->disconnect_grace_ms = (uint32_t)v;
			break;
		case OPT_POOL_CHUNKS:
			if (serve_uint("--pool-chunks", optarg, 64, 1u << 20, &v))
				return CLI_EXIT_ERR;
			cfg->pool_chunks = (uint32_t)v;
			break;
		case OPT_METRICS:
			so->metrics = optarg;
			break;
		case OPT_READY_FD:
			if (serve_uint("--ready-fd", optarg, 3, INT32_MAX, &v))
				return CLI_EXIT_ERR;
			so->ready_fd = (int)v;
			break;
		case 'v':
			cfg->log_level = SHARD_LOG_DEBUG;
			break;
		case 'q':
			cfg->log_level = SHARD_LOG_WARN;
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			cli_help("serve");
			return -1;
		default:
			return cli_bad_option("serve");
		}
	}
	if (optind < argc)
		return cli_usage("serve", "unexpected argument \"%s\"", argv[optind]);
	if (cli->verbose)
		cfg->log_level = SHARD_LOG_DEBUG;
	if (cli->socket || getenv("SANDWIRE_SOCKET")) {
		char path[sizeof(cfg->socket_path) + 1];

		swc_socket_path(cli->socket, path, sizeof(path));
		if (strlen(path) >= sizeof(cfg->socket_path))
			return cli_usage("serve", "the socket path is longer than %zu bytes",
				sizeof(cfg->socket_path) - 1);
		memcpy(cfg->socket_path, path, strlen(path) + 1); /* fits: checked above */
	}
	return 0;
}

int cmd_serve(struct cli *cli, int argc, char **argv)
{
	struct serve_opts so = {.ready_fd = -1};
	struct metrics m = {.lfd = -1};
	struct engine_config cfg;
	struct sw_err err = {0};
	struct engine *e;
	int sigfd, rc;

	engine_config_init(&cfg);
	rc = serve_parse(cli, argc, argv, &cfg, &so);
	if (rc)
		return rc < 0 ? 0 : rc;
	sigfd = engine_signalfd();
	if (sigfd < 0)
		return cli_fail("signalfd: %s", strerror(-sigfd));
	e = engine_start(&cfg, &err);
	if (!e) {
		close(sigfd);
		return cli_fail("%s", err.msg);
	}
	if (so.metrics) {
		snprintf(m.socket, sizeof(m.socket), "%s", engine_socket_path(e));
		rc = metrics_listen(so.metrics, &m);
		if (rc == 0 && (rc = pthread_create(&m.thread, NULL, metrics_main, &m))) {
			close(m.lfd);
			m.lfd = -1;
			rc = cli_fail("--metrics: cannot start its thread: %s", strerror(rc));
		}
		if (rc) {
			engine_request_stop(e);
			engine_run(e, -1);
			engine_destroy(e);
			close(sigfd);
			return rc;
		}
	}
	if (so.ready_fd >= 0) { /* the supervisor may connect from now on */
		if (write(so.ready_fd, "1", 1) < 0)
			cli_err("--ready-fd %d: %s", so.ready_fd, strerror(errno));
		close(so.ready_fd);
	}
	rc = engine_run(e, sigfd) < 0 ? CLI_EXIT_ERR : 0;
	if (m.lfd >= 0)
		metrics_stop(&m);
	engine_destroy(e);
	close(sigfd);
	return rc;
}
