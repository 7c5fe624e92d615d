"""A WAL segment that is archived but cannot be read must stop an archive recovery, not end it:
PostgreSQL takes any restore_command code below 126 for "no such file" and would promote without
that segment and everything after it. Real PostgreSQL, a real directory repository."""
import os
import subprocess

from conftest import walrus
from test_backup_fetch import archive_now, backup_push
from tools.pgcluster import Cluster, as_postgres, free_port


def test_a_corrupt_segment_stops_recovery_and_a_repaired_one_lets_it_finish(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    env = fs_repo.full_env()
    primary.psql("create table t(v int)")
    backup = backup_push(primary, env)
    primary.psql("insert into t select generate_series(1, 1000)")
    damaged = primary.psql("select pg_walfile_name(pg_switch_wal())")  # the segment holding the first rows
    primary.psql("insert into t select generate_series(1001, 2000)")
    archive_now(primary)
    assert damaged > backup["stop_wal"]
    key = "wal/%s/%s" % (damaged[:8], damaged)
    good = fs_repo.read(key)
    fs_repo.damage(key)

    target = os.path.join(workdir, "restored")
    port = free_port()
    res = walrus("backup-fetch", "LATEST", target, "--set", "port=%d" % port, "--no-archiving", "--start",
                 "--pg-bindir", primary.bin_dir, "--wait-timeout", "120", env=env, timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "PostgreSQL did not start" in res.stderr and "stopping recovery here" in res.stderr, res.stderr
    assert "corrupt" in res.stderr and key in res.stderr
    control = as_postgres([primary.bin("pg_controldata"), target], env=dict(os.environ, LC_ALL="C")).stdout
    assert "in archive recovery" in control  # stopped, not promoted on an early end of the archive

    fs_repo.write(key, good)  # the repository repaired: start again, recovery resumes and finishes
    clone = Cluster(target, port=port, bin_dir=primary.bin_dir)
    clone.env = env
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", clone.bin("pg_ctl"), "-D", target, "-l", clone.logfile,
                        "-w", "-t", "120", "start"], env=env, check=True, capture_output=True)
        clone.wait_ready()
        assert clone.psql("select count(*) from t") == "2000"
    finally:
        clone.stop(mode="immediate")


def test_a_manual_fetch_keeps_the_usual_codes(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    env = fs_repo.full_env()
    name = primary.psql("select pg_walfile_name(pg_switch_wal())")
    primary.wait_archived(name)
    key = "wal/%s/%s" % (name[:8], name)
    fs_repo.damage(key)
    res = walrus("wal-fetch", name, os.path.join(workdir, "x"), env=env)
    assert res.returncode == 4 and "corrupt" in res.stderr
