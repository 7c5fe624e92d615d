# SPDX-License-Identifier: GPL-3.0-or-later
"""`walrus status`, `metrics` (status.py), `standby-status` (standby.py) and `check` (check.py):
how things stand, read-only."""
import os
import sys

from .cli_common import add_connection_flags, conninfo, settings, write_json
from .errors import EXIT_ATTENTION


def add_status_and_metrics(sub, common):
    """status and metrics: the same facts and thresholds, shown or written for Prometheus."""
    import argparse
    facts = argparse.ArgumentParser(add_help=False, parents=[common])
    facts.add_argument("--pgdata", help="the cluster's data directory: its system identifier must match the "
                                        "repository's; .ready files are counted (PGDATA)")
    add_connection_flags(facts, "needs to read pg_stat_archiver (any user)")
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
    stat.set_defaults(run=cmd_status)
    metrics = sub.add_parser(
        "metrics", parents=[facts], help="the status facts as Prometheus metrics (node_exporter textfile)",
        description="Write the facts of walrus status as Prometheus gauges to a node_exporter textfile-collector "
                    "file (written to a temporary file in the same directory, then renamed), or to stdout. "
                    "Exits 0 once written, whatever the facts say: alerting is Prometheus's job "
                    "(docs/monitoring.md).")
    metrics.add_argument("--textfile", metavar="PATH",
                         help="file to write, e.g. /var/lib/prometheus/node-exporter/walrus.prom (default: stdout)")
    metrics.set_defaults(run=cmd_metrics)


def add_standby_status(sub, common):
    status = sub.add_parser(
        "standby-status", parents=[common], help="is this standby streaming or replaying the archive, and how far?",
        description="Connect to a hot standby and report where its WAL comes from (streaming from the primary, or "
                    "the archive), what it has received and replayed, and how old the last replayed transaction is "
                    "while WAL waits to be replayed. Exits 2 when the server is not a standby (promoted). The lag "
                    "in bytes and seconds as the primary sees it is in pg_stat_replication (the "
                    "walrus.postgres.replication module reports it).")
    add_connection_flags(status, "any user")
    status.add_argument("--wait-streaming", type=int, metavar="SECONDS",
                        help="wait up to SECONDS until the standby streams from its primary; exit 3 if it does not")
    status.add_argument("--json", action="store_true", help="print the result as JSON")
    status.set_defaults(run=cmd_standby_status)


def add_check(sub, common):
    check = sub.add_parser("check", parents=[common], help="check the repository: reachable, credentials, identity",
                           description="Check that the repository is reachable with the configured credentials and, "
                                       "given a data directory, that it belongs to that cluster.")
    check.add_argument("--pgdata", help="data directory whose system identifier must match the repository (PGDATA)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(run=cmd_check)


def _status(args):
    from . import status
    return status.collect(settings(args), conninfo=conninfo(args), pgdata=args.pgdata or os.environ.get("PGDATA"),
                          use_db=args.use_db, **_given(args, "max_backup_age", "max_archive_lag", "max_drill_age"))


def _given(args, *names):
    """The flags that were given; the others keep the engine's defaults (the parser does not
    import status.py for them: building it is on every wal-fetch that is not prefetched)."""
    return dict((n, getattr(args, n)) for n in names if getattr(args, n) is not None)


def cmd_status(args):
    from . import status
    result = _status(args)
    if args.json:
        write_json(result)
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


def cmd_standby_status(args):
    from . import standby
    state = standby.wait(dict(conninfo(args), connect_timeout=10), streaming=args.wait_streaming is not None,
                         timeout=args.wait_streaming if args.wait_streaming is not None else 0)
    if args.json:
        write_json(state)
    else:
        receiver = state["receiver"] or {}
        sys.stdout.write("standby: %s%s; received %s, replayed %s (last transaction %s, replay delay %.1f s)\n" % (
            state["source"], " from %s:%s slot %s" % (receiver.get("sender_host"), receiver.get("sender_port"),
                                                      receiver.get("slot_name") or "-") if receiver else "",
            state["receive_lsn"] or "-", state["replay_lsn"] or "-", state["last_replay_time"] or "-",
            state["replay_delay_seconds"]))
    return 0


def cmd_check(args):
    from . import check
    result = check.run(settings(args), args.pgdata or os.environ.get("PGDATA"))
    if args.json:
        write_json(result)
    else:
        sys.stdout.write("\n".join(check.render(result)) + "\n")
    return result.get("exit_code", 0)
