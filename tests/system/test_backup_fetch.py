"""backup-push, more writes, backup-fetch with a recovery target, start the restored cluster
and compare: real PostgreSQL, real repositories (directory and SeaweedFS S3), the installed
walrus run as the postgres user."""
import json
import os
import time

from conftest import walrus
from tools.pgcluster import chown_postgres
from walhelpers import snapshot, start_restored


def backup_push(cluster, env, *extra):
    res = walrus("backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
                 "--pguser", "postgres", "--json", *extra, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def archive_now(cluster):
    cluster.wait_archived(cluster.switch_wal())


def test_backup_fetch_latest_to_a_restore_point_with_a_relocated_tablespace(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    ts_dir = os.path.join(workdir, "ts1")
    os.mkdir(ts_dir)
    chown_postgres(ts_dir)
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 100)")
    primary.psql("create tablespace ts1 location '%s'" % ts_dir)
    primary.psql("create table in_ts(v text) tablespace ts1; insert into in_ts select md5(g::text) from generate_series(1, 5000) g")
    oid = primary.psql("select oid from pg_tablespace where spcname = 'ts1'")

    pushed = backup_push(primary, env)
    listing = walrus("backup-list", "--json", env=env, check=True)
    assert [b["name"] for b in json.loads(listing.stdout)] == [pushed["name"]]

    # After the backup: changes that the restore point includes, then changes it must not.
    primary.pgbench("-t", "200", "-n")
    primary.psql("insert into canary select generate_series(101, 150); delete from in_ts where v < '8'")
    expected = snapshot(primary)
    expected_ts = primary.psql("select count(*) || ':' || md5(string_agg(v, ',' order by v)) from in_ts")
    primary.psql("select pg_create_restore_point('before_damage')")
    primary.psql("delete from canary where v > 10; update pgbench_accounts set abalance = abalance + 7; truncate in_ts")
    assert snapshot(primary) != expected
    archive_now(primary)

    target = os.path.join(workdir, "restored")
    new_ts = os.path.join(workdir, "ts1-restored")
    res = walrus("backup-fetch", "LATEST", target, "--target-name", "before_damage", "--target-action", "promote",
                 "--tablespace-map", "%s=%s" % (oid, new_ts), "--jobs", "3", "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["name"] == pushed["name"] and result["files"] == pushed["files"]
    assert os.readlink(os.path.join(target, "pg_tblspc", oid)) == new_ts
    assert os.path.exists(os.path.join(target, "recovery.signal"))

    clone = start_restored(primary, target, env)
    try:
        assert snapshot(clone) == expected
        assert clone.psql("select count(*) || ':' || md5(string_agg(v, ',' order by v)) from in_ts") == expected_ts
        assert clone.psql("select pg_tablespace_location(%s)" % oid) == new_ts
        # Promoted at the restore point: a new timeline.
        assert clone.psql("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == "00000002"
        # The primary's tablespace was not touched by the restore.
        assert primary.psql("select count(*) from in_ts") == "0"
    finally:
        clone.stop(mode="immediate")


def test_backup_fetch_to_a_time_between_two_backups(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 10)")
    first = backup_push(primary, env, "--name", "nightly-1")

    primary.pgbench("-t", "300", "-n")
    primary.psql("insert into canary select generate_series(11, 20)")
    time.sleep(1.2)
    target_time = primary.psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    expected = snapshot(primary)
    time.sleep(1.2)
    primary.psql("insert into canary select generate_series(21, 30); update pgbench_accounts set abalance = 1")
    primary.switch_wal()
    second = backup_push(primary, env, "--name", "nightly-2")
    assert second["stop_time"] > first["stop_time"]
    archive_now(primary)

    # LATEST with a target time takes the newest backup that ended before it: nightly-1.
    target = os.path.join(workdir, "pitr")
    res = walrus("backup-fetch", "LATEST", target, "--target-time", target_time, "--target-action", "promote",
                 "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["name"] == "nightly-1"
    with open(os.path.join(target, "postgresql.auto.conf")) as handle:
        auto = handle.read()
    assert "recovery_target_time = '%s'" % target_time in auto and "wal-fetch" in auto

    # The newer backup ends after the target: named explicitly, it is refused before writing.
    other = os.path.join(workdir, "refused")
    res = walrus("backup-fetch", "nightly-2", other, "--target-time", target_time, env=env)
    assert res.returncode == 2 and "after the recovery target" in res.stderr
    assert not os.path.exists(other)

    clone = start_restored(primary, target, env)
    try:
        assert snapshot(clone) == expected
        assert clone.psql("select max(v) from canary") == "20"
    finally:
        clone.stop(mode="immediate")

    # A missing backup name is a usage error listing what exists.
    res = walrus("backup-fetch", "nightly-9", os.path.join(workdir, "x"), env=env)
    assert res.returncode == 2 and "available: nightly-1, nightly-2" in res.stderr

    # A stored part changed behind walrus's back: exit 4 naming it, and nothing startable left.
    key = "basebackups/nightly-2/part-00001.tar"
    repo.damage(key)
    broken = os.path.join(workdir, "broken")
    res = walrus("backup-fetch", "nightly-2", broken, env=env)
    assert res.returncode == 4 and key in res.stderr and "INCOMPLETE" in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(broken, "recovery.signal"))
    assert not os.path.exists(os.path.join(broken, "global", "pg_control"))
