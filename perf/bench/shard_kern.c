/*
 * perf/bench/shard_kern.c - shard runtime benchmark kernels and their
 * plain-threads baselines (see shard_kern.h).
 *
 * The benchmark thread is never a shard: it starts a ping-pong with one
 * shard_call and sleeps in read(2) on a blocking eventfd until the last
 * round signals it, so a measured round trip is two cross-shard calls, each
 * waking a shard that had nothing else to do.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "perf/bench/shard_kern.h"
#include "ring/chunk.h"
#include "ring/chunk_pool.h"
#include "shard/shard.h"

#define SHARD_KERN_BLOCK 65536u /* bytes per write(2) and per baseline read(2) */

/*
 * owner: the benchmark thread, except: rounds_left (shard 0 during a
 * ping-pong, handed over by shard_call); received and target (atomic,
 * shared with the receiver).
 */
struct shard_kern {
	enum shard_kern_kind kind;
	int done_efd;		/* blocking eventfd: receiver/last round -> benchmark thread */
	int sv[2];		/* stream: sv[0] read by the receiver, sv[1] written by us */
	struct shard_group *g;	/* shard kinds */
	struct shard_recv r;	/* shard kinds: the receiver on shard 0 */
	size_t rounds_left;	/* shard kinds: ping-pong rounds still to go */
	atomic_size_t received; /* stream bytes the receiver has taken */
	atomic_size_t target;	/* received count at which to signal done_efd */
	pthread_t pp_thread;	/* threads kind: ping-pong partner */
	pthread_t rx_thread;	/* threads kind: stream reader */
	int efd_ping, efd_pong; /* threads kind: blocking eventfds of the ping-pong */
	atomic_bool quit;	/* threads kind: partner exits on its next ping */
};

static int efd_post(int fd)
{
	uint64_t one = 1;

	return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -1;
}

static int efd_take(int fd)
{
	uint64_t v;

	return read(fd, &v, sizeof(v)) == sizeof(v) ? 0 : -1;
}

/* Count <n> received bytes; signal the benchmark thread when they reach the target. */
static void shard_kern_count(struct shard_kern *k, size_t n)
{
	/* relaxed: a counter; the eventfd write/read orders the benchmark thread's view */
	size_t now = atomic_fetch_add_explicit(&k->received, n, memory_order_relaxed) + n;
	size_t target = atomic_load_explicit(&k->target, memory_order_relaxed);

	if (now >= target && now - n < target)
		efd_post(k->done_efd);
}

/* ---- shard kinds ---------------------------------------------------------- */

static void pp_ping(struct shard *s, void *arg);

static void pp_pong(struct shard *s, void *arg)
{
	struct shard_kern *k = arg;

	if (--k->rounds_left > 0)
		shard_call(shard_group_get(k->g, 1), pp_ping, k);
	else
		efd_post(k->done_efd);
}

static void pp_ping(struct shard *s, void *arg)
{
	struct shard_kern *k = arg;

	shard_call(shard_group_get(k->g, 0), pp_pong, k);
}

static void rx_data(struct shard *s, struct shard_recv *r, struct chunk *c, int res)
{
	struct shard_kern *k =
		(struct shard_kern *)(void *)((char *)r - offsetof(struct shard_kern, r));

	if (!c)
		return; /* EOF or stop */
	shard_kern_count(k, (size_t)res);
	chunk_put(c);
}

static void rx_start(struct shard *s, void *arg)
{
	struct shard_kern *k = arg;

	if (shard_recv_start(s, &k->r, k->sv[0], rx_data) < 0)
		efd_post(k->done_efd); /* the stream kernel then sees nothing received and fails */
}

static int shard_kern_start_group(struct shard_kern *k)
{
	struct shard_config cfg;
	int err;

	shard_config_init(&cfg, 2);
	cfg.flags = k->kind == SHARD_KERN_EVENTFD ? SHARD_F_NO_MSG_RING : 0;
	cfg.chunk_size = CHUNK_HEADROOM + SHARD_KERN_BLOCK;
	cfg.pool_chunks = 256;
	cfg.buf_entries = 64;
	cfg.buf_reserve = 16;
	k->g = shard_group_start(&cfg, &err);
	if (!k->g)
		return -1;
	return shard_call(shard_group_get(k->g, 0), rx_start, k) == 0 ? 0 : -1;
}

/* ---- threads kind ------------------------------------------------------------ */

static void *pp_partner(void *arg)
{
	struct shard_kern *k = arg;

	for (;;) {
		if (efd_take(k->efd_ping) < 0)
			return NULL;
		/* acquire: pairs with the release store before the last ping */
		if (atomic_load_explicit(&k->quit, memory_order_acquire))
			return NULL;
		efd_post(k->efd_pong);
	}
}

static void *rx_reader(void *arg)
{
	struct shard_kern *k = arg;
	static uint8_t buf[SHARD_KERN_BLOCK];
	ssize_t n;

	while ((n = read(k->sv[0], buf, sizeof(buf))) > 0)
		shard_kern_count(k, (size_t)n);
	return NULL;
}

static int shard_kern_start_threads(struct shard_kern *k)
{
	k->efd_ping = eventfd(0, EFD_CLOEXEC);
	k->efd_pong = eventfd(0, EFD_CLOEXEC);
	if (k->efd_ping < 0 || k->efd_pong < 0)
		return -1;
	if (pthread_create(&k->pp_thread, NULL, pp_partner, k) != 0)
		return -1;
	if (pthread_create(&k->rx_thread, NULL, rx_reader, k) != 0) {
		atomic_store_explicit(&k->quit, true, memory_order_release);
		efd_post(k->efd_ping);
		pthread_join(k->pp_thread, NULL);
		return -1;
	}
	return 0;
}

/* ---- the interface ---------------------------------------------------------- */

struct shard_kern *shard_kern_new(enum shard_kern_kind kind)
{
	struct shard_kern *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->kind = kind;
	k->efd_ping = k->efd_pong = -1;
	atomic_init(&k->received, 0);
	atomic_init(&k->target, SIZE_MAX);
	atomic_init(&k->quit, false);
	k->done_efd = eventfd(0, EFD_CLOEXEC);
	if (k->done_efd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, k->sv) < 0)
		goto err;
	if ((kind == SHARD_KERN_THREADS ? shard_kern_start_threads(k) : shard_kern_start_group(k)) <
		0)
		goto err;
	return k;
err:
	if (k->g)
		shard_group_stop(k->g);
	if (k->efd_ping >= 0)
		close(k->efd_ping);
	if (k->efd_pong >= 0)
		close(k->efd_pong);
	if (k->done_efd >= 0)
		close(k->done_efd);
	close(k->sv[0]);
	close(k->sv[1]);
	free(k);
	return NULL;
}

int shard_kern_free(struct shard_kern *k)
{
	int rc = 0;

	close(k->sv[1]); /* EOF for the receiver */
	if (k->kind == SHARD_KERN_THREADS) {
		atomic_store_explicit(&k->quit, true, memory_order_release);
		efd_post(k->efd_ping);
		pthread_join(k->pp_thread, NULL);
		pthread_join(k->rx_thread, NULL);
		close(k->efd_ping);
		close(k->efd_pong);
	} else {
		rc = shard_group_stop(k->g) == 0 ? 0 : -1;
	}
	close(k->sv[0]);
	close(k->done_efd);
	free(k);
	return rc;
}

int shard_kern_pingpong(struct shard_kern *k, size_t rounds)
{
	if (rounds == 0)
		return 0;
	if (k->kind == SHARD_KERN_THREADS) {
		for (size_t i = 0; i < rounds; i++)
			if (efd_post(k->efd_ping) < 0 || efd_take(k->efd_pong) < 0)
				return -1;
		return 0;
	}
	k->rounds_left = rounds; /* shard_call's push publishes it to shard 0 */
	if (shard_call(shard_group_get(k->g, 1), pp_ping, k) != 0)
		return -1;
	return efd_take(k->done_efd);
}

int shard_kern_stream(struct shard_kern *k, size_t bytes)
{
	static const uint8_t block[SHARD_KERN_BLOCK];
	size_t base = atomic_load_explicit(&k->received, memory_order_relaxed);

	atomic_store_explicit(&k->target, base + bytes, memory_order_relaxed);
	for (size_t off = 0; off < bytes; off += sizeof(block)) {
		for (size_t done = 0; done < sizeof(block);) {
			ssize_t n = write(k->sv[1], block + done, sizeof(block) - done);

			if (n <= 0)
				return -1;
			done += (size_t)n;
		}
	}
	if (efd_take(k->done_efd) < 0)
		return -1;
	return atomic_load_explicit(&k->received, memory_order_relaxed) == base + bytes ? 0 : -1;
}
