# SPDX-License-Identifier: GPL-3.0-or-later
"""A strict, streaming reader of the tar parts of a base backup (docs/backup-format.md).

Why not tarfile 'r|': the restore wants every byte of a part accounted for without a second
SHA-256 over the whole stream. Here every byte is one of: a header block (its tar checksum
is checked), a pax record block (parsed strictly), member data (handed to the caller, who
compares it with the manifest's SHA-256), padding after member data, or the end-of-archive
zeros up to the end of the stream; padding and the end must be zero bytes. Anything else is
an IntegrityError naming the part. It also hands member data on as memoryviews of the
decoded pieces (no copy) and needs no look-ahead buffer.

It reads what Python's tarfile writes in PAX format (ustar headers, pax 'x' headers for long
names or large sizes); GNU long-name, sparse and pax global headers are refused: no walrus
ever wrote them.
"""
import tarfile

from .errors import IntegrityError

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)


class TarStream(object):
    """Members of the tar stream read from `source`, an object with read_view(n) (a
    memoryview of 1..n bytes, or an empty one at the end of the stream). Iterate for
    tarfile.TarInfo members; a regular member's data is read with extractfile(member) or
    views() before the next iteration (what is not read is skipped, still checked for length)."""

    def __init__(self, source, where):
        self._source = source
        self.where = where
        self.offset = 0
        self._left = 0      # data bytes of the current member not read yet
        self._padding = 0   # zero bytes after them

    def _fail(self, what):
        raise IntegrityError("part %s is not a valid tar stream: %s at byte %d" % (self.where, what, self.offset))

    def _exact(self, size, what):
        pieces, need = [], size
        while need:
            view = self._source.read_view(need)
            if not view:
                self._fail("truncated in %s" % what)
            pieces.append(view)
            need -= len(view)
            self.offset += len(view)
        return b"".join(pieces)

    def _zeros(self, size, what):
        while size:
            view = self._source.read_view(min(size, 1 << 16))
            if not view:
                self._fail("truncated in %s" % what)
            if view.tobytes().count(0) != len(view):
                self._fail("non-zero bytes in %s" % what)
            size -= len(view)
            self.offset += len(view)

    def read_data(self, size):
        """Up to `size` bytes of the current member's data, as a memoryview of a decoded piece
        (valid until the next read); empty at the end of the member's data."""
        if not self._left or size <= 0:
            return memoryview(b"")
        view = self._source.read_view(min(self._left, size))
        if not view:
            self._fail("truncated in the data of a member")
        self._left -= len(view)
        self.offset += len(view)
        return view

    def views(self, piece=1 << 20):
        """The rest of the current member's data, piece by piece."""
        while self._left:
            yield self.read_data(piece)

    def extractfile(self, member):
        return _MemberReader(self)

    def _finish_member(self):
        for _view in self.views():
            pass
        self._zeros(self._padding, "the padding of a member")
        self._padding = 0

    def __iter__(self):
        pax = None
        while True:
            self._finish_member()
            start = self.offset
            block = self._exact(BLOCK, "a header")
            if block == _ZERO_BLOCK:
                if pax is not None:
                    self._fail("a pax header without a member")
                self._rest_is_zero()
                return
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                self.offset = start
                self._fail("a damaged header (%s)" % exc)
            info.offset, info.offset_data = start, self.offset
            size_padded = -(-info.size // BLOCK) * BLOCK
            if info.type == tarfile.XHDTYPE:
                if pax is not None:
                    self._fail("two pax headers in a row")
                raw = self._exact(size_padded, "a pax header")
                if raw[info.size:].count(0) != size_padded - info.size:
                    self._fail("non-zero bytes in the padding of a pax header")
                pax = self._pax(raw[:info.size])
                continue
            if info.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                             tarfile.GNUTYPE_SPARSE, tarfile.SOLARIS_XHDTYPE):
                self._fail("a %s header, which no walrus writes" % {
                    tarfile.XGLTYPE: "pax global", tarfile.GNUTYPE_LONGNAME: "GNU long name",
                    tarfile.GNUTYPE_LONGLINK: "GNU long link", tarfile.GNUTYPE_SPARSE: "GNU sparse",
                }.get(info.type, "Solaris extended"))
            if pax:
                if any(key.startswith("GNU.sparse.") for key in pax):
                    self._fail("a sparse member (%s)" % info.name)
                if "path" in pax:
                    info.name = pax["path"]
                    if info.isdir():
                        info.name = info.name.rstrip("/")
                if "size" in pax:
                    info.size = pax["size"]
                info.pax_headers = pax
                size_padded = -(-info.size // BLOCK) * BLOCK
            pax = None
            if info.type not in tarfile.REGULAR_TYPES and info.size:
                self._fail("member %s of type %r with %d bytes of data" % (info.name, info.type, info.size))
            self._left, self._padding = info.size, size_padded - info.size
            yield info

    def _pax(self, raw):
        """Records 'LENGTH KEY=VALUE\\n' (POSIX.1-2008); path and size are applied."""
        out, pos = {}, 0
        while pos < len(raw):
            space = raw.find(b" ", pos)
            if space <= pos or not raw[pos:space].isdigit():
                self._fail("a malformed pax record")
            length = int(raw[pos:space])
            record = raw[space + 1:pos + length]
            if length < 5 or pos + length > len(raw) or not record.endswith(b"\n") or b"=" not in record:
                self._fail("a malformed pax record")
            key, _eq, value = record[:-1].partition(b"=")
            key = key.decode("utf-8", "surrogateescape")
            if key == "size":
                if not value.isdigit():
                    self._fail("a pax size that is not a number")
                out[key] = int(value)
            else:
                out[key] = value.decode("utf-8", "surrogateescape")
            pos += length
        return out

    def _rest_is_zero(self):
        """After the first zero block: only zero bytes to the end of the stream."""
        while True:
            view = self._source.read_view(1 << 16)
            if not view:
                return
            if view.tobytes().count(0) != len(view):
                self._fail("non-zero bytes after the end of the archive")
            self.offset += len(view)


class _MemberReader(object):
    """File-like read(size) over the current member's data, returning bytes (as tarfile's
    extractfile() does, for the callers that parse what they read)."""

    def __init__(self, stream):
        self._stream = stream

    def read(self, size=-1):
        if size is None or size < 0:
            return b"".join(self._stream.views())
        pieces, need = [], size
        while need:
            view = self._stream.read_data(need)
            if not view:
                break
            pieces.append(view)
            need -= len(view)
        return b"".join(pieces)
