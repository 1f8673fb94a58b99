/*
 * agent/main.c - the sandwire-agent command.
 *
 *   sandwire-agent --fd N        serve the console on inherited descriptor N
 *   sandwire-agent --port PATH   serve it on a character device (virtio port)
 *   sandwire-agent               as PID 1: find the virtio port named "agent"
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/pid1.h"
#include "agent/transport.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sandwire-agent [--fd N | --port PATH] [options]\n"
		"\n"
		"The sandwire guest agent: runs commands, TCP streams and file operations for the\n"
		"host over one console channel (microsandbox agent protocol, generation 7).\n"
		"\n"
		"  --fd N              serve an inherited socket or pipe pair on descriptor N\n"
		"                      (the process backend and tests use this)\n"
		"  --port PATH         serve a character device such as /dev/vport0p1\n"
		"  --heartbeat-dir DIR write heartbeat.json there every second (default /.msb;\n"
		"                      skipped when the directory does not exist)\n"
		"  -v, --verbose       log debug details to stderr\n"
		"  -h, --help          this text\n"
		"  --version           print the version\n"
		"\n"
		"Diagnostics:\n"
		"  --no-io-uring       use the poll(2) fallback, as when io_uring_setup fails\n"
		"                      (for tests)\n"
		"\n"
		"With neither --fd nor --port, the agent must be PID 1 (a microVM's /init): it\n"
		"mounts /proc, /sys, /dev, /dev/pts, /tmp and /run and opens the virtio-console\n"
		"port named \"agent\".\n"
		"\n"
		"Exit status: 0 after a shutdown or when the host closes the channel; 2 when it\n"
		"cannot start; 3 when the channel broke its framing; 4 when writing to it failed.\n"
		"\n"
		"Example: sandwire-agent --fd 3 3<>/path/to/console.sock\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"fd", required_argument, NULL, 'f'},
		{"port", required_argument, NULL, 'p'},
		{"heartbeat-dir", required_argument, NULL, 'b'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"no-io-uring", no_argument, NULL, 'U'},
		{NULL, 0, NULL, 0},
	};
	struct agent_config cfg = {.console_fd = -1};
	const char *port = NULL;
	struct timespec bt;
	char dev[256], err[256];
	long fd = -1;
	char *end;
	int c, rc;

	clock_gettime(CLOCK_BOOTTIME, &bt);
	cfg.boot_time_ns = (uint64_t)bt.tv_sec * 1000000000ull + (uint64_t)bt.tv_nsec;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			errno = 0;
			fd = strtol(optarg, &end, 10);
			if (*end || errno || fd < 0 || fd > 1 << 20) {
				fprintf(stderr, "sandwire-agent: --fd needs a descriptor number, got `%s`\n",
					optarg);
				return AGENT_EXIT_SETUP;
			}
			break;
		case 'p':
			port = optarg;
			break;
		case 'b':
			cfg.heartbeat_dir = optarg;
			break;
		case 'v':
			cfg.verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("%s\n", AGENT_VERSION_STRING);
			return 0;
		case 'U':
			cfg.no_io_uring = true;
			break;
		default:
			usage(stderr);
			return AGENT_EXIT_SETUP;
		}
	}
	if (optind < argc || (fd >= 0 && port)) {
		fprintf(stderr, "sandwire-agent: give one of --fd or --port (see --help)\n");
		return AGENT_EXIT_SETUP;
	}
	/* Writes to a closed pipe or socket must fail with EPIPE, not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	cfg.pid1 = getpid() == 1;

	if (fd >= 0) {
		rc = agent_transport_adopt_fd((int)fd);
		if (rc < 0) {
			fprintf(stderr, "sandwire-agent: --fd %ld: %s (was the descriptor passed to "
				"the agent?)\n", fd, strerror(-rc));
			return AGENT_EXIT_SETUP;
		}
		cfg.console_fd = rc;
	} else {
		if (!port && !cfg.pid1) {
			fprintf(stderr, "sandwire-agent: no console: pass --fd N or --port PATH "
				"(only PID 1 finds the virtio port by itself)\n");
			return AGENT_EXIT_SETUP;
		}
		if (cfg.pid1 && agent_pid1_mount_all("/", err, sizeof(err)) > 0)
			fprintf(stderr, "sandwire-agent: init: %s\n", err);
		if (!port) {
			rc = agent_transport_find_port("/sys", AGENT_PORT_NAME, dev, sizeof(dev));
			if (rc < 0) {
				fprintf(stderr, "sandwire-agent: no virtio port named `agent` under "
					"/sys/class/virtio-ports: %s\n", strerror(-rc));
				goto fail;
			}
			port = dev;
		}
		rc = agent_transport_open_port(port);
		if (rc < 0) {
			fprintf(stderr, "sandwire-agent: open `%s`: %s\n", port, strerror(-rc));
			goto fail;
		}
		cfg.console_fd = rc;
	}
	rc = agent_run(&cfg);
	if (!cfg.pid1)
		return rc;
fail:
	if (!cfg.pid1)
		return AGENT_EXIT_SETUP;
	/* init must not exit: the kernel would panic.  Wait for the host to power us off. */
	for (;;)
		pause();
}
