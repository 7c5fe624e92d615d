"""A backup of a database that moves underneath it: while backup-push reads the data directory
(slowed down by --max-read-rate so that the churn overlaps the whole read), one session creates,
fills, extends, truncates (DELETE + VACUUM), TRUNCATEs, VACUUM FULLs and drops tables, and
pgbench writes. The backup completes, and restored to a restore point taken afterwards it is a
consistent cluster: pg_amcheck finds nothing, and every table that survived equals the source's."""
import os
import threading

from test_backup_fetch import backup_push
from walhelpers import restore_and_check

MB = 1000 * 1000
CHURN_SQL = """
create table churn_{i}(id int primary key, v text);
insert into churn_{i} select g, md5(g::text) from generate_series(1, 20000) g;
insert into churn_{i} select g, repeat(md5(g::text), 4) from generate_series(20001, 30000) g;
delete from churn_{i} where id > 5000;
vacuum churn_{i};
truncate churn_{prev2};
insert into churn_{prev2} select g, 'again' from generate_series(1, 3000) g;
vacuum full churn_{prev};
drop table if exists churn_{prev3};
"""


def _fingerprint(cluster):
    tables = cluster.psql("select string_agg(relname, ',' order by relname) from pg_class "
                          "where relkind = 'r' and (relname like 'churn_%' or relname like 'pgbench_%')")
    out = {}
    for name in (tables or "").split(","):
        if name:
            out[name] = cluster.psql("select count(*) || ':' || coalesce(md5(string_agg(t::text, ',' order by t::text)), '') "
                                     "from %s t" % name)
    return out


def test_backup_of_a_moving_database_restores_consistent(cluster_factory, fs_repo, workdir):
    primary = cluster_factory(fs_repo)
    primary.pgbench("-i", "-s", "2", "-q")
    primary.psql("create extension amcheck")
    for i in range(3):
        primary.psql("create table churn_%d(id int primary key, v text); "
                     "insert into churn_%d select g, 'seed' from generate_series(1, 1000) g" % (i, i))
    env = fs_repo.full_env()
    size_mb = int(primary.psql("select sum(pg_database_size(oid)) from pg_database")) / MB

    stop = threading.Event()
    errors = []

    def churn():
        i = 3
        try:
            while not stop.is_set():
                for statement in CHURN_SQL.format(i=i, prev=i - 1, prev2=i - 2, prev3=i - 3).split(";"):
                    if statement.strip():  # one at a time: psql -c runs several in one transaction
                        primary.psql(statement)
                i += 1
        except Exception as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=churn),
               threading.Thread(target=primary.pgbench, args=("-n", "-c", "2", "-j", "2", "-T", "12"))]
    for thread in threads:
        thread.start()
    try:
        # About 6 s of reading: the churn and pgbench run during the whole copy.
        sentinel = backup_push(primary, env, "--jobs", "3", "--part-size-mb", "16",
                               "--max-read-rate", "%.2f" % (size_mb / 6.0))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert sentinel["parts"] >= 2
    assert int(primary.psql("select count(*) from pg_class where relname like 'churn_%' and relkind = 'r'")) >= 3

    primary.psql("select pg_create_restore_point('after-churn')")
    expected = _fingerprint(primary)
    primary.wait_archived(primary.switch_wal())

    restore_and_check(primary, env, os.path.join(workdir, "restored"), "after-churn", _fingerprint, expected)
