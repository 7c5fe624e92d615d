# SPDX-License-Identifier: GPL-3.0-or-later
"""Local-directory repository: write to a temporary file, fsync, link or rename into place,
fsync the directory. os.link() gives an atomic no-overwrite publish."""
import errno
import os

from ..errors import NotFound, ObjectExists, StorageError
from .base import Storage, check_key

TMP_PREFIX = ".tmp-"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(exc, what, path):
    if exc.errno == errno.ENOSPC:
        return StorageError("no space left on device while %s %s" % (what, path))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError("permission denied while %s %s (%s)" % (what, path, exc.strerror))
    return StorageError("%s %s failed: %s" % (what, path, exc.strerror or exc))


class FsStorage(Storage):
    def __init__(self, root):
        self.root = root
        self.url = root

    def _path(self, key):
        return os.path.join(self.root, *check_key(key).split("/"))

    def _makedirs(self, path):
        """Create missing directories and fsync each new entry's parent, so a crash
        cannot lose the directory that holds an acknowledged file."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for new in reversed(missing):
            try:
                os.mkdir(new, 0o750)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _io_error(exc, "creating directory", new)
            _fsync_dir(os.path.dirname(new))

    def prepare_write(self):
        # The repository directory itself is never created here: on an unmounted disk that
        # would silently start a new, empty repository on the disk below the mount point.
        if not os.path.isdir(self.root):
            raise StorageError("repository directory %s does not exist: create it, writable by the user "
                               "PostgreSQL runs as (the first push then initialises it)" % self.root)

    def put(self, key, data, overwrite=False):
        self.put_stream(key, (data,), overwrite)

    def put_stream(self, key, chunks, overwrite=False):
        path = self._path(key)
        directory = os.path.dirname(path)
        if not os.path.isdir(self.root):
            raise StorageError("repository directory %s does not exist" % self.root)
        self._makedirs(directory)
        tmp = os.path.join(directory, "%s%s.%d.%s" % (TMP_PREFIX, os.path.basename(path), os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            size = 0
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    size += len(view)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists("object %s already exists" % self.describe(key))
                finally:
                    os.unlink(tmp)
            _fsync_dir(directory)
            return size
        except BaseException as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if not isinstance(exc, OSError):
                raise
            raise _io_error(exc, "writing", path)

    def get(self, key):
        return b"".join(self.get_stream(key, chunk_size=16 << 20))

    def get_stream(self, key, chunk_size=1 << 20):
        path = self._path(key)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            if not os.path.isdir(self.root):
                raise StorageError("repository directory %s does not exist" % self.root)
            raise NotFound("%s not found" % self.describe(key))
        except OSError as exc:
            raise _io_error(exc, "reading", path)
        return self._chunks(handle, path, chunk_size)

    @staticmethod
    def _chunks(handle, path, chunk_size):
        with handle:
            while True:
                try:
                    chunk = handle.read(chunk_size)
                except OSError as exc:
                    raise _io_error(exc, "reading", path)
                if not chunk:
                    return
                yield chunk

    def exists(self, key):
        return os.path.exists(self._path(key))

    def list_info(self, prefix=""):
        base = self.root
        # Walk only below the deepest directory the prefix names (not the whole archive).
        start = base
        if "/" in prefix:
            start = os.path.join(base, *[p for p in prefix.rsplit("/", 1)[0].split("/") if p not in ("", ".", "..")])
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, base)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in sorted(filenames):
                if name.startswith(TMP_PREFIX):
                    continue
                key = rel_dir + name
                if key.startswith(prefix):
                    try:
                        st = os.stat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    yield key, st.st_size, st.st_mtime

    def delete(self, keys):
        emptied = set()
        for key in keys:
            path = self._path(key)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _io_error(exc, "deleting", path)
            if "/" in key.rsplit("/", 1)[0]:
                emptied.add(os.path.dirname(path))
        # Directories like basebackups/<name>/ that the deletion left empty (never a top-level
        # one such as wal/ or basebackups/ itself); rmdir refuses a directory that is not empty.
        for directory in sorted(emptied, reverse=True):
            try:
                os.rmdir(directory)
            except OSError:
                pass

    def check(self):
        if not os.path.isdir(self.root):
            raise StorageError("repository directory %s does not exist" % self.root)
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageError("repository directory %s is not readable by this user" % self.root)
        return {"backend": "fs", "path": self.root, "writable": os.access(self.root, os.W_OK)}
