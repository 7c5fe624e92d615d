"""`make demo`: continuous WAL archiving and point-in-time recovery with walrus, end to end.

A PostgreSQL 15 cluster archives its WAL through `walrus wal-push` into a local-directory
repository; `walrus backup-push` takes a base backup, we write more rows, mark a target, then
"accidentally" delete rows. `walrus backup-fetch` restores the backup into a second cluster, which
replays WAL fetched by `walrus wal-fetch` up to the target, and we prove it holds exactly what
the source held at the target.

Runs as root on a fresh Debian 12 machine after `make install`. Exits non-zero if anything
differs. Usage: .venv/bin/python tools/demo.py [--keep] [--scale N]
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.pgcluster import Cluster, as_postgres, chown_postgres, scratch_dir  # noqa: E402

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
WALRUS = os.path.join(VENV_BIN, "walrus")
TARGET_NAME = "walrus-demo-before-delete"
TABLES = ("demo_orders", "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")

STARTED = time.monotonic()


def say(message=""):
    print(message, flush=True)


def step(title):
    say()
    say("==> [%5.1fs] %s" % (time.monotonic() - STARTED, title))


def detail(message):
    say("    " + message)


def table_state(cluster):
    """Row count and an MD5 over every row, in a stable order, for each demo table."""
    state = {}
    for table in TABLES:
        order = "id" if table == "demo_orders" else "t::text"
        state[table] = cluster.psql(
            "select count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' order by %s), '')) from %s t"
            % (order, table))
    return state


def start_with_env(cluster, env):
    """pg_ctl start with `env`, so that archive_command and restore_command inherit it."""
    as_postgres([cluster.bin("pg_ctl"), "-D", cluster.datadir, "-l", cluster.logfile,
                 "-o", "-p %d" % cluster.port, "-w", "-t", "120", "start"], env=env)


def run_walrus(args, env):
    cmd = [WALRUS] + list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def repository_summary(repo):
    """Objects in the repository, read the way another tool would: the trailer's raw length."""
    from walrus import codec, walnames
    from walrus.storage.fs import FsStorage

    kinds, stored, raw, timelines = {}, 0, 0, set()
    identity = None
    for key, size in FsStorage(repo).list():
        if key == "walrus-repository.json":
            identity = key
            continue
        if not key.startswith("wal/"):
            continue
        name = walnames.parse(key.rsplit("/", 1)[1])
        kinds[name.kind] = kinds.get(name.kind, 0) + 1
        timelines.add(key.split("/")[1])
        with open(os.path.join(repo, *key.split("/")), "rb") as handle:
            handle.seek(-codec.TRAILER.size, os.SEEK_END)
            _magic, raw_size, _digest = codec.TRAILER.unpack(handle.read())
        stored += size
        raw += raw_size
    return identity, kinds, stored, raw, sorted(timelines)


def stop_prefetch_worker(cluster):
    """A wal-fetch prefetch worker may still be waiting for recovery to ask for more; end it."""
    from walrus import worker
    base = os.path.join(cluster.datadir, "pg_wal", "walrus", "prefetch")
    for tag in (os.listdir(base) if os.path.isdir(base) else ()):
        worker.stop(os.path.join(base, tag))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (clusters are stopped either way)")
    parser.add_argument("--scale", type=int, default=3, help="pgbench scale factor (default 3, about 300k rows)")
    args = parser.parse_args()

    if not os.access(WALRUS, os.X_OK):
        say("demo: %s is missing: run `make install` first (or `make demo`, which does)" % WALRUS)
        return 2

    say("walrus demo: continuous WAL archiving and point-in-time recovery (PostgreSQL 15, local-directory repository)")
    work = scratch_dir("walrus-demo-")
    chown_postgres(work)
    repo = os.path.join(work, "repo")
    os.mkdir(repo)
    chown_postgres(repo)
    conf = os.path.join(work, "walrus.conf")
    with open(conf, "w") as handle:
        handle.write("# walrus settings for the demo (a real host would use /etc/walrus/walrus.conf)\n"
                     "repo = %s\ncompression = lz4\n" % repo)
    os.chmod(conf, 0o600)
    chown_postgres(conf)
    # Only our config file: no WALRUS_* variables from the caller's shell.
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("WALRUS_"))
    env["WALRUS_CONFIG"] = conf

    source = Cluster(os.path.join(work, "source"))
    restored = None
    ok = False
    try:
        step("Scratch area %s (owned by postgres)" % work)
        detail("repository: %s (a local directory; s3://bucket/prefix works the same way)" % repo)
        detail("config:     %s (mode 0600, owner postgres): repo = %s" % (conf, repo))

        step("initdb the source cluster, port %d, archiving through walrus" % source.port)
        source.initdb()
        archive_command = "%s wal-push %%p" % WALRUS
        source.configure(wal_level="replica", archive_mode="on", archive_timeout="0",
                         archive_command="'%s'" % archive_command)
        detail("archive_mode = on")
        detail("archive_command = '%s'" % archive_command)
        detail("postmaster environment: WALRUS_CONFIG=%s" % conf)
        start_with_env(source, env)

        step("Write data: table demo_orders (10000 rows) and pgbench -i -s %d" % args.scale)
        source.psql("create table demo_orders (id bigint primary key, customer text not null, "
                    "amount numeric(10,2) not null, note text)")
        source.psql("insert into demo_orders select g, 'customer-' || (g % 97), (g % 1000) / 10.0, 'before backup' "
                    "from generate_series(1, 10000) g")
        source.pgbench("-i", "-q", "-s", str(args.scale))
        closed = source.switch_wal()
        source.wait_archived(closed)
        detail("segment switch; archived up to %s" % closed)
        check = run_walrus(["check", "--pgdata", source.datadir], env)
        for line in check.stdout.splitlines():
            detail("walrus check: " + line)
        if check.returncode != 0:
            raise RuntimeError("walrus check failed (%d): %s" % (check.returncode, check.stderr))

        step("Base backup with walrus backup-push")
        pg_env = dict(env, PGHOST=source.host, PGPORT=str(source.port), PGUSER="postgres")
        t0 = time.monotonic()
        pushed = run_walrus(["backup-push", source.datadir, "--name", "demo-base"], pg_env)
        if pushed.returncode != 0:
            raise RuntimeError("walrus backup-push failed (%d): %s" % (pushed.returncode, pushed.stderr))
        detail("walrus backup-push %s --name demo-base (%.1fs)" % (source.datadir, time.monotonic() - t0))
        detail(pushed.stdout.strip())

        step("More writes after the backup (they must come back from WAL)")
        source.psql("insert into demo_orders select g, 'customer-' || (g % 97), (g % 1000) / 10.0, 'after backup' "
                    "from generate_series(10001, 15000) g")
        source.pgbench("-n", "-c", "2", "-j", "2", "-t", "500")
        source.switch_wal()
        source.psql("update demo_orders set note = 'updated after backup' where id % 10 = 0")
        source.pgbench("-n", "-c", "2", "-j", "2", "-t", "300")
        detail("5000 more orders, 1600 pgbench transactions, 1500 updated orders, one segment switch")

        step("Mark the recovery target")
        expected = table_state(source)
        lsn, target_time = source.psql(
            "select pg_create_restore_point('%s') || '|' || now()" % TARGET_NAME).split("|")
        detail("pg_create_restore_point('%s') at LSN %s, %s" % (TARGET_NAME, lsn, target_time))
        for table in TABLES:
            count, digest = expected[table].split()
            detail("  %-17s %7s rows  md5 %s" % (table, count, digest))

        step("The accident: writes after the target")
        source.psql("delete from demo_orders where id % 3 = 0")
        source.psql("insert into demo_orders select g, 'intruder', 0, 'written after the target' "
                    "from generate_series(20001, 20100) g")
        source.pgbench("-n", "-c", "2", "-j", "2", "-t", "200")
        after = source.psql("select count(*) from demo_orders")
        detail("DELETE FROM demo_orders WHERE id % 3 = 0; 100 bad rows; 400 pgbench transactions")
        detail("demo_orders on the source now has %s rows (it had %s at the target)"
               % (after, expected["demo_orders"].split()[0]))

        step("Force a segment switch and wait until it is archived")
        closed = source.switch_wal()
        t0 = time.monotonic()
        source.wait_archived(closed)
        detail("pg_switch_wal(): %s archived (%.1fs); archiver: %s" % (
            closed, time.monotonic() - t0,
            source.psql("select archived_count || ' archived, ' || failed_count || ' failed' from pg_stat_archiver")))
        source.stop()
        detail("source cluster stopped: the restore below uses only the base backup and the repository")

        step("Restore with walrus backup-fetch LATEST, then WAL from walrus up to '%s'" % TARGET_NAME)
        restored = Cluster(os.path.join(work, "restored"))
        listing = run_walrus(["backup-list"], env)
        for line in listing.stdout.splitlines():
            detail("walrus backup-list: " + line)
        t0 = time.monotonic()
        fetched = run_walrus(["backup-fetch", "LATEST", restored.datadir, "--target-name", TARGET_NAME,
                              "--target-action", "promote"], env)
        if fetched.returncode != 0:
            raise RuntimeError("walrus backup-fetch failed (%d): %s" % (fetched.returncode, fetched.stderr))
        detail("walrus backup-fetch LATEST %s --target-name %s --target-action promote (%.1fs)"
               % (restored.datadir, TARGET_NAME, time.monotonic() - t0))
        with open(os.path.join(restored.datadir, "postgresql.auto.conf")) as handle:
            for line in handle:
                if line.startswith(("restore_command", "recovery_target")):
                    detail("postgresql.auto.conf: " + line.strip())
        detail("recovery.signal created by backup-fetch; starting on port %d" % restored.port)
        t0 = time.monotonic()
        start_with_env(restored, env)
        restored.wait_ready()
        detail("recovery finished and the cluster was promoted in %.1fs" % (time.monotonic() - t0))
        with open(restored.logfile) as handle:
            for line in handle:
                if "recovery stopping" in line or "archive recovery complete" in line or "selected new timeline" in line:
                    detail("log: " + line.split("LOG:", 1)[-1].strip())
        detail("now on timeline %s" % restored.psql("select timeline_id from pg_control_checkpoint()"))

        step("Compare the restored cluster with the source at the target")
        got = table_state(restored)
        ok = True
        for table in TABLES:
            same = got[table] == expected[table]
            ok = ok and same
            if same:
                count, digest = got[table].split()
                detail("%-17s same as the source at the target: %7s rows  md5 %s" % (table, count, digest))
            else:
                detail("%-17s DIFFERS: restored %s, source at the target %s" % (table, got[table], expected[table]))
        deleted = restored.psql("select count(*) from demo_orders where id % 3 = 0")
        bad = restored.psql("select count(*) from demo_orders where customer = 'intruder'")
        detail("rows the accident deleted are back: %s orders with id %% 3 = 0; rows written after the target: %s"
               % (deleted, bad))
        ok = ok and int(deleted) > 0 and bad == "0"

        step("Repository contents")
        # The promoted cluster archives its new timeline's history file; give it a moment.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and restored.psql(
                "select coalesce(last_archived_wal, '') from pg_stat_archiver") == "":
            time.sleep(0.2)
        identity, kinds, stored, raw, timelines = repository_summary(repo)
        detail("identity object: %s" % (identity or "MISSING"))
        detail("WAL objects: %d (%s) on timelines %s" % (
            sum(kinds.values()), ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())), ", ".join(timelines)))
        detail("stored %.1f MiB for %.1f MiB of WAL (lz4, ratio %.1f)" % (
            stored / 1048576.0, raw / 1048576.0, raw / float(stored or 1)))
    except Exception as exc:  # show what went wrong, with the server logs
        ok = False
        say()
        say("demo: FAILED: %s" % exc)
        for cluster in (source, restored):
            if cluster is not None and os.path.exists(cluster.logfile):
                say("--- %s (last lines) ---" % cluster.logfile)
                say(cluster.log_tail())
    finally:
        step("Clean up")
        for cluster in (restored, source):
            if cluster is not None:
                cluster.stop(mode="immediate")
                if os.path.isdir(cluster.datadir):
                    stop_prefetch_worker(cluster)
        if args.keep:
            detail("clusters stopped; scratch directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
            detail("clusters stopped, %s removed (use --keep to keep it)" % work)

    say()
    if ok:
        say("demo: OK: point-in-time recovery restored exactly the state at '%s' in %.0fs"
            % (TARGET_NAME, time.monotonic() - STARTED))
        return 0
    say("demo: FAILED after %.0fs" % (time.monotonic() - STARTED))
    return 1


if __name__ == "__main__":
    sys.exit(main())
