/*
 * tests/shard/shard_test.h - helpers the shard tests share (header-only,
 * static inline: each test file uses a different subset).
 */
#ifndef SW_TESTS_SHARD_TEST_H
#define SW_TESTS_SHARD_TEST_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shard/shard.h"

/* Entries of a /proc/self directory (fd or task), not counting "." and "..". */
static inline int st_count_dir(const char *path)
{
	struct dirent *e;
	DIR *d = opendir(path);
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Open fds, not counting the one opendir uses while counting. */
static inline int st_count_fds(void)
{
	return st_count_dir("/proc/self/fd") - 1;
}

static inline int st_count_threads(void)
{
	return st_count_dir("/proc/self/task");
}

static inline void st_sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

/* Poll *<v> (acquire) until it reaches <want> or <timeout_ms> passes.  Returns true if reached. */
static inline bool st_wait_u64(atomic_uint_fast64_t *v, uint64_t want, unsigned timeout_ms)
{
	uint64_t end = shard_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (atomic_load_explicit(v, memory_order_acquire) < want) {
		if (shard_now_ns() > end)
			return false;
		st_sleep_us(200);
	}
	return true;
}

/*
 * Thread count settles once the io_uring workers of stopped shards have
 * exited: wait up to 2 s for it to drop to <want>.  Returns the last count.
 */
static inline int st_threads_settle(int want)
{
	int n = st_count_threads();

	for (int i = 0; i < 2000 && n > want; i++) {
		st_sleep_us(1000);
		n = st_count_threads();
	}
	return n;
}

/* A log sink that keeps the lines (mutex: shards log concurrently). */
struct st_log {
	pthread_mutex_t mu;
	char text[8192];
	size_t len;
};

static inline void st_log_sink(void *ctx, int level, const char *msg)
{
	struct st_log *l = ctx;
	int n;

	pthread_mutex_lock(&l->mu);
	n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%d %s\n", level, msg);
	if (n > 0 && l->len + (size_t)n < sizeof(l->text))
		l->len += (size_t)n;
	pthread_mutex_unlock(&l->mu);
}

/* Deterministic stream content: byte <i> of the test stream. */
static inline uint8_t st_pattern(uint64_t i)
{
	return (uint8_t)((i * 0x9E3779B97F4A7C15ull) >> 56);
}

#endif /* SW_TESTS_SHARD_TEST_H */
