/*
 * agent/heartbeat.h - the heartbeat file (spec 3.5 / 4.8).
 *
 * Same file, same JSON as the reference, but written from the agent's event
 * loop (design/wire.md F29): a wedged loop shows as a stale heartbeat.
 * The loop calls agent_heartbeat_tick() about once a second.
 */
#ifndef SW_AGENT_HEARTBEAT_H
#define SW_AGENT_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define AGENT_HEARTBEAT_DIR "/.msb"

/* Counters the loop keeps; copied into each record. */
struct agent_activity {
	uint64_t activity_seq;
	uint32_t active_exec_sessions;
	uint32_t active_fs_streams;
	uint32_t active_tcp_streams;
	uint64_t host_messages;
	uint64_t guest_messages;
	uint64_t exec_output_bytes;
	uint64_t fs_bytes;
	uint64_t tcp_bytes;
};

/* owner: the agent loop thread. */
struct agent_heartbeat {
	char dir[256];               /* directory holding heartbeat.json */
	uint64_t seq;                /* last heartbeat_seq written (first write is 1) */
	uint64_t seen_activity_seq;  /* activity_seq at the previous write */
	struct timespec last_activity; /* CLOCK_REALTIME */
};

/* Start tracking; <dir> is usually AGENT_HEARTBEAT_DIR.  <now> is CLOCK_REALTIME. */
void agent_heartbeat_init(struct agent_heartbeat *hb, const char *dir, struct timespec now);

/*
 * Format one record (compact JSON, spec 3.5 field order) for time <now>
 * into <buf>.  Returns its length, or -ENOSPC.
 */
int agent_heartbeat_format(const struct agent_heartbeat *hb, const struct agent_activity *a,
	struct timespec now, char *buf, size_t cap);

/*
 * Write the next record: bump seq, update last_activity when activity_seq
 * moved, write <dir>/heartbeat.tmp and rename it over heartbeat.json.  Does
 * nothing (returns 0) when <dir> is not a directory.  Returns 1 when a
 * record was written, or a negative errno (the reference ignores errors;
 * the caller may count them).
 */
int agent_heartbeat_tick(struct agent_heartbeat *hb, const struct agent_activity *a,
	struct timespec now);

/* RFC 3339 UTC time with 0, 3, 6 or 9 fraction digits (chrono's form).  Returns length. */
int agent_rfc3339(struct timespec t, char *buf, size_t cap);

#endif /* SW_AGENT_HEARTBEAT_H */
