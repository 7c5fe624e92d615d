# SPDX-License-Identifier: GPL-3.0-or-later
"""What the `walrus` subcommands share: settings from their flags, the flag groups several of
them take, error and JSON output, and the progress/JSON-log wrapper of the long commands.
Imported only once the fast path (cli.py) has passed, like every cli_*.py."""
import sys

from . import config
from .errors import NotFound, UsageError, WalrusError


def fail(message, code):
    sys.stderr.write("walrus: error: %s\n" % message)
    return code


def write_json(result):
    """A command's --json output on stdout."""
    import json
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")


def on_named_backup(work, *args, **kwargs):
    """work(*args, **kwargs) for a command given a backup name: when there is no such backup the
    caller named the wrong one, a usage error (exit 2), not wal-fetch's quiet "not archived" (1)."""
    try:
        return work(*args, **kwargs)
    except NotFound as exc:
        raise UsageError(str(exc))


def listed(args, lister):
    """(storage, items) of a repository listing; lister(storage, problems) reports what it
    skipped into problems, which become warnings on stderr."""
    from .storage import open_storage
    storage = open_storage(settings(args))
    problems = []
    items = lister(storage, problems)
    for problem in problems:
        sys.stderr.write("walrus: warning: %s\n" % problem)
    return storage, items


def settings(args):
    explicit = {}
    for name in ("repo", "config", "compression", "upload_concurrency", "lookahead", "prefetch",
                 "max_read_rate", "max_upload_rate", "max_download_rate"):
        explicit[name] = getattr(args, name, None)
    return config.load(explicit)


def pairs(items, flag):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError("%s %r: use NAME=VALUE" % (flag, item))
        out[key.strip()] = value
    return out


def add_rate_flags(parser, *kinds):
    """--max-read-rate / --max-upload-rate / --max-download-rate (ratelimit.py)."""
    what = {"read": "reading the data directory", "upload": "sending the backup's parts to the repository",
            "download": "receiving backup parts from the repository"}
    for kind in kinds:
        parser.add_argument("--max-%s-rate" % kind, type=float, dest="max_%s_rate" % kind, metavar="MB/S",
                            help="at most this many MB/s (10^6 bytes) %s, all parallel workers together "
                                 "(WALRUS_MAX_%s_RATE; default no limit)" % (what[kind], kind.upper()))


def add_connection_flags(parser, user_needs):
    parser.add_argument("--pghost", help="PostgreSQL host or socket directory (PGHOST)")
    parser.add_argument("--pgport", type=int, help="PostgreSQL port (PGPORT)")
    parser.add_argument("--pguser", help="PostgreSQL user (PGUSER); %s" % user_needs)
    parser.add_argument("--dbname", help="database to connect to (default postgres)")


def conninfo(args):
    return {"host": args.pghost, "port": args.pgport, "user": args.pguser, "dbname": args.dbname}


def add_target_flags(parser):
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


def recovery(args):
    return {"time": args.target_time, "lsn": args.target_lsn, "xid": args.target_xid, "name": args.target_name,
            "immediate": args.target_immediate, "timeline": args.target_timeline, "action": args.target_action}


def add_output_flags(parser):
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


def log_event(args, level, event, **fields):
    """One JSON line on stderr (--log-format json); info lines are silenced by --quiet."""
    import json
    if level != "error" and args.quiet:
        return
    line = dict(fields, level=level, event=event)
    sys.stderr.write(json.dumps(line, sort_keys=True, default=str) + "\n")
    sys.stderr.flush()


def note(args, command, message):
    if args.log_format == "json":
        log_event(args, "warning", command + ".note", message=message)
    elif not args.quiet:
        sys.stderr.write("walrus: note: %s\n" % message)


def observed(args, command, work):
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
        log_event(args, "error", command + ".error", message=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    except BaseException:
        progress.abandon()
        raise
    if args.log_format == "json" and result is not None:
        log_event(args, "info", command + ".done", **result)
    return code
