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
  - With O(status=true), also the facts of C(walrus status) (archiver health, archive lag, newest segment, newest
    backup and its age, PITR window, last restore drill, repository size by kind) and what needs a human, so that a
    playbook can assert on them. The module does not fail when something needs attention; assert on the C(ok) key of RV(status).
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  status:
    description:
      - Return the status facts in RV(status), as C(walrus status --json) prints them.
      - PostgreSQL (C(pg_stat_archiver)) is queried only when O(pg_host) or O(pg_port) is given; otherwise the facts
        come from the repository alone.
    type: bool
    default: false
  max_backup_age:
    description: With O(status), a newest complete backup older than this needs attention (units s, m, h, d, w; V(off)).
    type: str
    default: 8d
  max_archive_lag:
    description: With O(status), segments waiting for archiving longer than this need attention (V(off) to ignore).
    type: str
    default: 15m
  max_drill_age:
    description: With O(status), no restore drill or the newest older than this needs attention (V(off) to ignore).
    type: str
    default: "off"
  pg_host:
    description: With O(status), PostgreSQL host or socket directory to read C(pg_stat_archiver) from.
    type: str
  pg_port:
    description: With O(status), PostgreSQL port.
    type: int
  pg_user:
    description: With O(status), PostgreSQL user (any user may read C(pg_stat_archiver)).
    type: str
  pg_password:
    description: PostgreSQL password, if the server asks for one (else E(PGPASSFILE)/C(~/.pgpass) apply).
    type: str
  pg_database:
    description: Database to connect to.
    type: str
    default: postgres
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
      - The module only reads the repository; it runs the same in check mode.
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

- name: Read the status facts, with the archiver's, from the primary
  walrus.postgres.backup_info:
    status: true
    pg_host: /var/run/postgresql
    max_backup_age: 2d
  register: info

- name: Fail when something needs a human
  ansible.builtin.assert:
    that:
      - info.status.ok
      - not info.status.archiver.failing
    fail_msg: "{{ info.status.attention }}"
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
status:
  description:
    - The facts of C(walrus status --json) (docs/monitoring.md); C(ok) is false when C(attention) lists something
      that needs a human.
    - "Keys: C(ok), C(attention), C(archiver) (null without a database connection), C(backup), C(wal), C(pitr),
      C(drill), C(repository_bytes), C(repository_up), C(database), C(thresholds), C(checked_at)."
  returned: when O(status=true)
  type: dict
  sample: {"ok": true, "attention": [], "archiver": {"failing": false, "lag_segments": 0, "failed_count": 0},
           "backup": {"count": 1, "last": {"name": "base_20261124T231500Z", "age_seconds": 3600.0}},
           "pitr": {"seconds": 86400}, "repository_bytes": {"wal": 16777216, "basebackups": 7913289, "drills": 1960}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, conninfo, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import backups, catalog, errors, status
from ansible_collections.walrus.postgres.plugins.module_utils.walrus.storage import open_storage


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            postgresql=True,
            status=dict(type="bool", default=False),
            max_backup_age=dict(type="str", default=status.DEFAULT_MAX_BACKUP_AGE),
            max_archive_lag=dict(type="str", default=status.DEFAULT_MAX_ARCHIVE_LAG),
            max_drill_age=dict(type="str", default=status.DEFAULT_MAX_DRILL_AGE),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False)
    try:
        settings = load_settings(module)
        result["repo"] = settings.repo
        storage = open_storage(settings)
        problems = []
        found = backups.list_backups(storage, problems=problems)
        result.update(backups=found, latest=found[-1] if found else None, problems=problems,
                      identity=catalog.read_identity(storage))
        if params["status"]:
            result["status"] = status.collect(
                settings, conninfo=conninfo(params), use_db=bool(params["pg_host"] or params["pg_port"]),
                max_backup_age=params["max_backup_age"], max_archive_lag=params["max_archive_lag"],
                max_drill_age=params["max_drill_age"], storage=storage)
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot list the backups", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
