"""`make demo` is the README's first command: it must keep working as the engine changes."""
import os
import subprocess
import sys

from conftest import ROOT


def test_demo_restores_exactly_the_target_state():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo.py")], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo: OK" in proc.stdout
    assert "DIFFERS" not in proc.stdout
    assert "walrus backup-push" in proc.stdout and "walrus backup-fetch LATEST" in proc.stdout
