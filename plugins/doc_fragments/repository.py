# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options every walrus module shares: where the repository is and how to reach it.

The argument specs that match these options live in
plugins/module_utils/repository.py; change both together.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    # Repository location and S3 connection: used by every module that reads or writes a repository.
    DOCUMENTATION = r"""
options:
  repo:
    description:
      - The repository, as one URL.
      - V(s3://bucket/prefix) for S3 or an S3-compatible server, or an absolute local path
        (V(/var/lib/walrus/repo) or V(file:///var/lib/walrus/repo)).
      - When not set, the E(WALRUS_REPO) environment variable of the module's process applies,
        then the C(repo) key of the walrus config file.
    type: str
  config:
    description:
      - Path, on the target host, of a walrus config file (flat C(key = value) lines).
      - When not set, E(WALRUS_CONFIG) applies, then C(/etc/walrus/walrus.conf) if it exists.
      - A config file that holds a secret must not be readable by group or others (mode V(0600)).
      - Settings given as module options win over environment variables, which win over the config file.
    type: path
  upload_concurrency:
    description:
      - How many uploads or downloads one call runs in parallel (multipart parts, several files).
      - The engine default is V(4).
    type: int
  s3_addressing_style:
    description:
      - How the bucket appears in S3 request URLs.
      - The default is V(path) when O(aws_endpoint_url) (or E(AWS_ENDPOINT_URL_S3)) is set, else V(auto).
    type: str
    choices: [path, virtual, auto]
  s3_max_attempts:
    description:
      - Attempts per S3 request; failures such as 5xx answers, throttling and reset connections are retried with backoff.
      - The engine default is V(6).
    type: int
  aws_access_key_id:
    description:
      - S3 access key id.
      - When not set, boto3's usual credential chain applies (E(AWS_ACCESS_KEY_ID), O(aws_profile),
        the shared credentials file, instance or container roles).
    type: str
    aliases: [access_key]
  aws_secret_access_key:
    description:
      - S3 secret access key. It is never logged or returned.
      - Prefer the credential chain of the target host (a profile, a role) or a config file of mode V(0600)
        over passing the secret in a play.
    type: str
    aliases: [secret_key]
  aws_session_token:
    description:
      - Session token for temporary S3 credentials. It is never logged or returned.
    type: str
    aliases: [session_token]
  aws_profile:
    description:
      - Named profile of the AWS shared config and credentials files on the target host.
    type: str
    aliases: [profile]
  aws_region:
    description:
      - Region of the bucket. When not set, E(AWS_REGION), E(AWS_DEFAULT_REGION) or the profile apply.
    type: str
    aliases: [region]
  aws_endpoint_url:
    description:
      - URL of an S3-compatible server (MinIO, SeaweedFS, Ceph RGW, ...), for example V(https://s3.example.internal:9000).
      - When not set, E(AWS_ENDPOINT_URL_S3) or E(AWS_ENDPOINT_URL) apply; without any, AWS S3 itself is used.
    type: str
    aliases: [endpoint_url]
  aws_ca_bundle:
    description:
      - CA certificate bundle (PEM) on the target host to verify the S3 server's TLS certificate.
    type: path
    aliases: [ca_bundle]
  encryption_key:
    description:
      - Client-side encryption key (AES-256-GCM), 64 hex digits or the base64 of 32 bytes, for example from
        C(openssl rand -hex 32). It is never logged or returned.
      - New objects are encrypted with it; objects it encrypted are decrypted with it.
      - When not set, E(WALRUS_ENCRYPTION_KEY) applies, then the C(encryption_key) or C(encryption_key_file) key
        of the walrus config file; with no key at all, new objects are not encrypted and encrypted objects
        cannot be read (the error names the object and the key id it needs).
      - Prefer the config file of mode V(0600) that the C(walrus.postgres.archiving) role writes over passing the key in a play.
    type: str
  encryption_key_file:
    description:
      - Instead of O(encryption_key), a file on the target host holding the key; it must not be readable by group or others.
    type: path
  encryption_old_keys:
    description:
      - Keys used before the current one (key rotation), still used to decrypt the objects they encrypted.
        They are never logged or returned.
    type: list
    elements: str
  encryption_old_key_files:
    description:
      - Files on the target host holding older keys (mode V(0600)).
    type: list
    elements: path
notes:
  - The walrus engine runs on the target host, which needs Python with C(boto3) (for S3 repositories) and C(lz4)
    (and C(zstandard) for zstd objects); see the collection's C(requirements.txt).
  - Settings resolve in the same order as for the C(walrus) command, so a host already set up for
    C(archive_command) (environment or C(/etc/walrus/walrus.conf)) needs no repository options in a play.
requirements:
  - boto3 >= 1.36 (S3 repositories only)
  - lz4 >= 4.0
  - cryptography >= 3.4 (client-side encryption only)
"""

    # Options that only matter when new objects are written to the repository.
    WRITE = r"""
options:
  compression:
    description:
      - Compression of new objects. Stored objects record how they were written, so readers never need this.
      - The engine default is V(lz4).
    type: str
    choices: [lz4, zstd, none]
  compression_level:
    description:
      - Compression level; the codec's own default when not set.
    type: int
  s3_storage_class:
    description:
      - S3 storage class of new objects, for example V(STANDARD_IA).
    type: str
  s3_sse:
    description:
      - S3 server-side encryption of new objects, V(AES256) or V(aws:kms).
    type: str
  s3_sse_kms_key_id:
    description:
      - KMS key id used when O(s3_sse=aws:kms).
    type: str
  s3_conditional_writes:
    description:
      - Send C(If-None-Match) with uploads so that the server itself refuses to overwrite an object.
      - Turn off only for S3-compatible servers that do not support conditional writes; walrus then
        checks for an existing object before each upload instead.
      - The engine default is V(true).
    type: bool
"""
