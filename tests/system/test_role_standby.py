"""A hot standby built by the walrus.postgres.standby role (a real ansible-playbook run on
localhost) from the latest backup: it replays the archive, then streams from the primary through
the slot the role created, authenticated by the password the role put in a 0600 password file
(the primary's pg_hba.conf has no other replication entry); rows written on the primary appear on
the standby, pg_stat_replication shows it, the password is in no output and no PostgreSQL file,
and a second run changes nothing. Also backup-fetch's own checks of the standby options."""
import json
import os
import pwd
import re
import stat
import time

from conftest import walrus
from test_backup_fetch import backup_push
from test_role_archiving import RolePlaybook, files_holding
# collections_path is a fixture: importing it makes it available here.
from test_modules import ROOT, collections_path  # noqa: F401  # pylint: disable=unused-import
from tools.pgcluster import Cluster, chown_postgres, free_port

PASSWORD = "repl:pa\\ss-%d" % os.getpid()  # ':' and '\' need escaping in a password file


def _no_replication_trust(primary):
    """Only the role's line may let a replication connection in."""
    path = os.path.join(primary.datadir, "pg_hba.conf")
    with open(path) as handle:
        kept = [line for line in handle if not re.match(r"^\s*(local|host)\s+replication\s", line)]
    with open(path, "w") as handle:
        handle.writelines(kept)
    primary.psql("select pg_reload_conf()")


def _write_config(workdir, repo):
    path = os.path.join(workdir, "walrus.conf")
    with open(path, "w") as handle:
        handle.write("repo = %s\n" % repo.url)
    os.chmod(path, 0o600)
    chown_postgres(path)
    return path


def _wait_for(func, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = func()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s" % what)


def test_standby_role_replays_the_archive_then_streams(cluster_factory, fs_repo, workdir, collections_path):  # noqa: F811
    primary = cluster_factory(fs_repo)
    _no_replication_trust(primary)
    primary.psql("create table canary(v int); insert into canary select generate_series(1, 100)")
    backup_push(primary, fs_repo.full_env())
    # After the backup and archived: the standby can only get these rows from the archive.
    primary.psql("insert into canary select generate_series(101, 200)")
    primary.wait_archived(primary.switch_wal())

    datadir = os.path.join(workdir, "standby")
    port = free_port()
    variables = {
        "walrus_standby_datadir": datadir, "walrus_standby_port": port, "walrus_standby_socket_dir": workdir,
        "walrus_standby_primary_host": "127.0.0.1", "walrus_standby_primary_port": primary.port,
        "walrus_standby_primary_pg_host": primary.host, "walrus_standby_hba_address": "127.0.0.1/32",
        "walrus_standby_replication_password": PASSWORD, "walrus_standby_slot_name": "db2_standby",
        "walrus_standby_install": False, "walrus_install_dir": os.path.join(ROOT, ".venv"),
        "walrus_config_file": _write_config(workdir, fs_repo), "walrus_pg_bindir": primary.bin_dir,
        "walrus_standby_wait_timeout": 120,
    }
    playbook = RolePlaybook(workdir, collections_path)
    standby = Cluster(datadir, port=port, bin_dir=primary.bin_dir)
    try:
        try:
            recap = playbook.run_role("walrus.postgres.standby", variables, verbosity=3)
        except AssertionError as exc:
            raise AssertionError("%s\nstandby log:\n%s" % (exc, standby.log_tail()))
        output = playbook.last.stdout + playbook.last.stderr
        assert recap["failed"] == 0 and recap["changed"] > 0
        assert "streaming through slot db2_standby: replay lag" in output, output[-3000:]

        assert standby.psql("select pg_is_in_recovery()") == "t"
        assert standby.psql("select count(*) from canary") == "200"  # the archived rows
        with open(standby.logfile) as handle:
            log = handle.read()
        assert "restored log file" in log and "started streaming WAL" in log
        assert primary.psql("select slot_type || ' ' || active from pg_replication_slots "
                            "where slot_name = 'db2_standby'") == "physical true"
        assert primary.psql("select application_name || ' ' || state || ' ' || usename from pg_stat_replication") \
            == "db2_standby streaming replicator"

        # Streaming: new rows on the primary appear on the standby without any WAL switch.
        primary.psql("insert into canary select generate_series(201, 250)")
        _wait_for(lambda: standby.psql("select count(*) from canary") == "250", "streamed rows")

        # The password: only in the 0600 password file; primary_conninfo names the file.
        passfile = datadir + ".pgpass"
        st = os.stat(passfile)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam("postgres").pw_uid
        conninfo = standby.psql("show primary_conninfo")
        assert "passfile='%s'" % passfile in conninfo and "password" not in conninfo.replace("passfile", "")
        assert PASSWORD not in output, [output[max(0, i - 400):i + 100] for i in [output.find(PASSWORD)]]
        vars_files = set(os.path.join(playbook.dir, n) for n in os.listdir(playbook.dir) if n.startswith("vars-"))
        assert files_holding(workdir, PASSWORD.encode(), skip={passfile} | vars_files) == []
        assert files_holding(workdir, PASSWORD.replace("\\", "\\\\").replace(":", "\\:").encode(),
                             skip=vars_files) == [passfile]

        # A second run: nothing changes, the lag is reported again.
        recap = playbook.run_role("walrus.postgres.standby", variables)
        assert recap["failed"] == 0 and recap["changed"] == 0, playbook.last.stdout
        assert "streaming through slot db2_standby" in playbook.last.stdout

        res = walrus("standby-status", "--pghost", workdir, "--pgport", str(port), "--json", "--wait-streaming", "30")
        assert res.returncode == 0, res.stderr
        state = json.loads(res.stdout)
        assert state["source"] == "streaming" and state["receiver"]["slot_name"] == "db2_standby"
    finally:
        standby.stop(mode="immediate")


def test_backup_fetch_standby_options_are_checked_before_anything_is_written(fs_repo, workdir):
    env = fs_repo.full_env()
    target = os.path.join(workdir, "never")
    cases = [
        (["--standby", "--primary-conninfo", "host=db1 user=r password=secret"], "holds a password"),
        (["--primary-conninfo", "host=db1 user=r"], "need --standby"),
        (["--standby", "--primary-slot-name", "Bad-Slot", "--primary-conninfo", "host=db1"], "replication slot name"),
        (["--standby", "--primary-slot-name", "s1"], "needs --primary-conninfo"),
        (["--standby", "--primary-conninfo", "host=db1 user=r", "--primary-passfile", "/nonexistent/pgpass"],
         "does not exist"),
        (["--standby", "--primary-conninfo", "host=db1 user=r", "--set", "primary_slot_name=x"],
         "use --primary-slot-name"),
        (["--standby", "--primary-conninfo", "host=db1 = ="], "not a libpq connection string"),
    ]
    for args, message in cases:
        res = walrus("backup-fetch", "LATEST", target, *args, env=env)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
        assert "secret" not in res.stderr
        assert not os.path.exists(target)
    # A password from the environment needs a place to live.
    res = walrus("backup-fetch", "LATEST", target, "--standby", "--primary-conninfo", "host=db1 user=r",
                 env=dict(env, WALRUS_PRIMARY_PASSWORD="pw"))
    assert res.returncode == 2 and "--primary-passfile" in res.stderr
