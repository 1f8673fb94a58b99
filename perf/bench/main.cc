// perf/bench/main.cc - entry point of sw-bench: runs every registered
// benchmark with the console reporter, remembers each run's real time per
// iteration, and prints the ratios declared with sw_bench_ratio().
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "perf/bench/shim.h"

namespace {

std::vector<std::pair<std::string, std::string>> &ratios()
{
	static std::vector<std::pair<std::string, std::string>> r;
	return r;
}

// Console output as usual, plus a map of run name -> ns per iteration.
class RecordingReporter : public benchmark::ConsoleReporter {
public:
	std::map<std::string, double> ns_per_iter;

	void ReportRuns(const std::vector<Run> &runs) override
	{
		for (const Run &run : runs) {
			if (run.error_occurred || run.iterations == 0)
				continue;
			// GetAdjustedRealTime is in the run's time unit; normalise to ns.
			double mult = benchmark::GetTimeUnitMultiplier(run.time_unit);
			ns_per_iter[run.benchmark_name()] = run.GetAdjustedRealTime() / mult * 1e9;
		}
		ConsoleReporter::ReportRuns(runs);
	}
};

} // namespace

extern "C" int sw_bench_ratio(const char *name, const char *baseline)
{
	ratios().emplace_back(name, baseline);
	return 0;
}

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	RecordingReporter rep;
	benchmark::RunSpecifiedBenchmarks(&rep);
	std::printf("\nRatios (baseline time / sandwire time; > 1 means sandwire is faster):\n");
	for (const auto &[name, base] : ratios()) {
		auto a = rep.ns_per_iter.find(name), b = rep.ns_per_iter.find(base);
		if (a == rep.ns_per_iter.end() || b == rep.ns_per_iter.end()) {
			std::printf("  %-44s vs %-36s not run (filtered out)\n", name.c_str(), base.c_str());
			continue;
		}
		std::printf("  %-44s vs %-36s %6.2fx  (%.1f ns vs %.1f ns per op)\n", name.c_str(),
			base.c_str(), b->second / a->second, a->second, b->second);
	}
	benchmark::Shutdown();
	return 0;
}
