/*
 * engine/sandwired.c - the sandwired executable: flags, signals, the
 * engine in the foreground.  Logs go to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/daemon.h"

#define SANDWIRED_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sandwired [options]\n"
		"\n"
		"The sandwire host daemon, in the foreground: boots sandboxes (their agent as a\n"
		"process on a socketpair), relays clients' exec sessions, TCP streams and files to\n"
		"them, and serves published ports.  SIGTERM or SIGINT stops it gracefully.\n"
		"\n"
		"options:\n"
		"  --shards N          shard threads (default: online CPUs)\n"
		"  --pin none|auto|LIST  shard i floats (none, the default), or is pinned to the i-th\n"
		"                      allowed CPU (auto) or the i-th CPU of LIST (e.g. 0-3,8).  Pin\n"
		"                      on hosts whose CPUs the daemon has to itself; on a shared,\n"
		"                      busy machine pinned shards wait for their CPU (docs/performance.md)\n"
		"  --socket PATH       client socket (default $XDG_RUNTIME_DIR/sandwire/sandwired.sock,\n"
		"                      else /run/sandwire/sandwired.sock; also SANDWIRE_SOCKET)\n"
		"  --agent PATH        agent program for sandboxes (default: sandwire-agent beside\n"
		"                      sandwired)\n"
		"  --msb-home DIR      root of the microsandbox-style agent.sock layout\n"
		"                      (default $MSB_HOME or ~/.microsandbox)\n"
		"  --no-agent-sock     do not publish per-sandbox agent.sock files\n"
		"  --boot-timeout MS   agent start to core.ready (default 10000)\n"
		"  --grace MS          SIGHUP to SIGKILL for a departed client's commands (default 2000)\n"
		"  --pool-chunks N     64 KiB buffers per shard (default 2048)\n"
		"  -v, --verbose       debug logging;  -q, --quiet: warnings and errors only\n"
		"  -h, --help          this text;      --version: the version\n"
		"\n"
		"example:\n"
		"  sandwired --shards 4 --pin auto --socket /tmp/sw.sock\n");
}

static int parse_uint(const char *flag, const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max) {
		fprintf(stderr, "sandwired: %s wants a number from 0 to %lu, not \"%s\"\n", flag, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"shards", required_argument, NULL, 's'},
		{"pin", required_argument, NULL, 'p'},
		{"socket", required_argument, NULL, 'S'},
		{"agent", required_argument, NULL, 'a'},
		{"msb-home", required_argument, NULL, 'm'},
		{"no-agent-sock", no_argument, NULL, 'n'},
		{"boot-timeout", required_argument, NULL, 'b'},
		{"grace", required_argument, NULL, 'g'},
		{"pool-chunks", required_argument, NULL, 'c'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct engine_config cfg;
	struct sw_err err = {0};
	struct engine *e;
	const char *env = getenv("SANDWIRE_SOCKET");
	unsigned long v;
	int c, sigfd, rc;

	engine_config_init(&cfg);
	if (env && *env)
		snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", env);
	while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_uint("--shards", optarg, SHARD_MAX, &v) < 0)
				return 2;
			cfg.shards = (unsigned)v;
			break;
		case 'p':
			if (shard_parse_pin(optarg, &cfg.pin) < 0) {
				fprintf(stderr, "sandwired: --pin wants none, auto or a CPU list like 0-3,8; "
						"not \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'S':
			if (strlen(optarg) >= sizeof(cfg.socket_path)) {
				fprintf(stderr, "sandwired: --socket path is longer than %zu bytes\n",
					sizeof(cfg.socket_path) - 1);
				return 2;
			}
			snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", optarg);
			break;
		case 'a':
			snprintf(cfg.agent_path, sizeof(cfg.agent_path), "%s", optarg);
			break;
		case 'm':
			snprintf(cfg.msb_home, sizeof(cfg.msb_home), "%s", optarg);
			break;
		case 'n':
			cfg.msb_sockets = 0;
			break;
		case 'b':
			if (parse_uint("--boot-timeout", optarg, 3600000, &v) < 0)
				return 2;
			cfg.boot_timeout_ms = (uint32_t)v;
			break;
		case 'g':
			if (parse_uint("--grace", optarg, 3600000, &v) < 0)
				return 2;
			cfg.disconnect_grace_ms = (uint32_t)v;
			break;
		case 'c':
			if (parse_uint("--pool-chunks", optarg, 1u << 20, &v) < 0 || v < 64) {
				fprintf(stderr, "sandwired: --pool-chunks needs at least 64\n");
				return 2;
			}
			cfg.pool_chunks = (uint32_t)v;
			break;
		case 'v':
			cfg.log_level = SHARD_LOG_DEBUG;
			break;
		case 'q':
			cfg.log_level = SHARD_LOG_WARN;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sandwired %s\n", SANDWIRED_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sandwired: unexpected argument \"%s\" (see --help)\n", argv[optind]);
		return 2;
	}
	sigfd = engine_signalfd();
	if (sigfd < 0) {
		fprintf(stderr, "sandwired: signalfd: %s\n", strerror(-sigfd));
		return 1;
	}
	e = engine_start(&cfg, &err);
	if (!e) {
		fprintf(stderr, "sandwired: %s\n", err.msg);
		return 1;
	}
	rc = engine_run(e, sigfd);
	engine_destroy(e);
	close(sigfd);
	return rc < 0 ? 1 : 0;
}
