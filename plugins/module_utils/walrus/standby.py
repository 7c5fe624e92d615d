# SPDX-License-Identifier: GPL-3.0-or-later
"""Hot standbys built from the archive: the recovery settings that let a restored data
directory stream from its primary, the primary's side (physical slot, replication role), and
how far behind a standby is.

The replication password never goes into argv, postgresql.auto.conf or a log. primary_conninfo
must not hold one; libpq finds it in a password file: the `passfile` named in primary_conninfo
(--primary-passfile), else PGPASSFILE in the server's environment, else ~/.pgpass of the
PostgreSQL OS user. When walrus is given the password (on standard input with
--primary-password-stdin, as WALRUS_PRIMARY_PASSWORD, or as `primary_password` in the 0600 config
file), it writes that password file itself, mode 0600.

Promotion is never done here: a standby stays one until someone runs pg_ctl promote (or
SELECT pg_promote()) on purpose.
"""
import os
import re
import time

from . import pg, server
from .errors import UsageError

SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Settings backup-fetch --set must not write for a standby: their own options do it properly.
OWN_OPTIONS = {"primary_conninfo": "--primary-conninfo", "primary_slot_name": "--primary-slot-name"}


def _parse_conninfo(text):
    try:
        from psycopg2.extensions import parse_dsn
    except ImportError:
        raise UsageError("checking primary_conninfo needs the Python package psycopg2 (pip install psycopg2-binary)")
    import psycopg2
    try:
        return parse_dsn(text)
    except psycopg2.Error as exc:
        raise UsageError("primary conninfo is not a libpq connection string: %s" % str(exc).strip())


def _conninfo_value(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def primary_settings(conninfo=None, slot_name=None, passfile=None, password=None):
    """[(name, value)] for the recovery block of a standby: primary_conninfo (without a password;
    with passfile=... when one is given) and primary_slot_name. `password` (from the settings,
    never argv) is written into `passfile`, which it then needs. Refuses what libpq or PostgreSQL
    would, and a password inside the conninfo."""
    out = []
    if slot_name is not None:
        if not SLOT_NAME.match(slot_name):
            raise UsageError("replication slot name %r: use 1 to 63 lower-case letters, digits and '_'" % slot_name)
        if not conninfo:
            raise UsageError("--primary-slot-name needs --primary-conninfo: a slot is used only while streaming")
    if not conninfo:
        if passfile or password:
            raise UsageError("a password file or primary password needs --primary-conninfo")
        return out
    params = _parse_conninfo(conninfo)
    if "password" in params:
        raise UsageError("primary conninfo holds a password: leave it out (it would be readable in "
                         "postgresql.auto.conf and in argv); give it in a password file (--primary-passfile, "
                         "PGPASSFILE or ~/.pgpass) or as WALRUS_PRIMARY_PASSWORD / primary_password in the config file")
    if "passfile" in params and passfile and params["passfile"] != passfile:
        raise UsageError("primary conninfo names passfile %s, --primary-passfile %s: give one" % (params["passfile"], passfile))
    passfile = passfile or params.get("passfile")
    if password is not None:
        if not passfile:
            raise UsageError("a primary password is configured: say where walrus may keep it with --primary-passfile "
                             "FILE (written mode 0600; primary_conninfo then names it)")
        write_passfile(passfile, params, password)
    elif passfile and not os.path.isfile(passfile):
        raise UsageError("password file %s does not exist (and no primary password is configured to write it)" % passfile)
    if passfile:
        if not os.path.isabs(passfile):
            raise UsageError("password file %r must be an absolute path (the server resolves it)" % passfile)
        params["passfile"] = passfile
    text = " ".join("%s=%s" % (key, _conninfo_value(value)) for key, value in params.items())
    if "\n" in text or "\r" in text:
        raise UsageError("primary conninfo must be one line")
    out.append(("primary_conninfo", text))
    if slot_name is not None:
        out.append(("primary_slot_name", slot_name))
    return out


def _pgpass_field(value):
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def write_passfile(path, params, password):
    """A one-line libpq password file for this conninfo's host, port and user (any database:
    physical replication connects to `replication`), written atomically, mode 0600."""
    if "\n" in password or "\r" in password:
        raise UsageError("the primary password must be one line")
    user = params.get("user") or os.environ.get("PGUSER")
    if not user:
        raise UsageError("primary conninfo needs user=... so that the password file names the replication user")
    line = ":".join(_pgpass_field(v) for v in (params.get("host") or "*", params.get("port") or "*", "*", user, password))
    tmp = "%s.walrus-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def checked_server_settings(server_settings):
    for key in server_settings or {}:
        if key in OWN_OPTIONS:
            raise UsageError("--set %s: use %s (it checks the value and keeps passwords out)" % (key, OWN_OPTIONS[key]))


# ---------------------------------------------------------------------------------------------
# The standby's side


def status(conn):
    """How a standby is doing, from its own views: {in_recovery, source (streaming or archive),
    receiver {...} or None, receive_lsn, replay_lsn, last_replay_time, replay_delay_seconds}.
    replay_delay_seconds is how old the last replayed transaction is while WAL is still waiting to
    be replayed, else 0 (an idle primary is not lag)."""
    row = conn.row("select pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                   "pg_last_xact_replay_timestamp()::text, "
                   "coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)::float8")
    in_recovery, receive_lsn, replay_lsn, last_time, age = row
    receiver = conn.row("select status, sender_host, sender_port, slot_name, flushed_lsn::text "
                        "from pg_stat_wal_receiver")
    streaming = bool(receiver and receiver[0] == "streaming")
    waiting = receive_lsn is not None and replay_lsn is not None and pg.parse_lsn(receive_lsn) > pg.parse_lsn(replay_lsn)
    return {
        "in_recovery": bool(in_recovery), "source": "streaming" if streaming else ("archive" if in_recovery else "none"),
        "receiver": dict(zip(("status", "sender_host", "sender_port", "slot_name", "flushed_lsn"), receiver))
        if receiver else None,
        "receive_lsn": receive_lsn, "replay_lsn": replay_lsn, "last_replay_time": last_time,
        "replay_delay_seconds": round(age, 3) if waiting else 0.0,
    }


def wait(conninfo, streaming=False, timeout=300, poll=0.5):
    """Connect to the standby (retrying while it starts) and return status(); with `streaming`,
    wait until its WAL receiver streams from the primary."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            conn = pg.connect(**conninfo)
        except pg.PgError as exc:
            conn, last = None, str(exc)
        if conn is not None:
            try:
                state = status(conn)
            finally:
                conn.close()
            if not state["in_recovery"]:
                raise UsageError("the server at %s is not a standby (not in recovery): was it promoted?"
                                 % _where(conninfo))
            if not streaming or state["source"] == "streaming":
                return state
            last = "WAL receiver: %s" % ((state["receiver"] or {}).get("status") or "not running")
        if time.monotonic() > deadline:
            raise server.ServerError("the standby at %s %s within %d s (%s)" % (
                _where(conninfo), "did not stream from its primary" if streaming else "did not accept connections",
                timeout, last))
        time.sleep(poll)


def _where(conninfo):
    return "%s:%s" % (conninfo.get("host") or "(PGHOST)", conninfo.get("port") or "(PGPORT)")


def start(datadir, bin_dir, timeout=300):
    """Start a restored standby and wait until it accepts read-only connections (consistent).
    Returns its status plus port, socket_dir, logfile and seconds."""
    started = time.monotonic()
    written = server.ensure_config_files(datadir)
    instance = server.start(datadir, bin_dir, timeout=timeout)
    state = wait({"host": instance.socket_dir, "port": instance.port, "connect_timeout": 10}, timeout=timeout)
    state.update(state="standby", port=instance.port, socket_dir=instance.socket_dir, logfile=instance.logfile,
                 config_files_written=written, seconds=round(time.monotonic() - started, 3))
    return state


# ---------------------------------------------------------------------------------------------
# The primary's side


def ensure_slot(conn, name, present=True, dry_run=False):
    """Create (or drop, with present=False) the physical replication slot `name`. Returns
    whether anything changed (with dry_run: would change, changing nothing). A slot reserves WAL at once (immediately_reserve), so the primary
    keeps what the standby has not received yet, even before it first connects."""
    if not SLOT_NAME.match(name or ""):
        raise UsageError("replication slot name %r: use 1 to 63 lower-case letters, digits and '_'" % (name,))
    row = conn.row("select slot_type, active from pg_replication_slots where slot_name = %s", (name,))
    if present:
        if row is not None:
            if row[0] != "physical":
                raise UsageError("replication slot %s exists but is a %s slot, not a physical one" % (name, row[0]))
            return False
        if not dry_run:
            conn.value("select slot_name from pg_create_physical_replication_slot(%s, true)", (name,))
        return True
    if row is None:
        return False
    if row[1]:
        raise UsageError("replication slot %s is in use by a standby: stop it (or let it go) before dropping the slot" % name)
    if not dry_run:
        conn.execute("select pg_drop_replication_slot(%s)", (name,))
    return True


def ensure_replication_role(conn, user, password=None, dry_run=False):
    """Make `user` a LOGIN REPLICATION role; set its password when given. The password is
    hashed here (SCRAM-SHA-256, as psql's \\password does), so neither the server log nor
    pg_stat_activity ever sees it in clear. Returns whether anything changed."""
    if not ROLE_NAME.match(user or ""):
        raise UsageError("replication user %r: use letters, digits and '_'" % (user,))
    from psycopg2.extensions import encrypt_password, quote_ident
    ident = quote_ident(user, conn.conn)
    row = conn.row("select rolcanlogin, rolreplication from pg_roles where rolname = %s", (user,))
    changed = False
    if row is None or not (row[0] and row[1]):
        if not dry_run:
            conn.execute("%s role %s login replication" % ("create" if row is None else "alter", ident))
        changed = True
    if password is not None:
        current = conn.value("select rolpassword from pg_authid where rolname = %s", (user,)) if row else None
        if not _scram_matches(current, password):
            if not dry_run:
                verifier = encrypt_password(password, user, conn.conn, "scram-sha-256")
                conn.execute("alter role %s password %%s" % ident, (verifier,))
            changed = True
    return changed


def _scram_matches(verifier, password):
    """Whether a stored SCRAM-SHA-256 verifier is that of `password` (so an unchanged password
    is not rewritten and the module stays idempotent)."""
    import base64
    import hashlib
    import hmac
    match = re.match(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$", verifier or "")
    if not match:
        return False
    iterations, salt, stored_key = int(match.group(1)), base64.b64decode(match.group(2)), base64.b64decode(match.group(3))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def primary_facts(conn, slot_name=None):
    """The primary's replication facts: settings, the slot, and each streaming standby's lag
    ({application_name, client_addr, state, sent_lsn, replay_lsn, replay_lag_bytes,
    replay_lag_seconds, slot_name})."""
    settings = dict(conn.rows("select name, setting from pg_settings where name in "
                              "('wal_level', 'max_wal_senders', 'max_replication_slots', 'hba_file', 'data_directory')"))
    slot = None
    if slot_name:
        row = conn.row("select slot_type, active, restart_lsn::text, wal_status from pg_replication_slots "
                       "where slot_name = %s", (slot_name,))
        slot = dict(zip(("type", "active", "restart_lsn", "wal_status"), row), name=slot_name) if row else None
    standbys = []
    for row in conn.rows(
            "select r.application_name, host(r.client_addr), r.state, r.sync_state, r.sent_lsn::text, "
            "r.replay_lsn::text, pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
            "coalesce(extract(epoch from r.replay_lag), 0)::float8, s.slot_name "
            "from pg_stat_replication r left join pg_replication_slots s on s.active_pid = r.pid "
            "order by r.application_name, r.pid"):
        standbys.append(dict(zip(("application_name", "client_addr", "state", "sync_state", "sent_lsn", "replay_lsn",
                                  "replay_lag_bytes", "replay_lag_seconds", "slot_name"), row)))
    return {"current_lsn": conn.value("select pg_current_wal_lsn()::text"), "settings": settings, "slot": slot,
            "standbys": standbys}


__all__ = ["primary_settings", "status", "wait", "start", "ensure_slot", "ensure_replication_role", "primary_facts"]
