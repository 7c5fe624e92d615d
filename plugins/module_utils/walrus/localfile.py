# SPDX-License-Identifier: GPL-3.0-or-later
"""Files walrus writes on the local machine for others to read (the drill history page, the
node_exporter textfile): written whole or not at all."""
import os
import tempfile

from .errors import StorageError


def write_atomic(path, text, mode=0o644):
    """Write `text` to `path` atomically: a temporary file in the same directory (named so that
    node_exporter's textfile collector, which reads *.prom, never sees it), fsynced, then renamed
    over `path`. A reader sees the old file or the new one, never half of one."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".walrus-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StorageError("cannot write %s: %s" % (path, exc))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError("cannot write %s: %s" % (path, exc))
    return path
