# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL connections (psycopg2) and the differences between major versions, in one place.

Connection settings are libpq's: the usual PG* environment variables (PGHOST, PGPORT,
PGUSER, PGDATABASE, PGPASSFILE, ...) plus whatever the caller passes explicitly.
"""
import re

from .errors import StorageError, UsageError

MIN_VERSION_NUM = 130000  # PostgreSQL 13


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
        if self.version_num < MIN_VERSION_NUM:
            raise UsageError("PostgreSQL %d.%d is not supported: walrus needs 13 or later"
                             % (self.version_num // 10000, self.version_num % 10000))

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


def parse_lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def label_field(label, field):
    """A field of backup_label, e.g. 'START TIMELINE'."""
    match = re.search(r"^%s: (.*)$" % re.escape(field), label, re.M)
    return match.group(1).strip() if match else None
