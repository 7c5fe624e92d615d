# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus backup-push` (backup.py), `backup-list` (backups.py) and `backup-verify` (verify.py)."""
import sys

from .cli_common import (add_connection_flags, add_output_flags, add_rate_flags, conninfo, fail, listed, note, observed,
                         on_named_backup, settings, write_json)
from .errors import EXIT_USAGE


def add_backup_push(sub, common):
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
    add_connection_flags(bpush, "needs the right to run the backup functions")
    bpush.add_argument("--delta", action="store_true",
                       help="store only the pages changed since the newest backup of this cluster (a full "
                            "backup when there is none, or the chain would be too long)")
    bpush.add_argument("--delta-max-chain", type=int, default=6, metavar="N",
                       help="most delta steps after a full backup; one more makes a full backup (default 6)")
    bpush.add_argument("--json", action="store_true", help="print the result as JSON")
    add_rate_flags(bpush, "read", "upload")
    add_output_flags(bpush)
    bpush.set_defaults(run=cmd_backup_push)


def add_backup_list(sub, common):
    blist = sub.add_parser("backup-list", parents=[common], help="list the complete base backups in the repository",
                           description="List the complete base backups (those whose sentinel is stored), oldest first.")
    blist.add_argument("--json", action="store_true", help="print the backups' sentinels as JSON")
    blist.set_defaults(run=cmd_backup_list)


def add_backup_verify(sub, common):
    import argparse
    import textwrap
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
    add_rate_flags(bverify, "download")
    bverify.set_defaults(run=cmd_backup_verify)


def cmd_backup_push(args):
    return observed(args, "backup-push", _backup_push)


def _backup_push(args, progress):
    from . import backup
    result = backup.push(settings(args), args.datadir, name=args.name, fast=not args.spread_checkpoint,
                         jobs=args.jobs, part_mb=args.part_size_mb, archive_timeout=args.archive_timeout,
                         conninfo=conninfo(args), delta_backup=args.delta, delta_max_chain=args.delta_max_chain,
                         progress=progress)
    if result.get("note"):
        note(args, "backup-push", result["note"])
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("%s backup %s: %d files, %d bytes (%d stored) in %d parts, WAL %s to %s, %.1f s%s\n" % (
            result.get("kind", "full"), result["name"], result["files"], result["raw_size"], result["stored_size"],
            result["parts"], result["start_wal"], result["stop_wal"], result["seconds"],
            ", on top of %s" % result["base"] if result.get("base") else ""))
    return 0, result


def cmd_backup_list(args):
    from . import backups
    storage, found = listed(args, backups.list_backups)
    if args.json:
        write_json(found)
    elif not found:
        sys.stdout.write("no complete backup in %s\n" % storage.describe())
    else:
        sys.stdout.write("\n".join(backups.render(found)) + "\n")
    return 0


def cmd_backup_verify(args):
    from . import verify
    if args.jobs < 1:
        return fail("--jobs must be at least 1", EXIT_USAGE)
    result = on_named_backup(verify.verify_backup, settings(args), args.name, jobs=args.jobs, chain=args.chain)
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("\n".join(verify.render(result)) + "\n")
    if not result["ok"]:
        raise verify.failure(result)
    return 0
