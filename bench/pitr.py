#!/usr/bin/env python3
"""PITR end to end: restore a base backup and replay N GB of archived WAL to a recovery target,
walrus (prefetch on and off) side by side with pgBackRest (archive-get async), barman-cloud
(barman-cloud-wal-restore --parallel) and a floor (a local copy of the base and
restore_command = 'cp ARCHIVEDIR/%f %p' from an uncompressed local copy of the WAL).

Method (one run, one SeaweedFS, one source cluster):
  1. A source cluster gets `pgbench -i -s SCALE`. Its archive_command archives every segment to
     every tool at once (cp to the local archive directory && walrus wal-push && pgBackRest
     archive-push && barman-cloud-wal-archive), so that all tools hold the same WAL.
  2. Base backups: walrus backup-push, pgBackRest backup --type=full, barman-cloud-backup, and
     pg_basebackup -X none into a local directory (the floor's base). Not timed here
     (bench/backup.py times backups).
  3. pgbench runs until --wal-gb of WAL has been written after the backups; pgbench stops, the
     checksum of pgbench_accounts (and the pgbench_history row count) is taken, a restore point
     `bench_target` is created and its segment archived by all.
  4. For each variant (order rotated between repetitions): after a sync and a wait (bounded) for
     a quiet machine, the tool's restore command is timed (restore phase, into an empty
     directory), then PostgreSQL is started on it (archive_mode=off, hot_standby=off,
     recovery_target_name = 'bench_target', recovery_target_action = promote) and timed until its
     log says it accepts connections (replay phase: every restore_command call, the redo, the
     end-of-recovery checkpoint and the promotion). Then the checksum must equal the source's.
  5. Unless --no-profile: one more walrus prefetch-on replay with a restore_command wrapper that
     logs the start and end of every call (not in the table): where replay waits for WAL.

Usage: .venv/bin/python bench/pitr.py [--quick] [--wal-gb 1] [--scale 20] [--repeat 2] [--only NAME,...]
"""
import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backup import CHECKSUM_SQL, dir_bytes, timed_step, wait_no_ready  # noqa: E402
from common import (RESULTS, WALRUS, WAL_NAME, BenchSeaweedFS, barman_bin, barman_env, barman_wal_archive_command,  # noqa: E402
                    base_env, install_signal_handlers, kill_leftovers, log, new_report, pgbackrest_config,
                    pg_start, postgres_dir, render_md, render_text, run_as_postgres, run_setup_peers, system_cpu,
                    busy_fraction,
                    stop_clusters, stop_seaweed, weed_workdir, write_file, write_results)
from tools.pgcluster import Cluster, as_postgres, free_port, scratch_dir  # noqa: E402

TARGET_NAME = "bench_target"
HISTORY_SQL = "select count(*) from pgbench_history"
READY_LINE = "database system is ready to accept connections"
VARIANTS = ["walrus-prefetch", "walrus-noprefetch", "pgbackrest", "barman-cloud", "floor"]


# ---------------------------------------------------------------------------------------------
# Variants: each restores its base backup and names its restore_command
# ---------------------------------------------------------------------------------------------

class Variant(object):
    name = note = ""
    works_ahead = False  # works in the background between the restore and the server's start

    def __init__(self, ctx):
        self.ctx = ctx

    def env(self):
        """The restored postmaster's environment (what its restore_command gets)."""
        return base_env()

    def restore(self, target):
        """-> (command, env) restoring the base backup into target (run as postgres)."""
        raise NotImplementedError

    def prepare(self, target):
        """After the restore: recovery settings and recovery.signal, unless the tool wrote them."""
        write_recovery(target, self.restore_command())

    def restore_command(self):
        raise NotImplementedError


def write_recovery(target, restore_command):
    with open(os.path.join(target, "postgresql.auto.conf"), "a") as handle:
        handle.write("restore_command = '%s'\nrecovery_target_name = '%s'\nrecovery_target_action = 'promote'\n"
                     % (restore_command.replace("'", "''"), TARGET_NAME))
    write_file(os.path.join(target, "recovery.signal"), "", mode=0o600)


class Walrus(Variant):
    def __init__(self, ctx, prefetch):
        Variant.__init__(self, ctx)
        self.prefetch = self.works_ahead = prefetch
        self.name = "walrus-prefetch" if prefetch else "walrus-noprefetch"
        self.note = ("backup-fetch --jobs 4 --target-name %s --target-action promote; restore_command "
                     "'walrus wal-fetch --repo URL %%f %%p' (written by backup-fetch), %s; https (TLS)"
                     % (TARGET_NAME, "prefetch on (default settings)" if prefetch else "WALRUS_PREFETCH=0"))

    def env(self):
        env = dict(self.ctx.weed.https_env(), WALRUS_REPO=self.ctx.walrus_repo)
        if not self.prefetch:
            env["WALRUS_PREFETCH"] = "0"
        return base_env(env)

    def restore(self, target):
        return [WALRUS, "backup-fetch", "pitr-base", target, "--jobs", "4", "--target-name", TARGET_NAME,
                "--target-action", "promote", "--json"], self.env()

    def prepare(self, target):
        pass  # backup-fetch wrote restore_command, the target and recovery.signal


class PgBackRest(Variant):
    name = "pgbackrest"
    note = ("restore --process-max=4 --type=name --target=%s --target-action=promote (pgBackRest writes "
            "restore_command = archive-get); archive-async=y, spool-path, archive-get-queue-max default (128 MiB), "
            "process-max=4, compress-type=lz4 (archive and backup); https (TLS)" % TARGET_NAME)

    def env(self):
        return base_env(self.ctx.pgbr_env)

    def restore(self, target):
        # The async queue of an earlier recovery must not serve this one.
        shutil.rmtree(os.path.join(self.ctx.workdir, "pgbr-spool", "archive"), ignore_errors=True)
        return ["pgbackrest", "--config=" + self.ctx.pgbr_conf, "--stanza=bench", "--pg1-path=" + target,
                "--set=" + self.ctx.pgbr_label, "--type=name", "--target=" + TARGET_NAME,
                "--target-action=promote", "--process-max=4", "restore"], self.env()

    def prepare(self, target):
        pass


class Barman(Variant):
    name = "barman-cloud"
    note = ("barman-cloud-restore; restore_command = 'barman-cloud-wal-restore --parallel 4 --spool-dir DIR "
            "... %f %p'; WAL archived uncompressed (barman-cloud-wal-archive default); https (TLS)")

    def url(self):
        return "s3://%s/barman" % self.ctx.barman_bucket

    def env(self):
        return base_env(barman_env(self.ctx.weed))

    def restore(self, target):
        return [barman_bin("barman-cloud-restore"), "--endpoint-url", self.ctx.weed.https_endpoint, self.url(),
                "bench", self.ctx.barman_id, target], self.env()

    def restore_command(self):
        spool = os.path.join(self.ctx.workdir, "barman-spool")
        shutil.rmtree(spool, ignore_errors=True)
        postgres_dir(spool, mode=0o700)
        return "%s --endpoint-url %s --parallel 4 --spool-dir %s %s bench %%f %%p" % (
            barman_bin("barman-cloud-wal-restore"), self.ctx.weed.https_endpoint, spool, self.url())


class Floor(Variant):
    name = "floor"
    note = ("cp -a of a local pg_basebackup (plain, -X none) as the base; restore_command = "
            "'cp ARCHIVEDIR/%f %p' from an uncompressed local copy of the WAL (no network, no decompression)")

    def restore(self, target):
        return ["cp", "-a", self.ctx.floor_base + "/.", target], self.env()

    def restore_command(self):
        return "cp %s/%%f %%p" % self.ctx.archive_dir


def make_variants(ctx):
    return [Walrus(ctx, True), Walrus(ctx, False), PgBackRest(ctx), Barman(ctx), Floor(ctx)]


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

class Context(object):
    def __init__(self, args):
        self.args = args
        self.weed_dir = weed_workdir()
        self.weed = None
        self.workdir = scratch_dir("walrus-bench-pitr-")
        postgres_dir(self.workdir)
        self.clusters = []

    def cleanup(self):
        stop_clusters(self.clusters)
        kill_leftovers(self.workdir)
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        stop_seaweed(self.weed, self.weed_dir)


def lsn_bytes(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def make_source(ctx):
    """Source cluster, every tool's base backup, then --wal-gb of archived WAL. Returns facts."""
    c, args = ctx, ctx.args
    source = Cluster(os.path.join(c.workdir, "source", "pgdata"))
    c.clusters.append(source)
    source.initdb()
    c.archive_dir = postgres_dir(os.path.join(c.workdir, "archive"), mode=0o700)
    c.walrus_bucket, c.pgbr_bucket, c.barman_bucket = (c.weed.new_bucket(p) for p in ("walrus-", "pgbr-", "barman-"))
    c.walrus_repo = "s3://%s/cluster" % c.walrus_bucket
    c.pgbr_conf = os.path.join(c.workdir, "pgbackrest.conf")
    c.pgbr_env = pgbackrest_config(c.pgbr_conf, c.weed, c.pgbr_bucket, c.workdir, source.datadir, source.port,
                                   source.host, extra=("archive-async=y", "process-max=4", "compress-type=lz4"))
    archive_command = " && ".join([
        "cp %%p %s/%%f" % c.archive_dir,
        "AWS_ENDPOINT_URL_S3=%s AWS_CA_BUNDLE=%s %s wal-push %%p" % (c.weed.https_endpoint, c.weed.cert, WALRUS),
        "pgbackrest --config=%s --stanza=bench archive-push %%p" % c.pgbr_conf,
        barman_wal_archive_command(c.weed, c.barman_bucket)])
    source.configure(wal_level="replica", archive_mode="on", archive_command="'%s'" % archive_command,
                     archive_timeout="0", shared_buffers="'256MB'", max_wal_size="'1GB'", autovacuum="off",
                     synchronous_commit="off")  # WAL written faster (no flush per commit); replay is the same
    env = dict(c.weed.env(), AWS_CA_BUNDLE=c.weed.cert, WALRUS_REPO=c.walrus_repo)
    env.update(c.pgbr_env)
    pg_start(source, base_env(env))
    c.source = source
    t0 = time.time()
    source.pgbench("-i", "-q", "-s", str(args.scale))
    source.psql("checkpoint")
    run_as_postgres(["pgbackrest", "--config=" + c.pgbr_conf, "--stanza=bench", "stanza-create"], base_env(c.pgbr_env))
    log("source loaded (scale %d) in %.1f s; base backups" % (args.scale, time.time() - t0))
    walrus_env = base_env(dict(c.weed.https_env(), WALRUS_REPO=c.walrus_repo, PGHOST=source.host,
                               PGPORT=str(source.port), PGUSER="postgres"))
    run_as_postgres([WALRUS, "backup-push", source.datadir, "--jobs", "4", "--name", "pitr-base"], walrus_env)
    run_as_postgres(["pgbackrest", "--config=" + c.pgbr_conf, "--stanza=bench", "--type=full", "--start-fast",
                     "backup"], base_env(c.pgbr_env))
    info = json.loads(run_as_postgres(["pgbackrest", "--config=" + c.pgbr_conf, "--stanza=bench", "--output=json",
                                       "info"], base_env(c.pgbr_env)).stdout)
    c.pgbr_label = info[0]["backup"][-1]["label"]
    benv = base_env(barman_env(c.weed))
    barman_url = "s3://%s/barman" % c.barman_bucket
    run_as_postgres([barman_bin("barman-cloud-backup"), "--endpoint-url", c.weed.https_endpoint,
                     "--immediate-checkpoint", "-J", "4", "-h", source.host, "-p", str(source.port), "-U", "postgres",
                     barman_url, "bench"], benv)
    out = run_as_postgres([barman_bin("barman-cloud-backup-list"), "--endpoint-url", c.weed.https_endpoint,
                           "--format", "json", barman_url, "bench"], benv).stdout
    c.barman_id = sorted(b["backup_id"] for b in json.loads(out)["backups_list"])[-1]
    c.floor_base = os.path.join(c.workdir, "floor-base")
    source.basebackup(c.floor_base)
    # WAL after the backups: what every variant replays.
    start_lsn = source.psql("select pg_current_wal_lsn()")
    goal = int(args.wal_gb * 1024 ** 3)
    t1 = time.time()
    while lsn_bytes(source.psql("select pg_current_wal_lsn()")) - lsn_bytes(start_lsn) < goal:
        source.pgbench("-n", "-c", "2", "-j", "2", "-T", "10")
    source.psql("checkpoint")  # a restartpoint during replay, as in real life
    end_lsn = source.psql("select pg_current_wal_lsn()")
    checksum = "%s;history=%s" % (source.psql(CHECKSUM_SQL), source.psql(HISTORY_SQL))
    target_lsn = source.psql("select pg_create_restore_point('%s')" % TARGET_NAME)
    source.switch_wal()
    log("WAL generated: %.2f GB in %.0f s; waiting for every tool's archiving" % (
        (lsn_bytes(end_lsn) - lsn_bytes(start_lsn)) / 1024.0 ** 3, time.time() - t1))
    wait_no_ready(source, timeout=1800)
    archived = sorted(n for n in os.listdir(c.archive_dir) if len(n) == 24)
    source.stop(mode="fast")
    c.clusters.remove(source)
    facts = {"scale": args.scale, "wal_bytes_after_backups": lsn_bytes(end_lsn) - lsn_bytes(start_lsn),
             "wal_segments_archived": len(archived), "archive_dir_bytes": dir_bytes(c.archive_dir),
             "base_bytes": dir_bytes(c.floor_base), "start_lsn": start_lsn, "target_lsn": target_lsn,
             "checksum": checksum, "seconds_to_prepare": round(time.time() - t0, 1)}
    log("source: %s" % facts)
    return facts


def start_and_wait_promoted(cluster, env, timeout):
    """Start PostgreSQL on a restored directory and return the seconds until its log says it
    accepts connections (recovery done and promoted). The log is polled, not the server."""
    options = "-p %d -c unix_socket_directories=%s -c archive_mode=off -c hot_standby=off" % (
        cluster.port, os.path.dirname(cluster.datadir))
    t0 = time.monotonic()
    as_postgres([cluster.bin("pg_ctl"), "-D", cluster.datadir, "-l", cluster.logfile, "-o", options, "-W", "start"],
                env=env, cwd="/tmp")
    while True:
        try:
            with open(cluster.logfile) as handle:
                text = handle.read()
        except OSError:
            text = ""
        if READY_LINE in text:
            return time.monotonic() - t0
        if "FATAL" in text or "PANIC" in text:
            raise RuntimeError("recovery failed:\n%s" % cluster.log_tail())
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("recovery did not end within %d s:\n%s" % (timeout, cluster.log_tail()))
        time.sleep(0.02)


def run_variant(ctx, variant, rep, facts, trace=None):
    """Restore + replay of one variant; returns a dict of timings and the verification."""
    result = {"variant": variant.name, "rep": rep}
    target = os.path.join(ctx.workdir, "restore-%s-r%d" % (variant.name, rep), "pgdata")
    postgres_dir(os.path.dirname(target))
    postgres_dir(target, mode=0o700)
    cmd, env = variant.restore(target)
    log("%s r%d: restore" % (variant.name, rep))
    result["restore"], _stdout = timed_step(ctx, cmd, env, "/tmp")
    # No wait for quiet between restore and replay: a worker that runs ahead (walrus's prefetch,
    # started by backup-fetch) would get that time free. The gap is timed and counted for it.
    restored_at, cpu_at_restore = time.monotonic(), system_cpu()
    postgres_dir(os.path.join(target, "pg_wal"), mode=0o700)
    variant.prepare(target)
    if trace:
        wrap_restore_command(target, trace)
    cluster = Cluster(target, port=free_port())
    ctx.clusters.append(cluster)
    try:
        os.sync()
        result["gap_seconds"] = round(time.monotonic() - restored_at, 3)
        result["replay_busy_before"] = busy_fraction(cpu_at_restore, system_cpu())
        log("%s r%d: replay" % (variant.name, rep))
        result["replay_seconds"] = round(start_and_wait_promoted(cluster, variant.env(), ctx.args.timeout), 3)
        got = "%s;history=%s" % (cluster.psql(CHECKSUM_SQL), cluster.psql(HISTORY_SQL))
        in_recovery = cluster.psql("select pg_is_in_recovery()")
        result["verify"] = {"checksum": got, "promoted": in_recovery == "f",
                            "ok": got == facts["checksum"] and in_recovery == "f"}
    finally:
        cluster.stop(mode="immediate")
        ctx.clusters.remove(cluster)
    result["total_seconds"] = round(result["restore"]["seconds"] + result["replay_seconds"] +
                                    (result["gap_seconds"] if variant.works_ahead else 0), 3)
    log("%s r%d: restore %.2f s + replay %.2f s = %.2f s; verify %s" % (
        variant.name, rep, result["restore"]["seconds"], result["replay_seconds"], result["total_seconds"],
        result["verify"]["ok"]))
    kill_leftovers(target)
    shutil.rmtree(os.path.dirname(target), ignore_errors=True)
    return result


# ---------------------------------------------------------------------------------------------
# Profile: where replay waits for WAL (a restore_command wrapper with timestamps)
# ---------------------------------------------------------------------------------------------

WRAPPER = """#!/bin/sh
# Logs start, end, exit code and file name of every restore_command call.
s=$(date +%%s.%%N)
"$@"
rc=$?
echo "$s $(date +%%s.%%N) $rc $*" >> %s
exit $rc
"""


def wrap_restore_command(target, log_path):
    """Prefix the restore_command in postgresql.auto.conf with the timing wrapper."""
    wrapper = os.path.join(os.path.dirname(log_path), "trace-restore-command.sh")
    write_file(wrapper, WRAPPER % log_path, mode=0o755)
    write_file(log_path, "", mode=0o644)
    conf = os.path.join(target, "postgresql.auto.conf")
    with open(conf) as handle:
        lines = handle.read().splitlines()
    out = []
    for line in lines:
        if line.strip().startswith("restore_command") and "=" in line:
            key, _, value = line.partition("=")
            value = value.strip()
            assert value.startswith("'")
            line = "%s= '%s %s" % (key, wrapper, value[1:])
        out.append(line)
    write_file(conf, "\n".join(out) + "\n", mode=0o600)


def analyse_trace(log_path, replay_seconds):
    calls = []
    with open(log_path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) < 4:
                continue
            # The file asked for: %f (a WAL name or a .history file); %p is pg_wal/RECOVERYXLOG.
            names = [p for p in parts[3:] if WAL_NAME.match(p) or p.endswith(".history")]
            calls.append((float(parts[0]), float(parts[1]), int(parts[2]), names[0] if names else parts[-1]))
    calls.sort()
    segments = [c for c in calls if len(c[3]) == 24 and c[2] == 0]
    others = [c for c in calls if c not in segments]
    seg_secs = [c[1] - c[0] for c in segments]
    out = {"calls": len(calls), "segments_served": len(segments),
           "seconds_in_restore_command": round(sum(c[1] - c[0] for c in calls), 2),
           "seconds_in_restore_command_for_segments": round(sum(seg_secs), 2),
           "replay_seconds": round(replay_seconds, 2),
           "other_calls": [{"file": c[3], "exit": c[2], "seconds": round(c[1] - c[0], 3)} for c in others]}
    if seg_secs:
        out.update(segment_call_median_ms=round(statistics.median(seg_secs) * 1000, 1),
                   segment_call_max_ms=round(max(seg_secs) * 1000, 1),
                   first_segment_call_ms=round(seg_secs[0] * 1000, 1),
                   slowest_segment_calls=[{"file": c[3], "ms": round((c[1] - c[0]) * 1000, 1)}
                                          for c in sorted(segments, key=lambda c: c[0] - c[1])[:5]])
    return out


def profile(ctx, facts, names):
    out = {}
    for variant in make_variants(ctx):
        if variant.name not in names or variant.name not in ("walrus-prefetch", "floor", "walrus-noprefetch"):
            continue
        log_path = os.path.join(ctx.workdir, "trace-%s.log" % variant.name)
        res = run_variant(ctx, variant, 99, facts, trace=log_path)
        out[variant.name] = analyse_trace(log_path, res["replay_seconds"])
        log("trace %s: %s" % (variant.name, json.dumps(out[variant.name])[:600]))
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def summarize(runs):
    ok = [r for r in runs if "error" not in r]
    out = {"variant": runs[0]["variant"], "runs": len(runs),
           "ok": bool(ok) and len(ok) == len(runs) and all(r["verify"]["ok"] for r in ok)}
    if not ok:
        out["error"] = runs[0].get("error")
        return out
    for key, get in (("restore_seconds", lambda r: r["restore"]["seconds"]),
                     ("replay_seconds", lambda r: r["replay_seconds"]),
                     ("total_seconds", lambda r: r["total_seconds"]),
                     ("restore_peak_rss_mb", lambda r: r["restore"]["peak_rss_mb"])):
        values = [get(r) for r in ok]
        out[key] = round(statistics.median(values), 3)
        out[key + "_all"] = values
    out["busy_before_all"] = [[r["restore"]["machine_busy_before"], r["replay_busy_before"]] for r in ok]
    return out


def table(summaries):
    header = ["variant", "restore s", "replay s", "total s", "replay x floor", "total x floor",
              "replay x walrus", "total x walrus", "restore RSS MB", "verified"]
    by = dict((s["variant"], s) for s in summaries if "total_seconds" in s)
    floor, ref = by.get("floor"), by.get("walrus-prefetch")

    def ratio(s, base, key):
        return "%.2f" % (s[key] / base[key]) if base and base.get(key) else "-"
    rows = []
    for s in summaries:
        if "total_seconds" not in s:
            rows.append([s["variant"], "failed"] + ["-"] * 7 + ["NO"])
            continue
        rows.append([s["variant"], "%.2f" % s["restore_seconds"], "%.2f" % s["replay_seconds"],
                     "%.2f" % s["total_seconds"], ratio(s, floor, "replay_seconds"), ratio(s, floor, "total_seconds"),
                     ratio(s, ref, "replay_seconds"), ratio(s, ref, "total_seconds"),
                     "%.0f" % s["restore_peak_rss_mb"], "yes" if s["ok"] else "NO"])
    return header, rows


def targets(summaries):
    by = dict((s["variant"], s) for s in summaries if "total_seconds" in s)
    w, out = by.get("walrus-prefetch"), {}
    if not w:
        return out
    for key, label in (("replay_seconds", "replay"), ("total_seconds", "restore + replay")):
        if "floor" in by:
            r = w[key] / by["floor"][key]
            out["%s: walrus prefetch within 1.3x of the cp floor" % label] = {"ratio": round(r, 2), "met": r <= 1.3,
                                                                               "ratio_is": "walrus / floor"}
        for peer in ("pgbackrest", "barman-cloud"):
            if peer in by:
                r = by[peer][key] / w[key]
                out["%s: walrus prefetch faster than %s" % (label, peer)] = {"ratio": round(r, 2), "met": r > 1.0,
                                                                            "ratio_is": "peer / walrus"}
    return out


def markdown_report(report, header, rows):
    f = report["source"]
    out = ["# PITR end to end benchmark, %s (%s mode)" % (report["date"], report["mode"]), "",
           "Command: `%s`" % report["command"], "",
           "Same machine (%s CPUs, shared with other work: numbers are noisy), same SeaweedFS on loopback "
           "(https), same source cluster: pgbench scale %s, base backups by every tool, then %.2f GB of WAL "
           "(%d archived segments, TPC-B pgbench) replayed to the restore point `%s` and promoted. "
           "`restore s` = the tool's restore of its base backup into an empty directory; `replay s` = from "
           "pg_ctl start until the log says the promoted server accepts connections (every restore_command "
           "call, redo, end-of-recovery checkpoint); `total s` = their sum, plus for walrus-prefetch the gap "
           "between them (a sync, the recovery settings; its worker, started by backup-fetch, already fetches "
           "then); the server starts right after the restore, for every variant; "
           "medians of %d repetition(s), order rotated. Ratios: "
           "seconds divided by the floor's or walrus-prefetch's (above 1 = slower). Every recovered cluster's "
           "pgbench_accounts checksum and pgbench_history row count equal the source's at the target."
           % (report["environment"]["cpus"], f["scale"], f["wal_bytes_after_backups"] / 1024.0 ** 3,
              f["wal_segments_archived"], TARGET_NAME, report["repeat"]), "",
           render_md(header, rows), "", "## Targets", ""]
    for name, t in report["targets"].items():
        out.append("- %s: %s (%s = %s)" % (name, "met" if t["met"] else "NOT met", t["ratio_is"], t["ratio"]))
    out += ["", "## Configuration of each variant", "", "| variant | configuration |", "|---|---|"]
    out += ["| %s | %s |" % (n, note.replace("|", "\\|")) for n, note in report["variants"].items()]
    out += ["", "## Every repetition and the machine's noise", "",
            "Busy fraction of all CPUs just before the restore (after waiting up to %s s for quiet) and between "
            "the restore and the replay (no wait: walrus-prefetch's worker is busy then)." % report["quiet_wait"], "",
            "| variant | restore s (all) | replay s (all) | busy before [restore, replay] |", "|---|---|---|---|"]
    for s in report["summaries"]:
        if "total_seconds" in s:
            out.append("| %s | %s | %s | %s |" % (s["variant"], s["restore_seconds_all"], s["replay_seconds_all"],
                                                  s["busy_before_all"]))
        else:
            out.append("| %s | failed: %s | | |" % (s["variant"], str(s.get("error"))[:300].replace("|", "/")))
    if report.get("trace"):
        out += ["", "## Where replay waits for WAL (restore_command wrapper, one extra replay each; not in the table)",
                "", "| variant | replay s | calls | segments | s in restore_command | median ms / segment | "
                "max ms | first segment ms | other calls |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name, t in report["trace"].items():
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, t["replay_seconds"], t["calls"], t["segments_served"], t["seconds_in_restore_command"],
                t.get("segment_call_median_ms"), t.get("segment_call_max_ms"), t.get("first_segment_call_ms"),
                ", ".join("%s exit %s %.0f ms" % (o["file"], o["exit"], o["seconds"] * 1000)
                          for o in t["other_calls"][:6])))
    out += ["", "## Source", "", "```", json.dumps(report["source"], indent=1, sort_keys=True), "```"]
    if report.get("analysis"):
        out += ["", "## Analysis", ""] + ["- %s" % a for a in report["analysis"]]
    if report.get("failures"):
        out += ["", "## Failures", ""] + ["- %s" % x for x in report["failures"]]
    return "\n".join(out) + "\n"


def publish(args, report, started):
    report["bench_seconds"] = round(time.time() - started, 1)
    report["targets"] = targets(report["summaries"])
    header, rows = table(report["summaries"])
    print()
    print("PITR end to end, %s, %s CPUs, medians of %d" % (report["environment"]["postgresql"],
                                                          report["environment"]["cpus"], report["repeat"]))
    print(render_text(header, rows))
    for name, t in report["targets"].items():
        print("target: %-60s %s  %s=%s" % (name, "MET" if t["met"] else "NOT MET", t["ratio_is"], t["ratio"]))
    for x in report["failures"]:
        print("FAILED: %s" % x[:300])
    write_results(args.out, "pitr", report["mode"] == "quick", report, markdown_report(report, header, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.4 GB of WAL, one repetition")
    parser.add_argument("--wal-gb", type=float, help="GB of WAL to replay (default 1; 0.4 with --quick)")
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale of the source (default 20)")
    parser.add_argument("--repeat", type=int, help="repetitions per variant (default 2; 1 with --quick)")
    parser.add_argument("--only", help="comma-separated variants (%s)" % ", ".join(VARIANTS))
    parser.add_argument("--quiet-wait", type=int, default=10,
                        help="seconds to wait, before each timed step, for other load on the machine to settle")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a replay may take")
    parser.add_argument("--profile", dest="profile", action="store_true", default=True,
                        help="one more traced replay of walrus-prefetch, walrus-noprefetch and the floor (default)")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--no-setup", action="store_true", help="do not run bench/setup_peers.sh")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories (debugging)")
    parser.add_argument("--out", default=RESULTS, help="directory for the JSON and Markdown results")
    parser.add_argument("--render", metavar="JSON", help="only re-render the table and Markdown of a results file")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as handle:
            report = json.load(handle)
        publish(args, report, time.time() - report.get("bench_seconds", 0))
        return 0
    if os.geteuid() != 0:
        parser.error("run as root (servers and tools run as the postgres user)")
    args.wal_gb = args.wal_gb or (0.4 if args.quick else 1.0)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.quick else 2)
    names = args.only.split(",") if args.only else VARIANTS
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error("unknown variant(s): %s" % ", ".join(sorted(unknown)))
    if not args.no_setup:
        run_setup_peers()
    install_signal_handlers()
    started = time.time()
    report = new_report("pitr.py", sys.argv[1:], args.quick)
    report.update(repeat=args.repeat, wal_gb=args.wal_gb, quiet_wait=args.quiet_wait, summaries=[], runs=[],
                  failures=[])
    ctx = Context(args)
    try:
        ctx.weed = BenchSeaweedFS(ctx.weed_dir, tls=True).start()
        facts = make_source(ctx)
        report["source"] = facts
        variants = [v for v in make_variants(ctx) if v.name in names]
        report["variants"] = collections.OrderedDict((v.name, v.note) for v in variants)
        runs = collections.OrderedDict((v.name, []) for v in variants)
        for rep in range(args.repeat):
            for variant in variants[rep % len(variants):] + variants[:rep % len(variants)]:
                try:
                    runs[variant.name].append(run_variant(ctx, variant, rep, facts))
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one broken variant must not hide the others' results
                    log("%s r%d: FAILED: %s" % (variant.name, rep, exc))
                    report["failures"].append("%s rep %d: %s" % (variant.name, rep, str(exc)[-800:]))
                    runs[variant.name].append({"variant": variant.name, "rep": rep, "error": str(exc)[-2000:]})
        for name, items in runs.items():
            if not items:  # --repeat 0: only the traced replays
                continue
            report["runs"].extend(items)
            report["summaries"].append(summarize(items))
        if args.profile:
            try:
                report["trace"] = profile(ctx, facts, names)
            except Exception as exc:
                report["failures"].append("trace: %s" % str(exc)[-800:])
    finally:
        ctx.cleanup()
    publish(args, report, started)
    return 0 if all(s["ok"] for s in report["summaries"]) and not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
