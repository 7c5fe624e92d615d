# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors of the engine, each with the exit code the `walrus` command returns for it.

Exit codes stay below 126, where PostgreSQL treats archive/restore_command codes as fatal, except
EXIT_STOP_RECOVERY, which wal-fetch returns on purpose to stop an archive recovery.
"""

EXIT_OK = 0
EXIT_NOT_FOUND = 1      # wal-fetch: the file is not in the repository (normal during recovery)
EXIT_USAGE = 2          # bad arguments, malformed names, bad configuration, a backup name that does not exist
EXIT_STORAGE = 3        # repository unreachable, credentials rejected, bucket missing, I/O error
EXIT_INTEGRITY = 4      # a stored object is corrupt, truncated or not a walrus object
EXIT_CONFLICT = 5       # different content under the same name, or another cluster's repository
EXIT_DRILL_FAILED = 6   # a restore drill ran and one of its checks failed
EXIT_STOP_RECOVERY = 126  # wal-fetch: archived file unreadable during archive recovery; PostgreSQL stops
EXIT_ATTENTION = 7      # walrus status: something needs a human (archiver failing, backup too old, ...)
EXIT_BUSY = 8           # backup-push / delete: another run holds the repository lock (repolock.py); try later


class WalrusError(Exception):
    """Base class: a failure with a message meant for a human and an exit code."""

    exit_code = EXIT_STORAGE


class UsageError(WalrusError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    pass


class NotFound(WalrusError):
    exit_code = EXIT_NOT_FOUND


class StorageError(WalrusError):
    exit_code = EXIT_STORAGE


class IntegrityError(WalrusError):
    exit_code = EXIT_INTEGRITY


class ConflictError(WalrusError):
    exit_code = EXIT_CONFLICT


class ObjectExists(ConflictError):
    """A no-overwrite write found an object already stored under the key."""


class IdentityMismatch(ConflictError):
    """The repository belongs to another cluster (system identifier or segment size differ)."""


class LockBusy(WalrusError):
    """Another backup-push or delete holds the repository lock (repolock.py)."""

    exit_code = EXIT_BUSY


class EncryptionKeyMissing(ConfigError):
    """An object is encrypted with a key that is not configured (named by its key id)."""
