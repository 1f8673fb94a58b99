// perf/bench/proto.cc - registers the wire-codec benchmarks (kernels in
// proto_kern.c).
//
//   BM_proto_data64k_encode          64 KiB core.exec.stdout: prefix written into
//                                    the chunk headroom (zero copy)
//   BM_proto_data64k_encode_copy     the same frame via proto_frame_encode(),
//                                    which copies the payload into the buffer
//   BM_proto_data64k_encode_libcbor  baseline: libcbor items + cbor_serialize_alloc
//   BM_proto_data64k_encode_libcbor_prealloc  the same items, cbor_serialize into
//                                    buffers of the right size (no regrowth)
//   BM_proto_data64k_decode          parse + proto_frame_decode (pointer into the frame)
//   BM_proto_data64k_decode_libcbor  baseline: cbor_load of the body, then of p
//   BM_proto_{exited,resize}_{encode,decode}  small control frames
//
// Bytes processed are payload bytes (64 KiB per data frame).  The counter
// allocs_per_frame is the number of heap allocations per iteration, counted
// by proto_kern.c for the whole process while the loop runs.
#include <benchmark/benchmark.h>

#include "perf/bench/proto_kern.h"
#include "perf/bench/shim.h"

namespace
{

constexpr size_t kDataLen = 64 * 1024;

void BM_proto(benchmark::State &state, long (*kernel)(proto_kern *), bool data)
{
	proto_kern *k = proto_kern_new(kDataLen);
	if (!k) {
		state.SkipWithError("proto_kern_new failed (or the baseline's bytes differ)");
		return;
	}
	long a0 = proto_kern_allocs();
	for (auto _ : state) {
		long n = kernel(k);
		if (n <= 0) {
			state.SkipWithError("kernel failed");
			break;
		}
		benchmark::DoNotOptimize(n);
	}
	long allocs = proto_kern_allocs() - a0;
	if (data)
		state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kDataLen));
	state.counters["allocs_per_frame"] = benchmark::Counter(
		static_cast<double>(allocs) / static_cast<double>(state.iterations()));
	proto_kern_free(k);
}

void BM_proto_data64k_encode(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_encode, true);
}
void BM_proto_data64k_encode_copy(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_encode_copy, true);
}
void BM_proto_data64k_encode_libcbor(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_encode_libcbor, true);
}
void BM_proto_data64k_encode_libcbor_prealloc(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_encode_libcbor_prealloc, true);
}
void BM_proto_data64k_decode(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_decode, true);
}
void BM_proto_data64k_decode_libcbor(benchmark::State &s)
{
	BM_proto(s, proto_kern_data_decode_libcbor, true);
}
void BM_proto_exited_encode(benchmark::State &s)
{
	BM_proto(s, proto_kern_exited_encode, false);
}
void BM_proto_exited_decode(benchmark::State &s)
{
	BM_proto(s, proto_kern_exited_decode, false);
}
void BM_proto_resize_encode(benchmark::State &s)
{
	BM_proto(s, proto_kern_resize_encode, false);
}
void BM_proto_resize_decode(benchmark::State &s)
{
	BM_proto(s, proto_kern_resize_decode, false);
}

BENCHMARK(BM_proto_data64k_encode);
BENCHMARK(BM_proto_data64k_encode_copy);
BENCHMARK(BM_proto_data64k_encode_libcbor);
BENCHMARK(BM_proto_data64k_encode_libcbor_prealloc);
BENCHMARK(BM_proto_data64k_decode);
BENCHMARK(BM_proto_data64k_decode_libcbor);
BENCHMARK(BM_proto_exited_encode);
BENCHMARK(BM_proto_exited_decode);
BENCHMARK(BM_proto_resize_encode);
BENCHMARK(BM_proto_resize_decode);

const int ratios = [] {
	sw_bench_ratio("BM_proto_data64k_encode", "BM_proto_data64k_encode_libcbor");
	sw_bench_ratio("BM_proto_data64k_encode", "BM_proto_data64k_encode_libcbor_prealloc");
	sw_bench_ratio("BM_proto_data64k_encode_copy", "BM_proto_data64k_encode_libcbor_prealloc");
	sw_bench_ratio("BM_proto_data64k_decode", "BM_proto_data64k_decode_libcbor");
	return 0;
}();

} // namespace
