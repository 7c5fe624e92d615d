# SPDX-License-Identifier: GPL-3.0-or-later
"""wal-fetch prefetch: a background worker fetches the segments after the one recovery
asked for into <pg_wal>/walrus/prefetch/<repository tag>, so that later restore_command calls
only move a file into place.

Safety: files are named by their full WAL name (timeline included), so a prefetched file is
never served for another timeline; they are decoded and verified before they appear; a file
is served only while the worker that placed it is alive (worker.py); a new worker wipes what
an old one left, and a worker removes what was not consumed when recovery stops asking.

The live worker also serves what is not in its window (ask()): recovery asks for files that
do not exist as a matter of course (the next timeline's history file at the start and at the
end, the segment after the target, a standby's next segment) and re-reads the segment that
holds its last record when it ends; a foreground process would pay boto3's import and a new
connection for each. An answer comes from a request the worker makes after the question was
asked, never from memory. After the end of the archive the worker lingers for LINGER_SECONDS
to answer such questions.
The module-level imports are standard library only: take() is the restore_command fast path.
"""
import os
import time

from . import worker

TMP_PREFIX = ".tmp-"
ASK_PREFIX = ".ask-"
SERVED_PREFIX = ".served-"
ABSENT_PREFIX = ".absent-"
FAILED_PREFIX = ".failed-"
SERVED, ABSENT = "served", "absent"
IDLE_SECONDS = 30.0
LINGER_SECONDS = 10.0  # after the archive's end: answer ask() questions this long
WAIT_SECONDS = 60.0  # how long restore_command waits for a file the worker is fetching
ASK_SECONDS = 20.0  # how long ask() waits for the worker's answer before fetching itself


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


def ask(pdir, name, dest, wait_seconds=ASK_SECONDS):
    """Ask the live worker for WAL file `name` (one outside its window): it fetches and verifies
    it, and it is moved to `dest`. Returns SERVED; ABSENT when the worker looked after this call
    began and found nothing; None when no worker is alive, it failed, or no answer came in time
    (the caller then fetches the file itself)."""
    if not name or os.path.basename(name) != name or not worker.running(pdir):
        return None
    token = "%s-%d" % (name, os.getpid())  # one question, one answer: never an earlier caller's
    ask_path = os.path.join(pdir, ASK_PREFIX + token)
    served, no, failed = (os.path.join(pdir, prefix + token) for prefix in (SERVED_PREFIX, ABSENT_PREFIX, FAILED_PREFIX))
    try:
        os.close(os.open(ask_path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        return None
    deadline = time.monotonic() + wait_seconds
    pause = 0.001
    try:
        while True:
            try:
                os.rename(served, dest)
                return SERVED
            except FileNotFoundError:
                pass
            if os.path.exists(no):
                return ABSENT
            if os.path.exists(failed) or not worker.running(pdir) or time.monotonic() > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 1.5, 0.01)
    finally:
        for path in (ask_path, served, no, failed):
            _unlink(path)


def _answer(pdir, entry, fetch):
    """Answer one ask() question (an .ask- file) with the file, or with 'absent' or 'failed'."""
    from .errors import NotFound

    token = entry[len(ASK_PREFIX):]
    name = token.rpartition("-")[0]
    data = b""
    try:
        data, prefix = fetch(name), SERVED_PREFIX
    except NotFound:
        prefix = ABSENT_PREFIX
    except Exception:
        prefix = FAILED_PREFIX  # the foreground's own fetch reports the error
    if os.path.exists(os.path.join(pdir, entry)):  # else the caller gave up
        _place(pdir, prefix + token, data)


def _place(pdir, name, data):
    """Write pdir/name so that it appears whole or not at all."""
    tmp = os.path.join(pdir, TMP_PREFIX + name)
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.rename(tmp, os.path.join(pdir, name))


def run_worker(pdir, names, fetch, depth, concurrency, ready):
    """Fetch names (an iterator of successive segment names) into pdir, keeping at most
    `depth` fetched-or-in-flight files ahead of recovery. fetch(name) returns the verified
    bytes and raises (NotFound on absence) on error; either ends the look-ahead. It also
    answers ask() questions, and lingers after the end of the look-ahead to answer them."""
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
        _place(pdir, name, fetch(name))

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    in_flight, placed, window = {}, [], set(pending)
    questions = {}
    exhausted, last_progress = False, time.monotonic()
    try:
        while True:
            for entry in os.listdir(pdir):
                if entry.startswith(ASK_PREFIX) and entry not in questions:
                    questions[entry] = pool.submit(_answer, pdir, entry, fetch)
            for entry in [e for e, f in questions.items() if f.done()]:
                del questions[entry]
                last_progress = time.monotonic()
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
                        last_progress = time.monotonic()
            if set(in_flight) != window:
                window = set(in_flight)
                worker.publish(pdir, window)
            if exhausted and not in_flight and not placed and not questions and (
                    time.monotonic() - last_progress > LINGER_SECONDS):
                break
            if time.monotonic() - last_progress > IDLE_SECONDS:
                break
            time.sleep(0.005)
    finally:
        pool.shutdown(wait=True)
        worker.withdraw(pdir)
        for name in placed:
            _unlink(os.path.join(pdir, name))
        for entry in os.listdir(pdir):  # answers nobody took (the caller gave up)
            if entry.startswith((SERVED_PREFIX, ABSENT_PREFIX, FAILED_PREFIX, TMP_PREFIX)):
                _unlink(os.path.join(pdir, entry))


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
