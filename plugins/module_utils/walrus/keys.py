# SPDX-License-Identifier: GPL-3.0-or-later
"""Encryption keys: parsing them from the settings, their ids, and the keyring a reader
looks keys up in.

A key is 32 random bytes (AES-256), written as 64 hex digits or as standard base64
(`openssl rand -hex 32`). Its id is the first 8 bytes of HMAC-SHA256(key, KEY_ID_LABEL):
objects record it so that a reader knows which key it needs, and messages can name a key
without showing it. The newest key (encryption_key or encryption_key_file) encrypts new
objects; older keys (encryption_old_keys, encryption_old_key_files) only decrypt.

Standard library only: settings are resolved on light paths too.
"""
import base64
import binascii
import hashlib
import hmac
import os
import stat

from .errors import ConfigError

KEY_SIZE = 32
KEY_ID_SIZE = 8
KEY_ID_LABEL = b"walrus.postgres key id v1"
KEY_HINT = "64 hex digits or the base64 of 32 bytes, e.g. the output of `openssl rand -hex 32`"


def key_id(key):
    """The 8-byte id of a key (bytes)."""
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_SIZE]


def parse_key(text, where):
    """32 key bytes from their hex or base64 spelling; `where` names the source in errors
    (never the value)."""
    text = (text or "").strip()
    key = None
    if len(text) == 2 * KEY_SIZE:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != KEY_SIZE:
        raise ConfigError("%s is not a 256-bit encryption key: give %s" % (where, KEY_HINT))
    return key


def _split(value):
    """Items of a list setting: separated by commas and/or white space."""
    return [item for item in (value or "").replace(",", " ").split() if item]


def read_key_file(path, what):
    """The key held in a file that only its owner may read (like a config file with a secret)."""
    try:
        st = os.stat(path)
        with open(path, "r") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError("%s: cannot read key file %s: %s" % (what, path, exc.strerror or exc))
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("%s: key file %s is mode %04o, readable by others: run chmod 600 %s"
                          % (what, path, stat.S_IMODE(st.st_mode), path))
    return parse_key(text, "%s: key file %s" % (what, path))


class Keyring(object):
    """The key that encrypts new objects (or None: new objects are not encrypted) and every
    key that may decrypt, by id."""

    def __init__(self, current=None, old=()):
        self.current = current
        self.current_id = key_id(current) if current else None
        self.by_id = {}
        for key in list(old) + ([current] if current else []):
            self.by_id[key_id(key)] = key

    def __bool__(self):
        return bool(self.by_id)

    __nonzero__ = __bool__

    def find(self, wanted_id):
        return self.by_id.get(wanted_id)

    def describe(self):
        """What is configured, by key id only (for messages and `walrus check`)."""
        return {"current_key_id": self.current_id.hex() if self.current_id else None,
                "old_key_ids": sorted(k.hex() for k in self.by_id if k != self.current_id)}


def _where(settings, name):
    return "%s (from %s)" % (name, settings.source(name))


def keyring(settings):
    """The Keyring the settings describe; ConfigError naming the setting on bad input."""
    if settings.encryption_key and settings.encryption_key_file:
        raise ConfigError("both %s and %s are set: give the current encryption key one way only"
                          % (_where(settings, "encryption_key"), _where(settings, "encryption_key_file")))
    current = None
    if settings.encryption_key:
        current = parse_key(settings.encryption_key, _where(settings, "encryption_key"))
    elif settings.encryption_key_file:
        current = read_key_file(settings.encryption_key_file, _where(settings, "encryption_key_file"))
    old = []
    for number, text in enumerate(_split(settings.encryption_old_keys), 1):
        old.append(parse_key(text, "key %d of %s" % (number, _where(settings, "encryption_old_keys"))))
    for path in _split(settings.encryption_old_key_files):
        old.append(read_key_file(path, _where(settings, "encryption_old_key_files")))
    return Keyring(current, old)
