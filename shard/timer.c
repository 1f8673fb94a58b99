/*
 * shard/timer.c - per-shard timers: an intrusive pairing heap.
 *
 * Why a heap and not a wheel: the engine's timers are few per object
 * (idle timeouts, grace periods, heartbeats) with deadlines from ms to
 * minutes; a heap gives exact order (deadline, then arming order) with no
 * tick granularity and no cascading, and the loop needs only its minimum to
 * pick its sleep: there is no timeout SQE at all, the wait itself carries
 * the timeout (io_uring_submit_and_wait_timeout, IORING_FEAT_EXT_ARG).
 * A pairing heap is intrusive (arming never allocates, so it cannot fail),
 * O(1) to arm, O(log n) amortized to pop or cancel.
 *
 * Links: a node's first child is _child; siblings are chained by _next;
 * _prev points to the left sibling, or to the parent for a first child,
 * or is NULL for the root.
 *
 *        root
 *         |  _child
 *         v
 *         a --_next--> b --_next--> c        a->_prev = root, b->_prev = a
 *         |
 *         v
 *         d ...
 */
#include "shard/internal.h"

/* True when <a> fires before <b>. */
static bool shard_timer_before(const struct shard_timer *a, const struct shard_timer *b)
{
	if (a->deadline != b->deadline)
		return a->deadline < b->deadline;
	return a->_seq < b->_seq;
}

/*
 * Join two heaps (roots <a> and <b>, both non-NULL); the later root becomes
 * the first child of the earlier.  Returns the new root; its _prev and _next
 * are for the caller to set.
 */
static struct shard_timer *shard_timer_meld(struct shard_timer *a, struct shard_timer *b)
{
	struct shard_timer *t;

	if (shard_timer_before(b, a)) {
		t = a;
		a = b;
		b = t;
	}
	b->_prev = a;
	b->_next = a->_child;
	if (a->_child)
		a->_child->_prev = b;
	a->_child = b;
	return a;
}

/*
 * Merge the sibling list starting at <first> into one heap (the standard
 * two passes: meld pairs left to right, then the results right to left).
 * Returns its root with _prev and _next NULL, or NULL for an empty list.
 */
static struct shard_timer *shard_timer_merge_pairs(struct shard_timer *first)
{
	struct shard_timer *stack = NULL, *a = first, *b, *next, *m, *root;

	while (a) {
		b = a->_next;
		if (b) {
			next = b->_next;
			m = shard_timer_meld(a, b);
		} else {
			next = NULL;
			m = a;
		}
		m->_next = stack; /* pass 1 results, rightmost on top */
		stack = m;
		a = next;
	}
	if (!stack)
		return NULL;
	root = stack;
	stack = stack->_next;
	while (stack) {
		next = stack->_next;
		root = shard_timer_meld(root, stack);
		stack = next;
	}
	root->_prev = NULL;
	root->_next = NULL;
	return root;
}

void shard_timer_init(struct shard_timer *t, shard_timer_fn fn)
{
	t->fn = fn;
	t->deadline = 0;
	t->_seq = 0;
	t->_child = t->_next = t->_prev = NULL;
	t->_armed = false;
}

/* Take armed <t> out of the heap. */
static void shard_timer_remove(struct shard *s, struct shard_timer *t)
{
	struct shard_timer *sub;

	if (t == s->timer_root) {
		s->timer_root = shard_timer_merge_pairs(t->_child);
	} else {
		/* a first child hangs off its parent's _child, others off a sibling's _next */
		if (t->_prev->_child == t)
			t->_prev->_child = t->_next;
		else
			t->_prev->_next = t->_next;
		if (t->_next)
			t->_next->_prev = t->_prev;
		sub = shard_timer_merge_pairs(t->_child);
		if (sub) {
			s->timer_root = shard_timer_meld(s->timer_root, sub);
			s->timer_root->_prev = NULL;
			s->timer_root->_next = NULL;
		}
	}
	t->_child = t->_next = t->_prev = NULL;
	t->_armed = false;
}

void shard_timer_arm(struct shard *s, struct shard_timer *t, uint64_t deadline_ns)
{
	SHARD_BUG_ON(shard_tls_self != s);
	if (t->_armed)
		shard_timer_remove(s, t);
	t->deadline = deadline_ns;
	t->_seq = s->timer_seq++;
	t->_child = t->_next = t->_prev = NULL;
	t->_armed = true;
	if (!s->timer_root) {
		s->timer_root = t;
		return;
	}
	s->timer_root = shard_timer_meld(s->timer_root, t);
	s->timer_root->_prev = NULL;
	s->timer_root->_next = NULL;
}

void shard_timer_cancel(struct shard *s, struct shard_timer *t)
{
	SHARD_BUG_ON(shard_tls_self != s);
	if (t->_armed)
		shard_timer_remove(s, t);
}

struct shard_timer *shard_timer_first(const struct shard *s)
{
	return s->timer_root;
}

/*
 * Run the timers due at <now>, earliest first.  Bounded: at most
 * SHARD_TIMER_BUDGET callbacks, so a callback that re-arms for the past
 * cannot keep the loop here (the rest run next turn, which does not sleep).
 */
void shard_timers_run(struct shard *s, uint64_t now)
{
	struct shard_timer *t;
	unsigned n = 0;

	while ((t = s->timer_root) && t->deadline <= now && n++ < SHARD_TIMER_BUDGET) {
		shard_timer_remove(s, t);
		s->st.timers_fired++;
		t->fn(s, t);
	}
}
