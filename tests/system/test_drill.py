"""walrus drill-canary and walrus drill against real PostgreSQL and real repositories: a drill
that passes (canary back, pg_amcheck clean, a user check true), one whose user check fails,
and one with nothing to restore."""
import json
import os

import pytest
from conftest import walrus
from test_backup_fetch import backup_push

from walrus import codec


def drill(primary, env, workdir, *extra):
    scratch = os.path.join(workdir, "drill")
    res = walrus("drill", "--pg-bindir", primary.bin_dir, "--scratch", scratch, "--json", *extra, env=env, timeout=300)
    report = json.loads(res.stdout) if res.stdout.startswith("{") else None
    return res, report, scratch


def stored_report(repo, report):
    """The report as stored in the repository (framed JSON and Markdown)."""
    key = "drills/%s/report.json" % report["id"]
    stored = json.loads(codec.decode(repo.read(key), key))
    markdown = codec.decode(repo.read("drills/%s/report.md" % report["id"]), "md").decode()
    return stored, markdown


def test_drill_restores_replays_and_finds_the_canary(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    backup_push(primary, env)
    primary.pgbench("-t", "300", "-n")  # written after the backup: only WAL replay brings it back
    balance = primary.psql("select sum(abalance) from pgbench_accounts")
    res = walrus("drill-canary", "--pghost", primary.host, "--pgport", str(primary.port), "--json", env=env)
    assert res.returncode == 0, res.stderr
    canary = json.loads(res.stdout)

    res, report, scratch = drill(primary, env, workdir, "--canary", canary["token"],
                                 "--check", "balance=select sum(abalance) = %s from pgbench_accounts" % balance)
    assert res.returncode == 0, res.stderr + res.stdout
    assert report["passed"] is True
    checks = dict((c["name"], c) for c in report["checks"])
    assert list(checks) == ["restore", "recovery", "canary", "amcheck", "balance"]
    assert all(c["ok"] for c in checks.values()), checks
    assert report["rto_seconds"] >= report["replay_seconds"] > 0
    assert 0 <= report["rpo_seconds"] < 120  # the canary commit is the newest transaction replayed
    assert report["timeline"] == 2  # promoted at the end of the archive
    assert not os.path.exists(scratch)  # cleaned up

    stored, markdown = stored_report(repo, report)
    assert stored["checks"] == report["checks"] and stored["passed"] is True
    assert "PASSED" in markdown and "| canary | ok |" in markdown
    # The primary is untouched, and the drill server archived nothing into the repository.
    assert not [k for k in repo.keys() if k.startswith("wal/00000002")]


def test_failing_user_check_fails_the_drill_and_keeps_the_evidence(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    env = fs_repo.full_env()
    primary.psql("create table orders(id int); insert into orders select generate_series(1, 10)")
    backup_push(primary, env)
    res, report, scratch = drill(primary, env, workdir, "--no-amcheck", "--keep", "on-failure",
                                 "--check", "orders=select count(*) = 11 from orders")
    assert res.returncode == 6, res.stderr
    assert "restore drill %s FAILED: orders" % report["id"] in res.stderr
    assert report["passed"] is False
    failed = [c for c in report["checks"] if c["ok"] is False]
    assert [c["name"] for c in failed] == ["orders"] and "returned False" in failed[0]["detail"]
    assert [c["name"] for c in report["checks"] if c["ok"] is None] == []  # amcheck was not asked for
    assert os.path.isdir(os.path.join(scratch, "data")) and report["scratch_kept"] is True
    stored, markdown = stored_report(fs_repo, report)
    assert stored["passed"] is False and "| orders | FAILED |" in markdown


@pytest.mark.parametrize("args, message", [
    (("--check", "no equals sign"), "--check 'no equals sign': use NAME=SQL"),
    (("--set", "shared_buffers"), "--set 'shared_buffers': use NAME=VALUE"),
    (("--target-xid", "12x"), "is not a transaction id"),
])
def test_bad_drill_arguments_change_nothing(fs_repo, workdir, args, message):
    scratch = os.path.join(workdir, "drill")
    res = walrus("drill", "--pg-bindir", "/usr/lib/postgresql/15/bin", "--scratch", scratch, *args, env=fs_repo.full_env())
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not os.path.exists(scratch)
    assert "drills" not in os.listdir(fs_repo.url)


def test_drill_of_an_empty_repository_fails_at_restore(fs_repo, workdir):
    scratch = os.path.join(workdir, "drill")
    res = walrus("drill", "--pg-bindir", "/usr/lib/postgresql/15/bin", "--scratch", scratch, "--json",
                 env=fs_repo.full_env())
    assert res.returncode == 6 and "FAILED: restore" in res.stderr
    report = json.loads(res.stdout)
    assert "no complete backup" in report["checks"][0]["detail"]
