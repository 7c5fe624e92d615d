# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading base backups from the repository (docs/backup-format.md): which backups are
complete, which one a name or LATEST means, and their verified manifests.

A backup exists only once its sentinel (`basebackups/<name>/sentinel.json`) is stored; the
sentinel carries the SHA-256 of the manifest, so a manifest read through read_manifest() is
exactly the one the backup wrote.
"""
import hashlib
import json
import re

from . import codec
from .errors import EncryptionKeyMissing, IntegrityError, NotFound, WalrusError

PREFIX = "basebackups/"
SENTINEL = "sentinel.json"
MANIFEST = "manifest.json"
LATEST = "LATEST"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SENTINEL_FORMAT = "walrus-backup-sentinel"
MANIFEST_FORMAT = "walrus-backup"
FORMAT_VERSION = 2  # manifests of delta backups are version 2 (sentinels stay 1)
_SENTINEL_FIELDS = ("name", "manifest_sha256", "stop_time", "start_time", "timeline")


def backup_key(name, leaf):
    return "%s%s/%s" % (PREFIX, name, leaf)


def _read_json(storage, key, what):
    """Fetch, decode and parse one framed JSON object. NotFound propagates."""
    where = storage.describe(key)
    raw = codec.decode(storage.get(key), where)
    try:
        return raw, json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError("%s %s is not valid JSON: %s" % (what, where, exc))


def read_sentinel(storage, name):
    """The verified sentinel of backup `name`; NotFound if the backup has none."""
    key = backup_key(name, SENTINEL)
    _raw, sentinel = _read_json(storage, key, "backup sentinel")
    where = storage.describe(key)
    if not isinstance(sentinel, dict) or sentinel.get("format") != SENTINEL_FORMAT:
        raise IntegrityError("%s is not a walrus backup sentinel" % where)
    if not isinstance(sentinel.get("format_version"), int) or sentinel["format_version"] > FORMAT_VERSION:
        raise IntegrityError("%s has format version %r; this walrus reads version %d"
                             % (where, sentinel.get("format_version"), FORMAT_VERSION))
    missing = [field for field in _SENTINEL_FIELDS if field not in sentinel]
    if missing:
        raise IntegrityError("%s lacks %s" % (where, ", ".join(missing)))
    if sentinel["name"] != name:
        raise IntegrityError("%s names backup %r, not %r" % (where, sentinel["name"], name))
    return sentinel


def _sentinel_names(storage):
    names = set()
    for key, _size in storage.list(PREFIX):
        parts = key[len(PREFIX):].split("/")
        if len(parts) == 2 and parts[1] == SENTINEL and NAME_RE.match(parts[0]):
            names.add(parts[0])
    return sorted(names)


def _lsn_order(text):
    """An LSN as a number for ordering (stop times have one-second resolution: a delta
    backup can end in the same second as its base); -1 when it is not an LSN."""
    try:
        high, low = str(text).split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        return -1


def list_backups(storage, problems=None):
    """Complete backups (those with a sentinel), as sentinel dicts sorted by stop time (oldest
    first). A sentinel that cannot be read is left out; its error message is appended to
    `problems` when a list is given."""
    found = []
    for name in _sentinel_names(storage):
        try:
            found.append(read_sentinel(storage, name))
        except NotFound:
            continue  # deleted while we listed
        except EncryptionKeyMissing:
            raise  # not one bad backup: LATEST must not quietly mean an older one
        except WalrusError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    found.sort(key=lambda s: (str(s.get("stop_time")), _lsn_order(s.get("stop_lsn")), s["name"]))
    return found


def resolve(storage, name):
    """The sentinel of backup `name`, or of the newest complete backup for LATEST.
    Raises NotFound with the available names when there is no such complete backup."""
    if name == LATEST:
        backups = list_backups(storage, problems=[])
        if not backups:
            raise NotFound("no complete backup in %s" % storage.describe())
        return backups[-1]
    if not NAME_RE.match(name or ""):
        raise NotFound("%r is not a backup name (letters, digits, '.', '_', '-'; or LATEST)" % (name,))
    try:
        return read_sentinel(storage, name)
    except NotFound:
        available = [s["name"] for s in list_backups(storage, problems=[])]
        raise NotFound("backup '%s' does not exist in %s; available: %s"
                       % (name, storage.describe(), ", ".join(available) if available else "none"))


def read_manifest(storage, sentinel):
    """The backup's manifest, verified against the SHA-256 its sentinel holds."""
    key = backup_key(sentinel["name"], MANIFEST)
    where = storage.describe(key)
    try:
        raw = codec.decode(storage.get(key), where)
    except NotFound:
        raise IntegrityError("backup %s has a sentinel but its manifest %s is missing"
                             % (sentinel["name"], where))
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sentinel["manifest_sha256"]:
        raise IntegrityError("manifest %s does not match its sentinel: SHA-256 %s, sentinel says %s"
                             % (where, digest, sentinel["manifest_sha256"]))
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError("manifest %s is not valid JSON: %s" % (where, exc))
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IntegrityError("%s is not a walrus backup manifest" % where)
    if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
        raise IntegrityError("manifest %s has format version %r; this walrus reads version %d"
                             % (where, manifest.get("format_version"), FORMAT_VERSION))
    if manifest.get("name") != sentinel["name"]:
        raise IntegrityError("manifest %s names backup %r" % (where, manifest.get("name")))
    for field in ("parts", "files", "directories"):
        if not isinstance(manifest.get(field), list):
            raise IntegrityError("manifest %s has no %s list" % (where, field))
    return manifest


def _human(size):
    if size is None:
        return "-"
    size = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.1f %s" % (size, unit))
        size /= 1024.0


def _pg_version(num):
    try:
        num = int(num)
    except (TypeError, ValueError):
        return "-"
    return "%d.%d" % (num // 10000, num % 10000) if num >= 100000 else str(num)


def render(backups):
    """Lines of a readable table of sentinels."""
    header = ("NAME", "KIND", "START (UTC)", "STOP (UTC)", "TL", "START WAL", "STOP WAL", "RAW", "STORED", "PG")
    rows = [header]
    for s in backups:
        kind = "delta of %s" % s.get("base") if s.get("kind") == "delta" else "full"
        rows.append((s["name"], kind, str(s.get("start_time", "-")), str(s.get("stop_time", "-")),
                     str(s.get("timeline", "-")), str(s.get("start_wal", "-")), str(s.get("stop_wal", "-")),
                     _human(s.get("raw_size")), _human(s.get("stored_size")), _pg_version(s.get("pg_version_num"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
