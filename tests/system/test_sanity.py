"""The collection passes `ansible-test sanity` and `ansible-lint --profile production`
(tools/sanity.sh runs both on a copy of the checkout)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sanity_and_lint():
    proc = subprocess.run([os.path.join(ROOT, "tools", "sanity.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    output = proc.stdout + proc.stderr
    findings = [line for line in output.splitlines()
                if line.startswith(("ERROR:", "FATAL:", "sanity:")) or "[" in line.split(":", 1)[0]]
    assert proc.returncode == 0, "tools/sanity.sh failed:\n%s\n\n(full output: last 4000 chars)\n%s" % (
        "\n".join(findings), output[-4000:])
