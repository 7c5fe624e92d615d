# SPDX-License-Identifier: GPL-3.0-or-later
"""The repository's identity: which PostgreSQL cluster a repository belongs to.

`walrus-repository.json` at the repository root is written once, by the first push, with
a no-overwrite write (so two first pushes cannot both win). Every later push compares the
cluster's system identifier and WAL segment size with it.
"""
import json
import socket
import time

from .errors import IdentityMismatch, IntegrityError, NotFound, ObjectExists
from .version import __version__

IDENTITY_KEY = "walrus-repository.json"
REPOSITORY_FORMAT = 1


def read_identity(storage):
    """Return the identity dict, or None when the repository is new."""
    try:
        data = storage.get(IDENTITY_KEY)
    except NotFound:
        return None
    try:
        identity = json.loads(data.decode("utf-8"))
        int(identity["system_identifier"])
        int(identity["wal_segment_size"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise IntegrityError("repository identity %s is corrupt" % storage.describe(IDENTITY_KEY))
    if identity.get("format") != "walrus" or int(identity.get("format_version", 0)) > REPOSITORY_FORMAT:
        raise IntegrityError("%s is not a walrus repository identity this version understands (format %r %r)"
                             % (storage.describe(IDENTITY_KEY), identity.get("format"), identity.get("format_version")))
    return identity


def verify_identity(identity, storage, system_identifier, segment_size, what):
    if int(identity["system_identifier"]) != int(system_identifier):
        raise IdentityMismatch(
            "%s belongs to PostgreSQL system %s but the repository %s belongs to system %s: "
            "refusing to mix clusters in one repository (use another prefix or directory)"
            % (what, system_identifier, storage.describe(), identity["system_identifier"]))
    if segment_size and int(identity["wal_segment_size"]) != int(segment_size):
        raise IdentityMismatch(
            "%s has WAL segment size %d but the repository %s holds segments of %s bytes"
            % (what, segment_size, storage.describe(), identity["wal_segment_size"]))


def ensure_identity(storage, system_identifier, segment_size, pg_major, what):
    """Verify the repository belongs to this cluster, creating the identity if the repository is new."""
    identity = read_identity(storage)
    if identity is None:
        identity = {
            "format": "walrus",
            "format_version": REPOSITORY_FORMAT,
            "system_identifier": str(system_identifier),
            "wal_segment_size": int(segment_size),
            "pg_major": pg_major,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "created_by": "walrus %s on %s" % (__version__, socket.gethostname()),
        }
        try:
            storage.put(IDENTITY_KEY, json.dumps(identity, indent=2, sort_keys=True).encode() + b"\n")
            return identity
        except ObjectExists:
            identity = read_identity(storage)
    verify_identity(identity, storage, system_identifier, segment_size, what)
    return identity
