"""Every molecule scenario in extensions/molecule/ (a directory holding a molecule.yml), run with
`molecule test -s NAME` from the checkout: real ansible-playbook runs against localhost (default
driver, unmanaged), on scratch PostgreSQL clusters the scenarios create and remove themselves.

The scenarios are found by listing the directory, so scenarios added later run without changing
this file. Molecule builds the collection and installs it into ~/.ansible/collections on every
run: HOME and ANSIBLE_COLLECTIONS_PATH point at a scratch tree so that a stale copy never
shadows the checkout. The pip cache and configuration of the real HOME are kept, so that the
archiving role's virtualenv installs as quickly as it does for a user.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
SCENARIOS_DIR = os.path.join(ROOT, "extensions", "molecule")


def scenarios():
    if not os.path.isdir(SCENARIOS_DIR):
        return []
    return sorted(name for name in os.listdir(SCENARIOS_DIR)
                  if os.path.isfile(os.path.join(SCENARIOS_DIR, name, "molecule.yml")))


def molecule_env(home):
    real_home = os.path.expanduser("~")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update({
        "PATH": VENV_BIN + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(home, ".ansible", "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "PY_COLORS": "0",
        "PIP_CACHE_DIR": env.get("PIP_CACHE_DIR") or os.path.join(real_home, ".cache", "pip"),
    })
    pip_conf = os.path.join(real_home, ".config", "pip", "pip.conf")
    if "PIP_CONFIG_FILE" not in env and os.path.isfile(pip_conf):
        env["PIP_CONFIG_FILE"] = pip_conf
    return env


@pytest.mark.timeout(900)
@pytest.mark.parametrize("scenario", scenarios())
def test_molecule_scenario(scenario):
    home = tempfile.mkdtemp(prefix="walrus-molecule-home-")
    try:
        started = time.monotonic()
        proc = subprocess.run([os.path.join(VENV_BIN, "molecule"), "test", "-s", scenario], cwd=ROOT,
                              env=molecule_env(home), capture_output=True, text=True, timeout=880, check=False)
        elapsed = time.monotonic() - started
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, "molecule test -s %s exited %d after %.0f s:\n%s" % (
            scenario, proc.returncode, elapsed, output[-20000:])
        # The recap: every action succeeded (destroy is "missing": the driver is unmanaged and the
        # scenarios have no destroy playbook; it only resets molecule's state).
        recap = re.search(r"^%s\s*:\s*actions=(\d+)\s+successful=(\d+).*\bfailed=(\d+)" % re.escape(scenario),
                          output, re.M)
        assert recap and int(recap.group(2)) >= 5 and recap.group(3) == "0", output[-5000:]
    finally:
        shutil.rmtree(home, ignore_errors=True)
