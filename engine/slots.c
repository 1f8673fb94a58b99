/*
 * engine/slots.c - relay slots of one console (see slots.h).
 */
#include "engine/slots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void engine_slots_init(struct engine_slots *t)
{
	memset(t, 0, sizeof(*t));
}

void engine_slots_destroy(struct engine_slots *t)
{
	for (unsigned k = 0; k < ENGINE_SLOTS; k++)
		free(t->slot[k].execs);
	memset(t, 0, sizeof(*t));
}

static void slot_free(struct engine_slot *s)
{
	s->state = ENGINE_SLOT_FREE;
	s->client = NULL;
	s->nexecs = 0;
	s->quarantine_until = 0;
	s->lease_hold = false;
}

int engine_slots_attach(struct engine_slots *t, void *client, uint64_t now)
{
	for (unsigned k = 0; k < ENGINE_SLOT_ENGINE; k++) {
		struct engine_slot *s = &t->slot[k];

		if (s->state == ENGINE_SLOT_QUARANTINE && now >= s->quarantine_until)
			slot_free(s);
		if (s->state != ENGINE_SLOT_FREE)
			continue;
		s->state = ENGINE_SLOT_CLIENT;
		s->client = client;
		return (int)k;
	}
	t->refused_full++;
	return -EBUSY;
}

size_t engine_slots_detach(struct engine_slots *t, unsigned k, uint64_t deadline, uint32_t *ids,
	size_t cap)
{
	struct engine_slot *s = &t->slot[k];
	size_t n = s->nexecs < cap ? s->nexecs : cap;

	if (n)
		memcpy(ids, s->execs, n * sizeof(*ids));
	s->client = NULL;
	if (s->nexecs == 0) {
		slot_free(s);
	} else {
		s->state = ENGINE_SLOT_QUARANTINE;
		s->quarantine_until = deadline;
	}
	return s->nexecs;
}

void engine_slots_lease_hold(struct engine_slots *t, unsigned k, uint64_t deadline)
{
	struct engine_slot *s = &t->slot[k];

	if (s->state == ENGINE_SLOT_CLIENT)
		return;
	if (s->state == ENGINE_SLOT_FREE || deadline > s->quarantine_until)
		s->quarantine_until = deadline;
	s->state = ENGINE_SLOT_QUARANTINE;
	s->lease_hold = true;
}

void engine_slots_lease_acked(struct engine_slots *t, unsigned k)
{
	struct engine_slot *s = &t->slot[k];

	if (s->state != ENGINE_SLOT_QUARANTINE || !s->lease_hold)
		return;
	s->lease_hold = false;
	if (s->nexecs == 0)
		slot_free(s);
}

static void exec_add(struct engine_slots *t, struct engine_slot *s, uint32_t id)
{
	for (uint32_t i = 0; i < s->nexecs; i++)
		if (s->execs[i] == id)
			return;
	if (s->nexecs == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 16;
		uint32_t *v;

		if (cap > ENGINE_SLOT_MAX_EXECS || !(v = realloc(s->execs, cap * sizeof(*v)))) {
			t->untracked_execs++;
			return;
		}
		s->execs = v;
		s->cap = cap;
	}
	s->execs[s->nexecs++] = id;
}

static void exec_remove(struct engine_slot *s, uint32_t id)
{
	for (uint32_t i = 0; i < s->nexecs; i++) {
		if (s->execs[i] == id) {
			s->execs[i] = s->execs[--s->nexecs];
			if (s->nexecs == 0 && s->state == ENGINE_SLOT_QUARANTINE && !s->lease_hold)
				slot_free(s);
			return;
		}
	}
}

void engine_slots_frame(struct engine_slots *t, uint32_t id, bool from_client, bool exec_start,
	bool terminal)
{
	struct engine_slot *s;

	if (id == 0)
		return;
	s = &t->slot[engine_slot_route(id)];
	if (from_client && exec_start && s->state == ENGINE_SLOT_CLIENT)
		exec_add(t, s, id);
	else if (terminal && s->nexecs > 0)
		exec_remove(s, id);
}
