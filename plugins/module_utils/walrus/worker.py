# SPDX-License-Identifier: GPL-3.0-or-later
"""Detached background workers, shared by wal-push look-ahead and wal-fetch prefetch.

A worker owns a directory: it holds an exclusive flock on `<dir>/.lock` for its whole life
(the kernel drops it when the worker dies, so liveness never depends on a pid that may be a
zombie or reused) and publishes the names it is working on in `<dir>/.window`. A foreground
call that finds its name in the window of a live worker waits for the result instead of
doing the work twice. Standard library only: used on the fast paths.
"""
import os
import time

WINDOW = ".window"
LOCK = ".lock"


def running(directory):
    """True while a worker holds the directory's lock."""
    import fcntl
    try:
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def read_window(directory):
    """(pid, set of names) published by the worker, or None."""
    try:
        with open(os.path.join(directory, WINDOW)) as handle:
            lines = handle.read().split()
        return int(lines[0]), set(lines[1:])
    except (OSError, ValueError, IndexError):
        return None


def publish(directory, names):
    tmp = os.path.join(directory, WINDOW + ".tmp")
    with open(tmp, "w") as handle:
        handle.write("%d\n%s\n" % (os.getpid(), "\n".join(sorted(names))))
    os.replace(tmp, os.path.join(directory, WINDOW))


def withdraw(directory):
    try:
        os.unlink(os.path.join(directory, WINDOW))
    except OSError:
        pass


def wait_for(directory, name, attempt, wait_seconds, require_worker=False):
    """Call attempt() until it succeeds, while `name` is in a live worker's window.
    With require_worker, a result is accepted only while a worker is alive (prefetched files
    left by a dead worker are not trusted). Returns attempt()'s success."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.001
    while True:
        alive = running(directory)
        if (alive or not require_worker) and attempt():
            return True
        if not alive:
            return False
        window = read_window(directory)
        if window is None or name not in window[1]:
            # It may have finished between attempt() and now: results appear before names leave.
            return attempt()
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 1.5, 0.005)  # prompt for a file about to land (the archiver waits), cheap still


def acquire(directory, timeout=5.0):
    """Take the directory's lock for this worker; returns the fd, or None if another worker keeps it."""
    import fcntl
    fd = os.open(os.path.join(directory, LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def stop(directory):
    """Ask the running worker, if any, to stop. The pid is trusted only while the lock is held."""
    import signal
    window = read_window(directory)
    if window and running(directory):
        try:
            os.kill(window[0], signal.SIGTERM)
        except OSError:
            pass


def spawn(directory, run):
    """Run `run(ready)` in a detached grandchild (own session, stdio on /dev/null) and return
    once it has called ready(), i.e. published its window, so that the next PostgreSQL call
    already sees it. The caller must hold no threads (fork)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
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


def repo_tag(url):
    """A short directory name for a repository URL: state for one repository is never used for another."""
    import zlib  # hashlib costs a millisecond or two of import on the fast path; this does not
    data = (url or "").encode("utf-8")
    return "%08x%04x" % (zlib.crc32(data), zlib.adler32(data) & 0xFFFF)
