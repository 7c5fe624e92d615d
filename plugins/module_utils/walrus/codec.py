# SPDX-License-Identifier: GPL-3.0-or-later
"""The framing of every stored object: a header naming how the body was written, the
(compressed) body, and a trailer with the raw length and SHA-256 so that a reader never
guesses and detects any corruption or truncation.

    header  16 bytes  b"WALRUS" | format version (1) | compression id | encryption id | flags | 6 zero bytes
    body              the raw content, compressed as the header says
    trailer 48 bytes  b"WLRS-END" | raw length (uint64 little-endian) | SHA-256 of the raw content,
                      or with flag DIGEST_OF_BODY of the body as stored

DIGEST_OF_BODY is for streamed objects whose content carries digests of its own (backup tar
parts: every member's SHA-256 is in the manifest): hashing the compressed body, about a tenth
of the raw bytes, still proves the object whole, without a second pass over every raw byte.

Encryption (id 1) wraps everything after the header; encryption.py and the storage layer
storage/encrypted.py do it, so this module only ever sees encryption id 0.
docs/repository-format.md describes it for other readers. Codec libraries are imported
when first used: this module is imported on paths that must stay light.
"""
import hashlib
import struct

from .errors import ConfigError, IntegrityError

MAGIC = b"WALRUS"
FORMAT_VERSION = 1
HEADER = struct.Struct("<6sBBBB6x")
TRAILER = struct.Struct("<8sQ32s")
TRAILER_SIZE = 48  # TRAILER.size, spelled out for readers of the format
TRAILER_MAGIC = b"WLRS-END"
COMPRESSION_IDS = {"none": 0, "lz4": 1, "zstd": 2}
COMPRESSION_NAMES = dict((v, k) for k, v in COMPRESSION_IDS.items())
ENCRYPTION_NONE = 0
DIGEST_OF_BODY = 1  # header flag: the trailer's SHA-256 is of the stored body, not the raw content


def _lz4():
    try:
        import lz4.frame
    except ImportError:
        raise ConfigError("lz4 compression needs the Python package lz4 (pip install lz4)")
    return lz4.frame


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise ConfigError("zstd compression needs the Python package zstandard (pip install zstandard)")
    return zstandard


class _Identity(object):
    """Stand-in (de)compressor for compression 'none'."""

    def update(self, data):
        return data

    def finish(self):
        return b""


class _Lz4Compressor(object):
    def __init__(self, level):
        frame = _lz4()
        self._c = frame.LZ4FrameCompressor(
            block_size=frame.BLOCKSIZE_MAX1MB, compression_level=level or 0, content_checksum=False)
        self._started = False

    def update(self, data):
        if not self._started:
            self._started = True
            return self._c.begin() + self._c.compress(data)
        return self._c.compress(data)

    def finish(self):
        head = b"" if self._started else self._c.begin()
        return head + self._c.flush()


class _Lz4Decompressor(object):
    def __init__(self):
        self._d = _lz4().LZ4FrameDecompressor()

    def update(self, data):
        return self._d.decompress(data)

    def finish(self):
        if not self._d.eof:
            raise ValueError("lz4 frame is incomplete")
        return b""


class _ZstdCompressor(object):
    def __init__(self, level):
        self._c = _zstd().ZstdCompressor(level=level or 3).compressobj()

    def update(self, data):
        return self._c.compress(data)

    def finish(self):
        return self._c.flush()


class _ZstdDecompressor(object):
    def __init__(self):
        self._d = _zstd().ZstdDecompressor().decompressobj()

    def update(self, data):
        return self._d.decompress(data)

    def finish(self):
        if not getattr(self._d, "eof", True):
            raise ValueError("zstd frame is incomplete")
        return b""


def _compressor(compression, level):
    if compression == "lz4":
        return _Lz4Compressor(level)
    if compression == "zstd":
        return _ZstdCompressor(level)
    if compression == "none":
        return _Identity()
    raise ConfigError("unknown compression %r: use lz4, zstd or none" % (compression,))


class Encoder(object):
    """Streaming encoder: header() first, then update(raw) per chunk, then finish().
    digest_of_body=True writes a DIGEST_OF_BODY object (for content that carries its own digests)."""

    def __init__(self, compression="lz4", level=None, digest_of_body=False):
        self.compression = compression
        self._c = _compressor(compression, level)
        self._sha = hashlib.sha256()
        self._flags = DIGEST_OF_BODY if digest_of_body else 0
        self.raw_size = 0

    def header(self):
        return HEADER.pack(MAGIC, FORMAT_VERSION, COMPRESSION_IDS[self.compression], ENCRYPTION_NONE, self._flags)

    def update(self, raw):
        self.raw_size += len(raw)
        if self._flags & DIGEST_OF_BODY:
            body = self._c.update(raw)
            self._sha.update(body)
            return body
        self._sha.update(raw)
        return self._c.update(raw)

    def finish(self):
        body = self._c.finish()
        if self._flags & DIGEST_OF_BODY:
            self._sha.update(body)
        self.sha256 = self._sha.hexdigest()
        return body + TRAILER.pack(TRAILER_MAGIC, self.raw_size, self._sha.digest())


def encode(raw, compression="lz4", level=None):
    """Encode a whole object held in memory."""
    if compression == "lz4":
        body = _lz4().compress(raw, block_size=_lz4().BLOCKSIZE_MAX1MB,
                               compression_level=level or 0, content_checksum=False)
    elif compression == "zstd":
        body = _zstd().ZstdCompressor(level=level or 3).compress(raw)
    elif compression == "none":
        body = raw
    else:
        raise ConfigError("unknown compression %r: use lz4, zstd or none" % (compression,))
    return b"".join((
        HEADER.pack(MAGIC, FORMAT_VERSION, COMPRESSION_IDS[compression], ENCRYPTION_NONE, 0),
        body,
        TRAILER.pack(TRAILER_MAGIC, len(raw), hashlib.sha256(raw).digest()),
    ))


def _parse_header(head, name):
    if len(head) < HEADER.size:
        raise IntegrityError("object %s is truncated: %d bytes, shorter than a walrus header" % (name, len(head)))
    magic, version, comp_id, enc_id, flags = HEADER.unpack(head[:HEADER.size])
    if magic != MAGIC:
        raise IntegrityError("object %s is not a walrus object (bad header)" % name)
    if version != FORMAT_VERSION:
        raise IntegrityError("object %s has format version %d; this walrus reads version %d"
                             % (name, version, FORMAT_VERSION))
    if comp_id not in COMPRESSION_NAMES:
        raise IntegrityError("object %s uses compression id %d, unknown to this walrus" % (name, comp_id))
    if enc_id != ENCRYPTION_NONE:
        # Encrypted objects are decrypted by the storage layer (storage/encrypted.py) before
        # they get here; one that arrives still encrypted was read around it.
        raise IntegrityError("object %s is encrypted (encryption id %d): read it through walrus's storage with "
                             "the encryption key configured" % (name, enc_id))
    if flags & ~DIGEST_OF_BODY:
        raise IntegrityError("object %s has header flags %#x, unknown to this walrus" % (name, flags))
    return COMPRESSION_NAMES[comp_id], flags


def _decompressor(compression):
    if compression == "lz4":
        return _Lz4Decompressor()
    if compression == "zstd":
        return _ZstdDecompressor()
    return _Identity()


class Decoder(object):
    """Streaming decoder: update(chunk) returns raw bytes; finish() verifies length and SHA-256.
    Raises IntegrityError naming the object on any mismatch. digest=False leaves out the
    SHA-256 of raw content (finish() still checks the trailer, the codec's end and the length;
    sha256 is then None, trailer_sha256 the digest the trailer holds, for the caller to compare
    with what it expects): only for a caller that proves every raw byte itself (restore.py's
    parts). A DIGEST_OF_BODY object's digest (of the stored body: cheap) is always checked."""

    def __init__(self, name, digest=True):
        self.name = name
        self._buf = b""
        self._d = None
        self._digest = digest
        self._sha = None
        self._body_sha = None
        self.sha256 = None
        self.raw_size = 0
        self.compression = None

    def _start(self):
        self.compression, flags = _parse_header(self._buf, self.name)
        if flags & DIGEST_OF_BODY:
            self._body_sha = hashlib.sha256()
        elif self._digest:
            self._sha = hashlib.sha256()
        self._d = _decompressor(self.compression)

    def _out(self, body):
        if self._body_sha is not None:
            self._body_sha.update(body)
        try:
            raw = self._d.update(body)
        except Exception as exc:  # the codec libraries raise assorted types on bad input
            raise IntegrityError("object %s is corrupt: cannot decompress (%s)" % (self.name, exc))
        if self._sha is not None:
            self._sha.update(raw)
        self.raw_size += len(raw)
        return raw

    def update(self, chunk):
        self._buf += chunk
        if self._d is None:
            if len(self._buf) < HEADER.size:
                return b""
            self._start()
            self._buf = self._buf[HEADER.size:]
        # Hold back what may be the trailer.
        if len(self._buf) <= TRAILER.size:
            return b""
        body, self._buf = self._buf[:-TRAILER_SIZE], self._buf[-TRAILER_SIZE:]
        return self._out(body)

    def finish(self):
        if self._d is None:
            _parse_header(self._buf, self.name)
        if len(self._buf) < TRAILER.size:
            raise IntegrityError("object %s is truncated (no trailer)" % self.name)
        magic, size, digest = TRAILER.unpack(self._buf)
        if magic != TRAILER_MAGIC:
            raise IntegrityError("object %s is truncated or corrupt (bad trailer)" % self.name)
        try:
            self._d.finish()
        except ValueError as exc:
            raise IntegrityError("object %s is truncated: %s" % (self.name, exc))
        if size != self.raw_size:
            raise IntegrityError("object %s is corrupt: %d bytes decoded, trailer says %d"
                                 % (self.name, self.raw_size, size))
        self.trailer_sha256 = digest.hex()
        check = self._body_sha or self._sha
        if check is None:
            return b""
        if digest != check.digest():
            raise IntegrityError("object %s is corrupt: SHA-256 mismatch" % self.name)
        self.sha256 = digest.hex()
        return b""


def decode(data, name):
    """Decode a whole object held in memory, verifying it."""
    compression, flags = _parse_header(data, name)
    if len(data) < HEADER.size + TRAILER.size:
        raise IntegrityError("object %s is truncated (no trailer)" % name)
    body = memoryview(data)[HEADER.size:len(data) - TRAILER_SIZE]
    magic, size, digest = TRAILER.unpack(data[-TRAILER_SIZE:])
    if magic != TRAILER_MAGIC:
        raise IntegrityError("object %s is truncated or corrupt (bad trailer)" % name)
    try:
        if compression == "lz4":
            raw = _lz4().decompress(body)
        elif compression == "zstd":
            raw = _zstd().ZstdDecompressor().decompress(body, max_output_size=size)
        else:
            raw = bytes(body)
    except Exception as exc:  # the codec libraries raise assorted types on bad input
        raise IntegrityError("object %s is corrupt: cannot decompress (%s)" % (name, exc))
    if len(raw) != size:
        raise IntegrityError("object %s is corrupt: %d bytes decoded, trailer says %d" % (name, len(raw), size))
    if hashlib.sha256(body if flags & DIGEST_OF_BODY else raw).digest() != digest:
        raise IntegrityError("object %s is corrupt: SHA-256 mismatch" % name)
    return raw
