# SPDX-License-Identifier: GPL-3.0-or-later
"""The `walrus` command: a thin face over the engine.

PostgreSQL runs `walrus wal-push %p` once per WAL file and `walrus wal-fetch %f %p` once per
file during recovery. Their fast paths (file already pushed ahead / already prefetched) run
before argparse and before anything heavy is imported. This file is the fast path, the parser's
skeleton and main(); each subcommand's flags and work are in cli_wal.py, cli_backup.py,
cli_restore.py, cli_retention.py, cli_drill.py and cli_status.py, imported once the fast path
has passed (cli_common.py holds what they share).
"""
import os
import sys

from . import config
from .errors import EXIT_NOT_FOUND, EXIT_USAGE, WalrusError

EXIT_CODES_HELP = """exit codes:
  0  success
  1  wal-fetch: the file is not in the repository (normal at the end of recovery)
  2  usage or configuration error (bad arguments, malformed WAL name, bad config file, no such
     backup for backup-fetch, backup-verify, backup-mark)
  3  storage error (unreachable, credentials rejected, bucket or directory missing, disk full)
  4  integrity error (a stored object is corrupt, truncated or not a walrus object)
  5  conflict (different content already stored under that name; another cluster's repository)
  6  drill: a restore drill check failed (the report says which)
  7  status: needs attention (archiver failing, archive lag, no or old backup, WAL missing, drill failed)
  8  backup-push, delete --confirm: another run holds the repository lock (named); try again later
  126 wal-fetch during archive recovery (recovery.signal): the file exists but cannot be
     read or is corrupt; PostgreSQL stops instead of ending recovery early without it

settings: flags, then WALRUS_* environment variables, then the config file
(--config, WALRUS_CONFIG, or /etc/walrus/walrus.conf). S3 connection settings are boto3's:
AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE. See docs/configuration.md.
"""


def _fast_path(argv):
    """Handle `wal-push PATH` / `wal-fetch NAME DEST` (with at most --config/--repo) without
    importing the engine when the work was already done ahead; a plain wal-push is handled
    here in any case. Returns an exit code, or None to take the full path."""
    explicit, rest, i = {}, [], 0
    while i < len(argv):
        if argv[i] in ("--config", "--repo") and i + 1 < len(argv):
            explicit[argv[i][2:]] = argv[i + 1]
            i += 2
        elif argv[i].startswith("-"):
            return None
        else:
            rest.append(argv[i])
            i += 1
    argv = rest
    if len(argv) == 2 and argv[0] == "wal-push":
        from . import lookahead
        path = argv[1]
        settings = config.load(explicit)
        pg_wal = os.path.dirname(os.path.abspath(path))
        if lookahead.take(lookahead.default_dir(settings, pg_wal), path, os.path.basename(path)):
            return 0
        # Not pushed ahead: push it now, without building the whole parser (whose subcommands
        # import psycopg2 and more: about 0.15 s before the look-ahead pusher could start).
        from . import wal
        wal.push(settings, path)
        return 0
    elif len(argv) == 3 and argv[0] == "wal-fetch" and (len(argv[1]) == 24 or argv[1].endswith(".history")):
        from . import prefetch
        settings = config.load(explicit)
        if settings.prefetch > 0:
            pdir = prefetch.default_dir(settings, os.path.dirname(os.path.abspath(argv[2])))
            if len(argv[1]) == 24 and prefetch.take(pdir, argv[1], argv[2]):
                return 0
            answer = prefetch.ask(pdir, argv[1], argv[2])
            if answer == prefetch.SERVED:
                return 0
            if answer == prefetch.ABSENT:
                return EXIT_NOT_FOUND  # as cmd_wal_fetch: quiet, PostgreSQL asks for missing files routinely
    return None


def build_parser():
    import argparse
    from . import cli_backup, cli_drill, cli_restore, cli_retention, cli_status, cli_wal
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="walrus",
        description="PostgreSQL WAL archiving and point-in-time recovery to S3 or a local directory.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="walrus %s" % __version__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", help="repository: s3://bucket/prefix, file:///path or /path (WALRUS_REPO)")
    common.add_argument("--config", help="config file (WALRUS_CONFIG; default /etc/walrus/walrus.conf if present)")
    common.add_argument("--upload-concurrency", type=int, dest="upload_concurrency",
                        help="parallel transfers of one process (default 4)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # In the order `walrus --help` lists them. Each sets `run`, the function main() calls.
    for add in (cli_wal.add_wal_push, cli_wal.add_wal_fetch,
                cli_backup.add_backup_push, cli_backup.add_backup_list, cli_restore.add_backup_fetch,
                cli_backup.add_backup_verify, cli_retention.add_delete, cli_retention.add_backup_mark,
                cli_wal.add_wal_verify, cli_drill.add_drill, cli_drill.add_drill_canary, cli_drill.add_drill_list,
                cli_status.add_status_and_metrics, cli_status.add_standby_status, cli_status.add_check):
        add(sub, common)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _fast_path(argv)
        if code is not None:
            return code
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return args.run(args)
    except WalrusError as exc:
        from .cli_common import fail  # here, not at the top: the fast path does without it
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        from .cli_common import fail
        return fail("interrupted", EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (e.g. `walrus check --json | head`); nothing left to say.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
