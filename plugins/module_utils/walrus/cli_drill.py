# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus drill`, `drill-canary` (drill.py) and `drill-list` (drills.py)."""
import os
import sys

from .cli_common import (add_connection_flags, add_rate_flags, add_target_flags, conninfo, fail, listed, pairs, recovery,
                         settings, write_json)
from .errors import EXIT_DRILL_FAILED


def add_drill(sub, common):
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
    add_target_flags(drill)
    drill.add_argument("--json", action="store_true", help="print the report as JSON")
    add_rate_flags(drill, "download")
    drill.set_defaults(run=cmd_drill)


def add_drill_canary(sub, common):
    canary = sub.add_parser(
        "drill-canary", parents=[common], help="write a canary row on the primary and wait until it is archived",
        description="Insert a row with a fresh token into public.walrus_drill_canary on the primary, switch WAL, and "
                    "wait until the segment holding it is in the repository. Prints the token for `walrus drill --canary`.")
    add_connection_flags(canary, "needs CREATE on schema public (first run) and INSERT")
    canary.add_argument("--timeout", type=int, default=300, help="seconds to wait for the segment (default 300)")
    canary.add_argument("--json", action="store_true", help="print the result as JSON")
    canary.set_defaults(run=cmd_drill_canary)


def add_drill_list(sub, common):
    dlist = sub.add_parser(
        "drill-list", parents=[common], help="list the restore drill reports in the repository",
        description="List the restore drill reports stored under drills/ in the repository, oldest first: id, "
                    "backup, result, RTO, RPO and the checks that failed. --html writes one self-contained HTML page "
                    "with a chart of RTO and RPO over time and each drill's checks.")
    dlist.add_argument("--json", action="store_true", help="print the reports as JSON")
    dlist.add_argument("--html", metavar="FILE", help="also write the drill history page to FILE (atomically)")
    dlist.set_defaults(run=cmd_drill_list)


def cmd_drill(args):
    from . import drill
    checks = drill.parse_checks(args.check, args.checks_file)
    report = drill.run(settings(args), args.name, bin_dir=args.pg_bindir, scratch=args.scratch, port=args.port,
                       recovery=recovery(args), canary=args.canary, user_checks=checks, amcheck=args.amcheck,
                       server_settings=pairs(args.server_settings, "--set"), keep=args.keep, jobs=args.jobs,
                       start_timeout=args.timeout)
    if args.json:  # with the Markdown summary, for the restore_drill role to save on the controller
        write_json(dict(report, markdown=drill.render_markdown(report)))
    else:
        sys.stdout.write(drill.render_markdown(report))
        sys.stdout.write("report: %s\n" % report["report_key"])
    if not report["passed"]:
        failed = [c["name"] for c in report["checks"] if c["ok"] is False]
        return fail("restore drill %s FAILED: %s (report %s)" % (report["id"], ", ".join(failed), report["report_key"]),
                    EXIT_DRILL_FAILED)
    return 0


def cmd_drill_canary(args):
    from . import drill
    result = drill.write_canary(settings(args), conninfo(args), timeout=args.timeout)
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("canary %(token)s written at %(written_at)s, archived in %(wal)s\n" % result)
    return 0


def cmd_drill_list(args):
    from . import drills
    storage, reports = listed(args, drills.list_reports)
    if args.html:
        from .localfile import write_atomic
        write_atomic(args.html, drills.render_html(reports, storage.describe()))
    if args.json:
        write_json(reports)
    elif not reports:
        sys.stdout.write("no drill report in %s\n" % storage.describe())
    else:
        sys.stdout.write("\n".join(drills.render(reports)) + "\n")
    if args.html:
        sys.stderr.write("walrus: drill history page written to %s\n" % os.path.abspath(args.html))
    return 0
