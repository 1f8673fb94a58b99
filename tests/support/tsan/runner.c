/*
 * tests/support/tsan/runner.c - main() for threaded tests built against the
 * in-process Criterion stand-in (TSan builds only; see criterion.h here).
 * An argument filters tests by substring.
 */
#include <criterion/criterion.h>

struct swcr_test swcr_tests[SWCR_MAX_TESTS];
int swcr_ntests;

int main(int argc, char **argv)
{
	int passed = 0;

	for (int i = 0; i < swcr_ntests; i++) {
		struct timespec a, b;

		if (argc > 1 && !strstr(swcr_tests[i].name, argv[1]))
			continue;
		clock_gettime(CLOCK_MONOTONIC, &a);
		swcr_tests[i].fn();
		clock_gettime(CLOCK_MONOTONIC, &b);
		fprintf(stderr, "[PASS] %s (%.2fs)\n", swcr_tests[i].name,
			(double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
		passed++;
	}
	if (swcr_ntests >= SWCR_MAX_TESTS)
		fprintf(stderr, "warning: more than %d tests registered; raise SWCR_MAX_TESTS\n",
			SWCR_MAX_TESTS);
	printf("%d passed, 0 failed\n", passed);
	return passed > 0 ? 0 : 1;
}
