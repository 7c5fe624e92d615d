# SPDX-License-Identifier: GPL-3.0-or-later
"""Start a restored data directory with pg_ctl and wait until its recovery has ended.

Used by `backup-fetch --start` (the restore role) and by the restore drill. PostgreSQL refuses
to run as root, so these functions run as the PostgreSQL OS user.
"""
import os
import subprocess
import time

from . import pg
from .errors import StorageError, UsageError

# Written only when a restored data directory has none (Debian keeps them in /etc/postgresql):
# enough to start the server and connect locally as its OS user.
MINIMAL_CONF = "# written by walrus: the backup held no postgresql.conf (it lives outside the data directory)\n"
MINIMAL_HBA = ("# written by walrus: the backup held no pg_hba.conf; local connections of the OS user only\n"
               "local all all peer\n")


class ServerError(StorageError):
    """PostgreSQL did not start, or its recovery failed; the message holds the log's end."""


class Instance(object):
    """A server started from a data directory, reachable through its socket directory."""

    def __init__(self, datadir, bin_dir, logfile):
        self.datadir, self.bin_dir, self.logfile = datadir, bin_dir, logfile

    @property
    def port(self):
        return int(self._pid_line(3) or 5432)

    @property
    def socket_dir(self):
        """The first socket directory the running server announced (postmaster.pid)."""
        return (self._pid_line(4) or "/var/run/postgresql").split(",")[0].strip()

    def _pid_line(self, number):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as handle:
                lines = handle.read().splitlines()
        except OSError:
            return None
        return lines[number].strip() if len(lines) > number else None

    def connect(self, dbname="postgres"):
        return pg.connect(host=self.socket_dir, port=self.port, dbname=dbname, connect_timeout=10)

    def log_tail(self, lines=15):
        try:
            with open(self.logfile, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 8192))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no log at %s)" % self.logfile
        return "\n".join(text.splitlines()[-lines:])

    def running(self):
        return _pid_alive(os.path.join(self.datadir, "postmaster.pid"))


def _pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.readline().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def pg_bin(bin_dir, program):
    path = os.path.join(bin_dir, program)
    if not os.access(path, os.X_OK):
        raise UsageError("%s not found or not executable: give the PostgreSQL bin directory (--pg-bindir)" % path)
    return path


def ensure_config_files(datadir):
    """Write minimal postgresql.conf / pg_hba.conf / pg_ident.conf where the backup had none."""
    written = []
    for name, text in (("postgresql.conf", MINIMAL_CONF), ("pg_hba.conf", MINIMAL_HBA), ("pg_ident.conf", "")):
        path = os.path.join(datadir, name)
        if not os.path.exists(path):
            with open(path, "w") as handle:
                handle.write(text)
            os.chmod(path, 0o600)
            written.append(name)
    return written


def start(datadir, bin_dir, port=None, socket_dir=None, logfile=None, settings=None, timeout=300):
    """Start PostgreSQL on `datadir` and return an Instance once it accepts connections (for a
    recovery: once it is consistent; replay may still be running). port, socket_dir and
    `settings` go on the command line (-c name=value), so they hold for this start only; left
    out, the data directory's configuration decides."""
    if os.geteuid() == 0:
        raise UsageError("PostgreSQL cannot run as root: run this as the PostgreSQL OS user (e.g. runuser -u postgres)")
    datadir = os.path.abspath(datadir)
    if _pid_alive(os.path.join(datadir, "postmaster.pid")):
        raise UsageError("a server is already running on %s" % datadir)
    logfile = logfile or datadir.rstrip("/") + ".log"
    settings = dict(settings or {})
    if port:
        settings["port"] = int(port)
    if socket_dir:
        settings["unix_socket_directories"] = socket_dir
    options = ["-c %s='%s'" % (key, str(value).replace("'", "''")) for key, value in sorted(settings.items())]
    instance = Instance(datadir, bin_dir, logfile)
    # -w waits for "ready to accept connections"; a long replay before consistency can take a while.
    cmd = [pg_bin(bin_dir, "pg_ctl"), "-D", datadir, "-l", logfile, "-w", "-t", str(int(timeout)),
           "-o", " ".join(options), "start"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if proc.returncode != 0:
        if not instance.running() and _shut_down_at_target(instance):
            return instance  # recovery_target_action = shutdown: the server stopped where it was told to
        raise ServerError("PostgreSQL did not start on %s (pg_ctl exit %d): %s\nlast lines of %s:\n%s" % (
            datadir, proc.returncode, (proc.stdout.strip().splitlines() or [""])[-1], logfile, instance.log_tail()))
    return instance


def _shut_down_at_target(instance):
    """True when the server stopped cleanly while still in recovery (recovery_target_action =
    shutdown), as pg_control records it."""
    proc = subprocess.run([pg_bin(instance.bin_dir, "pg_controldata"), instance.datadir], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, universal_newlines=True, env=dict(os.environ, LC_ALL="C"), check=False)
    return any(line.startswith("Database cluster state:") and line.rstrip().endswith("shut down in recovery")
               for line in proc.stdout.splitlines())


def wait_recovery_end(instance, timeout=3600, poll=0.5):
    """Wait until the server has left recovery (promoted), paused at its target, or shut down at
    it. Returns {"state", "timeline", "replay_lsn", "last_replayed_xact_time"}."""
    deadline = time.monotonic() + timeout
    while True:
        if not instance.running():
            if _shut_down_at_target(instance):
                return {"state": "shutdown", "timeline": None, "replay_lsn": None, "last_replayed_xact_time": None}
            raise ServerError("PostgreSQL on %s stopped during recovery; last lines of %s:\n%s"
                              % (instance.datadir, instance.logfile, instance.log_tail()))
        try:
            server = instance.connect()
        except pg.PgError:
            server = None  # not consistent yet, or just restarting after promotion
        if server is not None:
            try:
                state = _recovery_state(server)
                if state is not None:
                    return state
            except pg.PgError:
                pass  # shut down between connect and query: the next turn sees it
            finally:
                server.close()
        if time.monotonic() > deadline:
            raise ServerError("recovery on %s did not end within %d s; last lines of %s:\n%s"
                              % (instance.datadir, timeout, instance.logfile, instance.log_tail()))
        time.sleep(poll)


def _recovery_state(server):
    last_xact = server.value("select pg_last_xact_replay_timestamp()::text")
    if not server.in_recovery():
        # The timeline of the WAL being written now: the new one after promotion.
        timeline = int(server.value("select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)
        return {"state": "promoted", "timeline": timeline, "replay_lsn": server.value("select pg_current_wal_lsn()::text"),
                "last_replayed_xact_time": last_xact}
    paused = server.value("select pg_get_wal_replay_pause_state() = 'paused'") if server.version_num >= 140000 \
        else server.value("select pg_is_wal_replay_paused()")
    if not paused:
        return None
    return {"state": "paused", "timeline": int(server.value("select timeline_id from pg_control_checkpoint()")),
            "replay_lsn": server.value("select pg_last_wal_replay_lsn()::text"), "last_replayed_xact_time": last_xact}


def start_and_recover(datadir, bin_dir, port=None, socket_dir=None, logfile=None, settings=None, timeout=3600):
    """Start a restored data directory and wait for the end of its recovery (backup-fetch --start,
    the restore module). Returns the recovery state plus seconds, logfile and config files written."""
    started = time.monotonic()
    written = ensure_config_files(datadir)
    instance = start(datadir, bin_dir, port, socket_dir, logfile, settings, timeout)
    state = wait_recovery_end(instance, timeout)
    state.update(seconds=round(time.monotonic() - started, 3), logfile=instance.logfile, config_files_written=written)
    if state["state"] != "shutdown":
        state.update(port=instance.port, socket_dir=instance.socket_dir)
    return state


def stop(instance, mode="fast", timeout=120):
    if not instance.running():
        return
    subprocess.run([pg_bin(instance.bin_dir, "pg_ctl"), "-D", instance.datadir, "-m", mode, "-w", "-t", str(timeout),
                    "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
