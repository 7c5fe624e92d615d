"""Helpers for the WAL system tests: restore a physical copy from the archive and compare."""
import os
import shutil

from conftest import WALRUS, start_with_env, walrus
from tools.pgcluster import Cluster, as_postgres


# A fingerprint of the pgbench data and the canary table, as one text value.
SNAPSHOT_SQL = ("select (select count(*) || ':' || sum(abalance) from pgbench_accounts) || '|' || "
                "(select count(*) || ':' || coalesce(sum(v), 0) from canary)")


def snapshot(cluster):
    """A fingerprint of the pgbench data and the canary table."""
    return cluster.psql(SNAPSHOT_SQL)


def start_restored(primary, target, env):
    """Start the cluster restored into `target` (backup-fetch) on a spare port, archiving off."""
    clone = Cluster(target, bin_dir=primary.bin_dir)
    clone.configure(port=clone.port, archive_mode="off")
    clone.env = env
    start_with_env(clone)
    clone.wait_ready()
    return clone


def restore_and_check(primary, env, target, restore_point, fingerprint, expected, amcheck_scope=("--all",)):
    """backup-fetch LATEST into `target` up to `restore_point` (then promote), start it, and check
    that it is the source at that point: fingerprint(clone) == expected, and pg_amcheck
    --heapallindexed on `amcheck_scope` (its database arguments) finds nothing. Returns the clone."""
    res = walrus("backup-fetch", "LATEST", target, "--target-name", restore_point, "--target-action", "promote",
                 env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    clone = start_restored(primary, target, env)
    assert fingerprint(clone) == expected
    check = as_postgres([clone.bin("pg_amcheck"), "-h", clone.host, "-p", str(clone.port), "-U", "postgres",
                         "--heapallindexed"] + list(amcheck_scope), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    return clone


def restore_copy(primary, backup_dir, name, repo, port=None, standby=False, **recovery):
    """Start a new cluster from a pg_basebackup copy, recovering through walrus wal-fetch."""
    target = os.path.join(os.path.dirname(primary.datadir), name)
    as_postgres(["cp", "-a", backup_dir, target])
    clone = Cluster(target, port=port, bin_dir=primary.bin_dir)
    settings = {"port": clone.port, "archive_mode": "off",
                "restore_command": "'%s wal-fetch %%f %%p'" % WALRUS}
    settings.update(recovery)
    clone.configure(**settings)
    open(os.path.join(target, "standby.signal" if standby else "recovery.signal"), "w").close()
    shutil.chown(os.path.join(target, "standby.signal" if standby else "recovery.signal"), "postgres", "postgres")
    clone.env = repo.full_env()
    start_with_env(clone)
    return clone
