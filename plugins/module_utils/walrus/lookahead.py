# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-push look-ahead: a background pusher stores the .ready WAL files PostgreSQL will ask
for next, and leaves a record for each; the archive_command call for such a file then only
checks the record (the fast path).

Records live in <pg_wal>/walrus/push/<repository tag>/ (pg_wal's subdirectories are left
out of base backups), one per file, written only after the file is durably stored. A record
holds the file's size, mtime_ns, ctime_ns, inode and device when it was read; the fast path
accepts it only if all five still match. Any write to the file or change of its metadata
moves ctime, which user space cannot set back, so a match means the bytes are those that
were stored; PostgreSQL never rewrites a segment once it is marked .ready. A record made for
one repository is never seen by a push to another (the directory is per repository).

PostgreSQL's own .ready/.done files are only read, never touched. Standard library only at
module level: take() is the archive_command fast path.
"""
import os
import time

from . import worker

RECORD_VERSION = "2"
STALE_SECONDS = 24 * 3600
IDLE_SECONDS = 3.0      # a pusher with nothing to do exits after this long
MAX_LIFE_SECONDS = 600  # and a busy one hands over to a fresh process (new settings apply)
WAIT_SECONDS = 300.0    # how long archive_command waits for a file the pusher is storing


def default_dir(settings, pg_wal):
    return settings.state_dir or os.path.join(pg_wal, "walrus", "push", worker.repo_tag(settings.repo))


def _stat_fields(st):
    return "%d %d %d %d %d" % (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _take_record(state_dir, path, name):
    record = os.path.join(state_dir, name)
    try:
        with open(record, "r") as handle:
            fields = handle.read().split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        current = _stat_fields(os.stat(path))
    except FileNotFoundError:
        current = None
    try:
        os.unlink(record)
    except FileNotFoundError:
        pass
    return bool(fields) and fields[0] == RECORD_VERSION and " ".join(fields[1:6]) == current


def take(state_dir, path, name, wait_seconds=WAIT_SECONDS):
    """Fast path: True if `name` was pushed ahead and the file is unchanged since, waiting
    while the pusher is storing it. The record is consumed either way; a mismatch falls back
    to the full push, which compares content with the stored object."""
    outcome = []

    def attempt():
        found = _take_record(state_dir, path, name)
        if found is not None:
            outcome.append(found)
        return found is not None
    worker.wait_for(state_dir, name, attempt, wait_seconds)
    return bool(outcome and outcome[0])


def write(state_dir, name, st):
    """Remember that `name`, as described by os.stat result `st`, is durably stored."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    record = os.path.join(state_dir, name)
    tmp = "%s.tmp.%d" % (record, os.getpid())
    with open(tmp, "w") as handle:
        handle.write("%s %s\n" % (RECORD_VERSION, _stat_fields(st)))
    os.replace(tmp, record)


def ready_files(pg_wal):
    """Names of the WAL files PostgreSQL has marked .ready, in the order it archives them
    (timeline history files first, then by name)."""
    try:
        entries = os.listdir(os.path.join(pg_wal, "archive_status"))
    except FileNotFoundError:
        return []
    ready = [e[:-len(".ready")] for e in entries if e.endswith(".ready")]
    ready.sort(key=lambda n: (not n.endswith(".history"), n))
    return ready


def clean(state_dir, pg_wal, now):
    """Drop records whose WAL file is gone or that are older than a day."""
    try:
        entries = os.listdir(state_dir)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.startswith("."):
            continue
        record = os.path.join(state_dir, entry)
        try:
            if (not os.path.exists(os.path.join(pg_wal, entry.split(".tmp.")[0]))
                    or now - os.stat(record).st_mtime > STALE_SECONDS):
                os.unlink(record)
        except FileNotFoundError:
            pass


def run_worker(state_dir, pg_wal, push_one, depth, concurrency, exclude, ready):
    """Push .ready files (other than `exclude`) with `concurrency` threads, at most `depth`
    at a time, until there has been nothing to do for IDLE_SECONDS. push_one(name) stores
    the file and writes its record; a failure is left for PostgreSQL's own call to report."""
    from concurrent.futures import ThreadPoolExecutor

    if worker.acquire(state_dir, timeout=0.5) is None:
        ready()
        return
    clean(state_dir, pg_wal, time.time())
    attempted = set(exclude)
    in_flight = {}
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    started = last_busy = time.monotonic()
    window = None
    try:
        while True:
            retiring = time.monotonic() - started > MAX_LIFE_SECONDS
            ready_now = [] if retiring else ready_files(pg_wal)
            attempted &= set(ready_now) | set(exclude)  # forget what PostgreSQL has marked .done
            for name in ready_now:
                if len(in_flight) >= depth:
                    break
                if name not in attempted and not os.path.exists(os.path.join(state_dir, name)):
                    attempted.add(name)
                    in_flight[name] = pool.submit(push_one, name)
            for name in [n for n, f in in_flight.items() if f.done()]:
                del in_flight[name]
            if set(in_flight) != window:
                window = set(in_flight)
                worker.publish(state_dir, window)
            if ready is not None:
                ready()
                ready = None
            now = time.monotonic()
            if in_flight:
                last_busy = now
            elif retiring or now - last_busy > IDLE_SECONDS:
                break
            time.sleep(0.01 if in_flight else 0.05)
    finally:
        pool.shutdown(wait=True)
        worker.withdraw(state_dir)
