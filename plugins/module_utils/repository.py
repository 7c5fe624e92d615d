# -*- coding: utf-8 -*-
# Copyright: walrus.postgres contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the walrus modules share: the argument spec of the repository options (documented
once in plugins/doc_fragments/repository.py), turning module parameters into engine
settings, and turning engine errors into module results.

All the work is done by the engine in module_utils/walrus; nothing here knows about WAL.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.walrus.postgres.plugins.module_utils.walrus import config, errors

# Keep in step with the DOCUMENTATION fragment of plugins/doc_fragments/repository.py.
REPOSITORY_ARGS = dict(
    repo=dict(type="str"),
    config=dict(type="path"),
    upload_concurrency=dict(type="int"),
    s3_addressing_style=dict(type="str", choices=["path", "virtual", "auto"]),
    s3_max_attempts=dict(type="int"),
    aws_access_key_id=dict(type="str", aliases=["access_key"], no_log=False),
    aws_secret_access_key=dict(type="str", aliases=["secret_key"], no_log=True),
    aws_session_token=dict(type="str", aliases=["session_token"], no_log=True),
    aws_profile=dict(type="str", aliases=["profile"]),
    aws_region=dict(type="str", aliases=["region"]),
    aws_endpoint_url=dict(type="str", aliases=["endpoint_url"]),
    aws_ca_bundle=dict(type="path", aliases=["ca_bundle"]),
    encryption_key=dict(type="str", no_log=True),
    encryption_key_file=dict(type="path", no_log=False),
    encryption_old_keys=dict(type="list", elements="str", no_log=True),
    encryption_old_key_files=dict(type="list", elements="path", no_log=False),
)

# Keep in step with the WRITE fragment.
WRITE_ARGS = dict(
    compression=dict(type="str", choices=["lz4", "zstd", "none"]),
    compression_level=dict(type="int"),
    s3_storage_class=dict(type="str"),
    s3_sse=dict(type="str"),
    s3_sse_kms_key_id=dict(type="str", no_log=False),
    s3_conditional_writes=dict(type="bool"),
)

# The meaning of the engine's error classes (the `walrus` command's exit codes).
ERROR_KINDS = {
    errors.EXIT_NOT_FOUND: "not_found",
    errors.EXIT_USAGE: "usage",
    errors.EXIT_STORAGE: "storage",
    errors.EXIT_INTEGRITY: "integrity",
    errors.EXIT_CONFLICT: "conflict",
}


# The options of modules that connect to PostgreSQL (libpq's PG* variables apply when unset).
POSTGRESQL_ARGS = dict(
    pg_host=dict(type="str"),
    pg_port=dict(type="int"),
    pg_user=dict(type="str"),
    pg_password=dict(type="str", no_log=True),
    pg_database=dict(type="str", default="postgres"),
)


def argument_spec(write=False, postgresql=False, **module_args):
    """The full argument spec of a module: its own options plus the shared ones."""
    spec = dict(REPOSITORY_ARGS)
    if write:
        spec.update(WRITE_ARGS)
    if postgresql:
        spec.update(POSTGRESQL_ARGS)
    spec.update(module_args)
    return spec


def conninfo(params):
    """The engine's PostgreSQL connection settings from the POSTGRESQL_ARGS options."""
    return {"host": params["pg_host"], "port": params["pg_port"], "user": params["pg_user"],
            "password": params["pg_password"], "dbname": params["pg_database"]}


def load_settings(module, **fixed):
    """Engine settings from the module's parameters; `fixed` holds values the module imposes
    (e.g. lookahead=0). Unset parameters stay None so that environment and config file apply."""
    explicit = {}
    for name in list(REPOSITORY_ARGS) + list(WRITE_ARGS):
        if name in module.params:
            value = module.params[name]
            # List options are the engine's comma-separated settings (encryption_old_keys ...).
            explicit[name] = ",".join(value) if isinstance(value, list) else value
    explicit.update(fixed)
    return config.load(explicit)


def fail(module, exc, context, **result):
    """End the module with `context: <the engine's message>` and what kind of failure it was."""
    if isinstance(exc, ImportError):
        name = getattr(exc, "name", None) or str(exc)
        module.fail_json(msg=missing_required_lib(name), exception=traceback.format_exc(), **result)
    code = getattr(exc, "exit_code", errors.EXIT_STORAGE)
    result.update(error_kind=ERROR_KINDS.get(code, "storage"), walrus_exit_code=code)
    module.fail_json(msg="%s: %s" % (context, exc), **result)
