# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus delete` and `backup-mark` (retention.py)."""
import sys

from .cli_common import fail, on_named_backup, settings, write_json
from .errors import EXIT_USAGE


def add_delete(sub, common):
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
    delete.set_defaults(run=cmd_delete)
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


def add_backup_mark(sub, common):
    mark = sub.add_parser("backup-mark", parents=[common], help="mark a backup permanent (never deleted) or not",
                          description="Mark a complete backup permanent: delete retain/before never delete it, nor "
                                      "what it needs. --impermanent takes the mark away. Exits 2 when there is "
                                      "no such backup.")
    mark.add_argument("name", metavar="NAME|LATEST", help="backup name (see backup-list) or LATEST")
    which = mark.add_mutually_exclusive_group(required=True)
    which.add_argument("--permanent", action="store_true", help="keep this backup whatever the retention policy says")
    which.add_argument("--impermanent", action="store_true", help="let retention delete it again")
    mark.add_argument("--json", action="store_true", help="print the result as JSON")
    mark.set_defaults(run=cmd_backup_mark)


def cmd_delete(args):
    from . import retention
    if not args.delete_mode:
        return fail("delete needs a mode: retain N, before NAME|TIME or garbage (see walrus delete --help)", EXIT_USAGE)
    result = retention.delete(settings(args), mode=args.delete_mode, count=getattr(args, "count", None),
                              full=getattr(args, "full", False), before=getattr(args, "target", None),
                              min_age=getattr(args, "min_age", retention.DEFAULT_MIN_AGE), confirm=args.confirm)
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("\n".join(retention.render(result)) + "\n")
    return 0


def cmd_backup_mark(args):
    from . import retention
    result = on_named_backup(retention.mark, settings(args), args.name, permanent=args.permanent)
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("backup %s is %s%s\n" % (result["name"], "permanent" if result["permanent"] else "not permanent",
                                                  "" if result["changed"] else " (unchanged)"))
    return 0
