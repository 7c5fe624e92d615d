# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore drills: the proof that the newest backup and the archive give the data back.

A drill restores a backup into a scratch directory, replays the archive to its end (or a
target), promotes, runs checks (the server is up, the canary row written on the primary is
there, pg_amcheck, the user's own SQL), measures RTO (restore + replay) and RPO (how old the
newest recovered transaction is), stores a report under drills/ in the repository and cleans up.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

from . import backup, codec, pg, restore, server, walnames
from .errors import UsageError, WalrusError
from .storage import open_storage

PREFIX = "drills/"
REPORT_FORMAT = "walrus-drill-report"
CANARY_TABLE = "walrus_drill_canary"
# What a drill's server must not do whatever its restored configuration says: take TCP
# connections, archive into the source repository, or use the original's socket directory.
DRILL_SETTINGS = {"listen_addresses": "", "archive_mode": "off"}


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def write_canary(settings, conninfo=None, timeout=300, storage=None):
    """On the primary: insert a canary row, switch WAL and wait until the segment holding it is
    in the repository. Returns {"token", "written_at", "wal"}."""
    storage = storage or open_storage(settings)
    token = uuid.uuid4().hex
    srv = pg.connect(**(conninfo or {}))
    try:
        if srv.in_recovery():
            raise UsageError("the canary must be written on the primary, and this server is in recovery")
        srv.execute("create table if not exists public.%s (token text primary key, "
                    "written_at timestamptz not null default clock_timestamp())" % CANARY_TABLE)
        written_at = srv.value("insert into public.%s (token) values (%%s) returning written_at::text" % CANARY_TABLE,
                               (token,))
        wal = srv.value("select pg_walfile_name(pg_switch_wal())")
    finally:
        srv.close()
    backup.wait_for_wal(storage, walnames.parse(wal), timeout)
    return {"token": token, "written_at": written_at, "wal": wal}


def parse_checks(pairs=(), checks_file=None):
    """User checks from NAME=SQL pairs and/or a JSON file holding a list of
    {"name", "sql", "database" (optional), "expect" (optional)}."""
    checks = []
    if checks_file:
        try:
            with open(checks_file) as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise UsageError("cannot read the checks file %s: %s" % (checks_file, exc))
        if not isinstance(loaded, list):
            raise UsageError("the checks file %s must hold a JSON list of {name, sql} objects" % checks_file)
        checks.extend(loaded)
    for pair in pairs:
        name, sep, sql = pair.partition("=")
        if not sep or not name.strip() or not sql.strip():
            raise UsageError("--check %r: use NAME=SQL" % pair)
        checks.append({"name": name.strip(), "sql": sql})
    for check in checks:
        if not isinstance(check, dict) or not check.get("name") or not check.get("sql"):
            raise UsageError("every check needs a name and sql: %r" % (check,))
        unknown = set(check) - {"name", "sql", "database", "expect"}
        if unknown:
            raise UsageError("check %s: unknown key(s) %s" % (check["name"], ", ".join(sorted(unknown))))
    return checks


def _passes(value, expect):
    if expect is not None:
        return str(value) == str(expect)
    return value not in (None, False, 0, "", "f", "false")


class _Checks(object):
    def __init__(self):
        self.items = []

    def add(self, name, ok, detail, seconds=0.0):
        """ok: True, False, or None for a check that was skipped."""
        self.items.append({"name": name, "ok": ok, "detail": detail, "seconds": round(seconds, 3)})
        return ok

    def run_sql(self, instance, check):
        started = time.monotonic()
        try:
            srv = instance.connect(check.get("database") or "postgres")
            try:
                value = srv.value(check["sql"])
            finally:
                srv.close()
        except WalrusError as exc:
            return self.add(check["name"], False, str(exc), time.monotonic() - started)
        ok = _passes(value, check.get("expect"))
        if ok:
            detail = "returned %r" % (value,)
        elif check.get("expect") is not None:
            detail = "returned %r (expected %r)" % (value, check["expect"])
        else:
            detail = "returned %r (expected a true value)" % (value,)
        return self.add(check["name"], ok, detail, time.monotonic() - started)


def _amcheck(instance, checks, timeout):
    program = os.path.join(instance.bin_dir, "pg_amcheck")
    if not os.access(program, os.X_OK):
        return checks.add("amcheck", None, "skipped: %s not found (PostgreSQL 14+ ships it)" % program)
    started = time.monotonic()
    try:
        proc = subprocess.run([program, "--install-missing", "--all", "-h", instance.socket_dir, "-p", str(instance.port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return checks.add("amcheck", False, "pg_amcheck did not finish within %d s" % timeout, time.monotonic() - started)
    lines = proc.stdout.strip().splitlines()
    detail = "no corruption found" if proc.returncode == 0 else "exit %d: %s" % (proc.returncode, " | ".join(lines[-5:]))
    return checks.add("amcheck", proc.returncode == 0, detail, time.monotonic() - started)


def run(settings, name="LATEST", bin_dir=None, scratch=None, port=5432, recovery=None, canary=None, user_checks=(),
        amcheck=True, server_settings=None, keep="never", jobs=4, start_timeout=3600, amcheck_timeout=3600,
        storage=None):
    """Run one drill and store its report. Returns the report; report["passed"] says whether every
    check held. A failed restore or start is a failed check in the report, not an exception."""
    if keep not in ("never", "on-failure", "always"):
        raise UsageError("keep must be never, on-failure or always")
    if not bin_dir:
        raise UsageError("a drill starts PostgreSQL: give its bin directory (--pg-bindir)")
    server.pg_bin(bin_dir, "pg_ctl")
    storage = storage or open_storage(settings)
    recovery = dict((k, v) for k, v in (recovery or {}).items() if v not in (None, "", False))
    if any(k in recovery for k in ("time", "lsn", "xid", "name", "immediate")):
        recovery.setdefault("action", "promote")  # a drill ends with a promoted, writable server
    restore.recovery_settings(recovery, "x")  # bad targets are refused before anything happens
    if scratch and os.path.exists(scratch) and os.listdir(scratch):
        raise UsageError("the drill's scratch directory %s is not empty" % scratch)
    started = time.time()
    drill_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + "-" + socket.gethostname().split(".")[0]
    scratch = os.path.abspath(scratch or tempfile.mkdtemp(prefix="walrus-drill-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    report = {"format": REPORT_FORMAT, "format_version": 1, "id": drill_id, "host": socket.gethostname(),
              "repository": storage.describe(), "requested_backup": name, "recovery": recovery,
              "started_at": _utc(started), "scratch": scratch, "port": int(port), "canary": canary}
    checks = _Checks()
    instance = None
    try:
        instance = _restore_and_recover(settings, storage, name, bin_dir, scratch, port, recovery, server_settings,
                                        jobs, start_timeout, report, checks)
        if instance is not None:
            _measure_rpo(instance, report, started)
            if canary:
                checks.run_sql(instance, {"name": "canary", "expect": "1",
                                          "sql": "select count(*) from public.%s where token = '%s'"
                                                 % (CANARY_TABLE, canary.replace("'", "''"))})
            if amcheck:
                _amcheck(instance, checks, amcheck_timeout)
            for check in user_checks:
                checks.run_sql(instance, check)
    finally:
        report["checks"] = checks.items
        report["passed"] = bool(checks.items) and all(c["ok"] is not False for c in checks.items)
        report["finished_at"] = _utc(time.time())
        if instance is not None:
            report["server_log_tail"] = instance.log_tail(20) if not report["passed"] else None
            server.stop(instance, mode="immediate")
        kept = keep == "always" or (keep == "on-failure" and not report["passed"])
        report["scratch_kept"] = kept
        if not kept:
            shutil.rmtree(scratch, ignore_errors=True)
    store_report(storage, report)
    return report


def _restore_and_recover(settings, storage, name, bin_dir, scratch, port, recovery, server_settings, jobs,
                         start_timeout, report, checks):
    """Restore, start and wait for the end of recovery, recording both as checks and the RTO in
    the report. Returns the running Instance, or None when either step failed."""
    datadir = os.path.join(scratch, "data")
    clock = time.monotonic()
    try:
        restored = restore.fetch_backup(settings, name, datadir, recovery=recovery, jobs=jobs, storage=storage)
    except WalrusError as exc:
        checks.add("restore", False, str(exc), time.monotonic() - clock)
        return None
    report.update(backup=restored["name"], backup_stop_time=restored.get("stop_time"),
                  restored_bytes=restored["bytes"], restored_files=restored["files"],
                  restore_seconds=round(time.monotonic() - clock, 3))
    checks.add("restore", True, "backup %s: %d files, %d bytes, each verified against the manifest"
               % (restored["name"], restored["files"], restored["bytes"]), report["restore_seconds"])
    replay_clock = time.monotonic()
    instance = None
    try:
        server.ensure_config_files(datadir)
        instance = server.start(datadir, bin_dir, port, socket_dir=scratch, logfile=os.path.join(scratch, "postgresql.log"),
                                settings=dict(server_settings or {}, **DRILL_SETTINGS), timeout=start_timeout)
        state = server.wait_recovery_end(instance, timeout=start_timeout)
    except WalrusError as exc:
        checks.add("recovery", False, str(exc), time.monotonic() - replay_clock)
        if instance is not None:
            server.stop(instance, mode="immediate")
        return None
    report.update(replay_seconds=round(time.monotonic() - replay_clock, 3), rto_seconds=round(time.monotonic() - clock, 3),
                  timeline=state["timeline"], end_lsn=state["replay_lsn"],
                  last_replayed_xact_time=state["last_replayed_xact_time"])
    ok = checks.add("recovery", state["state"] == "promoted", "recovery ended (%s) on timeline %s at %s in %.1f s"
                    % (state["state"], state["timeline"], state["replay_lsn"], report["replay_seconds"]),
                    report["replay_seconds"])
    if not ok:
        server.stop(instance, mode="immediate")
        return None
    return instance


def _measure_rpo(instance, report, started):
    """RPO: how old the newest recovered transaction was when the drill began (its "failure")."""
    srv = instance.connect()
    try:
        report["pg_version_num"] = srv.version_num
        age = srv.value("select extract(epoch from (to_timestamp(%s) - %s::timestamptz))",
                        (started, report["last_replayed_xact_time"])) if report.get("last_replayed_xact_time") else None
    finally:
        srv.close()
    report["rpo_seconds"] = round(max(0.0, float(age)), 3) if age is not None else None


def report_key(drill_id, leaf):
    return PREFIX + drill_id + "/" + leaf


def store_report(storage, report):
    raw = json.dumps(report, indent=1, sort_keys=True).encode("utf-8")
    storage.put(report_key(report["id"], "report.json"), codec.encode(raw, "none"))
    storage.put(report_key(report["id"], "report.md"), codec.encode(render_markdown(report).encode("utf-8"), "none"))
    report["report_key"] = storage.describe(report_key(report["id"], "report.json"))


def _seconds(value):
    return "-" if value is None else "%.1f s" % value


def render_markdown(report):
    """A summary a human reads: verdict, RTO/RPO, and each check."""
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = ["# walrus restore drill %s: %s" % (report["id"], verdict), "",
             "| | |", "|---|---|",
             "| repository | %s |" % report["repository"],
             "| backup | %s (requested %s, stopped %s) |" % (
                 report.get("backup", "-"), report["requested_backup"], report.get("backup_stop_time", "-")),
             "| recovery target | %s |" % (
                 ", ".join("%s=%s" % kv for kv in sorted(report["recovery"].items())) or "end of the archive"),
             "| started / finished | %s / %s |" % (report["started_at"], report.get("finished_at", "-")),
             "| RTO (restore + replay) | %s (%s + %s) |" % (
                 _seconds(report.get("rto_seconds")), _seconds(report.get("restore_seconds")),
                 _seconds(report.get("replay_seconds"))),
             "| RPO (age of newest recovered transaction) | %s (last %s) |" % (
                 _seconds(report.get("rpo_seconds")), report.get("last_replayed_xact_time") or "-"),
             "| timeline / end LSN | %s / %s |" % (report.get("timeline", "-"), report.get("end_lsn", "-")),
             "", "| check | result | detail |", "|---|---|---|"]
    for check in report.get("checks", ()):
        result = "skipped" if check["ok"] is None else ("ok" if check["ok"] else "FAILED")
        lines.append("| %s | %s | %s |" % (check["name"], result, str(check["detail"]).replace("|", "\\|").replace("\n", " ")))
    if report.get("server_log_tail"):
        lines += ["", "Server log (last lines):", "", "```", report["server_log_tail"], "```"]
    return "\n".join(lines) + "\n"


__all__ = ["run", "write_canary", "parse_checks", "render_markdown"]
