"""The WAL path end to end: a real PostgreSQL 15 cluster archives through `walrus wal-push`
into a real repository (a local directory, and SeaweedFS S3 on 127.0.0.1) and a copy recovers
through `walrus wal-fetch`."""
import os
import time

from conftest import WALRUS, walrus
from tools.pgcluster import as_postgres
from walhelpers import restore_copy, snapshot


def test_archive_pgbench_and_recover_to_end_of_archive(repo, cluster_factory, workdir):
    primary = cluster_factory(repo)
    primary.pgbench("-i", "-s", "3", "-q")
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 1000)")
    backup = os.path.join(workdir, "base")
    primary.basebackup(backup)
    primary.pgbench("-c", "2", "-t", "300", "-n")
    primary.psql("insert into canary select generate_series(1, 500)")
    expected = snapshot(primary)
    last = primary.switch_wal()
    primary.wait_archived(last)

    keys = repo.keys()
    assert "walrus-repository.json" in keys
    assert any(k.endswith(".backup") for k in keys), "pg_basebackup's backup history file is archived"
    assert sum(k.startswith("wal/00000001/") for k in keys) >= 4

    clone = restore_copy(primary, backup, "clone", repo)
    clone.wait_ready()
    assert snapshot(clone) == expected
    assert "archive recovery complete" in open(clone.logfile).read()


def test_promoted_standby_archives_history_and_partial_and_pitr_follows_new_timeline(repo, cluster_factory, workdir):
    primary = cluster_factory(repo)
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary values (1)")
    backup = os.path.join(workdir, "base")
    primary.basebackup(backup)
    pushed = walrus("backup-push", primary.datadir, "--name", "before-promotion",
                    env=repo.full_env(PGHOST=primary.host, PGPORT=str(primary.port), PGUSER="postgres"))
    assert pushed.returncode == 0, pushed.stderr
    primary.psql("insert into canary values (2)")
    primary.wait_archived(primary.switch_wal())
    # A standby that replays the archive, then streams; promoted mid-segment, it leaves the old
    # timeline's last segment as a .partial and archives it with the new timeline's history.
    standby = restore_copy(primary, backup, "standby", repo, standby=True, archive_mode="on",
                           archive_command="'%s wal-push %%p'" % WALRUS,
                           primary_conninfo="'host=127.0.0.1 port=%d user=postgres'" % primary.port)
    primary.psql("insert into canary values (3)")  # only in the primary's current segment: not archived
    deadline = time.time() + 60
    while standby.psql("select count(*) from canary") != "3" and time.time() < deadline:
        time.sleep(0.2)
    primary.stop(mode="immediate")
    as_postgres([standby.bin("pg_ctl"), "-D", standby.datadir, "-w", "promote"])
    standby.psql("insert into canary values (20)")
    standby.wait_archived(standby.switch_wal())

    keys = repo.keys()
    assert "wal/00000002/00000002.history" in keys
    partials = [k for k in keys if k.endswith(".partial")]
    assert partials and partials[0].startswith("wal/00000001/")

    # Fetch them back byte for byte.
    history = os.path.join(workdir, "history")
    res = walrus("wal-fetch", "00000002.history", history, env=repo.full_env())
    assert res.returncode == 0, res.stderr
    with open(os.path.join(standby.datadir, "pg_wal", "00000002.history"), "rb") as handle:
        assert open(history, "rb").read() == handle.read()
    partial_name = partials[0].split("/")[-1]
    res = walrus("wal-fetch", partial_name, os.path.join(workdir, "partial"), env=repo.full_env())
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(os.path.join(workdir, "partial")) == 16 << 20

    # A second restore from the same base backup follows the history to timeline 2.
    expected = snapshot(standby)
    standby.stop()
    clone = restore_copy(primary, backup, "clone", repo, recovery_target_timeline="'latest'")
    clone.wait_ready()
    assert snapshot(clone) == expected
    assert clone.psql("select string_agg(v::text, ',' order by v) from canary") == "1,2,3,20"
    clone.stop()

    # walrus's own backup of the old primary, restored with backup-fetch, follows the same history.
    fetched = walrus("backup-fetch", "before-promotion", os.path.join(workdir, "fetched"), "--target-timeline",
                     "latest", env=repo.full_env(), timeout=300)
    assert fetched.returncode == 0, fetched.stderr
    from test_backup_fetch import start_restored
    restored = start_restored(primary, os.path.join(workdir, "fetched"), repo.full_env())
    assert restored.psql("select string_agg(v::text, ',' order by v) from canary") == "1,2,3,20"
    assert restored.psql("select timeline_id from pg_control_checkpoint()") == "3"
