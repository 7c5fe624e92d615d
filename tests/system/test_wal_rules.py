"""The WAL path's correctness rules, against real segments from a real cluster and real
repositories (local directory and SeaweedFS S3)."""
import os
import threading
import time

import pytest

from conftest import WALRUS, make_s3_repo, walrus
from tools.pgcluster import as_postgres


def queue_segments(cluster, count):
    """Make `count` complete segments wait as .ready (archive_command fails meanwhile)."""
    names = []
    for i in range(count):
        cluster.psql("create table if not exists filler(v text); insert into filler select md5(g::text) from generate_series(1, 2000) g")
        names.append(cluster.switch_wal())
    status = os.path.join(cluster.datadir, "pg_wal", "archive_status")
    deadline = time.time() + 30
    while time.time() < deadline:
        if all(os.path.exists(os.path.join(status, n + ".ready")) for n in names):
            return names
        time.sleep(0.1)
    raise AssertionError("segments not marked .ready: %s" % os.listdir(status))


@pytest.fixture
def queued(cluster_factory, repo):
    """A cluster whose archiver is stuck (archive_command = false) with 5 segments queued."""
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    cluster.names = queue_segments(cluster, 5)
    return cluster


def state_dir(cluster):
    """The look-ahead record directory (one per repository) under pg_wal/walrus/push."""
    base = os.path.join(cluster.datadir, "pg_wal", "walrus", "push")
    deadline = time.time() + 10
    while not (os.path.isdir(base) and os.listdir(base)):
        assert time.time() < deadline, "no look-ahead state directory"
        time.sleep(0.05)
    (tag,) = os.listdir(base)
    return os.path.join(base, tag)


def push(cluster, name, env, *extra):
    return walrus(*(list(extra) + ["wal-push", os.path.join("pg_wal", name)]), env=env, cwd=cluster.datadir)


def test_push_is_idempotent_and_never_overwrites(queued, repo):
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    name = queued.names[0]
    first = push(queued, name, env)
    assert first.returncode == 0, first.stderr
    key = "wal/00000001/" + name
    stored = repo.read(key)
    again = push(queued, name, env)
    assert again.returncode == 0 and again.stderr == ""

    # Same name, different content: refused, loudly, and the stored object is untouched.
    other_dir = os.path.join(os.path.dirname(queued.datadir), "other")
    os.makedirs(other_dir)
    segment = open(os.path.join(queued.datadir, "pg_wal", name), "rb").read()
    tampered = bytearray(segment)
    tampered[100000] ^= 0xFF
    with open(os.path.join(other_dir, name), "wb") as handle:
        handle.write(bytes(tampered))
    res = walrus("wal-push", os.path.join(other_dir, name), env=env, as_user="root")
    assert res.returncode == 5
    assert "different content" in res.stderr and name in res.stderr
    assert repo.read(key) == stored


def test_segment_from_another_cluster_is_refused(queued, repo, cluster_factory):
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    assert push(queued, queued.names[0], env).returncode == 0
    stranger = cluster_factory(repo, name="stranger", archive=False, archive_mode="on", archive_command="'/bin/false'")
    stranger_names = queue_segments(stranger, 1)
    before = repo.keys()
    res = push(stranger, stranger_names[0], env)
    assert res.returncode == 5
    assert "belongs to" in res.stderr and "refusing to mix clusters" in res.stderr
    assert repo.keys() == before


def test_malformed_and_missing_input_is_refused_with_a_clear_message(queued, repo, workdir):
    env = repo.full_env()
    bad = os.path.join(workdir, "00000001000000000000000G")
    open(bad, "w").close()
    res = walrus("wal-push", bad, env=env, as_user="root")
    assert res.returncode == 2 and "malformed WAL file name" in res.stderr
    res = walrus("wal-push", os.path.join(workdir, "000000010000000000000099"), env=env, as_user="root")
    assert res.returncode == 2 and "does not exist" in res.stderr
    # A file named like a segment whose content is not that segment.
    fake = os.path.join(workdir, "000000010000000000000042")
    with open(fake, "wb") as handle:
        handle.write(b"\0" * (16 << 20))
    res = walrus("wal-push", fake, env=env, as_user="root")
    assert res.returncode == 2 and "not a WAL segment" in res.stderr
    res = walrus("wal-fetch", "../etc/passwd", os.path.join(workdir, "x"), env=env)
    assert res.returncode == 2 and "malformed" in res.stderr
    res = walrus("wal-push", os.path.join(queued.datadir, "pg_wal", queued.names[0]), env={"PATH": os.environ["PATH"]},
                 as_user="root")
    assert res.returncode == 2 and "no repository given" in res.stderr
    assert not any(k.startswith("wal/") for k in repo.keys())
    # A directory repository is never created by a push (an unmounted disk must not be replaced).
    missing = os.path.join(workdir, "no-such-repo")
    res = walrus("wal-push", os.path.join(queued.datadir, "pg_wal", queued.names[0]),
                 env=repo.full_env(WALRUS_REPO=missing), as_user="root")
    assert res.returncode == 3 and "does not exist: create it" in res.stderr
    assert not os.path.exists(missing)


def test_lookahead_pushes_ready_segments_and_fast_path_stays_light(queued, repo):
    env = repo.full_env(WALRUS_LOOKAHEAD="16")
    names = queued.names
    res = push(queued, names[0], env)
    assert res.returncode == 0, res.stderr
    assert "wal/00000001/" + names[0] in repo.keys()
    # The background pusher stores the other .ready files and leaves a record for each.
    state = state_dir(queued)
    deadline = time.time() + 30
    while sorted(f for f in os.listdir(state) if not f.startswith(".")) != sorted(names[1:]):
        assert time.time() < deadline, os.listdir(state)
        time.sleep(0.05)
    keys = repo.keys()
    assert all("wal/00000001/" + n in keys for n in names), "look-ahead pushed every .ready segment"
    # PostgreSQL's own status files are left to PostgreSQL.
    status = os.listdir(os.path.join(queued.datadir, "pg_wal", "archive_status"))
    assert all(n + ".ready" in status for n in names)

    # The fast path: no boto3, no psycopg2, not even the engine's storage layer.
    python = os.path.join(os.path.dirname(WALRUS), "python")
    cmd = [python, "-X", "importtime", "-c", "import sys; from walrus.cli import main; sys.exit(main())",
           "wal-push", os.path.join("pg_wal", names[1])]
    out = as_postgres(cmd, env=env, cwd=queued.datadir)
    imported = out.stderr
    for heavy in ("boto3", "botocore", "psycopg2", "walrus.storage", "walrus.codec", "argparse"):
        assert heavy not in imported, heavy + " imported on the fast path"
    assert names[1] not in os.listdir(state)  # record consumed

    started = time.monotonic()
    for name in names[2:]:
        assert push(queued, name, env).returncode == 0
    per_call = (time.monotonic() - started) / len(names[2:])
    assert per_call < 1.0  # a behaviour check (no upload, no boto3), not a benchmark: see bench/
    assert [f for f in os.listdir(state) if not f.startswith(".")] == []


def records(state):
    return sorted(f for f in os.listdir(state) if not f.startswith(".") and ".tmp." not in f)


def test_pusher_takes_up_segments_that_become_ready_while_it_runs(queued, repo):
    env = repo.full_env(WALRUS_LOOKAHEAD="16")
    names = queued.names
    assert push(queued, names[0], env).returncode == 0
    state = state_dir(queued)
    # No other walrus call: the running pusher sees the new .ready files on its own.
    later = queue_segments(queued, 2)
    deadline = time.time() + 30
    while records(state) != sorted(names[1:] + later):
        assert time.time() < deadline, (records(state), later)
        time.sleep(0.05)
    keys = repo.keys()
    assert all("wal/00000001/" + n in keys for n in names + later)
    for name in names[1:] + later:  # and PostgreSQL's calls for them are record hits
        assert push(queued, name, env).returncode == 0
    assert records(state) == []


def test_pusher_failure_on_the_calling_file_is_reported_by_the_call(queued, repo, workdir):
    """The first call hands its own file to the pusher; if the pusher cannot store it (here:
    different content under that name), the call stores it itself and fails as it should."""
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    name = queued.names[0]
    assert push(queued, name, env).returncode == 0
    key = "wal/00000001/" + name
    stored = repo.read(key)
    pg_wal = os.path.join(workdir, "tampered", "pg_wal")
    os.makedirs(os.path.join(pg_wal, "archive_status"))
    tampered = bytearray(open(os.path.join(queued.datadir, "pg_wal", name), "rb").read())
    tampered[100000] ^= 0xFF
    with open(os.path.join(pg_wal, name), "wb") as handle:
        handle.write(bytes(tampered))
    open(os.path.join(pg_wal, "archive_status", name + ".ready"), "w").close()
    res = walrus("wal-push", os.path.join(pg_wal, name), env=repo.full_env(WALRUS_LOOKAHEAD="16"), as_user="root")
    assert res.returncode == 5 and "different content" in res.stderr, res.stderr
    assert repo.read(key) == stored
    assert os.path.isdir(os.path.join(pg_wal, "walrus", "push"))  # the pusher did run


def test_fast_path_refuses_a_record_when_the_file_changed(queued, repo):
    env = repo.full_env(WALRUS_LOOKAHEAD="16")
    names = queued.names
    assert push(queued, names[0], env).returncode == 0
    record = os.path.join(state_dir(queued), names[1])
    deadline = time.time() + 30
    while not os.path.exists(record):
        assert time.time() < deadline
        time.sleep(0.05)
    path = os.path.join(queued.datadir, "pg_wal", names[1])
    st = os.stat(path)
    with open(path, "r+b") as handle:  # the file changes after it was pushed ahead
        handle.seek(200000)
        handle.write(b"\x01\x02\x03")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    res = push(queued, names[1], env)
    assert res.returncode == 5 and "different content" in res.stderr


def test_concurrent_pushes_of_one_segment_both_succeed(queued, repo):
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    results = []
    threads = [threading.Thread(target=lambda: results.append(push(queued, queued.names[0], env))) for _n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]


def test_fetch_of_missing_files_is_quick_and_quiet(queued, repo, workdir):
    env = repo.full_env()
    assert push(queued, queued.names[0], env).returncode == 0
    for name in ("0000000100000000000000FE", "00000009.history", "000000010000000000000001.00000028.backup"):
        started = time.monotonic()
        res = walrus("wal-fetch", name, os.path.join(workdir, "dest"), env=env)
        assert (res.returncode, res.stdout, res.stderr) == (1, "", "")
        assert time.monotonic() - started < 5
        assert not os.path.exists(os.path.join(workdir, "dest"))


def test_fetch_failures_other_than_missing_say_what_is_wrong(queued, repo, workdir, seaweed):
    env = repo.full_env(WALRUS_LOOKAHEAD="0")
    name = queued.names[0]
    assert push(queued, name, env).returncode == 0
    dest = os.path.join(workdir, "dest")

    # Corrupt object: detected, named, nothing written.
    key = "wal/00000001/" + name
    repo.damage(key)
    res = walrus("wal-fetch", name, dest, env=env)
    assert res.returncode == 4 and key in res.stderr and "corrupt" in res.stderr
    assert not os.path.exists(dest)

    # A prefix or directory that is not a walrus repository must not look like an empty archive.
    # Storage errors are retried for fetch_retry_seconds (a missing file never is), then reported.
    wrong = repo.url + "-typo"
    started = time.monotonic()
    res = walrus("wal-fetch", name, dest, env=repo.full_env(WALRUS_REPO=wrong, WALRUS_FETCH_RETRY_SECONDS="3"))
    assert res.returncode == 3 and ("not a walrus repository" in res.stderr or "does not exist" in res.stderr)
    assert time.monotonic() - started > 2.5

    s3 = make_s3_repo(seaweed)
    no_retry = {"WALRUS_FETCH_RETRY_SECONDS": "0"}
    res = walrus("wal-fetch", name, dest, env=s3.full_env(WALRUS_REPO="s3://no-such-bucket-walrus/x", **no_retry))
    assert res.returncode == 3 and "bucket 'no-such-bucket-walrus' does not exist" in res.stderr
    res = walrus("wal-fetch", name, dest, env=s3.full_env(AWS_SECRET_ACCESS_KEY="wrong", **no_retry))
    assert res.returncode == 3 and "denied" in res.stderr
    assert "wrong" not in res.stderr  # secrets never printed
    res = walrus("wal-push", os.path.join("pg_wal", queued.names[1]), cwd=queued.datadir,
                 env=s3.full_env(AWS_ENDPOINT_URL_S3="http://127.0.0.1:9"))
    assert res.returncode == 3 and "cannot reach" in res.stderr


def test_check_reports_identity_and_matches_data_directory(queued, repo, cluster_factory):
    env = repo.full_env()
    res = walrus("check", env=env)
    assert res.returncode == 0 and "none yet" in res.stdout
    assert push(queued, queued.names[0], env).returncode == 0
    res = walrus("check", "--pgdata", queued.datadir, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    sysid = as_postgres([queued.bin("pg_controldata"), queued.datadir]).stdout
    identity_line = [line for line in res.stdout.splitlines() if line.startswith("identity:")][0]
    assert identity_line.split()[2].rstrip(",") in sysid
    other = cluster_factory(repo, name="other", archive=False)
    res = walrus("check", "--pgdata", other.datadir, env=env)
    assert res.returncode == 5 and "belongs to" in res.stdout  # the same code wal-push gives
    assert "walrus-test-secret" not in walrus("check", "--json", env=env).stdout
