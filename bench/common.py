"""Shared pieces of the benchmarks in bench/ (wal_push.py, backup.py): the isolated SeaweedFS
with TLS, the peer tools' configuration (pgBackRest, barman-cloud), waiting for a quiet machine,
CPU and memory sampling, running things as the postgres user, cleanup, the engine fingerprint,
and writing tables and results files."""
import datetime
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.pgcluster import chown_postgres  # noqa: E402
from tools.seaweed import SeaweedFS  # noqa: E402

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
WALRUS = os.path.join(VENV_BIN, "walrus")
BARMAN_VENV = os.environ.get("BARMAN_VENV", "/opt/walrus-bench/barman-venv")
RESULTS = os.path.join(ROOT, "bench", "results")
WAL_NAME = re.compile(r"^[0-9A-F]{24}")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PG_BIN = "/usr/lib/postgresql/15/bin"


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def postgres_ids():
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def chown_tree(path):
    uid, gid = postgres_ids()
    for dirpath, dirs, files in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in dirs + files:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def write_file(path, text, mode=0o644, owner_postgres=True):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    if owner_postgres:
        chown_postgres(path)


def postgres_dir(path, mode=0o755):
    """Create a directory owned by the postgres user."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    chown_postgres(path)
    return path


def base_env(extra=None):
    """A clean environment for the servers and tools we start (nothing inherited by accident)."""
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/var/lib/postgresql", "TZ": "UTC"}
    env.update(extra or {})
    return env


def run_setup_peers():
    subprocess.run([os.path.join(ROOT, "bench", "setup_peers.sh")], check=True)
    if not os.access(WALRUS, os.X_OK):
        subprocess.run([os.path.join(ROOT, "tools", "install.sh"), "dev"], check=True)


# ---------------------------------------------------------------------------------------------
# SeaweedFS, isolated
# ---------------------------------------------------------------------------------------------

class BenchSeaweedFS(SeaweedFS):
    """tools.seaweed.SeaweedFS (which keeps each server's sockets in a private TMPDIR, so
    concurrent runs on this shared machine never break each other) with bench conveniences."""

    def https_env(self):
        """walrus/boto3 environment for the TLS endpoint (the one the peers use)."""
        return dict(self.env(), AWS_ENDPOINT_URL_S3=self.https_endpoint, AWS_CA_BUNDLE=self.cert)

    def new_bucket(self, prefix="bench-"):
        name = prefix + uuid.uuid4().hex[:10]
        self.create_bucket(name)
        # SeaweedFS allocates volumes on a bucket's first write (about 0.2 s here): pay that
        # before any clock runs, the same for every tool. (Not a WAL name: never counted.)
        self.client().put_object(Bucket=name, Key="bench-warmup", Body=b"warm")
        return name

    def stored_bytes(self, bucket, prefix="", match=None):
        """(objects, bytes) under bucket/prefix, optionally only keys for which match(key) is true."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        count = size = 0
        for page in pages:
            for item in page.get("Contents", ()):
                if match is None or match(item["Key"]):
                    count += 1
                    size += item["Size"]
        return count, size


def weed_workdir():
    """SeaweedFS data outside /tmp, away from the tests' scratch directories."""
    path = tempfile.mkdtemp(prefix="walrus-bench-weed-", dir="/var/tmp")
    os.chmod(path, 0o755)
    return path


# ---------------------------------------------------------------------------------------------
# Peer tools' configuration
# ---------------------------------------------------------------------------------------------

def pgbackrest_config(conf, weed, bucket, workdir, datadir, port, socket_dir, extra=()):
    """Write a pgBackRest configuration for stanza 'bench' whose repository is bucket on the
    TLS endpoint of weed (pgBackRest 2.45 needs TLS, DNS:localhost and path-style; see
    RECIPES.md). Log, lock and spool directories under workdir. Returns the environment with the
    credentials (pgBackRest's environment options: never in a file)."""
    for sub in ("pgbr-log", "pgbr-lock", "pgbr-spool"):
        postgres_dir(os.path.join(workdir, sub))
    lines = [
        "[global]",
        "repo1-type=s3",
        "repo1-path=/pgbackrest",
        "repo1-s3-bucket=%s" % bucket,
        "repo1-s3-endpoint=localhost",
        "repo1-storage-port=%d" % weed.https_port,
        "repo1-s3-region=us-east-1",
        "repo1-s3-uri-style=path",
        "repo1-storage-ca-file=%s" % weed.cert,
        "log-path=%s/pgbr-log" % workdir,
        "lock-path=%s/pgbr-lock" % workdir,
        "spool-path=%s/pgbr-spool" % workdir,
    ]
    lines += list(extra)
    lines += ["", "[bench]", "pg1-path=%s" % datadir, "pg1-port=%d" % port, "pg1-socket-path=%s" % socket_dir, ""]
    write_file(conf, "\n".join(lines), mode=0o640)
    return {"PGBACKREST_REPO1_S3_KEY": weed.access_key, "PGBACKREST_REPO1_S3_KEY_SECRET": weed.secret_key}


def barman_bin(name):
    return os.path.join(BARMAN_VENV, "bin", name)


def barman_env(weed):
    """barman-cloud (boto3) on the TLS endpoint: credentials and the CA through boto3's variables."""
    return dict(weed.env(), AWS_ENDPOINT_URL_S3=weed.https_endpoint, AWS_CA_BUNDLE=weed.cert)


def barman_wal_archive_command(weed, bucket, flags=""):
    return "%s --endpoint-url %s %ss3://%s/barman bench %%p" % (
        barman_bin("barman-cloud-wal-archive"), weed.https_endpoint, flags, bucket)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def run_as_postgres(cmd, env, cwd="/tmp", check=True):
    uid, gid = postgres_ids()
    res = subprocess.run(cmd, env=env, cwd=cwd, user=uid, group=gid, extra_groups=[],
                         capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError("%s exited %d: %s %s" % (" ".join(cmd), res.returncode, res.stdout[-2000:],
                                                    res.stderr[-3000:]))
    return res


def _children_map():
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    return children


def tree_rss_bytes(root_pid):
    """Sum of the resident set sizes of root_pid and all its descendants."""
    children = _children_map()
    todo, total = [root_pid], 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open("/proc/%d/statm" % pid) as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def timed_as_postgres(cmd, env, cwd="/tmp", poll=0.1, timeout=3600):
    """Run cmd as postgres; return (seconds, peak RSS of its process tree in bytes, stdout, stderr).
    The tree is sampled every `poll` seconds (short-lived children may be missed)."""
    uid, gid = postgres_ids()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, user=uid, group=gid, extra_groups=[], stdout=out, stderr=err)
    peak = 0
    try:
        while proc.poll() is None:
            peak = max(peak, tree_rss_bytes(proc.pid))
            if time.monotonic() - t0 > timeout:
                proc.kill()
                raise TimeoutError("%s: more than %d s" % (" ".join(cmd), timeout))
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - t0
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s %s" % (" ".join(cmd), proc.returncode, stdout[-2000:], stderr[-3000:]))
    return seconds, peak, stdout, stderr


def kill_leftovers(path):
    """Processes we started that still mention our unique scratch directory (e.g. a pgBackRest
    async worker): end them by PID."""
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            cwd = ""
        if path in cmdline or cwd == path or cwd.startswith(path + "/"):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def stop_clusters(clusters):
    """Stop every benchmark cluster immediately; one that fails to stop does not keep the others up."""
    for cluster in clusters:
        try:
            cluster.stop(mode="immediate")
        except Exception as exc:  # keep cleaning
            log("stop %s: %s" % (cluster.datadir, exc))


def stop_seaweed(weed, weed_dir):
    """Stop a benchmark's SeaweedFS and whatever still runs in its scratch directory, then remove it."""
    kill_leftovers(weed_dir)
    if weed is not None:
        try:
            weed.stop()
        except Exception as exc:  # keep cleaning
            log("stop SeaweedFS: %s" % exc)
    kill_leftovers(weed_dir)
    shutil.rmtree(weed_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Machine load
# ---------------------------------------------------------------------------------------------

def proc_cpu_seconds(pid):
    """user+system CPU seconds of one process (all its threads)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return 0.0


def system_cpu():
    """(busy, total) jiffies over all CPUs."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_fraction(before, after):
    total = after[1] - before[1]
    return round((after[0] - before[0]) / float(total), 3) if total else None


def wait_for_quiet(max_wait=45, threshold=0.25):
    """Other work on this machine (it is shared) distorts timings: wait a little for a quiet
    moment and report how busy the machine was just before the run (fraction of all CPUs)."""
    deadline = time.time() + max_wait
    while True:
        before = system_cpu()
        time.sleep(0.5)
        busy = busy_fraction(before, system_cpu())
        if busy is None or busy <= threshold or time.time() > deadline:
            return busy


# ---------------------------------------------------------------------------------------------
# Statistics, tables, results files
# ---------------------------------------------------------------------------------------------

def pct(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize_ms(values):
    return {"n": len(values), "median_ms": round(statistics.median(values) * 1000, 1),
            "mean_ms": round(statistics.mean(values) * 1000, 1), "p90_ms": round(pct(values, 0.9) * 1000, 1),
            "min_ms": round(min(values) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def render_text(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_md(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def environment_info():
    def cmd_out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except Exception:
            return None
    walrus_version = cmd_out([WALRUS, "--version"])
    # The engine is being changed while benchmarks run: fingerprint the installed code measured.
    engine = hashlib.sha256()
    pkg = subprocess.run([os.path.join(VENV_BIN, "python"), "-c", "import walrus, os; print(os.path.dirname(walrus.__file__))"],
                         capture_output=True, text=True).stdout.strip()
    for dirpath, dirs, files in sorted(os.walk(pkg)) if pkg else ():
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(dirpath, name), "rb") as handle:
                engine.update(name.encode() + handle.read())
    commit = cmd_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {"cpus": os.cpu_count(), "kernel": os.uname().release, "walrus": walrus_version, "git_commit": commit,
            "walrus_engine_sha256": engine.hexdigest()[:16] if pkg else None,
            "postgresql": cmd_out([os.path.join(PG_BIN, "postgres"), "--version"]),
            "pgbackrest": cmd_out(["pgbackrest", "version"]),
            "barman_cloud": cmd_out([barman_bin("barman-cloud-wal-archive"), "--version"]),
            "seaweedfs": cmd_out([os.path.join(VENV_BIN, "weed"), "version"]),
            "lz4": cmd_out(["lz4", "--version"])}


def new_report(script, argv, quick):
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": "quick" if quick else "full",
            "command": " ".join([".venv/bin/python", "bench/" + script] + list(argv)),
            "environment": environment_info()}


def write_results(out_dir, name, quick, report, markdown):
    """bench/results/<name>-<date>[-quick].json and .md; returns the stem."""
    os.makedirs(out_dir, exist_ok=True)
    stem = "%s-%s%s" % (name, datetime.date.today().isoformat(), "-quick" if quick else "")
    with open(os.path.join(out_dir, stem + ".json"), "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(out_dir, stem + ".md"), "w") as handle:
        handle.write(markdown)
    print("\nwrote %s.json and %s.md in %s" % (stem, stem, os.path.relpath(out_dir, os.getcwd())))
    return stem


def install_signal_handlers():
    """SIGTERM/SIGHUP unwind like Ctrl-C, so that every finally: block cleans up."""
    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def pg_start(cluster, env, options=""):
    """pg_ctl start as postgres with env as the postmaster's environment (so that archive and
    restore commands get their settings from it, not from postgresql.conf)."""
    from tools.pgcluster import as_postgres
    as_postgres([cluster.bin("pg_ctl"), "-D", cluster.datadir, "-l", cluster.logfile,
                 "-o", ("-p %d %s" % (cluster.port, options)).strip(), "-w", "-t", "300", "start"], env=env, cwd="/tmp")
