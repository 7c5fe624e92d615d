#!/usr/bin/env bash
# Installs the peer archivers the WAL-push benchmark compares walrus with, idempotently (as root):
#   - pgBackRest from Debian (2.45 on Debian 12);
#   - barman-cloud 3.19.1 (the last release that installs on Python 3.11) in a venv built from
#     Debian's /usr/bin/python3 under /opt, so the postgres OS user can execute it;
#   - hyperfine (optional; the fast-path measurement falls back to a Python timing loop);
#   - lz4 (the command: the backup benchmark's tar | lz4 floor);
#   - py-spy in its own venv under /opt (optional: the backup benchmark's walrus profile).
set -euo pipefail
BARMAN_VENV=${BARMAN_VENV:-/opt/walrus-bench/barman-venv}
BARMAN_VERSION=${BARMAN_VERSION:-3.19.1}

need=()
for p in pgbackrest python3-venv lz4; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup_peers: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v hyperfine >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null 2>&1 || \
    echo "setup_peers: hyperfine not installed (the benchmark times the fast path in Python instead)"
fi

PYSPY_VENV=${PYSPY_VENV:-/opt/walrus-bench/pyspy}
if [ ! -x "$PYSPY_VENV/bin/py-spy" ]; then
  { /usr/bin/python3 -m venv "$PYSPY_VENV" && "$PYSPY_VENV/bin/pip" install --quiet --disable-pip-version-check py-spy==0.4.3; } || \
    echo "setup_peers: py-spy not installed (the backup benchmark skips its walrus profile)"
fi

stamp="$BARMAN_VENV/.barman-$BARMAN_VERSION.stamp"
if [ ! -f "$stamp" ]; then
  echo "setup_peers: barman[cloud]==$BARMAN_VERSION into $BARMAN_VENV"
  mkdir -p "$(dirname "$BARMAN_VENV")"
  [ -x "$BARMAN_VENV/bin/python" ] || /usr/bin/python3 -m venv "$BARMAN_VENV"
  "$BARMAN_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$BARMAN_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "barman[cloud]==$BARMAN_VERSION" boto3 python-snappy
  touch "$stamp"
fi
chmod 755 "$(dirname "$BARMAN_VENV")"
chmod -R a+rX "$BARMAN_VENV"
runuser -u postgres -- "$BARMAN_VENV/bin/barman-cloud-wal-archive" --version >/dev/null
echo "setup_peers: $(pgbackrest version); barman-cloud $("$BARMAN_VENV/bin/barman-cloud-wal-archive" --version 2>&1)"
