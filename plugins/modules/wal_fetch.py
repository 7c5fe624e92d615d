#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wal_fetch
short_description: Restore one PostgreSQL WAL file from a walrus repository
version_added: 0.1.0
description:
  - Reads one archived WAL file (segment, C(.partial) segment, C(.backup) history file or timeline
    C(.history) file) from a walrus repository on S3 or in a local directory, verifies it and writes it
    to a path on the target host, as C(restore_command = 'walrus wal-fetch %f %p') would.
  - The destination is replaced atomically, and only when its content differs; a destination that
    already holds the archived bytes is left alone (C(changed=false)).
  - A name that is not archived is reported with RV(missing=true); it fails the task unless
    O(fail_on_missing=false).
  - Unlike C(restore_command), the module never prefetches the following segments.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  name:
    description:
      - The WAL file name to restore, for example V(000000010000000000000003) or V(00000002.history).
    type: str
    required: true
  dest:
    description:
      - Where to write the file on the target host.
      - When O(dest) is an existing directory, the file is written inside it under O(name).
      - The parent directory must exist.
    type: path
    required: true
  fail_on_missing:
    description:
      - Whether a WAL file that is not in the repository fails the task.
      - With V(false) the task succeeds, changes nothing and returns RV(missing=true); this is how
        PostgreSQL itself treats a missing file (for example the history file of a timeline that does not exist yet).
    type: bool
    default: true
extends_documentation_fragment:
  - walrus.postgres.attributes
  - walrus.postgres.attributes.action_group
  - walrus.postgres.repository
  - ansible.builtin.files
  - ansible.builtin.action_common_attributes
  - action_common_attributes.files
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details:
      - Asks the repository whether the file exists; when O(dest) exists, the archived file is read
        into a temporary file to compare it. O(dest) is not written.
  safe_file_operations:
    support: full
  vault:
    support: none
seealso:
  - module: walrus.postgres.wal_push
  - name: Recovering using a continuous archive backup, in the PostgreSQL manual
    description: How PostgreSQL asks a restore command for WAL files during recovery.
    link: https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-PITR-RECOVERY
"""

EXAMPLES = r"""
- name: Restore a WAL segment from S3 into a scratch directory
  walrus.postgres.wal_fetch:
    name: "000000010000000000000003"
    dest: /var/tmp/wal/
    repo: s3://pg-archive/main-cluster
    aws_region: eu-west-1

- name: Restore into pg_wal of a stopped cluster, owned by postgres
  walrus.postgres.wal_fetch:
    name: "000000010000000000000003"
    dest: /var/lib/postgresql/15/main/pg_wal/000000010000000000000003
    repo: /srv/walrus/main-cluster
    owner: postgres
    group: postgres
    mode: "0600"

- name: Look for the history file of timeline 3, which may not exist
  walrus.postgres.wal_fetch:
    name: 00000003.history
    dest: /var/tmp/wal/
    fail_on_missing: false
  register: history

- name: Report whether timeline 3 was ever created
  ansible.builtin.debug:
    msg: "timeline 3 {{ 'does not exist' if history.missing else 'exists' }}"
"""

RETURN = r"""
name:
  description: The WAL file name.
  returned: always
  type: str
  sample: "000000010000000000000003"
dest:
  description: The file that was (or would be) written; O(dest) joined with O(name) when O(dest) is a directory.
  returned: always
  type: str
  sample: /var/tmp/wal/000000010000000000000003
repo:
  description: The repository used, after module options, environment and config file were applied.
  returned: when the settings could be resolved
  type: str
  sample: s3://pg-archive/main-cluster
missing:
  description: Whether the WAL file is absent from the repository (the C(walrus wal-fetch) exit code 1).
  returned: always
  type: bool
  sample: false
status:
  description:
    - V(fetched) when RV(dest) was written by this run.
    - V(unchanged) when RV(dest) already held the archived content.
    - V(would_fetch) in check mode when RV(dest) would be written.
    - V(missing) when the file is not archived.
  returned: success, and failure because of a missing file
  type: str
  sample: fetched
bytes:
  description: Size of the WAL file in bytes.
  returned: when the file was read from the repository
  type: int
  sample: 16777216
checksum:
  description: SHA-256 of RV(dest) after the run.
  returned: when RV(dest) exists after the run
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
seconds:
  description: Time the read from the repository took, in seconds.
  returned: when the file was read from the repository
  type: float
  sample: 0.031
error_kind:
  description:
    - What kind of failure happened, as the C(walrus) command's exit code tells it.
    - V(not_found) when the file is not archived; V(usage) for a malformed name or bad settings;
      V(storage) when the repository cannot be reached or is not a walrus repository; V(integrity)
      when the archived object is corrupt or truncated.
  returned: failure
  type: str
  sample: not_found
walrus_exit_code:
  description: The exit code C(walrus wal-fetch) would have returned for this failure.
  returned: failure
  type: int
  sample: 1
"""

import filecmp
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import errors, wal


def fetch_to_temp(module, settings, name, directory):
    """Fetch `name` into a new temporary file in `directory`; return its path and the engine's report."""
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".walrus-fetch", dir=directory)
    os.close(fd)
    module.add_cleanup_file(tmp)
    return tmp, wal.fetch(settings, name, tmp, use_prefetch=False)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            fail_on_missing=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
        add_file_common_args=True,
    )
    name = module.params["name"]
    dest = module.params["dest"]
    if os.path.isdir(dest):
        dest = os.path.join(dest, name)
    result = dict(changed=False, name=name, dest=dest, missing=False)
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        module.fail_json(msg="cannot restore %s: directory %s does not exist" % (name, parent),
                         error_kind="usage", walrus_exit_code=errors.EXIT_USAGE, **result)

    try:
        settings = load_settings(module, prefetch=0)
        result["repo"] = settings.repo
        if module.check_mode:
            if not wal.exists(settings, name):
                raise errors.NotFound("no object for %s in %s" % (name, settings.repo))
            if os.path.exists(dest):
                tmp, outcome = fetch_to_temp(module, settings, name, module.tmpdir)
                same = filecmp.cmp(tmp, dest, shallow=False)
                result.update(bytes=outcome["bytes"], seconds=round(outcome["seconds"], 3))
                result["status"] = "unchanged" if same else "would_fetch"
            else:
                result["status"] = "would_fetch"
        else:
            # Fetched beside dest so that replacing dest is an atomic rename.
            tmp, outcome = fetch_to_temp(module, settings, name, parent)
            result.update(bytes=outcome["bytes"], seconds=round(outcome["seconds"], 3))
            if os.path.exists(dest) and filecmp.cmp(tmp, dest, shallow=False):
                result["status"] = "unchanged"
            else:
                module.atomic_move(tmp, dest)
                result["status"] = "fetched"
    except errors.NotFound as exc:
        result.update(missing=True, status="missing")
        if module.params["fail_on_missing"]:
            fail(module, exc, "WAL file %s is not archived" % name, **result)
        module.exit_json(msg="WAL file %s is not archived in %s" % (name, result.get("repo")), **result)
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot restore %s" % name, **result)

    result["changed"] = result["status"] != "unchanged"
    if os.path.exists(dest):
        file_args = module.load_file_common_arguments(module.params, path=dest)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
        result["checksum"] = module.sha256(dest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
