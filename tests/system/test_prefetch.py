"""wal-fetch prefetch against real archived segments: later calls are served from the
background worker's files, never for the wrong timeline, and leftovers are never trusted."""
import os
import signal
import time

from conftest import WALRUS, walrus
from test_wal_rules import push, queue_segments
from tools.pgcluster import as_postgres, chown_postgres
from walrus import prefetch, worker


def wait_for(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def archived_segments(repo, cluster_factory, count):
    """A new cluster with `count` WAL segments, all archived by one wal-push and its look-ahead
    pusher: (cluster, their names, {name: content})."""
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, count)
    assert push(cluster, names[0], repo.full_env(WALRUS_LOOKAHEAD="16")).returncode == 0
    # The background pusher stores the others.
    assert wait_for(lambda: all("wal/00000001/" + n in repo.keys() for n in names), timeout=60)
    return cluster, names, dict((n, open(os.path.join(cluster.datadir, "pg_wal", n), "rb").read()) for n in names)


class Recovering(object):
    """A data directory asking for WAL as PostgreSQL's recovery does, from inside it:
    `wal-fetch NAME pg_wal/RECOVERYXLOG`, with `env` (the repository, WALRUS_PREFETCH)."""

    def __init__(self, workdir, env, start_segment=None, existing=None):
        self.env = env
        self.dest = os.path.join("pg_wal", "RECOVERYXLOG")
        self.dir = existing or os.path.join(workdir, "restore")
        if existing:  # e.g. what backup-fetch restored
            return
        os.makedirs(os.path.join(self.dir, "pg_wal"))
        if start_segment:  # a restored backup (backup_label, recovery.signal) that starts there
            with open(os.path.join(self.dir, "backup_label"), "w") as handle:
                handle.write("START WAL LOCATION: 0/0 (file %s)\nCHECKPOINT LOCATION: 0/0\n" % start_segment)
            open(os.path.join(self.dir, "recovery.signal"), "w").close()
        for path in (self.dir, os.path.join(self.dir, "pg_wal")):
            chown_postgres(path)

    def fetch(self, name):
        return walrus("wal-fetch", name, self.dest, env=self.env, cwd=self.dir)

    def fetch_light(self, name):
        """wal-fetch with -X importtime: (exit code, whether the storage backends were imported)."""
        python = os.path.join(os.path.dirname(WALRUS), "python")
        res = as_postgres([python, "-X", "importtime", "-c", "import sys; from walrus.cli import main; sys.exit(main())",
                           "wal-fetch", name, self.dest], env=self.env, cwd=self.dir, check=False)
        return res.returncode, "boto3" in res.stderr or "walrus.storage" in res.stderr

    def fetched(self):
        with open(os.path.join(self.dir, self.dest), "rb") as handle:
            return handle.read()

    def prefetch_dir(self):
        """The prefetch worker's directory: one per repository, and one repository here."""
        base = os.path.join(self.dir, "pg_wal", "walrus", "prefetch")
        (tag,) = os.listdir(base)
        return os.path.join(base, tag)


def test_prefetch_serves_next_segments_and_respects_timelines(repo, cluster_factory, workdir):
    # Prefetch stops at the first segment not archived yet: all 6 are archived first.
    _cluster, names, originals = archived_segments(repo, cluster_factory, 6)
    recovering = Recovering(workdir, repo.full_env(WALRUS_PREFETCH="3"))

    res = recovering.fetch(names[0])
    assert res.returncode == 0, res.stderr
    assert recovering.fetched() == originals[names[0]]
    pdir = recovering.prefetch_dir()
    assert wait_for(lambda: all(os.path.exists(os.path.join(pdir, n)) for n in names[1:4]))
    assert not os.path.exists(os.path.join(pdir, names[4])), "depth 3: no more than 3 ahead"

    # Served from the prefetch directory, through the light fast path.
    assert recovering.fetch_light(names[1]) == (0, False)
    assert recovering.fetched() == originals[names[1]]
    assert not os.path.exists(os.path.join(pdir, names[1]))
    # The worker keeps the window full as files are consumed.
    assert wait_for(lambda: os.path.exists(os.path.join(pdir, names[4])))

    # Another timeline's segment of the same number is never served from the prefetch directory.
    other_tli = "00000002" + names[2][8:]
    assert recovering.fetch(other_tli).returncode == 1
    assert os.path.exists(os.path.join(pdir, names[2]))
    assert recovering.fetched() == originals[names[1]]

    # A worker that died leaves files behind: they are not trusted, and the next worker wipes them.
    pid = int(open(os.path.join(pdir, ".window")).read().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with open(os.path.join(pdir, names[3]), "wb") as handle:
        handle.write(b"garbage")
    res = recovering.fetch(names[3])
    assert res.returncode == 0, res.stderr
    assert recovering.fetched() == originals[names[3]]
    assert wait_for(lambda: os.path.exists(os.path.join(pdir, names[4])))
    assert not os.path.exists(os.path.join(pdir, names[2])), "the new worker wiped the old worker's leftovers"

    # At the end of the archive the worker stops by itself and removes what was not consumed.
    for name in names[4:]:
        assert recovering.fetch(name).returncode == 0
        assert recovering.fetched() == originals[name]
    assert wait_for(lambda: not os.path.exists(os.path.join(pdir, ".window")), timeout=prefetch.LINGER_SECONDS + 20)


def test_live_worker_answers_missing_files_and_backup_label_starts_prefetch(repo, cluster_factory, workdir):
    cluster, names, originals = archived_segments(repo, cluster_factory, 3)
    recovering = Recovering(workdir, repo.full_env(WALRUS_PREFETCH="4"), start_segment=names[0])

    # Recovery first asks for the next timeline's history file: not archived, and prefetch starts
    # at the backup's start segment, so that the first segment is served from the prefetch directory.
    assert recovering.fetch("00000002.history").returncode == 1
    pdir = recovering.prefetch_dir()
    assert wait_for(lambda: all(os.path.exists(os.path.join(pdir, n)) for n in names))
    for name in names:
        assert recovering.fetch_light(name) == (0, False)
        assert recovering.fetched() == originals[name]

    # The archive ends after names[-1]: the lingering worker says "not there" to the segment after
    # it and to the history file, without the foreground opening the repository.
    after = "%s%08X" % (names[-1][:16], int(names[-1][16:], 16) + 1)
    assert recovering.fetch_light(after) == (1, False)
    assert recovering.fetch_light("00000002.history") == (1, False)
    assert not [e for e in os.listdir(pdir) if e.startswith((prefetch.ASK_PREFIX, prefetch.ABSENT_PREFIX))]

    # At its end, recovery re-reads the segment that holds its last record, long consumed:
    # the lingering worker fetches it again rather than the foreground paying boto3's import.
    assert recovering.fetch_light(names[-1]) == (0, False)
    assert recovering.fetched() == originals[names[-1]]

    # A segment archived later (a standby's next segment) is fetched by the worker on request.
    (later,) = queue_segments(cluster, 1)
    assert later == after
    assert push(cluster, later, repo.full_env()).returncode == 0
    assert recovering.fetch_light(later) == (0, False)
    assert recovering.fetched() == open(os.path.join(cluster.datadir, "pg_wal", later), "rb").read()
    assert not [e for e in os.listdir(pdir) if e.startswith((prefetch.SERVED_PREFIX, prefetch.TMP_PREFIX))]


def test_backup_fetch_starts_prefetch_for_the_restored_directory(repo, cluster_factory, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env(WALRUS_PREFETCH="4")
    primary.pgbench("-i", "-s", "1", "-q")
    assert walrus("backup-push", primary.datadir, "--pghost", primary.host, "--pgport", str(primary.port),
                  env=env, timeout=300).returncode == 0
    primary.pgbench("-t", "200", "-n")
    primary.wait_archived(primary.switch_wal())

    # As the server's user: the worker is running before PostgreSQL starts, and holds the
    # backup's first segment, so that the first restore_command call only moves it into place.
    target = os.path.join(workdir, "restored")
    res = walrus("backup-fetch", "LATEST", target, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    recovering = Recovering(workdir, env, existing=target)
    pdir = recovering.prefetch_dir()
    assert worker.running(pdir)
    label = open(os.path.join(target, "backup_label")).read()
    first = label.split("(file ")[1].split(")")[0]
    assert wait_for(lambda: os.path.exists(os.path.join(pdir, first)))
    assert recovering.fetch_light("00000002.history") == (1, False)  # the live worker answers
    assert recovering.fetch_light(first) == (0, False)
    copy = os.path.join(workdir, "copy")
    os.mkdir(copy)
    chown_postgres(copy)
    assert walrus("wal-fetch", first, os.path.join(copy, first), env=repo.full_env(WALRUS_PREFETCH="0")).returncode == 0
    assert recovering.fetched() == open(os.path.join(copy, first), "rb").read()

    # As root (never the server's user), no worker starts: its files would lock PostgreSQL out.
    other = os.path.join(workdir, "as-root")
    res = walrus("backup-fetch", "LATEST", other, env=env, as_user="root", timeout=300)
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(os.path.join(other, "pg_wal", "walrus"))
