# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-push look-ahead records: what an earlier call already pushed ahead of PostgreSQL.

A record is written only after the segment is durably stored. It holds the segment file's
size, mtime_ns, ctime_ns, inode and device at the time it was read. The fast path accepts
the record only if all five still match: any write to the file, or any metadata change,
moves ctime, which user space cannot set back, so a matching record means the bytes are
those that were stored. PostgreSQL never rewrites a segment once it is marked .ready.
The records live in <pg_wal>/walrus/push (pg_wal's subdirectories are left out of base
backups). Standard library only: this is the archive_command fast path.
"""
import os

RECORD_VERSION = "1"
STALE_SECONDS = 24 * 3600


def default_dir(settings, pg_wal):
    return settings.state_dir or os.path.join(pg_wal, "walrus", "push")


def _stat_fields(st):
    return "%d %d %d %d %d" % (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def take(state_dir, path, name):
    """Fast path: True if `name` was pushed ahead and the file is unchanged since.
    The record is consumed either way; a mismatch falls back to the full push, which
    compares content with the stored object."""
    record = os.path.join(state_dir, name)
    try:
        with open(record, "r") as handle:
            fields = handle.read().split()
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        current = _stat_fields(os.stat(path))
    except FileNotFoundError:
        current = None
    try:
        os.unlink(record)
    except FileNotFoundError:
        pass
    return bool(fields) and fields[0] == RECORD_VERSION and " ".join(fields[1:6]) == current


def write(state_dir, name, st, sha256):
    """Remember that `name`, as described by os.stat result `st`, is durably stored."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    record = os.path.join(state_dir, name)
    tmp = "%s.tmp.%d" % (record, os.getpid())
    with open(tmp, "w") as handle:
        handle.write("%s %s %s\n" % (RECORD_VERSION, _stat_fields(st), sha256))
    os.replace(tmp, record)


def ready_after(pg_wal, name, limit):
    """Names of other WAL files PostgreSQL has marked .ready, in the order it archives them
    (timeline history files first, then by name), at most `limit`."""
    if limit <= 0:
        return []
    try:
        entries = os.listdir(os.path.join(pg_wal, "archive_status"))
    except FileNotFoundError:
        return []
    ready = [e[:-len(".ready")] for e in entries if e.endswith(".ready") and e[:-len(".ready")] != name]
    ready.sort(key=lambda n: (not n.endswith(".history"), n))
    return ready[:limit]


def clean(state_dir, pg_wal, now):
    """Drop records whose WAL file is gone or that are older than a day."""
    try:
        entries = os.listdir(state_dir)
    except FileNotFoundError:
        return
    for entry in entries:
        record = os.path.join(state_dir, entry)
        try:
            stale = (not os.path.exists(os.path.join(pg_wal, entry.split(".tmp.")[0]))
                     or now - os.stat(record).st_mtime > STALE_SECONDS)
            if stale:
                os.unlink(record)
        except FileNotFoundError:
            pass
