/*
 * agent/sessmap.c - u32 -> pointer open-addressing map (see sessmap.h).
 */
#include "agent/sessmap.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(const struct sessmap *m, uint32_t key)
{
	/* Fibonacci hashing spreads sequential ids and pids over the table. */
	return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

int sessmap_init(struct sessmap *m, size_t cap_hint)
{
	size_t cap = 16;

	while (cap < cap_hint * 2)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	m->cap = m->slots ? cap : 0;
	m->n = 0;
	return m->slots ? 0 : -ENOMEM;
}

void sessmap_destroy(struct sessmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}

void *sessmap_get(const struct sessmap *m, uint32_t key)
{
	for (size_t i = slot_of(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (!m->slots[i].val)
			return NULL;
		if (m->slots[i].key == key)
			return m->slots[i].val;
	}
}

static void put_nocheck(struct sessmap *m, uint32_t key, void *val)
{
	size_t i = slot_of(m, key);

	while (m->slots[i].val)
		i = (i + 1) & (m->cap - 1);
	m->slots[i].key = key;
	m->slots[i].val = val;
	m->n++;
}

int sessmap_put(struct sessmap *m, uint32_t key, void *val)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct sessmap old = *m;

		m->slots = calloc(old.cap * 2, sizeof(*m->slots));
		if (!m->slots) {
			*m = old;
			return -ENOMEM;
		}
		m->cap = old.cap * 2;
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.slots[i].val)
				put_nocheck(m, old.slots[i].key, old.slots[i].val);
		free(old.slots);
	}
	put_nocheck(m, key, val);
	return 0;
}

void *sessmap_del(struct sessmap *m, uint32_t key)
{
	size_t i = slot_of(m, key), j;
	void *val;

	for (;; i = (i + 1) & (m->cap - 1)) {
		if (!m->slots[i].val)
			return NULL;
		if (m->slots[i].key == key)
			break;
	}
	val = m->slots[i].val;
	/* Backward-shift: move later members of the probe run into the hole. */
	for (j = (i + 1) & (m->cap - 1); m->slots[j].val; j = (j + 1) & (m->cap - 1)) {
		size_t home = slot_of(m, m->slots[j].key);

		/* Move j to i unless its home lies cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].val = NULL;
	m->n--;
	return val;
}
