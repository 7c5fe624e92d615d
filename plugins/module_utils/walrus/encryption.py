# SPDX-License-Identifier: GPL-3.0-or-later
"""Client-side encryption of stored objects: AES-256-GCM in records (encryption id 1).

An encrypted object keeps the 16-byte header of codec.py, with encryption id 1, followed by

    envelope  44 bytes  key id (8) | salt (32 random bytes) | record size (uint32 LE)
    records             AES-256-GCM ciphertext + 16-byte tag of consecutive slices of
                        the unencrypted object's body and trailer

Every record but the last holds exactly `record size` bytes of plaintext; the last holds 0
to `record size` bytes. Each object gets its own key, HKDF-SHA256(master key, salt,
OBJECT_KEY_INFO), so record nonces (the record index) never repeat under one key. The
associated data of record i is the header, the envelope, i (uint64 LE) and a final-record
flag (1 byte): reordered, dropped, appended or spliced records, and a changed header, fail
authentication. docs/repository-format.md describes it for other readers.

`cryptography` is imported when the first record is sealed or opened, never before: the
archive_command fast path imports this module's callers but must not pay for it.
"""
import hashlib
import hmac
import os
import struct

from . import codec
from .errors import ConfigError, EncryptionKeyMissing, IntegrityError
from .keys import key_id

ENCRYPTION_AES256_GCM = 1
ENVELOPE = struct.Struct("<8s32sI")   # key id, salt, plaintext bytes per record
PREFIX_SIZE = codec.HEADER.size + ENVELOPE.size
RECORD_SIZE = 1 << 20
TAG_SIZE = 16
# A reader refuses record sizes outside these bounds rather than allocating what a damaged
# envelope says.
MIN_RECORD_SIZE, MAX_RECORD_SIZE = 1 << 10, 64 << 20
OBJECT_KEY_INFO = b"walrus.postgres object key v1"
RECORD_AAD = struct.Struct("<QB")      # record index, final flag
NONCE = struct.Struct(">4xQ")          # 12 bytes: 4 zero bytes, record index (uint64 big-endian)
HINT = ("set encryption_key or encryption_key_file to it (WALRUS_ENCRYPTION_KEY, WALRUS_ENCRYPTION_KEY_FILE), "
        "or list it in encryption_old_keys or encryption_old_key_files")


def _aesgcm():
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigError("encryption needs the Python package cryptography (pip install cryptography)")
    return AESGCM


def object_key(master_key, salt):
    """HKDF-SHA256 (RFC 5869) with a 32-byte output: one HMAC for extract, one for expand."""
    prk = hmac.new(salt, master_key, hashlib.sha256).digest()
    return hmac.new(prk, OBJECT_KEY_INFO + b"\x01", hashlib.sha256).digest()


def _check_plain_header(head, name):
    """The header of the unencrypted object handed in; only walrus objects are encrypted."""
    magic, version, _compression, encryption, _flags = codec.HEADER.unpack(head)
    if magic != codec.MAGIC or version != codec.FORMAT_VERSION or encryption != codec.ENCRYPTION_NONE:
        raise IntegrityError("refusing to store %s: it is not an unencrypted walrus object" % name)


class _Records(object):
    """Cuts a byte stream into records of `size` bytes, always holding the latest one back
    (1 to `size` bytes, or none yet): only at the end is it known to be the final record."""

    def __init__(self, size):
        self.size = size
        self.held = bytearray()

    def feed(self, chunk):
        """The records completed by `chunk` that are followed by at least one more byte."""
        size, held, out = self.size, self.held, []
        view = memoryview(chunk)
        if held:
            need = size - len(held)
            if len(view) <= need:
                held += view
                return out
            held += view[:need]
            out.append(bytes(held))
            del held[:]
            view = view[need:]
        while len(view) > size:
            out.append(bytes(view[:size]))
            view = view[size:]
        held += view
        return out


class Sealer(object):
    """Encrypt one object given as chunks of its unencrypted form (header, body, trailer)."""

    def __init__(self, key, name, record_size=RECORD_SIZE):
        self.name = name
        self._key = key
        self._head = bytearray()
        self._records = _Records(record_size)
        self._prefix = None
        self._cipher = None
        self._index = 0

    def _start(self, head):
        _check_plain_header(head, self.name)
        salt = os.urandom(32)
        self._prefix = (head[:8] + bytes((ENCRYPTION_AES256_GCM,)) + head[9:]
                        + ENVELOPE.pack(key_id(self._key), salt, self._records.size))
        self._cipher = _aesgcm()(object_key(self._key, salt))
        return self._prefix

    def _record(self, plain, final):
        aad = self._prefix + RECORD_AAD.pack(self._index, 1 if final else 0)
        out = self._cipher.encrypt(NONCE.pack(self._index), plain, aad)
        self._index += 1
        return out

    def _pieces(self, chunk):
        out = []
        if self._prefix is None:
            self._head += chunk
            if len(self._head) < codec.HEADER.size:
                return out
            out.append(self._start(bytes(self._head[:codec.HEADER.size])))
            chunk, self._head = bytes(self._head[codec.HEADER.size:]), None
        out.extend(self._record(plain, False) for plain in self._records.feed(chunk))
        return out

    def update(self, chunk):
        return b"".join(self._pieces(chunk))

    def _final_pieces(self):
        out = self._pieces(b"")
        if self._prefix is None:
            raise IntegrityError("refusing to store %s: it is not a walrus object" % self.name)
        out.append(self._record(bytes(self._records.held), True))
        return out

    def finish(self):
        return b"".join(self._final_pieces())

    def stream(self, chunks):
        for chunk in chunks:
            yield from self._pieces(chunk)
        yield from self._final_pieces()


def seal(key, data, name, record_size=RECORD_SIZE):
    sealer = Sealer(key, name, record_size)
    return sealer.update(data) + sealer.finish()


class Opener(object):
    """Decrypt one stored object chunk by chunk into its unencrypted form. An object whose
    header says it is not encrypted passes through unchanged (objects written before
    encryption was turned on stay readable)."""

    def __init__(self, keyring, name):
        self.name = name
        self._keyring = keyring
        self._head = bytearray()
        self._state = "header"
        self._records = None
        self._index = 0

    def _begin(self):
        """Parse header and envelope once enough bytes are there. Returns the header to pass
        on (b"" for an unencrypted object), or None to wait for more."""
        head = self._head
        if self._state == "header":
            if len(head) < codec.HEADER.size:
                return None
            magic, _version, _compression, encryption, _flags = codec.HEADER.unpack(bytes(head[:codec.HEADER.size]))
            if magic != codec.MAGIC or encryption == codec.ENCRYPTION_NONE:
                self._state = "plain"  # codec.Decoder checks and reports everything about it
                return b""
            if encryption != ENCRYPTION_AES256_GCM:
                raise IntegrityError("object %s uses encryption id %d, unknown to this walrus" % (self.name, encryption))
            self._state = "envelope"
        if len(head) < PREFIX_SIZE:
            return None
        self._prefix = bytes(head[:PREFIX_SIZE])
        wanted, salt, record_size = ENVELOPE.unpack(self._prefix[codec.HEADER.size:])
        if not MIN_RECORD_SIZE <= record_size <= MAX_RECORD_SIZE:
            raise IntegrityError("object %s is corrupt: encryption record size %d" % (self.name, record_size))
        key = self._keyring.find(wanted)
        if key is None:
            raise missing_key_error(self._keyring, self.name, wanted)
        self._cipher = _aesgcm()(object_key(key, salt))
        self._records = _Records(record_size + TAG_SIZE)
        self._state = "records"
        return self._prefix[:8] + bytes((codec.ENCRYPTION_NONE,)) + self._prefix[9:codec.HEADER.size]

    def _open(self, record, final):
        from cryptography.exceptions import InvalidTag
        try:
            plain = self._cipher.decrypt(NONCE.pack(self._index), record,
                                         self._prefix + RECORD_AAD.pack(self._index, 1 if final else 0))
        except InvalidTag:
            if final and self._opens_as_middle(record):
                raise IntegrityError("object %s is truncated: it ends after encrypted record %d, which is not "
                                     "its final record" % (self.name, self._index))
            raise IntegrityError("object %s fails authentication at encrypted record %d: it was altered, or "
                                 "its records were reordered, dropped or spliced from another object"
                                 % (self.name, self._index))
        self._index += 1
        return plain

    def _opens_as_middle(self, record):
        from cryptography.exceptions import InvalidTag
        try:
            self._cipher.decrypt(NONCE.pack(self._index), record, self._prefix + RECORD_AAD.pack(self._index, 0))
            return True
        except InvalidTag:
            return False

    def _pieces(self, chunk):
        out = []
        if self._state in ("header", "envelope"):
            self._head += chunk
            head = self._begin()
            if head is None:
                return out
            rest = bytes(self._head[len(self._prefix) if self._state == "records" else 0:])
            self._head = None
            if self._state == "plain":
                return [rest]
            out.append(head)
            chunk = rest
        if self._state == "plain":
            return [chunk] if chunk else out
        out.extend(self._open(record, False) for record in self._records.feed(chunk))
        return out

    def update(self, chunk):
        return b"".join(self._pieces(chunk))

    def _final_pieces(self):
        out = self._pieces(b"")
        if self._state == "plain":
            return out
        if self._state == "envelope":
            raise IntegrityError("object %s is truncated: %d bytes, too short for its encryption envelope"
                                 % (self.name, len(self._head)))
        if self._state == "header":
            return [bytes(self._head)]  # too short for a header: codec.Decoder says so
        held = bytes(self._records.held)
        if len(held) < TAG_SIZE:
            raise IntegrityError("object %s is truncated: its last encrypted record is %d bytes, shorter than "
                                 "its authentication tag" % (self.name, len(held)))
        out.append(self._open(held, True))
        return out

    def finish(self):
        return b"".join(self._final_pieces())

    def stream(self, chunks):
        for chunk in chunks:
            for piece in self._pieces(chunk):
                if piece:
                    yield piece
        for piece in self._final_pieces():
            if piece:
                yield piece


def open_object(keyring, data, name):
    """The unencrypted form of a whole stored object (unchanged if it is not encrypted)."""
    opener = Opener(keyring, name)
    return opener.update(data) + opener.finish()


def missing_key_error(keyring, name, wanted):
    if not keyring:
        return EncryptionKeyMissing("object %s is encrypted with key id %s, but no encryption key is configured: %s"
                                    % (name, wanted.hex(), HINT))
    known = keyring.describe()
    return EncryptionKeyMissing(
        "object %s is encrypted with key id %s, which is not among the configured keys (current %s, old %s): %s"
        % (name, wanted.hex(), known["current_key_id"] or "none", ", ".join(known["old_key_ids"]) or "none", HINT))
