#!/usr/bin/env bash
# Static checks of the collection, as Galaxy and Automation Hub would run them:
#   ansible-test sanity --python 3.11   and   ansible-lint --profile production
# on a copy of this checkout placed under <scratch>/ansible_collections/walrus/postgres/
# (ansible-test refuses a symlinked tree). The copy holds the tracked and new, non-ignored
# files (git ls-files) minus what galaxy.yml's build_ignore keeps out of the collection
# artifact (the development tooling in bench/ and tools/), i.e. what users install.
# Usage: tools/sanity.sh [extra ansible-test sanity arguments, e.g. --test pep8]
# Exit status: 0 when both pass.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv_bin=$root/.venv/bin
python=${WALRUS_SANITY_PYTHON:-3.11}

scratch=$(mktemp -d /tmp/walrus-sanity-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
dest=$scratch/ansible_collections/walrus/postgres
mkdir -p "$dest"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | "$venv_bin/python" -c '
import fnmatch, os, sys, yaml
with open("galaxy.yml") as handle:
    patterns = yaml.safe_load(handle).get("build_ignore") or []
def ignored(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(os.path.basename(p), pat) for p in prefixes for pat in patterns)
for path in sys.stdin.buffer.read().decode().split("\0"):
    if path and os.path.lexists(path) and not ignored(path):
        sys.stdout.write(path + "\0")
' | tar --null -T - -cf -) | tar -C "$dest" -xf -

# ansible-test bootstraps pip in its virtual environments with a get-pip script from a host
# this machine cannot reach. A stand-in in its cache does the same job with ensurepip and pip.
pip_version=$("$venv_bin/python" - <<'PY'
import os, re
import ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -f "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cat > "$get_pip" <<'PY'
"""Stand-in for ansible-test's get-pip download (written by walrus tools/sanity.sh):
bootstrap pip with ensurepip, then install the requested packages with it."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args)
PY
  echo "sanity: wrote pip bootstrap stand-in $get_pip"
fi

export PATH=$venv_bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$scratch
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
status=0

echo "sanity: ansible-test sanity --python $python"
(cd "$dest" && ansible-test sanity --python "$python" --color no "$@") || status=1

echo "sanity: ansible-lint --profile production"
(cd "$dest" && HOME=$scratch/home ansible-lint --profile production --offline --nocolor) || status=1

if [ "$status" = 0 ]; then echo "sanity: all passed"; else echo "sanity: FAILED"; fi
exit "$status"
