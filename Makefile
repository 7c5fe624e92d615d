# The entry points for users and CI. Each target installs what it needs, idempotently.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: install install-dev demo test unit system sanity lint bench bench-quick clean

install:
	@tools/install.sh runtime

install-dev:
	@tools/install.sh dev

demo: install-dev
	@tools/demo.sh

test: install-dev
	@tools/run-tests.sh

unit: install-dev
	@$(PY) -m pytest -q tests/unit

system: install-dev
	@$(PY) -m pytest -q tests/system

# Every scenario runs even if one fails, then bench/report.py aggregates their results files into
# bench/results/<date>[-quick].{json,md,png}; BENCH_ARGS goes to each scenario (e.g. --no-setup).
BENCH_SCENARIOS := bench/wal_push.py bench/backup.py "bench/backup.py --scenario delta" bench/pitr.py
bench: install-dev
	@rc=0; for s in $(BENCH_SCENARIOS); do $(PY) $$s $(BENCH_ARGS) || rc=1; done; \
	$(PY) bench/report.py || rc=1; exit $$rc

bench-quick: install-dev
	@rc=0; for s in $(BENCH_SCENARIOS); do $(PY) $$s --quick $(BENCH_ARGS) || rc=1; done; \
	$(PY) bench/report.py --quick || rc=1; exit $$rc

clean:
	rm -rf .venv build *.egg-info .pytest_cache
