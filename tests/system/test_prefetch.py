"""wal-fetch prefetch against real archived segments: later calls are served from the
background worker's files, never for the wrong timeline, and leftovers are never trusted."""
import os
import signal
import time

from conftest import WALRUS, walrus
from test_wal_rules import push, queue_segments
from tools.pgcluster import as_postgres, chown_postgres
from walrus import prefetch


def wait_for(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_prefetch_serves_next_segments_and_respects_timelines(repo, cluster_factory, workdir):
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, 6)
    assert push(cluster, names[0], repo.full_env(WALRUS_LOOKAHEAD="16")).returncode == 0
    # The background pusher stores the others; prefetch stops at the first segment not archived yet.
    assert wait_for(lambda: all("wal/00000001/" + n in repo.keys() for n in names), timeout=60)
    originals = dict((n, open(os.path.join(cluster.datadir, "pg_wal", n), "rb").read()) for n in names)

    restore = os.path.join(workdir, "restore")
    os.makedirs(os.path.join(restore, "pg_wal"))
    for path in (restore, os.path.join(restore, "pg_wal")):
        chown_postgres(path)
    env = repo.full_env(WALRUS_PREFETCH="3")
    dest = os.path.join("pg_wal", "RECOVERYXLOG")
    dest_abs = os.path.join(restore, dest)
    pdir_base = os.path.join(restore, "pg_wal", "walrus", "prefetch")

    res = walrus("wal-fetch", names[0], dest, env=env, cwd=restore)
    assert res.returncode == 0, res.stderr
    assert open(dest_abs, "rb").read() == originals[names[0]]
    (tag,) = os.listdir(pdir_base)  # one directory per repository
    pdir = os.path.join(pdir_base, tag)
    assert wait_for(lambda: all(os.path.exists(os.path.join(pdir, n)) for n in names[1:4]))
    assert not os.path.exists(os.path.join(pdir, names[4])), "depth 3: no more than 3 ahead"

    # Served from the prefetch directory, through the light fast path.
    python = os.path.join(os.path.dirname(WALRUS), "python")
    out = as_postgres([python, "-X", "importtime", "-c", "import sys; from walrus.cli import main; sys.exit(main())",
                       "wal-fetch", names[1], dest], env=env, cwd=restore)
    assert "boto3" not in out.stderr and "walrus.storage" not in out.stderr
    assert open(dest_abs, "rb").read() == originals[names[1]]
    assert not os.path.exists(os.path.join(pdir, names[1]))
    # The worker keeps the window full as files are consumed.
    assert wait_for(lambda: os.path.exists(os.path.join(pdir, names[4])))

    # Another timeline's segment of the same number is never served from the prefetch directory.
    other_tli = "00000002" + names[2][8:]
    res = walrus("wal-fetch", other_tli, dest, env=env, cwd=restore)
    assert res.returncode == 1
    assert os.path.exists(os.path.join(pdir, names[2]))
    assert open(dest_abs, "rb").read() == originals[names[1]]

    # A worker that died leaves files behind: they are not trusted, and the next worker wipes them.
    pid = int(open(os.path.join(pdir, ".window")).read().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with open(os.path.join(pdir, names[3]), "wb") as handle:
        handle.write(b"garbage")
    res = walrus("wal-fetch", names[3], dest, env=env, cwd=restore)
    assert res.returncode == 0, res.stderr
    assert open(dest_abs, "rb").read() == originals[names[3]]
    assert wait_for(lambda: os.path.exists(os.path.join(pdir, names[4])))
    assert not os.path.exists(os.path.join(pdir, names[2])), "the new worker wiped the old worker's leftovers"

    # At the end of the archive the worker stops by itself and removes what was not consumed.
    for name in names[4:]:
        assert walrus("wal-fetch", name, dest, env=env, cwd=restore).returncode == 0
        assert open(dest_abs, "rb").read() == originals[name]
    assert wait_for(lambda: not os.path.exists(os.path.join(pdir, ".window")), timeout=prefetch.LINGER_SECONDS + 20)


def fetch_light(env, cwd, name, dest):
    """wal-fetch with -X importtime: (exit code, whether the storage backends were imported)."""
    python = os.path.join(os.path.dirname(WALRUS), "python")
    res = as_postgres([python, "-X", "importtime", "-c", "import sys; from walrus.cli import main; sys.exit(main())",
                       "wal-fetch", name, dest], env=env, cwd=cwd, check=False)
    return res.returncode, "boto3" in res.stderr or "walrus.storage" in res.stderr


def test_live_worker_answers_missing_files_and_backup_label_starts_prefetch(repo, cluster_factory, workdir):
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, 3)
    assert push(cluster, names[0], repo.full_env(WALRUS_LOOKAHEAD="16")).returncode == 0
    assert wait_for(lambda: all("wal/00000001/" + n in repo.keys() for n in names), timeout=60)
    originals = dict((n, open(os.path.join(cluster.datadir, "pg_wal", n), "rb").read()) for n in names)

    # A restored data directory whose recovery starts at names[0] (backup_label, recovery.signal).
    restore = os.path.join(workdir, "restore")
    os.makedirs(os.path.join(restore, "pg_wal"))
    with open(os.path.join(restore, "backup_label"), "w") as handle:
        handle.write("START WAL LOCATION: 0/0 (file %s)\nCHECKPOINT LOCATION: 0/0\n" % names[0])
    open(os.path.join(restore, "recovery.signal"), "w").close()
    for path in (restore, os.path.join(restore, "pg_wal")):
        chown_postgres(path)
    env = repo.full_env(WALRUS_PREFETCH="4")
    dest = os.path.join("pg_wal", "RECOVERYXLOG")
    dest_abs = os.path.join(restore, dest)
    pdir_base = os.path.join(restore, "pg_wal", "walrus", "prefetch")

    # Recovery first asks for the next timeline's history file: not archived, and prefetch starts
    # at the backup's start segment, so that the first segment is served from the prefetch directory.
    assert walrus("wal-fetch", "00000002.history", dest, env=env, cwd=restore).returncode == 1
    (tag,) = os.listdir(pdir_base)
    pdir = os.path.join(pdir_base, tag)
    assert wait_for(lambda: all(os.path.exists(os.path.join(pdir, n)) for n in names))
    for name in names:
        assert fetch_light(env, restore, name, dest) == (0, False)
        assert open(dest_abs, "rb").read() == originals[name]

    # The archive ends after names[-1]: the lingering worker says "not there" to the segment after
    # it and to the history file, without the foreground opening the repository.
    after = "%s%08X" % (names[-1][:16], int(names[-1][16:], 16) + 1)
    assert fetch_light(env, restore, after, dest) == (1, False)
    assert fetch_light(env, restore, "00000002.history", dest) == (1, False)
    assert not [e for e in os.listdir(pdir) if e.startswith((prefetch.ASK_PREFIX, prefetch.ABSENT_PREFIX))]

    # A segment archived later is "present": the foreground fetches it (a standby's next segment).
    (later,) = queue_segments(cluster, 1)
    assert later == after
    assert push(cluster, later, repo.full_env()).returncode == 0
    code, _heavy = fetch_light(env, restore, later, dest)
    assert code == 0
    assert open(dest_abs, "rb").read() == open(os.path.join(cluster.datadir, "pg_wal", later), "rb").read()
