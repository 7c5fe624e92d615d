"""backup-fetch --start: restore, start with pg_ctl, wait for the end of recovery, report; real
PostgreSQL and real repositories."""
import json
import os

from conftest import walrus
from test_backup_fetch import archive_now, backup_push
from tools.pgcluster import Cluster, free_port


def fetch_and_start(primary, env, target, *extra):
    port = free_port()
    res = walrus("backup-fetch", "LATEST", target, "--set", "port=%d" % port, "--no-archiving", "--start",
                 "--pg-bindir", primary.bin_dir, "--json", *extra, env=env, timeout=300)
    return res, port


def test_start_promotes_at_a_restore_point_without_archiving(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.psql("create table t(v int); insert into t select generate_series(1, 50)")
    backup_push(primary, env)
    primary.psql("insert into t select generate_series(51, 80)")
    primary.psql("select pg_create_restore_point('good')")  # its own statement: after the insert's commit
    primary.psql("delete from t")
    archive_now(primary)

    target = os.path.join(workdir, "restored")
    res, port = fetch_and_start(primary, env, target, "--target-name", "good", "--target-action", "promote")
    assert res.returncode == 0, res.stderr
    started = json.loads(res.stdout)["server"]
    assert (started["state"], started["timeline"], started["port"]) == ("promoted", 2, port)
    clone = Cluster(target, port=port, bin_dir=primary.bin_dir)
    try:
        assert clone.psql("select count(*) || ':' || max(v) from t") == "80:80"
        assert clone.psql("show archive_mode") == "off"  # the restored copy never archives into the source
        with open(os.path.join(target, "postgresql.auto.conf")) as handle:
            assert "archive_mode = 'off'" in handle.read()
    finally:
        clone.stop(mode="immediate")


def test_start_reports_a_pause_at_the_target_and_refuses_bad_settings(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    env = fs_repo.full_env()
    primary.psql("create table t(v int)")
    backup_push(primary, env)
    archive_now(primary)

    bad = os.path.join(workdir, "bad")
    res = walrus("backup-fetch", "LATEST", bad, "--set", "recovery_target_time=now", env=env)
    assert res.returncode == 2 and "use the recovery target options" in res.stderr
    res = walrus("backup-fetch", "LATEST", bad, "--start", env=env)
    assert res.returncode == 2 and "--start needs --pg-bindir" in res.stderr
    assert not os.path.exists(bad)

    target = os.path.join(workdir, "paused")
    res, port = fetch_and_start(primary, env, target, "--target-immediate")
    assert res.returncode == 0, res.stderr
    started = json.loads(res.stdout)["server"]
    assert started["state"] == "paused" and started["timeline"] == 1
    clone = Cluster(target, port=port, bin_dir=primary.bin_dir)
    try:
        assert clone.psql("select pg_is_in_recovery()") == "t"
    finally:
        clone.stop(mode="immediate")
