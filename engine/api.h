/*
 * engine/api.h - sandwired's management protocol: what a client says on the
 * daemon's socket before (and instead of) attaching to a sandbox.  Shared by
 * the daemon, the sandwire CLI and the tests.  docs/engine-api.md has the
 * same in prose, with the bytes.
 *
 * Framing is the agent protocol's (spec 1.2 and 2.1): [len][id][flags]
 * {v: 7, t: "sandwire.engine.<verb>", p: <CBOR map>}.  A request carries a
 * client-chosen id != 0 and flags SESSION_START; the daemon answers on the
 * same id with one "sandwire.engine.result" frame, flags TERMINAL:
 *
 *   {ok: true,  error: null,   data: <map or null>}
 *   {ok: false, error: "text saying what failed and what to do", data: null}
 *
 * Requests may be pipelined; answers come in the order the requests
 * complete (create waits for the agent's ready, list does not).
 *
 *   verb      payload                                  data of a good result
 *   create    engine_create (below)                    sandbox info
 *   list      {}                                       {sandboxes: [info...]}
 *   inspect   {name}                                   info
 *   stop      {name}                                   info
 *   start     {name}                                   info (boots it again)
 *   remove    {name}                                   null
 *   publish   {name, ports: [port]}                    info
 *   stats     {}                                       {shards: [shard stats...]}
 *   attach    {name}                                   null, then the relay handshake
 *
 * attach turns the connection into a relay connection: right after the good
 * result come the 8 bytes [id_start u32 BE][id_end_exclusive u32 BE] and the
 * sandbox's cached core.ready frame (spec 5.2), and from then on the
 * connection carries agent-protocol frames in both directions, exactly as
 * a microsandbox client on the sandbox's agent.sock would see them.
 */
#ifndef SW_ENGINE_API_H
#define SW_ENGINE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cbor_rd.h"
#include "proto/cbor_wr.h"

#define ENGINE_API_PREFIX "sandwire.engine."
#define ENGINE_API_RESULT "sandwire.engine.result"
#define ENGINE_NAME_MAX 63u	   /* sandbox name: [A-Za-z0-9_.-], 1..63 bytes */
#define ENGINE_PORTS_MAX 32u	   /* published ports per sandbox */
#define ENGINE_ARGV_MAX 64u	   /* agent command words */
#define ENGINE_RLIMITS_MAX 16u	   /* rlimits per sandbox */
#define ENGINE_REQ_MAX 65536u	   /* bytes of one request frame */
#define ENGINE_PORT_LIMIT_DEF 1024u /* concurrent connections per published port */

enum engine_verb {
	ENGINE_V_UNKNOWN = -1,
	ENGINE_V_CREATE = 0,
	ENGINE_V_LIST,
	ENGINE_V_INSPECT,
	ENGINE_V_STOP,
	ENGINE_V_START,
	ENGINE_V_REMOVE,
	ENGINE_V_PUBLISH,
	ENGINE_V_STATS,
	ENGINE_V_ATTACH,
	ENGINE_V__COUNT
};

/* One published port: [IP:]HOST_PORT:GUEST_PORT. */
struct engine_port {
	char host_ip[48];    /* numeric IPv4 or IPv6; "127.0.0.1" when not given */
	uint16_t host_port;  /* 0: the kernel picks one (reported in info) */
	uint16_t guest_port; /* dialled as 127.0.0.1:GUEST_PORT inside the sandbox */
	uint32_t limit;	     /* concurrent connections; 0: ENGINE_PORT_LIMIT_DEF */
};

struct engine_rlimit {
	char name[16]; /* "nofile", "nproc", ... (spec 3.2 names) */
	uint64_t soft, hard;
};

/* The create request: a decoded one points into the frame and the arena. */
struct engine_create {
	struct proto_str name;
	struct proto_str backend;   /* "" or "process" */
	struct proto_str agent[ENGINE_ARGV_MAX]; /* agent command; none: the daemon's default */
	size_t nagent;
	struct proto_str ns;	    /* "user,pid,..." / "all" / "none"; "" = none */
	struct proto_str root;	    /* root directory; "" = host filesystem */
	struct engine_rlimit rlimits[ENGINE_RLIMITS_MAX];
	size_t nrlimits;
	struct engine_port ports[ENGINE_PORTS_MAX];
	size_t nports;
	uint32_t boot_timeout_ms;   /* 0: the daemon's default */
};

/* What list/inspect/create/stop/start/publish report of a sandbox. */
struct engine_port_info {
	struct engine_port port;
	uint64_t accepted, refused, active;
};

struct engine_info {
	char name[ENGINE_NAME_MAX + 1];
	char state[16];		/* "booting", "running", "stopped", "failed" */
	char backend[16];
	char agent_version[64];
	char error[256];	/* why it failed or stopped, "" if not */
	int64_t pid;		/* agent pid, 0 when not running */
	uint32_t shard;		/* home shard */
	uint32_t clients;	/* attached clients */
	uint32_t generation;	/* protocol generation of its agent */
	uint64_t boot_ms;	/* start -> ready, ms */
	uint64_t frames_in, frames_out, bytes_in, bytes_out; /* console, from/to the guest */
	struct engine_port_info ports[ENGINE_PORTS_MAX];
	size_t nports;
};

/* Per-shard counters (the stats verb, sandwire stats, the metrics endpoint). */
struct engine_shard_stats {
	uint32_t shard;
	uint64_t clients, consoles, port_conns; /* live now */
	uint64_t frames_in, frames_out;		/* frames routed from / to guests */
	uint64_t bytes_in, bytes_out;
	uint64_t calls_sent, calls_run;		/* cross-shard messages */
	uint32_t inbox_depth;
	uint64_t copies, copy_bytes;		/* user-space payload copies and their bytes */
	uint64_t drops;				/* frames dropped (no owner, refused) */
	uint64_t refused;			/* frames refused: id not the client's */
	uint64_t stalls;			/* times a reader paused for a full queue */
	uint64_t bulk_streams;			/* published-port streams moved as raw bulk records */
	uint64_t pool_in_use, pool_total;
};

/* Wire name of <v> ("sandwire.engine.create"), or NULL. */
const char *engine_verb_name(enum engine_verb v);
/* The verb a type name names, ENGINE_V_UNKNOWN if none. */
enum engine_verb engine_verb_lookup(const char *t, size_t n);

/* Check a sandbox name.  Returns 0, or -EINVAL with a reason in <why>. */
int engine_name_check(const char *name, size_t n, char *why, size_t cap);

/*
 * Parse "[IP:]HOST:GUEST" (IPv6 in brackets: "[::1]:8080:80") into <p>.
 * Returns 0, or -EINVAL with the reason in <why>.
 */
int engine_port_parse(const char *spec, struct engine_port *p, char *why, size_t cap);

/*
 * Frame helpers.  Each writes one whole frame into <buf> of <cap> bytes
 * and returns its size, or a negative proto code (PROTO_E_NOSPACE ...).
 */
long engine_req_create(void *buf, size_t cap, uint32_t id, const struct engine_create *c);
/* list, stats: no argument; inspect, stop, start, remove, attach: a name. */
long engine_req_simple(void *buf, size_t cap, uint32_t id, enum engine_verb v, const char *name);
long engine_req_publish(void *buf, size_t cap, uint32_t id, const char *name,
	const struct engine_port *ports, size_t n);

/*
 * A result frame.  <data_fn> (may be NULL: data null) writes the data item
 * through <w>; <err> NULL means ok.
 */
long engine_result(void *buf, size_t cap, uint32_t id, const char *err,
	void (*data_fn)(struct cbw *w, const void *ctx), const void *ctx);

/* Write one info map / one shard stats map (used as data_fn bodies). */
void engine_info_write(struct cbw *w, const struct engine_info *in);
void engine_stats_write(struct cbw *w, const struct engine_shard_stats *st);

/*
 * Request decoding (daemon side).  <p>/<n> is the payload ("p").  Returns 0
 * or a negative proto code; <why> gets a sentence for the error reply.
 */
int engine_decode_create(const uint8_t *p, size_t n, struct proto_arena *a,
	struct engine_create *c, char *why, size_t cap);
int engine_decode_name(const uint8_t *p, size_t n, struct proto_str *name);
int engine_decode_publish(const uint8_t *p, size_t n, struct proto_str *name,
	struct engine_port *ports, size_t *nports, char *why, size_t cap);

/*
 * Result decoding (client side).  <p>/<n> is the payload of a result frame.
 * *<ok> and <err> (the error text, "" when ok) are set; <data> / <data_len>
 * point at the data item (CBOR, null when absent) for the decoders below.
 */
int engine_decode_result(const uint8_t *p, size_t n, bool *ok, char *err, size_t cap,
	const uint8_t **data, size_t *data_len);
int engine_decode_info(struct cbr *r, struct engine_info *in);
/* list: calls <fn> per sandbox; stats: per shard. */
int engine_decode_list(const uint8_t *data, size_t n,
	void (*fn)(const struct engine_info *in, void *ctx), void *ctx);
int engine_decode_stats(const uint8_t *data, size_t n,
	void (*fn)(const struct engine_shard_stats *st, void *ctx), void *ctx);

#endif /* SW_ENGINE_API_H */
