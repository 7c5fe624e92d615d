# SPDX-License-Identifier: GPL-3.0-or-later
"""The `walrus` command: a thin face over the engine.

PostgreSQL runs `walrus wal-push %p` once per WAL file and `walrus wal-fetch %f %p` once per
file during recovery. Their fast paths (file already pushed ahead / already prefetched) run
before argparse and before anything heavy is imported.
"""
import os
import sys

from . import config
from .errors import EXIT_DRILL_FAILED, EXIT_STOP_RECOVERY, EXIT_USAGE, NotFound, UsageError, WalrusError

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


def _fail(message, code):
    sys.stderr.write("walrus: error: %s\n" % message)
    return code


def _on_named_backup(work, *args, **kwargs):
    """work(*args, **kwargs) for a command given a backup name: when there is no such backup the
    caller named the wrong one, a usage error (exit 2), not wal-fetch's quiet "not archived" (1)."""
    try:
        return work(*args, **kwargs)
    except NotFound as exc:
        raise UsageError(str(exc))


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
            if prefetch.absent(pdir, argv[1]):
                return 1  # as cmd_wal_fetch: quiet, PostgreSQL asks for missing files routinely
    return None


def build_parser():
    import argparse
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
    push = sub.add_parser("wal-push", parents=[common], help="archive one WAL file (archive_command = 'walrus wal-push %%p')",
                          description="Store a WAL file durably in the repository; a background pusher stores the next .ready files ahead.")
    push.add_argument("path", help="the WAL file, as PostgreSQL passes it in %%p")
    push.add_argument("--compression", choices=("lz4", "zstd", "none"), help="compression for new objects (default lz4)")
    push.add_argument("--lookahead", type=int, help="how many other .ready files a background pusher stores ahead (default 16, 0 = off)")
    fetch = sub.add_parser("wal-fetch", parents=[common], help="restore one WAL file (restore_command = 'walrus wal-fetch %%f %%p')",
                           description="Write an archived WAL file to DEST. Exits 1, quietly, when it is not archived.")
    fetch.add_argument("name", help="the WAL file name, as PostgreSQL passes it in %%f")
    fetch.add_argument("dest", help="where to write it, as PostgreSQL passes it in %%p")
    fetch.add_argument("--prefetch", type=int, help="segments to fetch ahead in the background (default 8, 0 = off)")
    bpush = sub.add_parser("backup-push", parents=[common], help="take a base backup of a running cluster",
                           description="Take a base backup of the running cluster whose data directory is DATADIR, "
                                       "streaming compressed tar parts into the repository. Connects with libpq's "
                                       "usual PG* environment variables or the flags below. The backup is complete "
                                       "once the WAL segment of its stop point is archived.")
    bpush.add_argument("datadir", help="the cluster's data directory (PGDATA), read directly")
    bpush.add_argument("--name", help="backup name (default base_<UTC start time>)")
    bpush.add_argument("--spread-checkpoint", action="store_true",
                       help="let the starting checkpoint spread out (default: an immediate checkpoint)")
    bpush.add_argument("--jobs", type=int, default=4, help="tar parts built and uploaded in parallel (default 4)")
    bpush.add_argument("--part-size-mb", type=int, default=1024, help="largest raw size of a tar part (default 1024)")
    bpush.add_argument("--archive-timeout", type=int, default=600,
                       help="seconds to wait for the stop point's WAL segment in the repository (default 600)")
    bpush.add_argument("--compression", choices=("lz4", "zstd", "none"), help="compression for the parts (default lz4)")
    _add_connection_flags(bpush, "needs the right to run the backup functions")
    bpush.add_argument("--delta", action="store_true",
                       help="store only the pages changed since the newest backup of this cluster (a full "
                            "backup when there is none, or the chain would be too long)")
    bpush.add_argument("--delta-max-chain", type=int, default=6, metavar="N",
                       help="most delta steps after a full backup; one more makes a full backup (default 6)")
    bpush.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_rate_flags(bpush, "read", "upload")
    _add_output_flags(bpush)
    _add_restore_parsers(sub, common)
    _add_retention_parsers(sub, common)
    _add_drill_parsers(sub, common)
    _add_monitoring_parsers(sub, common)
    _add_standby_parser(sub, common)
    check = sub.add_parser("check", parents=[common], help="check the repository: reachable, credentials, identity",
                           description="Check that the repository is reachable with the configured credentials and, "
                                       "given a data directory, that it belongs to that cluster.")
    check.add_argument("--pgdata", help="data directory whose system identifier must match the repository (PGDATA)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _add_rate_flags(parser, *kinds):
    """--max-read-rate / --max-upload-rate / --max-download-rate (ratelimit.py)."""
    what = {"read": "reading the data directory", "upload": "sending the backup's parts to the repository",
            "download": "receiving backup parts from the repository"}
    for kind in kinds:
        parser.add_argument("--max-%s-rate" % kind, type=float, dest="max_%s_rate" % kind, metavar="MB/S",
                            help="at most this many MB/s (10^6 bytes) %s, all parallel workers together "
                                 "(WALRUS_MAX_%s_RATE; default no limit)" % (what[kind], kind.upper()))


def _add_output_flags(parser):
    """--progress, --quiet and --log-format: what goes to stderr (backup-push, backup-fetch)."""
    parser.add_argument("--progress", action="store_true",
                        help="show the progress line (bytes done / total, percent, MB/s, ETA; then the totals) on "
                             "stderr even when stderr is not a terminal (default: only on a terminal)")
    parser.add_argument("--quiet", action="store_true",
                        help="nothing on stderr but errors: no progress line, no notes, no JSON info lines")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: also write the summary as one JSON line on stderr, {\"level\": \"info\", "
                             "\"event\": \"COMMAND.done\", ...the --json fields}; notes and errors become JSON "
                             "lines too, {\"level\": \"warning\"|\"error\", \"event\": \"COMMAND.note\"|"
                             "\"COMMAND.error\", \"message\": ...} (default text)")


def _log_event(args, level, event, **fields):
    """One JSON line on stderr (--log-format json); info lines are silenced by --quiet."""
    import json
    if level != "error" and args.quiet:
        return
    line = dict(fields, level=level, event=event)
    sys.stderr.write(json.dumps(line, sort_keys=True, default=str) + "\n")
    sys.stderr.flush()


def _note(args, command, message):
    if args.log_format == "json":
        _log_event(args, "warning", command + ".note", message=message)
    elif not args.quiet:
        sys.stderr.write("walrus: note: %s\n" % message)


def _observed(args, command, work):
    """Run work(args, progress) for `command` with its progress line (progress.py); with
    --log-format json, its result as a `COMMAND.done` line and its failure as `COMMAND.error`."""
    from .progress import Progress
    progress = Progress(command, force=args.progress, quiet=args.quiet)
    try:
        code, result = work(args, progress)
    except WalrusError as exc:
        progress.abandon()
        if args.log_format != "json":
            raise
        _log_event(args, "error", command + ".error", message=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    except BaseException:
        progress.abandon()
        raise
    if args.log_format == "json" and result is not None:
        _log_event(args, "info", command + ".done", **result)
    return code


def _add_connection_flags(parser, user_needs):
    parser.add_argument("--pghost", help="PostgreSQL host or socket directory (PGHOST)")
    parser.add_argument("--pgport", type=int, help="PostgreSQL port (PGPORT)")
    parser.add_argument("--pguser", help="PostgreSQL user (PGUSER); %s" % user_needs)
    parser.add_argument("--dbname", help="database to connect to (default postgres)")


def _conninfo(args):
    return {"host": args.pghost, "port": args.pgport, "user": args.pguser, "dbname": args.dbname}


def _add_target_flags(parser):
    """Recovery target flags, shared by backup-fetch and drill."""
    parser.add_argument("--target-time", metavar="TIME", help="recover up to this time (recovery_target_time), e.g. '2026-11-24 23:20:00+00'")
    parser.add_argument("--target-lsn", metavar="LSN", help="recover up to this WAL location (recovery_target_lsn), e.g. 0/5000028")
    parser.add_argument("--target-xid", metavar="XID", help="recover up to this transaction id (recovery_target_xid)")
    parser.add_argument("--target-name", metavar="NAME", help="recover up to this restore point (pg_create_restore_point)")
    parser.add_argument("--target-immediate", action="store_true",
                        help="stop as soon as the backup is consistent (recovery_target = 'immediate')")
    parser.add_argument("--target-timeline", metavar="TL", help="timeline to recover along: latest (PostgreSQL's default), current or a number")
    parser.add_argument("--target-action", choices=("pause", "promote", "shutdown"),
                        help="what the server does at the target (PostgreSQL's default: pause)")


def _recovery(args):
    return {"time": args.target_time, "lsn": args.target_lsn, "xid": args.target_xid, "name": args.target_name,
            "immediate": args.target_immediate, "timeline": args.target_timeline, "action": args.target_action}


def _add_drill_parsers(sub, common):
    """drill and drill-canary (drill.py)."""
    drill = sub.add_parser(
        "drill", parents=[common], help="restore drill: restore, recover, check, measure, report",
        description="Restore backup NAME (default LATEST) into a scratch directory, start it on a private socket "
                    "(no TCP, no archiving), replay the archive to its end (or a target) and promote, then check: the "
                    "server is up, the canary row is there (--canary), pg_amcheck finds no corruption, and the "
                    "user's SQL checks return true. Measures RTO and RPO, stores a JSON and a Markdown report under "
                    "drills/ in the repository, removes the scratch directory, and exits 6 if a check failed. "
                    "Run it as the PostgreSQL OS user.")
    drill.add_argument("name", nargs="?", default="LATEST", metavar="NAME|LATEST", help="the backup (default LATEST)")
    drill.add_argument("--pg-bindir", required=True, metavar="DIR", help="PostgreSQL bin directory (pg_ctl, pg_amcheck)")
    drill.add_argument("--scratch", metavar="DIR", help="empty or new directory for the drill (default a new one in $TMPDIR or /var/tmp)")
    drill.add_argument("--port", type=int, default=5432,
                       help="port of the drill server (its socket is in the scratch directory, so it cannot clash; default 5432)")
    drill.add_argument("--canary", metavar="TOKEN", help="token written by `walrus drill-canary` on the primary; the drill checks it came back")
    drill.add_argument("--check", action="append", default=[], metavar="NAME=SQL",
                       help="a check of your own: SQL whose first value must be true (repeatable)")
    drill.add_argument("--checks-file", metavar="FILE", help="JSON list of checks: {name, sql, database, expect}")
    drill.add_argument("--no-amcheck", dest="amcheck", action="store_false", help="skip pg_amcheck")
    drill.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="server_settings",
                       help="a server setting for the drill only, e.g. shared_buffers=128MB (repeatable)")
    drill.add_argument("--keep", choices=("never", "on-failure", "always"), default="never",
                       help="keep the scratch directory afterwards (default never)")
    drill.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel part downloads (default 4)")
    drill.add_argument("--timeout", type=int, default=3600, help="seconds allowed for recovery to end (default 3600)")
    _add_target_flags(drill)
    drill.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_rate_flags(drill, "download")
    canary = sub.add_parser(
        "drill-canary", parents=[common], help="write a canary row on the primary and wait until it is archived",
        description="Insert a row with a fresh token into public.walrus_drill_canary on the primary, switch WAL, and "
                    "wait until the segment holding it is in the repository. Prints the token for `walrus drill --canary`.")
    _add_connection_flags(canary, "needs CREATE on schema public (first run) and INSERT")
    canary.add_argument("--timeout", type=int, default=300, help="seconds to wait for the segment (default 300)")
    canary.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_monitoring_parsers(sub, common):
    """drill-list (drills.py), status and metrics (status.py)."""
    import argparse
    dlist = sub.add_parser(
        "drill-list", parents=[common], help="list the restore drill reports in the repository",
        description="List the restore drill reports stored under drills/ in the repository, oldest first: id, "
                    "backup, result, RTO, RPO and the checks that failed. --html writes one self-contained HTML page "
                    "with a chart of RTO and RPO over time and each drill's checks.")
    dlist.add_argument("--json", action="store_true", help="print the reports as JSON")
    dlist.add_argument("--html", metavar="FILE", help="also write the drill history page to FILE (atomically)")
    facts = argparse.ArgumentParser(add_help=False, parents=[common])
    facts.add_argument("--pgdata", help="the cluster's data directory: its system identifier must match the "
                                        "repository's; .ready files are counted (PGDATA)")
    _add_connection_flags(facts, "needs to read pg_stat_archiver (any user)")
    facts.add_argument("--no-db", dest="use_db", action="store_false",
                       help="do not connect to PostgreSQL: repository facts only")
    facts.add_argument("--max-backup-age", metavar="AGE",
                       help="newest complete backup older than this needs attention (default 8d; units s, m, h, d, w; off)")
    facts.add_argument("--max-archive-lag", metavar="AGE",
                       help="segments waiting for archiving longer than this need attention (default 15m; off)")
    facts.add_argument("--max-drill-age", metavar="AGE",
                       help="no restore drill, or the newest older than this, needs attention (default off)")
    stat = sub.add_parser(
        "status", parents=[facts], help="are we safe? archiver, archive lag, backups, PITR window, drills",
        description="Archiver health (pg_stat_archiver), archive lag, the newest segment in the repository, the "
                    "newest complete backup and its age, the PITR window, the newest restore drill, the repository's "
                    "size by kind, and what needs a human. Exits 7 when something does (see the thresholds). "
                    "Without a database connection (--no-db), repository facts only.")
    stat.add_argument("--json", action="store_true", help="print the facts as JSON")
    metrics = sub.add_parser(
        "metrics", parents=[facts], help="the status facts as Prometheus metrics (node_exporter textfile)",
        description="Write the facts of walrus status as Prometheus gauges to a node_exporter textfile-collector "
                    "file (written to a temporary file in the same directory, then renamed), or to stdout. "
                    "Exits 0 once written, whatever the facts say: alerting is Prometheus's job "
                    "(docs/monitoring.md).")
    metrics.add_argument("--textfile", metavar="PATH",
                         help="file to write, e.g. /var/lib/prometheus/node-exporter/walrus.prom (default: stdout)")


def _add_restore_parsers(sub, common):
    """backup-list and backup-fetch (restore.py, backups.py)."""
    import argparse
    import textwrap
    blist = sub.add_parser("backup-list", parents=[common], help="list the complete base backups in the repository",
                           description="List the complete base backups (those whose sentinel is stored), oldest first.")
    blist.add_argument("--json", action="store_true", help="print the backups' sentinels as JSON")
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
    _add_target_flags(bfetch)
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
    bverify = sub.add_parser(
        "backup-verify", parents=[common], help="download and check a whole base backup and its WAL, writing nothing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Check base backup NAME (or LATEST) without restoring it: the manifest against its sentinel, every "
            "tar part decoded (framing checksum, size and SHA-256 from the manifest), every file in the parts "
            "against the manifest (size, SHA-256; a delta backup's changed pages as stored), every manifest file "
            "present, and every WAL segment from the backup's start to its stop segment present and readable. "
            "For a delta backup the chain's sentinels and manifests are checked, and the files it keeps from "
            "its base against the base's manifest; --chain also reads every part of the chain. Nothing is "
            "written to disk. Exits 4 listing every problem, the first bad object first; 2 when there is no "
            "such backup.", 88, break_on_hyphens=False),
        epilog="examples:\n"
               "  walrus backup-verify LATEST\n"
               "  walrus backup-verify base_20261124T231500Z --jobs 8 --json")
    bverify.add_argument("name", metavar="NAME|LATEST", help="backup name (see backup-list) or LATEST")
    bverify.add_argument("--jobs", type=int, metavar="N", default=4,
                         help="tar parts and WAL segments downloaded and checked in parallel (default 4)")
    bverify.add_argument("--chain", action="store_true",
                         help="delta backup: also read and check every part of every backup of its chain")
    bverify.add_argument("--json", action="store_true", help="print the result as JSON (also when it fails)")
    _add_rate_flags(bverify, "download")
    _add_rate_flags(bfetch, "download")
    _add_output_flags(bfetch)


def _add_retention_parsers(sub, common):
    """delete, backup-mark (retention.py) and wal-verify (walverify.py)."""
    import argparse
    import textwrap
    delete = sub.add_parser(
        "delete", help="delete old backups and WAL (a dry run unless --confirm)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Delete backups and WAL files the repository no longer needs. Without --confirm nothing is deleted: "
            "the plan is printed.", 88) + "\n\n" + textwrap.fill(
            "Whatever the mode, walrus keeps permanent backups (backup-mark), the newest full backup, every base a "
            "kept delta backup depends on, the WAL from the start of the oldest kept backup on, and every timeline "
            "history file. retain and before also delete the WAL that only the deleted backups needed. Deletion "
            "order keeps the repository consistent if it is interrupted; delete garbage removes what an interrupted "
            "run left of a backup.", 88),
        epilog="examples:\n"
               "  walrus delete retain 7                    # show what keeping the 7 newest backups would delete\n"
               "  walrus delete retain 4 --full --confirm   # keep 4 full backups and their deltas\n"
               "  walrus delete before '2026-11-01 00:00:00+00' --confirm\n"
               "  walrus delete garbage --confirm           # failed backups and WAL no backup needs")
    modes = delete.add_subparsers(dest="delete_mode", metavar="MODE")
    opts = argparse.ArgumentParser(add_help=False, parents=[common])
    opts.add_argument("--confirm", action="store_true", help="really delete (without it: a dry run that prints the plan)")
    opts.add_argument("--json", action="store_true", help="print the plan (and what was deleted) as JSON")
    retain = modes.add_parser("retain", parents=[opts], help="keep the N newest backups (or full backups with --full)",
                              description="Keep the N newest complete backups (with --full: the N newest full backups "
                                          "and every delta backup built on them); delete the older ones and the WAL "
                                          "only they needed.")
    retain.add_argument("count", type=int, metavar="N", help="how many backups (full backups with --full) to keep")
    retain.add_argument("--full", action="store_true", help="count full backups only; their deltas are kept with them")
    before = modes.add_parser("before", parents=[opts], help="delete the backups older than a backup or a time",
                              description="Delete the backups older than backup NAME, or not needed to restore to TIME "
                                          "or later (the newest backup that ended by TIME is kept), and the WAL only "
                                          "they needed.")
    before.add_argument("target", metavar="NAME|TIME",
                        help="a backup name (kept) or a time with a time zone, e.g. '2026-11-24 00:00:00+00'")
    garbage = modes.add_parser("garbage", parents=[opts], help="delete failed backups and WAL older than every backup",
                               description="Delete incomplete backups (objects without a sentinel: a failed or killed "
                                           "backup-push) older than --min-age, and the WAL files older than the start "
                                           "of the oldest complete backup along its timeline history.")
    garbage.add_argument("--min-age", default="24h", metavar="AGE",
                         help="leave incomplete backups written to more recently than this alone, as a backup-push may "
                              "still be running (default 24h; units s, m, h, d, w)")
    mark = sub.add_parser("backup-mark", parents=[common], help="mark a backup permanent (never deleted) or not",
                          description="Mark a complete backup permanent: delete retain/before never delete it, nor "
                                      "what it needs. --impermanent takes the mark away. Exits 2 when there is "
                                      "no such backup.")
    mark.add_argument("name", metavar="NAME|LATEST", help="backup name (see backup-list) or LATEST")
    which = mark.add_mutually_exclusive_group(required=True)
    which.add_argument("--permanent", action="store_true", help="keep this backup whatever the retention policy says")
    which.add_argument("--impermanent", action="store_true", help="let retention delete it again")
    mark.add_argument("--json", action="store_true", help="print the result as JSON")
    verify = sub.add_parser(
        "wal-verify", parents=[common], help="check the WAL archive for gaps; show the PITR window",
        description="Check that every WAL segment from the start of the oldest complete backup to the newest archived "
                    "segment is in the repository, following timeline switches as the history files describe them, "
                    "and that every backup's own WAL is there. Names every missing segment and prints the "
                    "point-in-time recovery window. Exits 4 when something is missing.")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")


def cmd_delete(args):
    import json
    from . import retention
    if not args.delete_mode:
        return _fail("delete needs a mode: retain N, before NAME|TIME or garbage (see walrus delete --help)", EXIT_USAGE)
    result = retention.delete(_settings(args), mode=args.delete_mode, count=getattr(args, "count", None),
                              full=getattr(args, "full", False), before=getattr(args, "target", None),
                              min_age=getattr(args, "min_age", retention.DEFAULT_MIN_AGE), confirm=args.confirm)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(retention.render(result)) + "\n")
    return 0


def cmd_backup_mark(args):
    import json
    from . import retention
    result = _on_named_backup(retention.mark, _settings(args), args.name, permanent=args.permanent)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("backup %s is %s%s\n" % (result["name"], "permanent" if result["permanent"] else "not permanent",
                                                  "" if result["changed"] else " (unchanged)"))
    return 0


def cmd_wal_verify(args):
    import json
    from . import walverify
    from .errors import EXIT_INTEGRITY
    result = walverify.verify(_settings(args))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(walverify.render(result)) + "\n")
    return 0 if result["ok"] else EXIT_INTEGRITY


def _settings(args):
    explicit = {}
    for name in ("repo", "config", "compression", "upload_concurrency", "lookahead", "prefetch",
                 "max_read_rate", "max_upload_rate", "max_download_rate"):
        explicit[name] = getattr(args, name, None)
    return config.load(explicit)


def cmd_wal_push(args):
    from . import wal
    wal.push(_settings(args), args.path)
    return 0


def cmd_wal_fetch(args):
    from . import wal
    try:
        wal.fetch(_settings(args), args.name, args.dest)
    except NotFound:
        return 1  # quiet: PostgreSQL asks for files that do not exist as a matter of course
    except WalrusError as exc:
        if wal.recovery_kind(args.dest) != "archive":
            raise  # a standby asks again later; a manual call gets the usual code
        # PostgreSQL takes any code below 126 for "no such file", ends recovery and promotes:
        # without this WAL file, and everything after it. 126 makes it stop instead.
        return _fail("%s -- stopping recovery here rather than ending it early without %s: fix the repository "
                     "and start the server again, recovery resumes" % (exc, args.name), EXIT_STOP_RECOVERY)
    return 0


def cmd_backup_push(args):
    return _observed(args, "backup-push", _backup_push)


def _backup_push(args, progress):
    import json
    from . import backup
    result = backup.push(_settings(args), args.datadir, name=args.name, fast=not args.spread_checkpoint,
                         jobs=args.jobs, part_mb=args.part_size_mb, archive_timeout=args.archive_timeout,
                         conninfo=_conninfo(args), delta_backup=args.delta, delta_max_chain=args.delta_max_chain,
                         progress=progress)
    if result.get("note"):
        _note(args, "backup-push", result["note"])
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("%s backup %s: %d files, %d bytes (%d stored) in %d parts, WAL %s to %s, %.1f s%s\n" % (
            result.get("kind", "full"), result["name"], result["files"], result["raw_size"], result["stored_size"],
            result["parts"], result["start_wal"], result["stop_wal"], result["seconds"],
            ", on top of %s" % result["base"] if result.get("base") else ""))
    return 0, result


def cmd_backup_list(args):
    import json
    from . import backups
    from .storage import open_storage
    storage = open_storage(_settings(args))
    problems = []
    found = backups.list_backups(storage, problems)
    for problem in problems:
        sys.stderr.write("walrus: warning: %s\n" % problem)
    if args.json:
        sys.stdout.write(json.dumps(found, indent=2, sort_keys=True) + "\n")
    elif not found:
        sys.stdout.write("no complete backup in %s\n" % storage.describe())
    else:
        sys.stdout.write("\n".join(backups.render(found)) + "\n")
    return 0


def cmd_backup_fetch(args):
    return _observed(args, "backup-fetch", _backup_fetch)


def _backup_fetch(args, progress):
    import json
    from . import restore
    spaces = {}
    for item in args.tablespace_map:
        oid, sep, path = item.partition("=")
        if not sep or not oid.strip().isdigit() or not path:
            raise UsageError("--tablespace-map %r: use OID=DIR" % item)
        spaces[oid.strip()] = path
    recovery = _recovery(args)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    server_settings = _pairs(args.server_settings, "--set")
    if args.no_archiving:
        server_settings["archive_mode"] = "off"
    settings = _settings(args)
    if args.primary_conninfo or args.primary_slot_name or args.primary_passfile or args.primary_password_stdin:
        from . import standby
        if not args.standby:
            raise UsageError("--primary-conninfo, --primary-slot-name and --primary-passfile need --standby")
        standby.checked_server_settings(server_settings)
        password = settings.primary_password
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
    result = _on_named_backup(restore.fetch_backup, settings, args.name, args.target, tablespace_map=spaces,
                              jobs=args.jobs, recovery=recovery, standby=args.standby, overwrite=args.overwrite,
                              server_settings=server_settings, progress=progress)
    if args.start and args.standby:
        from . import standby
        result["server"] = standby.start(result["target"], args.pg_bindir, timeout=args.wait_timeout)
    elif args.start:
        result["server"] = server.start_and_recover(result["target"], args.pg_bindir, timeout=args.wait_timeout)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
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


def cmd_check(args):
    import json
    from . import check
    result = check.run(_settings(args), args.pgdata or os.environ.get("PGDATA"))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(check.render(result)) + "\n")
    return result.get("exit_code", 0)


def _pairs(items, flag):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError("%s %r: use NAME=VALUE" % (flag, item))
        out[key.strip()] = value
    return out


def cmd_drill(args):
    import json
    from . import drill
    checks = drill.parse_checks(args.check, args.checks_file)
    report = drill.run(_settings(args), args.name, bin_dir=args.pg_bindir, scratch=args.scratch, port=args.port,
                       recovery=_recovery(args), canary=args.canary, user_checks=checks, amcheck=args.amcheck,
                       server_settings=_pairs(args.server_settings, "--set"), keep=args.keep, jobs=args.jobs,
                       start_timeout=args.timeout)
    if args.json:  # with the Markdown summary, for the restore_drill role to save on the controller
        sys.stdout.write(json.dumps(dict(report, markdown=drill.render_markdown(report)), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(drill.render_markdown(report))
        sys.stdout.write("report: %s\n" % report["report_key"])
    if not report["passed"]:
        failed = [c["name"] for c in report["checks"] if c["ok"] is False]
        return _fail("restore drill %s FAILED: %s (report %s)" % (report["id"], ", ".join(failed), report["report_key"]),
                     EXIT_DRILL_FAILED)
    return 0


def cmd_drill_canary(args):
    import json
    from . import drill
    result = drill.write_canary(_settings(args), _conninfo(args), timeout=args.timeout)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("canary %(token)s written at %(written_at)s, archived in %(wal)s\n" % result)
    return 0


COMMANDS = {"wal-push": cmd_wal_push, "wal-fetch": cmd_wal_fetch, "check": cmd_check, "backup-push": cmd_backup_push,
            "backup-list": cmd_backup_list, "backup-fetch": cmd_backup_fetch, "drill": cmd_drill,
            "drill-canary": cmd_drill_canary}


def cmd_drill_list(args):
    import json
    from . import drills
    from .storage import open_storage
    storage = open_storage(_settings(args))
    problems = []
    reports = drills.list_reports(storage, problems)
    for problem in problems:
        sys.stderr.write("walrus: warning: %s\n" % problem)
    if args.html:
        from .localfile import write_atomic
        write_atomic(args.html, drills.render_html(reports, storage.describe()))
    if args.json:
        sys.stdout.write(json.dumps(reports, indent=2, sort_keys=True) + "\n")
    elif not reports:
        sys.stdout.write("no drill report in %s\n" % storage.describe())
    else:
        sys.stdout.write("\n".join(drills.render(reports)) + "\n")
    if args.html:
        sys.stderr.write("walrus: drill history page written to %s\n" % os.path.abspath(args.html))
    return 0


def _status(args):
    from . import status
    return status.collect(_settings(args), conninfo=_conninfo(args), pgdata=args.pgdata or os.environ.get("PGDATA"),
                          use_db=args.use_db, **_given(args, "max_backup_age", "max_archive_lag", "max_drill_age"))


def _given(args, *names):
    """The flags that were given; the others keep the engine's defaults (the parser does not
    import status.py for them: building it is on every wal-fetch that is not prefetched)."""
    return dict((n, getattr(args, n)) for n in names if getattr(args, n) is not None)


def cmd_status(args):
    import json
    from . import status
    from .errors import EXIT_ATTENTION
    result = _status(args)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(status.render(result)) + "\n")
    return 0 if result["ok"] else EXIT_ATTENTION


def cmd_metrics(args):
    from . import status
    text = status.render_metrics(_status(args))
    if args.textfile:
        from .localfile import write_atomic
        write_atomic(args.textfile, text)
    else:
        sys.stdout.write(text)
    return 0


COMMANDS.update({"drill-list": cmd_drill_list, "status": cmd_status, "metrics": cmd_metrics})


COMMANDS.update({"delete": cmd_delete, "backup-mark": cmd_backup_mark, "wal-verify": cmd_wal_verify})


def cmd_backup_verify(args):
    import json
    from . import verify
    if args.jobs < 1:
        return _fail("--jobs must be at least 1", EXIT_USAGE)
    result = _on_named_backup(verify.verify_backup, _settings(args), args.name, jobs=args.jobs, chain=args.chain)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\n".join(verify.render(result)) + "\n")
    if not result["ok"]:
        raise verify.failure(result)
    return 0


COMMANDS["backup-verify"] = cmd_backup_verify


def cmd_standby_status(args):
    import json
    from . import standby
    conninfo = dict(_conninfo(args), connect_timeout=10)
    state = standby.wait(conninfo, streaming=args.wait_streaming is not None,
                         timeout=args.wait_streaming if args.wait_streaming is not None else 0)
    if args.json:
        sys.stdout.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
    else:
        receiver = state["receiver"] or {}
        sys.stdout.write("standby: %s%s; received %s, replayed %s (last transaction %s, replay delay %.1f s)\n" % (
            state["source"], " from %s:%s slot %s" % (receiver.get("sender_host"), receiver.get("sender_port"),
                                                      receiver.get("slot_name") or "-") if receiver else "",
            state["receive_lsn"] or "-", state["replay_lsn"] or "-", state["last_replay_time"] or "-",
            state["replay_delay_seconds"]))
    return 0


def _add_standby_parser(sub, common):
    status = sub.add_parser(
        "standby-status", parents=[common], help="is this standby streaming or replaying the archive, and how far?",
        description="Connect to a hot standby and report where its WAL comes from (streaming from the primary, or "
                    "the archive), what it has received and replayed, and how old the last replayed transaction is "
                    "while WAL waits to be replayed. Exits 2 when the server is not a standby (promoted). The lag "
                    "in bytes and seconds as the primary sees it is in pg_stat_replication (the "
                    "walrus.postgres.replication module reports it).")
    _add_connection_flags(status, "any user")
    status.add_argument("--wait-streaming", type=int, metavar="SECONDS",
                        help="wait up to SECONDS until the standby streams from its primary; exit 3 if it does not")
    status.add_argument("--json", action="store_true", help="print the result as JSON")


COMMANDS["standby-status"] = cmd_standby_status


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
        return COMMANDS[args.command](args)
    except WalrusError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (e.g. `walrus check --json | head`); nothing left to say.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
