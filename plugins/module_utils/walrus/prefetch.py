# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-fetch prefetch: a background worker fetches the segments after the one recovery
asked for into <pg_wal>/walrus/prefetch, so that later restore_command calls only move a
file into place.

Safety: files are named by their full WAL name (timeline included), so a prefetched file is
never served for another timeline; they are decoded and verified before they appear; the
fast path serves a file only while the worker that placed it is alive (it publishes its pid
and the names it is fetching in `.window`); a new worker wipes what an old one left, and a
worker removes what was not consumed when recovery stops asking (idle timeout).
The module-level imports are standard library only: take() is the restore_command fast path.
"""
import os
import signal
import time

WINDOW = ".window"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
IDLE_SECONDS = 30.0
WAIT_SECONDS = 60.0  # how long restore_command waits for a file the worker is fetching


def default_dir(settings, pg_wal):
    return settings.prefetch_dir or os.path.join(pg_wal, "walrus", "prefetch")


def _read_window(pdir):
    """(pid, timeline prefix, first name, last name) or None."""
    try:
        with open(os.path.join(pdir, WINDOW)) as handle:
            pid, first, last = handle.read().split()
        return int(pid), first, last
    except (OSError, ValueError):
        return None


def _worker_running(pdir):
    """True while a worker holds the directory's lock. The kernel drops the lock when the
    worker dies (a pid check would be fooled by an unreaped zombie or a reused pid)."""
    import fcntl
    try:
        fd = os.open(os.path.join(pdir, LOCK), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def take(pdir, name, dest, wait_seconds):
    """Move the prefetched `name` to `dest`. Waits while the live worker is still fetching it.
    Returns False when the worker does not have it (the caller fetches it itself)."""
    src = os.path.join(pdir, name)
    deadline = time.monotonic() + wait_seconds
    while True:
        window = _read_window(pdir)
        if window is None or not _worker_running(pdir):
            return False
        try:
            os.rename(src, dest)
            return True
        except FileNotFoundError:
            pass
        _pid, first, last = window
        in_flight = first[:8] == name[:8] and first <= name <= last and len(name) == 24
        if not in_flight or time.monotonic() > deadline:
            return False
        time.sleep(0.003)


def stop_worker(pdir):
    """Ask the running worker, if any, to stop (its window no longer matches recovery).
    The pid is trusted only while the lock is held: a stale pid may belong to anyone now."""
    window = _read_window(pdir)
    if window and _worker_running(pdir):
        try:
            os.kill(window[0], signal.SIGTERM)
        except OSError:
            pass


def spawn(pdir, run):
    """Run `run(ready)` in a detached grandchild (own session, stdio on /dev/null) and return
    once it has called ready(), i.e. published its window, so that the next restore_command
    call already sees it. The caller must hold no threads."""
    os.makedirs(pdir, mode=0o700, exist_ok=True)
    stop_worker(pdir)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        os.waitpid(pid, 0)
        os.read(read_end, 1)  # a byte when ready; EOF if the worker gave up
        os.close(read_end)
        return
    try:
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)

        def ready():
            os.write(write_end, b"r")
            os.close(write_end)
        run(ready)
    finally:
        os._exit(0)


def run_worker(pdir, names, fetch, depth, concurrency, ready):
    """Fetch names (an iterator of successive segment names) into pdir, keeping at most
    `depth` fetched-or-in-flight files ahead of recovery. fetch(name) returns the verified
    bytes and raises on absence or error; either ends the look-ahead."""
    import fcntl
    from concurrent.futures import ThreadPoolExecutor

    lock_fd = os.open(os.path.join(pdir, LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + 5
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
    for entry in os.listdir(pdir):
        if entry not in (LOCK,):
            _unlink(os.path.join(pdir, entry))
    pending = [next(names) for _i in range(max(1, depth))]
    window = "%d %s %s\n" % (os.getpid(), pending[0], pending[-1])
    _write_atomic(os.path.join(pdir, WINDOW), window)
    ready()

    def fetch_to(name):
        data = fetch(name)
        tmp = os.path.join(pdir, TMP_PREFIX + name)
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.rename(tmp, os.path.join(pdir, name))

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    in_flight, placed = {}, []
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
            if in_flight:
                new_window = "%d %s %s\n" % (os.getpid(), min(in_flight), max(in_flight))
            else:
                new_window = "%d - -\n" % os.getpid()
            if new_window != window:
                _write_atomic(os.path.join(pdir, WINDOW), new_window)
                window = new_window
            for name in sorted(in_flight):
                future = in_flight[name]
                if future.done():
                    del in_flight[name]
                    if future.exception() is None:
                        placed.append(name)
                    else:
                        exhausted = True  # end of the archive, or an error the foreground will report
            if exhausted and not in_flight and not placed:
                break
            if time.monotonic() - last_progress > IDLE_SECONDS:
                break
            time.sleep(0.005)
    finally:
        pool.shutdown(wait=True)
        _unlink(os.path.join(pdir, WINDOW))
        for name in placed:
            _unlink(os.path.join(pdir, name))


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
