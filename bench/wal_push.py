#!/usr/bin/env python3
"""WAL archiving benchmark: how long PostgreSQL's own archiver takes to drain the same queue of
real WAL segments with walrus and with its peers, on the same machine and the same SeaweedFS.

Method (one run per archiver):
  1. Once: a template cluster (archive_mode=on, archive_command=/bin/false) gets real WAL from
     `pgbench -i` and then batched UPDATEs of pgbench_accounts (random filler) until exactly N
     segments are marked .ready; it is stopped cleanly. Every archiver drains a copy of this
     data directory, so every archiver ships the very same N segments (same bytes).
  2. Per archiver: copy the template, set archive_command = 'test ! -f PAUSE && <archiver>',
     create PAUSE, start the server with the archiver's environment (credentials never go into
     postgresql.conf), let the archiver fail and go to sleep, then remove PAUSE and send SIGHUP
     to the postmaster (what pg_reload_conf() does: it sets the archiver's latch) and time until
     no .ready file is left. pg_stat_archiver must then show N more archived and no new failure,
     and the repository must hold N WAL objects.
  3. The walrus fast path: a look-ahead push records the next segments as stored; each later
     `walrus wal-push` of such a segment is timed on its own (as the postgres user, via sh -c as
     PostgreSQL calls it; the record is put back before each call).
  4. Where walrus spends its time: import times (-X importtime), the phases of one full push
     (imports, client, identity, compress, upload) and a timestamped archiver timeline.

Usage: .venv/bin/python bench/wal_push.py [--segments 64] [--quick] [--only NAME,...] [--repeat R]
       [--baseline-walrus COMMAND]   (repetitions run round-robin over the archivers)
Peers are installed (idempotently) by bench/setup_peers.sh.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (VENV_BIN, WALRUS, RESULTS, WAL_NAME, BenchSeaweedFS, barman_env,  # noqa: E402
                    barman_wal_archive_command, base_env, busy_fraction, chown_tree, install_signal_handlers, log,
                    kill_leftovers, new_report, pgbackrest_config, proc_cpu_seconds, render_md,
                    render_text, run_as_postgres, run_setup_peers, summarize_ms, system_cpu, wait_for_quiet,
                    stop_clusters, stop_seaweed, weed_workdir, write_file, write_results, pg_start)
from tools.pgcluster import Cluster, as_postgres, chown_postgres, scratch_dir  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Archivers: each returns (real archive command with %p/%f, extra environment for the postmaster)
# ---------------------------------------------------------------------------------------------

class Archiver(object):
    def __init__(self, name, label, setup, quick=True, s3=True, note=""):
        self.name, self.label, self.setup, self.quick, self.s3, self.note = name, label, setup, quick, s3, note


def _walrus(ctx, run, https=False, walrus=WALRUS, **extra):
    bucket = ctx.new_bucket()
    env = ctx.weed.https_env() if https else dict(ctx.weed.env())
    env["WALRUS_REPO"] = "s3://%s/cluster" % bucket
    env.update(extra)
    run.repo = ("s3", bucket, "cluster/")
    return "%s wal-push %%p" % walrus, env


def setup_walrus_s3_baseline(ctx, run):
    return _walrus(ctx, run, walrus=ctx.args.baseline_walrus)


def setup_walrus_s3(ctx, run):
    return _walrus(ctx, run)


def setup_walrus_s3_https(ctx, run):
    return _walrus(ctx, run, https=True)


def setup_walrus_s3_nolookahead(ctx, run):
    return _walrus(ctx, run, WALRUS_LOOKAHEAD="0")


def setup_walrus_fs(ctx, run):
    repo = os.path.join(run.dir, "walrus-repo")
    os.makedirs(repo)
    chown_postgres(repo)
    run.repo = ("fs", repo)
    return "%s wal-push %%p" % WALRUS, {"WALRUS_REPO": repo}


def setup_cp(ctx, run):
    dest = os.path.join(run.dir, "cp-archive")
    os.makedirs(dest)
    chown_postgres(dest)
    run.repo = ("fs", dest)
    return "test ! -f %s/%%f && cp %%p %s/%%f" % (dest, dest), {}


def _pgbackrest(ctx, run, asynchronous, extra=()):
    bucket = ctx.new_bucket()
    conf = os.path.join(run.dir, "pgbackrest.conf")
    extra = (["archive-async=y", "process-max=4"] if asynchronous else []) + list(extra)
    # Credentials through pgBackRest's environment options, not in any file.
    env = pgbackrest_config(conf, ctx.weed, bucket, run.dir, run.cluster.datadir, run.cluster.port,
                            run.cluster.host, extra)
    run.repo = ("s3", bucket, "pgbackrest/archive/")
    run.after_start = lambda: as_postgres(["pgbackrest", "--config=" + conf, "--stanza=bench", "stanza-create"],
                                          env=dict(run.env), cwd="/tmp")
    return "pgbackrest --config=%s --stanza=bench archive-push %%p" % conf, env


def setup_pgbackrest_sync(ctx, run):
    return _pgbackrest(ctx, run, False)


def setup_pgbackrest_async(ctx, run):
    return _pgbackrest(ctx, run, True)


def setup_pgbackrest_sync_lz4(ctx, run):
    return _pgbackrest(ctx, run, False, ["compress-type=lz4"])


def _barman(ctx, run, flags=""):
    bucket = ctx.new_bucket()
    run.repo = ("s3", bucket, "barman/")
    return barman_wal_archive_command(ctx.weed, bucket, flags), barman_env(ctx.weed)


def setup_barman(ctx, run):
    return _barman(ctx, run)


def setup_barman_gzip(ctx, run):
    return _barman(ctx, run, "-z ")


ARCHIVERS = [
    Archiver("walrus-s3", "walrus -> S3 (http)", setup_walrus_s3,
             note="look-ahead 16, upload concurrency 4, lz4 (defaults)"),
    Archiver("walrus-fs", "walrus -> local dir", setup_walrus_fs, s3=False,
             note="fs repository: write, fsync, rename, fsync dir; look-ahead 16, lz4"),
    Archiver("walrus-s3-nolookahead", "walrus -> S3, WALRUS_LOOKAHEAD=0", setup_walrus_s3_nolookahead,
             note="one process per segment: what look-ahead buys"),
    Archiver("walrus-s3-https", "walrus -> S3 (https)", setup_walrus_s3_https, quick=False,
             note="same TLS endpoint as pgBackRest and barman-cloud"),
    Archiver("pgbackrest-sync", "pgBackRest archive-push (sync)", setup_pgbackrest_sync,
             note="defaults: compress-type=gz; https, path-style"),
    Archiver("pgbackrest-async", "pgBackRest archive-push (async, process-max 4)", setup_pgbackrest_async,
             note="archive-async=y, spool-path, process-max=4, gz"),
    Archiver("pgbackrest-sync-lz4", "pgBackRest archive-push (sync, lz4)", setup_pgbackrest_sync_lz4, quick=False,
             note="compress-type=lz4 (same codec as walrus)"),
    Archiver("barman-cloud", "barman-cloud-wal-archive", setup_barman,
             note="barman 3.19.1 defaults (no compression); https"),
    Archiver("barman-cloud-gzip", "barman-cloud-wal-archive -z", setup_barman_gzip, quick=False,
             note="gzip compression"),
    Archiver("cp", "cp (floor)", setup_cp, s3=False,
             note="test ! -f dest/%f && cp %p dest/%f (no fsync)"),
]


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

class Run(object):
    def __init__(self, name, directory):
        self.name = name
        self.dir = directory
        self.cluster = None
        self.env = None
        self.repo = None
        self.after_start = None


class Context(object):
    def __init__(self, args):
        self.args = args
        self.workdir = scratch_dir("walrus-bench-")
        chown_postgres(self.workdir)
        self.weed = None
        self.clusters = []
        self.template = None
        self.n = args.segments
        self.weed_dir = weed_workdir()

    def new_bucket(self):
        return self.weed.new_bucket()

    def base_env(self, extra):
        return base_env(extra)

    def start(self, cluster, env):
        pg_start(cluster, env)

    def cleanup(self):
        stop_clusters(self.clusters)
        kill_leftovers(self.workdir)
        stop_seaweed(self.weed, self.weed_dir)
        kill_leftovers(self.workdir)
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def ready_files(datadir):
    status = os.path.join(datadir, "pg_wal", "archive_status")
    return sorted(n for n in os.listdir(status) if n.endswith(".ready"))


def archiver_stats(cluster):
    row = cluster.psql("select archived_count, failed_count from pg_stat_archiver")
    archived, failed = row.split("|")
    return int(archived), int(failed)


def make_template(ctx):
    """A stopped cluster whose pg_wal holds exactly N .ready segments of real WAL."""
    n = ctx.n
    cluster = Cluster(os.path.join(ctx.workdir, "template", "pgdata"))
    ctx.clusters.append(cluster)
    cluster.initdb()
    cluster.configure(wal_level="replica", archive_mode="on", archive_command="'/bin/false'",
                      archive_timeout="0", max_wal_size="'4GB'", shared_buffers="'256MB'",
                      autovacuum="off")  # its WAL would complete extra segments during a slow drain
    ctx.start(cluster, ctx.base_env({}))
    started = time.time()
    scale = max(1, n // 8)
    cluster.pgbench("-i", "-q", "-s", str(scale))
    if len(ready_files(cluster.datadir)) > n:
        raise RuntimeError("pgbench -i -s %d alone made more than %d segments" % (scale, n))
    rows = scale * 100000
    step = 20000  # about 4 MB of WAL per batch (< one segment: the count can never skip past N)
    aid, batches = 0, 0

    def batch(size):
        nonlocal aid, batches
        if aid >= rows:
            aid = 0
        cluster.psql("update pgbench_accounts set abalance = abalance + 1, filler = md5(random()::text) "
                     "where aid > %d and aid <= %d" % (aid, aid + size))
        aid += size
        batches += 1
        if batches % 25 == 0:
            cluster.psql("checkpoint")  # full-page images after checkpoints, as on a real primary

    # With archiving on, shutdown switches to a new segment, which marks the current one .ready:
    # fill N-1 segments, then nearly fill the current one in small batches, then stop.
    while len(ready_files(cluster.datadir)) < n - 1:
        batch(step)
    seg_bytes = int(cluster.psql("select setting from pg_settings where name = 'wal_segment_size'"))
    while int(cluster.psql("select file_offset from pg_walfile_name_offset(pg_current_wal_lsn())")) \
            < seg_bytes - (1 << 20) and len(ready_files(cluster.datadir)) < n:
        batch(step // 10)
    ready = ready_files(cluster.datadir)
    if len(ready) != n - 1:
        raise RuntimeError("template has %d .ready files before shutdown, wanted %d" % (len(ready), n - 1))
    cluster.stop(mode="fast")
    ready = ready_files(cluster.datadir)
    if len(ready) != n:
        raise RuntimeError("template has %d .ready files after shutdown, wanted %d" % (len(ready), n))
    sizes = set(os.path.getsize(os.path.join(cluster.datadir, "pg_wal", r[:-6])) for r in ready)
    ctx.template = cluster
    ctx.segments = [r[:-6] for r in ready]
    info = {"segments": n, "segment_bytes": sorted(sizes), "pgbench_scale": scale, "update_batches": batches,
            "seconds_to_generate": round(time.time() - started, 1)}
    lz4_ratio = wal_compressibility(os.path.join(cluster.datadir, "pg_wal"), ctx.segments)
    if lz4_ratio:
        info["lz4_ratio"] = lz4_ratio
    zstd = zstd_compressibility(os.path.join(cluster.datadir, "pg_wal"), ctx.segments)
    if zstd:
        info["zstd1"] = zstd
    log("template: %s" % info)
    return info


def wal_compressibility(pg_wal, names):
    try:
        import lz4.frame
    except ImportError:
        return None
    raw = comp = 0
    for name in names[:: max(1, len(names) // 8)]:
        with open(os.path.join(pg_wal, name), "rb") as handle:
            data = handle.read()
        raw += len(data)
        comp += len(lz4.frame.compress(data))
    return round(raw / float(comp), 2)


def zstd_compressibility(pg_wal, names):
    """zstd level 1 against lz4 (walrus's default) on the same segments: ratio and CPU ms per
    segment of each. Fewer bytes means less work for the S3 server too (SeaweedFS here)."""
    try:
        import lz4.frame
        import zstandard
    except ImportError:
        return None
    raw = lz4_bytes = zstd_bytes = 0
    lz4_cpu = zstd_cpu = 0.0
    picked = names[:: max(1, len(names) // 8)]
    for name in picked:
        with open(os.path.join(pg_wal, name), "rb") as handle:
            data = handle.read()
        raw += len(data)
        t0 = time.process_time()
        lz4_bytes += len(lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX1MB, content_checksum=False))
        t1 = time.process_time()
        zstd_bytes += len(zstandard.ZstdCompressor(level=1).compress(data))
        t2 = time.process_time()
        lz4_cpu += t1 - t0
        zstd_cpu += t2 - t1
    return {"ratio": round(raw / float(zstd_bytes), 2), "lz4_ratio": round(raw / float(lz4_bytes), 2),
            "cpu_ms": round(zstd_cpu * 1000 / len(picked), 1), "lz4_cpu_ms": round(lz4_cpu * 1000 / len(picked), 1)}


def clone_template(ctx, run):
    datadir = os.path.join(run.dir, "pgdata")
    subprocess.run(["cp", "-a", ctx.template.datadir, datadir], check=True)
    os.sync()  # 1 GB of fresh copies must not be written back while a drain is timed
    cluster = Cluster(datadir)
    cluster.configure(unix_socket_directories="'%s'" % run.dir)
    run.cluster = cluster
    ctx.clusters.append(cluster)
    return cluster


def wait_archiver_asleep(cluster, timeout=30):
    """The archiver has failed (PAUSE exists) and is waiting on its latch, not in a retry sleep."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        _archived, failed = archiver_stats(cluster)
        wait = cluster.psql("select coalesce(wait_event, '') from pg_stat_activity where backend_type = 'archiver'")
        if failed != last:
            last, since = failed, time.time()
        elif failed > 0 and wait == "ArchiverMain" and time.time() - since > 1.2:
            return
        time.sleep(0.2)
    raise TimeoutError("archiver did not settle; log:\n%s" % cluster.log_tail())


def postmaster_pid(cluster):
    with open(os.path.join(cluster.datadir, "postmaster.pid")) as handle:
        return int(handle.readline())


def count_wal_objects(ctx, repo):
    if repo is None:
        return None
    if repo[0] == "fs":
        found = 0
        for _dirpath, _dirs, files in os.walk(repo[1]):
            found += sum(1 for f in files if WAL_NAME.match(f))
        return found
    _kind, bucket, prefix = repo
    pages = ctx.weed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(1 for page in pages for item in page.get("Contents", ())
               if WAL_NAME.match(item["Key"].rsplit("/", 1)[-1]))


def run_archiver(ctx, archiver, wrapper=None):
    run = Run(archiver.name, os.path.join(ctx.workdir, "run-" + archiver.name + "-" + uuid.uuid4().hex[:6]))
    os.makedirs(run.dir)
    os.chmod(run.dir, 0o755)
    chown_postgres(run.dir)
    cluster = clone_template(ctx, run)
    real, extra_env = archiver.setup(ctx, run)
    if wrapper:
        real = "%s %s" % (wrapper, real)
    pause = os.path.join(run.dir, "pause")
    write_file(pause, "", owner_postgres=False)
    command = "test ! -f %s && %s" % (pause, real)
    assert "'" not in command
    cluster.configure(archive_command="'%s'" % command)
    run.env = ctx.base_env(extra_env)
    try:
        ctx.start(cluster, run.env)
        if run.after_start:
            run.after_start()
        wait_archiver_asleep(cluster)
        background = wait_for_quiet(max_wait=ctx.args.quiet_wait)
        base_archived, base_failed = archiver_stats(cluster)
        status = os.path.join(cluster.datadir, "pg_wal", "archive_status")
        pid = postmaster_pid(cluster)
        weed_cpu0, sys0 = proc_cpu_seconds(ctx.weed.proc.pid), system_cpu()
        t0 = time.monotonic()
        os.unlink(pause)
        os.kill(pid, signal.SIGHUP)  # what pg_reload_conf() does; the archiver's latch is set
        deadline = t0 + ctx.args.timeout
        log_offset = os.path.getsize(cluster.logfile)
        next_log_check = t0 + 0.5
        while True:
            if not any(n.endswith(".ready") for n in os.listdir(status)):
                break
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError("%s: %d .ready left after %ds; log:\n%s" % (
                    archiver.name, len(ready_files(cluster.datadir)), ctx.args.timeout, cluster.log_tail()))
            if now > next_log_check:  # a failing archiver would retry for ever: stop at once
                next_log_check = now + 0.5
                with open(cluster.logfile, "rb") as handle:
                    handle.seek(log_offset)
                    if b"archive command failed" in handle.read():
                        raise RuntimeError("%s: archive_command failed during the run; log:\n%s" % (
                            archiver.name, cluster.log_tail()))
            time.sleep(0.002)
        seconds = time.monotonic() - t0
        weed_cpu, busy = proc_cpu_seconds(ctx.weed.proc.pid) - weed_cpu0, busy_fraction(sys0, system_cpu())
        archived, failed = archiver_stats(cluster)
        stored = count_wal_objects(ctx, run.repo)
        result = {"archiver": archiver.name, "label": archiver.label, "note": archiver.note,
                  "archive_command": real, "segments": ctx.n, "seconds": round(seconds, 3),
                  "seconds_per_segment": round(seconds / ctx.n, 4),
                  "archived": archived - base_archived, "failed_during_run": failed - base_failed,
                  "wal_objects_stored": stored, "machine_busy_before": background,
                  "machine_busy_during": busy, "seaweedfs_cpu_seconds": round(weed_cpu, 2)}
        # At least N: background WAL (checkpoints, hint bits) may complete one more segment during a long drain.
        ok = result["archived"] >= ctx.n and result["failed_during_run"] == 0 and (stored is None or stored >= ctx.n)
        result["ok"] = ok
        if not ok:
            log("%s: NOT OK %s\n%s" % (archiver.name, result, cluster.log_tail()))
        return result, run
    finally:
        if wrapper is None:
            finish_run(ctx, run)


def finish_run(ctx, run):
    if run.cluster is not None:
        run.cluster.stop(mode="immediate")
        if run.cluster in ctx.clusters:
            ctx.clusters.remove(run.cluster)
    kill_leftovers(run.dir)
    if not ctx.args.keep:
        shutil.rmtree(run.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The walrus fast path, and where walrus spends its time
# ---------------------------------------------------------------------------------------------

def find_records(state_root):
    """Look-ahead records under <pg_wal>/walrus/push (any layout): {relative path: name}."""
    found = {}
    for dirpath, _dirs, files in os.walk(state_root):
        for name in files:
            if WAL_NAME.match(name) and ".tmp." not in name:
                found[os.path.relpath(os.path.join(dirpath, name), state_root)] = name
    return found


def wait_records(state_root, want, timeout=120):
    """Wait until `want` records exist (the pusher may work in the background), then for the
    background pusher to go idle and exit."""
    deadline = time.monotonic() + timeout
    while len(find_records(state_root)) < want:
        if time.monotonic() > deadline:
            raise TimeoutError("only %d of %d look-ahead records after %ds" % (
                len(find_records(state_root)), want, timeout))
        time.sleep(0.005)
    return time.monotonic()


def fast_path(ctx, calls):
    """Time `walrus wal-push` calls that hit a look-ahead record (S3 repository)."""
    bench_dir = os.path.join(ctx.workdir, "fastpath")
    os.makedirs(bench_dir)
    os.chmod(bench_dir, 0o755)
    chown_postgres(bench_dir)
    datadir = os.path.join(bench_dir, "pgdata")
    subprocess.run(["cp", "-a", ctx.template.datadir, datadir], check=True)
    bucket = ctx.new_bucket()
    env = ctx.base_env(dict(ctx.weed.env(), WALRUS_REPO="s3://%s/cluster" % bucket))
    pg_wal = os.path.join(datadir, "pg_wal")
    first = ctx.segments[0]
    started = time.monotonic()
    run_as_postgres([WALRUS, "wal-push", "pg_wal/" + first], env, cwd=datadir)
    slow_call = time.monotonic() - started
    state = os.path.join(pg_wal, "walrus", "push")
    want = min(len(ctx.segments) - 1, 16)
    all_stored = wait_records(state, want) - started
    time.sleep(4)  # a background pusher exits after a few idle seconds: time the fast path alone
    kill_leftovers(bench_dir)
    by_path = find_records(state)
    records = sorted(by_path)
    if not records:
        raise RuntimeError("look-ahead wrote no records in %s" % state)
    saved = os.path.join(bench_dir, "saved")
    shutil.copytree(state, saved)
    chown_tree(saved)
    samples, via_sh = [], []
    baseline_py, baseline_cp = [], []
    cp_dest = os.path.join(bench_dir, "cpdest")
    os.makedirs(cp_dest)
    chown_postgres(cp_dest)
    for i in range(calls):
        rel = records[i % len(records)]
        name = by_path[rel]
        shutil.copy2(os.path.join(saved, rel), os.path.join(state, rel))
        chown_postgres(os.path.join(state, rel))
        use_sh = i % 2 == 1
        cmd = ["/bin/sh", "-c", "%s wal-push pg_wal/%s" % (WALRUS, name)] if use_sh else \
            [WALRUS, "wal-push", "pg_wal/" + name]
        t0 = time.monotonic()
        run_as_postgres(cmd, env, cwd=datadir)
        took = time.monotonic() - t0
        if os.path.exists(os.path.join(state, rel)):
            raise RuntimeError("fast path did not consume the record of %s" % name)
        if took > 0.1:
            log("fast path call for %s took %.0f ms: is it really the fast path?" % (name, took * 1000))
        (via_sh if use_sh else samples).append(took)
    for i in range(min(calls, 30)):
        t0 = time.monotonic()
        run_as_postgres([os.path.join(VENV_BIN, "python"), "-S", "-c", "pass"], env)
        baseline_py.append(time.monotonic() - t0)
        name = by_path[records[i % len(records)]]
        dest = os.path.join(cp_dest, name)
        if os.path.exists(dest):
            os.unlink(dest)
        t0 = time.monotonic()
        run_as_postgres(["/bin/sh", "-c", "test ! -f %s && cp pg_wal/%s %s" % (dest, name, dest)], env, cwd=datadir)
        baseline_cp.append(time.monotonic() - t0)
    imports = importtime(env, datadir, records[0], by_path, saved, state)
    hyper = hyperfine_fast_path(env, datadir, records[1 % len(records)], by_path, saved, state)
    kill_leftovers(bench_dir)
    shutil.rmtree(bench_dir, ignore_errors=True)
    return {"first_call_seconds": round(slow_call, 3), "seconds_until_lookahead_stored": round(all_stored, 3),
            "records": len(records),
            "direct_exec": summarize_ms(samples), "via_sh_c": summarize_ms(via_sh),
            "baseline_python_S_pass": summarize_ms(baseline_py), "baseline_cp_one_segment": summarize_ms(baseline_cp),
            "importtime_fast_path": imports, "hyperfine": hyper}


def parse_importtime(stderr, top=8):
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    total = sum(cum for cum, depth, _ in rows if depth == 1)
    tops = sorted((r for r in rows if r[1] == 1), reverse=True)[:top]
    return {"total_ms": round(total / 1000.0, 1),
            "top_level": [{"module": mod, "cumulative_ms": round(cum / 1000.0, 1)} for cum, _d, mod in tops]}


def importtime(env, datadir, rel, by_path, saved, state):
    shutil.copy2(os.path.join(saved, rel), os.path.join(state, rel))
    chown_postgres(os.path.join(state, rel))
    res = run_as_postgres([os.path.join(VENV_BIN, "python"), "-X", "importtime", WALRUS, "wal-push",
                           "pg_wal/" + by_path[rel]], env, cwd=datadir)
    return parse_importtime(res.stderr)


def hyperfine_fast_path(env, datadir, rel, by_path, saved, state):
    """Cross-check with hyperfine when it is installed: --prepare puts the record back."""
    if not shutil.which("hyperfine"):
        return None
    out = os.path.join(tempfile.gettempdir(), "walrus-hyperfine-%d.json" % os.getpid())
    prepare = "cp -p %s %s" % (os.path.join(saved, rel), os.path.join(state, rel))
    cmd = ["hyperfine", "-N", "--style", "none", "--runs", "40", "--warmup", "3", "--prepare", prepare,
           "--export-json", out, "%s wal-push pg_wal/%s" % (WALRUS, by_path[rel])]
    res = run_as_postgres(cmd, env, cwd=datadir, check=False)
    try:
        if res.returncode != 0:
            return {"error": res.stderr.strip()[-300:]}
        with open(out) as handle:
            data = json.load(handle)["results"][0]
        return {"mean_ms": round(data["mean"] * 1000, 1), "median_ms": round(data["median"] * 1000, 1),
                "min_ms": round(data["min"] * 1000, 1), "max_ms": round(data["max"] * 1000, 1),
                "runs": len(data["times"]), "cpu_ms": round((data["user"] + data["system"]) * 1000, 1)}
    finally:
        if os.path.exists(out):
            os.unlink(out)


PHASES_SCRIPT = r"""
import json, os, sys, time
t = [("start", time.perf_counter())]
def mark(what): t.append((what, time.perf_counter()))
from walrus import config, walnames, codec, catalog
mark("import walrus core (config, walnames, codec, catalog)")
from walrus.storage import open_storage
import walrus.storage.s3
mark("import S3 backend (boto3, botocore)")
settings = config.load({})
storage = open_storage(settings)
mark("create S3 client (session, endpoint, credentials)")
path = sys.argv[1]
name = os.path.basename(path)
with open(path, "rb") as h:
    data = h.read()
mark("read segment (16 MiB)")
import hashlib, lz4.frame
hashlib.sha256(data).digest()
mark("(alone) sha256 of the segment")
lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX1MB, content_checksum=False)
mark("(alone) lz4.frame.compress of the segment")
wn = walnames.parse(name)
sysid, seg, magic = walnames.read_long_header(data, wn)
catalog.ensure_identity(storage, sysid, seg, walnames.PAGE_MAGIC_TO_MAJOR.get(magic), path)
mark("repository identity (first request: connect + get/put)")
enc = codec.encode(data, settings.compression, settings.compression_level)
mark("compress lz4 (%d -> %d bytes)" % (len(data), len(enc)))
storage.put(wn.object_key(), enc)
mark("upload (put, If-None-Match)")
with open(sys.argv[2], "rb") as h:
    data2 = h.read()
wn2 = walnames.parse(os.path.basename(sys.argv[2]))
enc2 = codec.encode(data2, settings.compression, settings.compression_level)
mark("read + compress a second segment")
storage.put(wn2.object_key(), enc2)
mark("upload a second segment (warm connection)")
print(json.dumps([(what, round((b - a) * 1000, 1)) for (_w, a), (what, b) in zip(t, t[1:])]))
"""


CPU_SCRIPT = r"""
import json, os, resource, sys, time
from walrus import config, wal, walnames
from walrus.storage import open_storage
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def weed():
    with open("/proc/%s/stat" % sys.argv[1]) as h:
        f = h.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
settings = config.load({})
pusher = wal.Pusher(settings, open_storage(settings), os.path.dirname(sys.argv[2]))
pusher.push(sys.argv[2], walnames.parse(os.path.basename(sys.argv[2])))  # identity, connection
paths = sys.argv[3:]
c0, w0, t0 = cpu(), weed(), time.monotonic()
for path in paths:
    pusher.push(path, walnames.parse(os.path.basename(path)))
n = float(len(paths))
print(json.dumps({"segments": len(paths), "walrus_cpu_ms": round((cpu() - c0) * 1000 / n, 1),
                  "seaweedfs_cpu_ms": round((weed() - w0) * 1000 / n, 1),
                  "wall_ms": round((time.monotonic() - t0) * 1000 / n, 1)}))
"""


def cpu_budget(ctx, bench_dir, datadir, bucket, count=16):
    """CPU per segment of what a drain cannot avoid: the engine's push (read, SHA-256, lz4,
    signed PUT) in one process, one segment at a time, and SeaweedFS storing it."""
    script = os.path.join(bench_dir, "cpu_budget.py")
    write_file(script, CPU_SCRIPT)
    env = ctx.base_env(dict(ctx.weed.env(), WALRUS_REPO="s3://%s/cpu-budget" % bucket))
    paths = [os.path.join(datadir, "pg_wal", s) for s in ctx.segments[:count + 1]]
    res = run_as_postgres([os.path.join(VENV_BIN, "python"), script, str(ctx.weed.proc.pid)] + paths, env, cwd=datadir)
    return json.loads(res.stdout.strip().splitlines()[-1])


def walrus_phases(ctx):
    """One full push taken apart with the engine's own API (nothing in the engine is changed)."""
    bench_dir = os.path.join(ctx.workdir, "phases")
    os.makedirs(bench_dir)
    os.chmod(bench_dir, 0o755)
    chown_postgres(bench_dir)
    datadir = os.path.join(bench_dir, "pgdata")
    subprocess.run(["cp", "-a", ctx.template.datadir, datadir], check=True)
    script = os.path.join(bench_dir, "phases.py")
    write_file(script, PHASES_SCRIPT)
    out = {}
    bucket = ctx.new_bucket()
    env = ctx.base_env(dict(ctx.weed.env(), WALRUS_REPO="s3://%s/cluster" % bucket))
    seg1, seg2 = (os.path.join(datadir, "pg_wal", s) for s in ctx.segments[:2])
    t0 = time.monotonic()
    res = run_as_postgres([os.path.join(VENV_BIN, "python"), script, seg1, seg2], env, cwd=datadir)
    out["phases_ms"] = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_wall_ms"] = round((time.monotonic() - t0) * 1000, 1)
    # Import profile of the full (slow) path: a single push without look-ahead to a fresh prefix.
    env2 = ctx.base_env(dict(ctx.weed.env(), WALRUS_REPO="s3://%s/cluster2" % bucket, WALRUS_LOOKAHEAD="0"))
    t0 = time.monotonic()
    res = run_as_postgres([os.path.join(VENV_BIN, "python"), "-X", "importtime", WALRUS, "wal-push",
                           "pg_wal/" + ctx.segments[2]], env2, cwd=datadir)
    out["full_path_process_ms"] = round((time.monotonic() - t0) * 1000, 1)
    out["importtime_full_path"] = parse_importtime(res.stderr, top=10)
    # Plain process timings of a full push (no -X importtime), for reference.
    times = []
    for seg in ctx.segments[3:8]:
        t0 = time.monotonic()
        run_as_postgres([WALRUS, "wal-push", "pg_wal/" + seg], env2, cwd=datadir)
        times.append(time.monotonic() - t0)
    out["full_push_no_lookahead"] = summarize_ms(times)
    out["cpu_budget"] = cpu_budget(ctx, bench_dir, datadir, bucket)
    # Look-ahead at several upload concurrencies: one call for the first segment, then wait until
    # the other .ready segments (up to 16) are stored (in the call itself or by a background
    # pusher). Wall time, CPU of the whole machine (walrus + SeaweedFS + anything else) and of SeaweedFS.
    sweep = []
    want = min(len(ctx.segments) - 1, 16)
    for conc in (1, 2, 4, 8):
        kill_leftovers(bench_dir)
        shutil.rmtree(os.path.join(datadir, "pg_wal", "walrus"), ignore_errors=True)
        env3 = ctx.base_env(dict(ctx.weed.env(), WALRUS_REPO="s3://%s/sweep-%d" % (bucket, conc),
                                 WALRUS_UPLOAD_CONCURRENCY=str(conc)))
        time.sleep(0.5)
        s0, w0, t0 = system_cpu(), proc_cpu_seconds(ctx.weed.proc.pid), time.monotonic()
        run_as_postgres([WALRUS, "wal-push", "pg_wal/" + ctx.segments[0]], env3, cwd=datadir)
        first = time.monotonic() - t0
        done = wait_records(os.path.join(datadir, "pg_wal", "walrus", "push"), want) - t0
        s1, w1 = system_cpu(), proc_cpu_seconds(ctx.weed.proc.pid)
        cpu_all = (s1[0] - s0[0]) / float(os.sysconf("SC_CLK_TCK"))
        sweep.append({"upload_concurrency": conc, "segments": want + 1, "first_call_seconds": round(first, 3),
                      "seconds_until_all_stored": round(done, 3),
                      "machine_cpu_seconds": round(cpu_all, 2), "seaweedfs_cpu_seconds": round(w1 - w0, 2),
                      "ms_per_segment": round(done * 1000 / (want + 1), 1)})
    kill_leftovers(bench_dir)
    out["lookahead_call_by_concurrency"] = sweep
    shutil.rmtree(bench_dir, ignore_errors=True)
    return out


STAMP_WRAPPER = """#!/bin/bash
# Benchmark profiling only: log start/end of each archive_command call (bash builtins, no forks).
start=$EPOCHREALTIME
"$@"
rc=$?
echo "${@: -1} $start $EPOCHREALTIME $rc" >> %(log)s
exit $rc
"""


def archiver_timeline(ctx):
    """A walrus-s3 run with a timestamping wrapper (not in the table): slow calls (look-ahead
    pushes), fast calls, and the archiver's own gaps between calls."""
    logdir = os.path.join(ctx.workdir, "timeline")
    os.makedirs(logdir)
    chown_postgres(logdir)
    logpath = os.path.join(logdir, "calls.log")
    wrapper = os.path.join(logdir, "stamp.sh")
    write_file(wrapper, STAMP_WRAPPER % {"log": logpath}, mode=0o755)
    archiver = [a for a in ARCHIVERS if a.name == "walrus-s3"][0]
    result, run = run_archiver(ctx, archiver, wrapper=wrapper)
    try:
        calls = []
        with open(logpath) as handle:
            for line in handle:
                path, start, end, rc = line.split()
                calls.append((os.path.basename(path), float(start), float(end), int(rc)))
    finally:
        finish_run(ctx, run)
    calls = [c for c in calls if c[3] == 0]
    durations = [c[2] - c[1] for c in calls]
    slow = [d for d in durations if d > 0.1]
    fast = [d for d in durations if d <= 0.1]
    gaps = [b[1] - a[2] for a, b in zip(calls, calls[1:])]
    span = calls[-1][2] - calls[0][1] if calls else 0
    return {"run_seconds_with_wrapper": result["seconds"], "calls": len(calls),
            "slow_calls": len(slow), "slow_call_seconds": [round(d, 3) for d in slow],
            "fast_calls": summarize_ms(fast) if fast else None,
            "gap_between_calls": summarize_ms(gaps) if gaps else None,
            "seconds_in_slow_calls": round(sum(slow), 3), "seconds_in_fast_calls": round(sum(fast), 3),
            "seconds_in_gaps": round(sum(gaps), 3), "first_call_to_last_return": round(span, 3)}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def table(results):
    by = dict((r["archiver"], r) for r in results if r["seconds"])
    ref = by.get("walrus-s3")
    cp = by.get("cp")
    header = ["archiver", "segments", "seconds total", "s/segment", "x walrus-S3", "x cp", "ok"]
    rows = []
    for r in results:
        if not r["seconds"]:
            rows.append([r["label"], str(r["segments"]), "failed", "-", "-", "-", "NO"])
            continue
        rows.append([r["label"], str(r["segments"]), "%.2f" % r["seconds"], "%.4f" % r["seconds_per_segment"],
                     "%.2f" % (r["seconds"] / ref["seconds"]) if ref else "-",
                     "%.2f" % (r["seconds"] / cp["seconds"]) if cp else "-",
                     "yes" if r["ok"] else "NO"])
    return header, rows


def median_results(runs):
    """Several repetitions of one archiver -> the median run (all seconds kept)."""
    if any(r["seconds"] is None for r in runs):
        return [r for r in runs if r["seconds"] is None][0]
    runs = sorted(runs, key=lambda r: r["seconds"])
    mid = dict(runs[len(runs) // 2])
    mid["all_seconds"] = [r["seconds"] for r in runs]
    mid["ok"] = all(r["ok"] for r in runs)
    return mid


def targets(by, fast):
    out = {}
    w = by.get("walrus-s3")
    if not w:
        return out
    if "pgbackrest-sync" in by:
        ratio = by["pgbackrest-sync"]["seconds"] / w["seconds"]
        out["walrus-s3 >= 4x faster than pgBackRest sync"] = {"ratio": round(ratio, 2), "met": ratio >= 4}
    if "pgbackrest-async" in by:
        ratio = by["pgbackrest-async"]["seconds"] / w["seconds"]
        out["walrus-s3 faster than pgBackRest async"] = {"ratio": round(ratio, 2), "met": ratio > 1}
    if "cp" in by:
        ratio = w["seconds"] / by["cp"]["seconds"]
        out["walrus-s3 within 3x of cp"] = {"ratio": round(ratio, 2), "met": ratio <= 3}
    if fast:
        med = fast["direct_exec"]["median_ms"]
        out["fast path under 40 ms"] = {"median_ms": med, "met": med < 40}
    return out


def cpu_floor(report, by):
    """The shortest drain the machine's CPUs allow walrus-S3: every segment costs the engine's
    push, SeaweedFS storing it and one archive_command process (a record hit), all CPU-bound
    on loopback; divided over the CPUs. None without the profile."""
    budget = (report.get("walrus_profile") or {}).get("cpu_budget")
    hyper = (report.get("fast_path") or {}).get("hyperfine") or {}
    if not budget or "cpu_ms" not in hyper:
        return None
    per_segment = budget["walrus_cpu_ms"] + budget["seaweedfs_cpu_ms"] + hyper["cpu_ms"]
    cpus = report["environment"]["cpus"]
    seconds = report["wal"]["segments"] * per_segment / 1000.0 / cpus
    out = {"push_cpu_ms": budget["walrus_cpu_ms"], "seaweedfs_cpu_ms": budget["seaweedfs_cpu_ms"],
           "fast_path_call_cpu_ms": hyper["cpu_ms"], "cpu_ms_per_segment": round(per_segment, 1),
           "cpus": cpus, "floor_seconds": round(seconds, 2)}
    if "cp" in by:
        out["floor_x_cp"] = round(seconds / by["cp"]["seconds"], 2)
    if "walrus-s3" in by:
        out["walrus_s3_x_floor"] = round(by["walrus-s3"]["seconds"] / seconds, 2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=None, help="WAL segments per archiver (default 64; 16 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer segments, core archivers only, no extra variants")
    parser.add_argument("--only", help="comma-separated archiver names (%s)" % ", ".join(a.name for a in ARCHIVERS))
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per archiver, the median reported (default 3, 1 with --quick; the extra "
                             "variants run once unless named by --only)")
    parser.add_argument("--fast-path-calls", type=int, default=None, help="timed fast-path calls (default 100; 40 with --quick)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one drain may take")
    parser.add_argument("--quiet-wait", type=int, default=45,
                        help="seconds to wait, before each drain, for other load on the machine to settle")
    parser.add_argument("--no-profile", action="store_true", help="skip the walrus profile (phases, timeline)")
    parser.add_argument("--baseline-walrus", metavar="COMMAND",
                        help="also drain with this walrus command (e.g. an older version), for a same-run before/after")
    parser.add_argument("--no-setup", action="store_true", help="do not run bench/setup_peers.sh")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (debugging)")
    parser.add_argument("--out", default=RESULTS, help="directory for the JSON and Markdown results")
    args = parser.parse_args()
    if args.segments is None:
        args.segments = 16 if args.quick else 64
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.fast_path_calls is None:
        args.fast_path_calls = 40 if args.quick else 100
    if args.segments < 4:
        parser.error("--segments must be at least 4")
    if os.geteuid() != 0:
        parser.error("run as root (servers run as the postgres user through runuser)")
    chosen = [a for a in ARCHIVERS if (a.quick or not args.quick)]
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - set(a.name for a in ARCHIVERS)
        if unknown:
            parser.error("unknown archiver(s): %s" % ", ".join(sorted(unknown)))
        chosen = [a for a in ARCHIVERS if a.name in names]

    if args.baseline_walrus:
        baseline = Archiver("walrus-s3-baseline", "walrus -> S3 (http), baseline", setup_walrus_s3_baseline,
                            note="same settings as walrus -> S3, run by `%s`" % args.baseline_walrus)
        chosen.insert(1, baseline)
    if not args.no_setup:
        run_setup_peers()

    ctx = Context(args)

    install_signal_handlers()

    started = time.time()
    report = new_report("wal_push.py", sys.argv[1:], args.quick)
    try:
        ctx.weed = BenchSeaweedFS(ctx.weed_dir, tls=True).start()
        log("SeaweedFS: %s and %s" % (ctx.weed.endpoint, ctx.weed.https_endpoint))
        report["wal"] = make_template(ctx)
        # Round-robin: repetition i of every archiver before repetition i+1 of any, so that load
        # from other work on the machine spreads over all archivers instead of hitting one.
        runs = dict((a.name, []) for a in chosen)
        for i in range(args.repeat):
            for archiver in chosen:
                done = runs[archiver.name]
                if done and done[-1]["seconds"] is None:
                    continue  # it failed once: the others go on
                if done and not archiver.quick and not args.only:
                    continue  # an extra variant: one run tells what it costs, the core's medians carry the targets
                log("%s: run %d/%d" % (archiver.name, i + 1, args.repeat))
                try:
                    result, _run = run_archiver(ctx, archiver)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one broken archiver must not hide the others' results
                    log("%s: FAILED: %s" % (archiver.name, exc))
                    result = {"archiver": archiver.name, "label": archiver.label, "note": archiver.note,
                              "archive_command": "", "segments": ctx.n, "seconds": None,
                              "seconds_per_segment": None, "ok": False, "error": str(exc)[-2000:]}
                else:
                    log("%s: %.2f s, %.4f s/segment, ok=%s" % (archiver.name, result["seconds"],
                                                              result["seconds_per_segment"], result["ok"]))
                done.append(result)
        results = [median_results(runs[a.name]) for a in chosen]
        report["results"] = results
        fast = None
        if any(a.name.startswith("walrus") for a in chosen):
            log("walrus fast path: %d calls" % args.fast_path_calls)
            fast = fast_path(ctx, args.fast_path_calls)
            report["fast_path"] = fast
            if not args.no_profile:
                log("walrus profile: phases of one push, import times")
                report["walrus_profile"] = walrus_phases(ctx)
                log("walrus profile: archiver timeline (walrus-s3 with a timestamping wrapper)")
                report["walrus_timeline"] = archiver_timeline(ctx)
        by = dict((r["archiver"], r) for r in results if r["seconds"])
        report["targets"] = targets(by, fast)
        report["cpu_floor"] = cpu_floor(report, by)
    finally:
        ctx.cleanup()
    report["bench_seconds"] = round(time.time() - started, 1)

    header, rows = table(report["results"])
    text = render_text(header, rows)
    print()
    print("WAL push: %d segments of %s bytes each, PostgreSQL %s, %s CPUs" % (
        args.segments, "/".join(str(s) for s in report["wal"]["segment_bytes"]),
        report["environment"]["postgresql"], report["environment"]["cpus"]))
    print(text)
    if fast:
        print("\nwalrus fast path (record hit), %d calls: median %.1f ms, p90 %.1f ms (via sh -c: median %.1f ms); "
              "python -S -c pass: %.1f ms; cp of one segment: %.1f ms" % (
                  fast["direct_exec"]["n"] + fast["via_sh_c"]["n"], fast["direct_exec"]["median_ms"],
                  fast["direct_exec"]["p90_ms"], fast["via_sh_c"]["median_ms"],
                  fast["baseline_python_S_pass"]["median_ms"], fast["baseline_cp_one_segment"]["median_ms"]))
    for name, t in report["targets"].items():
        print("target: %-45s %s  %s" % (name, "MET" if t["met"] else "NOT MET",
                                        ", ".join("%s=%s" % kv for kv in t.items() if kv[0] != "met")))
    write_results(args.out, "wal_push", args.quick, report, markdown_report(report, header, rows))
    return 0 if all(r["ok"] for r in report["results"]) else 1


def markdown_report(report, header, rows):
    wal = report["wal"]
    out = ["# WAL push benchmark, %s (%s mode)" % (report["date"], report["mode"]), "",
           "Command: `%s`" % report["command"], "",
           "PostgreSQL's archiver drains the same %d real WAL segments (%s bytes each; lz4 ratio about %s) "
           "with each archiver; SeaweedFS on loopback; %s CPUs. Ratios are total seconds divided by "
           "walrus-S3's (or cp's): above 1 means slower." % (
               wal["segments"], "/".join(str(s) for s in wal["segment_bytes"]), wal.get("lz4_ratio", "?"),
               report["environment"]["cpus"]), "",
           render_md(header, rows), "", "| archiver | configuration |", "|---|---|"]
    for r in report["results"]:
        out.append("| %s | %s; `%s` |" % (r["label"], r["note"], r["archive_command"].replace("|", "\\|")))
    fast = report.get("fast_path")
    if fast:
        out += ["", "## walrus fast path (segment already pushed by look-ahead)", "",
                "| measurement | median ms | p90 ms | min ms | max ms | n |", "|---|---:|---:|---:|---:|---:|"]
        for key, label in (("direct_exec", "walrus wal-push (exec)"), ("via_sh_c", "walrus wal-push via sh -c"),
                           ("baseline_python_S_pass", "python -S -c pass (floor)"),
                           ("baseline_cp_one_segment", "sh -c 'test ! -f && cp' one segment")):
            s = fast[key]
            out.append("| %s | %s | %s | %s | %s | %s |" % (label, s["median_ms"], s["p90_ms"], s["min_ms"],
                                                           s["max_ms"], s["n"]))
        if fast.get("hyperfine") and "median_ms" in fast["hyperfine"]:
            h = fast["hyperfine"]
            out.append("| hyperfine -N (cross-check) | %s | - | %s | %s | %s |" % (h["median_ms"], h["min_ms"],
                                                                               h["max_ms"], h["runs"]))
    prof = report.get("walrus_profile")
    if prof:
        out += ["", "## Where a full walrus push spends its time", "", "| phase | ms |", "|---|---:|"]
        out += ["| %s | %s |" % (k, v) for k, v in prof["phases_ms"]]
        out += ["", "Import time of a full push (`python -X importtime`), total %s ms:" %
                prof["importtime_full_path"]["total_ms"], ""]
        out += ["- %s: %s ms" % (m["module"], m["cumulative_ms"]) for m in prof["importtime_full_path"]["top_level"]]
        s = prof["full_push_no_lookahead"]
        out += ["", "A full push of one segment (no look-ahead) as a process: median %s ms (n=%s)." % (
            s["median_ms"], s["n"])]
        sweep = prof.get("lookahead_call_by_concurrency")
        if sweep:
            out += ["", "Look-ahead: one call, then until all %d segments are stored, by upload concurrency "
                    "(CPU seconds of the whole machine, and of SeaweedFS alone):" % sweep[0]["segments"], "",
                    "| concurrency | first call s | all stored s | ms/segment | machine CPU s | SeaweedFS CPU s |",
                    "|---:|---:|---:|---:|---:|---:|"]
            out += ["| %s | %s | %s | %s | %s | %s |" % (x["upload_concurrency"], x["first_call_seconds"],
                                                       x["seconds_until_all_stored"], x["ms_per_segment"],
                                                       x["machine_cpu_seconds"], x["seaweedfs_cpu_seconds"])
                    for x in sweep]
    if fast:
        imp = fast["importtime_fast_path"]
        out += ["", "Fast path imports (`-X importtime`), total %s ms: %s." % (imp["total_ms"], ", ".join(
            "%s %s ms" % (m["module"], m["cumulative_ms"]) for m in imp["top_level"][:5]))]
    busy = [(r["label"], r.get("machine_busy_before"), r.get("seaweedfs_cpu_seconds")) for r in report["results"]
            if r.get("seconds")]
    if busy:
        out += ["", "The machine is shared: CPU busy fraction just before each drain (other work), and "
                "SeaweedFS CPU seconds during it: " + "; ".join("%s %s / %s s" % b for b in busy) + "."]
    tl = report.get("walrus_timeline")
    if tl:
        out += ["", "## Archiver timeline, walrus-S3 (timestamping wrapper, not in the table)", "",
                "- %d calls: %d over 100 ms (full pushes, or waits for the look-ahead pusher: %s s); "
                "the others median %s ms (a record hit, possibly after waiting for the pusher)" % (
                    tl["calls"], tl["slow_calls"], ", ".join(str(s) for s in tl["slow_call_seconds"]),
                    tl["fast_calls"]["median_ms"] if tl["fast_calls"] else "-"),
                "- time in slow calls %s s, in fast calls %s s, in the archiver between calls %s s "
                "(gap median %s ms)" % (tl["seconds_in_slow_calls"], tl["seconds_in_fast_calls"], tl["seconds_in_gaps"],
                                        tl["gap_between_calls"]["median_ms"] if tl["gap_between_calls"] else "-")]
    floor = report.get("cpu_floor")
    if floor:
        out += ["", "## CPU floor of a walrus-S3 drain", "",
                "Everything runs on this machine's %d CPUs, so a drain cannot be shorter than its CPU work "
                "divided by %d. Per segment: the engine's push (read, SHA-256, lz4, signed PUT; one process, "
                "one segment at a time) %s ms, SeaweedFS storing the object %s ms, one archive_command "
                "process that hits its record (hyperfine user+system) %s ms: %s ms of CPU per segment, "
                "%s s for %d segments%s. The measured walrus-S3 drain is %s x this floor." % (
                    floor["cpus"], floor["cpus"], floor["push_cpu_ms"], floor["seaweedfs_cpu_ms"],
                    floor["fast_path_call_cpu_ms"], floor["cpu_ms_per_segment"], floor["floor_seconds"],
                    wal["segments"], (" = %s x cp" % floor["floor_x_cp"]) if "floor_x_cp" in floor else "",
                    floor.get("walrus_s3_x_floor", "-"))]
        z = wal.get("zstd1")
        if z:
            out += ["", "Fewer bytes would also mean less SeaweedFS work: on 8 of these segments, zstd level 1 "
                    "(`compression = zstd`, `compression_level = 1`) compresses %s:1 in %s ms of CPU per segment, "
                    "lz4 (the default) %s:1 in %s ms." % (z["ratio"], z["cpu_ms"], z["lz4_ratio"], z["lz4_cpu_ms"])]
    if report.get("targets"):
        out += ["", "## Targets", ""]
        for name, t in report["targets"].items():
            out.append("- %s: %s (%s)" % (name, "met" if t["met"] else "NOT met",
                                          ", ".join("%s %s" % kv for kv in t.items() if kv[0] != "met")))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
