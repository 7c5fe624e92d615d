#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wal_push
short_description: Archive one PostgreSQL WAL file into a walrus repository
version_added: 0.1.0
description:
  - Stores one WAL file (a segment, a C(.partial) segment, a C(.backup) history file or a timeline
    C(.history) file) in a walrus repository on S3 or in a local directory, exactly as
    C(archive_command = 'walrus wal-push %p') would, but for the one file given.
  - The module returns only once the file is durably stored (the S3 upload completed; for a
    directory repository the file was written, flushed and renamed into place).
  - Archiving a file that is already stored with identical content changes nothing.
    A file stored under the same name with different content is never overwritten, and the module fails.
  - The repository records the PostgreSQL cluster it belongs to (system identifier, segment size);
    segments of another cluster are refused.
  - Unlike C(archive_command), the module never pushes other C(.ready) files ahead of the one given.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  path:
    description:
      - Path of the WAL file on the target host, usually inside the C(pg_wal) directory of a data directory.
      - The file name must be a WAL file name (for example V(000000010000000000000003)).
    type: path
    required: true
extends_documentation_fragment:
  - walrus.postgres.attributes
  - walrus.postgres.attributes.action_group
  - walrus.postgres.attributes.module
  - walrus.postgres.repository
  - walrus.postgres.repository.write
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details:
      - Reads the repository to tell whether the file would be uploaded; it writes nothing.
seealso:
  - module: walrus.postgres.wal_fetch
  - name: Continuous archiving in the PostgreSQL manual
    description: How PostgreSQL hands WAL files to an archive command, and what the command must guarantee.
    link: https://www.postgresql.org/docs/current/continuous-archiving.html
"""

EXAMPLES = r"""
- name: Archive a WAL segment into an S3 bucket
  walrus.postgres.wal_push:
    path: /var/lib/postgresql/15/main/pg_wal/000000010000000000000003
    repo: s3://pg-archive/main-cluster
    aws_region: eu-west-1

- name: Archive into a local directory (for example an NFS mount)
  walrus.postgres.wal_push:
    path: /var/lib/postgresql/15/main/pg_wal/000000010000000000000003
    repo: /srv/walrus/main-cluster

- name: Archive the last segment of the old timeline after a promotion, with an S3-compatible server
  walrus.postgres.wal_push:
    path: "/var/lib/postgresql/15/main/pg_wal/{{ segment }}.partial"
    repo: s3://walrus/main-cluster
    aws_endpoint_url: https://minio.example.internal:9000
    aws_ca_bundle: /etc/ssl/certs/internal-ca.pem
    aws_access_key_id: "{{ walrus_access_key }}"
    aws_secret_access_key: "{{ walrus_secret_key }}"
  vars:
    segment: "000000010000000000000007"

- name: Use the settings the host already has for archive_command (/etc/walrus/walrus.conf)
  walrus.postgres.wal_push:
    path: /var/lib/postgresql/15/main/pg_wal/00000002.history
  become: true
  become_user: postgres
"""

RETURN = r"""
name:
  description: The WAL file name.
  returned: always
  type: str
  sample: "000000010000000000000003"
path:
  description: The path that was given.
  returned: always
  type: str
  sample: /var/lib/postgresql/15/main/pg_wal/000000010000000000000003
repo:
  description: The repository used, after module options, environment and config file were applied.
  returned: when the settings could be resolved
  type: str
  sample: s3://pg-archive/main-cluster
status:
  description:
    - V(uploaded) when the file was stored by this run.
    - V(already_stored) when the repository already held identical content.
    - V(pushed_ahead) when an earlier C(archive_command) call had already stored this very file
      (its look-ahead record still matched the file).
    - V(would_upload) in check mode when the file would be stored.
  returned: success
  type: str
  sample: uploaded
seconds:
  description: Time the push took, in seconds.
  returned: success, not in check mode
  type: float
  sample: 0.042
error_kind:
  description:
    - What kind of failure happened, as the C(walrus) command's exit code tells it.
    - V(usage) for a malformed WAL name, a missing file or bad settings; V(storage) when the repository
      cannot be reached or written; V(integrity) when a stored object is corrupt; V(conflict) when the
      repository holds different content under this name or belongs to another cluster.
  returned: failure
  type: str
  sample: conflict
walrus_exit_code:
  description: The exit code C(walrus wal-push) would have returned for this failure.
  returned: failure
  type: int
  sample: 5
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import errors, wal


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(write=True, path=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    path = module.params["path"]
    result = dict(changed=False, path=path, name=os.path.basename(path))
    try:
        # A module pushes exactly the file it was given: no look-ahead.
        settings = load_settings(module, lookahead=0)
        result["repo"] = settings.repo
        if module.check_mode:
            result["status"] = wal.plan_push(settings, path)
            result["changed"] = result["status"] == "would_upload"
        else:
            outcome = wal.push(settings, path)
            result["status"] = outcome["status"]
            result["changed"] = outcome["status"] == "uploaded"
            result["seconds"] = round(outcome["seconds"], 3)
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot archive %s" % path, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
