/*
 * engine/internal.h - the objects of sandwired and who owns them.
 *
 *   control thread          home shard of a sandbox        any shard
 *   --------------          -----------------------        ---------
 *   registry, sandbox       console (the console fd,       client connections,
 *   lifecycle, backend      boot, routing, slots,          published-port
 *   calls, mgmt requests    one writev per turn)           connections
 *
 * A client connection or a published-port connection reaches a console
 * through a struct link (one per attachment).  Frames travel between the
 * two shards as struct xfer batches through shard_call: at most one xfer per
 * link and direction per turn, flushed at the turn's deferred phase.
 *
 * Lifetimes are reference counts (atomic, any thread may drop the last):
 *   sandbox: the registry's entry, each console generation, each link;
 *   link:    its endpoint, the console while attached, each message in flight.
 */
#ifndef SW_ENGINE_INTERNAL_H
#define SW_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "engine/api.h"
#include "engine/daemon.h"
#include "engine/segq.h"
#include "engine/slots.h"
#include "proto/bulk.h"
#include "shard/shard.h"
#include "vmm/vmm.h"

struct console;
struct client;
struct link;
struct mreq;
struct port;
struct outmsg;
struct xfer;
struct pconn;
struct port_listener;
struct cevent;
struct msb_listener;

/* ---- bounds (README "Bounds") -------------------------------------------- */

#define ENGINE_QUEUE_HIGH (4u << 20)	/* bytes queued toward one endpoint before its source pauses */
#define ENGINE_QUEUE_LOW (1u << 20)	/* ... and resumes below this */
#define ENGINE_STUCK_NS (10ull * 1000000000ull) /* a client over HIGH this long is disconnected */
#define ENGINE_CTRL_FRAME_MAX 65536u	/* engine-decoded frames (requests, session starts) */
#define ENGINE_PORT_ID_LIVE_MAX 65536u	/* live published-port streams per sandbox */
#define ENGINE_REFUSED_KICK 64u		/* refused frames before a client is disconnected */
/*
 * Raw bulk on published-port streams (protocol-gen9.md G4, G5.1): the record
 * limit offered, and the guest -> host credit window.  The window bounds
 * the payload such a stream queues toward its host peer (not above what any
 * endpoint may queue), so the console never pauses for it (link
 * c_records): one slow peer stalls only its own stream.
 */
#define ENGINE_PORT_BULK_RECORD 262144u
#define ENGINE_PORT_BULK_WINDOW ENGINE_QUEUE_HIGH
_Static_assert(ENGINE_PORT_BULK_WINDOW <= ENGINE_QUEUE_HIGH, "a bulk stream queues no more than others");
#define ENGINE_PORT_BULK_OFFER                                                                     \
	((struct proto_bulk_offer){                                                                \
		PROTO_BULK_FORMAT_RAW_V1, ENGINE_PORT_BULK_RECORD, ENGINE_PORT_BULK_WINDOW})

/* ---- per-shard state ------------------------------------------------------ */

/* Counters a shard writes (relaxed) and anyone reads: struct engine_shard_stats. */
struct eshard_stats {
	_Atomic uint64_t clients, consoles, port_conns;
	_Atomic uint64_t frames_in, frames_out, bytes_in, bytes_out;
	_Atomic uint64_t copies, copy_bytes, drops, refused, stalls, bulk_streams;
	_Atomic uint64_t pool_in_use, pool_total, calls_sent, calls_run;
	_Atomic uint32_t inbox_depth;
};

static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
		memory_order_relaxed);
}

/* owner: its shard (shard_data). */
struct eshard {
	struct engine *e;
	struct shard *s;
	struct eshard_stats st;
	struct link *flush_c;		 /* links with a batch for their endpoint (console side) */
	struct link *flush_e;		 /* links with a batch for their console (endpoint side) */
	struct shard_defer flush;	 /* sends the batches and the outbox at the end of the turn */
	struct outmsg *out_head, *out_tail; /* cross-shard messages in order (link.c) */
	struct client *clients;		 /* live client connections (list) */
	struct console *consoles;	 /* consoles homed here */
	struct port_listener *listeners; /* published-port listeners on this shard */
	struct pconn *pconns;		 /* published-port connections */
	struct msb_listener *msbs;	 /* agent.sock listeners of sandboxes homed here */
	struct shard_accept api_accept;	 /* shard 0: the daemon socket */
	struct shard_timer tick;	 /* 1 s: stats snapshot, stuck clients */
	bool stopping;
};

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static inline struct eshard *eshard_of(struct shard *s)
{
	return shard_data(s);
}

/* ---- sandbox ---------------------------------------------------------------- */

enum sandbox_state {
	SB_BOOTING = 0,
	SB_RUNNING,
	SB_STOPPING,
	SB_STOPPED,
	SB_FAILED,
};

const char *sandbox_state_name(enum sandbox_state st);

/* owner: the control thread, but for the atomics (written by the home shard). */
struct sandbox {
	atomic_uint refs;
	char name[ENGINE_NAME_MAX + 1];
	struct engine *e;
	struct shard *home;
	/* control thread */
	enum sandbox_state state;
	char error[256];
	char backend_name[16];
	char *argv_mem;		   /* agent argv strings */
	const char *argv[ENGINE_ARGV_MAX + 2];
	char *root;
	unsigned ns;
	struct vmm_rlimit rlimits[ENGINE_RLIMITS_MAX];
	size_t nrlimits;
	uint32_t boot_timeout_ms;
	struct vmm_sandbox vm;
	bool vm_live;		   /* vm started and not yet stopped */
	struct console *con;	   /* the running console (its pointer; home-owned) */
	struct mreq *waiters;	   /* create/start requests waiting for boot */
	uint64_t t_start;
	struct port *ports[ENGINE_PORTS_MAX];
	size_t nports;
	char *msb_dir;		   /* the agent.sock directory, or NULL */
	char *msb_sock, *msb_link;
	bool msb_live;		   /* agent.sock listening */
	/* written by the home shard, read by anyone */
	_Atomic uint32_t clients, generation;
	_Atomic bool window;	   /* the running agent meters host input (G6): endpoints size frames */
	_Atomic uint64_t boot_ms, frames_in, frames_out, bytes_in, bytes_out;
	char agent_version[64];	   /* written by the home shard before it reports ready */
};

void sandbox_get(struct sandbox *sb);
void sandbox_put(struct sandbox *sb);

/* ---- links and transfers ------------------------------------------------------- */

/*
 * What a console needs from the far end of a link; each runs on link->shard
 * (through link_call_endpoint, with l->ep possibly NULL: the endpoint closed).
 */
struct link_ops {
	/* The console answered an attach: l->attach_rc 0 (l->id_lo/hi set) or < 0 (l->why). */
	void (*attached)(struct shard *s, struct link *l);
	/* Frames from the console (whole frames; events: TERMINAL ids). Takes the xfer. */
	void (*deliver)(struct shard *s, struct link *l, struct xfer *x);
	/* The console is gone (agent exited, framing error, stop) or dropped us: l->why. */
	void (*gone)(struct shard *s, struct link *l);
	/* The console took enough of this endpoint's queue (below LOW): read again. */
	void (*resume)(struct shard *s, struct link *l);
};

enum link_kind {
	LINK_CLIENT = 0, /* a client on a slot's id range */
	LINK_PORT,	 /* a published-port connection: one id of the engine slot */
};

/*
 * One attachment of an endpoint (client, port connection) to a console.
 * Fields marked (E) belong to the endpoint's shard, (C) to the console's
 * home shard; the rest is set before the link is shared and never changes.
 */
struct link {
	atomic_uint refs;
	enum link_kind kind;
	const struct link_ops *ops;
	struct shard *shard;		/* the endpoint's shard */
	void *ep;			/* the endpoint (E) */
	struct sandbox *sb;		/* holds a reference */
	uint32_t id_lo, id_hi;		/* its ids [lo, hi): set by the console before "attached" */
	/* queued bytes in each direction, for pausing the source (any thread) */
	_Atomic uint64_t to_guest, to_ep;
	_Atomic bool ep_paused;		/* (E) paused reading, wants a resume */
	/* (C) */
	bool c_attached;
	int slot;			/* client slot, or -1 */
	bool c_full;			/* counted in console->nfull */
	_Atomic bool c_paused;		/* (C) console reading paused for this link's queue */
	struct console *con;		/* (C) the console while c_attached */
	struct link *pnext;		/* (C) published-port id table chain */
	struct link *cnext, *cprev;	/* (C) the console's attached links */
	/* per-direction batch being filled this turn, by the side that sends it */
	struct segq out_c;		/* (C) frames to the endpoint */
	struct segq out_e;		/* (E) frames to the console */
	struct xev *ev;			/* (E) session events of out_e's frames */
	uint32_t nev, capev;
	struct link *flush_next_c, *flush_next_e;
	bool flush_c, flush_e;
	struct xev *evc;		/* (C) session events of out_c's frames (TERMINAL ids) */
	uint32_t nevc, capevc;
	int attach_rc;			/* (C) the answer to an attach, read by "attached" */
	uint8_t *ready_copy;		/* (C) client links: the core.ready frame for the handshake */
	size_t ready_len;
	char why[300];			/* (C) the reason given to "attached" / "gone" */
	char port_host[48];		/* LINK_PORT: where the agent dials */
	uint16_t port_guest;
	bool bulk_offer;		/* (C) LINK_PORT: tcp.connect offered raw bulk; set before
					 * "attached", read by the endpoint after it */
	bool c_records;			/* (C) ... and raw records went to it: the engine's credit
					 * bounds it, so the console never pauses for it */
};

/* What the console must know of frames an endpoint sends (it tracks sessions). */
enum xev_kind {
	XEV_EXEC_START = 0, /* SESSION_START core.exec.request */
	XEV_TERMINAL,	    /* a TERMINAL frame */
	XEV_PORT_CLOSE,	    /* a port connection gave up its stream id */
	XEV_FRAME_CONTROL,  /* the next frame of the batch (its size in id) is control input (G6) */
	XEV_FRAME_DATA,	    /* ... is data input (G6) */
};

struct xev {
	uint32_t id;
	uint8_t kind;
};

/* One batch crossing shards: frames (whole, in order) and their events. */
struct xfer {
	struct link *l; /* a reference */
	bool to_console;
	struct segq q;
	struct xev *ev;
	uint32_t nev;
};

struct link *link_new(enum link_kind kind, const struct link_ops *ops, struct shard *s, void *ep,
	struct sandbox *sb);
void link_get(struct link *l);
void link_put(struct link *l);

/*
 * Queue frames for the far side of <l> from shard <s> (the endpoint's or the
 * console's): they go at this turn's deferred phase as one xfer.  The
 * segments move into the link's batch.
 */
void link_send_to_console(struct shard *s, struct link *l, struct segq *frames);
void link_send_to_endpoint(struct shard *s, struct link *l, struct segq *frames);
/* Send one whole frame (heap copy of <p>/<n>) toward the console. */
int link_send_frame_to_console(struct shard *s, struct link *l, const void *p, size_t n);
/* Note a session event for the frames queued toward the console / the endpoint. */
int link_note_event(struct link *l, uint32_t id, enum xev_kind kind);
int link_note_event_c(struct link *l, uint32_t id, enum xev_kind kind);
/*
 * Before queueing a frame of <size> wire bytes toward the console: when its
 * agent meters input (G6), note the frame's size and class (<data>: exec
 * stdin, tcp data/eof, fs data, raw records) so the console can hold it
 * until the agent's credit covers it.
 */
void link_note_frame(struct link *l, uint32_t size, bool data);
/*
 * <n> bytes of segment <sg> (tagged with its link, a reference) reached their
 * destination: lower the link's queued count toward the guest or the
 * endpoint, tell the far side to read again below ENGINE_QUEUE_LOW, and drop
 * the segment's reference once all of it is through.  Shard <s> is the caller's.
 */
void link_account(struct shard *s, struct seg *sg, uint32_t n, bool to_guest);
/*
 * After an endpoint queued frames toward the console: true when the link is
 * over ENGINE_QUEUE_HIGH and the endpoint must stop reading until
 * ops->resume (ep_paused is then set, and the stall counted on <s>).
 */
bool link_should_pause(struct shard *s, struct link *l);
/* Release a batch that cannot be delivered. */
void xfer_drop(struct xfer *x);
/* Console side: frames (and events) from an endpoint; takes the xfer. */
void console_take_xfer(struct shard *s, struct xfer *x);
/*
 * From shard <s>, run <fn>(l) on the endpoint's / the console's shard, after
 * every batch <s> has queued for that side of <l> (order is kept).  The
 * call holds a link reference.  Returns 0 or -ENOMEM.
 */
int link_call_endpoint(struct shard *s, struct link *l, void (*fn)(struct shard *s, struct link *l));
int link_call_console(struct shard *s, struct link *l, void (*fn)(struct shard *s, struct link *l));
/* Move <l>'s pending batch for one side into the outbox now. */
void link_flush(struct shard *s, struct link *l, bool to_console);
/*
 * Queue shard_call(<to>, <fn>, <arg>) in <es>'s outbox: sent in order at the
 * end of the turn, retried while the target's inbox is full; <drop>(arg)
 * runs instead when the group is stopping.  Returns 0 or -ENOMEM.
 */
int eshard_send(struct eshard *es, struct shard *to, shard_call_fn fn, void (*drop)(void *arg),
	void *arg);
void eshard_init_flush(struct eshard *es);

/* ---- console (home shard) ---------------------------------------------------------- */

/* Start the console of <sb> on its home shard (shard_call target, arg = sb with a ref). */
void console_start_on_home(struct shard *s, void *sb);
/* Ask the console to send core.shutdown and close when the agent goes (arg = sb, ref). */
void console_shutdown_on_home(struct shard *s, void *sb);
/* Attach <l> to its sandbox's console (link_call_console): answers through l->ops->attached. */
void console_attach(struct shard *s, struct link *l);
/* Detach <l> (link_call_console): the disconnect policy runs; the console drops its reference. */
void console_detach(struct shard *s, struct link *l);
/* The endpoint of <l> drained its queue below LOW (link_call_console). */
void console_ep_drained(struct shard *s, struct link *l);
/* Close every console of shard <s> at once (group stop). */
void console_close_all(struct eshard *es);

/* ---- clients ---------------------------------------------------------------------------- */

/* Take connection <fd> on shard <s> in management mode. */
void client_adopt(struct shard *s, int fd);
/* Take connection <fd> on <s> straight into relay mode on <sb> (its agent.sock). */
void client_adopt_relay(struct shard *s, int fd, struct sandbox *sb);
void client_close_all(struct eshard *es);

/* ---- management requests ---------------------------------------------------------- */

/* owner: moves client shard -> control thread -> client shard. */
struct mreq {
	struct mreq *next;
	struct client *cl;	/* the asking client (kept alive by its pending count) */
	struct shard *shard;	/* its shard */
	uint32_t id;
	enum engine_verb verb;
	uint8_t *payload;	/* copy of "p" */
	size_t payload_len;
	uint8_t *reply;		/* the result frame, built by the control thread */
	size_t reply_len;
	struct sandbox *sb;	/* attach: the sandbox (ref) */
	struct engine *e;
};

/* Hand <m> to the control thread (any thread). */
void control_post(struct engine *e, struct mreq *m);
/* Control events from home shards: the console of <sb> is up or down. */
void control_console_up(struct engine *e, struct sandbox *sb);
void control_console_down(struct engine *e, struct sandbox *sb, const char *why);
/* The client shard's side of a finished request (shard_call target). */
void client_mreq_done(struct shard *s, void *m);
/* Build m->reply: error text <err> or good with <data_fn>. */
void mreq_reply(struct mreq *m, const char *err, void (*data_fn)(struct cbw *w, const void *ctx),
	const void *ctx);
/* Send m back to its client shard (control thread). */
void mreq_finish(struct mreq *m);
void mreq_free(struct mreq *m);

/* ---- published ports ------------------------------------------------------------------- */

/* owner: the control thread; per-shard listeners belong to their shards. */
struct port {
	atomic_uint refs;
	struct engine_port spec;	/* host_port: the bound port */
	struct sandbox *sb;		/* no reference: the sandbox owns the port */
	_Atomic uint64_t accepted, refused, active;
	int *fds;			/* one listener per shard */
	unsigned nfds;
};

int port_open(struct engine *e, struct sandbox *sb, const struct engine_port *spec,
	struct port **out, char *err, size_t cap);
void port_close(struct engine *e, struct port *p);
void port_info(const struct port *p, struct engine_port_info *out);
void port_close_all_on_shard(struct eshard *es);
extern const struct link_ops pconn_link_ops;

/* ---- per-sandbox agent.sock (microsandbox's layout, spec 5.1) ------------------------ */

/* Paths for <name> under <home>: the socket, its directory and the compatibility link. */
int msb_paths(const char *home, const char *name, char **dir, char **sock, char **link);
/* Bind <sb>'s agent.sock and listen on its home shard (control thread).  0 or -errno. */
int msb_publish(struct engine *e, struct sandbox *sb);
/* Stop listening and remove the socket files (control thread). */
void msb_unpublish(struct engine *e, struct sandbox *sb);
void msb_close_all_on_shard(struct eshard *es);

/* SHA-256 of <p>/<n> into <out>. */
void sha256(const void *p, size_t n, uint8_t out[32]);

/* ---- the engine -------------------------------------------------------------------------------- */

struct engine {
	struct engine_config cfg;
	struct shard_group *g;
	unsigned nshards;
	struct eshard **es;		/* per shard */
	int api_fd;			/* the daemon's listening socket */
	char *agent_default;		/* sandwire-agent next to sandwired */
	/* control thread */
	pthread_mutex_t q_mu;		/* guards the control queue only */
	struct mreq *q_head, *q_tail;
	struct cevent *ev_head, *ev_tail;
	int q_fd;			/* eventfd: queue not empty */
	struct sandbox **sbs;
	size_t nsbs, capsbs;
	atomic_uint next_client_shard;
	_Atomic bool stop;
};

void engine_log(struct engine *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The home shard of a new sandbox named <name>. */
struct shard *engine_home_for(struct engine *e, const char *name);

/* A shard to give a new client connection (round robin), from shard <from>. */
struct shard *engine_pick_shard(struct engine *e, struct shard *from);

/* Copy a shard's counters into <out>. */
void engine_read_shard_stats(struct engine *e, unsigned i, struct engine_shard_stats *out);

/* Fill <in> about <sb> (control thread). */
void sandbox_info(const struct sandbox *sb, struct engine_info *in);

#endif /* SW_ENGINE_INTERNAL_H */
