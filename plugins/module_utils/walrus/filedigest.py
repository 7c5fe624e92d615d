# SPDX-License-Identifier: GPL-3.0-or-later
"""The SHA-256 a backup manifest gives each file (docs/backup-format.md, `files[].digest`).

"sha256" (the default) is the SHA-256 of the file's bytes. "pages" is the SHA-256 of the
concatenated SHA-256 of each 8 KiB page (the last one may be shorter): for relation files,
whose page hashes a backup computes anyway (delta.py records them for the next delta), it
proves the file without a second pass over its bytes, while staying a full SHA-256 check.
"""
import hashlib

PAGE = 8192
WHOLE = "sha256"
PAGES = "pages"
KINDS = (WHOLE, PAGES)


class PageDigest(object):
    """hashlib-like: update(bytes) in any pieces, then hexdigest()."""

    def __init__(self):
        self._outer = hashlib.sha256()
        self._rest = b""

    def update(self, chunk):
        view = memoryview(chunk)
        if self._rest:
            need = PAGE - len(self._rest)
            self._rest += bytes(view[:need])
            view = view[need:]
            if len(self._rest) < PAGE:
                return
            self.page(hashlib.sha256(self._rest).digest())
            self._rest = b""
        whole = len(view) - len(view) % PAGE
        outer, sha = self._outer.update, hashlib.sha256
        for off in range(0, whole, PAGE):
            outer(sha(view[off:off + PAGE]).digest())
        if whole < len(view):
            self._rest = bytes(view[whole:])

    def page(self, page_digest):
        """Add the SHA-256 of one whole page computed elsewhere (delta.PageScanner)."""
        self._outer.update(page_digest)

    def hexdigest(self):
        outer = self._outer.copy()
        if self._rest:
            outer.update(hashlib.sha256(self._rest).digest())
        return outer.hexdigest()


def new(entry):
    """The digest object that checks manifest file entry `entry`."""
    kind = entry.get("digest", WHOLE)
    if kind == PAGES:
        return PageDigest()
    if kind == WHOLE:
        return hashlib.sha256()
    from .errors import IntegrityError
    raise IntegrityError("file %s has digest kind %r, unknown to this walrus" % (entry.get("path"), kind))


def for_member(entry):
    """The digest object for a tar member's bytes: a delta member (`stored` "delta") is checked
    against `stored_sha256`, the SHA-256 of its bytes; any other member is the file itself."""
    return hashlib.sha256() if entry.get("stored") == "delta" else new(entry)


def same(older, newer):
    """Whether two manifest entries of one file say the same content. Digests of different
    kinds cannot be compared: then only the sizes (the restore checks the bytes in any case)."""
    if older.get("size") != newer.get("size"):
        return False
    if older.get("digest", WHOLE) != newer.get("digest", WHOLE):
        return True
    return older.get("sha256") == newer.get("sha256")
