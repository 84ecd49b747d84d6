# The two commands of README.md: `make demo` runs everything on the embedded default,
# `make test` runs the test suite. Both install what they need first.
PY := .venv/bin/python
.PHONY: install demo test bench chaos clean

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

demo: install
	$(PY) -m stream.cli demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_staffing.py

chaos: install
	CCPULSE_CHAOS_FULL=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_chaos.py

clean:
	rm -rf .venv .pytest_cache .hypothesis
