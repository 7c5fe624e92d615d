# SPDX-License-Identifier: GPL-3.0-or-later
"""Client-side encryption as a layer over any backend: every walrus object is encrypted
on its way into storage and decrypted on its way out, so the engine above it reads and
writes the unencrypted framing of codec.py whatever the repository holds.

open_storage() always puts this layer in place. With no key configured it writes objects
as they are, and reading an encrypted object fails naming the object and the key id it
needs. Objects written before encryption was turned on stay readable (their header says
encryption id 0). The identity object and the repository lock (locks/) are stored in the
clear, by design: they hold no data of the database, and they are what tells anyone
(walrus without a key included) whose repository this is and who is working on it.
"""
import posixpath

from .. import encryption
from ..catalog import IDENTITY_KEY
from ..repolock import LOCK_KEY
from .base import Storage

LOCK_PREFIX = posixpath.dirname(LOCK_KEY) + "/"


def stored_in_the_clear(key):
    return key == IDENTITY_KEY or key.startswith(LOCK_PREFIX)


class EncryptedStorage(Storage):
    def __init__(self, inner, keyring):
        self.inner = inner
        self.keyring = keyring
        self.url = inner.url

    def __getattr__(self, name):
        # Backend details (root, bucket, client ...) are the backend's.
        return getattr(self.inner, name)

    def _encrypts(self, key):
        return self.keyring.current is not None and not stored_in_the_clear(key)

    def put(self, key, data, overwrite=False):
        if self._encrypts(key):
            data = encryption.seal(self.keyring.current, data, self.describe(key))
        return self.inner.put(key, data, overwrite)

    def put_stream(self, key, chunks, overwrite=False):
        if self._encrypts(key):
            chunks = encryption.Sealer(self.keyring.current, self.describe(key)).stream(chunks)
        return self.inner.put_stream(key, chunks, overwrite)

    def get(self, key):
        data = self.inner.get(key)
        if stored_in_the_clear(key):
            return data
        return encryption.open_object(self.keyring, data, self.describe(key))

    def get_stream(self, key, chunk_size=1 << 20):
        chunks = self.inner.get_stream(key, chunk_size)  # NotFound here, before the first chunk
        if stored_in_the_clear(key):
            return chunks
        return encryption.Opener(self.keyring, self.describe(key)).stream(chunks)

    def exists(self, key):
        return self.inner.exists(key)

    def list_info(self, prefix=""):
        return self.inner.list_info(prefix)

    def delete(self, keys):
        return self.inner.delete(keys)

    def prepare_write(self):
        return self.inner.prepare_write()

    def check(self):
        result = self.inner.check()
        if self.keyring:
            known = self.keyring.describe()
            result["encryption"] = "AES-256-GCM, new objects with key id %s, old key ids: %s" % (
                known["current_key_id"] or "none (not encrypting)", ", ".join(known["old_key_ids"]) or "none")
        return result

    def describe(self, key=""):
        return self.inner.describe(key)
