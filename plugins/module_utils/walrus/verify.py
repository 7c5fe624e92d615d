# SPDX-License-Identifier: GPL-3.0-or-later
"""backup-verify: download and check a whole base backup, and the WAL it needs, without
restoring it (docs/backup-format.md). Nothing is written to disk.

What is checked, in this order:
- the sentinel (readable, well-formed) and the manifest against the sentinel's SHA-256; the
  manifest's entries as restore.py's _Plan checks them; the repository identity's system;
- every tar part streamed through restore.py's _Restorer (storage -> codec.Decoder -> tarfile),
  so its framing (trailer length and SHA-256) and its raw size and SHA-256 from the manifest
  are checked, and every member is checked as the restore checks it (safe name, regular file,
  listed in that part, once, size); _Checker only replaces writing with hashing: a whole file's
  size and SHA-256, a delta member's stored size and SHA-256 and its header;
- every manifest file stored in a part arrived (for the parts that could be read to the end);
- a delta backup: its chain as the restore loads it (every older sentinel and manifest, chain
  links, same system), every file it keeps from the base ("base") present in the base with the
  same size and SHA-256, every delta member's file present in the base; with chain=True every
  part of every chain backup as above. The reconstruction itself (pages applied to the older
  files, then the whole file's SHA-256) is only checked by a restore;
- the page hashes object (pagehashes.bin) against the manifest;
- every WAL segment from start_wal to stop_wal on the backup's timeline: present, decodable
  (framing), a WAL segment of this system (long page header, position, system identifier).

Every problem is collected (a broken part stops only that part); the result lists them all,
first bad object first, and failure() turns them into one IntegrityError (exit 4).
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import backups, catalog, codec, delta, filedigest, ratelimit, restore, walnames
from .errors import IntegrityError, NotFound, UsageError, WalrusError
from .storage import open_storage

CHECKED = (
    "sentinel and manifest (SHA-256 from the sentinel), manifest entries, repository system identifier",
    "every tar part: object framing, raw size and SHA-256 from the manifest, tar structure",
    "every tar member: listed in the manifest in that part, once, size and SHA-256 "
    "(delta members as stored, and their header)",
    "every file the manifest puts in a part is there",
    "page hashes object against the manifest",
    "WAL segments start_wal..stop_wal on the backup's timeline: present, framing, segment header and system",
)
NOT_CHECKED_DELTA = (
    "the reconstruction of delta files (pages applied to the chain's files, then the whole file's SHA-256): "
    "only a restore (or a drill) does that",
)


class _Problems(object):
    """Problems found, each (order, object, message); ordered as the checks run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, order, obj, message):
        with self.lock:
            self.items.append((order, obj, message))

    def sorted(self):
        return [{"object": obj, "message": message} for _o, obj, message in sorted(self.items, key=lambda i: i[0])]


class _Checker(restore._Restorer):
    """restore._Restorer with writing replaced by hashing: the member's bytes are read from the
    tar stream, compared with the manifest, and dropped. A mismatch is a problem, not a stop.
    The part's SHA-256 over its whole raw stream is checked too (the part as stored)."""

    object_digest = True

    def __init__(self, storage, sentinel, plan, problems, stage):
        restore._Restorer.__init__(self, storage, sentinel, plan, {}, threading.Event())
        self.problems = problems
        self.stage = stage
        self.where = {}  # part key as described -> part number

    def order(self, where):
        return self.stage + (self.where.get(where, 0),)

    def _write(self, tar, member, entry, name, where, dirs):
        source = tar.extractfile(member)
        stored_delta = entry.get("stored") == "delta"
        digest, size = filedigest.for_member(entry), 0
        head = b""
        while True:
            chunk = source.read(restore.READ_SIZE)
            if not chunk:
                break
            if stored_delta and len(head) < delta.DELTA_HEAD.size:
                head += chunk[:delta.DELTA_HEAD.size - len(head)]
            digest.update(chunk)
            size += len(chunk)
        if stored_delta:
            expected = (entry["stored_size"], entry.get("stored_sha256"))
            what = "delta member of file %s" % name
        else:
            expected = (entry["size"], entry["sha256"])
            what = "file %s" % name
        if (size, digest.hexdigest()) != expected:
            self.problems.add(self.order(where), where, "%s in part %s does not match the manifest: %d bytes with SHA-256 %s, "
                              "manifest says %d bytes with SHA-256 %s"
                              % (what, where, size, digest.hexdigest(), expected[0], expected[1]))
        elif stored_delta:
            self._check_delta_head(head, entry, name, where)
        with self.lock:
            self.bytes += size

    def _check_delta_head(self, head, entry, name, where):
        try:
            magic, layout, _r, page_size, file_size, _pages, _r2 = delta.DELTA_HEAD.unpack(head)
        except Exception:  # struct.error: too short
            magic, layout, page_size, file_size = b"", 0, 0, -1
        if (magic != delta.DELTA_MAGIC or layout not in (delta.DELTA_LISTED, delta.DELTA_STREAMED)
                or page_size != delta.BLCKSZ or file_size != entry["size"]):
            self.problems.add(self.order(where), where, "delta member of file %s in part %s has a bad header (layout %r, page "
                              "size %r, file size %r; the manifest says %d bytes)"
                              % (name, where, layout, page_size, file_size, entry["size"]))


def _check_parts(storage, sentinel, plan, problems, jobs, stage):
    """Stream and check every part of one backup; returns {parts, files, bytes, stored_bytes}."""
    checker = _Checker(storage, sentinel, plan, problems, stage)
    numbers = sorted(plan.parts)
    for number in numbers:
        checker.where[storage.describe(backups.backup_key(sentinel["name"], plan.parts[number]["key"]))] = number
    complete = set()

    def one(number):
        where = storage.describe(backups.backup_key(sentinel["name"], plan.parts[number]["key"]))
        order = stage + (number,)
        try:
            checker.part(number)
        except NotFound:
            problems.add(order, where, "part %s of backup %s is missing from the repository" % (where, sentinel["name"]))
            return
        except WalrusError as exc:
            message = str(exc)
            problems.add(order, where, message if where in message else "part %s: %s" % (where, message))
            return
        complete.add(number)

    with ThreadPoolExecutor(max_workers=max(1, min(int(jobs or 1), len(numbers) or 1))) as pool:
        list(pool.map(one, numbers))
    for path, entry in sorted(plan.files.items()):
        if entry.get("part") in complete and path not in checker.done:
            part = plan.parts[entry["part"]]
            where = storage.describe(backups.backup_key(sentinel["name"], part["key"]))
            problems.add(stage + (entry["part"], 1), where, "file %s of the manifest is not in part %s" % (path, where))
    unread = sorted(n for n in numbers if n not in complete)
    return {"parts": len(numbers), "parts_ok": len(complete), "parts_failed": unread,
            "files": len(checker.done), "bytes": checker.bytes,
            "stored_bytes": sum(p.get("stored_size") or 0 for p in plan.parts.values())}


def _check_chain_refs(storage, manifest, chain, problems):
    """A delta's "base" files must be the base's exactly; its delta members need a file in the base."""
    base_sentinel, base_manifest = chain[-1]
    base_files = dict((f.get("path"), f) for f in base_manifest["files"] if isinstance(f, dict))
    where = storage.describe(backups.backup_key(base_sentinel["name"], backups.MANIFEST))
    kept = 0
    for entry in manifest["files"]:
        stored, path = entry.get("stored", "whole"), entry["path"]
        older = base_files.get(path)
        if stored == "base":
            kept += 1
            if older is None or not filedigest.same(older, entry):
                problems.add((2, 0, 0), where, "file %s is kept unchanged from base backup %s, whose manifest %s"
                             % (path, base_sentinel["name"], "does not list it" if older is None else
                                "lists it with %s bytes and SHA-256 %s, not %d and %s"
                                % (older.get("size"), older.get("sha256"), entry["size"], entry["sha256"])))
        elif stored == "delta" and older is None:
            problems.add((2, 0, 0), where, "file %s is stored as changed pages, but base backup %s does not have it"
                         % (path, base_sentinel["name"]))
    return kept


def _check_wal(storage, manifest, system_identifier, segment_size, problems, jobs):
    """Every segment from start_wal to stop_wal on the backup's timeline; returns a summary."""
    try:
        first, last = walnames.parse(str(manifest.get("start_wal"))), walnames.parse(str(manifest.get("stop_wal")))
        if first.kind != "segment" or last.kind != "segment":
            raise UsageError("start_wal/stop_wal are not segment names")
    except UsageError as exc:
        problems.add((3, 0), "backup %s" % manifest.get("name"), "cannot tell which WAL the backup needs: %s" % exc)
        return {"first": manifest.get("start_wal"), "last": manifest.get("stop_wal"), "segments": 0, "missing": []}
    timeline = first.timeline
    segnos = range(first.segno(segment_size), last.segno(segment_size) + 1)
    missing = []

    def one(segno):
        walname = walnames.parse(walnames.segment_name(timeline, segno, segment_size))
        key = walname.object_key()
        where = storage.describe(key)
        try:
            raw = codec.decode(storage.get(key), where)
            sysid, _size, _magic = walnames.read_long_header(raw, walname)
        except NotFound:
            missing.append(walname.name)
            problems.add((3, segno), where, "WAL segment %s, which backup %s needs, is missing from the repository (%s)"
                         % (walname.name, manifest.get("name"), where))
            return 0
        except WalrusError as exc:
            message = str(exc)
            problems.add((3, segno), where, message if where in message else "WAL %s: %s" % (where, message))
            return 0
        if system_identifier is not None and str(sysid) != str(system_identifier):
            problems.add((3, segno), where, "WAL segment %s is of PostgreSQL system %s, the backup of system %s"
                         % (where, sysid, system_identifier))
        return 1

    with ThreadPoolExecutor(max_workers=max(1, min(int(jobs or 1), len(segnos) or 1))) as pool:
        good = sum(pool.map(one, segnos))
    return {"first": first.name, "last": last.name, "timeline": timeline, "segments": len(segnos),
            "segments_ok": good, "missing": sorted(missing)}


def verify_backup(settings, name, jobs=4, chain=False, storage=None):
    """Check backup `name` (or LATEST) and the WAL it needs; write nothing. `chain`: for a delta
    backup, also stream and check every part of every backup of its chain.

    Returns {name, kind, ok, problems: [{object, message}] (first bad object first), parts, files,
    bytes, stored_bytes, wal, chain, checked, not_checked, seconds}. NotFound when there is no
    such complete backup (with the names there are); failure(result) is the IntegrityError."""
    started = time.monotonic()
    storage = ratelimit.limit_storage(storage or open_storage(settings), settings, download=True)
    sentinel = backups.resolve(storage, name)
    name = sentinel["name"]
    problems = _Problems()
    result = {"name": name, "kind": sentinel.get("kind", "full"), "checked": list(CHECKED), "not_checked": [],
              "parts": 0, "parts_ok": 0, "files": 0, "bytes": 0, "stored_bytes": 0, "chain": None}
    manifest_where = storage.describe(backups.backup_key(name, backups.MANIFEST))
    manifest, plan = None, None
    try:
        manifest = backups.read_manifest(storage, sentinel)
        plan = restore._Plan(manifest, manifest_where, None)
    except WalrusError as exc:
        problems.add((0, 0), manifest_where, str(exc))
    identity = None
    try:
        identity = catalog.read_identity(storage)
    except WalrusError as exc:
        problems.add((0, 1), storage.describe(catalog.IDENTITY_KEY), str(exc))
    system = (manifest or sentinel).get("system_identifier")
    if identity is not None and system is not None and str(identity["system_identifier"]) != str(system):
        problems.add((0, 2), manifest_where, "backup %s is of PostgreSQL system %s, but the repository belongs to "
                     "system %s" % (name, system, identity["system_identifier"]))

    if plan is not None:
        result.update(_check_parts(storage, sentinel, plan, problems, jobs, (1, 0)))
        result["files_total"] = len(plan.files)
        result["files_in_parts"] = sum(1 for e in plan.files.values() if e.get("part") is not None)
        try:
            delta.read_page_hashes(storage, manifest)
        except WalrusError as exc:
            problems.add((1, 1, 0), storage.describe(backups.backup_key(name, delta.PAGE_HASHES)), str(exc))
        result["kind"] = manifest.get("kind", "full")
        if result["kind"] == "delta":
            result["not_checked"] = list(NOT_CHECKED_DELTA)
            result["chain"] = _verify_chain(storage, sentinel, manifest, problems, jobs, chain)

    segment_size = (manifest or {}).get("wal_segment_size") or (identity or {}).get("wal_segment_size")
    if segment_size:
        result["wal"] = _check_wal(storage, manifest or sentinel, system, int(segment_size), problems, jobs)
    else:
        result["wal"] = None
        problems.add((3, 0), manifest_where, "the WAL segment size is unknown (no manifest, no repository identity): "
                     "the backup's WAL was not checked")
    result["problems"] = problems.sorted()
    result["ok"] = not result["problems"]
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _verify_chain(storage, sentinel, manifest, problems, jobs, deep):
    out = {"backups": [], "parts_checked": bool(deep), "kept_from_base": 0}
    try:
        chain = delta.load_chain(storage, sentinel, manifest)
    except WalrusError as exc:
        problems.add((2, 0, 0), storage.describe(backups.backup_key(sentinel["name"], backups.MANIFEST)), str(exc))
        return out
    out["backups"] = [s["name"] for s, _m in chain]
    out["kept_from_base"] = _check_chain_refs(storage, manifest, chain, problems)
    if deep:
        out["parts"], out["bytes"] = 0, 0
        for i, (older, older_manifest) in enumerate(chain):
            where = storage.describe(backups.backup_key(older["name"], backups.MANIFEST))
            try:
                plan = restore._Plan(older_manifest, where, None)
            except WalrusError as exc:
                problems.add((2, i + 1, 0), where, str(exc))
                continue
            checked = _check_parts(storage, older, plan, problems, jobs, (2, i + 1))
            out["parts"] += checked["parts"]
            out["bytes"] += checked["bytes"]
    return out


def failure(result):
    """The IntegrityError for a result with problems: the first bad object, then every problem."""
    items = result["problems"]
    lines = ["backup %s failed verification: %d problem(s); first bad object: %s"
             % (result["name"], len(items), items[0]["object"])]
    lines += ["  - %s" % p["message"] for p in items]
    return IntegrityError("\n".join(lines))


def render(result):
    """Readable lines of a verification result."""
    lines = ["backup %s (%s): %s" % (result["name"], result["kind"], "OK" if result["ok"] else
                                     "%d PROBLEM(S)" % len(result["problems"]))]
    lines.append("  parts: %d of %d read and matching (%d stored bytes, %d raw bytes checked)"
                 % (result.get("parts_ok", 0), result.get("parts", 0), result.get("stored_bytes", 0),
                    result.get("bytes", 0)))
    lines.append("  files: %d members checked; %d of %d manifest files are stored in parts"
                 % (result.get("files", 0), result.get("files_in_parts", 0), result.get("files_total", 0)))
    chain = result.get("chain")
    if chain is not None:
        lines.append("  chain: %s (%d files kept from the base checked against it; parts of the chain %s)"
                     % (" -> ".join(chain["backups"]) or "-", chain["kept_from_base"],
                        "checked" if chain["parts_checked"] else "not read: use --chain"))
    wal = result.get("wal")
    if wal:
        lines.append("  WAL: %s .. %s: %d of %d segment(s) present and readable"
                     % (wal["first"], wal["last"], wal.get("segments_ok", 0), wal["segments"]))
    for item in result.get("not_checked") or ():
        lines.append("  not checked: %s" % item)
    lines.append("  %.1f s" % result.get("seconds", 0))
    return lines


__all__ = ["verify_backup", "failure", "render"]
