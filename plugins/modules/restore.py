#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restore
short_description: Restore a base backup from a walrus repository and prepare point-in-time recovery
version_added: 0.1.0
description:
  - Restores the base backup O(backup) (a name, or V(LATEST)) into the data directory O(target), as
    C(walrus backup-fetch) does. Parts are downloaded and unpacked in parallel; every file is checked
    against the backup's manifest (size and SHA-256) before the restore counts as done.
  - A delta backup (taken with O(walrus.postgres.backup#module:delta=true)) is restored with its whole chain - its
    full backup, then every delta in order - and every reconstructed file is checked against the delta's manifest.
  - Writes C(restore_command) (C(walrus wal-fetch %f %p)) and the recovery target into
    C(postgresql.auto.conf) and creates C(recovery.signal) (or C(standby.signal)) last, only after
    everything was verified. The module does not start the server.
  - Refuses a non-empty target directory, or one of a running server, unless O(overwrite=true).
  - C(restore_command) runs later, as the PostgreSQL OS user, with the host's own walrus settings
    (its config file and environment); S3 credentials given to this module are not written anywhere.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  backup:
    description: The backup to restore, by name, or V(LATEST) for the newest complete one.
    type: str
    default: LATEST
  target:
    description: The data directory to create. It must be empty or missing (see O(overwrite)).
    type: path
    required: true
  overwrite:
    description: Empty a non-empty O(target) first (never a running cluster's).
    type: bool
    default: false
  jobs:
    description: Tar parts downloaded and unpacked in parallel.
    type: int
    default: 4
  tablespace_map:
    description: Relocate tablespaces, as a mapping of tablespace OID to a new directory.
    type: dict
  target_time:
    description: Recover up to this time (C(recovery_target_time)), e.g. V(2026-11-24 23:15:00+00).
    type: str
  target_lsn:
    description: Recover up to this WAL location (C(recovery_target_lsn)).
    type: str
  target_xid:
    description: Recover up to this transaction (C(recovery_target_xid)).
    type: str
  target_name:
    description: Recover up to this restore point (C(recovery_target_name)).
    type: str
  target_immediate:
    description: Stop as soon as the backup is consistent (C(recovery_target = 'immediate')).
    type: bool
    default: false
  target_timeline:
    description: Timeline to follow (C(recovery_target_timeline)), one of V(latest), V(current) or a number.
    type: str
  target_action:
    description: What the server does at the target (C(recovery_target_action)).
    type: str
    choices: [pause, promote, shutdown]
  standby:
    description: Prepare a standby (C(standby.signal)) instead of a one-off recovery.
    type: bool
    default: false
  walrus_command:
    description:
      - Path of the C(walrus) command PostgreSQL runs as C(restore_command) on this host.
      - Default the C(walrus) found on E(PATH) of the module's process.
    type: path
extends_documentation_fragment:
  - walrus.postgres.attributes
  - walrus.postgres.attributes.action_group
  - walrus.postgres.attributes.module
  - walrus.postgres.repository
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details:
      - Resolves the backup and reports what would be restored; writes nothing.
seealso:
  - module: walrus.postgres.backup
  - module: walrus.postgres.backup_info
  - name: Recovery target settings in the PostgreSQL manual
    description: What each recovery target means.
    link: https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
"""

EXAMPLES = r"""
- name: Restore the latest backup and replay the archive to just before an accident
  walrus.postgres.restore:
    target: /var/lib/postgresql/15/restore
    target_time: "2026-11-24 23:15:00+00"
    target_action: promote
    walrus_command: /opt/walrus/venv/bin/walrus
  become: true
  become_user: postgres

- name: Restore a named backup with its tablespace moved
  walrus.postgres.restore:
    backup: before-upgrade-2026-11
    target: /srv/pg/restore
    tablespace_map:
      "16390": /srv/pg/restore-ts1
    target_immediate: true
  become: true
  become_user: postgres
"""

RETURN = r"""
backup:
  description: The name of the backup restored (or that would be, in check mode).
  returned: success
  type: str
  sample: base_20261124T231500Z
target:
  description: The data directory.
  returned: always
  type: str
  sample: /var/lib/postgresql/15/restore
files:
  description: Files restored.
  returned: success, not in check mode
  type: int
  sample: 979
bytes:
  description: Bytes restored.
  returned: success, not in check mode
  type: int
  sample: 55114752
seconds:
  description: Time the restore took.
  returned: success, not in check mode
  type: float
  sample: 2.4
recovery:
  description: The recovery settings written into C(postgresql.auto.conf).
  returned: success, not in check mode
  type: dict
  sample: {"restore_command": "/opt/walrus/venv/bin/walrus wal-fetch %f %p", "recovery_target_time": "2026-11-24 23:15:00+00"}
error_kind:
  description: V(usage), V(not_found), V(storage), V(integrity) or V(conflict).
  returned: failure
  type: str
  sample: integrity
walrus_exit_code:
  description: The exit code C(walrus backup-fetch) would have returned for this failure.
  returned: failure
  type: int
  sample: 4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import backups, errors, restore
from ansible_collections.walrus.postgres.plugins.module_utils.walrus.storage import open_storage

TARGETS = ("time", "lsn", "xid", "name", "immediate", "timeline", "action")


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            backup=dict(type="str", default="LATEST"),
            target=dict(type="path", required=True),
            overwrite=dict(type="bool", default=False),
            jobs=dict(type="int", default=4),
            tablespace_map=dict(type="dict"),
            target_time=dict(type="str"),
            target_lsn=dict(type="str"),
            target_xid=dict(type="str"),
            target_name=dict(type="str"),
            target_immediate=dict(type="bool", default=False),
            target_timeline=dict(type="str"),
            target_action=dict(type="str", choices=["pause", "promote", "shutdown"]),
            standby=dict(type="bool", default=False),
            walrus_command=dict(type="path"),
        ),
        mutually_exclusive=[("target_time", "target_lsn", "target_xid", "target_name", "target_immediate")],
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, target=params["target"])
    try:
        settings = load_settings(module)
        result["repo"] = settings.repo
        storage = open_storage(settings)
        recovery = dict((key, params["target_" + key]) for key in TARGETS)
        # The repository as the host's walrus will see it, never with this task's credentials.
        command = restore.default_restore_command(settings, executable=params["walrus_command"])
        if module.check_mode:
            restore.recovery_settings(recovery, command)  # the same validation as a real run
            result.update(backup=backups.resolve(storage, params["backup"])["name"], changed=True)
            module.exit_json(**result)
        outcome = restore.fetch_backup(
            settings, params["backup"], params["target"], tablespace_map=params["tablespace_map"],
            jobs=params["jobs"], recovery=recovery, standby=params["standby"], overwrite=params["overwrite"],
            restore_command=command, storage=storage)
        result.update(changed=True, backup=outcome["name"], files=outcome["files"], bytes=outcome["bytes"],
                      seconds=round(outcome["seconds"], 3), recovery=dict(outcome["recovery"]))
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot restore %s into %s" % (params["backup"], params["target"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
