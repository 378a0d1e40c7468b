# The two commands: `make demo` and `make test`. Each installs what it needs (scripts/setup),
# configures and builds.

CMAKE ?= cmake
CTEST ?= ctest
CLANG_FORMAT ?= clang-format

.PHONY: all setup setup-browser demo test lint test-dev test-asan test-tsan bench format clean \
  package docs

all: demo

setup:
	@scripts/setup

# The test run also needs chromium, Node.js and playwright-core for the web UI's browser tests.
setup-browser:
	@scripts/setup --browser-tests

# stagelog serve on a fresh data folder; the seed pipeline (4 workers, 20 items, WORKTREE -> AGENT
# -> JUDGE -> CLEANUP) reporting to it through the network sink; then seed 001's
# GPU agents (4 processes claiming 40 tasks from a file queue), the same pipeline's stages from
# Python through `import stagelog` (python/examples/demo_pipeline.py: two items, one failing,
# to the server and demo-out/python.log), then the live view watching
# agents of which one, gpu-2, hangs in its first task while still heartbeating: stuck, not
# dead (a table on a terminal, lines otherwise; tail exits 1 because it raised warnings); last,
# the failed item's execution log from the server, the web UI's URL and the admin token. The
# GPU agents report to the server too, so its live board and timelines show them. Output in
# demo-out/; the server keeps running for the URL (the next make demo stops it).
STAGELOG := ./build/release/apps/stagelog/stagelog
# The Python the package is built for: Debian's, as CMakeLists.txt chooses.
DEMO_PYTHON := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
demo: setup
	@$(CMAKE) --preset release >/dev/null
	@$(CMAKE) --build build/release --target stagelog_example_pipeline stagelog_example_gpu_agents \
	  stagelog_cli stagelog_python
	@scripts/demo-serve start $(STAGELOG) demo-out/serve
	. demo-out/serve/env && ./build/release/examples/pipeline demo-out
	$(STAGELOG) parse demo-out/pipeline.log > demo-out/parsed.jsonl
	@echo "parsed back: demo-out/parsed.jsonl ($$(wc -l < demo-out/parsed.jsonl) events)"
	$(STAGELOG) summary demo-out/pipeline.log
	. demo-out/serve/env && ./build/release/examples/gpu_agents --dir demo-out/gpu_agents
	. demo-out/serve/env && PYTHONPATH=build/release/python $(DEMO_PYTHON) \
	  python/examples/demo_pipeline.py demo-out/python.log
	$(STAGELOG) summary demo-out/python.log
	@rm -rf demo-out/stuck && mkdir -p demo-out/stuck/logs
	@echo "--- stagelog tail: gpu-2 hangs for 6 s in its first task"
	@. demo-out/serve/env && ./build/release/examples/gpu_agents --fast --stuck-agent 2 --dir demo-out/stuck \
	  > demo-out/stuck/gpu_agents.out 2>&1 & \
	$(STAGELOG) tail --exit-when-done --stuck-stage 2s --stuck-task 2s --summary-interval 2s \
	  demo-out/stuck; status=$$?; wait; test $$status -le 1
	@echo "--- the pipeline's item 13 as stagelog serve keeps it (seed 004's execution log)"
	@scripts/demo-serve show demo-out/serve item-13

# The formatting check, then unit, integration, CLI and browser tests in the dev build
# (screenshots of each web UI page in build/dev/e2e-artifacts), again under ASan + UBSan but the
# browser, and the concurrency tests under TSan.
test: setup-browser lint test-dev test-asan test-tsan

# Every tracked .cpp and .hpp file as .clang-format wants it, checked with clang-format 14 (other
# versions format some constructs differently); the first difference in each file is shown.
# Changes nothing: `make format` does.
lint:
	@command -v $(CLANG_FORMAT) >/dev/null || { \
	  echo "make lint: $(CLANG_FORMAT) not found (scripts/setup installs it)" >&2; exit 1; }
	@version=$$($(CLANG_FORMAT) --version | sed -n 's/.*version \([0-9]*\).*/\1/p'); \
	if [ "$$version" != 14 ]; then \
	  echo "make lint: warning: $(CLANG_FORMAT) is version $$version, the style is checked" \
	    "with 14; other versions may disagree (CLANG_FORMAT=clang-format-14 make lint)" >&2; \
	fi
	@git ls-files -z '*.cpp' '*.hpp' | \
	  xargs -0 -r $(CLANG_FORMAT) --dry-run -Werror --ferror-limit=1 || { \
	  echo "make lint: the files above are not formatted as .clang-format says;" \
	    "'make format' formats every tracked .cpp and .hpp file in place" >&2; \
	  exit 1; }

test-dev:
	@$(CMAKE) --preset dev >/dev/null
	@$(CMAKE) --build build/dev
	$(CTEST) --preset dev

test-asan:
	@$(CMAKE) --preset asan >/dev/null
	@$(CMAKE) --build build/asan
	$(CTEST) --preset asan

test-tsan:
	@$(CMAKE) --preset tsan >/dev/null
	@$(CMAKE) --build build/tsan --target stagelog_concurrency_tests
	$(CTEST) --preset tsan

# Benchmarks against their peers in the same run (spdlog for the recorder, SQLite's own insert
# rate for the server's ingest); results in bench-results/.
bench: setup
	@$(CMAKE) --preset release >/dev/null
	@$(CMAKE) --build build/release --target stagelog_bench_hot_path_latency \
	  stagelog_bench_backend_throughput stagelog_bench_ingest stagelog_bench_query
	@mkdir -p bench-results
	./build/release/bench/hot_path_latency --benchmark_out=bench-results/hot_path_latency.json
	./build/release/bench/backend_throughput --benchmark_out=bench-results/backend_throughput.json
	./build/release/bench/ingest --benchmark_out=bench-results/ingest.json
	./build/release/bench/query --benchmark_out=bench-results/query.json

# Debian packages of the release build, in build/package/: libstagelog-dev (libraries, headers,
# CMake and pkg-config files) and stagelog (the tool, its systemd unit, man pages, completions).
package: setup
	@$(CMAKE) --preset release -B build/package -DSTAGELOG_BUILD_TESTS=OFF \
	  -DSTAGELOG_BUILD_BENCH=OFF -DSTAGELOG_BUILD_EXAMPLES=OFF >/dev/null
	@$(CMAKE) --build build/package
	cd build/package && cpack -G DEB
	@ls build/package/*.deb

# The API reference of the public headers, in build/docs/html/ (warnings are errors).
docs: setup
	doxygen docs/Doxyfile

format:
	git ls-files -z '*.cpp' '*.hpp' | xargs -0 $(CLANG_FORMAT) -i

clean:
	rm -rf build demo-out bench-results
