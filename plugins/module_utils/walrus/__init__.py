# SPDX-License-Identifier: GPL-3.0-or-later
"""The walrus engine: PostgreSQL WAL archiving, base backups and point-in-time recovery.

Plain Python with relative imports only, so that the same files run as Ansible
module_utils and as the `walrus` command. Keep this file empty of imports: the
archive_command fast path imports the package and must stay cheap.
"""
