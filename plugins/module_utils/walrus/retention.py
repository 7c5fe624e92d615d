# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention: which backups and WAL files may be deleted, and deleting them safely.

`walrus delete retain N [--full]`, `delete before NAME|TIME`, `delete garbage` and
`walrus backup-mark NAME --permanent|--impermanent`.

What is kept, whatever the policy says:
- permanent backups (a marker object `basebackups/<name>/permanent.json`);
- the newest full backup;
- every base a kept delta backup depends on (its whole chain, oldest full first);
- the WAL from the start segment of every kept backup onward (consistency and PITR), and
  every timeline history file.

The planning functions (select, plan_wal, plan_incomplete) are pure: lists of sentinels and
WAL names in, decisions out. plan() reads the repository and calls them; execute() deletes
in an order that keeps the repository consistent if it is interrupted: backups newest first
(a delta before its base), each one's sentinel first (it stops counting as complete), then
its manifest and the rest; incomplete backups; WAL last, oldest first.
"""
import json
import re
import time

from . import backups, catalog, codec, repolock, walnames, walverify
from .errors import IntegrityError, NotFound, UsageError
from .restore import _aware_time

PERMANENT = "permanent.json"
MARK_FORMAT = "walrus-backup-mark"
DEFAULT_MIN_AGE = "24h"
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MODES = ("retain", "before", "garbage")


def parse_age(text):
    """Seconds from '90', '90s', '30m', '6h', '2d', '1w'."""
    match = _AGE.match(str(text))
    if not match:
        raise UsageError("age %r: use a number with an optional unit s, m, h, d or w (e.g. 6h)" % (text,))
    return float(match.group(1)) * _UNITS[match.group(2)]


def kind(sentinel):
    """'full' or 'delta'; backups written before delta backups existed are full."""
    return "delta" if sentinel.get("kind") == "delta" else "full"


def chains(complete):
    """{name: [the backups it depends on, oldest full first]} for every complete backup, and
    problems for deltas whose chain names a backup that is not complete."""
    by_name = dict((s["name"], s) for s in complete)
    out, problems = {}, []
    for sentinel in complete:
        name = sentinel["name"]
        if kind(sentinel) == "full":
            out[name] = []
            continue
        chain = sentinel.get("chain")
        if not isinstance(chain, list) or not chain:
            chain, base = [], sentinel.get("base")
            while base and base not in chain and base != name:  # follow base links
                chain.insert(0, base)
                parent = by_name.get(base)
                base = parent.get("base") if parent is not None and kind(parent) == "delta" else None
        chain = [str(base) for base in chain]
        absent = [base for base in chain if base not in by_name]
        if absent:
            problems.append("delta backup %s depends on %s, which %s not a complete backup: it cannot be restored"
                            % (name, ", ".join(absent), "is" if len(absent) == 1 else "are"))
        out[name] = chain
    return out, problems


def select(complete, mode, count=None, full=False, before_name=None, before_time=None, permanent=()):
    """Which complete backups (sentinels, oldest first) to keep, and why.

    Returns (keep {name: [reasons]}, delete [sentinels, newest first], problems)."""
    names = [s["name"] for s in complete]
    by_name = dict((s["name"], s) for s in complete)
    chain_of, problems = chains(complete)
    keep = {}

    def add(name, reason):
        if reason not in keep.setdefault(name, []):
            keep[name].append(reason)

    if mode == "retain":
        if count is None or int(count) < 1:
            raise UsageError("retain needs a number of backups of at least 1, got %r" % (count,))
        count = int(count)
        if full:
            fulls = [s["name"] for s in complete if kind(s) == "full"][-count:]
            for name in fulls:
                add(name, "one of the %d newest full backups" % count)
            for sentinel in complete:
                chain = chain_of[sentinel["name"]]
                if kind(sentinel) == "delta" and chain and chain[0] in fulls:
                    add(sentinel["name"], "delta of kept full backup %s" % chain[0])
        else:
            for name in names[-count:]:
                add(name, "one of the %d newest backups" % count)
    elif mode == "before":
        if before_name is not None:
            if before_name not in by_name:
                raise NotFound("backup '%s' is not a complete backup; available: %s"
                               % (before_name, ", ".join(names) if names else "none"))
            first = names.index(before_name)
            add(before_name, "named by 'before'")
        else:
            # Keep the newest backup that ended at or before the time: a restore to any point
            # from that time on stays possible (pgBackRest's time-based retention does the same).
            first = 0
            for index, sentinel in enumerate(complete):
                stop = _aware_time(sentinel.get("stop_time"))
                if stop is not None and stop <= before_time:
                    first = index
            if names:
                add(names[first], "the newest backup that ended by %s (needed to restore to that time)"
                    % before_time.isoformat())
        for name in names[first + 1:]:
            add(name, "newer")
    elif mode == "garbage":
        for name in names:
            add(name, "complete backup")
    else:
        raise UsageError("unknown retention mode %r (use %s)" % (mode, ", ".join(MODES)))
    for name in permanent:
        if name in by_name:
            add(name, "permanent")
    fulls = [s["name"] for s in complete if kind(s) == "full"]
    if fulls:
        add(fulls[-1], "the newest full backup")
    for name in list(keep):
        for base in chain_of.get(name, []):
            if base in by_name:
                add(base, "base of delta %s" % name)
    delete = [s for s in reversed(complete) if s["name"] not in keep]
    return keep, delete, problems


def plan_wal(kept, wal_names, histories, segment_size):
    """WAL files that no kept backup needs, oldest first, and the first segment kept.

    A file is deleted when it lies before the start segment of every kept backup and on a
    timeline that a kept backup's timeline descends from (or is). Timeline history files are
    always kept; with no kept backup no WAL is deleted."""
    if not kept:
        return [], None
    starts = []
    for sentinel in kept:
        try:
            starts.append(walnames.parse(sentinel["start_wal"]))
        except (KeyError, UsageError):
            raise IntegrityError("backup %s names no valid start WAL segment (%r): refusing to delete WAL"
                                 % (sentinel["name"], sentinel.get("start_wal")))
    first = min(starts, key=lambda n: (n.segno(segment_size), n.timeline))
    cutoff = first.segno(segment_size)
    timelines = set()
    for start in starts:
        timelines.add(start.timeline)
        timelines.update(walverify.ancestors(histories, start.timeline))
    doomed = [n for n in wal_names if n.kind != "history" and n.timeline in timelines
              and n.segno(segment_size) < cutoff]
    doomed.sort(key=lambda n: (n.segno(segment_size), n.timeline, n.name))
    return doomed, first.name


def plan_incomplete(groups, now, min_age):
    """Incomplete backups ({name: [(key, size, mtime)]}, none holding a sentinel) whose newest
    object is at least min_age seconds old (a younger one may be a backup-push at work).
    Returns (to delete, too young), each a list of dicts."""
    old, young = [], []
    for name in sorted(groups):
        items = groups[name]
        age = now - max(mtime for _k, _s, mtime in items)
        entry = {"name": name, "objects": len(items), "bytes": sum(size for _k, size, _m in items),
                 "age_seconds": int(age)}
        (old if age >= min_age else young).append(entry)
    return old, young


def _ordered_keys(items):
    """A backup's keys in deletion order: sentinel, manifest, then the rest."""
    rank = {backups.SENTINEL: 0, backups.MANIFEST: 1}
    return [key for key, _s, _m in sorted(items, key=lambda i: (rank.get(i[0].rsplit("/", 1)[-1], 2), i[0]))]


def _groups(storage):
    """{backup name: [(key, size, mtime)]} of everything under basebackups/."""
    groups = {}
    for key, size, mtime in storage.list_info(backups.PREFIX):
        parts = key[len(backups.PREFIX):].split("/")
        if len(parts) >= 2 and parts[0]:
            groups.setdefault(parts[0], []).append((key, size, mtime))
    return groups


def plan(storage, mode, count=None, full=False, before=None, min_age=DEFAULT_MIN_AGE, now=None,
         mark_permanent=(), mark_impermanent=()):
    """Read the repository and decide. mark_* apply backup-mark changes to the plan without
    writing them (a module in check mode). Returns (result dict, private {keys to delete})."""
    now = time.time() if now is None else now
    min_age_s = parse_age(min_age)
    problems = []
    complete = backups.list_backups(storage, problems)  # before the listing below: see docs
    groups = _groups(storage)
    complete_names = set(s["name"] for s in complete)
    with_sentinel = set(name for name, items in groups.items()
                        if any(k == backups.backup_key(name, backups.SENTINEL) for k, _s, _m in items))
    permanent = set(name for name, items in groups.items()
                    if any(k == backups.backup_key(name, PERMANENT) for k, _s, _m in items))
    permanent = (permanent | set(mark_permanent)) - set(mark_impermanent)

    before_name = before_time = None
    if mode == "before":
        if before in complete_names:
            before_name = before
        else:
            before_time = _aware_time(before)
            if before_time is None:
                raise UsageError("%r is neither a complete backup (see backup-list) nor a time with a time zone, "
                                 "e.g. '2026-11-24 00:00:00+00'" % (before,))
    keep, doomed, chain_problems = select(complete, mode, count, full, before_name, before_time, permanent)
    problems.extend(chain_problems)

    incomplete, young = [], []
    if mode == "garbage":
        candidates = dict((name, items) for name, items in groups.items()
                          if name not in with_sentinel and name not in complete_names)
        incomplete, young = plan_incomplete(candidates, now, min_age_s)

    identity = catalog.read_identity(storage)
    wal, cutoff, histories = [], None, {}
    if identity is not None:
        segment_size = int(identity["wal_segment_size"])
        archive = walverify.scan(storage, segment_size)
        histories = walverify.read_histories(storage, archive)
        kept = [s for s in complete if s["name"] in keep]
        wal, cutoff = plan_wal(kept, archive.names, histories, segment_size)

    result = {
        "mode": mode, "repo": storage.describe(), "confirmed": False,
        "backups": [{"name": s["name"], "kind": kind(s), "stop_time": s.get("stop_time"),
                     "objects": len(groups.get(s["name"], ())),
                     "bytes": sum(size for _k, size, _m in groups.get(s["name"], ()))} for s in doomed],
        "incomplete": incomplete,
        "wal": [n.name for n in wal],
        "wal_kept_from": cutoff,
        "kept": [{"name": s["name"], "kind": kind(s), "stop_time": s.get("stop_time"), "permanent": s["name"] in permanent,
                  "reasons": keep[s["name"]]} for s in complete if s["name"] in keep],
        "incomplete_kept": young,
        "problems": problems,
    }
    keys = {
        "unreadable": problems[:len(problems) - len(chain_problems)],
        "backups": [_ordered_keys(groups.get(s["name"], [])) for s in doomed],
        "incomplete": [_ordered_keys(groups[entry["name"]]) for entry in incomplete],
        "wal": [n.object_key() for n in wal],
    }
    return result, keys


def execute(storage, keys):
    """Delete what plan() chose, in the order that keeps the repository consistent. A sentinel
    that cannot be read hides what that backup needs (its bases, its WAL): then nothing is deleted."""
    if keys["unreadable"] and (keys["backups"] or keys["incomplete"] or keys["wal"]):
        raise IntegrityError("refusing to delete anything while a backup sentinel cannot be read (%s): a backup "
                             "walrus cannot read may need what would be deleted; repair or remove it by hand, then "
                             "run again" % "; ".join(keys["unreadable"]))
    for backup_keys in keys["backups"]:
        storage.delete(backup_keys[:1])   # the sentinel: from now on the backup is incomplete
        storage.delete(backup_keys[1:])
    for backup_keys in keys["incomplete"]:
        storage.delete(backup_keys)
    wal_keys = keys["wal"]
    for start in range(0, len(wal_keys), 1000):
        storage.delete(wal_keys[start:start + 1000])


@repolock.exclusive(lambda a: "delete %s --confirm" % a["mode"], when=lambda a: a["confirm"])
def delete(settings=None, mode="retain", count=None, full=False, before=None, min_age=DEFAULT_MIN_AGE,
           confirm=False, storage=None, mark_permanent=(), mark_impermanent=()):
    """Plan, and with confirm delete. Returns the plan with `confirmed` set when it was carried out."""
    if storage is None:
        from .storage import open_storage
        storage = open_storage(settings)
    result, keys = plan(storage, mode, count=count, full=full, before=before, min_age=min_age,
                        mark_permanent=mark_permanent, mark_impermanent=mark_impermanent)
    if confirm:
        execute(storage, keys)
        result["confirmed"] = True
    return result


def mark(settings=None, name=None, permanent=True, storage=None, dry_run=False):
    """Mark a complete backup permanent (never deleted by retain/before) or take the mark away.
    Returns {name, permanent, changed}."""
    if storage is None:
        from .storage import open_storage
        storage = open_storage(settings)
    sentinel = backups.resolve(storage, name)
    key = backups.backup_key(sentinel["name"], PERMANENT)
    was = storage.exists(key)
    changed = was != bool(permanent)
    if changed and not dry_run:
        if permanent:
            body = {"format": MARK_FORMAT, "format_version": 1, "name": sentinel["name"], "permanent": True,
                    "marked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            storage.put(key, codec.encode(json.dumps(body, sort_keys=True).encode("utf-8"), "none"), overwrite=True)
            try:  # deleted meanwhile? then the mark is garbage: take it away again
                backups.read_sentinel(storage, sentinel["name"])
            except NotFound:
                storage.delete([key])
                raise NotFound("backup '%s' was deleted while it was being marked" % sentinel["name"])
        else:
            storage.delete([key])
    return {"name": sentinel["name"], "permanent": bool(permanent), "changed": changed}


def render(result):
    """Readable lines of a delete() result."""
    lines = []
    if not result["confirmed"]:
        lines.append("dry run: nothing deleted; run again with --confirm to delete what is listed")
    verb = "deleted" if result["confirmed"] else "would delete"
    for entry in result["backups"]:
        lines.append("%s backup %s (%s, ended %s; %d objects, %s)" % (
            verb, entry["name"], entry["kind"], entry["stop_time"], entry["objects"], backups._human(entry["bytes"])))
    for entry in result["incomplete"]:
        lines.append("%s incomplete backup %s (%d objects, %s, last written %s ago)" % (
            verb, entry["name"], entry["objects"], backups._human(entry["bytes"]), _age(entry["age_seconds"])))
    for entry in result["incomplete_kept"]:
        lines.append("kept incomplete backup %s: last written %s ago, perhaps still running (see --min-age)"
                     % (entry["name"], _age(entry["age_seconds"])))
    for entry in result["kept"]:
        lines.append("kept backup %s (%s, ended %s): %s"
                     % (entry["name"], entry["kind"], entry["stop_time"], "; ".join(entry["reasons"])))
    if result["wal"]:
        lines.append("%s %d WAL files, %s .. %s" % (verb, len(result["wal"]), result["wal"][0], result["wal"][-1]))
    if result["wal_kept_from"]:
        lines.append("kept WAL from %s on (the oldest kept backup's start), and every timeline history file"
                     % result["wal_kept_from"])
    for problem in result["problems"]:
        lines.append("PROBLEM %s" % problem)
    return lines


def _age(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%.1f%s" % (seconds / float(size), unit)
    return "%ds" % seconds
