# SPDX-License-Identifier: GPL-3.0-or-later
"""Making restored files durable without a machine-wide sync at the end.

A restore writes gigabytes into the page cache; left alone, the kernel writes them back only
at the final sync, which then waits for all of it. Instead, the writers ask the kernel to
start writing each piece as soon as it is written (sync_file_range(SYNC_FILE_RANGE_WRITE):
asynchronous, it does not wait), so the disk works while the restore still decodes; the end
is one syncfs() of each file system written to (not of every file system of the machine),
which waits for what is still in flight and commits the metadata. Where these calls do not
exist (not Linux), start() does nothing and sync_filesystem() falls back to os.sync().
"""
import os

STEP = 8 << 20  # bytes written between two writeback requests for the same file
_SYNC_FILE_RANGE_WRITE = 2
_libc = None


def _load():
    global _libc
    if _libc is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            sync_file_range, syncfs = libc.sync_file_range, libc.syncfs
            sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            syncfs.argtypes = (ctypes.c_int,)
            _libc = (sync_file_range, syncfs)
        except (ImportError, OSError, AttributeError):
            _libc = False
    return _libc


class FileWriteback(object):
    """For one file being written: written(size) after each write, done() after the last."""

    def __init__(self, fd):
        self.fd = fd
        self.started = 0  # bytes whose writeback was requested

    def written(self, size):
        if size - self.started >= STEP:
            self._start(size)

    def done(self, size):
        if size > self.started:
            self._start(size)

    def _start(self, size):
        libc = _load()
        if libc:
            libc[0](self.fd, self.started, size - self.started, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the head start
        self.started = size


def sync_filesystem(fd):
    """Everything written to the file system holding the open directory `fd` is on disk."""
    libc = _load()
    if not libc or libc[1](fd) != 0:
        os.sync()
