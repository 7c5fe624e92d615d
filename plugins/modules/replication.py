#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: replication
short_description: Prepare a PostgreSQL primary for a streaming standby and report its standbys' lag
version_added: 0.1.0
description:
  - On the primary, makes sure the physical replication slot O(slot_name) exists (created with its WAL reserved at
    once, so the primary keeps what the standby has not received yet) or is gone (O(slot_state=absent)).
  - Makes sure O(replication_user) is a C(LOGIN REPLICATION) role and, given O(replication_password), that it has
    that password. The password is hashed (SCRAM-SHA-256) by the module before it is sent, so neither the server
    log nor C(pg_stat_activity) sees it in clear; an unchanged password is not rewritten.
  - With O(reload=true), reloads the server configuration (C(pg_reload_conf())), e.g. after a C(pg_hba.conf) entry
    was added with M(ansible.builtin.lineinfile) at the C(hba_file) of RV(settings).
  - Always returns the replication facts of the primary, among them each streaming standby's replay lag in bytes
    and seconds (from C(pg_stat_replication)).
  - Does not take the repository options; it is not in the C(walrus.postgres.walrus) action group.
author:
  - walrus.postgres maintainers (!UNKNOWN)
options:
  slot_name:
    description: Physical replication slot to manage (1 to 63 lower-case letters, digits and C(_)).
    type: str
  slot_state:
    description: Whether O(slot_name) must exist. A slot in use by a running standby is never dropped.
    type: str
    choices: [present, absent]
    default: present
  replication_user:
    description: Role the standby connects as; created C(LOGIN REPLICATION) if it does not exist.
    type: str
  replication_password:
    description: Password of O(replication_user); never logged, never returned.
    type: str
  reload:
    description: Reload the server configuration (C(pg_hba.conf) among it) at the end.
    type: bool
    default: false
  pg_host:
    description: Host or socket directory of the primary (E(PGHOST) when unset).
    type: str
  pg_port:
    description: Port of the primary (E(PGPORT) when unset).
    type: int
  pg_user:
    description: User to connect as; needs to create roles and replication slots (a superuser, usually C(postgres)).
    type: str
  pg_password:
    description: Password of O(pg_user), if the server asks for one (else E(PGPASSFILE)/C(~/.pgpass) apply).
    type: str
  pg_database:
    description: Database to connect to.
    type: str
    default: postgres
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change (slot, role, password) and changes nothing; O(reload) is not done.
extends_documentation_fragment:
  - walrus.postgres.attributes
  - walrus.postgres.attributes.module
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
requirements:
  - psycopg2
seealso:
  - module: walrus.postgres.restore
notes:
  - The C(walrus.postgres.standby) role uses it to prepare the primary, then to report the standby's lag.
"""

EXAMPLES = r"""
- name: A slot and a replication role for db2, on the primary
  walrus.postgres.replication:
    slot_name: db2
    replication_user: replicator
    replication_password: "{{ vault_replication_password }}"
    pg_host: /var/run/postgresql
  become: true
  become_user: postgres
  register: primary

- name: Let db2 connect for replication
  ansible.builtin.lineinfile:
    path: "{{ primary.settings.hba_file }}"
    line: host replication replicator 192.0.2.12/32 scram-sha-256
    insertbefore: BOF
  become: true

- name: Reload, and read the lag of every standby
  walrus.postgres.replication:
    reload: true
    pg_host: /var/run/postgresql
  become: true
  become_user: postgres
  register: primary

- name: Show db2's replay lag
  ansible.builtin.debug:
    msg: "{{ primary.standbys | selectattr('slot_name', 'eq', 'db2') | map(attribute='replay_lag_bytes') }}"
"""

RETURN = r"""
slot:
  description: The slot O(slot_name) as it is now (type, active, restart_lsn, wal_status), or null when it does not exist.
  returned: when O(slot_name) is given
  type: dict
  sample: {"name": "db2", "type": "physical", "active": true, "restart_lsn": "0/5000000", "wal_status": "reserved"}
current_lsn:
  description: The primary's current WAL write location.
  returned: success
  type: str
settings:
  description: The primary's C(wal_level), C(max_wal_senders), C(max_replication_slots), C(hba_file) and C(data_directory).
  returned: success
  type: dict
standbys:
  description:
    - One entry per connected WAL sender (C(pg_stat_replication)), with the standby's replay lag as the primary sees
      it - C(replay_lag_bytes) (current WAL location minus the standby's replay location) and C(replay_lag_seconds)
      (C(replay_lag)) - and the slot it streams through.
  returned: success
  type: list
  elements: dict
  sample: [{"application_name": "db2", "client_addr": "192.0.2.12", "state": "streaming", "sync_state": "async",
            "sent_lsn": "0/7000148", "replay_lsn": "0/7000148", "replay_lag_bytes": 0, "replay_lag_seconds": 0.0,
            "slot_name": "db2"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.walrus.postgres.plugins.module_utils.repository import POSTGRESQL_ARGS, conninfo, fail
from ansible_collections.walrus.postgres.plugins.module_utils.walrus import errors, pg, standby


def main():
    spec = dict(POSTGRESQL_ARGS)
    spec.update(
        slot_name=dict(type="str"),
        slot_state=dict(type="str", choices=["present", "absent"], default="present"),
        replication_user=dict(type="str"),
        replication_password=dict(type="str", no_log=True),
        reload=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_by={"replication_password": "replication_user"})
    params = module.params
    result = dict(changed=False)
    try:
        server = pg.connect(**conninfo(params))
        try:
            if params["slot_name"]:
                result["changed"] |= standby.ensure_slot(server, params["slot_name"], params["slot_state"] == "present",
                                                         dry_run=module.check_mode)
            if params["replication_user"]:
                result["changed"] |= standby.ensure_replication_role(
                    server, params["replication_user"], params["replication_password"], dry_run=module.check_mode)
            if params["reload"] and not module.check_mode:
                server.value("select pg_reload_conf()")
            result.update(standby.primary_facts(server, params["slot_name"]))
        finally:
            server.close()
    except (errors.WalrusError, ImportError) as exc:
        fail(module, exc, "cannot prepare the primary for replication", **result)
    if not params["slot_name"]:
        result.pop("slot", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
