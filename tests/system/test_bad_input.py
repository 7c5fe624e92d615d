"""Bad input that test_wal_rules.py does not cover yet: backup names that climb out of the
repository, are absolute, hold odd characters or do not exist, WAL names of the same kinds, and
a repository prefix with odd characters (which must simply work). Each bad call must exit with
a clear message and change nothing: not the repository, not the target directory."""
import os

from conftest import walrus
from test_backup_push import pg_env
from test_faults_wal import local_bytes
from test_wal_rules import queue_segments

BAD_BACKUP_NAMES = ["../x", "../../etc", "/etc/passwd", "a/b", "a b", "x\ny", "caf\u00e9", ".hidden", "%2e%2e"]
BAD_WAL_NAMES = ["/etc/passwd", "../000000010000000000000001", "000000010000000000000001/../../x",
                 "00000001000000000000000Z", "000000010000000000000001 ", "00000001.history/../x", "caf\u00e9"]


def backed_up(repo, cluster_factory):
    cluster = cluster_factory(repo)
    res = walrus("backup-push", cluster.datadir, "--name", "real", env=pg_env(repo, cluster), timeout=120)
    assert res.returncode == 0, res.stderr
    return cluster


def test_bad_backup_names_are_refused_and_change_nothing(fs_repo, cluster_factory, workdir):
    # Names are checked before the repository is read: the same code for a directory and S3
    # (test_a_repository_prefix_with_odd_characters_just_works asks S3 for a missing backup).
    cluster = backed_up(fs_repo, cluster_factory)
    env = fs_repo.full_env()
    before = fs_repo.keys()
    target = os.path.join(workdir, "target")
    for name in BAD_BACKUP_NAMES + ["nope"]:
        res = walrus("backup-fetch", name, target, env=env)
        assert res.returncode == 2, (name, res.returncode, res.stderr)
        assert ("is not a backup name" in res.stderr or "does not exist" in res.stderr), (name, res.stderr)
        assert not os.path.exists(target), name
    for name in ("../x", "/etc/passwd", "x\ny", "nope"):
        res = walrus("backup-verify", name, env=env)
        assert res.returncode == 2 and name.splitlines()[0] in res.stderr, (name, res.stderr)
        res = walrus("delete", "before", name, "--confirm", env=env)
        assert res.returncode != 0 and res.stderr.strip(), (name, res.stderr)
    for name in BAD_BACKUP_NAMES[:6]:
        res = walrus("backup-push", cluster.datadir, "--name", name, env=pg_env(fs_repo, cluster))
        assert res.returncode == 2 and "invalid backup name" in res.stderr, (name, res.stderr)
    res = walrus("backup-fetch", "nope", target, env=env)
    assert "available: real" in res.stderr
    assert fs_repo.keys() == before


def test_bad_wal_names_are_refused_and_write_nothing(repo, cluster_factory, workdir):
    cluster = backed_up(repo, cluster_factory)
    env = repo.full_env()
    before = repo.keys()
    dest = os.path.join(workdir, "dest")
    for name in BAD_WAL_NAMES:
        res = walrus("wal-fetch", name, dest, env=env)
        assert res.returncode == 2 and "malformed" in res.stderr, (name, res.returncode, res.stderr)
        assert not os.path.exists(dest)
    # wal-push takes a path: its last component must be a WAL file name; nothing else is stored.
    for path in ("/etc/passwd", os.path.join(cluster.datadir, "pg_wal", "..", "PG_VERSION")):
        res = walrus("wal-push", path, env=env)
        assert res.returncode == 2 and "malformed" in res.stderr, (path, res.stderr)
    assert repo.keys() == before


def test_a_repository_prefix_with_odd_characters_just_works(seaweed, cluster_factory, workdir):
    from conftest import make_s3_repo
    repo = make_s3_repo(seaweed)
    repo.url = repo.url.rsplit("/", 1)[0] + "/odd prefix+%25/caf\u00e9 #1;x=y"
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    (name,) = queue_segments(cluster, 1)
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    res = walrus("wal-push", os.path.join("pg_wal", name), env=env, cwd=cluster.datadir)
    assert res.returncode == 0, res.stderr
    keys = repo.keys()
    assert "wal/00000001/" + name in keys and "walrus-repository.json" in keys, keys
    dest = os.path.join(workdir, "fetched")
    res = walrus("wal-fetch", name, dest, env=repo.full_env(WALRUS_PREFETCH="0"))
    assert res.returncode == 0, res.stderr
    with open(dest, "rb") as handle:
        assert handle.read() == local_bytes(cluster, name)
    res = walrus("wal-verify", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    before = repo.keys()
    res = walrus("backup-fetch", "nope", os.path.join(workdir, "target"), env=env)
    assert res.returncode == 2 and "backup 'nope' does not exist" in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(workdir, "target")) and repo.keys() == before
