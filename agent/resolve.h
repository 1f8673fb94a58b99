/*
 * agent/resolve.h - host name lookups for tcp.connect, off the agent loop.
 *
 * getaddrinfo() may wait seconds on DNS; the agent has one loop for every
 * session, so names are looked up by one helper thread, started on the
 * first name that needs it (numeric addresses and "localhost" never do,
 * tcp.c handles them inline) and joined in agent_destroy.
 *
 *   loop                                   resolver thread
 *   agent_resolve_start(t, host, port)
 *     slot <- free list, ref on t
 *     push {slot} to req ----------------> pop {slot}
 *     ring_wake_notify(req_wake)             getaddrinfo(host, port,
 *                                              AF_UNSPEC, SOCK_STREAM)
 *   POLL_ADD on done_wake's eventfd <------- push {slot} to done,
 *   AGENT_OP_RESOLVED: pop {slot}            ring_wake_notify(done_wake)
 *     agent_tcp_resolved(t, list, err)
 *     drop the ref on t, slot -> free list
 *
 * Both queues are ring_mpsc rings of AGENT_RESOLVE_MAX descriptors and at
 * most AGENT_RESOLVE_MAX lookups are in flight (queued, running or
 * answered but not yet taken), so neither push can find its ring full:
 * the loop never blocks on the resolver.  One more name while the limit is
 * reached fails that connect at once ("name lookup queue full").
 *
 * A stream that ends while its lookup is in flight (tcp.close, a relay
 * client leaving, shutdown, the 30 s deadline) is marked done; the lookup
 * keeps a reference on it, so its memory stays until the answer comes back
 * and is dropped unread.  The thread skips the getaddrinfo of a lookup
 * cancelled before it starts (agent_resolve_cancel is a hint).
 *
 * Lookups run one at a time, in order: a slow name delays the names queued
 * behind it, each still bounded by its own stream's deadline, which the
 * loop checks on its 100 ms tick (agent_resolve_tick).
 *
 * owner: the agent loop, except where resolve.c says a field is the
 * thread's.  Everything here is called on the loop's thread.
 */
#ifndef SW_AGENT_RESOLVE_H
#define SW_AGENT_RESOLVE_H

#include <stdint.h>

#define AGENT_RESOLVE_MAX 128u     /* lookups in flight (a power of two: ring capacity) */
#define AGENT_RESOLVE_HOST_MAX 256 /* a host name's bytes, NUL included (DNS: 253 chars) */

struct agent;
struct agent_tcp;
struct agent_lookup;

/*
 * Look <host> (a NUL-terminated name shorter than AGENT_RESOLVE_HOST_MAX)
 * up for <t>: its answer reaches agent_tcp_resolved() on a later loop turn
 * (or agent_tcp_lookup_expired() once <deadline_ms> of agent_now_ms() has
 * passed) and t->lookup points at the lookup meanwhile.  Takes a reference
 * on <t>.  Starts the thread on first use.  Returns 0, -ENOBUFS when
 * AGENT_RESOLVE_MAX lookups are in flight, -ENAMETOOLONG, or -ENOMEM / a
 * negative errno when the thread cannot be started (the next call tries
 * again).  Loop thread.
 */
int agent_resolve_start(struct agent *a, struct agent_tcp *t, const char *host, uint16_t port,
	uint64_t deadline_ms);

/*
 * The stream of <lk> has ended: the thread may skip the lookup if it has
 * not started it.  The answer still comes back (and is dropped by
 * agent_tcp_resolved, which sees the stream done).  Loop thread.
 */
void agent_resolve_cancel(struct agent_lookup *lk);

/*
 * AGENT_OP_RESOLVED completed with <res> (poll events or -errno): hand
 * every answer to its stream, then poll again.  Loop thread.
 */
void agent_resolve_complete(struct agent *a, int res);

/*
 * Once per tick: end the streams whose lookup outlived their deadline, and
 * take answers that no poll reported (after a poll error).  No-op before
 * the first lookup.  Loop thread.
 */
void agent_resolve_tick(struct agent *a, uint64_t now_ms);

/*
 * Stop and join the thread (it finishes the getaddrinfo it is in, bounded
 * by the system resolver's own timeouts, and starts no other), then free
 * the queues, unread answers included.  Touches no session: call it after
 * the ring is gone, before or after the sessions are freed.  Loop thread.
 */
void agent_resolve_destroy(struct agent *a);

#endif /* SW_AGENT_RESOLVE_H */
