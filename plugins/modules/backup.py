#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup
short_description: Take a base backup of a running PostgreSQL cluster into a walrus repository
version_added: 0.1.0
description:
  - Takes a consistent base backup of the running cluster whose data directory is O(datadir), as
    C(walrus backup-push) does, using PostgreSQL's non-exclusive backup functions and reading the
    data directory and tablespaces directly on the database host.
  - Files go into tar parts that are compressed and uploaded while they are read, several in parallel.
  - The backup is complete only once the WAL segment holding its stop point has been archived into the
    repository (so the cluster must archive into it with C(walrus wal-push)); then its manifest and,
    last, its sentinel are written. A backup without its sentinel does not exist.
  - With O(name) given and a complete backup of that name already in the repository, nothing is done
    (the task is idempotent); without O(name), every run takes a new backup.
  - Run it as the PostgreSQL OS user (become_user V(postgres)) so that every file can be read.
  - It holds the repository lock while it runs (as C(walrus backup-push) does); when another backup or
    retention run holds it, the task fails at once naming that run, or waits up to C(lock_wait) seconds
    when the walrus config file or E(WALRUS_LOCK_WAIT) sets it.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  datadir:
    description: The cluster's data directory on the target host.
    type: path
    required: true
  name:
    description:
      - Name of the backup; letters, digits, C(.), C(_) and C(-). Default C(base_<UTC start time>).
    type: str
  fast_checkpoint:
    description: Start with an immediate checkpoint (V(true)) or let it spread out (V(false)).
    type: bool
    default: true
  jobs:
    description: How many tar parts are built and uploaded in parallel.
    type: int
    default: 4
  part_size_mb:
    description: Largest raw size of one tar part, in MiB.
    type: int
    default: 1024
  archive_timeout:
    description: Seconds to wait for the stop point's WAL segment to reach the repository.
    type: int
    default: 600
  delta:
    description:
      - Take a delta backup, as C(walrus backup-push --delta) does - store only the pages of relation
        files that changed since the newest complete backup of this cluster on this timeline's history
        (whole copies of every other file); restoring it applies the chain from its full backup.
      - A full backup is taken instead when there is no such backup, or when the chain would get more
        than O(delta_max_chain) delta steps; C(note) in RV(backup) then says why, and its C(kind) is V(full).
    type: bool
    default: false
  delta_max_chain:
    description: Most delta steps after a full backup; one more makes the backup full.
    type: int
    default: 6
  pg_host:
    description: PostgreSQL host or socket directory; default from E(PGHOST) or libpq's default.
    type: str
  pg_port:
    description: PostgreSQL port; default from E(PGPORT) or 5432.
    type: int
  pg_user:
    description: PostgreSQL user; it needs the right to run the backup functions.
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
  - walrus.postgres.repository.write
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a backup would be taken (always, unless O(name) names a complete backup); takes none.
seealso:
  - module: walrus.postgres.wal_push
  - name: Making a base backup using the low level API
    description: What PostgreSQL requires of a base backup.
    link: https://www.postgresql.org/docs/current/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP
"""

EXAMPLES = r"""
- name: Nightly base backup into the archive's repository (settings from /etc/walrus/walrus.conf)
  walrus.postgres.backup:
    datadir: /var/lib/postgresql/15/main
    pg_host: /var/run/postgresql
  become: true
  become_user: postgres

- name: A named backup before an upgrade; running the play again does not take a second one
  walrus.postgres.backup:
    datadir: /var/lib/postgresql/15/main
    name: before-upgrade-2026-11
    repo: s3://pg-archive/main-cluster
    jobs: 8
  become: true
  become_user: postgres
  register: taken

- name: Daily delta backup (only the pages changed since the previous backup; full when the chain is long)
  walrus.postgres.backup:
    datadir: /var/lib/postgresql/15/main
    delta: true
    delta_max_chain: 6
  become: true
  become_user: postgres

- name: Show what was taken
  ansible.builtin.debug:
    msg: "{{ taken.backup.name }}: {{ taken.backup.raw_size | human_readable }} in {{ taken.backup.seconds }} s"
"""

RETURN = r"""
status:
  description: V(taken) when this run took the backup, V(exists) when a complete backup of that name was
    already there, V(would_take) in check mode.
  returned: success
  type: str
  sample: taken
backup:
  description: The backup's sentinel (what C(walrus backup-list) shows), plus the seconds it took.
  returned: when a backup was taken
  type: dict
  sample: {"name": "base_20261124T231500Z", "start_wal": "000000010000000000000005",
           "stop_wal": "000000010000000000000005", "files": 979, "parts": 4, "raw_size": 55114752,
           "stored_size": 7913289, "seconds": 3.2, "timeline": 1, "kind": "delta",
           "base": "base_20261123T231500Z", "chain": ["base_20261122T231500Z", "base_20261123T231500Z"]}
repo:
  description: The repository used.
  returned: when the settings could be resolved
  type: str
  sample: s3://pg-archive/main-cluster
error_kind:
  description: V(usage), V(storage), V(integrity) or V(conflict), as the C(walrus) command's exit code tells it.
  returned: failure
  type: str
  sample: storage
walrus_exit_code:
  description: The exit code C(walrus backup-push) would have returned for this failure.
  returned: failure
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, conninfo, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import backup, errors
from ansible_collections.walrus.postgres.plugins.module_utils.walrus.storage import open_storage


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            postgresql=True,
            write=True,
            datadir=dict(type="path", required=True),
            name=dict(type="str"),
            fast_checkpoint=dict(type="bool", default=True),
            jobs=dict(type="int", default=4),
            part_size_mb=dict(type="int", default=1024),
            archive_timeout=dict(type="int", default=600),
            delta=dict(type="bool", default=False),
            delta_max_chain=dict(type="int", default=6),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False)
    try:
        settings = load_settings(module)
        result["repo"] = settings.repo
        storage = open_storage(settings)
        if params["name"] and backup.is_complete(storage, params["name"]):
            result["status"] = "exists"
            module.exit_json(**result)
        if module.check_mode:
            result.update(status="would_take", changed=True)
            module.exit_json(**result)
        result["backup"] = backup.push(
            settings, params["datadir"], name=params["name"], fast=params["fast_checkpoint"], jobs=params["jobs"],
            part_mb=params["part_size_mb"], archive_timeout=params["archive_timeout"], storage=storage,
            delta_backup=params["delta"], delta_max_chain=params["delta_max_chain"],
            conninfo=conninfo(params))
        result.update(status="taken", changed=True)
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot back up %s" % params["datadir"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
