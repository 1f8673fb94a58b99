/*
 * engine/daemon.h - sandwired as a library: start the shards and the
 * client socket, run the control loop on the calling thread, stop.
 *
 *	struct engine_config cfg;
 *	engine_config_init(&cfg);
 *	cfg.shards = 4;
 *	struct engine *e = engine_start(&cfg, &err);     // err.msg says why not
 *	engine_run(e, sigfd);                            // until SIGTERM/SIGINT or engine_request_stop
 *	engine_destroy(e);
 *
 * The thread calling engine_start must be the one calling engine_run and
 * must live as long as the sandboxes: the process backend's
 * PR_SET_PDEATHSIG follows the thread that started each sandbox.
 */
#ifndef SW_ENGINE_DAEMON_H
#define SW_ENGINE_DAEMON_H

#include <stdint.h>

#include "shard/shard.h"
#include "vmm/err.h"

struct engine;

struct engine_config {
	unsigned shards;	      /* shard threads; 0: online CPUs */
	struct shard_pin pin;	      /* none (see sandwired --help for when to pin) */
	char socket_path[108];	      /* "" : $XDG_RUNTIME_DIR/sandwire/sandwired.sock or /run/sandwire/... */
	char agent_path[4096];	      /* "" : sandwire-agent next to the running executable */
	char msb_home[4096];	      /* agent.sock layout root; "" : $MSB_HOME or ~/.microsandbox */
	int msb_sockets;	      /* 1: publish per-sandbox agent.sock (default), 0: do not */
	int log_level;		      /* SHARD_LOG_*; INFO */
	uint32_t boot_timeout_ms;     /* agent start -> core.ready; 10000 */
	uint32_t disconnect_grace_ms; /* SIGHUP -> SIGKILL for a departed client's execs; 2000 */
	uint32_t pool_chunks;	      /* 64 KiB chunks per shard; 2048 */
};

/* Defaults as noted above. */
void engine_config_init(struct engine_config *cfg);

/*
 * Start the engine: shards, the client socket (mode 0600, its directory
 * created 0700).  Returns NULL with <err> set (e.g. the socket is in use by
 * a running daemon).
 */
struct engine *engine_start(const struct engine_config *cfg, struct sw_err *err);

/*
 * Run the control loop until a stop: engine_request_stop, or SIGTERM /
 * SIGINT read from <sigfd> (a signalfd, or -1).  Then stops every sandbox
 * (core.shutdown, then the backend's stop) and the shards.  Returns 0, or
 * -EBUSY when a shard leaked chunks (logged).
 */
int engine_run(struct engine *e, int sigfd);

/*
 * For a daemon's main thread: block SIGTERM and SIGINT (engine_run reads
 * them), ignore SIGPIPE, and return a signalfd for engine_run, or -errno.
 */
int engine_signalfd(void);

/* Ask engine_run to return.  Any thread; async-signal-safe. */
void engine_request_stop(struct engine *e);

/* Free what engine_start made (after engine_run returned). */
void engine_destroy(struct engine *e);

/* The socket path the engine listens on. */
const char *engine_socket_path(const struct engine *e);

#endif /* SW_ENGINE_DAEMON_H */
