# SPDX-License-Identifier: GPL-3.0-or-later
"""Rate limits in MB/s (10^6 bytes a second, as the progress line counts) shared by every
thread of one walrus process: one token bucket per kind (read, upload, download), so a limit
means what it says with one worker or sixteen.

A taker pays for its bytes up front: the bucket may go into debt, and each taker sleeps
until its own bytes are covered. Threads queue fairly without a condition variable, and a
big chunk (1 MiB) at a small rate simply waits longer. The bucket holds at most BURST_SECONDS
of tokens, so an idle moment never turns into a long unthrottled burst.
"""
import threading
import time

MB = 1000 * 1000
BURST_SECONDS = 0.25
KINDS = ("read", "upload", "download")


class TokenBucket(object):
    def __init__(self, mb_per_second, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(mb_per_second) * MB  # bytes per second
        self.capacity = self.rate * BURST_SECONDS
        self._clock, self._sleep = clock, sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, nbytes):
        """Block until `nbytes` may pass."""
        if nbytes <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate) - nbytes
            self._last = now
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


_shared = {}
_shared_lock = threading.Lock()


def bucket(kind, mb_per_second):
    """The process's bucket for `kind` at that rate, or None when there is no limit (None or 0)."""
    if not mb_per_second:
        return None
    if kind not in KINDS:
        raise ValueError("unknown rate limit kind %r" % kind)
    with _shared_lock:
        found = _shared.get(kind)
        if found is None or found.rate != float(mb_per_second) * MB:
            found = _shared[kind] = TokenBucket(mb_per_second)
        return found


def limited(chunks, limit):
    """Yield `chunks` (bytes) no faster than the bucket `limit` allows (all of them when None)."""
    if limit is None:
        yield from chunks
        return
    for chunk in chunks:
        limit.take(len(chunk))
        yield chunk


class LimitedReader(object):
    """A binary file whose read() pays the bucket for the bytes it returns; everything else
    (fileno, seek, close, the context manager) is the file's own."""

    def __init__(self, handle, limit):
        self._handle, self._limit = handle, limit

    def read(self, size=-1):
        data = self._handle.read(size)
        self._limit.take(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()
        return False


def reader(handle, limit):
    return handle if limit is None else LimitedReader(handle, limit)


class LimitedStorage(object):
    """A storage whose streamed transfers (put_stream, get_stream: backup parts) pay the upload
    and download buckets; every other call is the wrapped storage's own."""

    def __init__(self, inner, upload=None, download=None):
        self._inner, self._upload, self._download = inner, upload, download

    def put_stream(self, key, chunks, *args, **kwargs):
        return self._inner.put_stream(key, limited(chunks, self._upload), *args, **kwargs)

    def get_stream(self, key, *args, **kwargs):
        return limited(self._inner.get_stream(key, *args, **kwargs), self._download)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def limit_storage(storage, settings, upload=False, download=False):
    """`storage` with the upload and/or download limits of `settings` applied (itself when none is)."""
    up = bucket("upload", getattr(settings, "max_upload_rate", None)) if upload else None
    down = bucket("download", getattr(settings, "max_download_rate", None)) if download else None
    return storage if up is None and down is None else LimitedStorage(storage, up, down)
