# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus backup-fetch`: restore a base backup, prepare recovery (restore.py), as a standby
(standby.py), and with --start start it (server.py)."""
import os
import sys

from .cli_common import (add_output_flags, add_rate_flags, add_target_flags, observed, on_named_backup, pairs,
                         recovery, settings, write_json)
from .errors import UsageError


def add_backup_fetch(sub, common):
    import argparse
    import textwrap
    bfetch = sub.add_parser(
        "backup-fetch", parents=[common], help="restore a base backup into a directory, ready for recovery",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Restore base backup NAME (or LATEST, the newest complete one) into TARGETDIR, verifying every "
            "file against the backup's manifest, then prepare point-in-time recovery: a walrus block in "
            "postgresql.auto.conf (restore_command = '<this walrus> wal-fetch %f %p' and the recovery target "
            "given below) and recovery.signal (standby.signal with --standby), written last. Run it as the "
            "user PostgreSQL runs as. With LATEST and --target-time/--target-lsn, the newest backup that "
            "ends before the target is taken.", 88, break_on_hyphens=False),
        epilog="examples:\n"
               "  walrus backup-fetch LATEST /var/lib/postgresql/15/main\n"
               "  walrus backup-fetch LATEST /srv/pitr --target-time '2026-11-24 23:20:00+00' --target-action promote\n"
               "  walrus backup-fetch base_20261124T231500Z /srv/copy --tablespace-map 16390=/srv/copy-ts1\n"
               "  walrus backup-fetch LATEST /srv/pitr --set port=5499 --no-archiving --start \\\n"
               "      --pg-bindir /usr/lib/postgresql/15/bin --target-time '2026-11-24 23:20:00+00' --target-action promote\n"
               "without --start, start PostgreSQL on TARGETDIR yourself (on a free port if the original runs on this host).")
    bfetch.add_argument("name", metavar="NAME|LATEST", help="backup name (see backup-list) or LATEST")
    bfetch.add_argument("target", metavar="TARGETDIR", help="data directory to create (must be empty or absent)")
    bfetch.add_argument("--jobs", type=int, metavar="N", default=4, help="tar parts downloaded and unpacked in parallel (default 4)")
    add_target_flags(bfetch)
    bfetch.add_argument("--tablespace-map", action="append", default=[], metavar="OID=DIR",
                        help="restore tablespace OID into DIR instead of its original location (repeatable)")
    bfetch.add_argument("--standby", action="store_true",
                        help="write standby.signal instead of recovery.signal: a hot standby fed from the archive "
                             "(and from its primary with --primary-conninfo); it stays one until promoted on purpose")
    bfetch.add_argument("--primary-conninfo", metavar="CONNINFO",
                        help="with --standby: stream from this primary once the archive is replayed, e.g. "
                             "'host=db1 port=5432 user=replicator application_name=db2' (no password: see "
                             "--primary-passfile)")
    bfetch.add_argument("--primary-slot-name", metavar="SLOT",
                        help="with --primary-conninfo: the primary's physical replication slot (primary_slot_name)")
    bfetch.add_argument("--primary-passfile", metavar="FILE",
                        help="libpq password file named in primary_conninfo (passfile=); walrus writes it (mode 0600) "
                             "when WALRUS_PRIMARY_PASSWORD or primary_password in the config file holds the password, "
                             "else it must exist. Without it libpq uses PGPASSFILE or ~/.pgpass of the server's user")
    bfetch.add_argument("--primary-password-stdin", action="store_true",
                        help="read the replication password from the first line of standard input (for scripts and "
                             "Ansible; instead of WALRUS_PRIMARY_PASSWORD) and write it into --primary-passfile")
    bfetch.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="server_settings",
                        help="a server setting to write with the recovery settings, e.g. port=5433 (repeatable)")
    bfetch.add_argument("--no-archiving", action="store_true",
                        help="write archive_mode = off, so the restored cluster does not archive into the repository")
    bfetch.add_argument("--start", action="store_true",
                        help="start PostgreSQL on TARGETDIR with pg_ctl and wait until recovery has ended "
                             "(promoted, paused or shut down at the target); with --standby, until the standby "
                             "accepts read-only connections")
    bfetch.add_argument("--pg-bindir", metavar="DIR", help="PostgreSQL bin directory, for --start")
    bfetch.add_argument("--wait-timeout", type=int, default=3600, metavar="SECONDS",
                        help="with --start: how long recovery may take (default 3600)")
    bfetch.add_argument("--overwrite", action="store_true",
                        help="empty a non-empty TARGETDIR first (and the tablespace directories it links to); "
                             "never a running server's")
    bfetch.add_argument("--json", action="store_true", help="print the result as JSON")
    add_rate_flags(bfetch, "download")
    add_output_flags(bfetch)
    bfetch.set_defaults(run=cmd_backup_fetch)


def cmd_backup_fetch(args):
    return observed(args, "backup-fetch", _backup_fetch)


def _backup_fetch(args, progress):
    from . import restore
    spaces = {}
    for item in args.tablespace_map:
        oid, sep, path = item.partition("=")
        if not sep or not oid.strip().isdigit() or not path:
            raise UsageError("--tablespace-map %r: use OID=DIR" % item)
        spaces[oid.strip()] = path
    recovery_target = recovery(args)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    server_settings = pairs(args.server_settings, "--set")
    if args.no_archiving:
        server_settings["archive_mode"] = "off"
    repo_settings = settings(args)
    if args.primary_conninfo or args.primary_slot_name or args.primary_passfile or args.primary_password_stdin:
        from . import standby
        if not args.standby:
            raise UsageError("--primary-conninfo, --primary-slot-name and --primary-passfile need --standby")
        standby.checked_server_settings(server_settings)
        password = repo_settings.primary_password
        if args.primary_password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        server_settings.update(standby.primary_settings(args.primary_conninfo, args.primary_slot_name,
                                                        args.primary_passfile, password))
    # The servers started below (--start) and their restore_command must not inherit the password.
    os.environ.pop("WALRUS_PRIMARY_PASSWORD", None)
    if args.start:
        from . import server
        if not args.pg_bindir:
            raise UsageError("--start needs --pg-bindir (where pg_ctl is)")
        server.pg_bin(args.pg_bindir, "pg_ctl")
        if os.geteuid() == 0:
            raise UsageError("--start: PostgreSQL cannot run as root; run backup-fetch as the PostgreSQL OS user")
    result = on_named_backup(restore.fetch_backup, repo_settings, args.name, args.target, tablespace_map=spaces,
                             jobs=args.jobs, recovery=recovery_target, standby=args.standby, overwrite=args.overwrite,
                             server_settings=server_settings, progress=progress)
    from . import wal
    # Not in the result: whether a worker started is an optimisation, not part of the restore.
    wal.prefetch_restored(repo_settings, result["target"], result.get("wal_segment_size"))
    if args.start and args.standby:
        from . import standby
        result["server"] = standby.start(result["target"], args.pg_bindir, timeout=args.wait_timeout)
    elif args.start:
        result["server"] = server.start_and_recover(result["target"], args.pg_bindir, timeout=args.wait_timeout)
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("backup %s restored into %s: %d files, %d bytes in %.1f s; %s written, recovery settings in "
                         "postgresql.auto.conf:\n" % (result["name"], result["target"], result["files"], result["bytes"],
                                                      result["seconds"], result["signal"]))
        for key, value in sorted(result["recovery"].items()):
            sys.stdout.write("  %s = %s\n" % (key, value))
        if result.get("server", {}).get("state") == "standby":
            sys.stdout.write("started as a hot standby (%(source)s, replayed to %(replay_lsn)s) on port %(port)s; log "
                             "%(logfile)s\n" % result["server"])
        elif result.get("server"):
            sys.stdout.write("started: recovery ended (%(state)s) on timeline %(timeline)s at %(replay_lsn)s after "
                             "%(seconds).1f s; log %(logfile)s\n" % result["server"])
        if os.geteuid() == 0:
            sys.stdout.write("note: the files belong to root; PostgreSQL refuses that: chown -R postgres: %s "
                             "(and the tablespace directories) before starting it\n" % result["target"])
    return 0, result
