"""backup-push and backup-fetch under injected S3 faults (faultproxy.py in front of the real
SeaweedFS), kill -9 of wal-push, backup-push and backup-fetch at seeded random moments, and a
restore target that runs out of space (a small tmpfs). What must hold: a backup has a sentinel
only when it is whole; a failed or killed restore leaves no recovery.signal; a rerun succeeds."""
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import WALRUS, walrus
from faultproxy import Rule
from test_backup_fetch import start_restored
from test_backup_push import codec, pg_env
from test_faults_wal import local_bytes, stored_bytes
from test_wal_rules import queue_segments
from tools.pgcluster import chown_postgres

PART = r"/basebackups/[^/]+/part-"
SIGNALS = ("recovery.signal", "standby.signal")


def direct(repo, **extra):
    """The repository's environment without the proxy (to check what is really stored)."""
    return repo.full_env(AWS_ENDPOINT_URL_S3=repo.server.endpoint, **extra)


def fill(cluster):
    cluster.psql("create table t(id int primary key, v text); insert into t select g, md5(g::text) "
                 "from generate_series(1, 50000) g")


def backup_keys(repo, name):
    return [k for k in repo.keys() if k.startswith("basebackups/%s/" % name)]


def no_signal(target):
    return not any(os.path.exists(os.path.join(target, s)) for s in SIGNALS)


def test_backup_push_and_fetch_retry_through_faults_and_restore_the_same_data(
        cluster_factory, proxied_repo, proxy, workdir):
    cluster = cluster_factory(proxied_repo)
    fill(cluster)
    env = pg_env(proxied_repo, cluster)
    push_rules = [
        Rule("drop_response", methods=["PUT"], path="/locks/repository.json", nth=1),
        Rule("drop_response", methods=["PUT"], path=PART + "00001", nth=1),
        # part 2: reset, then (its retry) a 500, then the last of its 3 attempts stores it
        Rule("reset_request", methods=["PUT"], path=PART + "00002", nth=1),
        Rule("error", methods=["PUT"], path=PART + "00002", nth=1, status=500, code="InternalError"),
        Rule("error", methods=["PUT"], path="/manifest.json", nth=1),
        Rule("drop_response", methods=["PUT"], path="/sentinel.json", nth=1),
    ]
    proxy.set_rules(push_rules)
    res = walrus("backup-push", cluster.datadir, "--name", "stormy", "--jobs", "2", env=env, timeout=180)
    assert res.returncode == 0, res.stderr
    assert all(rule.fired for rule in push_rules), [r for r in push_rules if not r.fired]
    proxy.clear()
    assert "locks/repository.json" not in proxied_repo.keys()
    verify = walrus("backup-verify", "stormy", env=direct(proxied_repo), timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    expected = cluster.psql("select count(*) || ':' || md5(string_agg(v, ',' order by id)) from t")

    fetch_rules = [
        Rule("error", methods=["GET"], path="/manifest.json", nth=1, status=500, code="InternalError"),
        Rule("truncate", methods=["GET"], path=PART + "00001", nth=1),
        Rule("reset_response", methods=["GET"], path=PART + "00002", nth=1),
        Rule("stall", methods=["GET"], path=PART, nth=1, seconds=5),  # a resumed (ranged) read, say
    ]
    proxy.set_rules(fetch_rules)
    target = os.path.join(workdir, "restored")
    res = walrus("backup-fetch", "stormy", target, "--jobs", "2", "--target-immediate", "--target-action", "promote",
                 env=proxied_repo.full_env(WALRUS_PREFETCH="0"), timeout=180)
    assert res.returncode == 0, res.stderr
    assert all(rule.fired for rule in fetch_rules), [r for r in fetch_rules if not r.fired]
    proxy.clear()
    clone = start_restored(cluster, target, proxied_repo.full_env())
    try:
        assert clone.psql("select count(*) || ':' || md5(string_agg(v, ',' order by id)) from t") == expected
    finally:
        clone.stop(mode="immediate")


def test_backup_push_and_fetch_that_cannot_finish_fail_clearly_and_leave_nothing_usable(
        cluster_factory, proxied_repo, proxy, workdir):
    cluster = cluster_factory(proxied_repo)
    env = pg_env(proxied_repo, cluster)
    assert walrus("backup-push", cluster.datadir, "--name", "good", env=env, timeout=120).returncode == 0

    proxy.set_rules([Rule("error", methods=["PUT"], path="/sentinel.json", every=True)])
    res = walrus("backup-push", cluster.datadir, "--name", "nosentinel", env=env, timeout=120)
    assert res.returncode == 3 and "sentinel.json" in res.stderr and "SlowDown" in res.stderr, res.stderr
    keys = backup_keys(proxied_repo, "nosentinel")
    assert keys and "basebackups/nosentinel/sentinel.json" not in keys
    assert "locks/repository.json" not in proxied_repo.keys()  # released on failure too
    listed = walrus("backup-list", env=direct(proxied_repo))
    assert "nosentinel" not in listed.stdout and "good" in listed.stdout

    proxy.set_rules([Rule("error", methods=["GET"], path=PART, every=True, status=500, code="InternalError")])
    target = os.path.join(workdir, "restore-a")
    res = walrus("backup-fetch", "good", target, env=proxied_repo.full_env(), timeout=120)
    assert res.returncode == 3 and "INCOMPLETE" in res.stderr and "InternalError" in res.stderr, res.stderr
    assert no_signal(target)

    proxy.set_rules([Rule("truncate", methods=["GET"], path=PART, every=True)])
    target = os.path.join(workdir, "restore-b")
    res = walrus("backup-fetch", "good", target, env=proxied_repo.full_env(), timeout=120)
    assert res.returncode == 3 and "INCOMPLETE" in res.stderr and "reading the body" in res.stderr, res.stderr
    assert no_signal(target)


def run_and_kill(args, env, delay, cwd=None):
    """Start walrus as the postgres user, SIGKILL its process group after `delay` s.
    Returns the exit code if it finished first, else None."""
    cmd = ["runuser", "-u", "postgres", "--", WALRUS] + list(args)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return None


def every_object_decodes(repo, keys):
    """A killed upload must never leave a partial object: each one decodes (length and SHA-256
    of its trailer check out), so it is whole."""
    for key in keys:
        codec.decode(repo.read(key), key)


@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_then_a_rerun_succeeds_and_nothing_partial_counts(
        cluster_factory, proxied_repo, proxy, workdir):
    rng = random.Random(20261202)
    cluster = cluster_factory(proxied_repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, 4)
    env = proxied_repo.full_env(WALRUS_LOOKAHEAD="0")

    # wal-push: every upload stalls 2 s, the kill lands before, during or after it.
    proxy.set_rules([Rule("stall", methods=["PUT"], path="/wal/", every=True, seconds=2)])
    for name in names:
        code = run_and_kill(["wal-push", os.path.join("pg_wal", name)], env, rng.uniform(0.1, 3.0), cwd=cluster.datadir)
        stored = stored_bytes(proxied_repo, name, workdir)
        assert stored is None or stored == local_bytes(cluster, name), name
        assert code in (None, 0)
    proxy.clear()
    for name in names:
        assert walrus("wal-push", os.path.join("pg_wal", name), env=env, cwd=cluster.datadir).returncode == 0
        assert stored_bytes(proxied_repo, name, workdir) == local_bytes(cluster, name)

    # backup-push: archiving works now; every part upload stalls 1 s.
    cluster.configure(archive_command="'%s wal-push %%p'" % WALRUS)
    cluster.psql("select pg_reload_conf()")
    fill(cluster)
    benv = pg_env(proxied_repo, cluster)
    proxy.set_rules([Rule("stall", methods=["PUT"], path=PART, every=True, seconds=1)])
    killed = []
    for number in range(3):
        name = "killed-%d" % number
        code = run_and_kill(["backup-push", cluster.datadir, "--name", name, "--jobs", "2"], benv,
                            rng.uniform(0.5, 5.0))
        killed.append((name, code))
        keys = backup_keys(proxied_repo, name)
        if code is None:
            assert "basebackups/%s/sentinel.json" % name not in keys or walrus(
                "backup-verify", name, env=direct(proxied_repo)).returncode == 0
        every_object_decodes(proxied_repo, keys)
    proxy.clear()
    # The lock a killed run left names a dead process on this host: the rerun breaks it at once.
    started = time.monotonic()
    res = walrus("backup-push", cluster.datadir, "--name", "after-kill", env=benv, timeout=120)
    assert res.returncode == 0, "%s %s" % (killed, res.stderr)
    assert time.monotonic() - started < 60
    complete = walrus("backup-list", env=direct(proxied_repo)).stdout
    for name, code in killed:
        if "basebackups/%s/sentinel.json" % name not in proxied_repo.keys():
            assert name not in complete
    res = walrus("delete", "garbage", "--min-age", "0", "--confirm", env=direct(proxied_repo))
    assert res.returncode == 0, res.stderr
    assert all(backup_keys(proxied_repo, name) == [] or "basebackups/%s/sentinel.json" % name in proxied_repo.keys()
               for name, _code in killed)

    # backup-fetch: every part download stalls 1 s; a killed restore has no recovery.signal.
    proxy.set_rules([Rule("stall", methods=["GET"], path=PART, every=True, seconds=1)])
    fenv = proxied_repo.full_env(WALRUS_PREFETCH="0")
    for number in range(2):
        target = os.path.join(workdir, "restore-%d" % number)
        code = run_and_kill(["backup-fetch", "after-kill", target, "--jobs", "2"], fenv, rng.uniform(0.3, 4.0))
        assert code == 0 or no_signal(target), code
    proxy.clear()
    res = walrus("backup-fetch", "after-kill", target, "--overwrite", env=fenv, timeout=120)
    assert res.returncode == 0, res.stderr
    assert os.path.exists(os.path.join(target, "recovery.signal"))


@pytest.fixture
def small_disk(workdir):
    """A 12 MiB tmpfs owned by postgres, unmounted afterwards."""
    path = os.path.join(workdir, "small-disk")
    os.makedirs(path)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs", path], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); needs root with CAP_SYS_ADMIN" % res.stderr.strip())
    try:
        chown_postgres(path)
        yield path
    finally:
        subprocess.run(["umount", path], check=False)
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", path], check=False)


def test_restore_onto_a_full_disk_fails_clearly_and_leaves_nothing_startable(cluster_factory, fs_repo, small_disk):
    cluster = cluster_factory(fs_repo)
    fill(cluster)
    assert walrus("backup-push", cluster.datadir, "--name", "big", env=pg_env(fs_repo, cluster),
                  timeout=120).returncode == 0
    before = fs_repo.keys()
    target = os.path.join(small_disk, "restore")
    res = walrus("backup-fetch", "big", target, env=fs_repo.full_env(), timeout=120)
    assert res.returncode == 3, res.stderr
    assert "No space left on device" in res.stderr and "INCOMPLETE" in res.stderr, res.stderr
    assert no_signal(target)
    assert not os.path.exists(os.path.join(target, "global", "pg_control"))
    assert fs_repo.keys() == before
