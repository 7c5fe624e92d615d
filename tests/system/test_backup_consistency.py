"""Backups of a database that is being written: consistent after restore; and a backup killed
half-way never counts."""
import json
import os
import signal
import subprocess
import threading
import time

from conftest import WALRUS, walrus
from test_backup_fetch import backup_push
from walhelpers import restore_and_check, snapshot


def test_backup_during_pgbench_restores_consistent_to_a_later_point(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    primary.pgbench("-i", "-s", "4", "-q")
    primary.psql("create extension amcheck; create table canary(v int); insert into canary values (1)")
    env = repo.full_env()
    load = threading.Thread(target=primary.pgbench, args=("-n", "-c", "2", "-j", "2", "-T", "8"))
    load.start()
    try:
        time.sleep(1)
        sentinel = backup_push(primary, env, "--jobs", "3", "--part-size-mb", "16")
    finally:
        load.join()
    assert sentinel["parts"] >= 2
    primary.psql("insert into canary values (2)")
    primary.psql("select pg_create_restore_point('after-load')")  # its own transaction: after the insert's commit
    expected = snapshot(primary)
    primary.wait_archived(primary.switch_wal())

    restore_and_check(primary, env, os.path.join(workdir, "restored"), "after-load", snapshot, expected,
                      amcheck_scope=["postgres"])


def test_killed_backup_leaves_no_sentinel_and_the_next_one_works(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    primary.pgbench("-i", "-s", "8", "-q")
    env = repo.full_env(PGHOST=primary.host, PGPORT=str(primary.port), PGUSER="postgres")
    cmd = ["runuser", "-u", "postgres", "--", WALRUS, "backup-push", primary.datadir, "--name", "killed",
           "--jobs", "1", "--part-size-mb", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while not any(k.startswith("basebackups/killed/part-") for k in repo.keys()):  # mid-way: a part is stored
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    keys = repo.keys()
    assert "basebackups/killed/sentinel.json" not in keys
    listed = json.loads(walrus("backup-list", "--json", env=env).stdout)
    assert [b["name"] for b in listed] == []
    res = walrus("backup-fetch", "killed", os.path.join(workdir, "nope"), env=env)
    assert res.returncode == 2 and "does not exist" in res.stderr
    # PostgreSQL ended the aborted backup with the session; the next backup works.
    sentinel = backup_push(primary, repo.full_env(), "--name", "next")
    assert sentinel["name"] == "next"
    assert [b["name"] for b in json.loads(walrus("backup-list", "--json", env=env).stdout)] == ["next"]
