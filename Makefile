# Thin front for CMake.  `make test` is the command README.md and .ci/run use.
#
#   make deps   install the Debian packages the project needs (only those missing)
#   make        configure + build (RelWithDebInfo) into build/
#   make test   deps + build + run the whole Criterion suite through CTest
#   make bench  run the micro-benchmarks and the agent benchmark, with ratios to baselines
#   make bench-peer  sw-port-bench with microsandbox's agentd 0.7.2 beside sandwire-agent
#               (fetched with npm through ../shared/peers/agentd; needs root for the peer)
#   make asan   build into build-asan/ with ASan+UBSan and run the suite
#   make tsan   build into build-tsan/ with TSan and run the threaded tests
#   make fuzz   build the libFuzzer targets with clang and fuzz the codec for FUZZ_SECONDS
#   make run    the quick-start demo: a process sandbox running exec and a TCP stream

BUILD      ?= build
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=
PACKAGES   := build-essential cmake pkg-config liburing-dev libmimalloc-dev libcbor-dev \
              libcriterion-dev libbenchmark-dev python3-cbor2

FUZZ_SECONDS ?= 60
PEERS        ?= ../shared/peers/agentd
AGENTD_CACHE ?= /tmp/sw-agentd-0.7.2

.PHONY: all deps build test bench bench-peer asan tsan fuzz run clean format

all: build

deps:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: deps
	$(MAKE) build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

bench: deps
	$(MAKE) build
	$(BUILD)/perf/sw-bench --benchmark_min_time=0.2
	$(BUILD)/perf/sw-agent-bench
	$(BUILD)/perf/sw-port-bench

bench-peer: deps
	$(MAKE) build
	AGENTD_VERSION=0.7.2 SW_AGENTD_CACHE=$(AGENTD_CACHE) sh $(PEERS)/build.sh
	printf '#!/bin/sh\nexport AGENTD_VERSION=0.7.2 SW_AGENTD_CACHE=%s\nexec %s/agentd-fd3.sh "$$@"\n' \
		"$(AGENTD_CACHE)" "$$(cd $(PEERS) && pwd)" > $(BUILD)/agentd-0.7.2.sh
	chmod +x $(BUILD)/agentd-0.7.2.sh
	$(BUILD)/perf/sw-port-bench --peer $(BUILD)/agentd-0.7.2.sh

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSW_SANITIZE=asan -DSW_BUILD_BENCH=OFF
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j $(JOBS) $(CTEST_ARGS)

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSW_SANITIZE=tsan -DSW_BUILD_BENCH=OFF
	cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		ctest --test-dir build-tsan --output-on-failure -L threads $(CTEST_ARGS)

fuzz: deps
	dpkg-query -W -f='$${Status}' clang 2>/dev/null | grep -q 'ok installed' || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev; }
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSW_FUZZ=ON \
		-DSW_SANITIZE=asan -DSW_BUILD_BENCH=OFF -DSW_BUILD_TESTS=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_frame
	python3 scripts/fuzz_seeds.py tests/vectors/vectors-gen7.txt build-fuzz/corpus-frame
	build-fuzz/tests/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
		build-fuzz/corpus-frame

run: deps
	$(MAKE) build
	$(BUILD)/perf/sw-demo

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
