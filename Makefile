# The two commands of README.md: `make demo` runs everything on the embedded default,
# `make test` runs the test suite. Both install what they need first.
PY := .venv/bin/python
.PHONY: install compiled demo test bench bench-long bench-engine chaos clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

# the compiled hot modules, rebuilt when a source changed since (a no-op otherwise)
compiled: install
	$(PY) scripts/build_compiled.py || echo "WARNING: compiling the hot modules failed; they run from source" >&2

demo: compiled
	$(PY) -m stream.cli demo

test: compiled
	$(PY) -m pytest -q -p no:cacheprovider

bench: compiled
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_staffing.py

# the long replay alone: 1,000,000 calls over 30 days of history (~15 min here), the worker's
# memory by day of history (RSS, state entries, C heap, pymalloc) → docs/BENCHMARKS-long.md
bench-long: compiled
	$(PY) bench/bench_pipeline.py --only replay --full --events 20000 --no-profile --out docs/BENCHMARKS-long.md

# the KPI engine alone (no Kafka, Redis or publishing), compiled against from source;
# ARGS="--against ../other-checkout" compares two trees instead
bench-engine: compiled
	$(PY) bench/bench_engine.py $(ARGS)

chaos: compiled
	CCPULSE_CHAOS_FULL=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_chaos.py

clean:
	-$(PY) scripts/build_compiled.py --clean
	rm -rf .venv .pytest_cache .hypothesis build
