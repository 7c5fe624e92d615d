# SPDX-License-Identifier: GPL-3.0-or-later
"""Repository storage: one interface (base.Storage), one file per backend.

open_storage() picks the backend from the repository URL; the S3 backend (and boto3) is
imported only when an s3:// repository is opened.
"""
import os

from ..errors import ConfigError


def parse_repo_url(url):
    """Return ('s3', bucket, prefix) or ('fs', absolute_path, '')."""
    if not url:
        raise ConfigError("no repository given: use --repo, the WALRUS_REPO variable or 'repo =' in the config file")
    if url.startswith("s3://"):
        rest = url[len("s3://"):]
        bucket, _sep, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError("repository URL %r has no bucket: use s3://bucket/prefix" % url)
        return "s3", bucket, prefix.strip("/")
    if url.startswith("file://"):
        path = url[len("file://"):]
    elif "://" in url:
        raise ConfigError("repository URL %r: unsupported scheme; use s3://bucket/prefix, file:///path or /path" % url)
    else:
        path = url
    if not os.path.isabs(path):
        raise ConfigError("repository path %r must be absolute (PostgreSQL runs archive_command in the data directory)" % url)
    return "fs", os.path.normpath(path), ""


def open_storage(settings):
    """The repository's storage, behind the client-side encryption layer (storage/encrypted.py)."""
    from ..keys import keyring
    from .encrypted import EncryptedStorage
    ring = keyring(settings)  # bad key settings fail here, before anything is read or written
    kind, where, prefix = parse_repo_url(settings.repo)
    if kind == "s3":
        from .s3 import S3Storage
        return EncryptedStorage(S3Storage(where, prefix, settings), ring)
    from .fs import FsStorage
    return EncryptedStorage(FsStorage(where), ring)
