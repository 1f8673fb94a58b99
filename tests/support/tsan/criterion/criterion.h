/*
 * tests/support/tsan/criterion/criterion.h - an in-process stand-in for
 * the part of Criterion the threaded tests use, for ThreadSanitizer builds.
 *
 * Real Criterion isolates tests through BoxFort, whose arena is mapped at
 * addresses ThreadSanitizer refuses ("Could not initialize inheritable
 * arena", Criterion issue 274), so no Criterion binary can start under
 * TSan.  The threaded tests (CTest label "threads") are therefore built,
 * in TSan builds only, against this header: the same Test() bodies run one
 * after the other in one process; the first failed assertion prints its
 * location and message and aborts (TSan reports come out as they happen).
 * The last line is "N passed, 0 failed" (or the process dies on a failure).
 */
#ifndef SW_TESTS_TSAN_CRITERION_H
#define SW_TESTS_TSAN_CRITERION_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWCR_MAX_TESTS 256

struct swcr_test {
	const char *name;
	void (*fn)(void);
};

extern struct swcr_test swcr_tests[SWCR_MAX_TESTS];
extern int swcr_ntests;

/* Test(suite, name, ...): the options (.timeout, .init ...) are ignored here. */
#define Test(suite, name, ...)                                                         \
	static void suite##_##name##_impl(void);                                       \
	__attribute__((constructor)) static void suite##_##name##_register(void)       \
	{                                                                              \
		if (swcr_ntests < SWCR_MAX_TESTS)                                      \
			swcr_tests[swcr_ntests++] =                                    \
				(struct swcr_test){#suite "::" #name, suite##_##name##_impl}; \
	}                                                                              \
	static void suite##_##name##_impl(void)

#define swcr_fail(cond_text, ...)                                                      \
	do {                                                                           \
		fprintf(stderr, "%s:%d: assertion failed: %s\n  ", __FILE__, __LINE__,  \
			cond_text);                                                    \
		fprintf(stderr, " " __VA_ARGS__);                                      \
		fprintf(stderr, "\n");                                                 \
		abort();                                                               \
	} while (0)

#define cr_assert(cond, ...)                                                           \
	do {                                                                           \
		if (!(cond))                                                           \
			swcr_fail(#cond, __VA_ARGS__);                                 \
	} while (0)
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(a, ...) cr_assert((a) == NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_fail(...) swcr_fail("cr_assert_fail", __VA_ARGS__)
#define cr_log_info(...)                                                               \
	do {                                                                           \
		fprintf(stderr, "  info: " __VA_ARGS__);                               \
		fprintf(stderr, "\n");                                                 \
	} while (0)

#endif /* SW_TESTS_TSAN_CRITERION_H */
