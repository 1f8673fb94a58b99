/*
 * tests/agent/test_sessmap.c - the id/pid map against a reference array.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>

#include "agent/sessmap.h"

Test(agent_sessmap, matches_a_reference_under_random_inserts_and_deletes)
{
	enum { KEYS = 4096 };
	static void *ref[KEYS];
	struct sessmap m;
	uint32_t seed = 12345;

	cr_assert_eq(sessmap_init(&m, 4), 0);
	for (int step = 0; step < 200000; step++) {
		uint32_t k;

		seed = seed * 1103515245u + 12345u;
		k = (seed >> 8) % KEYS;
		if (ref[k]) {
			cr_assert_eq(sessmap_del(&m, k * 33554431u), ref[k]);
			ref[k] = NULL;
		} else {
			ref[k] = (void *)(uintptr_t)(k + 1);
			cr_assert_eq(sessmap_put(&m, k * 33554431u, ref[k]), 0);
		}
		if (step % 1000 == 0) {
			size_t n = 0;

			for (uint32_t i = 0; i < KEYS; i++) {
				cr_assert_eq(sessmap_get(&m, i * 33554431u), ref[i], "key %u", i);
				n += ref[i] != NULL;
			}
			cr_assert_eq(m.n, n);
		}
	}
	cr_assert_null(sessmap_get(&m, 7)); /* never inserted */
	cr_assert_null(sessmap_del(&m, 7));
	sessmap_destroy(&m);
}
