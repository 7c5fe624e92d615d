# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL connections (psycopg2) and the differences between major versions, in one place.

Connection settings are libpq's: the usual PG* environment variables (PGHOST, PGPORT,
PGUSER, PGDATABASE, PGPASSFILE, ...) plus whatever the caller passes explicitly.
"""
import re

from .errors import StorageError, UsageError

# The majors walrus supports, each tested end to end (tests/system/test_versions.py; the README's
# support table). 13 and older are refused with a clear message: 13 is past its end of life, and
# it lacks what walrus relies on (pg_amcheck for drills, pg_get_wal_replay_pause_state).
MIN_MAJOR = 14
TESTED_MAJORS = (14, 15, 16, 17, 18)
MIN_VERSION_NUM = MIN_MAJOR * 10000


class PgError(StorageError):
    """PostgreSQL refused or failed (connection, permissions, backup functions)."""


def connect(**params):
    try:
        import psycopg2
    except ImportError:
        raise UsageError("talking to PostgreSQL needs the Python package psycopg2 (pip install psycopg2-binary)")
    params = dict((k, v) for k, v in params.items() if v not in (None, ""))
    params.setdefault("dbname", "postgres")
    params.setdefault("application_name", "walrus")
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        raise PgError("cannot connect to PostgreSQL (%s): %s" % (
            ", ".join("%s=%s" % kv for kv in sorted(params.items()) if kv[0] != "password"), str(exc).strip()))
    conn.autocommit = True
    return Server(conn)


class Server(object):
    def __init__(self, conn):
        self.conn = conn
        self.version_num = int(self.value("show server_version_num"))
        try:
            check_supported(self.major, "the server", self.version)
        except UsageError:
            self.close()
            raise

    @property
    def version(self):
        """'18.6', '14.23'"""
        return "%d.%d" % (self.version_num // 10000, self.version_num % 10000)

    def value(self, sql, args=None):
        row = self.row(sql, args)
        return row[0] if row else None

    def execute(self, sql, args=None):
        """A statement that returns no rows."""
        self._execute(sql, args, lambda cur: None)

    def row(self, sql, args=None):
        return self._execute(sql, args, lambda cur: cur.fetchone())

    def rows(self, sql, args=None):
        return self._execute(sql, args, lambda cur: cur.fetchall())

    def _execute(self, sql, args, fetch):
        import psycopg2
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return fetch(cur)
        except psycopg2.Error as exc:
            raise PgError("PostgreSQL: %s" % str(exc).strip())

    @property
    def major(self):
        return self.version_num // 10000

    def system_identifier(self):
        return int(self.value("select system_identifier from pg_control_system()"))

    def wal_segment_size(self):
        return int(self.value("select setting::bigint from pg_settings where name = 'wal_segment_size'"))

    def in_recovery(self):
        return bool(self.value("select pg_is_in_recovery()"))

    def data_directory(self):
        return self.value("show data_directory")

    def tablespaces(self):
        return [{"oid": str(oid), "name": name, "location": location} for oid, name, location in self.rows(
            "select oid, spcname, pg_tablespace_location(oid) from pg_tablespace "
            "where spcname not in ('pg_default', 'pg_global') order by oid")]

    def backup_features(self):
        """What this server offers that matters to backups, for `walrus status`. PostgreSQL 17's
        incremental backups (summarize_wal, pg_basebackup --incremental) are reported, not used:
        walrus's deltas compare pages with the base's page hashes and need no WAL summaries."""
        settings = dict(self.rows("select name, setting from pg_settings where name in ('data_checksums', 'summarize_wal')"))
        if self.major < 17:
            incremental = "not available (PostgreSQL 17 or later)"
        else:
            incremental = "available, summarize_wal %s (walrus does not use it)" % settings.get("summarize_wal", "off")
        return {"data_checksums": settings.get("data_checksums") == "on", "incremental_backup": incremental}

    def start_backup(self, label, fast):
        """Start a non-exclusive backup; returns the start LSN as text."""
        if self.version_num >= 150000:
            return self.value("select pg_backup_start(%s, %s)::text", (label, fast))
        return self.value("select pg_start_backup(%s, %s, false)::text", (label, fast))

    def stop_backup(self):
        """Stop it; returns (stop LSN text, backup_label text, tablespace_map text). walrus waits
        for the stop segment in the repository itself, so PostgreSQL is not asked to wait."""
        if self.version_num >= 150000:
            row = self.row("select lsn::text, labelfile, spcmapfile from pg_backup_stop(false)")
        else:
            row = self.row("select lsn::text, labelfile, spcmapfile from pg_stop_backup(false, false)")
        return row[0], row[1] or "", row[2] or ""

    def close(self):
        try:
            self.conn.close()
        except Exception:  # closing a broken connection may raise anything; nothing to do about it
            pass


def check_supported(major, what, version=None):
    """Refuse a PostgreSQL major older than MIN_MAJOR (None: not known, accepted)."""
    if major is not None and major < MIN_MAJOR:
        raise UsageError("%s is PostgreSQL %s, which walrus does not support: walrus needs PostgreSQL %d or later "
                         "(tested with %s)" % (what, version or major, MIN_MAJOR, ", ".join(map(str, TESTED_MAJORS))))


def parse_lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def label_field(label, field):
    """A field of backup_label, e.g. 'START TIMELINE'."""
    match = re.search(r"^%s: (.*)$" % re.escape(field), label, re.M)
    return match.group(1).strip() if match else None
