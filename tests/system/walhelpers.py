"""Helpers for the WAL system tests: restore a physical copy from the archive and compare."""
import os
import shutil

from conftest import WALRUS, start_with_env
from tools.pgcluster import Cluster, as_postgres


# A fingerprint of the pgbench data and the canary table, as one text value.
SNAPSHOT_SQL = ("select (select count(*) || ':' || sum(abalance) from pgbench_accounts) || '|' || "
                "(select count(*) || ':' || coalesce(sum(v), 0) from canary)")


def snapshot(cluster):
    """A fingerprint of the pgbench data and the canary table."""
    return cluster.psql(SNAPSHOT_SQL)


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
