# SPDX-License-Identifier: GPL-3.0-or-later
"""backup-fetch: restore a base backup (docs/backup-format.md) into an empty directory and
prepare it for recovery through `walrus wal-fetch`.

Safety, in the order things happen:
- everything that can be checked before writing is checked first (backup name, manifest
  against its sentinel, every path in the manifest, recovery settings, tablespace map,
  empty target), so a refused restore changes nothing;
- the tar parts are streamed (storage -> codec.Decoder -> tarstream.py), several at once, largest first;
  a member must be a regular file or a directory with a relative name, listed in the
  manifest in that part; files are created with O_EXCL|O_NOFOLLOW through directory file
  descriptors opened with O_NOFOLLOW, so nothing is ever written outside the target (or a
  tablespace directory) whatever the repository holds;
- each file's size and SHA-256 are compared with the manifest while it is written, each
  part's raw size with the manifest once it ends, and every manifest file must have arrived
  once; every other byte of a part is tar structure that tarstream.py checks (header
  checksums, zero padding), and its trailer must hold the manifest's SHA-256, so the part
  needs no second SHA-256 over its whole stream;
- each file's writeback starts as it is written (writeback.py) and the worker fsyncs it
  when it ends; every restored directory is fsynced before pg_control is put in place;
- global/pg_control is written under a temporary name and renamed into place only after
  all that succeeded, and recovery.signal (standby.signal) is written last: an incomplete
  target can never be started by mistake.
"""
import datetime
import errno
import os
import re
import shlex
import shutil
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from . import backups, catalog, codec, filedigest, ratelimit, tarstream, writeback
from .errors import IntegrityError, NotFound, StorageError, UsageError, WalrusError
from .progress import ensure as _progress
from .storage import open_storage

PG_CONTROL = "global/pg_control"
PG_CONTROL_PENDING = "pg_control.walrus-incomplete"
BLOCK_BEGIN = "# --- walrus backup-fetch: recovery settings (begin) ---"
BLOCK_END = "# --- walrus backup-fetch: recovery settings (end) ---"
# Settings that must not survive from the backed-up cluster's postgresql.auto.conf: an old
# target would silently stop recovery elsewhere, two targets make PostgreSQL refuse to start.
_REPLACED_SETTING = re.compile(r"^\s*(restore_command|recovery_target\w*)\s*=", re.IGNORECASE)
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PART_KEY = re.compile(r"^part-\d{5}\.tar$")
_TARGETS = (("time", "recovery_target_time"), ("lsn", "recovery_target_lsn"), ("xid", "recovery_target_xid"),
            ("name", "recovery_target_name"), ("immediate", "recovery_target"))
RECOVERY_KEYS = frozenset(k for k, _s in _TARGETS) | frozenset(("timeline", "action", "inclusive"))
READ_SIZE = 1 << 18
DECODE_SLICE = 1 << 16  # bounds what one lz4/zstd call can expand to


class _Aborted(Exception):
    """Another part failed: stop this one quietly."""


# ---------------------------------------------------------------------------------------
# Checks done before anything is written


def _check_relpath(path, what):
    if (not isinstance(path, str) or not path or path.startswith("/") or "\0" in path
            or any(p in ("", ".", "..") for p in path.split("/"))):
        raise IntegrityError("%s has an unsafe path %r (must be relative, without '..')" % (what, path))
    return path


def _lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _aware_time(text):
    """A timezone-aware datetime from an ISO-like time, or None when it cannot be compared."""
    try:
        value = datetime.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def recovery_settings(recovery, restore_command):
    """The postgresql.auto.conf settings for `recovery` (see RECOVERY_KEYS), as an ordered
    list of (name, value). Raises UsageError for anything PostgreSQL would refuse."""
    recovery = dict((k, v) for k, v in (recovery or {}).items()
                    if v is not None and v != "" and not (k == "immediate" and not v))
    unknown = sorted(set(recovery) - RECOVERY_KEYS)
    if unknown:
        raise UsageError("unknown recovery setting(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(RECOVERY_KEYS))))
    targets = [key for key, _setting in _TARGETS if key in recovery]
    if len(targets) > 1:
        raise UsageError("give at most one recovery target; got %s" % ", ".join(targets))
    for key, value in recovery.items():
        if key != "immediate" and key != "inclusive" and ("\n" in str(value) or "\r" in str(value)):
            raise UsageError("recovery %s %r must be one line" % (key, value))
    out = [("restore_command", restore_command)]
    for key, setting in _TARGETS:
        if key not in recovery:
            continue
        value = str(recovery[key])
        if key == "immediate":
            value = "immediate"
        elif key == "lsn" and not _LSN.match(value):
            raise UsageError("recovery target LSN %r is not an LSN like 0/5000028" % value)
        elif key == "xid" and not value.isdigit():
            raise UsageError("recovery target xid %r is not a transaction id (a number)" % value)
        elif key == "time" and not value.strip():
            raise UsageError("recovery target time is empty")
        out.append((setting, value))
    if "inclusive" in recovery:
        out.append(("recovery_target_inclusive", "on" if recovery["inclusive"] else "off"))
    if "timeline" in recovery:
        timeline = str(recovery["timeline"]).strip().lower()
        if timeline not in ("latest", "current") and not re.match(r"^(\d+|0x[0-9a-f]+)$", timeline):
            raise UsageError("recovery target timeline %r: use latest, current or a timeline number" % recovery["timeline"])
        out.append(("recovery_target_timeline", timeline))
    if "action" in recovery:
        if recovery["action"] not in ("pause", "promote", "shutdown"):
            raise UsageError("recovery target action %r: use pause, promote or shutdown" % recovery["action"])
        if not targets:
            raise UsageError("a recovery target action needs a recovery target (time, lsn, xid, name or immediate)")
        out.append(("recovery_target_action", recovery["action"]))
    return out


def checked_server_settings(server_settings):
    """(name, value) pairs of plain PostgreSQL settings; recovery settings have their own options."""
    out = []
    for key, value in sorted((server_settings or {}).items()):
        if not _SETTING_NAME.match(key) or _REPLACED_SETTING.match(key + " ="):
            raise UsageError("%r is not a setting walrus can write here%s" % (
                key, " (use the recovery target options)" if _REPLACED_SETTING.match(key + " =") else ""))
        if "\n" in str(value) or "\r" in str(value):
            raise UsageError("setting %s %r must be one line" % (key, value))
        out.append((key, str(value)))
    return out


def walrus_executable():
    """The path of the running walrus command (what PostgreSQL's restore_command will run)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0).startswith("walrus") and os.path.isfile(argv0):
        return os.path.realpath(argv0)
    found = shutil.which("walrus")
    return os.path.realpath(found) if found else "walrus"


def default_restore_command(settings, executable=None):
    def arg(value):
        return shlex.quote(value).replace("%", "%%")  # PostgreSQL expands %f/%p/%% in it
    words = [arg(executable or walrus_executable()), "wal-fetch"]
    config_sources = set(settings.source(n)[len("config "):] for n in ("repo",) if settings.source(n).startswith("config "))
    for path in sorted(config_sources):
        words += ["--config", arg(path)]
    if settings.repo:
        words += ["--repo", arg(settings.repo)]
    return " ".join(words + ["%f", "%p"])


def _conf_quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class _Plan(object):
    """The manifest, checked and indexed: where every directory and file goes."""

    def __init__(self, manifest, where, tablespace_map):
        self.manifest = manifest
        parts = manifest["parts"]
        self.parts = {}
        for part in parts:
            if (not isinstance(part, dict) or not isinstance(part.get("number"), int)
                    or not _PART_KEY.match(str(part.get("key"))) or not _HEX64.match(str(part.get("sha256")))):
                raise IntegrityError("manifest %s has a malformed part entry %r" % (where, part))
            if part["number"] in self.parts:
                raise IntegrityError("manifest %s lists part %d twice" % (where, part["number"]))
            self.parts[part["number"]] = part
        self.tablespaces = {}
        for ts in manifest.get("tablespaces") or ():
            oid, location = str(ts.get("oid", "")), ts.get("location")
            if not oid.isdigit() or not isinstance(location, str) or not os.path.isabs(location):
                raise IntegrityError("manifest %s has a malformed tablespace entry %r" % (where, ts))
            self.tablespaces[oid] = location
        tablespace_map = dict((str(k), v) for k, v in (tablespace_map or {}).items())
        unknown = sorted(set(tablespace_map) - set(self.tablespaces))
        if unknown:
            raise UsageError("tablespace map names OID(s) %s, which backup %s does not have (its tablespaces: %s)"
                             % (", ".join(unknown), manifest["name"],
                                ", ".join("%s at %s" % kv for kv in sorted(self.tablespaces.items())) or "none"))
        self.locations = {}
        for oid, location in self.tablespaces.items():
            new = tablespace_map.get(oid, location)
            if not os.path.isabs(new):
                raise UsageError("tablespace %s: new location %r must be an absolute path" % (oid, new))
            self.locations[oid] = os.path.normpath(new)
        self.directories = []
        seen = set()
        for entry in manifest["directories"]:
            path = _check_relpath(entry.get("path") if isinstance(entry, dict) else None, "manifest %s directory" % where)
            if not isinstance(entry.get("mode"), int):
                raise IntegrityError("manifest %s: directory %s has no mode" % (where, path))
            if path in seen:
                raise IntegrityError("manifest %s lists directory %s twice" % (where, path))
            seen.add(path)
            self.directories.append((path, entry["mode"]))
        self.directories.sort(key=lambda pm: pm[0].count("/"))
        self.dirset = seen
        self.files = {}
        for entry in manifest["files"]:
            path = _check_relpath(entry.get("path") if isinstance(entry, dict) else None, "manifest %s file" % where)
            if (not isinstance(entry.get("size"), int) or entry["size"] < 0 or not _HEX64.match(str(entry.get("sha256")))
                    or not isinstance(entry.get("mode"), int) or entry.get("digest", filedigest.WHOLE) not in filedigest.KINDS
                    or (entry.get("part") not in self.parts
                        and not (entry.get("stored") == "base" and entry.get("part") is None))):
                raise IntegrityError("manifest %s has a malformed entry for file %s" % (where, path))
            if path in self.files:
                raise IntegrityError("manifest %s lists file %s twice" % (where, path))
            root, rel = self.locate(path)
            if not rel:
                raise IntegrityError("manifest %s lists file %s, the place of a tablespace link" % (where, path))
            parent = rel.rpartition("/")[0]
            if parent and self.logical_dir(root, parent) not in self.dirset:
                raise IntegrityError("manifest %s: the directory of file %s is not in its directory list" % (where, path))
            self.files[path] = entry
        for path, _mode in self.directories:
            root, rel = self.locate(path)
            parent = rel.rpartition("/")[0]
            if parent and self.logical_dir(root, parent) not in self.dirset:
                raise IntegrityError("manifest %s: the parent of directory %s is not in its directory list" % (where, path))

    def locate(self, path):
        """(root, path relative to it): root None is the target, else a tablespace OID."""
        parts = path.split("/")
        if len(parts) >= 2 and parts[0] == "pg_tblspc" and parts[1] in self.tablespaces:
            return parts[1], "/".join(parts[2:])
        return None, path

    @staticmethod
    def logical_dir(root, rel):
        return rel if root is None else "pg_tblspc/%s/%s" % (root, rel)


# ---------------------------------------------------------------------------------------
# Writing without following links


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))


class _Dirs(object):
    """Directory file descriptors below the restore roots, opened one component at a time
    with O_NOFOLLOW (a symlink anywhere on the way is an error, never followed)."""

    def __init__(self, roots):
        self.roots = roots  # root key -> fd (owned by the caller)
        self.cache = {}

    def fd(self, root, rel):
        if not rel:
            return self.roots[root]
        key = (root, rel)
        if key not in self.cache:
            parent, _sep, base = rel.rpartition("/")
            parent_fd = self.fd(root, parent)
            try:
                self.cache[key] = os.open(base, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise IntegrityError("%s is not a directory (a link or a file is in its place)" % rel)
                raise
        return self.cache[key]

    def close(self):
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dirfd(fd):
    try:
        os.fsync(fd)
    except OSError:
        pass


def _write_small(dir_fd, name, data, mode=0o600):
    fd = os.open(name, _FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Streaming one part


class _PartReader(object):
    """The raw bytes of a stored part: storage chunks -> codec.Decoder, decoded one slice of
    DECODE_SLICE stored bytes at a time as they are read, so what is held decoded is bounded
    whatever the storage chunk size and compression ratio. read_view() hands out memoryviews
    of the decoded pieces: nothing is copied on the way to the files."""

    def __init__(self, chunks, decoder, abort):
        self._chunks = iter(chunks)
        self._decoder = decoder
        self._abort = abort
        self._stored = memoryview(b"")
        self._raw = memoryview(b"")
        self.eof = False

    def _fill(self):
        while not self._raw and not self.eof:
            if self._abort.is_set():
                raise _Aborted()
            if not self._stored:
                try:
                    self._stored = memoryview(next(self._chunks))
                except StopIteration:
                    self._decoder.finish()
                    self.eof = True
                continue
            piece, self._stored = self._stored[:DECODE_SLICE], self._stored[DECODE_SLICE:]
            raw = self._decoder.update(piece)
            if raw:
                self._raw = memoryview(raw)

    def read_view(self, size):
        """Up to `size` (> 0) raw bytes; empty only at the end of the part."""
        if not self._raw:
            self._fill()
        view, self._raw = self._raw[:size], self._raw[size:]
        return view

    def drain(self):
        while not self.eof:
            self._raw = memoryview(b"")
            self._fill()


class _Restorer(object):
    """Streams the parts of one backup into the target. `files`/`parts` are that backup's
    manifest entries (default: the plan's); delta.py's chain restorer overrides _write().
    `progress` (progress.py) counts the bytes written."""

    # Whether the decoder also hashes the whole raw stream and compares it with the manifest's
    # part SHA-256. A restore does not need it: tarstream.py accounts for every byte that is not
    # member data, and every member written is compared with the manifest's SHA-256 of its file.
    # backup-verify (verify.py) keeps it, to check the part as stored.
    object_digest = False

    def __init__(self, storage, sentinel, plan, roots, abort, files=None, parts=None, progress=None):
        self.storage = storage
        self.name = sentinel["name"]
        self.plan = plan
        self.files = plan.files if files is None else files
        self.parts = plan.parts if parts is None else parts
        self.roots = roots
        self.abort = abort
        self.lock = threading.Lock()
        self.done = set()
        self.bytes = 0
        self.progress = _progress(progress)

    def part(self, number):
        part = self.parts[number]
        key = backups.backup_key(self.name, part["key"])
        where = self.storage.describe(key)
        try:
            chunks = self.storage.get_stream(key)
        except NotFound:
            raise IntegrityError("part %s of backup %s is missing from the repository" % (where, self.name))
        decoder = codec.Decoder(where, digest=self.object_digest)
        reader = _PartReader(chunks, decoder, self.abort)
        dirs = _Dirs(self.roots)
        try:
            tar = tarstream.TarStream(reader, where)
            for member in tar:
                if self.abort.is_set():
                    raise _Aborted()
                self._member(tar, member, number, where, dirs)
            reader.drain()
        finally:
            dirs.close()
        # Without the object digest, the trailer's SHA-256 must still be the manifest's: a changed
        # trailer is a changed object, even when the bytes it describes are intact.
        digest = decoder.sha256 if decoder.sha256 is not None else decoder.trailer_sha256
        if decoder.raw_size != part.get("raw_size", decoder.raw_size) or digest != part["sha256"]:
            raise IntegrityError("part %s does not match the manifest: %d bytes with SHA-256 %s%s, manifest says "
                                 "%s bytes with SHA-256 %s" % (where, decoder.raw_size, digest,
                                                               "" if decoder.sha256 else " (in its trailer)",
                                                               part.get("raw_size"), part["sha256"]))

    def _member(self, tar, member, number, where, dirs):
        name = member.name
        try:
            _check_relpath(name, "part %s: member" % where)
        except IntegrityError:
            raise IntegrityError("part %s holds member %r with an unsafe name (absolute or with '..')" % (where, name))
        if member.isdir() and member.type == tarfile.DIRTYPE:
            root, rel = self.plan.locate(name)
            if rel and self.plan.logical_dir(root, rel) not in self.plan.dirset:
                raise IntegrityError("part %s holds directory %s, which the manifest does not list" % (where, name))
            return
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
            kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk() else
                    "a device" if member.isdev() else "not a regular file")
            raise IntegrityError("part %s holds member %s, which is %s: a backup holds only regular files and "
                                 "directories" % (where, name, kind))
        entry = self.files.get(name)
        if entry is None or entry["part"] != number:
            raise IntegrityError("part %s holds file %s, which the manifest does not list%s"
                                 % (where, name, "" if entry is None else " in this part (it says part %d)" % entry["part"]))
        with self.lock:
            if name in self.done:
                raise IntegrityError("part %s holds file %s a second time" % (where, name))
            self.done.add(name)
        stored_size = entry["stored_size"] if entry.get("stored") == "delta" else entry["size"]
        if member.size != stored_size:
            raise IntegrityError("file %s in part %s has %d bytes, the manifest says %d"
                                 % (name, where, member.size, stored_size))
        self._write(tar, member, entry, name, where, dirs)

    def _write(self, tar, member, entry, name, where, dirs):
        root, rel = self.plan.locate(name)
        parent, _sep, base = rel.rpartition("/")
        if name == PG_CONTROL:
            base = PG_CONTROL_PENDING
        parent_fd = dirs.fd(root, parent)
        try:
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent_fd)
        except FileExistsError:
            raise IntegrityError("file %s from part %s already exists in the target" % (name, where))
        digest, size, durable = filedigest.new(entry), 0, writeback.FileWriteback(fd)
        try:
            for chunk in tar.views():
                digest.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
                self.progress.add(len(chunk))
                durable.written(size)
            durable.done(size)
            os.fchmod(fd, entry["mode"] & 0o777)
            mtime = entry.get("mtime")
            if isinstance(mtime, (int, float)):
                os.utime(fd, (mtime, mtime))
            os.fsync(fd)  # durable as it finishes, in the worker (directories are fsynced at the end)
        finally:
            os.close(fd)
        if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise IntegrityError("file %s from part %s does not match the manifest: %d bytes with SHA-256 %s, "
                                 "manifest says %d bytes with SHA-256 %s"
                                 % (name, where, size, digest.hexdigest(), entry["size"], entry["sha256"]))
        with self.lock:
            self.bytes += size


# ---------------------------------------------------------------------------------------
# The target and its tablespace directories


def _is_running(datadir):
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as handle:
            pid = int(handle.readline().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _linked_tablespaces(datadir):
    """Real paths of the tablespace directories an existing data directory links to."""
    out = set()
    tblspc = os.path.join(datadir, "pg_tblspc")
    try:
        names = os.listdir(tblspc)
    except OSError:
        return out
    for name in names:
        if os.path.islink(os.path.join(tblspc, name)):
            out.add(os.path.realpath(os.path.join(tblspc, name)))
    return out


def _check_empty(path, what, overwrite, hint=None):
    """Refuse a non-empty directory unless overwrite. Returns True if it must be emptied."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError("%s %s exists and is not a directory" % (what, path))
    if not os.path.isdir(path):
        return False
    entries = sorted(os.listdir(path))
    if not entries:
        return False
    if not overwrite:
        raise UsageError("%s %s is not empty (%d entries: %s%s): %s" % (
            what, path, len(entries), ", ".join(entries[:5]), ", ..." if len(entries) > 5 else "",
            hint or "restore into an empty directory, or use --overwrite to empty it first"))
    if _is_running(path):
        raise UsageError("%s %s belongs to a running PostgreSQL server (postmaster.pid): stop it first" % (what, path))
    return True


def _empty(path):
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def _prepare_dir(path):
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        os.mkdir(path, 0o700)
    os.chmod(path, 0o700)


def _rewrite_tablespace_map(text, plan):
    out = []
    for line in text.splitlines(True):
        oid, sep, _rest = line.partition(" ")
        if sep and oid in plan.locations and plan.locations[oid] != plan.tablespaces.get(oid):
            line = "%s %s\n" % (oid, plan.locations[oid])
        out.append(line)
    return "".join(out)


def _auto_conf(old, settings, name):
    """postgresql.auto.conf with a fresh walrus block; earlier walrus blocks are removed and
    other restore_command / recovery_target* lines commented out."""
    lines, inside = [], False
    for line in old.splitlines():
        if line.strip() == BLOCK_BEGIN:
            inside = True
            continue
        if line.strip() == BLOCK_END:
            inside = False
            continue
        if inside:
            continue
        if _REPLACED_SETTING.match(line):
            line = "# (replaced by walrus backup-fetch) " + line
        lines.append(line)
    lines.append(BLOCK_BEGIN)
    lines.append("# backup %s, restored %s" % (name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    lines.extend("%s = %s" % (key, _conf_quote(value)) for key, value in settings)
    lines.append(BLOCK_END)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _choose(storage, name, settings_list):
    """Resolve the name; for LATEST with a time or LSN target, the newest backup that stopped
    before the target. Checks that an explicitly named backup ends before the target."""
    values = dict(settings_list)
    target_time = _aware_time(values["recovery_target_time"]) if "recovery_target_time" in values else None
    target_lsn = _lsn(values["recovery_target_lsn"]) if "recovery_target_lsn" in values else None

    def ends_before(sentinel):
        try:
            if target_time is not None:
                stop = _aware_time(sentinel["stop_time"])
                return stop is None or stop <= target_time
            if target_lsn is not None:
                return _lsn(sentinel["stop_lsn"]) <= target_lsn
        except (KeyError, ValueError, AttributeError):
            return True
        return True

    target = values.get("recovery_target_time") or values.get("recovery_target_lsn")
    if name == backups.LATEST and (target_time is not None or target_lsn is not None):
        complete = backups.list_backups(storage, problems=[])
        if not complete:
            raise NotFound("no complete backup in %s" % storage.describe())
        usable = [s for s in complete if ends_before(s)]
        if not usable:
            raise UsageError("no backup in %s ends before the recovery target %s (the oldest, %s, ends at %s / %s)"
                             % (storage.describe(), target, complete[0]["name"], complete[0]["stop_time"],
                                complete[0].get("stop_lsn")))
        return usable[-1]
    sentinel = backups.resolve(storage, name)
    if not ends_before(sentinel):
        raise UsageError("backup %s ends at %s / %s, after the recovery target %s: recovery cannot stop before "
                         "the end of the backup; choose an earlier backup" % (
                             sentinel["name"], sentinel["stop_time"], sentinel.get("stop_lsn"), target))
    return sentinel


def fetch_backup(settings, name, target_dir, tablespace_map=None, jobs=4, recovery=None, standby=False,
                 overwrite=False, restore_command=None, storage=None, server_settings=None, progress=None):
    """Restore backup `name` (or LATEST) into `target_dir` and prepare recovery.

    tablespace_map: {oid: new directory}; recovery: {time|lsn|xid|name|immediate, timeline,
    action, inclusive}; restore_command defaults to this walrus's wal-fetch for the repository;
    server_settings: {name: value} written into the same block (e.g. port, archive_mode).
    Returns {name, target, files, bytes, seconds, recovery, signal}. NotFound when the backup
    does not exist; any failure after writing started says that the target is incomplete.
    `progress` (progress.py) counts the bytes written, out of the manifest's (the chain's)."""
    started = time.monotonic()
    target = os.path.abspath(target_dir)
    conf = recovery_settings(recovery, restore_command or default_restore_command(settings))
    conf += checked_server_settings(server_settings)
    storage = ratelimit.limit_storage(storage or open_storage(settings), settings, download=True)
    sentinel = _choose(storage, name, conf)
    manifest = backups.read_manifest(storage, sentinel)
    identity = catalog.read_identity(storage)
    if identity is not None and str(identity["system_identifier"]) != str(manifest.get("system_identifier")):
        raise IntegrityError("backup %s is of PostgreSQL system %s, but the repository %s belongs to system %s"
                             % (sentinel["name"], manifest.get("system_identifier"), storage.describe(),
                                identity["system_identifier"]))
    plan = _Plan(manifest, storage.describe(backups.backup_key(sentinel["name"], backups.MANIFEST)), tablespace_map)
    from . import delta
    chain = delta.load_chain(storage, sentinel, manifest)  # the backups a delta needs, checked before writing
    for oid, location in plan.locations.items():
        if location == target or location.startswith(target + os.sep) or target.startswith(location + os.sep):
            raise UsageError("tablespace %s location %s overlaps the target %s: relocate it with --tablespace-map %s=DIR"
                             % (oid, location, target, oid))
    try:
        to_empty = [target] if _check_empty(target, "target directory", overwrite) else []
        # --overwrite empties a tablespace directory only if the data directory being replaced
        # links to it: never another cluster's (e.g. the running primary's) tablespace.
        owned = _linked_tablespaces(target) if to_empty else set()
        for oid, location in sorted(plan.locations.items()):
            what = "tablespace %s directory" % oid
            if _check_empty(location, what, overwrite and os.path.realpath(location) in owned,
                            hint="relocate it with --tablespace-map %s=DIR" % oid):
                to_empty.append(location)
    except OSError as exc:
        raise StorageError("cannot inspect %s: %s (nothing was changed)" % (exc.filename or target, exc.strerror or exc))

    roots = {}
    try:
        for path in to_empty:
            _empty(path)
        _prepare_dir(target)
        roots[None] = os.open(target, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
        for oid, location in plan.locations.items():
            _prepare_dir(location)
            roots[oid] = os.open(location, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
        result = _restore(storage, sentinel, plan, roots, jobs, conf, standby, chain, progress)
    except (WalrusError, OSError) as exc:
        message = str(exc) if isinstance(exc, WalrusError) else "%s: %s" % (
            exc.filename or target, exc.strerror or exc)
        for signal in ("recovery.signal", "standby.signal"):
            try:
                os.unlink(os.path.join(target, signal))
            except OSError:
                pass
        cls = type(exc) if isinstance(exc, WalrusError) and not isinstance(exc, NotFound) else (
            IntegrityError if isinstance(exc, NotFound) else StorageError)
        raise cls("%s -- the restore into %s failed and that directory is INCOMPLETE: do not start PostgreSQL on "
                  "it; remove it, or rerun with --overwrite" % (message, target))
    finally:
        for fd in roots.values():
            os.close(fd)
    result.update(target=target, seconds=round(time.monotonic() - started, 3))
    return result


def run_parts(restorer, jobs):
    """Stream every part of the restorer's backup, `jobs` at a time; the first failure stops
    the others. Then every file the manifest puts in a part must have arrived."""
    # Largest first: the biggest part is the longest single task, so it must not start last.
    def size(number):
        raw = restorer.parts[number].get("raw_size")
        return raw if isinstance(raw, int) else 0
    numbers = sorted(restorer.parts, key=lambda n: (-size(n), n))
    errors = []
    with ThreadPoolExecutor(max_workers=max(1, min(int(jobs or 1), len(numbers) or 1))) as pool:
        futures = [pool.submit(restorer.part, n) for n in numbers]
        for future in as_completed(futures):
            try:
                future.result()
            except _Aborted:
                pass
            except BaseException as exc:  # first failure stops the others
                restorer.abort.set()
                errors.append(exc)
    if errors:
        first = [e for e in errors if isinstance(e, IntegrityError)] or errors
        raise first[0]
    missing = sorted(path for path, entry in restorer.files.items()
                     if entry.get("part") is not None and path not in restorer.done)
    if missing:
        raise IntegrityError("%d file(s) listed in the manifest were not in their parts: %s%s (backup %s)"
                             % (len(missing), ", ".join(missing[:5]), ", ..." if len(missing) > 5 else "", restorer.name))


def _bytes_to_write(plan, chain):
    """What the restorers will write: every stored file of the backup, or, for a delta, of
    each backup of its chain (delta members count their stored size) the newest one keeps."""
    manifests = [m for _s, m in chain or []] + [plan.manifest]
    total = 0
    for manifest in manifests:
        for entry in manifest.get("files") or []:
            if isinstance(entry, dict) and entry.get("part") is not None and entry.get("path") in plan.files:
                size = entry.get("stored_size" if entry.get("stored") == "delta" else "size")
                total += size if isinstance(size, int) else 0
    return total


def _restore(storage, sentinel, plan, roots, jobs, conf, standby, chain=None, progress=None):
    manifest = plan.manifest
    progress = _progress(progress)
    progress.start(_bytes_to_write(plan, chain), "backup-fetch %s" % sentinel["name"])
    # Directories first (parents first), owner-writable until the files are in.
    setup = _Dirs(roots)
    try:
        for path, _mode in plan.directories:
            root, rel = plan.locate(path)
            if not rel:
                continue
            parent, _sep, base = rel.rpartition("/")
            os.mkdir(base, 0o700, dir_fd=setup.fd(root, parent))
    finally:
        setup.close()

    if chain:  # a delta backup: its full base first, then every delta in order (delta.py)
        from . import delta
        done, written = delta.restore_chain(storage, chain + [(sentinel, manifest)], plan, roots, jobs, progress)
    else:
        restorer = _Restorer(storage, sentinel, plan, roots, threading.Event(), progress=progress)
        run_parts(restorer, jobs)
        done, written = len(restorer.done), restorer.bytes
    progress.finish()

    dirs = _Dirs(roots)
    try:
        for path, mode in reversed(plan.directories):
            root, rel = plan.locate(path)
            parent, _sep, base = rel.rpartition("/")
            if rel:
                os.chmod(base, mode & 0o777, dir_fd=dirs.fd(root, parent), follow_symlinks=False)
        top = roots[None]
        if plan.tablespaces:
            tblspc = dirs.fd(None, "pg_tblspc") if "pg_tblspc" in plan.dirset else None
            if tblspc is None:
                os.mkdir("pg_tblspc", 0o700, dir_fd=top)
                tblspc = dirs.fd(None, "pg_tblspc")
            for oid, location in sorted(plan.locations.items()):
                os.symlink(location, oid, dir_fd=tblspc)
            _fsync_dirfd(tblspc)
        if manifest.get("backup_label"):
            _write_small(top, "backup_label", manifest["backup_label"].encode("utf-8"))
        if manifest.get("tablespace_map"):
            _write_small(top, "tablespace_map", _rewrite_tablespace_map(manifest["tablespace_map"], plan).encode("utf-8"))
        try:
            fd = os.open("postgresql.auto.conf", os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=top)
            with os.fdopen(fd, "rb") as handle:
                old = handle.read().decode("utf-8", "surrogateescape")
            mode = plan.files.get("postgresql.auto.conf", {}).get("mode", 0o600) & 0o777
        except FileNotFoundError:
            old, mode = "", 0o600
        _write_small(top, "postgresql.auto.conf.walrus-new", _auto_conf(old, conf, sentinel["name"]), mode)
        os.replace("postgresql.auto.conf.walrus-new", "postgresql.auto.conf", src_dir_fd=top, dst_dir_fd=top)
        # Every restored file is on disk (the workers fsynced each one): now their directory
        # entries, before the directory can be started. Only what this restore wrote is synced.
        for path, _mode in plan.directories:
            root, rel = plan.locate(path)
            _fsync_dirfd(dirs.fd(root, rel))
        for fd in roots.values():
            _fsync_dirfd(fd)
        if PG_CONTROL in plan.files:
            global_fd = dirs.fd(None, "global")
            os.replace(PG_CONTROL_PENDING, "pg_control", src_dir_fd=global_fd, dst_dir_fd=global_fd)
            _fsync_dirfd(global_fd)
        signal = "standby.signal" if standby else "recovery.signal"
        _write_small(top, signal, b"")
        _fsync_dirfd(top)
    finally:
        dirs.close()
    return {"name": sentinel["name"], "files": done, "bytes": written,
            "recovery": dict(conf), "signal": signal, "stop_time": sentinel.get("stop_time"),
            "stop_lsn": sentinel.get("stop_lsn"), "wal_segment_size": manifest.get("wal_segment_size"),
            "tablespaces": dict(plan.locations)}


__all__ = ["fetch_backup", "recovery_settings", "default_restore_command"]
