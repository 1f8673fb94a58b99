/*
 * engine/swclient.h - a blocking client of sandwired's socket (engine/api.h):
 * used by the sandwire CLI, the tests and perf/.  One connection, one
 * thread.  Reads exactly the bytes of each frame it needs (no read-ahead),
 * so after swc_attach the descriptor carries nothing but the relay stream
 * and may be handed to any agent-protocol client (perf/client/agent_client.h).
 *
 *	struct swc c;
 *	char err[256];
 *	if (swc_connect(&c, swc_socket_path(NULL, buf, sizeof buf), err, sizeof err) < 0) ...
 *	rc = swc_call_simple(&c, ENGINE_V_LIST, NULL, &res, err, sizeof err);
 *	... res.data / res.data_len (CBOR) for engine_decode_list ...
 *	swc_close(&c);
 */
#ifndef SW_ENGINE_SWCLIENT_H
#define SW_ENGINE_SWCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/api.h"

#define SWC_TIMEOUT_MS_DEF 30000 /* default wait for one answer (create waits for boot) */

struct swc {
	int fd;
	uint32_t next_id;  /* next request id (1, 2, ...) */
	int timeout_ms;	   /* per answer; SWC_TIMEOUT_MS_DEF */
	uint8_t *frame;	   /* the last frame read (malloc'd, grows) */
	size_t frame_cap;
};

/* An answer: points into c->frame until the next call. */
struct swc_result {
	bool ok;
	const uint8_t *data; /* the data item (CBOR; a null item when none) */
	size_t data_len;
};

/*
 * The daemon's socket path: <explicit> when not NULL, else $SANDWIRE_SOCKET,
 * else $XDG_RUNTIME_DIR/sandwire/sandwired.sock, else
 * /run/sandwire/sandwired.sock.  Written to <buf>; returns <buf>.
 */
const char *swc_socket_path(const char *explicit_path, char *buf, size_t cap);

/*
 * Connect to <path>.  Returns 0, or -errno with <err> saying what failed
 * and what to do ("no daemon at PATH: start one with `sandwire serve` ...").
 */
int swc_connect(struct swc *c, const char *path, char *err, size_t cap);

/*
 * Wait until a daemon answers on <path> (e.g. one just started), trying
 * every 10 ms for at most <timeout_ms>.  Returns 0 or -ETIMEDOUT.
 */
int swc_wait_ready(const char *path, int timeout_ms);

/* Close (idempotent). */
void swc_close(struct swc *c);

/*
 * Send <frame> (a request whose id is <id>, from engine_req_*) and wait for
 * its result.  Returns 0 with *<res> filled (res->ok false: <err> holds the
 * daemon's text), or -errno / a proto code with <err> saying why (timeout,
 * daemon gone, bad answer).
 */
int swc_call(struct swc *c, const void *frame, size_t n, uint32_t id, struct swc_result *res,
	char *err, size_t cap);

/* engine_req_simple + swc_call in one (name may be NULL for list/stats). */
int swc_call_simple(struct swc *c, enum engine_verb v, const char *name, struct swc_result *res,
	char *err, size_t cap);

/*
 * Attach to sandbox <name>: on success (0) the connection is a relay
 * connection: *<id_start> and *<id_end> are its id range and <ready>/<ready_len>
 * (malloc'd, the caller frees) the cached core.ready frame, whole.  On
 * failure returns < 0 with <err> set (the daemon's text when it refused).
 */
int swc_attach(struct swc *c, const char *name, uint32_t *id_start, uint32_t *id_end,
	uint8_t **ready, size_t *ready_len, char *err, size_t cap);

/*
 * Read exactly one frame from <fd> into *<buf> (grown with realloc as
 * needed, *<cap> updated), waiting at most <timeout_ms> (-1: forever).
 * Returns the frame's size, 0 on timeout, -EPIPE on EOF, PROTO_E_OVERSIZE /
 * PROTO_E_UNDERSIZE on a bad length, or -errno.
 */
long swc_read_frame(int fd, uint8_t **buf, size_t *cap, int timeout_ms);

/* Write all <n> bytes.  Returns 0 or -errno. */
int swc_write_all(int fd, const void *p, size_t n);

#endif /* SW_ENGINE_SWCLIENT_H */
