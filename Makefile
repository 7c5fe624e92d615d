# The entry points for users and CI. Each target installs what it needs, idempotently.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: install install-dev demo test unit system sanity lint bench clean

install:
	@tools/install.sh runtime

install-dev:
	@tools/install.sh dev

demo: install
	@$(PY) tools/demo.py

test: install-dev
	@tools/run-tests.sh

unit: install-dev
	@$(PY) -m pytest -q tests/unit

system: install-dev
	@$(PY) -m pytest -q tests/system

bench: install-dev
	@$(PY) bench/wal_push.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache
