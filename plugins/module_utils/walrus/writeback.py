# SPDX-License-Identifier: GPL-3.0-or-later
"""Starting the writeback of a file being restored while it is written.

A restore writes gigabytes into the page cache; left alone, the kernel writes them back only
when the file is fsynced (or after 30 s), so the fsync of a large file then waits for all of
it. Instead, the writer asks the kernel to start writing each piece as soon as it is written
(sync_file_range(SYNC_FILE_RANGE_WRITE): asynchronous, it does not wait), so the disk works
while the restore still decodes, and the fsync at the file's end waits only for the rest.
Where the call does not exist (not Linux) this does nothing; the fsync alone is still correct.
"""

STEP = 8 << 20  # bytes written between two writeback requests for the same file
_SYNC_FILE_RANGE_WRITE = 2
_libc = None


def _load():
    global _libc
    if _libc is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            sync_file_range = libc.sync_file_range
            sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            _libc = sync_file_range
        except (ImportError, OSError, AttributeError):
            _libc = False
    return _libc


class FileWriteback(object):
    """For one file being written: written(size) after each write, done(size) after the last
    (then the caller's fsync waits only for what is still in flight)."""

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
            libc(self.fd, self.started, size - self.started, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the head start
        self.started = size
