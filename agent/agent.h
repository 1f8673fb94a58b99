/*
 * agent/agent.h - sandwire-agent, the guest agent: entry point of its loop.
 *
 * The agent serves one console channel (spec protocol.md): it runs the boot
 * sequence (core.bootstrap -> core.init.resolved -> core.init.ack ->
 * core.ready), then exec sessions, TCP streams and fs operations until the
 * host shuts it down or goes away.
 */
#ifndef SW_AGENT_AGENT_H
#define SW_AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#define AGENT_VERSION_STRING "sandwire/0.1.0"

/* Exit statuses of sandwire-agent (not as PID 1, which never exits). */
enum agent_exit {
	AGENT_EXIT_OK = 0,           /* shut down, or the host closed the console */
	AGENT_EXIT_SETUP = 2,        /* could not start (memory, signals, bad arguments) */
	AGENT_EXIT_FRAMING = 3,      /* the console stream broke its framing (len < 5 or > 4 MiB) */
	AGENT_EXIT_CONSOLE_LOST = 4, /* writing to the console failed */
};

struct agent_config {
	int console_fd;             /* the channel, read+write */
	bool pid1;                  /* init duties: never exit, power off, VM plumbing */
	const char *heartbeat_dir;  /* NULL = /.msb */
	uint64_t boot_time_ns;      /* CLOCK_BOOTTIME read first thing in main */
	int verbose;                /* 0 = info, 1 = debug */
	bool no_io_uring;           /* diagnostic: use the poll(2) fallback even if io_uring works */
};

/* Run the agent on <cfg> until it ends; returns an enum agent_exit status. */
int agent_run(const struct agent_config *cfg);

#endif /* SW_AGENT_AGENT_H */
