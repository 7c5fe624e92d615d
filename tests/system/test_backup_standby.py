"""A base backup taken from a hot standby: the standby reads its own files, the primary
archives the stop point's segment, and the backup restores to a consistent cluster."""
import os
import threading

from conftest import start_with_env, walrus
from test_backup_fetch import backup_push, start_restored
from tools.pgcluster import as_postgres
from walhelpers import snapshot


def test_backup_from_a_streaming_standby_restores(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 100)")
    standby_dir = os.path.join(workdir, "standby")
    as_postgres([primary.bin("pg_basebackup"), "-h", primary.host, "-p", str(primary.port), "-U", "postgres",
                 "-D", standby_dir, "-X", "stream", "-c", "fast", "-R"])
    from tools.pgcluster import Cluster
    standby = Cluster(standby_dir, bin_dir=primary.bin_dir)
    standby.configure(port=standby.port, archive_mode="on")  # on a standby, 'on' does not archive: the primary does
    standby.env = repo.full_env()
    start_with_env(standby)

    # The stop point's segment reaches the repository only when the primary switches to the next one.
    stop = threading.Event()

    def keep_switching():
        while not stop.wait(0.5):
            primary.psql("insert into canary values (0); select pg_switch_wal()")
    switcher = threading.Thread(target=keep_switching)
    switcher.start()
    try:
        sentinel = backup_push(standby, repo.full_env(), "--name", "from-standby", "--archive-timeout", "120")
    finally:
        stop.set()
        switcher.join()
    assert sentinel["name"] == "from-standby"
    listed = walrus("backup-list", "--json", env=repo.full_env())
    assert '"from-standby"' in listed.stdout

    primary.psql("insert into canary select generate_series(1000, 1099)")
    expected = snapshot(primary)
    primary.wait_archived(primary.switch_wal())
    target = os.path.join(workdir, "restored")
    res = walrus("backup-fetch", "from-standby", target, env=repo.full_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    clone = start_restored(primary, target, repo.full_env())
    assert snapshot(clone) == expected
    clone.stop()
    standby.stop()
