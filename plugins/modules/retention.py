#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: retention
short_description: Delete old backups and WAL from a walrus repository, safely
version_added: 0.1.0
description:
  - Applies a retention policy to a walrus repository, as C(walrus delete retain|before|garbage) does,
    and marks backups permanent or not, as C(walrus backup-mark) does.
  - Whatever the policy, walrus keeps permanent backups, the newest full backup, every base a kept delta
    backup depends on (its whole chain), the WAL from the start of the oldest kept backup onward, and
    every timeline history file.
  - Deletion keeps the repository consistent if it is interrupted - backups newest first (a delta before
    its base), each one's sentinel first, WAL last and oldest first.
  - In check mode nothing is written or deleted; the module returns what it would delete (the dry run of
    the command). Without check mode it deletes (the command's C(--confirm)).
  - Nothing is deleted while a backup sentinel cannot be read, because that backup may need what would go.
  - Deleting holds the repository lock (as C(walrus delete --confirm) does); when a backup or another
    retention run holds it, the task fails at once naming that run, or waits up to C(lock_wait) seconds
    when the walrus config file or E(WALRUS_LOCK_WAIT) sets it. Check mode takes no lock.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  retain:
    description:
      - Keep this many of the newest complete backups (full backups with O(full)) and delete the older ones,
        with the WAL only they needed.
      - Mutually exclusive with O(before) and O(garbage).
    type: int
  full:
    description:
      - With O(retain), count full backups only; every delta backup built on a kept full backup is kept with it.
    type: bool
    default: false
  before:
    description:
      - Delete the backups older than this backup (by name; it is kept), or not needed to restore to this
        time or later (a time with a time zone, for example V(2026-11-01 00:00:00+00); the newest backup that
        ended by then is kept), with the WAL only they needed.
      - Mutually exclusive with O(retain) and O(garbage).
    type: str
  garbage:
    description:
      - Delete incomplete backups (objects without a sentinel, left by a failed backup) older than O(min_age),
        and WAL older than the start of the oldest complete backup along its timeline history.
      - Mutually exclusive with O(retain) and O(before).
    type: bool
    default: false
  min_age:
    description:
      - With O(garbage), leave incomplete backups written to more recently than this alone, since a backup
        may still be running. A number with an optional unit C(s), C(m), C(h), C(d) or C(w).
    type: str
    default: 24h
  permanent:
    description:
      - Complete backups (names, or V(LATEST)) to mark permanent before the policy is applied. Retention
        never deletes a permanent backup or what it needs.
    type: list
    elements: str
    default: []
  impermanent:
    description:
      - Complete backups (names, or V(LATEST)) whose permanent mark is taken away before the policy is applied.
    type: list
    elements: str
    default: []
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
      - Check mode is the dry run - it reports what would be marked and deleted and changes nothing.
seealso:
  - module: walrus.postgres.backup
  - module: walrus.postgres.backup_info
"""

EXAMPLES = r"""
- name: Keep four weekly full backups and their daily deltas
  walrus.postgres.retention:
    repo: s3://pg-archive/main-cluster
    retain: 4
    full: true

- name: Keep the year-end backup forever, then apply the policy
  walrus.postgres.retention:
    repo: s3://pg-archive/main-cluster
    permanent:
      - base_20261231T230000Z
    retain: 4
    full: true

- name: Show what deleting everything not needed to restore to 1 November on would remove
  walrus.postgres.retention:
    repo: /srv/walrus/main
    before: "2026-11-01 00:00:00+00"
  check_mode: true
  register: plan

- name: Remove failed backups and WAL that no backup needs
  walrus.postgres.retention:
    repo: /srv/walrus/main
    garbage: true
    min_age: 12h
"""

RETURN = r"""
deleted:
  description:
    - What was deleted, or in check mode what would be deleted.
    - C(backups) lists complete backups (name, kind, stop_time, objects, bytes), newest first; C(incomplete)
      lists incomplete backups (name, objects, bytes, age_seconds); C(wal) lists WAL file names, oldest first.
  returned: success
  type: dict
  sample: {"backups": [{"name": "base_20261103T010000Z", "kind": "full", "stop_time": "2026-11-03T01:04:10Z",
           "objects": 4, "bytes": 7913289}], "incomplete": [], "wal": ["000000010000000000000003"]}
kept:
  description: The complete backups kept, oldest first, each with the reasons it is kept.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "base_20261110T010000Z", "kind": "full", "permanent": false,
            "reasons": ["one of the 4 newest full backups", "base of delta base_20261111T010000Z"]}]
wal_kept_from:
  description: The first WAL segment kept (the start of the oldest kept backup), or null when no WAL is considered.
  returned: success
  type: str
incomplete_kept:
  description: Incomplete backups left alone because they are younger than O(min_age) (they may be running).
  returned: success
  type: list
  elements: dict
marked:
  description: The backups whose permanent mark was set or taken away (name, permanent, changed).
  returned: success
  type: list
  elements: dict
problems:
  description: What retention found wrong (a sentinel it cannot read, a delta whose base is missing).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import argument_spec, fail, load_settings
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import errors, retention
from ansible_collections.walrus.postgres.plugins.module_utils.walrus.storage import open_storage


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            retain=dict(type="int"),
            full=dict(type="bool", default=False),
            before=dict(type="str"),
            garbage=dict(type="bool", default=False),
            min_age=dict(type="str", default=retention.DEFAULT_MIN_AGE),
            permanent=dict(type="list", elements="str", default=[]),
            impermanent=dict(type="list", elements="str", default=[]),
        ),
        mutually_exclusive=[("retain", "before")],
        supports_check_mode=True,
    )
    params = module.params
    modes = [mode for mode, given in (("retain", params["retain"] is not None), ("before", params["before"] is not None),
                                      ("garbage", params["garbage"])) if given]
    if len(modes) > 1:
        module.fail_json(msg="retain, before and garbage are mutually exclusive; got %s" % ", ".join(modes))
    if not modes and not params["permanent"] and not params["impermanent"]:
        module.fail_json(msg="give one of retain, before or garbage (or permanent/impermanent marks)")
    if params["full"] and params["retain"] is None:
        module.fail_json(msg="full applies to retain only")
    both = set(params["permanent"]) & set(params["impermanent"])
    if both:
        module.fail_json(msg="backups both permanent and impermanent: %s" % ", ".join(sorted(both)))
    result = dict(changed=False, marked=[], deleted=dict(backups=[], incomplete=[], wal=[]), kept=[],
                  wal_kept_from=None, incomplete_kept=[], problems=[])
    try:
        settings = load_settings(module)
        result["repo"] = settings.repo
        storage = open_storage(settings)
        for names, permanent in ((params["permanent"], True), (params["impermanent"], False)):
            for name in names:
                result["marked"].append(retention.mark(storage=storage, name=name, permanent=permanent,
                                                       dry_run=module.check_mode))
        if modes:
            done = retention.delete(
                storage=storage, mode=modes[0], count=params["retain"], full=params["full"], before=params["before"],
                min_age=params["min_age"], confirm=not module.check_mode,
                mark_permanent=[m["name"] for m in result["marked"] if m["permanent"]],
                mark_impermanent=[m["name"] for m in result["marked"] if not m["permanent"]])
            result["deleted"] = dict(backups=done["backups"], incomplete=done["incomplete"], wal=done["wal"])
            result.update(kept=done["kept"], wal_kept_from=done["wal_kept_from"],
                          incomplete_kept=done["incomplete_kept"], problems=done["problems"])
        result["changed"] = any(m["changed"] for m in result["marked"]) or any(result["deleted"].values())
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "retention failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
