#!/usr/bin/env python3
"""Base backup and restore benchmark: walrus side by side with pgBackRest, barman-cloud and a
tar|lz4 floor, on the same pgbench database, the same machine and the same SeaweedFS.

Method, per pgbench scale:
  1. A source cluster (archive_mode=on) gets `pgbench -i -s SCALE`, a few thousand pgbench
     transactions and a checkpoint; a checksum of pgbench_accounts is taken. Nothing writes to it
     afterwards (only the tools' own checkpoints, backup records and WAL switches).
  2. Each tool, in turn (the order rotates between repetitions), with the archive_command set
     (ALTER SYSTEM + reload) to that tool's own WAL archiver, so that no tool waits for another
     tool's archiving of its stop segment:
       - backup: wall time of the tool's backup command, peak RSS of its process tree (sampled
         every 0.1 s from /proc), CPU seconds of its process tree and of SeaweedFS, stored bytes
         (listed in the bucket);
       - restore into an empty directory: wall time of the tool's restore command (download,
         unpack, the tool's own verification; no WAL replay), peak RSS; then the time of a sync
         of the written files (reported apart: not every tool fsyncs);
       - verification: walrus restores are started (archive_mode=off, restore_command from the
         backup-fetch) and recover to the end of walrus's archive; the checksum of
         pgbench_accounts must equal the source's. Peer restores: PG_VERSION, global/pg_control
         and the number of relation files under base/ against the source.
  3. Before each timed step: os.sync() and a wait (bounded) for the machine to be quiet; the
     busy fraction of the machine before and during each step is recorded (the machine is shared).
  4. Unless --no-profile, at the last scale: where walrus spends its time in backup-push and backup-fetch
     (py-spy, sampling the walrus process tree; not in the table).

Delta scenario (--scenario delta): after a full backup by each tool, 1% and then another 10% of
pgbench_accounts' rows (contiguous aid ranges) are updated and checkpointed; after each change,
walrus backup-push --delta (its chain: full, d1, d2) against pgBackRest --type=incr (based on its
previous backup) and, after the second change, --type=diff (based on its full). Time and stored
bytes of each, ratios to walrus; walrus's last delta is restored and its checksum compared.

Usage: .venv/bin/python bench/backup.py [--quick] [--scales 20,100,300] [--repeat 1] [--only NAME,...]
       .venv/bin/python bench/backup.py --scenario delta [--scales 50] [--repeat 1]
"""
import argparse
import collections
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (RESULTS, VENV_BIN, WALRUS, BenchSeaweedFS, barman_bin, barman_env,  # noqa: E402
                    barman_wal_archive_command, base_env, busy_fraction, install_signal_handlers, kill_leftovers,
                    log, new_report, pg_start, pgbackrest_config, postgres_dir, proc_cpu_seconds, render_md,
                    render_text, run_as_postgres, run_setup_peers, system_cpu, timed_as_postgres, wait_for_quiet,
                    stop_clusters, stop_seaweed, weed_workdir, write_results)
from tools.pgcluster import Cluster, free_port, scratch_dir  # noqa: E402

PYSPY = os.environ.get("PYSPY", "/opt/walrus-bench/pyspy/bin/py-spy")
CHECKSUM_SQL = ("select count(*) || ':' || sum(hashtextextended(a::text, 0)::numeric) "
                "from pgbench_accounts a")


# ---------------------------------------------------------------------------------------------
# Tools: each knows its archive_command, its backup, its restore and how to verify a restore
# ---------------------------------------------------------------------------------------------

class Tool(object):
    name = label = note = ""
    verify_full = False

    def __init__(self, ctx):
        self.ctx = ctx

    def archive_command(self):
        raise NotImplementedError

    def backup(self, rep):
        """-> (command, env, cwd, after) ; after(stdout) -> dict with 'id' and 'stored_bytes'."""
        raise NotImplementedError

    def restore(self, meta, target):
        """-> (command, env, cwd)"""
        raise NotImplementedError


class Walrus(Tool):
    verify_full = True

    def __init__(self, ctx, https, executable=WALRUS, name=None):
        Tool.__init__(self, ctx)
        self.https = https
        self.exe = executable
        self.name = name or ("walrus-https" if https else "walrus-http")
        self.label = "walrus S3 (%s), --jobs 4" % ("https" if https else "http")
        self.note = ("backup-push --jobs 4 (lz4 parts, upload concurrency 4, immediate checkpoint); "
                     "backup-fetch --jobs 4; %s endpoint; wal-push archive_command over the same endpoint"
                     % ("TLS" if https else "plain http"))
        if executable != WALRUS:
            self.label += " (%s)" % executable
            self.note += "; the walrus at %s (--baseline-walrus)" % executable

    def env(self):
        c = self.ctx
        env = c.weed.https_env() if self.https else dict(c.weed.env())
        env.update(WALRUS_REPO="s3://%s/cluster" % c.walrus_bucket, PGHOST=c.source.host,
                   PGPORT=str(c.source.port), PGUSER="postgres")
        return base_env(env)

    def archive_command(self):
        if self.https:  # endpoint and CA are not secrets; the credentials come from the postmaster
            return "AWS_ENDPOINT_URL_S3=%s AWS_CA_BUNDLE=%s %s wal-push %%p" % (
                self.ctx.weed.https_endpoint, self.ctx.weed.cert, self.exe)
        return "%s wal-push %%p" % self.exe

    def backup(self, rep):
        name = "%s-s%d-r%d" % (self.name, self.ctx.scale, rep)
        cmd = [self.exe, "backup-push", self.ctx.source.datadir, "--jobs", "4", "--name", name, "--json"]

        def after(stdout):
            result = json.loads(stdout)
            _n, listed = self.ctx.weed.stored_bytes(self.ctx.walrus_bucket, "cluster/basebackups/%s/" % name)
            return {"id": name, "stored_bytes": listed, "walrus_result": result}
        return cmd, self.env(), "/tmp", after

    def restore(self, meta, target):
        return [self.exe, "backup-fetch", meta["id"], target, "--jobs", "4", "--json"], self.env(), "/tmp"


class PgBackRest(Tool):
    def __init__(self, ctx, compress):
        Tool.__init__(self, ctx)
        self.compress = compress
        self.name = "pgbackrest-%s" % compress
        self.label = "pgBackRest full, process-max 4, %s" % compress
        self.note = ("backup --type=full --process-max=4 --compress-type=%s (default level) --start-fast; "
                     "restore --process-max=4 --set=LABEL --pg1-path=TARGET; https (TLS), path-style; "
                     "archive-push (sync) as archive_command" % compress)

    def env(self):
        return base_env(self.ctx.pgbr_env)

    def base_cmd(self):
        return ["pgbackrest", "--config=" + self.ctx.pgbr_conf, "--stanza=bench"]

    def archive_command(self):
        return "pgbackrest --config=%s --stanza=bench archive-push %%p" % self.ctx.pgbr_conf

    def backup(self, rep):
        cmd = self.base_cmd() + ["--type=full", "--process-max=4", "--compress-type=" + self.compress,
                                 "--start-fast", "backup"]

        def after(_stdout):
            info = json.loads(run_as_postgres(self.base_cmd() + ["--output=json", "info"], self.env()).stdout)
            label = info[0]["backup"][-1]["label"]
            _n, size = self.ctx.weed.stored_bytes(self.ctx.pgbr_bucket, "pgbackrest/backup/bench/%s/" % label)
            return {"id": label, "stored_bytes": size}
        return cmd, self.env(), "/tmp", after

    def restore(self, meta, target):
        return self.base_cmd() + ["--set=" + meta["id"], "--pg1-path=" + target, "--process-max=4",
                                  "restore"], self.env(), "/tmp"


class Barman(Tool):
    name = "barman-cloud"
    label = "barman-cloud 3.19.1"
    note = ("barman-cloud-backup --immediate-checkpoint -J 4 (default: no compression); barman-cloud-restore "
            "(no parallelism option); https (TLS); barman-cloud-wal-archive as archive_command")

    def env(self):
        return base_env(barman_env(self.ctx.weed))

    def url(self):
        return "s3://%s/barman" % self.ctx.barman_bucket

    def archive_command(self):
        return barman_wal_archive_command(self.ctx.weed, self.ctx.barman_bucket)

    def backup(self, rep):
        c = self.ctx
        cmd = [barman_bin("barman-cloud-backup"), "--endpoint-url", c.weed.https_endpoint, "--immediate-checkpoint",
               "-J", "4", "-h", c.source.host, "-p", str(c.source.port), "-U", "postgres", self.url(), "bench"]

        def after(_stdout):
            out = run_as_postgres([barman_bin("barman-cloud-backup-list"), "--endpoint-url", c.weed.https_endpoint,
                                   "--format", "json", self.url(), "bench"], self.env()).stdout
            backup_id = sorted(b["backup_id"] for b in json.loads(out)["backups_list"])[-1]
            _n, size = c.weed.stored_bytes(c.barman_bucket, "barman/bench/base/%s/" % backup_id)
            return {"id": backup_id, "stored_bytes": size}
        return cmd, self.env(), "/tmp", after

    def restore(self, meta, target):
        return [barman_bin("barman-cloud-restore"), "--endpoint-url", self.ctx.weed.https_endpoint, self.url(),
                "bench", meta["id"], target], self.env(), "/tmp"


class Floor(Tool):
    name = "floor"
    label = "floor: tar | lz4 (local file)"
    note = "tar -cf - (pg_wal contents excluded) | lz4 -1 into a local file; lz4 -dc | tar -xf - back; no archiving"

    def archive_command(self):
        return "/bin/true"

    def backup(self, rep):
        path = os.path.join(self.ctx.workdir, "floor-r%d.tar.lz4" % rep)
        script = ("tar -cf - -C %s --exclude=./pg_wal/* --exclude=./postmaster.pid --warning=no-file-changed . "
                  "| lz4 -1 -q > %s; s=(${PIPESTATUS[@]}); [ ${s[0]} -le 1 ] && [ ${s[1]} -eq 0 ]"
                  % (self.ctx.source.datadir, path))

        def after(_stdout):
            return {"id": path, "stored_bytes": os.path.getsize(path)}
        return ["/bin/bash", "-c", script], base_env(), "/tmp", after

    def restore(self, meta, target):
        return ["/bin/bash", "-c", "set -o pipefail; lz4 -dc %s | tar -xf - -C %s" % (meta["id"], target)], \
            base_env(), "/tmp"


TOOL_NAMES = ["walrus-http", "walrus-https", "pgbackrest-lz4", "pgbackrest-gz", "barman-cloud", "floor"]
# walrus-https (what TLS costs) and pgbackrest-gz (pgBackRest's default codec, slower than its lz4)
# are run on request: the default compares each peer at its fastest.
DEFAULT_TOOLS = ["walrus-http", "pgbackrest-lz4", "barman-cloud", "floor"]
BASELINE = "walrus-baseline"  # only with --baseline-walrus: another walrus (e.g. before a change), over http


def make_tools(ctx):
    tools = [Walrus(ctx, False), Walrus(ctx, True), PgBackRest(ctx, "lz4"), PgBackRest(ctx, "gz"), Barman(ctx),
             Floor(ctx)]
    if ctx.args.baseline_walrus:
        tools.insert(1, Walrus(ctx, False, os.path.abspath(ctx.args.baseline_walrus), BASELINE))
    return tools


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

class Context(object):
    def __init__(self, args):
        self.args = args
        self.weed_dir = weed_workdir()
        self.weed = None
        self.workdir = None
        self.clusters = []

    def new_scale(self, scale):
        self.scale = scale
        self.workdir = scratch_dir("walrus-bench-backup-")
        postgres_dir(self.workdir)

    def end_scale(self):
        stop_clusters(self.clusters)
        self.clusters = []
        if self.workdir:
            kill_leftovers(self.workdir)
            if not self.args.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    def cleanup(self):
        try:
            self.end_scale()
        finally:
            stop_seaweed(self.weed, self.weed_dir)


def wait_no_ready(cluster, timeout=180):
    status = os.path.join(cluster.datadir, "pg_wal", "archive_status")
    deadline = time.time() + timeout
    while any(n.endswith(".ready") for n in os.listdir(status)):
        if time.time() > deadline:
            raise TimeoutError("archiver did not drain; log:\n%s" % cluster.log_tail())
        time.sleep(0.1)


def set_archive_command(cluster, command):
    """Switch the archiver to one tool's command; every segment closed before is archived first."""
    wait_no_ready(cluster)
    assert "'" not in command
    cluster.psql("alter system set archive_command = '%s'" % command)
    cluster.psql("select pg_reload_conf()")
    time.sleep(0.5)
    if cluster.psql("show archive_command") != command:
        raise RuntimeError("archive_command not reloaded")


def count_relation_files(datadir):
    total = 0
    for _dirpath, _dirs, files in os.walk(os.path.join(datadir, "base")):
        total += sum(1 for f in files if f.split("_")[0].split(".")[0].isdigit())
    return total


def dir_bytes(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def make_source(ctx):
    """The source cluster at ctx.scale; returns facts about it."""
    c = ctx
    source = Cluster(os.path.join(c.workdir, "source", "pgdata"))
    c.clusters.append(source)
    source.initdb()
    source.configure(wal_level="replica", archive_mode="on", archive_command="'/bin/true'", archive_timeout="0",
                     max_wal_size="'4GB'", shared_buffers="'256MB'", autovacuum="off")
    c.source = source
    c.walrus_bucket = c.weed.new_bucket("walrus-")
    c.pgbr_bucket = c.weed.new_bucket("pgbr-")
    c.barman_bucket = c.weed.new_bucket("barman-")
    c.pgbr_conf = os.path.join(c.workdir, "pgbackrest.conf")
    c.pgbr_env = pgbackrest_config(c.pgbr_conf, c.weed, c.pgbr_bucket, c.workdir, source.datadir, source.port,
                                   source.host)
    # The postmaster's environment: credentials for walrus and barman (boto3's variables) and
    # pgBackRest (its own), never in postgresql.conf; WALRUS_REPO for the walrus archive_command.
    env = dict(c.weed.env(), AWS_CA_BUNDLE=c.weed.cert, WALRUS_REPO="s3://%s/cluster" % c.walrus_bucket)
    env.update(c.pgbr_env)
    pg_start(source, base_env(env))
    t0 = time.time()
    source.pgbench("-i", "-q", "-s", str(c.scale))
    source.pgbench("-n", "-c", "2", "-t", "2000")
    source.psql("vacuum analyze")
    source.psql("checkpoint")
    checksum = source.psql(CHECKSUM_SQL)
    run_as_postgres(["pgbackrest", "--config=" + c.pgbr_conf, "--stanza=bench", "stanza-create"], base_env(c.pgbr_env))
    # Warm the page cache the same way for every tool (the first tool would otherwise pay it).
    subprocess.run(["tar", "-cf", "/dev/null", "-C", source.datadir, "."], check=False, capture_output=True)
    facts = {"scale": c.scale, "seconds_to_load": round(time.time() - t0, 1),
             "database_bytes": int(source.psql("select pg_database_size('postgres')")),
             "datadir_bytes_without_pg_wal": dir_bytes(source.datadir) - dir_bytes(os.path.join(source.datadir,
                                                                                                  "pg_wal")),
             "relation_files": count_relation_files(source.datadir), "pgbench_accounts_checksum": checksum}
    log("source: %s" % facts)
    return facts


def timed_step(ctx, cmd, env, cwd):
    os.sync()
    busy_before = wait_for_quiet(max_wait=ctx.args.quiet_wait)
    sys0, weed0 = system_cpu(), proc_cpu_seconds(ctx.weed.proc.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, rss, stdout, stderr = timed_as_postgres(cmd, env, cwd=cwd)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(rss / 1048576.0, 1),
            "cpu_seconds": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2),
            "seaweedfs_cpu_seconds": round(proc_cpu_seconds(ctx.weed.proc.pid) - weed0, 2),
            "machine_busy_before": busy_before, "machine_busy_during": busy_fraction(sys0, system_cpu())}, stdout


def verify_walrus(ctx, tool, target, expected):
    """Start the restored directory: recovery to the end of walrus's archive, then compare."""
    cluster = Cluster(target, port=free_port())
    ctx.clusters.append(cluster)
    t0 = time.time()
    try:
        pg_start(cluster, tool.env(), "-c archive_mode=off -c unix_socket_directories=%s" % os.path.dirname(target))
        cluster.wait_ready(timeout=600)
        got = cluster.psql(CHECKSUM_SQL)
        return {"started": True, "recovered_seconds": round(time.time() - t0, 1), "checksum": got,
                "ok": got == expected}
    finally:
        cluster.stop(mode="immediate")
        ctx.clusters.remove(cluster)


def verify_peer(ctx, target, source_facts):
    files = count_relation_files(target)
    ok = (os.path.exists(os.path.join(target, "PG_VERSION")) and os.path.exists(os.path.join(target, "global",
                                                                                            "pg_control"))
          and files >= source_facts["relation_files"] * 0.99)
    return {"relation_files": files, "source_relation_files": source_facts["relation_files"], "ok": bool(ok)}


def run_tool(ctx, tool, rep, facts):
    result = {"tool": tool.name, "rep": rep}
    set_archive_command(ctx.source, tool.archive_command())
    cmd, env, cwd, after = tool.backup(rep)
    log("%s s%d r%d: backup" % (tool.name, ctx.scale, rep))
    result["backup"], stdout = timed_step(ctx, cmd, env, cwd)
    meta = after(stdout)
    result["stored_bytes"] = meta["stored_bytes"]
    result["backup_id"] = meta["id"]
    if "walrus_result" in meta:
        result["walrus_backup_result"] = meta["walrus_result"]
    target = os.path.join(ctx.workdir, "restore-%s-r%d" % (tool.name, rep), "pgdata")
    postgres_dir(os.path.dirname(target))
    postgres_dir(target, mode=0o700)
    cmd, env, cwd = tool.restore(meta, target)
    log("%s s%d r%d: restore" % (tool.name, ctx.scale, rep))
    result["restore"], stdout = timed_step(ctx, cmd, env, cwd)
    t0 = time.monotonic()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
    finally:
        os.close(fd)
    result["restore"]["sync_after_seconds"] = round(time.monotonic() - t0, 3)
    result["restored_bytes"] = dir_bytes(target)
    if tool.name.startswith("walrus") and stdout.strip():
        result["walrus_fetch_result"] = json.loads(stdout)
    if tool.verify_full and rep == 0:
        result["verify"] = verify_walrus(ctx, tool, target, facts["pgbench_accounts_checksum"])
    else:
        result["verify"] = verify_peer(ctx, target, facts)
    log("%s s%d r%d: backup %.2f s (%.0f MB RSS), %.1f MB stored; restore %.2f s; verify %s" % (
        tool.name, ctx.scale, rep, result["backup"]["seconds"], result["backup"]["peak_rss_mb"],
        result["stored_bytes"] / 1048576.0, result["restore"]["seconds"], result["verify"]))
    shutil.rmtree(os.path.dirname(target), ignore_errors=True)
    if tool.name == "floor":
        os.unlink(meta["id"])
    return result


def summarize(runs):
    """Repetitions of one tool at one scale -> medians, with every value kept."""
    ok_runs = [r for r in runs if "error" not in r]
    out = {"tool": runs[0]["tool"], "runs": len(runs), "ok": bool(ok_runs) and len(ok_runs) == len(runs)
           and all(r["verify"]["ok"] for r in ok_runs)}
    if not ok_runs:
        out["error"] = runs[0].get("error")
        return out
    for step in ("backup", "restore"):
        for key in ("seconds", "peak_rss_mb", "cpu_seconds", "seaweedfs_cpu_seconds"):
            values = [r[step][key] for r in ok_runs]
            out["%s_%s" % (step, key)] = round(statistics.median(values), 3)
            out["%s_%s_all" % (step, key)] = values
        out["%s_busy_before_all" % step] = [r[step]["machine_busy_before"] for r in ok_runs]
        out["%s_busy_during_all" % step] = [r[step]["machine_busy_during"] for r in ok_runs]
    out["restore_sync_after_seconds"] = statistics.median(r["restore"]["sync_after_seconds"] for r in ok_runs)
    out["stored_bytes"] = int(statistics.median(r["stored_bytes"] for r in ok_runs))
    out["verify"] = [r["verify"] for r in ok_runs]
    if any("error" in r for r in runs):
        out["errors"] = [r["error"] for r in runs if "error" in r]
    return out


# ---------------------------------------------------------------------------------------------
# Delta scenario: walrus --delta against pgBackRest incr/diff
# ---------------------------------------------------------------------------------------------

DELTA_STEPS = (("1%", 0.0, 0.01), ("10%", 0.01, 0.11))


def change_accounts(ctx, low, high):
    """Update the rows with aid in (low, high] fractions of the table (contiguous), checkpoint."""
    rows = ctx.scale * 100000
    ctx.source.psql("update pgbench_accounts set abalance = abalance + 1 where aid > %d and aid <= %d"
                    % (int(rows * low), int(rows * high)))
    ctx.source.psql("checkpoint")
    return ctx.source.psql(CHECKSUM_SQL)


def delta_step(ctx, tool, cmd, env, label):
    set_archive_command(ctx.source, tool.archive_command())
    log("delta s%d: %s" % (ctx.scale, label))
    timing, stdout = timed_step(ctx, cmd, env, "/tmp")
    return timing, stdout


def run_delta_rep(ctx, rep):
    """One repetition: full backups, then the 1% and 10% changes with a walrus delta, a pgBackRest
    incr and (after the second) a pgBackRest diff. Returns a list of row dicts."""
    walrus, pgbr = Walrus(ctx, True), PgBackRest(ctx, "lz4")
    rows = []

    def walrus_backup(name, delta):
        cmd = [WALRUS, "backup-push", ctx.source.datadir, "--jobs", "4", "--name", name, "--json"] + (
            ["--delta"] if delta else [])
        timing, stdout = delta_step(ctx, walrus, cmd, walrus.env(), "walrus %s" % name)
        result = json.loads(stdout)
        _n, stored = ctx.weed.stored_bytes(ctx.walrus_bucket, "cluster/basebackups/%s/" % name)
        return timing, stored, result

    def pgbr_backup(kind):
        cmd = pgbr.base_cmd() + ["--type=" + kind, "--process-max=4", "--compress-type=lz4", "--start-fast", "backup"]
        timing, _stdout = delta_step(ctx, pgbr, cmd, pgbr.env(), "pgbackrest %s" % kind)
        info = json.loads(run_as_postgres(pgbr.base_cmd() + ["--output=json", "info"], pgbr.env()).stdout)
        label = info[0]["backup"][-1]["label"]
        _n, stored = ctx.weed.stored_bytes(ctx.pgbr_bucket, "pgbackrest/backup/bench/%s/" % label)
        return timing, stored, label

    timing, stored, result = walrus_backup("full-r%d" % rep, False)
    rows.append({"step": "full", "tool": "walrus-https full", "seconds": timing["seconds"], "stored_bytes": stored,
                 "cpu_seconds": timing["cpu_seconds"], "kind": result.get("kind")})
    timing, stored, _label = pgbr_backup("full")
    rows.append({"step": "full", "tool": "pgbackrest-lz4 full", "seconds": timing["seconds"], "stored_bytes": stored,
                 "cpu_seconds": timing["cpu_seconds"]})
    checksum = None
    for number, (step, low, high) in enumerate(DELTA_STEPS, 1):
        checksum = change_accounts(ctx, low, high)
        name = "d%d-r%d" % (number, rep)
        timing, stored, result = walrus_backup(name, True)
        rows.append({"step": step, "tool": "walrus-https delta", "seconds": timing["seconds"], "stored_bytes": stored,
                     "cpu_seconds": timing["cpu_seconds"], "kind": result.get("kind"), "base": result.get("base"),
                     "delta_stats": result.get("delta"), "name": name})
        timing, stored, _label = pgbr_backup("incr")
        rows.append({"step": step, "tool": "pgbackrest-lz4 incr", "seconds": timing["seconds"], "stored_bytes": stored,
                     "cpu_seconds": timing["cpu_seconds"]})
        if number == len(DELTA_STEPS):
            timing, stored, _label = pgbr_backup("diff")
            rows.append({"step": step + " (diff: since full)", "tool": "pgbackrest-lz4 diff",
                         "seconds": timing["seconds"], "stored_bytes": stored, "cpu_seconds": timing["cpu_seconds"]})
    # The last walrus delta restores (full + d1 + d2) to the source's data.
    last = [r for r in rows if r["tool"] == "walrus-https delta"][-1]
    target = os.path.join(ctx.workdir, "restore-delta-r%d" % rep, "pgdata")
    postgres_dir(os.path.dirname(target))
    postgres_dir(target, mode=0o700)
    cmd, env, cwd = walrus.restore({"id": last["name"]}, target)
    timing, _stdout = timed_step(ctx, cmd, env, cwd)
    last["restore_seconds"] = timing["seconds"]
    last["verify"] = verify_walrus(ctx, walrus, target, checksum)
    shutil.rmtree(os.path.dirname(target), ignore_errors=True)
    return rows


def delta_table(rows_by_rep):
    """Medians over repetitions, per (step, tool); ratios to walrus's row of the same change."""
    groups = collections.OrderedDict()
    for rows in rows_by_rep:
        for r in rows:
            groups.setdefault((r["scale"], r["step"], r["tool"]), []).append(r)
    med = collections.OrderedDict()
    for key, items in groups.items():
        med[key] = {"seconds": statistics.median(i["seconds"] for i in items),
                    "stored_bytes": int(statistics.median(i["stored_bytes"] for i in items)),
                    "cpu_seconds": statistics.median(i["cpu_seconds"] for i in items), "n": len(items)}
    header = ["scale", "change", "tool", "seconds", "peer s / walrus s", "stored MB", "peer bytes / walrus bytes",
              "CPU s"]
    rows = []
    for (scale, step, tool), m in med.items():
        base_step = step.split(" ")[0]
        ref = med.get((scale, base_step, "walrus-https delta" if base_step != "full" else "walrus-https full"))
        is_ref = ref is m
        rows.append([str(scale), step, tool, "%.2f" % m["seconds"],
                     "-" if is_ref or not ref else "%.2f" % (m["seconds"] / ref["seconds"]),
                     "%.2f" % (m["stored_bytes"] / 1048576.0),
                     "-" if is_ref or not ref else "%.2f" % (m["stored_bytes"] / float(max(1, ref["stored_bytes"]))),
                     "%.2f" % m["cpu_seconds"]])
    return header, rows, med


def publish_delta(args, report, started):
    report["bench_seconds"] = round(time.time() - started, 1)
    header, rows, med = delta_table(report["delta_runs"])
    report["delta_medians"] = [dict(zip(("scale", "step", "tool"), k), **v) for k, v in med.items()]
    targets = {}
    for (scale, step, tool), m in med.items():
        if tool != "pgbackrest-lz4 incr":
            continue
        w = med.get((scale, step, "walrus-https delta"))
        if w:
            targets["scale %d %s: stored bytes within 1.2x of pgBackRest incr" % (scale, step)] = {
                "walrus_over_peer": round(w["stored_bytes"] / float(max(1, m["stored_bytes"])), 3),
                "met": w["stored_bytes"] <= 1.2 * m["stored_bytes"]}
            targets["scale %d %s: time no slower than pgBackRest incr" % (scale, step)] = {
                "walrus_over_peer": round(w["seconds"] / m["seconds"], 3), "met": w["seconds"] <= m["seconds"]}
    report["targets"] = targets
    print()
    print("Delta backups, %s, %s CPUs, medians of %d" % (report["environment"]["postgresql"],
                                                        report["environment"]["cpus"], args.repeat))
    print(render_text(header, rows))
    for name, t in targets.items():
        print("target: %-70s %s  walrus/peer=%s" % (name, "MET" if t["met"] else "NOT MET", t["walrus_over_peer"]))
    for f in report["failures"]:
        print("FAILED: %s" % f[:300])
    verify = [r.get("verify") for rows in report["delta_runs"] for r in rows if r.get("verify")]
    out = ["# Delta backup benchmark, %s" % report["date"], "", "Command: `%s`" % report["command"], "",
           "walrus backup-push --delta --jobs 4 (lz4, https) against pgBackRest %s --process-max=4 --compress-type=lz4 "
           "(https), same SeaweedFS. After a full backup by each, 1%% and then another 10%% of pgbench_accounts' rows "
           "(contiguous aid ranges) are updated, then checkpointed. pgBackRest incr is based on its previous backup, "
           "diff on its full; a walrus delta on the previous walrus backup. Ratios: peer divided by walrus "
           "(above 1 = peer slower / bigger). Medians of %d." % (report["environment"]["pgbackrest"], args.repeat), "",
           render_md(header, rows), "", "## Targets", ""]
    out += ["- %s: %s (walrus/peer = %s)" % (n, "met" if t["met"] else "NOT met", t["walrus_over_peer"])
            for n, t in targets.items()]
    out += ["", "## Verification", ""] + ["- %s" % json.dumps(v, sort_keys=True) for v in verify]
    out += ["", "## Sources", ""] + ["- %s" % json.dumps(f, sort_keys=True) for f in report["sources"]]
    write_results(args.out, "backup-delta", args.quick, report, "\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------
# Where walrus spends its time (py-spy)
# ---------------------------------------------------------------------------------------------

def pyspy_profile(ctx, tool, facts):
    """py-spy over backup-push and backup-fetch (walrus over http, not timed in the table).
    Returns, per command: wall seconds, samples, the top functions by own (leaf) samples and the
    top frames by inclusive samples, and the split by thread."""
    if not os.access(PYSPY, os.X_OK):
        return {"error": "py-spy not installed at %s (bench/setup_peers.sh installs it)" % PYSPY}
    out = {}
    set_archive_command(ctx.source, tool.archive_command())
    name = "profile-s%d" % ctx.scale
    target = os.path.join(ctx.workdir, "restore-profile", "pgdata")
    postgres_dir(os.path.dirname(target))
    postgres_dir(target, mode=0o700)
    env = tool.env()
    for label, cmd in (("backup-push", [WALRUS, "backup-push", ctx.source.datadir, "--jobs", "4", "--name", name]),
                       ("backup-fetch", [WALRUS, "backup-fetch", name, target, "--jobs", "4"])):
        raw = os.path.join(ctx.workdir, "pyspy-%s.txt" % label)
        os.sync()
        t0 = time.monotonic()
        # py-spy runs as root (ptrace); the command as postgres, with its environment.
        res = subprocess.run([PYSPY, "record", "--subprocesses", "--threads", "--idle", "--rate", "200", "--format",
                              "raw", "--output", raw, "--nonblocking", "--", "runuser", "-u", "postgres", "--",
                              "env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] + cmd,
                             capture_output=True, text=True, cwd="/tmp")
        wall = time.monotonic() - t0
        if res.returncode != 0 or not os.path.exists(raw):
            out[label] = {"error": (res.stdout + res.stderr)[-1500:]}
            continue
        out[label] = analyse_pyspy(raw, wall)
    shutil.rmtree(os.path.dirname(target), ignore_errors=True)
    return out


_SOURCE_CACHE = {}


def _source_line(path, line):
    """The text of a walrus source line (py-spy names frames by file:line; a C call such as
    os.open or digest.update shows as the Python line that made it)."""
    if path not in _SOURCE_CACHE:
        try:
            with open(path) as handle:
                _SOURCE_CACHE[path] = handle.read().splitlines()
        except OSError:
            _SOURCE_CACHE[path] = []
    lines = _SOURCE_CACHE[path]
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")


def walrus_package_dir():
    return subprocess.run([os.path.join(VENV_BIN, "python"), "-c",
                           "import walrus, os; print(os.path.dirname(walrus.__file__))"],
                          capture_output=True, text=True).stdout.strip()


def classify(frames, pkg):
    """One sampled stack (root first) -> a category of where the time goes."""
    leaf = frames[-1]
    text = ";".join(frames)
    m = FRAME.match(leaf)
    func, fname = (m.group("func"), m.group("file")) if m else (leaf, "")
    if func in ("Condition.wait", "_worker") and "thread.py" in fname or "Condition.wait" in leaf \
            or "Lock.acquire" in leaf or func in ("Event.wait", "Thread.join", "Future.result"):
        return "waiting (thread pool, locks, futures)"
    if "wait_for_wal" in text:
        return "waiting for the stop segment in the repository (wait_for_wal)"
    if "_bootstrap" in fname or "importlib" in fname or "<frozen" in fname:
        return "Python imports"
    if "lz4" in fname:
        return "lz4 (de)compression"
    if "ssl.py" in fname:
        return "TLS (ssl read/write)"
    if any(x in fname for x in ("socket.py", "http/client.py", "urllib3/util/wait.py", "selectors.py")):
        return "network: socket send/recv (incl. waiting for SeaweedFS)"
    if any(x in text for x in ("botocore/", "urllib3/", "boto3/", "s3transfer/")):
        return "boto3/botocore/urllib3 (Python overhead of requests)"
    if "psycopg" in text or "walrus/pg.py" in text:
        return "PostgreSQL connection (backup start/stop, checkpoint)"
    if "tarfile.py" in fname:
        return "tarfile (Python)"
    if fname.startswith("walrus/") and pkg:
        line = _source_line(os.path.join(os.path.dirname(pkg), fname), int(m.group("line")))
        if "sha256" in line or "digest" in line:
            return "sha256"
        if "os.open" in line or "os.fchmod" in line or "os.utime" in line or "os.close" in line \
                or "mkdir" in line:
            return "file create/metadata (open O_CREAT|O_EXCL, chmod, utime, close)"
        if "_write_all" in line or "os.write" in line or "os.pwrite" in line:
            return "file write"
        if ".read(" in line or "os.read" in line or "readinto" in line or "preadv" in line:
            return "file read / tar member read"
        if "compress" in line or "encoder" in line.lower() or "decoder" in line.lower():
            return "lz4 (de)compression"
        return "walrus Python code (%s)" % fname
    if "json" in fname:
        return "JSON (manifest)"
    return "other (%s)" % (fname or leaf)[:60]


def analyse_pyspy(raw, wall, rate=200):
    """Collapsed stacks (py-spy --threads --idle --format raw) -> seconds by category, for the main
    thread (its wall time) and for the worker threads (summed over threads), plus top leaves."""
    pkg = walrus_package_dir()
    by_thread = {"main": collections.Counter(), "workers": collections.Counter()}
    leaves = collections.Counter()
    nthreads = set()
    total = 0
    with open(raw) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            frames = stack.split(";")
            threads = [i for i, f in enumerate(frames) if f.startswith("thread (")]
            if not threads:
                continue
            t = threads[-1]
            nthreads.add(frames[t])
            body = frames[t + 1:] or [frames[t]]
            kind = "main" if "MainThread" in frames[t] else "workers"
            by_thread[kind][classify(body, pkg)] += count
            leaves[body[-1]] += count
            total += count

    def secs(counter):
        return [{"category": k, "seconds": round(v / float(rate), 2)} for k, v in counter.most_common()]
    return {"wall_seconds": round(wall, 2), "samples": total, "threads": len(nthreads), "rate_hz": rate,
            "main_thread_seconds_by_category": secs(by_thread["main"]),
            "worker_thread_seconds_by_category": secs(by_thread["workers"]),
            "top_leaves": [{"frame": f, "seconds": round(c / float(rate), 2)} for f, c in leaves.most_common(12)]}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def table(summaries):
    header = ["scale", "tool", "backup s", "x walrus", "x floor", "backup RSS MB", "stored MB", "restore s",
              "x walrus", "x floor", "restore RSS MB", "+sync s", "restore+sync s", "verified"]
    rows = []
    by_scale = collections.OrderedDict()
    for s in summaries:
        by_scale.setdefault(s["scale"], []).append(s)
    for scale, items in by_scale.items():
        by = dict((s["tool"], s) for s in items if "backup_seconds" in s)
        ref, floor = by.get("walrus-http"), by.get("floor")

        def ratio(s, base, key):
            return "%.2f" % (s[key] / base[key]) if base and base.get(key) else "-"
        for s in items:
            if "backup_seconds" not in s:
                rows.append([str(scale), s["tool"], "failed"] + ["-"] * 10 + ["NO"])
                continue
            rows.append([str(scale), s["tool"], "%.2f" % s["backup_seconds"], ratio(s, ref, "backup_seconds"),
                         ratio(s, floor, "backup_seconds"), "%.0f" % s["backup_peak_rss_mb"],
                         "%.1f" % (s["stored_bytes"] / 1048576.0), "%.2f" % s["restore_seconds"],
                         ratio(s, ref, "restore_seconds"), ratio(s, floor, "restore_seconds"),
                         "%.0f" % s["restore_peak_rss_mb"], "%.2f" % s["restore_sync_after_seconds"],
                         "%.2f" % (s["restore_seconds"] + s["restore_sync_after_seconds"]),
                         "yes" if s["ok"] else "NO"])
    return header, rows


def targets(summaries):
    """walrus over http and over https (the peers' transport) against each peer, per scale."""
    out = {}
    for scale in sorted(set(s["scale"] for s in summaries)):
        by = dict((s["tool"], s) for s in summaries if s["scale"] == scale and "backup_seconds" in s)
        for me in ("walrus-http", "walrus-https"):
            w = by.get(me)
            if not w:
                continue
            for step in ("backup", "restore"):
                key = step + "_seconds"
                for peer, rule in (("pgbackrest-lz4", "at least as fast as"), ("pgbackrest-gz", "at least as fast as"),
                                   ("barman-cloud", "faster than")):
                    if peer in by:
                        ratio = by[peer][key] / w[key]
                        met = ratio > 1.0 if rule == "faster than" else ratio >= 1.0
                        out["scale %d: %s %s %s %s" % (scale, me, step, rule, peer)] = {
                            "peer_over_walrus": round(ratio, 2), "met": met}
    return out


def markdown_report(report, header, rows):
    out = ["# Base backup and restore benchmark, %s (%s mode)" % (report["date"], report["mode"]), "",
           "Command: `%s`" % report["command"], "",
           "Same machine (%s CPUs, shared with other work), same SeaweedFS on loopback, same pgbench database "
           "per scale; medians of %d repetition(s) (order rotated). Ratios: seconds divided by walrus-http's "
           "or the floor's (above 1 = slower). Restore = the tool's restore command into an empty directory "
           "(download, unpack, the tool's own checks; no WAL replay); `+sync s` = a syncfs after it, apart "
           "(walrus and pgBackRest make their files durable themselves; barman-cloud and tar do not), and "
           "`restore+sync s` the sum of the two medians. "
           "Peak RSS = the tool's process tree, sampled every 0.1 s." % (
               report["environment"]["cpus"], report["repeat"]), "",
           render_md(header, rows), "", "## Sources", ""]
    for f in report["sources"]:
        out.append("- scale %(scale)s: database %(database_bytes)s bytes, data directory without pg_wal "
                   "%(datadir_bytes_without_pg_wal)s bytes, %(relation_files)s relation files, loaded in "
                   "%(seconds_to_load)s s" % f)
    out += ["", "## Configuration of each tool", "", "| tool | configuration |", "|---|---|"]
    for name, note in report["tools"].items():
        out.append("| %s | %s |" % (name, note.replace("|", "\\|")))
    out += ["", "## Every repetition (seconds) and the machine's noise", "",
            "Busy fraction of all CPUs just before each step (after waiting up to %s s for quiet) and during it."
            % report["quiet_wait"], "",
            "| scale | tool | backup s (all) | restore s (all) | backup CPU s | restore CPU s | SeaweedFS CPU s "
            "backup/restore | busy before | busy during |", "|---|---|---|---|---:|---:|---|---|---|"]
    for s in report["summaries"]:
        if "backup_seconds" not in s:
            out.append("| %s | %s | failed: %s | | | | | | |" % (s["scale"], s["tool"],
                                                                str(s.get("error"))[:200].replace("|", "/")))
            continue
        out.append("| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |" % (
            s["scale"], s["tool"], s["backup_seconds_all"], s["restore_seconds_all"], s["backup_cpu_seconds"],
            s["restore_cpu_seconds"], s["backup_seaweedfs_cpu_seconds"], s["restore_seaweedfs_cpu_seconds"],
            s["backup_busy_before_all"] + s["restore_busy_before_all"],
            s["backup_busy_during_all"] + s["restore_busy_during_all"]))
    out += ["", "## Verification", ""]
    for s in report["summaries"]:
        for v in s.get("verify", ()):
            out.append("- scale %s %s: %s" % (s["scale"], s["tool"], json.dumps(v, sort_keys=True)))
    profiles = report.get("walrus_profiles") or ([report["walrus_profile"]] if report.get("walrus_profile") else [])
    for prof in profiles:
        out += ["", "## Where walrus spends its time (py-spy, walrus-http, scale %s; not in the table)" %
                prof.get("scale"), ""]
        for label in ("backup-push", "backup-fetch"):
            p = prof.get(label) or {}
            if "error" in p:
                out.append("- %s: profile failed: %s" % (label, p["error"][:300]))
                continue
            if not p:
                continue
            out += ["### %s: %s s wall under py-spy (200 Hz, %d threads)" % (label, p["wall_seconds"], p["threads"]),
                    "", "| main thread: where its wall time goes | s |", "|---|---:|"]
            out += ["| %s | %s |" % (c["category"], c["seconds"]) for c in p["main_thread_seconds_by_category"]]
            out += ["", "| worker threads (summed): where their time goes | s |", "|---|---:|"]
            out += ["| %s | %s |" % (c["category"], c["seconds"]) for c in p["worker_thread_seconds_by_category"]]
            out += ["", "Top leaf frames: " + "; ".join("%s %s s" % (t["frame"], t["seconds"])
                                                        for t in p["top_leaves"][:8]), ""]
    if report.get("targets"):
        out += ["", "## Targets", ""]
        for name, t in report["targets"].items():
            out.append("- %s: %s (peer/walrus = %s)" % (name, "met" if t["met"] else "NOT met", t["peer_over_walrus"]))
    if report.get("analysis"):
        out += ["", "## Analysis", ""] + ["- %s" % a for a in report["analysis"]]
    if report.get("failures"):
        out += ["", "## Failures", ""] + ["- %s" % f for f in report["failures"]]
    return "\n".join(out) + "\n"


def publish(args, report, started, final):
    report["bench_seconds"] = round(time.time() - started, 1)
    report["complete"] = final
    report["targets"] = targets(report["summaries"])
    header, rows = table(report["summaries"])
    print()
    print("Base backup and restore, %s, %s CPUs, medians of %d%s" % (
        report["environment"]["postgresql"], report["environment"]["cpus"], args.repeat,
        "" if final else " (scales so far)"))
    print(render_text(header, rows))
    for name, t in report["targets"].items():
        print("target: %-60s %s  peer/walrus=%s" % (name, "MET" if t["met"] else "NOT MET", t["peer_over_walrus"]))
    for f in report["failures"]:
        print("FAILED: %s" % f[:300])
    write_results(args.out, "backup", args.quick, report, markdown_report(report, header, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale 20 only")
    parser.add_argument("--scales", help="comma-separated pgbench scales (default 20,100,300; 20 with --quick)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions per tool and scale, medians reported (default 3 with --quick, 1 in full "
                             "mode, whose runs are long; 0 with --profile: the profile only)")
    parser.add_argument("--baseline-walrus", metavar="PATH",
                        help="also measure this walrus executable (tool %s, http; e.g. a checkout before a change: "
                             "its venv must be executable by postgres)" % BASELINE)
    parser.add_argument("--only", help="comma-separated tools (%s; default %s)" % (", ".join(TOOL_NAMES),
                                                                                     ",".join(DEFAULT_TOOLS)))
    parser.add_argument("--quiet-wait", type=int, default=10,
                        help="seconds to wait, before each timed step, for other load on the machine to settle")
    parser.add_argument("--profile", dest="profile", action="store_true", default=True,
                        help="profile walrus backup-push/backup-fetch with py-spy at the last scale (default)")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--no-setup", action="store_true", help="do not run bench/setup_peers.sh")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories (debugging)")
    parser.add_argument("--out", default=RESULTS, help="directory for the JSON and Markdown results")
    parser.add_argument("--render", metavar="JSON", help="only re-render the table and Markdown of a results file")
    parser.add_argument("--scenario", choices=("base", "delta"), default="base",
                        help="base: full backup and restore of every tool (default); delta: walrus --delta "
                             "against pgBackRest incr/diff after 1%% and 10%% changes")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as handle:
            report = json.load(handle)
        args.quick, args.repeat = report["mode"] == "quick", report["repeat"]
        publish(args, report, time.time() - report.get("bench_seconds", 0), final=report.get("complete", True))
        return 0
    if args.repeat is None:
        args.repeat = 3 if args.quick else 1
    default_scales = ("20" if args.quick else "50") if args.scenario == "delta" else ("20" if args.quick else "20,100,300")
    scales = [int(s) for s in (args.scales or default_scales).split(",")]
    if args.scenario == "delta":
        return main_delta(args, scales)
    if os.geteuid() != 0:
        parser.error("run as root (servers and tools run as the postgres user)")
    names = args.only.split(",") if args.only else DEFAULT_TOOLS + ([BASELINE] if args.baseline_walrus else [])
    unknown = set(names) - set(TOOL_NAMES + ([BASELINE] if args.baseline_walrus else []))
    if unknown:
        parser.error("unknown tool(s): %s" % ", ".join(sorted(unknown)))
    if not args.no_setup:
        run_setup_peers()
    install_signal_handlers()
    ctx = Context(args)
    started = time.time()
    report = new_report("backup.py", sys.argv[1:], args.quick)
    report.update(repeat=args.repeat, scales=scales, quiet_wait=args.quiet_wait, sources=[], summaries=[], runs=[],
                  failures=[])
    try:
        ctx.weed = BenchSeaweedFS(ctx.weed_dir, tls=True).start()
        log("SeaweedFS: %s and %s" % (ctx.weed.endpoint, ctx.weed.https_endpoint))
        for scale in scales:
            ctx.new_scale(scale)
            try:
                facts = make_source(ctx)
                report["sources"].append(facts)
                tools = [t for t in make_tools(ctx) if t.name in names]
                report["tools"] = dict((t.name, t.note) for t in tools)
                runs = collections.OrderedDict((t.name, []) for t in tools)
                for rep in range(args.repeat):
                    order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                    for tool in order:
                        try:
                            runs[tool.name].append(run_tool(ctx, tool, rep, facts))
                        except KeyboardInterrupt:
                            raise
                        except Exception as exc:  # one broken tool must not hide the others' results
                            log("%s s%d r%d: FAILED: %s" % (tool.name, scale, rep, exc))
                            report["failures"].append("scale %d %s rep %d: %s" % (scale, tool.name, rep,
                                                                                 str(exc)[-600:]))
                            runs[tool.name].append({"tool": tool.name, "rep": rep, "error": str(exc)[-2000:]})
                for name, items in runs.items():
                    if not items:  # --repeat 0: only the profile
                        continue
                    report["runs"].extend(dict(r, scale=scale) for r in items)
                    summary = summarize(items)
                    summary["scale"] = scale
                    report["summaries"].append(summary)
                if args.profile and scale == scales[-1] and "walrus-http" in names:
                    log("walrus profile (py-spy), scale %d" % scale)
                    try:
                        prof = pyspy_profile(ctx, Walrus(ctx, False), facts)
                        prof["scale"] = scale
                        report.setdefault("walrus_profiles", []).append(prof)
                    except Exception as exc:
                        report["failures"].append("profile: %s" % str(exc)[-600:])
            finally:
                ctx.end_scale()
            if scale != scales[-1]:
                publish(args, report, started, final=False)  # a later scale failing keeps these results
    finally:
        ctx.cleanup()
    publish(args, report, started, final=True)
    return 0 if all(s["ok"] for s in report["summaries"]) and not report["failures"] else 1


def main_delta(args, scales):
    if os.geteuid() != 0:
        raise SystemExit("run as root (servers and tools run as the postgres user)")
    if not args.no_setup:
        run_setup_peers()
    install_signal_handlers()
    ctx = Context(args)
    started = time.time()
    report = new_report("backup.py", sys.argv[1:], args.quick)
    report.update(scenario="delta", repeat=args.repeat, scales=scales, sources=[], delta_runs=[], failures=[])
    try:
        ctx.weed = BenchSeaweedFS(ctx.weed_dir, tls=True).start()
        for scale in scales:
            ctx.new_scale(scale)
            try:
                report["sources"].append(make_source(ctx))
                for rep in range(args.repeat):
                    try:
                        rows = run_delta_rep(ctx, rep)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        log("delta s%d r%d: FAILED: %s" % (scale, rep, exc))
                        report["failures"].append("scale %d rep %d: %s" % (scale, rep, str(exc)[-600:]))
                        continue
                    report["delta_runs"].append([dict(r, scale=scale, rep=rep) for r in rows])
            finally:
                ctx.end_scale()
    finally:
        ctx.cleanup()
    publish_delta(args, report, started)
    ok = all(r["verify"]["ok"] for rows in report["delta_runs"] for r in rows if r.get("verify"))
    return 0 if ok and not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
