"""wal-push under injected S3 faults (faultproxy.py in front of the real SeaweedFS), with real
segments of a real PostgreSQL 15: each fault alone against one wal-push, then PostgreSQL's own
archiver through a storm of them. What must hold: wal-push exits 0 only when the segment is
stored; the archiver retries whatever failed; in the end every segment is in the archive with
exactly the bytes PostgreSQL wrote."""
import os

import pytest

from conftest import walrus
from faultproxy import Rule, wait_for
from test_wal_rules import push, queue_segments


def stored_bytes(repo, name, workdir):
    """The segment as `walrus wal-fetch` gives it back, read from SeaweedFS directly (no proxy);
    None when it is not archived."""
    if "wal/%s/%s" % (name[:8], name) not in repo.keys():
        return None
    dest = os.path.join(workdir, "fetched-" + name)
    env = repo.full_env(AWS_ENDPOINT_URL_S3=repo.server.endpoint, WALRUS_PREFETCH="0", WALRUS_FETCH_RETRY_SECONDS="0")
    res = walrus("wal-fetch", name, dest, env=env)
    assert res.returncode == 0, res.stderr
    with open(dest, "rb") as handle:
        data = handle.read()
    os.unlink(dest)
    return data


def local_bytes(cluster, name):
    with open(os.path.join(cluster.datadir, "pg_wal", name), "rb") as handle:
        return handle.read()


# (what is injected, the rules, expected exit code of wal-push); every rule fires at least once.
SINGLE_FAULTS = [
    ("503 SlowDown on the first upload", [Rule("error", methods=["PUT"], path="/wal/", nth=1)], 0),
    ("500 InternalError on two uploads in a row", [Rule("error", methods=["PUT"], path="/wal/", every=True, limit=2,
                                                        status=500, code="InternalError")], 0),
    ("reset while the request body is sent", [Rule("reset_request", methods=["PUT"], path="/wal/", nth=1)], 0),
    ("stored, but the reply is lost (retry meets If-None-Match)",
     [Rule("drop_response", methods=["PUT"], path="/wal/", nth=1)], 0),
    ("upload stalls 5 s (read timeout 3 s)", [Rule("stall", methods=["PUT"], path="/wal/", nth=1, seconds=5)], 0),
    ("identity read truncated mid-body", [Rule("truncate", methods=["GET"], path="walrus-repository", nth=1)], 0),
    ("identity read reset mid-body", [Rule("reset_response", methods=["GET"], path="walrus-repository", nth=1)], 0),
    ("every upload 503 (more than s3_max_attempts)", [Rule("error", methods=["PUT"], path="/wal/", every=True)], 3),
    ("every identity read 500", [Rule("error", methods=["GET", "HEAD"], path="walrus-repository", every=True,
                                      status=500, code="InternalError")], 3),
]


def test_each_fault_alone_wal_push_retries_or_fails_and_never_stores_a_wrong_segment(
        cluster_factory, proxied_repo, proxy, workdir):
    cluster = cluster_factory(proxied_repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, len(SINGLE_FAULTS) + 1)
    env = proxied_repo.full_env(WALRUS_LOOKAHEAD="0")
    assert push(cluster, names[0], env).returncode == 0  # the identity exists: later rules hit the WAL upload
    for (what, rules, expected), name in zip(SINGLE_FAULTS, names[1:]):
        proxy.set_rules(rules)
        res = push(cluster, name, env)
        proxy.clear()
        assert all(rule.fired for rule in rules), (what, rules)
        assert res.returncode == expected, (what, res.returncode, res.stderr)
        stored = stored_bytes(proxied_repo, name, workdir)
        if expected == 0:
            assert stored == local_bytes(cluster, name), what
        else:
            assert stored is None, what
            assert "S3" in res.stderr and ("SlowDown" in res.stderr or "InternalError" in res.stderr), res.stderr
            # the next try (PostgreSQL's archiver retries) succeeds once the storage is healthy
            assert push(cluster, name, env).returncode == 0
            assert stored_bytes(proxied_repo, name, workdir) == local_bytes(cluster, name)


def archiver_failures(cluster):
    return int(cluster.psql("select failed_count from pg_stat_archiver"))


def write_and_switch(cluster, rows=3000):
    cluster.psql("create table if not exists churn(v text); insert into churn select md5(g::text) "
                 "from generate_series(1, %d) g" % rows)
    return cluster.switch_wal()


@pytest.mark.timeout(240)
def test_archiver_retries_through_a_fault_storm_and_the_archive_is_complete_and_exact(
        cluster_factory, proxied_repo, proxy, workdir):
    # wal_keep_size keeps every segment in pg_wal, to compare it with what the archive holds.
    cluster = cluster_factory(proxied_repo, wal_keep_size="'1GB'")
    names = [write_and_switch(cluster)]
    cluster.wait_archived(names[0])

    # 1. The storage refuses every upload: every archive_command fails, PostgreSQL keeps the WAL.
    proxy.set_rules([Rule("error", methods=["PUT"], every=True)])
    names.append(write_and_switch(cluster))
    wait_for(lambda: archiver_failures(cluster) >= 2, 60, "the archiver to fail")

    # 2. A storm of mixed faults (seeded) while PostgreSQL writes and switches segments; the
    # look-ahead pusher and the archive_command calls both go through it.
    proxy.set_rules([
        Rule("drop_response", methods=["PUT"], path="/wal/", probability=0.25, seed=1),
        Rule("reset_request", methods=["PUT"], probability=0.15, seed=2),
        Rule("error", probability=0.15, seed=3),
        Rule("error", methods=["GET", "HEAD"], probability=0.15, status=500, code="InternalError", seed=4),
        Rule("truncate", methods=["GET"], probability=0.25, seed=5),
        Rule("reset_response", methods=["GET"], probability=0.15, seed=6),
        Rule("stall", probability=0.03, seconds=4, seed=7),
    ])
    for _round in range(10):
        names.append(write_and_switch(cluster))
    wait_for(lambda: len(set(entry[2] for entry in proxy.fired())) >= 5, 90, "the faults to fire")
    fired = sorted(set(entry[2] for entry in proxy.fired()))

    # 3. Healthy again: the archiver catches up (a new segment wakes it from its retry pause).
    proxy.clear()
    names.append(write_and_switch(cluster))
    cluster.wait_archived(names[-1], timeout=120)

    done = sorted(f[:-len(".done")] for f in os.listdir(os.path.join(cluster.datadir, "pg_wal", "archive_status"))
                  if f.endswith(".done") and len(f) == 24 + len(".done"))
    assert set(names) <= set(done)
    for name in done:
        assert stored_bytes(proxied_repo, name, workdir) == local_bytes(cluster, name), name
    verify = walrus("wal-verify", env=proxied_repo.full_env(AWS_ENDPOINT_URL_S3=proxied_repo.server.endpoint))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert archiver_failures(cluster) >= 2
    assert {"drop_response", "error", "truncate"} <= set(fired), fired
