#!/usr/bin/env bash
# The whole suite: unit tests, system tests (real PostgreSQL, real SeaweedFS S3, real
# ansible-playbook), ansible-test sanity and ansible-lint. `make test` runs this after
# installing everything; .ci/run runs `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# pytest exits 5 when it collected no test: that is a failure here, never hidden.
exec .venv/bin/python -m pytest -p no:cacheprovider -q -ra --durations=15 tests/unit tests/system "$@"
