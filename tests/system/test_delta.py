"""Delta backups against a real cluster, into real repositories (directory and SeaweedFS S3):
a full backup, pgbench writes, a delta, DDL (create, drop, truncate, vacuum full, a grown
table) and more writes, a second delta; the restore of the last delta equals the source at
that point, LATEST to a time between the deltas restores the first; a small change makes a
small delta; with the backup module, a chain longer than the limit becomes full."""
import json
import os

import time

from conftest import walrus
from tools.pgcluster import chown_postgres
from test_backup_fetch import archive_now, start_restored
from test_modules import collections_path, group_defaults, playbook  # noqa: F401  # pylint: disable=unused-import

TABLES_SQL = ("select string_agg(relname, ',' order by relname) from pg_class "
              "where relkind = 'r' and relnamespace = 'public'::regnamespace")


def fingerprint(cluster):
    """Every public table's row count and an order-independent hash of its rows."""
    tables = cluster.psql(TABLES_SQL).split(",")
    sums = ["(select count(*) || ':' || coalesce(sum(hashtext(t::text)::numeric), 0) from %s t)" % t for t in tables]
    return ",".join(tables) + "|" + cluster.psql("select " + " || '|' || ".join(sums))


def push(cluster, env, name, *extra):
    res = walrus("backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
                 "--pguser", "postgres", "--name", name, "--json", "--delta", *extra, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr


def test_delta_chain_restores_exactly_and_is_small(cluster_factory, repo, workdir):
    primary = cluster_factory(repo, autovacuum="off")
    env = repo.full_env()
    primary.pgbench("-i", "-s", "5", "-q")
    primary.psql("create table dropme(v int); insert into dropme select generate_series(1, 20000);"
                 "create table truncme(v int); insert into truncme select generate_series(1, 20000);"
                 "create table vf(v int, pad text); insert into vf select g, repeat('x', 200) from generate_series(1, 20000) g;"
                 "create table grows(v int); insert into grows select generate_series(1, 1000)")
    ts_dir = os.path.join(workdir, "ts1")
    os.mkdir(ts_dir)
    chown_postgres(ts_dir)
    primary.psql("create tablespace ts1 location '%s'" % ts_dir)
    primary.psql("create table in_ts(v int, pad text) tablespace ts1;"
                 "insert into in_ts select g, repeat('y', 100) from generate_series(1, 30000) g")
    primary.psql("checkpoint")

    full, note = push(primary, env, "full")
    assert full["kind"] == "full" and full["base"] is None and full["chain"] == []
    assert "full backup instead of a delta" in note and "no complete backup" in note

    # 1% of pgbench_accounts' rows, contiguous: a delta of a few pages.
    primary.psql("update pgbench_accounts set abalance = abalance + 1 where aid <= 5000")
    primary.psql("update in_ts set pad = 'changed' where v <= 100")
    d1, note = push(primary, env, "d1")
    assert (d1["kind"], d1["base"], d1["chain"]) == ("delta", "full", ["full"]), note
    assert d1["stored_size"] < 0.25 * full["stored_size"], (d1["stored_size"], full["stored_size"])
    assert d1["delta"]["unchanged_files"] > 100 and d1["delta"]["pages_stored"] > 0
    after_d1 = fingerprint(primary)
    time.sleep(1.1)
    target_time = primary.psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    time.sleep(1.1)

    dropped = primary.psql("select pg_relation_filepath('dropme')")
    vf_before = primary.psql("select pg_relation_filepath('vf')")
    primary.pgbench("-n", "-t", "300")
    for sql in ("create table created(v text); insert into created select md5(g::text) from generate_series(1, 5000) g",
                "drop table dropme", "truncate truncme", "insert into truncme values (7)",
                "delete from vf where v % 2 = 0", "vacuum full vf",
                "insert into grows select generate_series(1001, 60000)", "delete from grows where v < 500", "vacuum grows"):
        primary.psql(sql)
    assert primary.psql("select pg_relation_filepath('vf')") != vf_before
    d2, note = push(primary, env, "d2")
    expected = fingerprint(primary)
    assert (d2["kind"], d2["base"], d2["chain"]) == ("delta", "d1", ["full", "d1"]), note
    # Changes after the backup that the restore (to the backup's consistency point) must not show.
    primary.psql("insert into created values ('after'); update pgbench_accounts set abalance = 0")

    target = os.path.join(workdir, "restored")
    oid = primary.psql("select oid from pg_tablespace where spcname = 'ts1'")
    res = walrus("backup-fetch", "d2", target, "--target-immediate", "--target-action", "promote", "--json",
                 "--tablespace-map", "%s=%s" % (oid, os.path.join(workdir, "ts1-restored")), env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["name"] == "d2"
    assert not os.path.exists(os.path.join(target, dropped)), "a dropped relation's file came back"
    assert not os.path.exists(os.path.join(target, vf_before))
    clone = start_restored(primary, target, env)
    try:
        assert fingerprint(clone) == expected
        assert clone.psql("select count(*) from truncme") == "1"
    finally:
        clone.stop(mode="immediate")

    # LATEST with a time before d2 takes d1 (a chain of two) and recovers to that time.
    archive_now(primary)
    target = os.path.join(workdir, "pitr")
    res = walrus("backup-fetch", "LATEST", target, "--target-time", target_time, "--target-action", "promote",
                 "--tablespace-map", "%s=%s" % (oid, os.path.join(workdir, "ts1-pitr")), "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["name"] == "d1"
    clone = start_restored(primary, target, env)
    try:
        assert fingerprint(clone) == after_d1
    finally:
        clone.stop(mode="immediate")

    listing = json.loads(walrus("backup-list", "--json", env=env, check=True).stdout)
    assert [(b["name"], b.get("kind"), b.get("base"), b.get("chain")) for b in listing] == [
        ("full", "full", None, []), ("d1", "delta", "full", ["full"]), ("d2", "delta", "d1", ["full", "d1"])]


def test_backup_module_takes_a_delta(fs_repo, cluster_factory, playbook):
    cluster = cluster_factory(fs_repo)
    cluster.pgbench("-i", "-s", "1", "-q")
    task = {"walrus.postgres.backup": {"datadir": cluster.datadir, "pg_host": cluster.host, "pg_port": cluster.port,
                                       "pg_user": "postgres", "delta": True, "delta_max_chain": 1}}
    (first,) = playbook.run([task], {}, group_defaults(fs_repo))
    assert first["changed"] and first["backup"]["kind"] == "full" and "no complete backup" in first["backup"]["note"]
    cluster.psql("update pgbench_accounts set abalance = 1 where aid <= 1000")
    (second,) = playbook.run([task], {}, group_defaults(fs_repo))
    backup = second["backup"]
    assert (backup["kind"], backup["base"], backup["chain"]) == ("delta", first["backup"]["name"], [first["backup"]["name"]])
    assert backup["stored_size"] < first["backup"]["stored_size"] / 4
    (third,) = playbook.run([task], {}, group_defaults(fs_repo))  # a second delta would exceed delta_max_chain 1
    assert third["backup"]["kind"] == "full" and "--delta-max-chain 1" in third["backup"]["note"]
