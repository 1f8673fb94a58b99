/*
 * engine/slots.h - the relay's partition of a console's id space among the
 * clients attached to one sandbox (spec 5.2-5.5, design/wire.md "Client
 * ids and the relay").
 *
 *   slot k owns ids [k*STEP + 1, (k+1)*STEP), STEP = 33,554,431 (spec 5.3);
 *   guest frames route by header only: slot = min(id / STEP, 127);
 *   slot 127 is the engine's own (published-port streams): clients get 0..126.
 *
 * A slot's lifecycle:  FREE --attach--> CLIENT --detach--> QUARANTINE --> FREE
 * QUARANTINE lasts until every exec session the client left running has
 * sent its terminal frame (or a deadline passes), so a new client never
 * receives a departed client's output (wire.md, spec F11).
 *
 * Exec sessions are tracked per slot from the headers alone: a client's
 * SESSION_START frame of type core.exec.request adds its id, a TERMINAL
 * frame on that id in either direction removes it (spec 5.4 step 3).
 *
 * owner: the sandbox's home shard (one thread); no locking.
 */
#ifndef SW_ENGINE_SLOTS_H
#define SW_ENGINE_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENGINE_SLOT_STEP 33554431u /* floor((2^32 - 1) / 128), spec AGENT_RELAY_ID_RANGE_STEP */
#define ENGINE_SLOTS 128u
#define ENGINE_SLOT_ENGINE 127u    /* reserved for the engine's own streams */
#define ENGINE_SLOT_MAX_EXECS 4096u /* live exec sessions tracked per client */

enum engine_slot_state {
	ENGINE_SLOT_FREE = 0,
	ENGINE_SLOT_CLIENT,
	ENGINE_SLOT_QUARANTINE,
};

struct engine_slot {
	enum engine_slot_state state;
	void *client;                /* the attached client while CLIENT */
	uint32_t *execs;             /* live exec session ids (unordered) */
	uint32_t nexecs, cap;
	uint64_t quarantine_until;   /* QUARANTINE: give up waiting at this time (ns) */
	bool lease_hold;             /* QUARANTINE: also until the agent acknowledged (MSBL) */
};

struct engine_slots {
	struct engine_slot slot[ENGINE_SLOTS];
	uint64_t refused_full;       /* attach refused: every client slot busy */
	uint64_t untracked_execs;    /* exec starts not tracked (over ENGINE_SLOT_MAX_EXECS) */
};

/* First id of slot <k>. */
static inline uint32_t engine_slot_start(unsigned k)
{
	return k * ENGINE_SLOT_STEP + 1;
}

/* One past the last id of slot <k>. */
static inline uint32_t engine_slot_end(unsigned k)
{
	return (k + 1) * ENGINE_SLOT_STEP;
}

/* The slot a guest frame with <id> is routed to (spec 5.3; id 0 goes to slot 0). */
static inline unsigned engine_slot_route(uint32_t id)
{
	unsigned k = id / ENGINE_SLOT_STEP;

	return k < ENGINE_SLOTS - 1 ? k : ENGINE_SLOTS - 1;
}

/* True when slot <k> may send a frame on <id> (its own range only). */
static inline bool engine_slot_owns(unsigned k, uint32_t id)
{
	return id >= engine_slot_start(k) && id < engine_slot_end(k);
}

void engine_slots_init(struct engine_slots *t);
void engine_slots_destroy(struct engine_slots *t);

/*
 * Attach <client> to the lowest free client slot at time <now> (ns);
 * quarantined slots whose deadline passed are freed first.  Returns the
 * slot, or -EBUSY (counted) when all 127 are taken or quarantined.
 */
int engine_slots_attach(struct engine_slots *t, void *client, uint64_t now);

/*
 * Detach the client of slot <k>.  Its live exec ids are copied to <ids>
 * (up to <cap>; the caller signals them) and their count returned; the slot
 * is FREE at once when there are none, else QUARANTINE until they end or
 * <deadline> (ns).
 */
size_t engine_slots_detach(struct engine_slots *t, unsigned k, uint64_t deadline, uint32_t *ids,
	size_t cap);

/*
 * After engine_slots_detach, with relay leases (protocol-gen9.md G7.1): keep
 * slot <k> quarantined, even with no exec left, until the agent acknowledges
 * the disconnect (engine_slots_lease_acked) or <deadline> (ns) passes.
 */
void engine_slots_lease_hold(struct engine_slots *t, unsigned k, uint64_t deadline);

/* The agent acknowledged slot <k>'s disconnect: free once its execs ended too. */
void engine_slots_lease_acked(struct engine_slots *t, unsigned k);

/*
 * Account one frame seen on the console: <from_client> says its direction,
 * <exec_start> that it is a SESSION_START core.exec.request, <terminal>
 * that it ends its session: FLAG_TERMINAL on any type but core.error,
 * which on a live exec id means "that frame failed" (wire.md, spec F3), so
 * the caller passes false for it.  A quarantined slot becomes FREE when its
 * last exec ends.
 */
void engine_slots_frame(struct engine_slots *t, uint32_t id, bool from_client, bool exec_start,
	bool terminal);

#endif /* SW_ENGINE_SLOTS_H */
