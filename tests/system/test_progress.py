"""backup-push's progress line and --log-format json against a small real cluster: the line
when forced (--progress), nothing on stderr under a pipe, parseable JSON lines on request."""
import json
import os
import pty
import re
import subprocess

from conftest import WALRUS, walrus


def push(cluster, env, *extra):
    res = walrus("backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
                 "--pguser", "postgres", *extra, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res


def test_backup_push_progress_only_when_asked_and_json_log_lines(fs_repo, cluster_factory, workdir):
    cluster = cluster_factory(fs_repo)
    env = fs_repo.full_env()

    res = push(cluster, env, "--name", "with_progress", "--progress", "--json")
    sentinel = json.loads(res.stdout)
    # Redrawn with carriage returns (text mode reads them as newlines); the last line holds the totals.
    assert res.stderr.endswith("\n")
    final = res.stderr.splitlines()[-1]
    match = re.match(r"backup-push with_progress: ([\d.]+) MiB / ([\d.]+) MiB 100%  [\d.]+ MB/s  in \d+:\d\d\s*$",
                     final)
    assert match, final
    assert match.group(1) == match.group(2)
    # the bytes read from the data directory: what the sentinel calls the raw size, less the tar framing
    assert 0.9 * sentinel["raw_size"] <= float(match.group(1)) * (1 << 20) <= sentinel["raw_size"]

    res = walrus("backup-fetch", "with_progress", os.path.join(workdir, "restored"), "--progress", "--json",
                 env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    fetched = json.loads(res.stdout)
    final = res.stderr.splitlines()[-1]
    assert re.match(r"backup-fetch with_progress: ([\d.]+) MiB / \1 MiB 100%  ", final), final
    assert "%.1f MiB" % (fetched["bytes"] / float(1 << 20)) in final

    res = push(cluster, env, "--name", "piped")
    assert res.stderr == ""
    assert res.stdout.startswith("full backup piped: ")

    # On a terminal the line is there without asking: the first redraw starts with a carriage return.
    master, slave = pty.openpty()
    try:
        cmd = [WALRUS, "backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
               "--pguser", "postgres", "--name", "on_a_tty"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        try:
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=slave, timeout=120, check=False)
        finally:
            os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0, seen
    assert seen.startswith(b"\r") and re.search(rb"backup-push on_a_tty: .* 100%  .*\n$", seen.replace(b"\r\n", b"\n")), seen

    res = push(cluster, env, "--name", "logged", "--log-format", "json")
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    assert [(line["level"], line["event"]) for line in lines] == [("info", "backup-push.done")]
    assert lines[0]["name"] == "logged" and lines[0]["files"] > 0 and res.stdout.startswith("full backup logged: ")

    res = walrus("backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
                 "--pguser", "postgres", "--name", "logged", "--log-format", "json", env=env, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    error = json.loads(res.stderr)
    assert error["level"] == "error" and error["event"] == "backup-push.error" and "already exists" in error["message"]
