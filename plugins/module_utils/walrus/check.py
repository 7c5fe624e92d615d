# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus check`: is the repository reachable with these credentials, whose is it, and does
it belong to this data directory's cluster?"""
import os
import struct

from . import catalog
from .errors import WalrusError
from .storage import open_storage


def data_directory_identity(pgdata):
    """(system identifier, PG major) of a data directory, read from global/pg_control and PG_VERSION."""
    try:
        with open(os.path.join(pgdata, "global", "pg_control"), "rb") as handle:
            sysid = struct.unpack("<Q", handle.read(8))[0]
        with open(os.path.join(pgdata, "PG_VERSION")) as handle:
            major = int(handle.read().strip().split(".")[0])
    except (OSError, ValueError, struct.error) as exc:
        raise WalrusError("%s is not a readable PostgreSQL data directory: %s" % (pgdata, exc))
    return sysid, major


def run(settings, pgdata=None):
    result = {"ok": False, "repository": settings.repo, "settings": settings.redacted()}
    try:
        storage = open_storage(settings)
        result["repository"] = storage.describe()
        result["storage"] = storage.check()
        identity = catalog.read_identity(storage)
        result["identity"] = identity
        if pgdata:
            sysid, major = data_directory_identity(pgdata)
            result["pgdata"] = {"path": pgdata, "system_identifier": str(sysid), "pg_major": major}
            if identity is not None:
                catalog.verify_identity(identity, storage, sysid, None, "data directory %s" % pgdata)
        result["ok"] = True
    except WalrusError as exc:
        result["error"] = str(exc)
        result["exit_code"] = exc.exit_code
    return result


def render(result):
    lines = ["repository:  %s" % result["repository"]]
    storage = result.get("storage")
    if storage:
        lines.append("storage:     %s" % ", ".join("%s=%s" % kv for kv in sorted(storage.items())))
    if "identity" in result:
        identity = result["identity"]
        if identity is None:
            lines.append("identity:    none yet (the first wal-push initialises the repository)")
        else:
            lines.append("identity:    system %s, PostgreSQL %s, WAL segments of %d MiB, created %s"
                         % (identity["system_identifier"], identity.get("pg_major") or "?",
                            int(identity["wal_segment_size"]) >> 20, identity.get("created_at", "?")))
    if result.get("pgdata"):
        lines.append("data dir:    %(path)s (system %(system_identifier)s, PostgreSQL %(pg_major)s)" % result["pgdata"])
    lines.append("result:      %s" % ("OK" if result["ok"] else "FAILED: " + result.get("error", "")))
    return lines
