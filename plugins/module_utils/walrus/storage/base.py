# SPDX-License-Identifier: GPL-3.0-or-later
"""The storage interface every backend implements. Keys are '/'-separated paths relative
to the repository root; backends map them to files or object keys."""
import posixpath

from ..errors import UsageError


def check_key(key):
    """Refuse keys that could escape the repository root."""
    if not key or key.startswith("/") or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise UsageError("invalid repository key %r" % (key,))
    return key


class Storage(object):
    url = None

    def put(self, key, data, overwrite=False):
        """Store bytes durably. Without overwrite, raise ObjectExists if the key exists
        (atomically where the backend can). A write retried after its first reply was lost
        finds its own object: when it holds exactly these bytes, that is success."""
        raise NotImplementedError

    def put_stream(self, key, chunks, overwrite=False):
        """Store an object given as an iterable of bytes chunks, without holding it whole in
        memory; same durability and no-overwrite rules as put(). Returns the stored size."""
        raise NotImplementedError

    def get(self, key):
        """Return the object's bytes; raise NotFound if it does not exist."""
        raise NotImplementedError

    def get_stream(self, key, chunk_size=1 << 20):
        """Yield the object's bytes in chunks; raise NotFound (before the first chunk) if it does not exist."""
        raise NotImplementedError

    def exists(self, key):
        raise NotImplementedError

    def list(self, prefix=""):
        """Yield (key, size) for every object whose key starts with prefix."""
        for key, size, _mtime in self.list_info(prefix):
            yield key, size

    def list_info(self, prefix=""):
        """Yield (key, size, mtime) for every object whose key starts with prefix; mtime is
        when the object was stored, in seconds since the epoch."""
        raise NotImplementedError

    def delete(self, keys):
        """Delete the objects, in the order given (a batch at a time where the backend
        deletes in batches); keys that do not exist are not an error."""
        raise NotImplementedError

    def prepare_write(self):
        """Called once before the first write of a process: create what a new repository
        needs (a directory); nothing for object stores."""

    def check(self):
        """Prove the repository is reachable with these credentials; raise StorageError if not."""
        raise NotImplementedError

    def describe(self, key=""):
        return posixpath.join(self.url, key) if key else self.url
