/*
 * perf/bench/alloc_count.h - counts the heap allocations of each thread,
 * for the codec benchmarks (proto_kern.c) and the tests that check a path
 * allocates nothing (tests/proto/test_data.c).
 *
 * Normal builds: this file DEFINES malloc, calloc, realloc and free,
 * forwarding to glibc's __libc_* entry points, so every allocation of the
 * program (libcbor's included) is counted.  Sanitizer builds own malloc,
 * so there alloc_count_init() installs the sanitizer's allocation hook
 * instead.  Include it from exactly one C file of a program.
 *
 * The count is thread-local: each thread counts its own allocations, so
 * no atomics are needed and other threads' allocations never blur it.
 */
#ifndef SW_PERF_BENCH_ALLOC_COUNT_H
#define SW_PERF_BENCH_ALLOC_COUNT_H

#include <stddef.h>

/*
 * Allocations of this thread; thread-local, so no atomics are needed.
 * volatile: a read around a call is never moved or cached, so a count
 * taken before and after the call sees what it allocated.
 */
static _Thread_local volatile long alloc_count_n;

#ifdef SW_SANITIZER_BUILD
/* From the sanitizer runtime (gcc ships no allocator_interface.h). */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
	void (*free_hook)(const volatile void *));

static void alloc_count_malloc_hook(const volatile void *p, size_t n)
{
	alloc_count_n++;
}

static void alloc_count_free_hook(const volatile void *p)
{
}

/* Start counting: call once, before the allocations of interest.  Any thread. */
static inline void alloc_count_init(void)
{
	__sanitizer_install_malloc_and_free_hooks(alloc_count_malloc_hook, alloc_count_free_hook);
}
#else
/* glibc's own allocator entry points, which the definitions below forward to. */
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

void *malloc(size_t n)
{
	alloc_count_n++;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	alloc_count_n++;
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	alloc_count_n++;
	return __libc_realloc(p, n);
}

void free(void *p)
{
	__libc_free(p);
}

/* Start counting: nothing to do, the definitions above always count.  Any thread. */
static inline void alloc_count_init(void)
{
}
#endif

/* Heap allocations made by the calling thread so far.  Any thread. */
static inline long alloc_count(void)
{
	return alloc_count_n;
}

#endif /* SW_PERF_BENCH_ALLOC_COUNT_H */
