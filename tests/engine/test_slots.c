/*
 * tests/engine/test_slots.c - relay slots: ranges, routing, attach/detach,
 * exec tracking and quarantine.
 */
#include <criterion/criterion.h>

#include <errno.h>

#include "engine/slots.h"

static struct engine_slots t;

static void setup(void)
{
	engine_slots_init(&t);
}

static void teardown(void)
{
	engine_slots_destroy(&t);
}

TestSuite(engine_slots, .init = setup, .fini = teardown);

Test(engine_slots, ranges_match_the_reference_handshakes)
{
	/* H1 and H2 of the spec's vectors. */
	cr_assert_eq(engine_slot_start(0), 1);
	cr_assert_eq(engine_slot_end(0), 33554431);
	cr_assert_eq(engine_slot_start(1), 33554432);
	cr_assert_eq(engine_slot_end(1), 67108862);
	cr_assert_eq(engine_slot_start(127), 4261412738u);
	cr_assert_eq(engine_slot_end(127), 4294967168u);
}

Test(engine_slots, routes_by_header_and_checks_ownership_at_the_edges)
{
	cr_assert_eq(engine_slot_route(0), 0);
	cr_assert_eq(engine_slot_route(1), 0);
	cr_assert_eq(engine_slot_route(33554430), 0);
	cr_assert_eq(engine_slot_route(33554432), 1);
	cr_assert_eq(engine_slot_route(0xffffffffu), 127);
	cr_assert(engine_slot_owns(0, 1));
	cr_assert(engine_slot_owns(0, 33554430));
	cr_assert_not(engine_slot_owns(0, 0));
	cr_assert_not(engine_slot_owns(0, 33554431), "k*STEP is never handed out");
	cr_assert_not(engine_slot_owns(1, 33554431));
	cr_assert(engine_slot_owns(1, 33554432));
	cr_assert_not(engine_slot_owns(126, engine_slot_start(127)));
}

Test(engine_slots, attaches_the_lowest_free_slot_and_keeps_127_for_the_engine)
{
	int a = 1, b = 2;

	for (int k = 0; k < 127; k++)
		cr_assert_eq(engine_slots_attach(&t, &a, 0), k);
	cr_assert_eq(engine_slots_attach(&t, &b, 0), -EBUSY);
	cr_assert_eq(t.refused_full, 1);
	uint32_t ids[4];
	cr_assert_eq(engine_slots_detach(&t, 5, 0, ids, 4), 0);
	cr_assert_eq(t.slot[5].state, ENGINE_SLOT_FREE);
	cr_assert_eq(engine_slots_attach(&t, &b, 0), 5);
	cr_assert_eq(t.slot[5].client, &b);
}

Test(engine_slots, tracks_exec_sessions_until_their_terminal_frame)
{
	int c;
	uint32_t id = engine_slot_start(0) + 7, ids[8];

	cr_assert_eq(engine_slots_attach(&t, &c, 0), 0);
	engine_slots_frame(&t, id, true, true, false);        /* exec.request */
	engine_slots_frame(&t, id + 1, true, true, false);
	engine_slots_frame(&t, id + 2, true, false, false);   /* a tcp.connect: not tracked */
	engine_slots_frame(&t, id, false, false, false);      /* output */
	cr_assert_eq(t.slot[0].nexecs, 2);
	engine_slots_frame(&t, id + 1, false, false, true);   /* exec.exited */
	cr_assert_eq(t.slot[0].nexecs, 1);
	/* Detach leaves the remaining exec to be killed and quarantines the slot. */
	cr_assert_eq(engine_slots_detach(&t, 0, 1000, ids, 8), 1);
	cr_assert_eq(ids[0], id);
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_QUARANTINE);
	cr_assert_eq(engine_slots_attach(&t, &c, 10), 1, "slot 0 is quarantined");
	engine_slots_frame(&t, id, false, false, true);       /* its exec.exited arrives */
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_FREE);
	cr_assert_eq(engine_slots_attach(&t, &c, 20), 0);
}

Test(engine_slots, quarantine_ends_at_its_deadline)
{
	int c;
	uint32_t ids[1];

	cr_assert_eq(engine_slots_attach(&t, &c, 0), 0);
	engine_slots_frame(&t, 3, true, true, false);
	cr_assert_eq(engine_slots_detach(&t, 0, 500, ids, 1), 1);
	cr_assert_eq(engine_slots_attach(&t, &c, 499), 1);
	cr_assert_eq(engine_slots_attach(&t, &c, 500), 0, "deadline passed: slot 0 is free again");
}

Test(engine_slots, a_guest_frame_does_not_start_tracking)
{
	int c;

	cr_assert_eq(engine_slots_attach(&t, &c, 0), 0);
	engine_slots_frame(&t, 9, false, true, false);
	cr_assert_eq(t.slot[0].nexecs, 0);
	engine_slots_frame(&t, 0, true, true, false); /* id 0 belongs to no slot */
	cr_assert_eq(t.slot[0].nexecs, 0);
}

Test(engine_slots, bounds_the_exec_ids_tracked_per_client)
{
	int c;

	cr_assert_eq(engine_slots_attach(&t, &c, 0), 0);
	for (uint32_t i = 0; i < ENGINE_SLOT_MAX_EXECS + 10; i++)
		engine_slots_frame(&t, 1 + i, true, true, false);
	cr_assert_eq(t.slot[0].nexecs, ENGINE_SLOT_MAX_EXECS);
	cr_assert_eq(t.untracked_execs, 10);
}

Test(engine_slots, a_leased_slot_waits_for_the_agent_acknowledgement)
{
	int a = 1, b = 2, c = 3;
	uint32_t id = engine_slot_start(0) + 3, ids[4];

	cr_assert_eq(engine_slots_attach(&t, &a, 0), 0);
	cr_assert_eq(engine_slots_detach(&t, 0, 1000, ids, 4), 0);
	engine_slots_lease_hold(&t, 0, 1000);
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_QUARANTINE, "no exec left, but no ack yet");
	cr_assert_eq(engine_slots_attach(&t, &b, 10), 1, "the held slot is not handed out");
	engine_slots_lease_acked(&t, 0);
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_FREE);
	cr_assert_eq(engine_slots_attach(&t, &c, 20), 0);

	/* With an exec still running, the ack alone does not free the slot, nor its end alone. */
	engine_slots_frame(&t, id, true, true, false);
	cr_assert_eq(engine_slots_detach(&t, 0, 1000, ids, 4), 1);
	engine_slots_lease_hold(&t, 0, 1000);
	engine_slots_lease_acked(&t, 0);
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_QUARANTINE);
	engine_slots_frame(&t, id, false, false, true);
	cr_assert_eq(t.slot[0].state, ENGINE_SLOT_FREE);

	/* An agent that never answers: the deadline frees it. */
	cr_assert_eq(engine_slots_attach(&t, &a, 30), 0);
	cr_assert_eq(engine_slots_detach(&t, 0, 500, ids, 4), 0);
	engine_slots_lease_hold(&t, 0, 500);
	cr_assert_eq(engine_slots_attach(&t, &b, 499), 2);
	cr_assert_eq(engine_slots_attach(&t, &c, 500), 0);
}
