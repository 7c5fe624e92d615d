#!/usr/bin/env bash
# The whole suite: unit tests, system tests (real PostgreSQL, real SeaweedFS S3, real
# ansible-playbook), ansible-test sanity and ansible-lint. `make test` runs this after
# installing everything; .ci/run runs `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two workers (WALRUS_TEST_WORKERS): most tests wait on PostgreSQL, SeaweedFS or ansible-playbook,
# so two run side by side on two cores. Tests that share machine-wide state (the role's default
# venv /opt/walrus/venv, the postgres user's crontab, /var/tmp/walrus-demo) carry one xdist group
# (tests/system/conftest.py) and run one after another on one worker.
# pytest exits 5 when it collected no test: that is a failure here, never hidden.
workers=${WALRUS_TEST_WORKERS:-2}
parallel=()
[ "$workers" -gt 1 ] && parallel=(-n "$workers" --dist loadgroup)
exec .venv/bin/python -m pytest -p no:cacheprovider -q -ra --durations=15 "${parallel[@]}" tests/unit tests/system "$@"
