// perf/bench/shard.cc - registers the shard runtime benchmarks (kernels in
// shard_kern.c).
//
//   BM_shard_pingpong/<kind>   one iteration = one round trip between two
//                              threads that sleep between messages
//   BM_shard_stream/<kind>     one iteration = 64 KiB from a writer thread
//                              through a Unix socketpair to the receiver
//
// <kind> is msg_ring (shard_call, MSG_RING wakes), eventfd (shard_call,
// eventfd wakes) or threads, the baseline of plain threads blocking in
// read(2), measured in the same run.
#include <benchmark/benchmark.h>

#include "perf/bench/shard_kern.h"
#include "perf/bench/shim.h"

namespace
{

constexpr size_t kRounds = 256;	       // round trips per kernel call
constexpr size_t kStreamBlock = 65536; // bytes per iteration
constexpr size_t kStreamBatch = 256;   // iterations per kernel call (16 MiB)

void BM_pingpong(benchmark::State &state, shard_kern_kind kind)
{
	shard_kern *k = shard_kern_new(kind);
	if (!k) {
		state.SkipWithError("shard_kern_new failed");
		return;
	}
	while (state.KeepRunningBatch(kRounds)) {
		if (shard_kern_pingpong(k, kRounds) != 0) {
			state.SkipWithError("ping-pong failed");
			break;
		}
	}
	if (shard_kern_free(k) != 0)
		state.SkipWithError("the shard group reported a leak");
}

void BM_stream(benchmark::State &state, shard_kern_kind kind)
{
	shard_kern *k = shard_kern_new(kind);
	if (!k) {
		state.SkipWithError("shard_kern_new failed");
		return;
	}
	while (state.KeepRunningBatch(kStreamBatch)) {
		if (shard_kern_stream(k, kStreamBatch * kStreamBlock) != 0) {
			state.SkipWithError("stream failed or lost bytes");
			break;
		}
	}
	state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kStreamBlock));
	if (shard_kern_free(k) != 0)
		state.SkipWithError("the shard group reported a leak");
}

// Work happens on other threads: time the wall clock, not this thread's CPU.
BENCHMARK_CAPTURE(BM_pingpong, msg_ring, SHARD_KERN_MSG_RING)->UseRealTime();
BENCHMARK_CAPTURE(BM_pingpong, eventfd, SHARD_KERN_EVENTFD)->UseRealTime();
BENCHMARK_CAPTURE(BM_pingpong, threads, SHARD_KERN_THREADS)->UseRealTime();
BENCHMARK_CAPTURE(BM_stream, msg_ring, SHARD_KERN_MSG_RING)->UseRealTime();
BENCHMARK_CAPTURE(BM_stream, threads, SHARD_KERN_THREADS)->UseRealTime();

const int ratios = [] {
	sw_bench_ratio("BM_pingpong/msg_ring/real_time", "BM_pingpong/threads/real_time");
	sw_bench_ratio("BM_pingpong/eventfd/real_time", "BM_pingpong/threads/real_time");
	sw_bench_ratio("BM_pingpong/msg_ring/real_time", "BM_pingpong/eventfd/real_time");
	sw_bench_ratio("BM_stream/msg_ring/real_time", "BM_stream/threads/real_time");
	return 0;
}();

} // namespace
