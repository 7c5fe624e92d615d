"""`make demo` is the README's first command: it must keep working as the engine and roles change.
It runs playbooks/demo.yml (archiving role, backup module, restore_drill role, restore role)."""
import os
import subprocess

from conftest import ROOT


def test_demo_playbook_brings_the_data_back():
    proc = subprocess.run([os.path.join(ROOT, "tools", "demo.sh")], capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "The data came back: the primary lost half of its orders (750 left)" in out and "has all 1500" in out
    assert "| canary | ok | returned 1 |" in out and "| all 1500 orders are back | ok |" in out
    assert "failed=0" in out
    reports = os.listdir("/var/tmp/walrus-demo/drill-reports")
    assert any(name.endswith(".md") for name in reports) and any(name.endswith(".json") for name in reports)
