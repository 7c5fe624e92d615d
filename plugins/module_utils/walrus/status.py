# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus status` and `walrus metrics`: are we safe, at a glance and for monitoring?

Facts from the database (pg_stat_archiver, the current WAL file; optional) and from the
repository (the newest segment, complete backups, the PITR window as wal-verify computes it,
the newest drill report, sizes by kind), and the list of things that need a human: the
archiver failing since its last success, archive lag over a threshold, no backup or one too
old, WAL missing from the archive, the last drill failed (or too old), the database or the
repository unreachable. `walrus status` exits 7 when that list is not empty.

render_metrics() turns the same facts into a node_exporter textfile (Prometheus text format,
docs/monitoring.md).
"""
import os
import time

from . import backups, catalog, drills, pg, walnames, walverify
from .errors import UsageError, WalrusError
from .retention import kind as backup_kind, parse_age
from .storage import open_storage

DEFAULT_MAX_BACKUP_AGE = "8d"
DEFAULT_MAX_ARCHIVE_LAG = "15m"
DEFAULT_MAX_DRILL_AGE = "off"
KINDS = ("wal", "basebackups", "drills")

_ARCHIVER_SQL = (
    "select archived_count, last_archived_wal, extract(epoch from last_archived_time)::float8, failed_count, "
    "last_failed_wal, extract(epoch from last_failed_time)::float8, extract(epoch from stats_reset)::float8, "
    "pg_is_in_recovery(), current_setting('archive_mode'), extract(epoch from now())::float8 from pg_stat_archiver")


def threshold(text, flag):
    """Seconds from an age like '8d' or '15m', or None for 'off'."""
    if text is None or str(text).strip().lower() in ("off", "none", ""):
        return None
    try:
        return parse_age(text)
    except UsageError:
        raise UsageError("%s %r: use a number with an optional unit s, m, h, d or w (e.g. 8d), or off" % (flag, text))


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else None


def human_age(seconds):
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return "%d s" % seconds
    if seconds < 90 * 60:
        return "%d min" % (seconds // 60)
    if seconds < 48 * 3600:
        return "%.1f h" % (seconds / 3600.0)
    return "%.1f d" % (seconds / 86400.0)


def _segno(name, segment_size):
    """Segment number of a WAL file name (segment, .partial, .backup), None for a .history file."""
    try:
        parsed = walnames.parse(name)
    except UsageError:
        return None
    return parsed.segno(segment_size) if parsed.seg is not None else None


def _ready_files(pgdata):
    try:
        return sum(1 for n in os.listdir(os.path.join(pgdata, "pg_wal", "archive_status")) if n.endswith(".ready"))
    except OSError:
        return None


def archiver_facts(srv, pgdata=None, newest_segno=None):
    """pg_stat_archiver and the archive lag, from a connected pg.Server. newest_segno: the
    newest segment stored in the repository (it counts as archived too: pg_stat_archiver's
    last file may be a .backup or .history file, whose name says little)."""
    row = srv.row(_ARCHIVER_SQL)
    (archived, last_wal, last_time, failed, failed_wal, failed_time, reset, in_recovery, mode, now) = row
    facts = {"archived_count": int(archived), "last_archived_wal": last_wal, "last_archived_time": _utc(last_time),
             "last_archived_epoch": last_time, "failed_count": int(failed), "last_failed_wal": failed_wal,
             "last_failed_time": _utc(failed_time), "last_failed_epoch": failed_time, "stats_reset": _utc(reset),
             "in_recovery": bool(in_recovery), "archive_mode": mode, "current_wal": None,
             "seconds_since_last_archived": round(now - last_time, 3) if last_time is not None else None,
             "lag_segments": None, "lag_seconds": None, "ready_files": _ready_files(pgdata) if pgdata else None}
    # Failing: a failure newer than the last success (pg_stat_archiver keeps both).
    facts["failing"] = bool(failed) and (last_time is None or (failed_time or 0) >= last_time)
    if not in_recovery:
        segment_size = srv.wal_segment_size()
        current, lsn = srv.row("select pg_walfile_name(pg_current_wal_lsn()), pg_current_wal_lsn()::text")
        facts["current_wal"] = current
        last_seg = None
        if last_wal and walnames.parse(last_wal).kind in ("segment", "partial"):
            last_seg = _segno(last_wal, segment_size)
        if newest_segno is not None:
            last_seg = newest_segno if last_seg is None else max(last_seg, newest_segno)
        if last_seg is not None:
            # Complete segments not archived yet: those after the last archived one, before the one being
            # written (from the LSN: pg_walfile_name() of a segment boundary names the previous segment).
            facts["lag_segments"] = max(0, pg.parse_lsn(lsn) // segment_size - last_seg - 1)
            facts["lag_seconds"] = (round(now - last_time, 3) if facts["lag_segments"] and last_time is not None
                                    else 0.0)
    return facts


def repository_sizes(storage):
    """({kind: bytes}, {kind: objects}) for wal/, basebackups/, drills/ and other (the identity)."""
    sizes, counts = dict((k, 0) for k in KINDS + ("other",)), dict((k, 0) for k in KINDS + ("other",))
    for key, size, _mtime in storage.list_info(""):
        top = key.split("/", 1)[0] if "/" in key else "other"
        top = top if top in KINDS else "other"
        sizes[top] += int(size or 0)
        counts[top] += 1
    return sizes, counts


def _repository_facts(storage, result, now):
    identity = catalog.read_identity(storage)
    result["identity"] = identity
    problems = []
    complete = backups.list_backups(storage, problems)
    last = complete[-1] if complete else None
    stop = drills.epoch(last.get("stop_time")) if last else None
    result["backup"] = {"count": len(complete), "last": None if last is None else {
        "name": last["name"], "kind": backup_kind(last), "stop_time": last.get("stop_time"), "stop_epoch": stop,
        "age_seconds": round(now - stop, 3) if stop is not None else None}}
    if identity is not None:
        segment_size = int(identity["wal_segment_size"])
        archive = walverify.scan(storage, segment_size)
        check = walverify.plan_check(archive, walverify.read_histories(storage, archive), complete, segment_size)
        problems += check["problems"]
        newest = None
        for timeline, segs in archive.segments.items():
            for segno, mtime in segs.items():
                if newest is None or (segno, timeline) > (newest[1], newest[0]):
                    newest = (timeline, segno, mtime)
        result["wal"] = {"newest_segment": None, "newest_archived_at": None, "newest_epoch": None, "newest_age_seconds": None,
                         "missing": check["missing"], "segments_checked": check["segments_checked"]}
        if newest is not None:
            result["wal"].update(newest_segment=walnames.segment_name(newest[0], newest[1], segment_size),
                                 newest_segno=newest[1],
                                 newest_archived_at=_utc(newest[2]), newest_epoch=newest[2],
                                 newest_age_seconds=round(now - newest[2], 3))
        window = check["window"]
        if window:
            begin, end = drills.epoch(window["from_time"]), drills.epoch(window["to_archived_at"])
            result["pitr"] = dict(window, from_epoch=begin, to_epoch=end,
                                  seconds=max(0, end - begin) if None not in (begin, end) else None)
    result["problems"] += problems
    latest = drills.latest_report(storage, result["problems"])
    if latest is not None:
        summary = drills.summary(latest)
        done = drills.epoch(summary.get("finished_at") or summary.get("started_at"))
        summary.update(finished_epoch=done, age_seconds=round(now - done, 3) if done is not None else None)
        result["drill"] = summary
    result["repository_bytes"], result["repository_objects"] = repository_sizes(storage)


def collect(settings, conninfo=None, pgdata=None, use_db=True, max_backup_age=DEFAULT_MAX_BACKUP_AGE,
            max_archive_lag=DEFAULT_MAX_ARCHIVE_LAG, max_drill_age=DEFAULT_MAX_DRILL_AGE, storage=None):
    """Every fact, and result["attention"]: what needs a human (empty when all is well).
    Failures to reach the database or the repository are facts too, not exceptions."""
    limits = {"max_backup_age": threshold(max_backup_age, "--max-backup-age"),
              "max_archive_lag": threshold(max_archive_lag, "--max-archive-lag"),
              "max_drill_age": threshold(max_drill_age, "--max-drill-age")}
    now = time.time()
    result = {"checked_at": _utc(now), "checked_epoch": now, "repository": settings.repo, "thresholds": limits,
              "repository_up": False, "database": None, "archiver": None, "identity": None, "backup": None,
              "wal": None, "pitr": None, "drill": None, "repository_bytes": None, "repository_objects": None,
              "problems": [], "attention": [], "notes": []}
    try:
        storage = storage or open_storage(settings)
        result["repository"] = storage.describe()
        _repository_facts(storage, result, now)
        result["repository_up"] = True
    except WalrusError as exc:
        result["repository_error"] = str(exc)
    if use_db:
        _database_facts(conninfo, pgdata, result)
    else:
        result["notes"].append("no database connection asked for (--no-db): repository facts only")
    if pgdata:
        from .check import data_directory_identity
        try:
            sysid, _major = data_directory_identity(pgdata)
            result["pgdata"] = {"path": pgdata, "system_identifier": str(sysid)}
        except WalrusError as exc:
            result["problems"].append(str(exc))
    result["attention"] = attention(result)
    result["ok"] = not result["attention"]
    return result


def _database_facts(conninfo, pgdata, result):
    database = result["database"] = {"connected": False}
    try:
        srv = pg.connect(**(conninfo or {}))
    except WalrusError as exc:
        database["error"] = " ".join(str(exc).split())  # libpq's messages span lines
        return
    try:
        database.update(connected=True, version_num=srv.version_num, system_identifier=str(srv.system_identifier()))
        database.update(srv.backup_features())
        result["archiver"] = archiver_facts(srv, pgdata, (result["wal"] or {}).get("newest_segno"))
        database["in_recovery"] = result["archiver"]["in_recovery"]
    except WalrusError as exc:
        database["error"] = str(exc)
    finally:
        srv.close()


def attention(result):
    """What needs a human, one sentence each."""
    out, limits = [], result["thresholds"]
    repo = result["repository"]
    if not result["repository_up"]:
        out.append("repository %s cannot be read: %s" % (repo, result.get("repository_error")))
    elif result["identity"] is None:
        out.append("nothing archived into %s yet (no walrus-repository.json)" % repo)
    database, archiver = result["database"], result["archiver"]
    if database is not None and database.get("error"):
        out.append("database: %s" % database["error"])
    identity = result["identity"] or {}
    for who, sysid in (("the database", (database or {}).get("system_identifier")),
                       ("data directory %s" % (result.get("pgdata") or {}).get("path"),
                        (result.get("pgdata") or {}).get("system_identifier"))):
        if sysid and identity.get("system_identifier") and sysid != str(identity["system_identifier"]):
            out.append("%s is cluster %s but repository %s belongs to cluster %s" % (
                who, sysid, repo, identity["system_identifier"]))
    if archiver:
        if archiver["archive_mode"] == "off" and not archiver["in_recovery"]:
            out.append("archive_mode is off: PostgreSQL archives nothing")
        if archiver["failing"]:
            out.append("archiver failing: archive_command failed %d time(s), last for %s at %s; last success: %s" % (
                archiver["failed_count"], archiver["last_failed_wal"], archiver["last_failed_time"],
                "%s at %s" % (archiver["last_archived_wal"], archiver["last_archived_time"])
                if archiver["last_archived_wal"] else "never"))
        if (limits["max_archive_lag"] is not None and archiver["lag_seconds"] is not None
                and archiver["lag_seconds"] > limits["max_archive_lag"]):
            out.append("archive lag: %d segment(s) waiting, nothing archived for %s (more than %s)" % (
                archiver["lag_segments"], human_age(archiver["lag_seconds"]), human_age(limits["max_archive_lag"])))
    backup = result["backup"]
    if backup is not None:
        last = backup["last"]
        if last is None:
            out.append("no complete backup in %s" % repo)
        elif (limits["max_backup_age"] is not None and last["age_seconds"] is not None
              and last["age_seconds"] > limits["max_backup_age"]):
            out.append("newest backup %s is %s old (more than %s)" % (
                last["name"], human_age(last["age_seconds"]), human_age(limits["max_backup_age"])))
    wal = result["wal"]
    if wal and wal["missing"]:
        out.append("%d WAL segment(s) missing from the archive, first %s (see walrus wal-verify)" % (
            len(wal["missing"]), wal["missing"][0]))
    for problem in result["problems"]:
        out.append("problem: %s" % problem)
    drill = result["drill"]
    if drill is not None and not drill["passed"]:
        out.append("last restore drill %s FAILED: %s" % (drill["id"], ", ".join(drill["failed_checks"]) or "see its report"))
    if result["repository_up"] and limits["max_drill_age"] is not None:
        if drill is None:
            out.append("no restore drill in %s" % repo)
        elif drill["age_seconds"] is not None and drill["age_seconds"] > limits["max_drill_age"]:
            out.append("last restore drill %s is %s old (more than %s)" % (
                drill["id"], human_age(drill["age_seconds"]), human_age(limits["max_drill_age"])))
    return out


def _num(seconds):
    return "-" if seconds is None else "%.1f s" % seconds


def _human_bytes(size):
    return backups._human(size)  # pylint: disable=protected-access


def render(result):
    """Readable lines of a collect() result."""
    lines = ["repository:   %s%s" % (result["repository"], "" if result["repository_up"] else " (UNREADABLE)")]
    database, archiver = result["database"], result["archiver"]
    if database is None:
        lines.append("database:     not asked (--no-db)")
    elif not database["connected"] or archiver is None:
        lines.append("database:     %s" % database.get("error", "-"))
    else:
        if "data_checksums" in database:
            lines.append("database:     PostgreSQL %d.%d; data checksums %s; incremental backup %s" % (
                database["version_num"] // 10000, database["version_num"] % 10000,
                "on" if database["data_checksums"] else "off", database["incremental_backup"]))
        lines.append("archiver:     %s; archive_mode %s; %d archived, last %s at %s (%s ago); %d failed%s" % (
            "FAILING" if archiver["failing"] else "ok", archiver["archive_mode"], archiver["archived_count"],
            archiver["last_archived_wal"] or "-", archiver["last_archived_time"] or "-",
            human_age(archiver["seconds_since_last_archived"]), archiver["failed_count"],
            ", last %s at %s" % (archiver["last_failed_wal"], archiver["last_failed_time"]) if archiver["failed_count"] else ""))
        if archiver["in_recovery"]:
            lines.append("archive lag:  - (the server is in recovery)")
        else:
            lines.append("archive lag:  %s segment(s) waiting, %s; current WAL %s%s" % (
                "-" if archiver["lag_segments"] is None else archiver["lag_segments"], human_age(archiver["lag_seconds"]),
                archiver["current_wal"],
                "" if archiver["ready_files"] is None else "; %d .ready file(s)" % archiver["ready_files"]))
    wal = result["wal"]
    if wal:
        lines.append("newest WAL:   %s, stored %s (%s ago); %d missing" % (
            wal["newest_segment"] or "-", wal["newest_archived_at"] or "-", human_age(wal["newest_age_seconds"]),
            len(wal["missing"])))
    backup = result["backup"]
    if backup:
        last = backup["last"]
        lines.append("last backup:  %s" % ("none" if last is None else "%s (%s), stopped %s, %s ago; %d complete" % (
            last["name"], last["kind"], last["stop_time"], human_age(last["age_seconds"]), backup["count"])))
    pitr = result["pitr"]
    if result["repository_up"]:
        lines.append("PITR window:  %s" % ("none" if not pitr else "%s to %s (%s)%s" % (
            pitr["from_time"], pitr["to_archived_at"], human_age(pitr["seconds"]),
            "" if pitr["complete"] else ", stops at the first gap")))
        drill = result["drill"]
        lines.append("last drill:   %s" % ("none" if drill is None else "%s %s, %s ago; RTO %s, RPO %s%s" % (
            drill["id"], "passed" if drill["passed"] else "FAILED", human_age(drill["age_seconds"]),
            _num(drill["rto_seconds"]), _num(drill["rpo_seconds"]),
            "; failed: " + ", ".join(drill["failed_checks"]) if drill["failed_checks"] else "")))
        sizes, counts = result["repository_bytes"], result["repository_objects"]
        parts = ["%s %s (%d)" % (k, _human_bytes(sizes[k]), counts[k]) for k in KINDS + ("other",)]
        lines.append("size:         %s" % ", ".join(parts))
    for note in result["notes"]:
        lines.append("note: %s" % note)
    for item in result["attention"]:
        lines.append("ATTENTION: %s" % item)
    lines.append("status: %s" % ("OK" if result["ok"] else "NEEDS ATTENTION (%d)" % len(result["attention"])))
    return lines


# Prometheus text format (node_exporter textfile collector) -----------------------------------

def _label_value(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _get(mapping, *path):
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _bool(value):
    return None if value is None else (1 if value else 0)


def metric_samples(result):
    """[(name, type, help, [(extra labels, value)])]; a value of None leaves the sample out
    (the fact is unknown, e.g. no backup yet), so alerts can use absent()."""
    archiver, database = result["archiver"] or {}, result["database"]
    drill, pitr = result["drill"] or {}, result["pitr"] or {}
    last = _get(result, "backup", "last") or {}

    def one(value):
        return [({}, value)]

    return [
        ("walrus_status_timestamp_seconds", "gauge", "When walrus collected these facts (Unix time).",
         one(result["checked_epoch"])),
        ("walrus_needs_attention", "gauge", "1 when walrus status finds something that needs a human, else 0.",
         one(_bool(result["attention"]))),
        ("walrus_attention_items", "gauge", "How many things walrus status says need a human.",
         one(len(result["attention"]))),
        ("walrus_repository_up", "gauge", "1 when the repository could be read.", one(_bool(result["repository_up"]))),
        ("walrus_database_up", "gauge", "1 when walrus could query PostgreSQL (absent with --no-db).",
         one(None if database is None else _bool(database.get("connected") and not database.get("error")))),
        ("walrus_archiver_archived_count", "gauge", "pg_stat_archiver.archived_count (since the statistics reset).",
         one(archiver.get("archived_count"))),
        ("walrus_archiver_failed_count", "gauge", "pg_stat_archiver.failed_count (since the statistics reset).",
         one(archiver.get("failed_count"))),
        ("walrus_archiver_failing", "gauge", "1 when archive_command failed after its last success.",
         one(_bool(archiver.get("failing")) if archiver else None)),
        ("walrus_archiver_last_archived_timestamp_seconds", "gauge", "pg_stat_archiver.last_archived_time (Unix time).",
         one(archiver.get("last_archived_epoch"))),
        ("walrus_archiver_last_failed_timestamp_seconds", "gauge", "pg_stat_archiver.last_failed_time (Unix time).",
         one(archiver.get("last_failed_epoch"))),
        ("walrus_archive_lag_segments", "gauge",
         "Complete WAL segments not archived yet (between the last archived one and the current one).",
         one(archiver.get("lag_segments"))),
        ("walrus_archive_lag_seconds", "gauge",
         "Seconds since the last successful archive while segments are waiting (0 when none waits).",
         one(archiver.get("lag_seconds"))),
        ("walrus_wal_newest_timestamp_seconds", "gauge", "When the newest WAL segment in the repository was stored.",
         one(_get(result, "wal", "newest_epoch"))),
        ("walrus_wal_missing_segments", "gauge", "WAL segments missing from the archive (as walrus wal-verify finds).",
         one(len(result["wal"]["missing"]) if result["wal"] else None)),
        ("walrus_backups_complete", "gauge", "Complete base backups in the repository.",
         one(_get(result, "backup", "count"))),
        ("walrus_last_backup_timestamp_seconds", "gauge", "When the newest complete base backup stopped (Unix time).",
         one(last.get("stop_epoch"))),
        ("walrus_backup_age_seconds", "gauge", "Age of the newest complete base backup.", one(last.get("age_seconds"))),
        ("walrus_pitr_window_seconds", "gauge",
         "Length of the point-in-time recovery window (oldest backup's end to the last segment before a gap).",
         one(pitr.get("seconds"))),
        ("walrus_pitr_window_start_timestamp_seconds", "gauge", "Earliest time a PITR restore can reach (Unix time).",
         one(pitr.get("from_epoch"))),
        ("walrus_pitr_window_end_timestamp_seconds", "gauge", "Latest time a PITR restore can reach (Unix time).",
         one(pitr.get("to_epoch"))),
        ("walrus_last_drill_timestamp_seconds", "gauge", "When the newest restore drill finished (Unix time).",
         one(drill.get("finished_epoch"))),
        ("walrus_last_drill_passed", "gauge", "1 when the newest restore drill passed, 0 when it failed.",
         one(_bool(drill.get("passed")) if drill else None)),
        ("walrus_last_drill_rto_seconds", "gauge", "RTO (restore + replay) measured by the newest restore drill.",
         one(drill.get("rto_seconds"))),
        ("walrus_last_drill_rpo_seconds", "gauge", "RPO (age of the newest recovered transaction) of the newest drill.",
         one(drill.get("rpo_seconds"))),
        ("walrus_repository_bytes", "gauge", "Bytes stored in the repository, by kind (wal, basebackups, drills, other).",
         [({"kind": k}, v) for k, v in sorted((result["repository_bytes"] or {}).items())]),
        ("walrus_repository_objects", "gauge", "Objects stored in the repository, by kind.",
         [({"kind": k}, v) for k, v in sorted((result["repository_objects"] or {}).items())]),
    ]


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render_metrics(result):
    """The facts in the Prometheus text exposition format, every sample labelled with the repository."""
    base = {"repo": result["repository"]}
    lines = []
    for name, kind, help_text, samples in metric_samples(result):
        lines.append("# HELP %s %s" % (name, help_text.replace("\\", "\\\\").replace("\n", " ")))
        lines.append("# TYPE %s %s" % (name, kind))
        for extra, value in samples:
            if value is None:
                continue
            labels = dict(base, **extra)
            lines.append("%s{%s} %s" % (name, ",".join('%s="%s"' % (k, _label_value(labels[k])) for k in sorted(labels)),
                                        _number(value)))
    return "\n".join(lines) + "\n"
