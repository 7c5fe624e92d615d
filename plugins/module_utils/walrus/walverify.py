# SPDX-License-Identifier: GPL-3.0-or-later
"""walrus wal-verify: is the WAL archive complete enough to restore the backups it holds?

The archive (wal/<timeline>/..., docs/repository-format.md) is read as a set of names. The
check walks the timeline history from the oldest complete backup's start segment to the
newest archived segment: along each timeline up to the point where the history file of the
next one says it branched off, then on the next timeline from the segment that holds that
switch point (recovery reads that segment from the new timeline; the old timeline's copy is
usually stored as a `.partial`). Every segment that must be there and is not is named.

It also checks that every complete backup's own WAL (start to stop segment) is there, and
reports the point-in-time recovery window: from the oldest backup's stop point to the end of
the last segment before the first gap (or the newest segment).

scan() and read_histories() are shared with retention.py.
"""
import time

from . import backups, catalog, pg, walnames, wal
from .errors import IntegrityError, NotFound, UsageError

WAL_PREFIX = "wal/"


class Archive(object):
    """The names stored under wal/, by timeline: full segments and partial segments as
    segment numbers, backup history files and timeline history files by name."""

    def __init__(self):
        self.segments = {}      # timeline -> {segno: mtime}
        self.partials = {}      # timeline -> {segno: name}
        self.backup_files = []  # WalName of <segment>.<offset>.backup files
        self.histories = {}     # timeline -> key of its .history file
        self.names = []         # every WalName, for retention
        self.ignored = []       # keys under wal/ that are not WAL names (e.g. left by another tool)

    def timelines(self):
        return sorted(set(self.segments) | set(self.partials) | set(self.histories))

    def has(self, timeline, segno):
        return segno in self.segments.get(timeline, ())


def scan(storage, segment_size):
    """List the archive once. segment_size comes from the repository identity."""
    archive = Archive()
    for key, _size, mtime in storage.list_info(WAL_PREFIX):
        leaf = key.rsplit("/", 1)[-1]
        try:
            name = walnames.parse(leaf)
        except UsageError:
            archive.ignored.append(key)
            continue
        if name.object_key() != key:
            archive.ignored.append(key)  # a name filed under the wrong timeline folder
            continue
        archive.names.append(name)
        if name.kind == "segment":
            archive.segments.setdefault(name.timeline, {})[name.segno(segment_size)] = mtime
        elif name.kind == "partial":
            archive.partials.setdefault(name.timeline, {})[name.segno(segment_size)] = name.name
        elif name.kind == "backup":
            archive.backup_files.append(name)
        else:
            archive.histories[name.timeline] = key
    return archive


def parse_history(text, timeline):
    """The entries of timeline `timeline`'s history file: [(parent timeline, switch LSN)], in
    file order (oldest first). Each line is `<parent tli> <switch point> <reason>`; a line
    says that the parent ended at the switch point (where the next timeline begins)."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        try:
            parent, switch = int(fields[0]), pg.parse_lsn(fields[1])
        except (IndexError, ValueError):
            raise IntegrityError("history file of timeline %d, line %d is not '<timeline> <LSN> ...': %r"
                                 % (timeline, number, line))
        if parent >= timeline or (entries and parent <= entries[-1][0]):
            raise IntegrityError("history file of timeline %d, line %d: timeline %d out of order"
                                 % (timeline, number, parent))
        entries.append((parent, switch))
    return entries


def read_histories(storage, archive):
    """{timeline: [(parent, switch LSN)]} for every stored .history file (verified objects)."""
    out = {}
    for timeline in sorted(archive.histories):
        name = walnames.parse("%08X.history" % timeline)
        raw = wal.fetch_bytes(storage, name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("history file %s is not text" % storage.describe(name.object_key()))
        out[timeline] = parse_history(text, timeline)
    return out


def ancestors(histories, timeline):
    """The timelines `timeline` descends from (per its history file), oldest first."""
    return [parent for parent, _switch in histories.get(timeline, [])]


def timeline_path(histories, start_timeline, target):
    """[(timeline, switch LSN or None)] from start_timeline to target along target's history,
    or None when target does not descend from start_timeline."""
    entries = histories.get(target, []) if target != start_timeline else []
    tlis = [tli for tli, _switch in entries]
    if target != start_timeline and start_timeline not in tlis:
        return None
    path = list(entries[tlis.index(start_timeline):]) if entries else []
    return path + [(target, None)]


def _end_lsn(segno, segment_size):
    return pg.format_lsn((segno + 1) * segment_size)


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else None


def plan_check(archive, histories, complete, segment_size):
    """The pure check: which segments must be present, which are missing, and the window.
    `complete` are the complete backups' sentinels, oldest first."""
    result = {"ok": True, "missing": [], "problems": [], "notes": [], "segments_checked": 0,
              "timeline_path": [], "start": None, "end": None, "window": None, "backups": []}
    for timeline in archive.timelines():
        has_wal = archive.segments.get(timeline) or archive.partials.get(timeline)
        if timeline > 1 and timeline not in archive.histories and has_wal:
            result["problems"].append("timeline %d has WAL but no history file %08X.history: recovery cannot "
                                      "follow it" % (timeline, timeline))
    if complete:
        oldest = complete[0]
        start = walnames.parse(oldest["start_wal"])
        start_tli, start_seg = start.timeline, start.segno(segment_size)
        result["start"] = {"backup": oldest["name"], "segment": oldest["start_wal"]}
    else:
        timelines = sorted(archive.segments)
        if not timelines:
            result["notes"].append("no complete backup and no WAL segment archived: nothing to check")
            result["ok"] = not result["problems"]
            return result
        start_tli = timelines[0]
        start_seg = min(archive.segments[start_tli])
        result["start"] = {"backup": None, "segment": walnames.segment_name(start_tli, start_seg, segment_size)}
        result["notes"].append("no complete backup: checked from the oldest archived segment; no PITR window")

    # The newest timeline that descends from the start timeline is the one recovery follows
    # (recovery_target_timeline = 'latest').
    # It must branch off after the start: a timeline that left before it is another history.
    target, path = start_tli, [(start_tli, None)]
    for timeline in archive.timelines():
        candidate = timeline_path(histories, start_tli, timeline)
        if timeline > target and candidate is not None and (
                candidate[0][1] is None or candidate[0][1] // segment_size >= start_seg):
            target, path = timeline, candidate
    # Segment ranges per timeline: a timeline runs until the segment that holds its switch point.
    ranges, begin = [], start_seg
    for tli, switch in path:
        end = None if switch is None else switch // segment_size - 1
        ranges.append((tli, begin, end))
        if switch is not None:
            begin = max(begin, switch // segment_size)
    newest = None
    for tli, lo, hi in reversed(ranges):
        present = [s for s in archive.segments.get(tli, ()) if s >= lo and (hi is None or s <= hi)]
        if present:
            newest = (tli, max(present))
            break
    for tli, switch in path:
        entry = {"timeline": tli}
        if switch is not None:
            segno = switch // segment_size
            entry["switch_lsn"] = pg.format_lsn(switch)
            entry["switch_segment"] = walnames.segment_name(tli, segno, segment_size)
            entry["partial_stored"] = segno in archive.partials.get(tli, {})
            later = [s for s in archive.segments.get(tli, ()) if s > segno]
            if later:
                result["notes"].append("timeline %d has %d segment(s) after its switch to a newer timeline (an old "
                                       "primary that kept running?); recovery does not use them" % (tli, len(later)))
        result["timeline_path"].append(entry)
    # The segments recovery reads, in order, up to the newest one.
    expected = []
    if newest is not None:
        for tli, lo, hi in ranges:
            top = newest[1] if tli == newest[0] else hi
            expected.extend((tli, segno) for segno in range(lo, top + 1))
            if tli == newest[0]:
                break
    result["segments_checked"] = len(expected)
    missing = [ts for ts in expected if not archive.has(*ts)]
    last_good = None
    for ts in expected:
        if not archive.has(*ts):
            break
        last_good = ts
    if newest is not None:
        result["end"] = {"segment": walnames.segment_name(newest[0], newest[1], segment_size),
                         "lsn": _end_lsn(newest[1], segment_size),
                         "archived_at": _utc(archive.segments[newest[0]][newest[1]])}
    elif complete:
        missing.append((start_tli, start_seg))
    # Each backup needs its own WAL, start to stop segment, to become consistent.
    for sentinel in complete:
        try:
            first, last = walnames.parse(sentinel["start_wal"]), walnames.parse(sentinel["stop_wal"])
        except (KeyError, UsageError):
            result["problems"].append("backup %s names no valid start/stop WAL segment" % sentinel["name"])
            continue
        need = [(last.timeline if s == last.segno(segment_size) else first.timeline, s)
                for s in range(first.segno(segment_size), last.segno(segment_size) + 1)]
        absent = [walnames.segment_name(t, s, segment_size) for t, s in need if not archive.has(t, s)]
        result["backups"].append({"name": sentinel["name"], "start_wal": sentinel["start_wal"],
                                  "stop_wal": sentinel["stop_wal"], "restorable": not absent, "missing": absent})
        missing.extend((t, s) for t, s in need if not archive.has(t, s))
    result["missing"] = [walnames.segment_name(tli, segno, segment_size)
                         for tli, segno in sorted(set(missing), key=lambda ts: (ts[1], ts[0]))]
    if complete and last_good is not None:
        # The window ends at the last segment before the first gap on the path.
        oldest = complete[0]
        stop_seg = walnames.parse(oldest["stop_wal"]).segno(segment_size)
        if last_good[1] >= stop_seg:
            result["window"] = {
                "from_backup": oldest["name"], "from_time": oldest.get("stop_time"), "from_lsn": oldest.get("stop_lsn"),
                "to_segment": walnames.segment_name(last_good[0], last_good[1], segment_size),
                "to_lsn": _end_lsn(last_good[1], segment_size),
                "to_archived_at": _utc(archive.segments[last_good[0]][last_good[1]]),
                "complete": last_good == newest,
            }
    result["ok"] = not result["missing"] and not result["problems"]
    return result


def verify(settings=None, storage=None):
    """Check the archive of a repository. Returns the plan_check() result plus the repository."""
    if storage is None:
        from .storage import open_storage
        storage = open_storage(settings)
    identity = catalog.read_identity(storage)
    if identity is None:
        raise NotFound("%s is not a walrus repository yet (no walrus-repository.json): nothing archived"
                       % storage.describe())
    segment_size = int(identity["wal_segment_size"])
    archive = scan(storage, segment_size)
    problems = []
    complete = backups.list_backups(storage, problems)
    result = plan_check(archive, read_histories(storage, archive), complete, segment_size)
    result["problems"] = problems + result["problems"]
    result["ok"] = result["ok"] and not problems
    if archive.ignored:
        result["notes"].append("%d object(s) under wal/ are not WAL files and were ignored, e.g. %s"
                               % (len(archive.ignored), archive.ignored[0]))
    result.update(repo=storage.describe(), segment_size=segment_size, backups_complete=len(complete))
    return result


def render(result):
    """Readable lines of a verify() result."""
    lines = []
    path = " -> ".join(str(entry["timeline"]) for entry in result["timeline_path"])
    lines.append("archive %s, timeline path %s" % (result["repo"], path or "-"))
    for entry in result["timeline_path"]:
        if "switch_lsn" in entry:
            lines.append("  timeline %d ends at %s (segment %s%s)" % (
                entry["timeline"], entry["switch_lsn"], entry["switch_segment"],
                ", .partial stored" if entry["partial_stored"] else ""))
    start, end = result["start"], result["end"]
    if start and end:
        lines.append("checked %s .. %s: %d segments, %d missing" % (
            start["segment"], end["segment"], result["segments_checked"], len(result["missing"])))
    for name in result["missing"]:
        lines.append("MISSING %s" % name)
    for backup in result["backups"]:
        if not backup["restorable"]:
            lines.append("backup %s cannot become consistent: missing %s" % (backup["name"], ", ".join(backup["missing"])))
    window = result["window"]
    if window:
        lines.append("PITR window: from %s (end of backup %s, %s) to %s (segment %s, archived %s)%s" % (
            window["from_time"], window["from_backup"], window["from_lsn"], window["to_lsn"], window["to_segment"],
            window["to_archived_at"], "" if window["complete"] else " -- stops at the first gap"))
    elif result["backups_complete"]:
        lines.append("PITR window: none (the oldest backup's WAL is not complete)")
    for note in result["notes"]:
        lines.append("note: %s" % note)
    for problem in result["problems"]:
        lines.append("PROBLEM %s" % problem)
    lines.append("OK" if result["ok"] else "FAILED: %d segment(s) missing, %d problem(s)"
                 % (len(result["missing"]), len(result["problems"])))
    return lines
