#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the base backups in a walrus repository
version_added: 0.1.0
description:
  - Returns the complete base backups of a walrus repository (those with a sentinel), oldest first,
    as C(walrus backup-list --json) does, and the repository's identity, so that a playbook can assert on them.
  - Backups still being written, or that failed, have no sentinel and are not listed.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options: {}
extends_documentation_fragment:
  - walrus.postgres.repository
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details:
      - The module only reads the repository; it runs the same in check mode.
  diff_mode:
    support: none
  action:
    support: none
  async:
    support: full
  bypass_host_loop:
    support: none
  platform:
    platforms: posix
  action_group:
    membership:
      - walrus.postgres.walrus
seealso:
  - module: walrus.postgres.backup
  - module: walrus.postgres.restore
"""

EXAMPLES = r"""
- name: Read the repository's backups
  walrus.postgres.backup_info:
    repo: s3://pg-archive/main-cluster
  register: info

- name: Fail when the newest backup is older than a day
  ansible.builtin.assert:
    that:
      - info.latest is not none
      - (ansible_date_time.epoch | int) - (info.latest.stop_time | to_datetime('%Y-%m-%dT%H:%M:%SZ')).timestamp() < 86400
"""

RETURN = r"""
backups:
  description: The complete backups, oldest first (their sentinels).
  returned: success
  type: list
  elements: dict
  sample: [{"name": "base_20261124T231500Z", "start_wal": "000000010000000000000005", "stop_time": "2026-11-24T23:15:04Z",
            "raw_size": 55114752, "stored_size": 7913289, "timeline": 1}]
latest:
  description: The newest complete backup, or null when there is none.
  returned: success
  type: dict
identity:
  description: The repository's identity (system identifier, WAL segment size, PostgreSQL major), null for a new repository.
  returned: success
  type: dict
problems:
  description: Sentinels that could not be read (each message names the object); such backups are not listed.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import backups, catalog, errors
from ansible_collections.walrus.postgres.plugins.module_utils.walrus.storage import open_storage


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = dict(changed=False)
    try:
        settings = load_settings(module)
        result["repo"] = settings.repo
        storage = open_storage(settings)
        problems = []
        found = backups.list_backups(storage, problems=problems)
        result.update(backups=found, latest=found[-1] if found else None, problems=problems,
                      identity=catalog.read_identity(storage))
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot list the backups", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
