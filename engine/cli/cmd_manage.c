/*
 * engine/cli/cmd_manage.c - the management commands: create, start, stop,
 * rm, inspect, ls, publish, stats.  Each is one or a few requests of
 * engine/api.h on one connection, and a table or JSON for the answer.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

enum {
	OPT_NAME = 0x1200,
	OPT_RLIMIT,
	OPT_BACKEND,
	OPT_NS,
	OPT_BOOT_TIMEOUT,
	OPT_INTERVAL,
};

/* ---- output helpers ---------------------------------------------------------------- */

/* A JSON string literal of <s>. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* "127.0.0.1:8080->80,..." into <buf>. */
static const char *ports_text(const struct engine_info *in, char *buf, size_t cap)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < in->nports && off < cap; i++) {
		const struct engine_port *p = &in->ports[i].port;
		bool v6 = strchr(p->host_ip, ':') != NULL;

		off += (size_t)snprintf(buf + off, cap - off, "%s%s%s%s:%u->%u", i ? "," : "",
			v6 ? "[" : "", p->host_ip, v6 ? "]" : "", p->host_port, p->guest_port);
	}
	return in->nports ? buf : "-";
}

static void info_json(FILE *f, const struct engine_info *in)
{
	fprintf(f, "  {\n    \"name\": ");
	json_str(f, in->name);
	fprintf(f, ",\n    \"state\": ");
	json_str(f, in->state);
	fprintf(f, ",\n    \"backend\": ");
	json_str(f, in->backend);
	fprintf(f, ",\n    \"agent_version\": ");
	json_str(f, in->agent_version);
	fprintf(f, ",\n    \"error\": ");
	json_str(f, in->error);
	fprintf(f,
		",\n    \"pid\": %" PRId64 ",\n    \"shard\": %u,\n    \"clients\": %u,\n"
		"    \"generation\": %u,\n    \"boot_ms\": %" PRIu64 ",\n"
		"    \"frames_in\": %" PRIu64 ",\n    \"frames_out\": %" PRIu64 ",\n"
		"    \"bytes_in\": %" PRIu64 ",\n    \"bytes_out\": %" PRIu64 ",\n    \"ports\": [",
		in->pid, in->shard, in->clients, in->generation, in->boot_ms, in->frames_in,
		in->frames_out, in->bytes_in, in->bytes_out);
	for (size_t i = 0; i < in->nports; i++) {
		const struct engine_port_info *p = &in->ports[i];

		fprintf(f, "%s\n      {\"host_ip\": ", i ? "," : "");
		json_str(f, p->port.host_ip);
		fprintf(f,
			", \"host_port\": %u, \"guest_port\": %u, \"limit\": %u, "
			"\"accepted\": %" PRIu64 ", \"refused\": %" PRIu64 ", \"active\": %" PRIu64
			"}",
			p->port.host_port, p->port.guest_port, p->port.limit, p->accepted,
			p->refused, p->active);
	}
	fprintf(f, "%s]\n  }", in->nports ? "\n    " : "");
}

/* Decode the info map of a result's data. */
static int result_info(const struct swc_result *res, struct engine_info *in)
{
	struct cbr r;

	cbr_init(&r, res->data, res->data_len, NULL);
	if (engine_decode_info(&r, in) < 0)
		return cli_fail("bad answer from sandwired: the sandbox info does not decode");
	return 0;
}

/* ---- create ---------------------------------------------------------------------------- */

int cmd_create(struct cli *cli, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"name", required_argument, NULL, OPT_NAME},
		{"publish", required_argument, NULL, 'p'},
		{"rlimit", required_argument, NULL, OPT_RLIMIT},
		{"backend", required_argument, NULL, OPT_BACKEND},
		{"ns", required_argument, NULL, OPT_NS},
		{"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
		CLI_LONG_COMMON,
		{0},
	};
	struct engine_create cr = {0};
	struct swc_result res;
	const char *name = NULL;
	uint8_t *buf = NULL;
	char why[1024];
	int64_t ms;
	struct swc c;
	uint32_t id;
	int ch, rc;
	long n;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+p:h", lopts, NULL)) != -1) {
		struct engine_rlimit *rl = &cr.rlimits[cr.nrlimits];

		switch (ch) {
		case OPT_NAME:
			name = optarg;
			break;
		case 'p':
			if (cr.nports == ENGINE_PORTS_MAX)
				return cli_usage(
					"create", "at most %u published ports", ENGINE_PORTS_MAX);
			if (engine_port_parse(optarg, &cr.ports[cr.nports], why, sizeof(why)) < 0)
				return cli_usage("create", "-p %s: %s", optarg, why);
			cr.nports++;
			break;
		case OPT_RLIMIT:
			if (cr.nrlimits == ENGINE_RLIMITS_MAX)
				return cli_usage("create", "at most %u --rlimit options",
					ENGINE_RLIMITS_MAX);
			if (cli_parse_rlimit(
				    optarg, rl->name, &rl->soft, &rl->hard, why, sizeof(why)) < 0)
				return cli_usage("create", "%s", why);
			cr.nrlimits++;
			break;
		case OPT_BACKEND:
			cr.backend = (struct proto_str){optarg, strlen(optarg)};
			break;
		case OPT_NS:
			cr.ns = (struct proto_str){optarg, strlen(optarg)};
			break;
		case OPT_BOOT_TIMEOUT:
			if (cli_parse_duration(optarg, &ms) < 0 || ms <= 0 || ms > UINT32_MAX)
				return cli_usage(
					"create", "--boot-timeout wants a duration like 30s");
			cr.boot_timeout_ms = (uint32_t)ms;
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			return cli_help("create");
		default:
			return cli_bad_option("create");
		}
	}
	if (!name)
		return cli_usage("create", "--name NAME is required");
	if (engine_name_check(name, strlen(name), why, sizeof(why)) < 0)
		return cli_usage("create", "--name %s: %s", name, why);
	if (argc - optind > 1)
		return cli_usage("create", "one ROOT at most (got \"%s\" and \"%s\")", argv[optind],
			argv[optind + 1]);
	if (optind < argc)
		cr.root = (struct proto_str){argv[optind], strlen(argv[optind])};
	cr.name = (struct proto_str){name, strlen(name)};
	if ((rc = cli_connect(cli, &c)))
		return rc;
	rc = CLI_EXIT_ERR;
	buf = malloc(ENGINE_REQ_MAX);
	id = c.next_id++;
	n = buf ? engine_req_create(buf, ENGINE_REQ_MAX, id, &cr) : -ENOMEM;
	if (n < 0)
		cli_err("cannot build the create request: %s", proto_strerror((int)n));
	else if (swc_call(&c, buf, (size_t)n, id, &res, why, sizeof(why)) < 0 || !res.ok)
		cli_err("%s", why);
	else
		rc = printf("%s\n", name) < 0 ? CLI_EXIT_ERR : 0;
	free(buf);
	swc_close(&c);
	return rc;
}

/* ---- start, stop, rm, inspect -------------------------------------------------------------- */

int cmd_named(struct cli *cli, int argc, char **argv)
{
	const char *cmd = cli_cmd_name(argv);
	bool inspect = !strcmp(cmd, "inspect");
	enum engine_verb v = !strcmp(cmd, "start")  ? ENGINE_V_START
			     : !strcmp(cmd, "stop") ? ENGINE_V_STOP
			     : !strcmp(cmd, "rm")   ? ENGINE_V_REMOVE
						    : ENGINE_V_INSPECT;
	struct engine_info in;
	struct swc_result res;
	int rc = cli_plain_opts(cli, argc, argv, cmd, NULL), shown = 0;
	struct swc c;

	if (rc >= 0)
		return rc;
	rc = 0; /* from here: the exit code, an error if any sandbox failed */
	if (optind == argc)
		return cli_usage(cmd, "which sandbox? sandwire %s NAME...", cmd);
	if (cli_connect(cli, &c))
		return CLI_EXIT_ERR;
	if (inspect)
		printf("[");
	for (int i = optind; i < argc; i++) {
		if (cli_call(&c, v, argv[i], &res)) {
			rc = CLI_EXIT_ERR;
			continue;
		}
		if (!inspect) {
			printf("%s\n", argv[i]);
		} else if (result_info(&res, &in) == 0) {
			printf("%s\n", shown++ ? "," : "");
			info_json(stdout, &in);
		} else {
			rc = CLI_EXIT_ERR;
		}
	}
	if (inspect)
		printf("%s]\n", shown ? "\n" : "");
	swc_close(&c);
	return rc;
}

/* ---- ls -----------------------------------------------------------------------------------------
 */

struct info_list {
	struct engine_info *v;
	size_t n, cap;
	bool oom;
};

static void info_collect(const struct engine_info *in, void *ctx)
{
	struct info_list *l = ctx;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct engine_info *v = realloc(l->v, cap * sizeof(*v));

		if (!v) {
			l->oom = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *in;
}

static int name_order(const void *a, const void *b)
{
	return strcmp(((const struct engine_info *)a)->name, ((const struct engine_info *)b)->name);
}

static void ls_print(const struct info_list *l, bool quiet)
{
	int wname = 4, wports = 5;
	char ports[2048];

	for (size_t i = 0; i < l->n; i++) {
		int a = (int)strlen(l->v[i].name),
		    b = (int)strlen(ports_text(&l->v[i], ports, sizeof(ports)));

		wname = a > wname ? a : wname;
		wports = b > wports ? b : wports;
	}
	if (!quiet)
		printf("%-*s  %-8s  %-7s  %-5s  %-7s  %-*s  %s\n", wname, "NAME", "STATE", "PID",
			"SHARD", "CLIENTS", wports, "PORTS", "AGENT");
	for (size_t i = 0; i < l->n; i++) {
		const struct engine_info *in = &l->v[i];

		if (quiet) {
			printf("%s\n", in->name);
			continue;
		}
		printf("%-*s  %-8s  %-7" PRId64 "  %-5u  %-7u  %-*s  %s\n", wname, in->name,
			in->state, in->pid, in->shard, in->clients, wports,
			ports_text(in, ports, sizeof(ports)),
			in->agent_version[0] ? in->agent_version : "-");
		if (in->error[0] && strcmp(in->state, "running"))
			printf("%-*s  \\ %s\n", wname, "", in->error);
	}
}

int cmd_ls(struct cli *cli, int argc, char **argv)
{
	struct info_list l = {0};
	struct swc_result res;
	bool quiet = false;
	struct swc c;
	int rc;

	if ((rc = cli_plain_opts(cli, argc, argv, "ls", &quiet)) >= 0)
		return rc;
	if (optind < argc)
		return cli_usage("ls", "unexpected argument \"%s\"", argv[optind]);
	if (cli_connect(cli, &c))
		return CLI_EXIT_ERR;
	rc = cli_call(&c, ENGINE_V_LIST, NULL, &res);
	if (rc == 0 && (engine_decode_list(res.data, res.data_len, info_collect, &l) < 0 || l.oom))
		rc = cli_fail("bad answer from sandwired: the sandbox list does not decode");
	if (rc == 0) {
		if (l.n)
			qsort(l.v, l.n, sizeof(*l.v), name_order);
		ls_print(&l, quiet);
	}
	free(l.v);
	swc_close(&c);
	return rc;
}

/* ---- publish ------------------------------------------------------------------------------------
 */

int cmd_publish(struct cli *cli, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"publish", required_argument, NULL, 'p'}, CLI_LONG_COMMON, {0}};
	struct engine_port ports[ENGINE_PORTS_MAX];
	struct engine_info in;
	struct swc_result res;
	uint8_t buf[ENGINE_REQ_MAX];
	char why[1024], text[2048];
	size_t nports = 0;
	struct swc c;
	uint32_t id;
	int ch, rc = CLI_EXIT_ERR;
	long n;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "p:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			if (nports == ENGINE_PORTS_MAX)
				return cli_usage("publish", "at most %u ports", ENGINE_PORTS_MAX);
			if (engine_port_parse(optarg, &ports[nports], why, sizeof(why)) < 0)
				return cli_usage("publish", "-p %s: %s", optarg, why);
			nports++;
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			return cli_help("publish");
		default:
			return cli_bad_option("publish");
		}
	}
	if (argc - optind != 1 || !nports)
		return cli_usage("publish", "sandwire publish NAME -p [IP:]HOST:GUEST...");
	if (engine_name_check(argv[optind], strlen(argv[optind]), why, sizeof(why)) < 0)
		return cli_usage("publish", "%s", why);
	if (cli_connect(cli, &c))
		return CLI_EXIT_ERR;
	id = c.next_id++;
	n = engine_req_publish(buf, sizeof(buf), id, argv[optind], ports, nports);
	if (n < 0)
		cli_err("cannot build the publish request: %s", proto_strerror((int)n));
	else if (swc_call(&c, buf, (size_t)n, id, &res, why, sizeof(why)) < 0 || !res.ok)
		cli_err("%s", why);
	else if (result_info(&res, &in) == 0)
		rc = printf("%s %s\n", in.name, ports_text(&in, text, sizeof(text))) < 0;
	swc_close(&c);
	return rc;
}

/* ---- stats
 * ---------------------------------------------------------------------------------------- */

struct stats_list {
	struct engine_shard_stats *v;
	size_t n, cap;
	bool oom;
};

static void stats_collect(const struct engine_shard_stats *st, void *ctx)
{
	struct stats_list *l = ctx;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct engine_shard_stats *v = realloc(l->v, cap * sizeof(*v));

		if (!v) {
			l->oom = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *st;
}

static int stats_sample(struct swc *c, struct stats_list *l)
{
	struct swc_result res;

	l->n = 0;
	if (cli_call(c, ENGINE_V_STATS, NULL, &res))
		return CLI_EXIT_ERR;
	if (engine_decode_stats(res.data, res.data_len, stats_collect, l) < 0 || l->oom)
		return cli_fail("bad answer from sandwired: the stats do not decode");
	return 0;
}

/* Per-second rate of a counter between two samples <ms> apart. */
static double rate(uint64_t now, uint64_t before, int64_t ms)
{
	return now >= before && ms > 0 ? (double)(now - before) * 1000.0 / (double)ms : 0;
}

static void stats_row(const char *label, const struct engine_shard_stats *a,
	const struct engine_shard_stats *b, int64_t ms)
{
	char bps[32], pool[48];

	snprintf(pool, sizeof(pool), "%" PRIu64 "/%" PRIu64, b->pool_in_use, b->pool_total);
	cli_fmt_bytes(
		rate(b->bytes_in + b->bytes_out, a->bytes_in + a->bytes_out, ms), bps, sizeof(bps));
	printf("%-5s  %7" PRIu64 "  %8" PRIu64 "  %8" PRIu64
	       "  %9.0f  %11s/s  %8.0f  %5u  %8" PRIu64 "  %6" PRIu64 "  %7" PRIu64 "  %6" PRIu64
	       "  %s\n",
		label, b->clients, b->consoles, b->port_conns,
		rate(b->frames_in + b->frames_out, a->frames_in + a->frames_out, ms), bps,
		rate(b->calls_sent, a->calls_sent, ms), b->inbox_depth, b->copies, b->drops,
		b->refused, b->stalls, pool);
}

static void stats_add(struct engine_shard_stats *t, const struct engine_shard_stats *s)
{
	t->clients += s->clients;
	t->consoles += s->consoles;
	t->port_conns += s->port_conns;
	t->frames_in += s->frames_in;
	t->frames_out += s->frames_out;
	t->bytes_in += s->bytes_in;
	t->bytes_out += s->bytes_out;
	t->calls_sent += s->calls_sent;
	t->inbox_depth += s->inbox_depth;
	t->copies += s->copies;
	t->drops += s->drops;
	t->refused += s->refused;
	t->stalls += s->stalls;
	t->pool_in_use += s->pool_in_use;
	t->pool_total += s->pool_total;
}

static void stats_print(const struct stats_list *a, const struct stats_list *b, int64_t ms)
{
	struct engine_shard_stats ta = {0}, tb = {0};
	char label[16];

	printf("%-5s  %7s  %8s  %8s  %9s  %13s  %8s  %5s  %8s  %6s  %7s  %6s  %s\n", "SHARD",
		"CLIENTS", "CONSOLES", "PORTCONN", "FRAMES/S", "BYTES/S", "XSHARD/S", "INBOX",
		"COPIES", "DROPS", "REFUSED", "STALLS", "POOL");
	for (size_t i = 0; i < b->n; i++) {
		const struct engine_shard_stats *prev = i < a->n ? &a->v[i] : &b->v[i];

		snprintf(label, sizeof(label), "%u", b->v[i].shard);
		stats_row(label, prev, &b->v[i], ms);
		stats_add(&ta, prev);
		stats_add(&tb, &b->v[i]);
	}
	if (b->n > 1)
		stats_row("all", &ta, &tb, ms);
}

int cmd_stats(struct cli *cli, int argc, char **argv)
{
	static const struct option lopts[] = {{"watch", no_argument, NULL, 'w'},
		{"interval", required_argument, NULL, OPT_INTERVAL}, CLI_LONG_COMMON, {0}};
	struct stats_list a = {0}, b = {0}, t;
	int64_t interval = 1000, t0, t1;
	bool watch = false, clear = isatty(1);
	struct timespec ts;
	struct swc c;
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+wh", lopts, NULL)) != -1) {
		switch (ch) {
		case 'w':
			watch = true;
			break;
		case OPT_INTERVAL:
			if (cli_parse_duration(optarg, &interval) < 0 || interval <= 0)
				return cli_usage("stats", "--interval wants a duration like 1s or "
							  "500ms");
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			return cli_help("stats");
		default:
			return cli_bad_option("stats");
		}
	}
	if (optind < argc)
		return cli_usage("stats", "unexpected argument \"%s\"", argv[optind]);
	if (cli_connect(cli, &c))
		return CLI_EXIT_ERR;
	t0 = cli_now_ms();
	rc = stats_sample(&c, &a);
	while (rc == 0) {
		ts = (struct timespec){interval / 1000, (long)(interval % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		t1 = cli_now_ms();
		if ((rc = stats_sample(&c, &b)))
			break;
		if (watch && clear)
			printf("\033[H\033[2J");
		stats_print(&a, &b, t1 - t0);
		fflush(stdout);
		if (!watch)
			break;
		if (!clear)
			printf("\n");
		t = a;
		a = b;
		b = t;
		t0 = t1;
	}
	free(a.v);
	free(b.v);
	swc_close(&c);
	return rc;
}
