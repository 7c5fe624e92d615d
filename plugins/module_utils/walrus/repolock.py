# SPDX-License-Identifier: GPL-3.0-or-later
"""The repository lock: one backup-push or `delete --confirm` at a time per repository.

Why: retention decides from the list of complete backups what nothing needs any more; a
backup-push running meanwhile picks a delta base or adds a backup that list does not know
about, and two backup-pushes race for one default name. The lock is an object in the
repository itself (`locks/repository.json`), so it works across hosts and on both backends:
taking it is a no-overwrite write (os.link on a directory, If-None-Match: * on S3), which
exactly one contender wins. A run that finds it taken waits up to `lock_wait` seconds, then
gives up with LockBusy (exit 8) naming the holder: its operation, host, pid and age.

The object says who holds it (operation, user, host, pid, when) and carries a random token;
the holder rewrites it every REFRESH_SECONDS (heartbeat_at) and deletes it when done.

When a lock is stale (its holder is gone), a contender breaks it:
- on the holder's own machine (same host name, boot id and PID namespace), as soon as the
  holder's process (pid and its start time, so a reused pid does not count) no longer exists:
  a kill -9 or a crash does not block the next run;
- on the same host after a reboot (another boot id): at once;
- from another machine: once its heartbeat is older than STALE_SECONDS (10 minutes, twenty
  missed heartbeats). This assumes the hosts' clocks agree within minutes (NTP).
Breaking is itself a no-overwrite write of `locks/broken-<token>.json`, so of several
contenders that all judged the same lock stale only one deletes it; the others start over
and race for the fresh lock like everyone else. A breaker that dies between its marker and
the delete is judged like a holder (its process gone; or BREAK_GRACE seconds from another
host), and the next contender finishes its work. Markers older than an hour are removed.
"""
import functools
import inspect
import json
import os
import socket
import threading
import time
import uuid

from .errors import LockBusy, NotFound, ObjectExists, StorageError, WalrusError

LOCK_KEY = "locks/repository.json"
BROKEN_PREFIX = "locks/broken-"
LOCK_FORMAT = "walrus-lock"
REFRESH_SECONDS = 30
STALE_SECONDS = 600
MARKER_MAX_AGE = 3600
BREAK_GRACE = 30  # a breaker on another host has this long between its marker and the delete
POLL_SECONDS = 1.0
MAX_ROUNDS = 100000  # a bound on the acquisition loop besides its deadline


def _read_proc(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _pid_namespace():
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid):
    """The start time (clock ticks since boot) of process `pid`, or None when it does not exist
    or is only a zombie (killed, not yet reaped: where no init reaps orphans it stays forever)."""
    stat = _read_proc("/proc/%d/stat" % pid)
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # fields 3.. of proc(5): state, ppid, ..., starttime (22)
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return None
    return fields[19]


def _who():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def describe(lock, now=None):
    """'backup-push of /data by postgres@db1 pid 123, since 2026-... (42 s ago)'."""
    now = time.time() if now is None else now
    try:
        age = "%d s ago" % max(0, now - float(lock.get("acquired_at", now)))
        beat = "last heartbeat %d s ago" % max(0, now - float(lock.get("heartbeat_at", now)))
    except (TypeError, ValueError):
        age, beat = "age unknown", "heartbeat unknown"
    return "%s by %s@%s pid %s, since %s (%s, %s)" % (
        lock.get("operation", "?"), lock.get("user", "?"), lock.get("host", "?"), lock.get("pid", "?"),
        lock.get("acquired_utc", "?"), age, beat)


def is_stale(lock, now=None, stale_after=STALE_SECONDS):
    """(stale, why) for a lock object read from the repository (see the module docstring)."""
    now = time.time() if now is None else now
    same_machine = lock.get("host") == socket.gethostname()
    boot_id = _read_proc("/proc/sys/kernel/random/boot_id")
    if same_machine and boot_id and lock.get("boot_id"):
        if lock["boot_id"] != boot_id:
            return True, "this host has rebooted since the lock was taken"
        if lock.get("pid_namespace") == _pid_namespace():
            try:
                pid = int(lock.get("pid"))
            except (TypeError, ValueError):
                pid = None
            if pid is not None:
                start = _process_start(pid)
                if start is None or start != str(lock.get("pid_start")):
                    return True, "its process %d on this host no longer exists" % pid
                return False, "its process is running"
    try:
        silent = now - float(lock.get("heartbeat_at"))
    except (TypeError, ValueError):
        return False, "it has no readable heartbeat"
    if silent > stale_after:
        return True, "its last heartbeat is %d s old (stale after %d s)" % (silent, stale_after)
    return False, "its heartbeat is %d s old" % silent


class RepositoryLock(object):
    """with RepositoryLock(storage, "backup-push of /data", wait=0): ..."""

    def __init__(self, storage, operation, wait=0):
        self.storage = storage
        self.operation = operation
        self.wait = max(0, wait or 0)
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._thread = None
        now = time.time()
        self.body = {
            "format": LOCK_FORMAT, "format_version": 1, "token": self.token, "operation": operation,
            "host": socket.gethostname(), "user": _who(), "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()), "pid_namespace": _pid_namespace(),
            "boot_id": _read_proc("/proc/sys/kernel/random/boot_id"),
            "acquired_at": now, "acquired_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "heartbeat_at": now,
        }

    def _encoded(self):
        return json.dumps(self.body, indent=1, sort_keys=True).encode("utf-8") + b"\n"

    def _read(self):
        """The lock object now stored (a dict; {} when unreadable), or None when there is none."""
        try:
            raw = self.storage.get(LOCK_KEY)
        except NotFound:
            return None
        try:
            lock = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}
        return lock if isinstance(lock, dict) else {}

    def acquire(self):
        deadline = time.monotonic() + self.wait
        self._remove_old_markers()
        for _round in range(MAX_ROUNDS):
            try:
                self.storage.put(LOCK_KEY, self._encoded())
                break
            except ObjectExists:
                pass
            current = self._read()
            if current is None:
                continue  # released between our write and our read: try again at once
            if current.get("token") == self.token:
                break  # our own write, whose reply was lost and retried
            stale, why = is_stale(current) if current else self._unreadable_is_stale()
            if stale and self._break(current, why):
                continue
            if time.monotonic() >= deadline:
                holder = describe(current) if current else "an unreadable lock object (%s)" % why
                raise LockBusy("repository %s is locked by %s: %s; not starting %s. Try again when it is done%s"
                               % (self.storage.describe(), holder, why, self.operation,
                                  "" if self.wait else " (or set lock_wait to wait for it)"))
            time.sleep(min(POLL_SECONDS, max(0.05, deadline - time.monotonic())))
        else:
            raise LockBusy("could not take the lock of %s" % self.storage.describe())
        self._thread = threading.Thread(target=self._heartbeat, name="walrus-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _stored_mtime(self):
        for key, _size, mtime in self.storage.list_info(LOCK_KEY):
            if key == LOCK_KEY:
                return mtime
        return None

    def _unreadable_is_stale(self):
        """A lock object that is not walrus JSON: stale once it has not changed for STALE_SECONDS."""
        mtime = self._stored_mtime()
        if mtime is None:
            return True, "it is gone"
        age = time.time() - mtime
        return age > STALE_SECONDS, "it is not a walrus lock, written %d s ago" % age

    def _token(self, lock):
        """What names this lock object for breaking: its token, or for an unreadable one its mtime."""
        return str(lock.get("token")) if lock.get("token") else "unreadable-%d" % (self._stored_mtime() or 0)

    def _break(self, current, why):
        """Delete a stale lock, if we win the right to; True when the caller should retry at once."""
        token = self._token(current)
        marker_key = BROKEN_PREFIX + token + ".json"
        marker = {"broken_by": dict(self.body), "reason": why, "lock": current}
        try:
            self.storage.put(marker_key, json.dumps(marker, sort_keys=True).encode("utf-8"))
        except ObjectExists:
            if not self._breaker_died(marker_key):
                return False  # another contender is breaking this very lock: wait for the fresh one
        again = self._read()
        if again is not None and self._token(again) == token:
            self.storage.delete([LOCK_KEY])
        return True

    def _breaker_died(self, marker_key):
        """Whoever wrote this break marker died before deleting the lock (its process is gone,
        or it is older than BREAK_GRACE seconds): then finishing its work is safe."""
        try:
            marker = json.loads(self.storage.get(marker_key).decode("utf-8"))
            breaker = marker["broken_by"]
            return is_stale(breaker, stale_after=BREAK_GRACE)[0]
        except NotFound:
            return True
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            return False  # not ours to judge; it expires with MARKER_MAX_AGE

    def _remove_old_markers(self):
        try:
            old = [key for key, _size, mtime in self.storage.list_info(BROKEN_PREFIX)
                   if time.time() - mtime > MARKER_MAX_AGE]
            if old:
                self.storage.delete(old)
        except WalrusError:
            pass  # markers are tidied up next time; they never block anything

    def _heartbeat(self):
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                current = self._read()
                if current is None or current.get("token") != self.token:
                    self.lost = True  # broken by someone who judged us stale; nothing to refresh
                    return
                self.body["heartbeat_at"] = time.time()
                self.storage.put(LOCK_KEY, self._encoded(), overwrite=True)
            except WalrusError:
                continue  # the storage is unreachable for now; try at the next beat

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            current = self._read()
            if current is not None and current.get("token") == self.token:
                self.storage.delete([LOCK_KEY])
        except (StorageError, WalrusError):
            pass  # a lock left behind is broken by the next run (see is_stale); the work itself is done

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def exclusive(describe_operation, when=None):
    """Decorate an engine entry point `fn(settings, ..., storage=None, ...)` so that it runs
    holding the repository lock. describe_operation(arguments) names the run for the lock
    object; when(arguments) False runs it without the lock (e.g. a dry run). The decorated
    function gets the storage it was given, or the one opened from settings."""
    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            if when is not None and not when(arguments):
                return fn(*bound.args, **bound.kwargs)
            settings = arguments.get("settings")
            if arguments.get("storage") is None:
                from .storage import open_storage
                arguments["storage"] = open_storage(settings)
            wait = getattr(settings, "lock_wait", 0) if settings is not None else 0
            with RepositoryLock(arguments["storage"], describe_operation(arguments), wait):
                return fn(*bound.args, **bound.kwargs)
        return wrapper
    return decorate
