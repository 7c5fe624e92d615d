# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-fetch prefetch: a background worker fetches the segments after the one recovery
asked for into <pg_wal>/walrus/prefetch/<repository tag>, so that later restore_command calls
only move a file into place.

Safety: files are named by their full WAL name (timeline included), so a prefetched file is
never served for another timeline; they are decoded and verified before they appear; a file
is served only while the worker that placed it is alive (worker.py); a new worker wipes what
an old one left, and a worker removes what was not consumed when recovery stops asking.
The module-level imports are standard library only: take() is the restore_command fast path.
"""
import os
import time

from . import worker

TMP_PREFIX = ".tmp-"
IDLE_SECONDS = 30.0
WAIT_SECONDS = 60.0  # how long restore_command waits for a file the worker is fetching


def default_dir(settings, pg_wal):
    return settings.prefetch_dir or os.path.join(pg_wal, "walrus", "prefetch", worker.repo_tag(settings.repo))


def take(pdir, name, dest, wait_seconds=WAIT_SECONDS):
    """Move the prefetched `name` to `dest`, waiting while the live worker is fetching it.
    Returns False when the worker does not have it (the caller fetches it itself)."""
    src = os.path.join(pdir, name)

    def attempt():
        try:
            os.rename(src, dest)
            return True
        except FileNotFoundError:
            return False
    return worker.wait_for(pdir, name, attempt, wait_seconds, require_worker=True)


def run_worker(pdir, names, fetch, depth, concurrency, ready):
    """Fetch names (an iterator of successive segment names) into pdir, keeping at most
    `depth` fetched-or-in-flight files ahead of recovery. fetch(name) returns the verified
    bytes and raises on absence or error; either ends the look-ahead."""
    from concurrent.futures import ThreadPoolExecutor

    if worker.acquire(pdir) is None:
        return
    for entry in os.listdir(pdir):
        if entry != worker.LOCK:
            _unlink(os.path.join(pdir, entry))
    pending = [next(names) for _i in range(max(1, depth))]
    worker.publish(pdir, pending)
    ready()

    def fetch_to(name):
        data = fetch(name)
        tmp = os.path.join(pdir, TMP_PREFIX + name)
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.rename(tmp, os.path.join(pdir, name))

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    in_flight, placed, window = {}, [], set(pending)
    exhausted, last_progress = False, time.monotonic()
    try:
        while True:
            waiting = [n for n in placed if os.path.exists(os.path.join(pdir, n))]
            if len(waiting) < len(placed):
                last_progress = time.monotonic()
            placed = waiting
            while not exhausted and len(placed) + len(in_flight) < depth:
                name = pending.pop(0) if pending else next(names)
                in_flight[name] = pool.submit(fetch_to, name)
            for name in sorted(in_flight):
                future = in_flight[name]
                if future.done():
                    del in_flight[name]
                    if future.exception() is None:
                        placed.append(name)
                    else:
                        exhausted = True  # end of the archive, or an error the foreground will report
            if set(in_flight) != window:
                window = set(in_flight)
                worker.publish(pdir, window)
            if exhausted and not in_flight and not placed:
                break
            if time.monotonic() - last_progress > IDLE_SECONDS:
                break
            time.sleep(0.005)
    finally:
        pool.shutdown(wait=True)
        worker.withdraw(pdir)
        for name in placed:
            _unlink(os.path.join(pdir, name))


def start(settings, pdir, run):
    """Replace any running prefetch worker with a new one running run(ready)."""
    os.makedirs(pdir, mode=0o700, exist_ok=True)
    worker.stop(pdir)
    worker.spawn(pdir, run)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
