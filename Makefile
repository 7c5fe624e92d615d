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

# Both benchmarks run even if the first fails; BENCH_ARGS goes to both (e.g. --repeat 3 --no-setup).
bench: install-dev
	@$(PY) bench/wal_push.py $(BENCH_ARGS); rc=$$?; $(PY) bench/backup.py $(BENCH_ARGS) && exit $$rc

bench-quick: install-dev
	@$(PY) bench/wal_push.py --quick $(BENCH_ARGS); rc=$$?; $(PY) bench/backup.py --quick $(BENCH_ARGS) && exit $$rc

clean:
	rm -rf .venv build *.egg-info .pytest_cache
