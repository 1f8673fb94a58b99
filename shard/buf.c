/*
 * shard/buf.c - the provided-buffer ring (buffers are chunks), multishot
 * recv into it, and multishot accept.
 *
 * The ring holds up to <entries> buffers, each the payload area of a chunk
 * from the shard's pool (data[CHUNK_HEADROOM .. cap)), posted under a
 * buffer id (bid); chunk_of[bid] remembers which chunk.  The kernel picks a
 * buffer per recv completion and names its bid in the CQE: that chunk now
 * holds the data and goes to the receiver, its bid becomes free.  Each turn
 * (phase 5) posts a fresh chunk from the pool under every free bid, while
 * the pool keeps more than <reserve> chunks for other uses.  So a buffer
 * comes back to the ring by way of the pool: whoever holds a received chunk
 * chunk_puts it (any thread; the pool's return ring carries it home), and
 * a later turn posts it again.
 *
 *   pool --refill--> buffer ring --recv CQE--> receiver's chunk --chunk_put--+
 *    ^                                                                       |
 *    +------------------- return ring (other threads) / free list ----------+
 *
 * When every buffer is out, a multishot recv ends with -ENOBUFS: that is
 * back-pressure from slow consumers.  The receiver is parked and re-armed
 * once the ring holds <rearm_at> buffers again (an eighth of what it can
 * hold, at least one), so that it does not bounce on a ring with one buffer.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shard/internal.h"

#define shard_container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

enum shard_recv_state {
	SHARD_RECV_IDLE = 0,   /* not running (new, or ended) */
	SHARD_RECV_ARMED,      /* multishot SQE in flight */
	SHARD_RECV_PARKED,     /* on the parked list, waiting for buffers */
	SHARD_RECV_STOPPING,   /* SQE in flight, cancel sent; ends at its last CQE */
	SHARD_RECV_PARKED_END, /* on the parked list, to end with -ECANCELED */
};

enum shard_accept_state {
	SHARD_ACCEPT_IDLE = 0,
	SHARD_ACCEPT_ARMED,
	SHARD_ACCEPT_STOPPING,
};

/* ---- the buffer ring ------------------------------------------------------- */

int shard_bufs_setup(struct shard *s)
{
	const struct shard_config *cfg = &s->group->cfg;
	struct shard_bufs *b = &s->bufs;
	struct io_uring_buf_reg reg;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint32_t usable;
	unsigned i;
	int rc;

	memset(b, 0, sizeof(*b));
	if (cfg->buf_entries == 0)
		return 0;
	b->entries = cfg->buf_entries;
	b->reserve = cfg->buf_reserve;
	/* the kernel pins this memory and wants it page-aligned: our own mapping */
	b->br_bytes = (b->entries * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
	b->br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->br == MAP_FAILED) {
		b->br = NULL;
		return -ENOMEM;
	}
	b->chunk_of = mi_heap_calloc(s->heap, b->entries, sizeof(*b->chunk_of));
	b->free_bids = mi_heap_calloc(s->heap, b->entries, sizeof(*b->free_bids));
	if (!b->chunk_of || !b->free_bids) {
		rc = -ENOMEM;
		goto err;
	}
	io_uring_buf_ring_init(b->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)b->br;
	reg.ring_entries = b->entries;
	reg.bgid = SHARD_BGID;
	rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (rc < 0) {
		/* an old kernel (< 5.19): run without; shard_recv_start says -EOPNOTSUPP */
		if (s->id == 0)
			shard_log(s, SHARD_LOG_WARN,
				"io_uring: provided-buffer ring refused (%s); "
				"multishot recv disabled",
				strerror(-rc));
		rc = 0;
		goto err;
	}
	/* bid 0 on top of the stack: handed out first */
	for (i = 0; i < b->entries; i++)
		b->free_bids[i] = (uint16_t)(b->entries - 1 - i);
	b->nfree = b->entries;
	usable = cfg->pool_chunks > b->reserve ? cfg->pool_chunks - b->reserve : 1;
	b->rearm_at = (usable < b->entries ? usable : b->entries) / 8;
	if (b->rearm_at == 0)
		b->rearm_at = 1;
	return 0;
err:
	mi_free(b->chunk_of);
	mi_free(b->free_bids);
	munmap(b->br, b->br_bytes);
	memset(b, 0, sizeof(*b));
	return rc;
}

/* Nothing of ours is in flight: give the posted chunks back to the pool. */
void shard_bufs_teardown(struct shard *s)
{
	struct shard_bufs *b = &s->bufs;
	unsigned i;

	if (!b->br)
		return;
	io_uring_unregister_buf_ring(&s->ring, SHARD_BGID);
	for (i = 0; i < b->entries; i++)
		if (b->chunk_of[i])
			chunk_put(b->chunk_of[i]); /* owner put: straight onto the free list */
	mi_free(b->chunk_of);
	mi_free(b->free_bids);
	munmap(b->br, b->br_bytes);
	memset(b, 0, sizeof(*b));
}

/* The chunk the kernel filled under <bid>; the bid is free again. */
static struct chunk *shard_buf_take(struct shard *s, unsigned bid)
{
	struct shard_bufs *b = &s->bufs;
	struct chunk *c;

	SHARD_BUG_ON(bid >= b->entries || b->chunk_of[bid] == NULL);
	c = b->chunk_of[bid];
	b->chunk_of[bid] = NULL;
	b->free_bids[b->nfree++] = (uint16_t)bid;
	return c;
}

/* Post a pool chunk under every free bid, leaving the pool its reserve. */
static void shard_bufs_refill(struct shard *s)
{
	struct shard_bufs *b = &s->bufs;
	int mask = io_uring_buf_ring_mask(b->entries);
	struct chunk_pool_stats st;
	struct chunk *c;
	size_t avail;
	unsigned bid;
	int n = 0;

	if (!b->br || b->nfree == 0)
		return;
	chunk_pool_read_stats(s->pool, &st);
	avail = st.free;
	while (b->nfree > 0 && avail > b->reserve) {
		c = chunk_pool_get(s->pool);
		if (!c)
			break;
		avail--;
		bid = b->free_bids[--b->nfree];
		b->chunk_of[bid] = c;
		io_uring_buf_ring_add(b->br, c->data + CHUNK_HEADROOM, c->cap - CHUNK_HEADROOM,
			(unsigned short)bid, mask, n++);
	}
	/* store-release of the tail (liburing): the entries above are visible first */
	if (n)
		io_uring_buf_ring_advance(b->br, n);
}

/* ---- multishot recv ----------------------------------------------------------- */

static void shard_recv_cqe(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe);

static int shard_recv_arm(struct shard *s, struct shard_recv *r)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_recv_multishot(sqe, r->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = SHARD_BGID;
	shard_submit(s, sqe, &r->_op);
	r->_state = SHARD_RECV_ARMED;
	return 0;
}

static void shard_recv_park(struct shard *s, struct shard_recv *r, uint8_t state)
{
	r->_state = state;
	r->_parked = s->parked;
	s->parked = r;
}

static void shard_recv_end(struct shard *s, struct shard_recv *r, int res)
{
	r->_state = SHARD_RECV_IDLE;
	r->fn(s, r, NULL, res);
}

/* The kernel ended the multishot early, or buffers came back: go on, or wait. */
static void shard_recv_rearm(struct shard *s, struct shard_recv *r)
{
	s->st.rearms++;
	if (shard_recv_arm(s, r) < 0)
		shard_recv_park(s, r, SHARD_RECV_PARKED); /* no SQE: retried next turn */
}

static void shard_recv_cqe(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	struct shard_recv *r = shard_container_of(op, struct shard_recv, _op);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	struct chunk *c = NULL;
	int res = cqe->res;

	if (cqe->flags & IORING_CQE_F_BUFFER)
		c = shard_buf_take(s, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (res > 0) {
		SHARD_BUG_ON(c == NULL);
		c->len = (uint32_t)res;
		s->st.bufs_received++;
		s->st.bytes_received += (uint64_t)res;
		r->fn(s, r, c, res); /* the receiver owns c now */
		if (more)
			return;
		if (r->_state == SHARD_RECV_ARMED && s->state == SHARD_RUNNING)
			shard_recv_rearm(s, r);
		else
			shard_recv_end(s, r, -ECANCELED);
		return;
	}
	if (c)
		chunk_put(c); /* a buffer with no data: back to the pool, reposted next turn */
	if (more)
		return;
	if (res == -ENOBUFS && r->_state == SHARD_RECV_ARMED) {
		s->st.enobufs++;
		shard_recv_park(s, r, SHARD_RECV_PARKED);
		return;
	}
	shard_recv_end(s, r, res == -ENOBUFS ? -ECANCELED : res);
}

int shard_recv_start(struct shard *s, struct shard_recv *r, int fd, shard_recv_fn fn)
{
	if (!s->bufs.br)
		return -EOPNOTSUPP;
	if (s->stopping)
		return -ESHUTDOWN;
	shard_op_init(&r->_op, shard_recv_cqe);
	r->fn = fn;
	r->fd = fd;
	r->_parked = NULL;
	r->_state = SHARD_RECV_IDLE;
	return shard_recv_arm(s, r);
}

int shard_recv_stop(struct shard *s, struct shard_recv *r)
{
	int rc;

	switch (r->_state) {
	case SHARD_RECV_ARMED:
		rc = shard_cancel(s, &r->_op);
		if (rc < 0)
			return rc;
		r->_state = SHARD_RECV_STOPPING;
		return 0;
	case SHARD_RECV_PARKED:
		r->_state = SHARD_RECV_PARKED_END; /* phase 5 ends it */
		return 0;
	default:
		return 0;
	}
}

/*
 * Phase 5: take back returned chunks, refill the ring, and deal with the
 * parked receivers: end those being stopped (all of them once the shard is
 * stopping), re-arm the rest if the ring holds enough buffers.
 */
void shard_bufs_turn(struct shard *s)
{
	struct shard_recv *list, *r;
	bool ready;

	chunk_pool_reclaim(s->pool);
	shard_bufs_refill(s);
	if (!s->parked)
		return;
	ready = s->bufs.entries - s->bufs.nfree >= s->bufs.rearm_at;
	/* callbacks below may park or stop receivers: work on a detached list */
	list = s->parked;
	s->parked = NULL;
	while ((r = list)) {
		list = r->_parked;
		r->_parked = NULL;
		if (r->_state == SHARD_RECV_PARKED_END || s->state != SHARD_RUNNING)
			shard_recv_end(s, r, -ECANCELED);
		else if (ready)
			shard_recv_rearm(s, r);
		else
			shard_recv_park(s, r, SHARD_RECV_PARKED);
	}
}

/* ---- multishot accept ------------------------------------------------------------ */

static void shard_accept_cqe(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe);

static int shard_accept_arm(struct shard *s, struct shard_accept *a)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
	shard_submit(s, sqe, &a->_op);
	a->_state = SHARD_ACCEPT_ARMED;
	return 0;
}

static void shard_accept_end(struct shard *s, struct shard_accept *a, int res)
{
	a->_state = SHARD_ACCEPT_IDLE;
	a->fn(s, a, res);
}

static void shard_accept_cqe(struct shard *s, struct shard_op *op, const struct io_uring_cqe *cqe)
{
	struct shard_accept *a = shard_container_of(op, struct shard_accept, _op);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int res = cqe->res;

	if (res >= 0) {
		a->fn(s, a, res); /* the callee owns the new fd */
		if (more)
			return;
		if (a->_state == SHARD_ACCEPT_ARMED && s->state == SHARD_RUNNING) {
			s->st.rearms++;
			if (shard_accept_arm(s, a) < 0)
				shard_accept_end(s, a, -EAGAIN);
		} else {
			shard_accept_end(s, a, -ECANCELED);
		}
		return;
	}
	/* a failure that does not end the multishot (none known today): nothing to hand out */
	if (more)
		return;
	shard_accept_end(s, a, res);
}

int shard_accept_start(struct shard *s, struct shard_accept *a, int fd, shard_accept_fn fn)
{
	if (s->stopping)
		return -ESHUTDOWN;
	shard_op_init(&a->_op, shard_accept_cqe);
	a->fn = fn;
	a->fd = fd;
	a->_state = SHARD_ACCEPT_IDLE;
	return shard_accept_arm(s, a);
}

int shard_accept_stop(struct shard *s, struct shard_accept *a)
{
	int rc;

	if (a->_state != SHARD_ACCEPT_ARMED)
		return 0;
	rc = shard_cancel(s, &a->_op);
	if (rc < 0)
		return rc;
	a->_state = SHARD_ACCEPT_STOPPING;
	return 0;
}
