/*
 * agent/sessmap.h - u32 key -> pointer map (open addressing, linear
 * probing, backward-shift deletion).  Used for wire id -> session and
 * pid -> exec session.  Grows by doubling at 50% load; never shrinks.
 * owner: one thread.
 */
#ifndef SW_AGENT_SESSMAP_H
#define SW_AGENT_SESSMAP_H

#include <stddef.h>
#include <stdint.h>

struct sessmap_slot {
	uint32_t key;
	void *val; /* NULL = empty slot */
};

struct sessmap {
	struct sessmap_slot *slots;
	size_t cap; /* power of two */
	size_t n;
};

/* Start empty with room for <cap_hint> keys.  Returns 0 or -ENOMEM. */
int sessmap_init(struct sessmap *m, size_t cap_hint);
void sessmap_destroy(struct sessmap *m);
/* The value for <key>, or NULL. */
void *sessmap_get(const struct sessmap *m, uint32_t key);
/* Insert <key> (must be absent) -> <val> (non-NULL).  Returns 0 or -ENOMEM. */
int sessmap_put(struct sessmap *m, uint32_t key, void *val);
/* Remove <key> if present; returns its value or NULL. */
void *sessmap_del(struct sessmap *m, uint32_t key);

#endif /* SW_AGENT_SESSMAP_H */
