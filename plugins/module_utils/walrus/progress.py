# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress of a long transfer (backup-push, backup-fetch) on one redrawn stderr line.

A Progress counts bytes from any number of threads. When enabled it redraws one line at
most every `interval` seconds: what, bytes done / total, percent, rate and ETA; finish()
ends it with a line of the totals. It is enabled when the stream is a terminal, or when
forced (--progress); quiet (--quiet) disables it whatever else is said. So under cron, AWX
or a pipe nothing is printed unless asked for. The engine takes `progress=None` and then
counts nothing (NULL below); the Ansible modules never pass one.
"""
import sys
import threading
import time

MIB = 1 << 20
GIB = 1 << 30


def human_bytes(count, scale=None):
    """`count` bytes in MiB, or GiB when `scale` (default: count) reaches 1 GiB."""
    if (count if scale is None else scale) >= GIB:
        return "%.2f GiB" % (count / float(GIB))
    return "%.1f MiB" % (count / float(MIB))


def human_seconds(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return "%d:%02d:%02d" % (hours, rest // 60, rest % 60)
    return "%d:%02d" % (rest // 60, rest % 60)


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress(object):
    """Thread-safe byte counter with an optional one-line display (see the module doc)."""

    def __init__(self, what, stream=None, force=False, quiet=False, interval=0.5, clock=time.monotonic):
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and (force or _isatty(self.stream))
        self.interval = interval
        self.clock = clock
        self.total = 0
        self.done = 0
        self.started = clock()
        self.finished = False
        self._last_draw = self.started
        self._width = 0
        self._lock = threading.Lock()

    def start(self, total, what=None):
        """The work begins now: `total` bytes are expected."""
        with self._lock:
            self.total = max(0, int(total))
            if what:
                self.what = what
            self.started = self._last_draw = self.clock()

    def add(self, count):
        """`count` more bytes done; redraws when the last line is `interval` seconds old."""
        with self._lock:
            self.done += count
            if self.enabled and not self.finished:
                now = self.clock()
                if now - self._last_draw >= self.interval:
                    self._last_draw = now
                    self._draw(self.line(now))

    def line(self, now=None):
        """The progress line: what, done / total, percent, rate (MB/s) and ETA."""
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-6)
        rate = self.done / elapsed
        text = "%s: %s / %s" % (self.what, human_bytes(self.done, self.total), human_bytes(self.total))
        if self.total:
            text += " %3d%%" % min(100, self.done * 100 // self.total)
        text += "  %.1f MB/s" % (rate / 1e6)
        if self.total and rate > 0:
            text += "  ETA %s" % human_seconds(max(0, self.total - self.done) / rate)
        return text

    def final_line(self, now=None):
        """The last line: the bytes counted (then the total), 100%, average rate, elapsed time."""
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-6)
        done = human_bytes(self.done)
        return "%s: %s / %s 100%%  %.1f MB/s  in %s" % (
            self.what, done, done, self.done / elapsed / 1e6, human_seconds(elapsed))

    def finish(self):
        """Print the final line (once), ending the redrawn one."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            if self.enabled:
                self._draw(self.final_line(), end=True)

    def abandon(self):
        """The work failed: end a redrawn line (so an error message starts on its own line)."""
        with self._lock:
            self.finished = True
            if self._width:
                self._width = 0
                self.stream.write("\n")

    def _draw(self, text, end=False):
        pad = " " * max(0, self._width - len(text))
        self._width = 0 if end else len(text)
        self.stream.write("\r" + text + pad + ("\n" if end else ""))
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()


class _Null(object):
    """Counts nothing, prints nothing: what the engine uses when given progress=None."""
    enabled = False

    def start(self, total, what=None):
        pass

    def add(self, count):
        pass

    def finish(self):
        pass

    def abandon(self):
        pass


NULL = _Null()


def ensure(progress):
    """`progress`, or the no-op NULL when it is None."""
    return NULL if progress is None else progress
