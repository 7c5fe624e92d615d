# SPDX-License-Identifier: GPL-3.0-or-later
"""walrus backup-push: a base backup of a running cluster, streamed into the repository.

The non-exclusive backup API (pg.py) brackets a walk of the data directory and tablespaces;
files go into tar parts that are built, compressed and uploaded as they are read, several
parts in parallel (no staging copy on disk). The backup counts only when the WAL segment
holding its stop point is in the repository; then the manifest, and last the sentinel, are
written. With delta=True only the pages changed since a base backup are stored (delta.py).
docs/backup-format.md is the format.
"""
import hashlib
import json
import os
import re
import stat
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

from . import catalog, codec, delta, filedigest, pg, ratelimit, repolock, walnames
from .progress import ensure as _progress
from .backups import NAME_RE, PREFIX, backup_key
from .errors import ConfigError, UsageError, WalrusError, StorageError
from .storage import open_storage

READ_CHUNK = 1 << 20
WHOLE_READ_MAX = 1 << 20  # files up to this size are read whole before their tar header is written
MIN_PART_BYTES = 16 << 20
PARTS_PER_JOB = 4  # small-file parts per worker: enough to even out the workers' ends
# Directories whose contents a base backup leaves out (the directory itself is kept).
EMPTY_DIRS = ("pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
              "pg_stat_tmp", "pg_subtrans")
# Subdirectories of pg_wal kept (empty) when the cluster has them: archive_status, and the WAL
# summaries of PostgreSQL 17+ (summarize_wal), as pg_basebackup keeps them.
WAL_SUBDIRS = ("archive_status", "summaries")
# Files of the data directory's top level that a base backup leaves out.
SKIP_TOP_FILES = frozenset(("postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
                            "backup_label.old", "tablespace_map.old", "current_logfiles",
                            "standby.signal", "recovery.signal"))


def check_name(name):
    if not NAME_RE.match(name or "") or name == "LATEST":
        raise UsageError("invalid backup name %r: use letters, digits, '.', '_' and '-' (not LATEST), "
                         "starting with a letter or digit, at most 128 characters" % (name,))
    return name


def _skip_file(directory_files, name, rel_dir):
    """True for files a base backup must leave out (besides the top-level ones)."""
    if name.startswith("pgsql_tmp") or name.startswith("pg_internal.init"):
        return True
    digits = re.match(r"^(\d+)", name)
    if digits and not name.startswith(digits.group(1) + "_init"):
        # An unlogged relation (it has an _init fork): only the _init fork is kept.
        return (digits.group(1) + "_init") in directory_files
    return False


def walk(datadir, tablespaces):
    """Directories and files to back up: (dirs [(rel, mode)], files [(rel, abs)])."""
    dirs, files = [], []
    roots = [("", datadir)] + [("pg_tblspc/%s" % ts["oid"], ts["location"]) for ts in tablespaces]
    for prefix, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = prefix if rel_dir == "." else (prefix + "/" if prefix else "") + rel_dir.replace(os.sep, "/")
            if rel_dir and rel_dir != prefix:
                try:
                    dirs.append((rel_dir, stat.S_IMODE(os.lstat(dirpath).st_mode)))
                except FileNotFoundError:
                    dirnames[:] = []
                    continue
            if rel_dir in EMPTY_DIRS:
                dirnames[:] = [d for d in dirnames if d in WAL_SUBDIRS] if rel_dir == "pg_wal" else []
                continue
            if rel_dir.startswith("pg_wal/"):
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("pgsql_tmp")
                                 and not (rel_dir == "pg_tblspc" and not prefix))
            present = set(filenames)
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if not rel_dir and name in SKIP_TOP_FILES:
                    continue
                if rel_dir == "pg_tblspc":
                    continue  # the tablespace links; their targets are walked as roots
                if _skip_file(present, name, rel_dir):
                    continue
                if not os.path.isfile(full) or os.path.islink(full):
                    continue
                files.append(((rel_dir + "/" if rel_dir else "") + name, full))
    for needed in ("pg_wal", "pg_wal/archive_status"):  # pg_wal may be a link to another disk
        if not any(d == needed for d, _m in dirs):
            dirs.append((needed, 0o700))
    return dirs, files


def plan_parts(files, jobs, part_bytes):
    """Group files into parts, largest part first: parts are the unit of parallel work (on
    backup and on restore), and the longest task must start first. A file is never split
    (docs/backup-format.md: a file is in one part), so a file of part_bytes or more is a part
    of its own; smaller files go, in path order, into parts of at most about total / (4 * jobs)
    bytes (at least MIN_PART_BYTES, at most part_bytes), so that the workers finish together."""
    sized = []
    for rel, full in files:
        try:
            sized.append((rel, full, os.lstat(full).st_size))
        except FileNotFoundError:
            continue  # gone since the walk: WAL replay recreates it if it matters
    total = sum(size for _r, _f, size in sized)
    target = max(MIN_PART_BYTES, min(part_bytes, total // (PARTS_PER_JOB * max(1, jobs)) + 1))
    parts, current, current_bytes = [], [], 0
    for item in sized:
        if item[2] >= target:
            parts.append([item])
            continue
        if current and current_bytes + item[2] > target:
            parts.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item[2]
    if current:
        parts.append(current)
    parts.sort(key=lambda members: -sum(item[2] for item in members))  # stable: path order among equals
    return parts


def is_complete(storage, name):
    """Whether a complete backup (one with its sentinel) of that name exists."""
    return storage.exists(backup_key(check_name(name), "sentinel.json"))


def _read_upto(handle, size):
    """Up to `size` bytes of an open file: fewer when it shrank meanwhile."""
    out = []
    while size > 0:
        chunk = handle.read(min(READ_CHUNK, size))
        if not chunk:
            break
        out.append(chunk)
        size -= len(chunk)
    return b"".join(out)


def _tar_stream(members, entries, part_number, pages, progress=None, read_limit=None):
    """Yield a tar stream of the given files, recording each in `entries`. A file that
    vanished is left out; one that grew is cut at its size when opened. One that shrank while
    read is stored to its new end when it is small (WHOLE_READ_MAX), else padded with zeros to
    the size its header declared (relation files: the truncation is in the WAL, replay repeats it). In a delta
    backup, a relation file the base has becomes a delta member, or no member at all when
    no page changed (`pages`: delta.Pages, which also records every page's hash). `progress`
    counts the bytes read from the data directory; `read_limit` (ratelimit.py) paces the reads."""
    progress = _progress(progress)
    for rel, full, _planned in members:
        try:
            handle = ratelimit.reader(open(full, "rb"), read_limit)
        except FileNotFoundError:
            continue
        with handle:
            st = os.fstat(handle.fileno())
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = st.st_size, stat.S_IMODE(st.st_mode), int(st.st_mtime)
            info.type = tarfile.REGTYPE
            entry = {"path": rel, "size": st.st_size, "mode": info.mode, "mtime": info.mtime, "part": part_number}
            changed = pages.delta(rel, handle, st.st_size, READ_CHUNK)
            if changed is not None:
                if changed.member_size == 0:
                    entry.update(part=None, stored="base")
                    list(changed.chunks())
                else:
                    member_digest = hashlib.sha256()
                    info.size = changed.member_size
                    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                    for chunk in changed.chunks():
                        member_digest.update(chunk)
                        yield chunk
                    if info.size % tarfile.BLOCKSIZE:
                        yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
                    entry.update(stored="delta", stored_size=info.size, stored_sha256=member_digest.hexdigest(),
                                 pages=changed.pages)
                entry.update(sha256=changed.sha256, digest=filedigest.PAGES)
                entries.append(entry)
                progress.add(st.st_size)
                continue
            if pages.base is not None:
                entry["stored"] = "whole"
            if st.st_size <= WHOLE_READ_MAX:
                # Small files (configuration files, pg_filenode.map, pg_control, SLRU segments) are
                # read before their header is written, so one that shrank ends where it ends now
                # instead of being padded (a pg_hba.conf rewritten in place must not end in NULs).
                data = _read_upto(handle, st.st_size)
                info.size = entry["size"] = len(data)
                scanner = pages.scanner(rel, len(data))
                if scanner is not None:
                    scanner.update(data)
                progress.add(len(data))
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                yield data
                if len(data) % tarfile.BLOCKSIZE:
                    yield b"\0" * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE)
                _set_digest(entry, scanner, data)
                pages.record(rel, scanner)
                entries.append(entry)
                continue
            scanner = pages.scanner(rel, st.st_size)
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            # A relation file's digest comes from its page scan (one pass over its bytes).
            digest, remaining = (None if scanner is not None else hashlib.sha256()), st.st_size
            while remaining:
                chunk = handle.read(min(READ_CHUNK, remaining))
                if not chunk:
                    chunk = b"\0" * min(READ_CHUNK, remaining)
                if scanner is not None:
                    scanner.update(chunk)
                else:
                    digest.update(chunk)
                remaining -= len(chunk)
                progress.add(len(chunk))
                yield chunk
            if st.st_size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - st.st_size % tarfile.BLOCKSIZE)
            _set_digest(entry, scanner, None, digest)
            pages.record(rel, scanner)
        entries.append(entry)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _set_digest(entry, scanner, data=None, digest=None):
    """The manifest digest of a file read whole (`data`) or streamed (`digest` fed): from the
    page scan for a relation file (filedigest.PAGES), else the SHA-256 of its bytes."""
    if scanner is not None:
        entry.update(sha256=scanner.sha256(), digest=filedigest.PAGES)
    else:
        entry["sha256"] = (digest or hashlib.sha256(data)).hexdigest()


def _encoded(raw_chunks, encoder):
    yield encoder.header()
    for chunk in raw_chunks:
        out = encoder.update(chunk)
        if out:
            yield out
    yield encoder.finish()


def upload_part(storage, settings, name, number, members, pages=None, progress=None):
    entries = []
    # The members' SHA-256 go into the manifest: the part's own digest covers the stored body only.
    encoder = codec.Encoder(settings.compression, settings.compression_level, digest_of_body=True)
    key = "part-%05d.tar" % number
    stream = _tar_stream(members, entries, number, pages or delta.Pages(), progress,
                         ratelimit.bucket("read", getattr(settings, "max_read_rate", None)))
    stored = storage.put_stream(backup_key(name, key), _encoded(stream, encoder))
    return {"number": number, "key": key, "raw_size": encoder.raw_size, "stored_size": stored,
            "sha256": encoder.sha256, "sha256_of": "body"}, entries


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _control_sysid(datadir):
    from .check import data_directory_identity
    return data_directory_identity(datadir)[0]


def wait_for_wal(storage, walname, timeout):
    """The backup is usable only once the segment holding its stop point is archived."""
    started = time.monotonic()
    deadline, pause = started + timeout, 0.05
    while not storage.exists(walname.object_key()):
        if time.monotonic() > deadline:
            raise StorageError(
                "WAL segment %s (the backup's stop point) did not reach %s within %d s: is archive_command "
                "'walrus wal-push %%p' archiving into this repository?" % (walname.name, storage.describe(), timeout))
        time.sleep(pause)
        if time.monotonic() - started > 2:  # usually archived within a second: poll often until then
            pause = min(pause * 1.5, 1.0)


@repolock.exclusive(lambda a: "backup-push of %s%s" % (a["datadir"], " as %s" % a["name"] if a["name"] else ""))
def push(settings, datadir, name=None, fast=True, jobs=4, part_mb=1024, archive_timeout=600,
         conninfo=None, storage=None, delta_backup=False, delta_max_chain=delta.DEFAULT_MAX_CHAIN, progress=None):
    """Take a base backup of the cluster at `datadir`. Returns the sentinel dict (with `note`
    saying why, when a delta was asked for and a full backup taken). `progress` (progress.py)
    counts the bytes read from the data directory, out of the walk's total."""
    progress = _progress(progress)
    started = time.time()
    name = check_name(name or time.strftime("base_%Y%m%dT%H%M%SZ", time.gmtime(started)))
    datadir = os.path.abspath(datadir)
    if not os.path.isfile(os.path.join(datadir, "PG_VERSION")):
        raise ConfigError("%s is not a PostgreSQL data directory (no PG_VERSION)" % datadir)
    storage = storage or open_storage(settings)
    server = pg.connect(**(conninfo or {}))
    try:
        sysid = server.system_identifier()
        if _control_sysid(datadir) != sysid:
            raise ConfigError("the server walrus connected to (system %d) does not run the data directory %s: "
                              "check PGHOST/PGPORT" % (sysid, datadir))
        segment_size = server.wal_segment_size()
        catalog.ensure_identity(storage, sysid, segment_size, server.major, "the cluster at %s" % datadir)
        if any(True for _k in storage.list(PREFIX + name + "/")):
            raise ConfigError("a backup named %r already exists in %s" % (name, storage.describe()))
        from_standby = server.in_recovery()
        tablespaces = server.tablespaces()
        pages, note = delta.Pages(), None
        if delta_backup and delta_max_chain < 1:
            raise UsageError("--delta-max-chain must be at least 1")
        start_lsn = server.start_backup("walrus %s" % name, fast)
        if delta_backup:
            # After the start checkpoint, pg_control holds the timeline this backup starts on.
            current_tl = int(server.value("select timeline_id from pg_control_checkpoint()"))
            base, _base_manifest, base_hashes, note = delta.choose_base(
                storage, sysid, server.version_num, current_tl, delta.timeline_history(datadir, current_tl),
                delta_max_chain)
            if base is not None:
                pages = delta.Pages(base, base_hashes)
        dirs, files = walk(datadir, tablespaces)
        parts_plan = plan_parts(files, jobs, part_mb << 20)
        progress.start(sum(item[2] for members in parts_plan for item in members), "backup-push %s" % name)
        parts, entries = [], []
        part_storage = ratelimit.limit_storage(storage, settings, upload=True)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(upload_part, part_storage, settings, name, i + 1, members, pages, progress)
                       for i, members in enumerate(parts_plan)]
            for future in futures:
                part, part_entries = future.result()
                parts.append(part)
                entries.extend(part_entries)
        progress.finish()
        stop_lsn, label, spcmap = server.stop_backup()
    finally:
        server.close()
    timeline = int(pg.label_field(label, "START TIMELINE") or 1)
    start_wal = (pg.label_field(label, "START WAL LOCATION") or "").split("file ")[-1].rstrip(")")
    stop_segno = (pg.parse_lsn(stop_lsn) - 1) // segment_size
    stop_wal = walnames.segment_name(timeline, stop_segno, segment_size)
    wait_for_wal(storage, walnames.parse(stop_wal), archive_timeout)
    raw_hashes = delta.encode_page_hashes(pages.hashes)
    storage.put(backup_key(name, delta.PAGE_HASHES), codec.encode(raw_hashes, "none"))
    stopped = time.time()
    base = pages.base
    chain = (list(base.get("chain") or []) + [base["name"]]) if base else []
    lineage = {"kind": "delta" if base else "full", "base": base["name"] if base else None, "chain": chain}
    manifest = {
        "format": "walrus-backup", "format_version": 2 if base else 1, "name": name,
        "system_identifier": str(sysid), "pg_version_num": server.version_num, "wal_segment_size": segment_size,
        "timeline": timeline, "start_lsn": start_lsn, "stop_lsn": stop_lsn, "start_wal": start_wal,
        "stop_wal": stop_wal, "start_time": _utc(started), "stop_time": _utc(stopped),
        "from_standby": from_standby, "compression": settings.compression,
        "backup_label": label, "tablespace_map": spcmap,
        "tablespaces": [{"oid": ts["oid"], "location": ts["location"]} for ts in tablespaces],
        "parts": sorted(parts, key=lambda p: p["number"]),
        "directories": [{"path": d, "mode": m} for d, m in sorted(dirs, key=lambda dm: (dm[0].count("/"), dm[0]))],
        "files": sorted(entries, key=lambda e: e["path"]),
        "page_hashes": {"key": delta.PAGE_HASHES, "raw_size": len(raw_hashes),
                        "sha256": hashlib.sha256(raw_hashes).hexdigest()},
    }
    manifest.update(lineage)
    if base:
        manifest["base_start_lsn"] = base["start_lsn"]
        manifest["delta"] = dict(pages.stats)
    raw_manifest = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
    storage.put(backup_key(name, "manifest.json"), codec.encode(raw_manifest, settings.compression))
    sentinel = {
        "format": "walrus-backup-sentinel", "format_version": 1, "name": name,
        "manifest_sha256": hashlib.sha256(raw_manifest).hexdigest(),
        "start_lsn": start_lsn, "stop_lsn": stop_lsn, "start_wal": start_wal, "stop_wal": stop_wal,
        "timeline": timeline, "start_time": manifest["start_time"], "stop_time": manifest["stop_time"],
        "pg_version_num": server.version_num, "system_identifier": str(sysid),
        "raw_size": sum(p["raw_size"] for p in parts), "stored_size": sum(p["stored_size"] for p in parts),
        "files": len(entries), "parts": len(parts),
    }
    sentinel.update(lineage)
    storage.put(backup_key(name, "sentinel.json"), codec.encode(json.dumps(sentinel, sort_keys=True).encode("utf-8"), "none"))
    sentinel["seconds"] = round(stopped - started, 3)
    if base:
        sentinel["delta"] = dict(pages.stats)
    if note:
        sentinel["note"] = "full backup instead of a delta: %s" % note
    return sentinel


__all__ = ["push", "walk", "check_name", "WalrusError"]
