"""Real PostgreSQL clusters for tests, the demo and benchmarks: initdb/pg_ctl as the postgres
OS user, on a spare port, in a directory the postgres user owns."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_dir(prefix="walrus-"):
    """A directory under /tmp that the postgres user can use (pytest's tmp_path is root-only)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def chown_postgres(path):
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def as_postgres(cmd, **kwargs):
    """Run cmd as the postgres OS user (runuser when we are root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + list(cmd)
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kwargs)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), exc.returncode, exc.stdout, exc.stderr))


class Cluster(object):
    def __init__(self, datadir, port=None, bin_dir=None):
        self.datadir = datadir
        self.port = port or free_port()
        self.bin_dir = bin_dir or os.environ.get("WALRUS_TEST_PG_BIN", DEFAULT_BIN)
        self.logfile = datadir + ".log"

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def initdb(self, *extra):
        parent = os.path.dirname(self.datadir)
        os.makedirs(parent, exist_ok=True)
        chown_postgres(parent)
        as_postgres([self.bin("initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8", "--locale=C"] + list(extra))
        self.configure(port=self.port, listen_addresses="'127.0.0.1'",
                       unix_socket_directories="'%s'" % parent, fsync="off",
                       max_wal_size="'1GB'", checkpoint_timeout="'30min'")
        return self

    def configure(self, **settings):
        """Append settings to postgresql.auto.conf-style override file (postgresql.conf wins last-line)."""
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as handle:
            for key, value in settings.items():
                handle.write("%s = %s\n" % (key, value))

    @property
    def host(self):
        return os.path.dirname(self.datadir)

    def start(self, wait=True):
        as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-o", "-p %d" % self.port]
                    + (["-w", "-t", "120"] if wait else ["-W"]) + ["start"])
        return self

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t", "120", "stop"], check=False)

    def psql(self, sql, db="postgres"):
        out = as_postgres([self.bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                           "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql])
        return out.stdout.strip()

    def pgbench(self, *args):
        return as_postgres([self.bin("pgbench"), "-h", self.host, "-p", str(self.port), "-U", "postgres"]
                           + list(args) + ["postgres"])

    def basebackup(self, target):
        as_postgres([self.bin("pg_basebackup"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
                     "-D", target, "-X", "none", "-c", "fast", "--no-sync"])

    def wait_archived(self, wal_name, timeout=120):
        """Wait until pg_stat_archiver reports wal_name (or a later one) archived."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            last = self.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
            if last and last >= wal_name:
                return
            time.sleep(0.1)
        raise TimeoutError("%s not archived within %ds; archiver: %s\nlog tail:\n%s" % (
            wal_name, timeout, self.psql("select * from pg_stat_archiver"), self.log_tail()))

    def switch_wal(self):
        """Force a segment switch; return the name of the segment that was closed."""
        name = self.psql("select pg_walfile_name(pg_current_wal_lsn())")
        self.psql("select pg_switch_wal()")
        return name

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            res = as_postgres([self.bin("pg_isready"), "-h", self.host, "-p", str(self.port)], check=False)
            if res.returncode == 0:
                try:
                    if self.psql("select pg_is_in_recovery()") == "f":
                        return
                except RuntimeError:
                    pass
            time.sleep(0.2)
        raise TimeoutError("cluster %s did not finish recovery; log tail:\n%s" % (self.datadir, self.log_tail()))

    def log_tail(self, lines=40):
        try:
            with open(self.logfile) as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def destroy(self):
        self.stop(mode="immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
