// perf/bench/ring.cc - registers the ring benchmarks (kernels in ring_kern.c).
//
//   BM_<queue>_pushpop            one thread, one push + one pop per iteration,
//                                 512 descriptors standing in a 1024-slot queue
//   BM_<queue>_xfer/producers:N   N producer threads push, the benchmark thread
//                                 pops; one iteration = one descriptor delivered
//
// <queue> is mpsc, spsc (ring/) or mutexq, the mutex + condvar baseline of the
// same capacity, measured in the same run.
#include <benchmark/benchmark.h>

#include "perf/bench/ring_kern.h"
#include "perf/bench/shim.h"

namespace
{

constexpr size_t kCapacity = 1024;
constexpr size_t kXferItems = 1 << 16; // per producer and per kernel call
constexpr size_t kPushPopBatch = 256;  // iterations per kernel call

void BM_pushpop(benchmark::State &state, ring_kern_kind kind)
{
	ring_kern_q *q = ring_kern_q_new(kind, kCapacity, kCapacity / 2);
	if (!q) {
		state.SkipWithError("ring_kern_q_new failed");
		return;
	}
	while (state.KeepRunningBatch(kPushPopBatch)) {
		if (ring_kern_pushpop(q, kPushPopBatch) != 0) {
			state.SkipWithError("push or pop failed, or wrong value");
			break;
		}
	}
	ring_kern_q_free(q);
}

void BM_xfer(benchmark::State &state, ring_kern_kind kind)
{
	unsigned producers = static_cast<unsigned>(state.range(0));
	ring_kern_q *q = ring_kern_q_new(kind, kCapacity, 0);
	if (!q) {
		state.SkipWithError("ring_kern_q_new failed");
		return;
	}
	while (state.KeepRunningBatch(producers * kXferItems)) {
		if (ring_kern_transfer(q, producers, kXferItems) != 0) {
			state.SkipWithError("item lost, duplicated or reordered");
			break;
		}
	}
	state.SetItemsProcessed(state.iterations());
	ring_kern_q_free(q);
}

void BM_mpsc_pushpop(benchmark::State &state)
{
	BM_pushpop(state, RING_KERN_MPSC);
}
void BM_spsc_pushpop(benchmark::State &state)
{
	BM_pushpop(state, RING_KERN_SPSC);
}
void BM_mutexq_pushpop(benchmark::State &state)
{
	BM_pushpop(state, RING_KERN_MUTEX);
}
void BM_mpsc_xfer(benchmark::State &state)
{
	BM_xfer(state, RING_KERN_MPSC);
}
void BM_spsc_xfer(benchmark::State &state)
{
	BM_xfer(state, RING_KERN_SPSC);
}
void BM_mutexq_xfer(benchmark::State &state)
{
	BM_xfer(state, RING_KERN_MUTEX);
}

BENCHMARK(BM_mpsc_pushpop);
BENCHMARK(BM_spsc_pushpop);
BENCHMARK(BM_mutexq_pushpop);
// Work happens on other threads too: time the wall clock, not this thread's CPU.
BENCHMARK(BM_mpsc_xfer)->ArgName("producers")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_spsc_xfer)->ArgName("producers")->Arg(1)->UseRealTime();
BENCHMARK(BM_mutexq_xfer)->ArgName("producers")->Arg(1)->Arg(2)->UseRealTime();

const int ratios = [] {
	sw_bench_ratio("BM_mpsc_pushpop", "BM_mutexq_pushpop");
	sw_bench_ratio("BM_spsc_pushpop", "BM_mutexq_pushpop");
	sw_bench_ratio(
		"BM_mpsc_xfer/producers:1/real_time", "BM_mutexq_xfer/producers:1/real_time");
	sw_bench_ratio(
		"BM_mpsc_xfer/producers:2/real_time", "BM_mutexq_xfer/producers:2/real_time");
	sw_bench_ratio(
		"BM_spsc_xfer/producers:1/real_time", "BM_mutexq_xfer/producers:1/real_time");
	return 0;
}();

} // namespace
