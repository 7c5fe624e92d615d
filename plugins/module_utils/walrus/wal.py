# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-push and wal-fetch: archive one WAL file (plus look-ahead), restore one (plus prefetch).

Correctness: push returns only after the storage backend says the object is durable;
an object is never overwritten (no-overwrite writes), and a second push of the same name
succeeds only if the stored content is byte-identical. Every segment's long page header
must match the repository identity (system identifier, segment size).
"""
import hashlib
import os
import re
import struct
import time

from . import codec, catalog, lookahead, pg, prefetch, walnames, worker
from .errors import ConfigError, ConflictError, NotFound, ObjectExists, StorageError
from .storage import open_storage


def _read_file(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            return data, os.fstat(handle.fileno())
    except FileNotFoundError:
        raise ConfigError("WAL file %s does not exist" % path)
    except OSError as exc:
        raise StorageError("cannot read WAL file %s: %s" % (path, exc.strerror or exc))


def _control_system_identifier(pg_wal):
    """The system identifier from global/pg_control of the data directory that holds pg_wal,
    or None when the file is not inside a data directory."""
    for datadir in (os.path.dirname(pg_wal), os.getcwd()):
        try:
            with open(os.path.join(datadir, "global", "pg_control"), "rb") as handle:
                return struct.unpack("<Q", handle.read(8))[0]
        except (OSError, struct.error):
            continue
    return None


class Pusher(object):
    """Pushes WAL files of one cluster into one repository, checking identity once."""

    def __init__(self, settings, storage, pg_wal):
        self.settings = settings
        self.storage = storage
        self.pg_wal = pg_wal
        self.identity = None
        storage.prepare_write()

    def _check_identity(self, walname, data, path):
        if walname.has_header:
            sysid, seg_size, magic = walnames.read_long_header(data, walname)
            pg_major = walnames.PAGE_MAGIC_TO_MAJOR.get(magic)
        else:
            sysid, seg_size, pg_major = _control_system_identifier(self.pg_wal), None, None
        if self.identity is not None:
            if sysid is not None:
                catalog.verify_identity(self.identity, self.storage, sysid, seg_size, path)
            return
        if sysid is None or seg_size is None:
            identity = catalog.read_identity(self.storage)
            if identity is None:
                if sysid is None:
                    raise ConfigError("cannot tell which cluster %s belongs to (no pg_control beside it) and "
                                      "the repository %s is new: push a WAL segment first" % (path, self.storage.describe()))
                raise ConfigError("the repository %s is new: push a WAL segment before %s"
                                  % (self.storage.describe(), walname.name))
            if sysid is not None:
                catalog.verify_identity(identity, self.storage, sysid, None, path)
            self.identity = identity
            return
        pg.check_supported(pg_major, "the cluster that wrote %s" % path)
        self.identity = catalog.ensure_identity(self.storage, sysid, seg_size, pg_major, path)

    def push(self, path, walname, data=None, st=None, encoded=None):
        """Store one WAL file (`encoded` may be given: its encoding, made before the storage was
        open). Returns 'uploaded' or 'already_stored'."""
        if data is None:
            data, st = _read_file(path)
        self._check_identity(walname, data, path)
        key = walname.object_key()
        if encoded is None:
            encoded = encode(self.settings, data)
        try:
            self.storage.put(key, encoded)
            status = "uploaded"
        except ObjectExists:
            stored = codec.decode(self.storage.get(key), self.storage.describe(key))
            if stored != data:
                raise ConflictError(
                    "%s is already archived in %s with different content (stored SHA-256 %s, local %s): "
                    "refusing to overwrite it. Another cluster may be archiving into this repository, or a "
                    "restored cluster reuses it without a new timeline."
                    % (walname.name, self.storage.describe(key), hashlib.sha256(stored).hexdigest(),
                       hashlib.sha256(data).hexdigest()))
            status = "already_stored"
        return status, st, data


def encode(settings, data):
    """The stored form of one WAL file (compressed, with its trailer)."""
    return codec.encode(data, settings.compression, settings.compression_level)


def plan_push(settings, path, storage=None):
    """Check mode for wal-push: 'would_upload' or 'already_stored'; raises what push would
    raise (malformed name, another cluster's repository, different content). Writes nothing."""
    walname = walnames.parse(os.path.basename(path))
    data, _st = _read_file(path)
    storage = storage or open_storage(settings)
    identity = catalog.read_identity(storage)
    if identity is not None and walname.has_header:
        sysid, seg_size, _magic = walnames.read_long_header(data, walname)
        catalog.verify_identity(identity, storage, sysid, seg_size, path)
    key = walname.object_key()
    try:
        stored = codec.decode(storage.get(key), storage.describe(key))
    except NotFound:
        return "would_upload"
    if stored != data:
        raise ConflictError("%s is already archived in %s with different content" % (walname.name, storage.describe(key)))
    return "already_stored"


def exists(settings, name, storage=None):
    """Whether WAL file `name` is archived (for check mode of wal_fetch)."""
    storage = storage or open_storage(settings)
    return storage.exists(walnames.parse(name).object_key())


def push(settings, path, storage=None):
    """archive_command: store `path` durably. With look-ahead on, a background pusher stores
    the .ready files (this one first) and leaves a record for each; this call then only waits
    for its own record, as the fast path does. Without a pusher, or if the pusher could not
    store the file, this call stores it itself (and reports what went wrong).
    Returns a dict describing what was done."""
    started = time.monotonic()
    name = os.path.basename(path)
    walname = walnames.parse(name)
    pg_wal = os.path.dirname(os.path.abspath(path))
    state_dir = lookahead.default_dir(settings, pg_wal)
    if lookahead.take(state_dir, path, name):
        return {"name": name, "status": "pushed_ahead", "seconds": time.monotonic() - started}
    if settings.lookahead > 0 and os.path.isdir(os.path.join(pg_wal, "archive_status")) \
            and not worker.running(state_dir):
        # Forked before boto3 is imported: the pusher imports it and builds its client while
        # its threads already compress the first files; this process imports nothing heavy.
        if _start_pusher(settings, state_dir, pg_wal) and lookahead.take(state_dir, path, name):
            return {"name": name, "status": "pushed_ahead", "seconds": time.monotonic() - started}
    data, st = _read_file(path)
    storage = storage or open_storage(settings)
    status, _st, _data = Pusher(settings, storage, pg_wal).push(path, walname, data, st)
    return {"name": name, "status": status, "seconds": time.monotonic() - started}


def _start_pusher(settings, state_dir, pg_wal):
    """Start the background pusher; True once it runs (its window is published)."""
    def run(ready):
        from concurrent.futures import ThreadPoolExecutor

        # The client is built in its own thread (boto3's import and the client's setup take
        # 0.3-0.4 s of one CPU) while the upload threads read and compress their first files.
        opener = ThreadPoolExecutor(max_workers=1)
        pusher = opener.submit(lambda: Pusher(settings, open_storage(settings), pg_wal))
        opener.shutdown(wait=False)

        def push_one(other):
            other_path = os.path.join(pg_wal, other)
            data, st = _read_file(other_path)
            encoded = encode(settings, data)
            pusher.result().push(other_path, walnames.parse(other), data, st, encoded)
            lookahead.write(state_dir, other, st)
        lookahead.run_worker(state_dir, pg_wal, push_one, settings.lookahead, settings.upload_concurrency,
                             (), ready)
    try:
        worker.spawn(state_dir, run)
        return True
    except OSError:
        return False  # look-ahead is an optimisation; this call still pushes its own file


def _write_dest(dest, data):
    tmp = "%s.walrus-tmp.%d" % (dest, os.getpid())
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.rename(tmp, dest)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError("cannot write %s: %s" % (dest, exc.strerror or exc))


def fetch_bytes(storage, walname):
    """The verified content of one WAL file; NotFound if it is not archived."""
    key = walname.object_key()
    return codec.decode(storage.get(key), storage.describe(key))


def recovery_kind(dest):
    """"archive" or "standby" when `dest` is pg_wal/<file> of a data directory that PostgreSQL
    is recovering with recovery.signal / standby.signal; None otherwise (e.g. a manual call)."""
    pgdata = os.path.dirname(os.path.dirname(os.path.abspath(dest)))
    if os.path.exists(os.path.join(pgdata, "standby.signal")):
        return "standby"
    if os.path.exists(os.path.join(pgdata, "recovery.signal")):
        return "archive"
    return None


def fetch(settings, name, dest, storage=None, use_prefetch=True):
    """restore_command: write WAL file `name` to `dest` (atomically). NotFound if absent.
    A repository that cannot be read is retried for settings.fetch_retry_seconds: giving up
    too soon would look like the end of the archive to PostgreSQL."""
    deadline = time.monotonic() + max(0, settings.fetch_retry_seconds or 0)
    delay = 0.5
    while True:
        try:
            return _fetch_once(settings, name, dest, storage, use_prefetch)
        except StorageError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 8.0)
            storage = None  # a fresh client on the next attempt


def _fetch_once(settings, name, dest, storage, use_prefetch):
    started = time.monotonic()
    walname = walnames.parse(name)
    pg_wal = os.path.dirname(os.path.abspath(dest))
    pdir = prefetch.default_dir(settings, pg_wal)
    prefetching = use_prefetch and settings.prefetch > 0
    use_prefetch = prefetching and walname.kind == "segment"
    if use_prefetch and prefetch.take(pdir, name, dest, prefetch.WAIT_SECONDS):
        return {"name": name, "status": "prefetched", "seconds": time.monotonic() - started}
    answer = prefetching and walname.kind in ("segment", "history") and prefetch.ask(pdir, name, dest)
    if answer == prefetch.SERVED:
        return {"name": name, "status": "prefetched", "seconds": time.monotonic() - started}
    if answer == prefetch.ABSENT:
        raise NotFound("%s is not archived (the prefetch worker looked)" % name)
    storage = storage or open_storage(settings)
    identity = catalog.read_identity(storage)
    if identity is None:
        # Without this, a wrong prefix would look like an empty archive and recovery would end early.
        storage.check()
        raise StorageError("%s is not a walrus repository (no %s): check the repository URL"
                           % (storage.describe(), catalog.IDENTITY_KEY))
    try:
        data = fetch_bytes(storage, walname)
    except NotFound:
        if prefetching and walname.kind == "history":
            _prefetch_from_backup_label(settings, pdir, dest, int(identity["wal_segment_size"]))
        raise
    _write_dest(dest, data)
    if use_prefetch:
        try:
            _sysid, seg_size, _magic = walnames.read_long_header(data, walname)
        except Exception:
            seg_size = None
        if seg_size:
            _start_prefetch(settings, pdir, walname.timeline, walname.segno(seg_size) + 1, seg_size)
    return {"name": name, "status": "fetched", "bytes": len(data), "seconds": time.monotonic() - started}


_BACKUP_LABEL_START = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.MULTILINE)


def _prefetch_from_backup_label(settings, pdir, dest, seg_size):
    """Recovery from a base backup asks for the next timeline's history file before its first
    segment: start prefetching at the backup's start segment (backup_label) right away, so
    that the first segment is not a foreground fetch too."""
    if recovery_kind(dest) is None or worker.running(pdir):
        return
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(dest))), "backup_label")) as handle:
            match = _BACKUP_LABEL_START.search(handle.read())
    except (OSError, UnicodeDecodeError):
        return
    if match:
        first = walnames.parse(match.group(1))
        _start_prefetch(settings, pdir, first.timeline, first.segno(seg_size), seg_size)


def prefetch_restored(settings, target, seg_size):
    """After backup-fetch into `target`: start the prefetch worker at the backup's first WAL
    segment now, so that the server's first restore_command calls find their files waiting
    (and the live worker answers the history-file questions) instead of each paying boto3's
    import and a first fetch. Only when this process may fork (no other thread) and owns the
    directory and is not root, i.e. runs as the server will: a worker owned by another user
    would lock the server's restore_command out of the prefetch directory. Returns True if a worker started."""
    import threading
    if settings.prefetch <= 0 or not seg_size or threading.active_count() > 1:
        return False
    try:
        if os.geteuid() == 0 or os.stat(target).st_uid != os.geteuid():  # PostgreSQL never runs as root
            return False
    except OSError:
        return False
    dest = os.path.join(target, "pg_wal", "RECOVERYXLOG")
    pdir = prefetch.default_dir(settings, os.path.dirname(dest))
    _prefetch_from_backup_label(settings, pdir, dest, int(seg_size))
    return worker.running(pdir)


def _start_prefetch(settings, pdir, timeline, first, seg_size):
    """Start a prefetch worker for the segments of `timeline` from segment number `first` on."""
    def names():
        segno = first
        while True:
            yield walnames.segment_name(timeline, segno, seg_size)
            segno += 1

    def run(ready):
        storage = open_storage(settings)  # a fresh client: connections are not shared across fork
        prefetch.run_worker(pdir, names(), lambda n: fetch_bytes(storage, walnames.parse(n)),
                            settings.prefetch, settings.upload_concurrency, ready)

    try:
        prefetch.start(settings, pdir, run)
    except OSError:
        pass  # prefetch is an optimisation; the foreground fetch already succeeded
