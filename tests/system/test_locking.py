"""The repository lock (repolock.py): backup-push and `delete --confirm` on one repository,
at the same time, from real processes against real repositories (directory and SeaweedFS S3);
stale locks of dead or silent holders; two wal-push calls of one segment at once."""
import json
import os
import socket
import subprocess
import time
import uuid

import pytest

from conftest import WALRUS, walrus
from faultproxy import Rule, wait_for
from test_backup_push import pg_env
from test_faults_wal import local_bytes, stored_bytes
from test_wal_rules import push, queue_segments

LOCK = "locks/repository.json"


def start(args, env):
    cmd = ["runuser", "-u", "postgres", "--", WALRUS] + list(args)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def complete_backups(repo):
    res = walrus("backup-list", "--json", env=repo.full_env())
    assert res.returncode == 0, res.stderr
    return dict((b["name"], b) for b in json.loads(res.stdout))


def test_backup_push_and_retention_at_once_are_refused_or_wait_their_turn(repo, cluster_factory, workdir):
    # Archiving works only while the gate file exists: a backup-push (which waits for its stop
    # segment to be archived) then runs for as long as the test keeps the gate closed.
    gate = os.path.join(workdir, "archiving-allowed")
    cluster = cluster_factory(repo, archive=False, archive_mode="on", extra_env={"WALRUS_LOOKAHEAD": "0"},
                              archive_command="'test -e %s && %s wal-push %%p'" % (gate, WALRUS))

    def archiving(allowed):
        if allowed:
            open(gate, "w").close()
            cluster.psql("select pg_reload_conf()")  # wakes the archiver from its pause after failures
        elif os.path.exists(gate):
            os.unlink(gate)

    env = pg_env(repo, cluster)
    archiving(True)
    cluster.wait_archived(cluster.switch_wal())  # the repository knows the cluster
    archiving(False)
    first = start(["backup-push", cluster.datadir, "--name", "first"], env)
    wait_for(lambda: LOCK in repo.keys(), 30, "the first backup-push to take the lock")
    holder = json.loads(repo.read(LOCK))
    assert holder["operation"] == "backup-push of %s as first" % cluster.datadir
    assert holder["host"] == socket.gethostname() and holder["user"] == "postgres"

    refused = walrus("backup-push", cluster.datadir, "--name", "second", env=env)
    assert refused.returncode == 8, refused.stderr
    assert "is locked by backup-push of %s as first by postgres@%s pid %d" % (
        cluster.datadir, socket.gethostname(), holder["pid"]) in refused.stderr
    assert "its process is running" in refused.stderr
    retention = walrus("delete", "retain", "1", "--confirm", env=env)
    assert retention.returncode == 8 and "not starting delete retain --confirm" in retention.stderr
    assert walrus("delete", "retain", "1", env=env).returncode == 0  # a dry run deletes nothing: no lock
    assert first.poll() is None  # still waiting for its WAL: the refusals above were not luck
    archiving(True)
    assert finish(first)[0] == 0
    assert LOCK not in repo.keys()
    assert not any(k.startswith("basebackups/second/") for k in repo.keys())

    # With lock_wait, the second run waits for the first and then runs: serialised.
    archiving(False)
    third = start(["backup-push", cluster.datadir, "--name", "third"], env)
    wait_for(lambda: LOCK in repo.keys(), 30, "the third backup-push to take the lock")
    fourth = start(["backup-push", cluster.datadir, "--name", "fourth"], dict(env, WALRUS_LOCK_WAIT="120"))
    time.sleep(2)
    assert third.poll() is None and fourth.poll() is None  # fourth waits
    archiving(True)
    wait_for(lambda: third.poll() is not None, 120, "the third backup-push")
    wait_for(lambda: b"as fourth" in (repo.read(LOCK) if LOCK in repo.keys() else b""), 30,
             "the waiting fourth backup-push to take the lock")
    retained = walrus("delete", "retain", "1", "--confirm", env=dict(env, WALRUS_LOCK_WAIT="120"), timeout=180)
    assert finish(third)[0] == 0 and finish(fourth)[0] == 0
    assert retained.returncode == 0, retained.stderr
    kept = complete_backups(repo)
    # fourth started only after third had finished; retention ran after fourth, as it keeps only fourth
    assert list(kept) == ["fourth"], kept
    assert LOCK not in repo.keys()


def lock_object(**fields):
    body = {"format": "walrus-lock", "format_version": 1, "token": uuid.uuid4().hex, "operation": "backup-push of /x",
            "host": "db-elsewhere", "user": "postgres", "pid": 4242, "pid_start": "1", "pid_namespace": None,
            "boot_id": "0", "acquired_at": time.time(), "acquired_utc": "2026-12-02T00:00:00Z",
            "heartbeat_at": time.time()}
    body.update(fields)
    return body


def dead_local_process():
    """Lock fields of a process of this host that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    with open("/proc/sys/kernel/random/boot_id") as handle:
        boot_id = handle.read().strip()
    return {"host": socket.gethostname(), "pid": proc.pid, "boot_id": boot_id,
            "pid_namespace": os.readlink("/proc/self/ns/pid")}


def test_stale_locks_are_broken_and_live_ones_respected(fs_repo):
    env = fs_repo.full_env()

    def retention():
        return walrus("delete", "garbage", "--confirm", env=env)

    os.makedirs(os.path.join(fs_repo.url, "locks"))
    subprocess.run(["chown", "-R", "postgres:", fs_repo.url], check=True)
    # Another host's lock with a fresh heartbeat: respected, named in the message.
    fresh = lock_object()
    fs_repo.write(LOCK, json.dumps(fresh).encode())
    res = retention()
    assert res.returncode == 8 and "postgres@db-elsewhere pid 4242" in res.stderr, res.stderr
    assert json.loads(fs_repo.read(LOCK)) == fresh
    # ... silent for 11 minutes: stale; broken (a marker records it), then taken and released.
    silent = lock_object(heartbeat_at=time.time() - 660)
    fs_repo.write(LOCK, json.dumps(silent).encode())
    res = retention()
    assert res.returncode == 0, res.stderr
    assert LOCK not in fs_repo.keys()
    marker = json.loads(fs_repo.read("locks/broken-%s.json" % silent["token"]))
    assert "heartbeat is 660 s old" in marker["reason"] or "heartbeat is 66" in marker["reason"]
    # A process of this host that is gone (kill -9, crash): broken at once.
    dead = lock_object(**dead_local_process())
    fs_repo.write(LOCK, json.dumps(dead).encode())
    assert retention().returncode == 0 and LOCK not in fs_repo.keys()
    # ... even when the one who started to break it died too, before deleting it.
    dead = lock_object(**dead_local_process())
    fs_repo.write(LOCK, json.dumps(dead).encode())
    fs_repo.write("locks/broken-%s.json" % dead["token"],
                  json.dumps({"broken_by": lock_object(**dead_local_process()), "reason": "test"}).encode())
    assert retention().returncode == 0 and LOCK not in fs_repo.keys()
    # Something under the lock's name that is not a walrus lock: respected until it is old.
    fs_repo.write(LOCK, b"\x00garbage")
    res = retention()
    assert res.returncode == 8 and "unreadable lock object" in res.stderr, res.stderr
    os.utime(os.path.join(fs_repo.url, LOCK), (time.time() - 700, time.time() - 700))
    assert retention().returncode == 0 and LOCK not in fs_repo.keys()


@pytest.mark.timeout(120)
def test_two_wal_push_of_one_segment_at_once_both_succeed_with_one_intact_object(
        cluster_factory, proxied_repo, proxy, workdir):
    cluster = cluster_factory(proxied_repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, 3)
    env = proxied_repo.full_env(WALRUS_LOOKAHEAD="0")
    assert push(cluster, names[0], env).returncode == 0
    for name, rules in ((names[1], [Rule("stall", methods=["PUT"], path=names[1], nth=1, seconds=2)]),
                        (names[2], [Rule("stall", methods=["PUT"], path=names[2], every=True, limit=2, seconds=1)])):
        # 1: the first upload is held back while the second stores the segment, then arrives;
        # 2: both uploads are held back together and reach the server at the same moment.
        proxy.set_rules(rules)
        cmd = ["wal-push", os.path.join("pg_wal", name)]
        procs = [subprocess.Popen(["runuser", "-u", "postgres", "--", WALRUS] + cmd, env=env, cwd=cluster.datadir,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _n in range(2)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        assert [r[0] for r in results] == [0, 0], results
        assert rules[0].fired
        assert stored_bytes(proxied_repo, name, workdir) == local_bytes(cluster, name)
        assert [k for k in proxied_repo.keys() if name in k] == ["wal/00000001/" + name]
