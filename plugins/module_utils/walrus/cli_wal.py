# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus wal-push`, `wal-fetch` (wal.py) when their fast path in cli.py did not serve them,
and `wal-verify` (walverify.py)."""
import sys

from .cli_common import fail, settings, write_json
from .errors import EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_STOP_RECOVERY, NotFound, WalrusError


def add_wal_push(sub, common):
    push = sub.add_parser("wal-push", parents=[common], help="archive one WAL file (archive_command = 'walrus wal-push %%p')",
                          description="Store a WAL file durably in the repository; a background pusher stores the next .ready files ahead.")
    push.add_argument("path", help="the WAL file, as PostgreSQL passes it in %%p")
    push.add_argument("--compression", choices=("lz4", "zstd", "none"), help="compression for new objects (default lz4)")
    push.add_argument("--lookahead", type=int, help="how many other .ready files a background pusher stores ahead (default 16, 0 = off)")
    push.set_defaults(run=cmd_wal_push)


def add_wal_fetch(sub, common):
    fetch = sub.add_parser("wal-fetch", parents=[common], help="restore one WAL file (restore_command = 'walrus wal-fetch %%f %%p')",
                           description="Write an archived WAL file to DEST. Exits 1, quietly, when it is not archived.")
    fetch.add_argument("name", help="the WAL file name, as PostgreSQL passes it in %%f")
    fetch.add_argument("dest", help="where to write it, as PostgreSQL passes it in %%p")
    fetch.add_argument("--prefetch", type=int, help="segments to fetch ahead in the background (default 8, 0 = off)")
    fetch.set_defaults(run=cmd_wal_fetch)


def add_wal_verify(sub, common):
    verify = sub.add_parser(
        "wal-verify", parents=[common], help="check the WAL archive for gaps; show the PITR window",
        description="Check that every WAL segment from the start of the oldest complete backup to the newest archived "
                    "segment is in the repository, following timeline switches as the history files describe them, "
                    "and that every backup's own WAL is there. Names every missing segment and prints the "
                    "point-in-time recovery window. Exits 4 when something is missing.")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(run=cmd_wal_verify)


def cmd_wal_push(args):
    from . import wal
    wal.push(settings(args), args.path)
    return 0


def cmd_wal_fetch(args):
    from . import wal
    try:
        wal.fetch(settings(args), args.name, args.dest)
    except NotFound:
        return EXIT_NOT_FOUND  # quiet: PostgreSQL asks for files that do not exist as a matter of course
    except WalrusError as exc:
        if wal.recovery_kind(args.dest) != "archive":
            raise  # a standby asks again later; a manual call gets the usual code
        # PostgreSQL takes any code below 126 for "no such file", ends recovery and promotes:
        # without this WAL file, and everything after it. 126 makes it stop instead.
        return fail("%s -- stopping recovery here rather than ending it early without %s: fix the repository "
                    "and start the server again, recovery resumes" % (exc, args.name), EXIT_STOP_RECOVERY)
    return 0


def cmd_wal_verify(args):
    from . import walverify
    result = walverify.verify(settings(args))
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("\n".join(walverify.render(result)) + "\n")
    return 0 if result["ok"] else EXIT_INTEGRITY
