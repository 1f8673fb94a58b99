/*
 * perf/bench/shim.h - what the C++ benchmark files share.
 *
 * Benchmark bodies live in C kernels (perf/bench/*.c, declared in
 * *_kern.h with C linkage).  A .cc file registers them with Google
 * Benchmark and may declare a ratio: after the run, main prints
 * "ratio <name> / <baseline> = X" from the real times measured in the same
 * run, so a speed claim is always relative to a baseline on the same
 * (noisy) machine.
 */
#ifndef SW_PERF_BENCH_SHIM_H
#define SW_PERF_BENCH_SHIM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Print, after the run, how many times faster <name> is than <baseline>. */
int sw_bench_ratio(const char *name, const char *baseline);

#ifdef __cplusplus
}
#endif

#endif /* SW_PERF_BENCH_SHIM_H */
