/*
 * engine/cli/cmd_run_exec.c - `sandwire run` and `sandwire exec`: options,
 * then one exec session (exec_io.c).
 *
 * run = [private daemon] + create + attach + exec + [remove].  With a
 * private daemon the sandbox is always removed: the daemon goes away with
 * the command.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_RLIMIT = 0x1100,
	OPT_TIMEOUT,
	OPT_RM,
	OPT_BACKEND,
	OPT_NS,
	OPT_NAME,
};

/* What run adds to exec's options. */
struct run_opts {
	const char *name;
	const char *root;
	const char *backend;
	const char *ns;
	struct engine_port ports[ENGINE_PORTS_MAX];
	size_t nports;
	bool rm;
};

/*
 * Apply one option shared by run and exec to <o>.  Returns 0, 1 when <c>
 * is not one of them, or CLI_EXIT_ERR (printed).
 */
static int exec_opt(struct exec_opts *o, int c, const char *arg, const char *cmd)
{
	char why[256];
	size_t i;

	switch (c) {
	case 't':
		o->tty = true;
		return 0;
	case 'i':
		o->interactive = true;
		return 0;
	case 'e':
		if (!strchr(arg, '='))
			return cli_usage(cmd, "-e wants KEY=VALUE, not \"%s\"", arg);
		if (o->nenv == CLI_ENV_MAX)
			return cli_usage(cmd, "at most %u -e options", CLI_ENV_MAX);
		o->env[o->nenv++] = arg;
		return 0;
	case 'w':
		o->cwd = arg;
		return 0;
	case 'u':
		o->user = arg;
		return 0;
	case OPT_RLIMIT:
		if (o->nrlimits == ENGINE_RLIMITS_MAX)
			return cli_usage(cmd, "at most %u --rlimit options", ENGINE_RLIMITS_MAX);
		i = o->nrlimits;
		if (cli_parse_rlimit(arg, o->rlimit_names[i], &o->rlimits[i].soft,
			    &o->rlimits[i].hard, why, sizeof(why)) < 0)
			return cli_usage(cmd, "%s", why);
		o->rlimits[i].resource =
			(struct proto_str){o->rlimit_names[i], strlen(o->rlimit_names[i])};
		o->nrlimits++;
		return 0;
	case OPT_TIMEOUT:
		if (cli_parse_duration(arg, &o->timeout_ms) < 0 || o->timeout_ms <= 0)
			return cli_usage(cmd,
				"--timeout wants a duration like 30s, 500ms or 5m, not "
				"\"%s\"",
				arg);
		return 0;
	default:
		return 1;
	}
}

/* Parse -p into <ports>. */
static int port_opt(struct engine_port *ports, size_t *n, const char *arg, const char *cmd)
{
	char why[256];

	if (*n == ENGINE_PORTS_MAX)
		return cli_usage(cmd, "at most %u published ports", ENGINE_PORTS_MAX);
	if (engine_port_parse(arg, &ports[*n], why, sizeof(why)) < 0)
		return cli_usage(cmd, "-p %s: %s", arg, why);
	(*n)++;
	return 0;
}

/* Split "[ROOT --] CMD ARGS" of run (after the options). */
static int run_split(int argc, char **argv, struct run_opts *r, struct exec_opts *o)
{
	int dashes = -1;

	if (!(optind > 1 && !strcmp(argv[optind - 1], "--"))) /* getopt did not eat a "--" */
		for (int i = optind; i < argc; i++)
			if (!strcmp(argv[i], "--")) {
				dashes = i;
				break;
			}
	if (dashes >= 0) {
		if (dashes - optind > 1)
			return cli_usage("run", "one ROOT at most before `--` (got %d words)",
				dashes - optind);
		if (dashes - optind == 1)
			r->root = argv[optind];
		optind = dashes + 1;
	}
	if (optind == argc)
		return cli_usage("run", "no command given: sandwire run [options] [ROOT --] CMD");
	o->argv = argv + optind;
	o->argc = argc - optind;
	return 0;
}

/* Send the create request of run.  Returns 0 or CLI_EXIT_ERR (printed). */
static int run_create(struct swc *c, const struct run_opts *r)
{
	struct engine_create cr = {0};
	struct swc_result res;
	uint8_t buf[ENGINE_REQ_MAX];
	char err[1024];
	uint32_t id = c->next_id++;
	long n;

	cr.name = (struct proto_str){r->name, strlen(r->name)};
	if (r->root)
		cr.root = (struct proto_str){r->root, strlen(r->root)};
	if (r->backend)
		cr.backend = (struct proto_str){r->backend, strlen(r->backend)};
	if (r->ns)
		cr.ns = (struct proto_str){r->ns, strlen(r->ns)};
	memcpy(cr.ports, r->ports, sizeof(r->ports[0]) * r->nports);
	cr.nports = r->nports;
	n = engine_req_create(buf, sizeof(buf), id, &cr);
	if (n < 0)
		return cli_fail("cannot build the create request: %s", proto_strerror((int)n));
	if (swc_call(c, buf, (size_t)n, id, &res, err, sizeof(err)) < 0 || !res.ok)
		return cli_fail("%s", err);
	return 0;
}

/* run --rm: remove the sandbox on a fresh management connection. */
static void run_remove(struct cli *cli, const char *socket, const char *name)
{
	struct swc_result res;
	char err[1024];
	struct swc c;

	if (swc_connect(&c, socket, err, sizeof(err)) < 0) {
		cli_err("cannot remove sandbox %s: %s", name, err);
		return;
	}
	if (swc_call_simple(&c, ENGINE_V_REMOVE, name, &res, err, sizeof(err)) < 0 || !res.ok)
		cli_err("cannot remove sandbox %s: %s (try `sandwire rm %s`)", name, err, name);
	swc_close(&c);
}

int cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"name", required_argument, NULL, OPT_NAME},
		{"publish", required_argument, NULL, 'p'},
		{"env", required_argument, NULL, 'e'},
		{"workdir", required_argument, NULL, 'w'},
		{"user", required_argument, NULL, 'u'},
		{"rlimit", required_argument, NULL, OPT_RLIMIT},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"tty", no_argument, NULL, 't'},
		{"interactive", no_argument, NULL, 'i'},
		{"rm", no_argument, NULL, OPT_RM},
		{"backend", required_argument, NULL, OPT_BACKEND},
		{"ns", required_argument, NULL, OPT_NS},
		CLI_LONG_COMMON,
		{0},
	};
	struct exec_opts o = {.verbose = cli->verbose > 0};
	struct run_opts r = {0};
	struct cli_daemon d;
	struct wire w;
	struct swc c;
	char name[ENGINE_NAME_MAX + 1], path[108];
	const char *socket;
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+p:e:w:u:tih", lopts, NULL)) != -1) {
		if ((rc = exec_opt(&o, ch, optarg, "run")) != 1) {
			if (rc)
				return rc;
			continue;
		}
		switch (ch) {
		case OPT_NAME:
			r.name = optarg;
			break;
		case 'p':
			if ((rc = port_opt(r.ports, &r.nports, optarg, "run")))
				return rc;
			break;
		case OPT_RM:
			r.rm = true;
			break;
		case OPT_BACKEND:
			r.backend = optarg;
			break;
		case OPT_NS:
			r.ns = optarg;
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			return cli_help("run");
		default:
			return cli_bad_option("run");
		}
	}
	if ((rc = run_split(argc, argv, &r, &o)))
		return rc;
	if (r.name && engine_name_check(r.name, strlen(r.name), path, sizeof(path)) < 0)
		return cli_usage("run", "--name %s: %s", r.name, path);
	if (!r.name) {
		cli_random_name(name, sizeof(name));
		r.name = name;
	}
	if (cli_connect_or_spawn(cli, &c, &d))
		return CLI_EXIT_ERR;
	if (d.pid)
		r.rm = true;
	socket = d.pid ? d.socket : swc_socket_path(cli->socket, path, sizeof(path));
	rc = run_create(&c, &r);
	swc_close(&c);
	if (rc)
		goto out;
	rc = cli_attach(cli, socket, r.name, &w);
	if (rc == 0) {
		rc = exec_session(&w, &o, r.name);
		wire_destroy(&w);
	}
	if (r.rm && !d.pid) /* a private daemon takes its sandboxes with it */
		run_remove(cli, socket, r.name);
out:
	cli_daemon_stop(&d);
	return rc;
}

int cmd_exec(struct cli *cli, int argc, char **argv)
{
	static const struct option lopts[] = {
		{"env", required_argument, NULL, 'e'},
		{"workdir", required_argument, NULL, 'w'},
		{"user", required_argument, NULL, 'u'},
		{"rlimit", required_argument, NULL, OPT_RLIMIT},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"tty", no_argument, NULL, 't'},
		{"interactive", no_argument, NULL, 'i'},
		{"detach", no_argument, NULL, 'd'},
		CLI_LONG_COMMON,
		{0},
	};
	struct exec_opts o = {.verbose = cli->verbose > 0};
	const char *name;
	struct wire w;
	int ch, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+e:w:u:tidh", lopts, NULL)) != -1) {
		if ((rc = exec_opt(&o, ch, optarg, "exec")) != 1) {
			if (rc)
				return rc;
			continue;
		}
		switch (ch) {
		case 'd':
			o.detach = true;
			break;
		case CLI_OPT_SOCKET:
			cli->socket = optarg;
			break;
		case 'h':
			return cli_help("exec");
		default:
			return cli_bad_option("exec");
		}
	}
	if (optind == argc)
		return cli_usage("exec", "which sandbox? sandwire exec [options] NAME -- CMD");
	name = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind == argc)
		return cli_usage(
			"exec", "no command given: sandwire exec [options] %s -- CMD", name);
	if (o.detach && (o.tty || o.interactive || o.timeout_ms))
		return cli_usage("exec", "-d runs the command in the background: it does not go "
					 "with -t, -i or --timeout");
	o.argv = argv + optind;
	o.argc = argc - optind;
	if ((rc = cli_attach(cli, NULL, name, &w)))
		return rc;
	rc = o.detach ? exec_detached(&w, &o, name) : exec_session(&w, &o, name);
	wire_destroy(&w);
	return rc;
}
