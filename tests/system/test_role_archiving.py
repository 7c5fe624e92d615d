"""The walrus.postgres.archiving role run by a real `ansible-playbook` against localhost, on a
real PostgreSQL 15 cluster started by pg_ctl, with a directory repository and a real S3 server:
check mode on a fresh host changes nothing, the role makes the cluster archive into the
repository (a switched segment arrives), a second run changes nothing, the config file is
private to postgres. With S3, the restore_drill and restore roles then run on the same host, and
the secrets given as playbook variables (the S3 secret, the client-side encryption key and an old
key) are found in the walrus config file and nowhere else: not in the very verbose output of the
runs (a failing one included), PostgreSQL's files or logs, the repository (whose objects the key
encrypted), any file the runs wrote, or the argument list of any process seen meanwhile."""
import json
import os
import pwd
import re
import stat
import subprocess
import tempfile

import pytest
from test_backup_fetch import backup_push

# collections_path is a fixture: importing it makes it available here.
from procwatch import ArgvWatcher
from test_modules import PYTHON, ROOT, Playbook, collections_path  # noqa: F401  # pylint: disable=unused-import
from walrus.catalog import IDENTITY_KEY
from tools.pgcluster import free_port

RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture(scope="session")
def wheelhouse():
    """Wheels of the engine's requirements (and its build backend), downloaded once per session,
    so that each test's fresh virtualenv installs without going to the registry."""
    path = tempfile.mkdtemp(prefix="walrus-wheels-")
    os.chmod(path, 0o755)
    subprocess.run([PYTHON, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", path,
                    "-r", os.path.join(ROOT, "requirements.txt"), "setuptools>=61", "wheel"],
                   check=True, capture_output=True, timeout=600)
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


class RolePlaybook(Playbook):
    """The modules' Playbook helper (same scratch dir, inventory and environment), running a role."""

    def run_role(self, role, variables, check=False, verbosity=0, fails=False):
        """Run one role (or, given a list of {"role": ..., "vars": ...}, several in one play)."""
        self.runs += 1
        playbook = os.path.join(self.dir, "play-%d.yml" % self.runs)
        roles = role if isinstance(role, list) else [{"role": role}]
        with open(playbook, "w") as handle:
            json.dump([{"name": "walrus role", "hosts": "localhost", "gather_facts": False,
                        "roles": roles}], handle, indent=1)
        vars_file = os.path.join(self.dir, "vars-%d.json" % self.runs)
        with open(vars_file, "w") as handle:
            json.dump(variables, handle)
        os.chmod(vars_file, 0o600)
        cmd = [os.path.join(os.path.dirname(PYTHON), "ansible-playbook"), "-i", os.path.join(self.dir, "inventory"),
               "-e", "@" + vars_file, "-e", "ansible_become_method=su", playbook]
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        if check:
            cmd.append("--check")
        proc = subprocess.run(cmd, env=self.env(), cwd=self.dir, capture_output=True, text=True, timeout=600,
                              check=False)
        self.last = proc
        assert (proc.returncode != 0) == fails, "ansible-playbook exited %d:\n%s\n%s" % (
            proc.returncode, proc.stdout, proc.stderr)
        match = RECAP.search(proc.stdout)
        assert match, proc.stdout
        return dict(zip(("ok", "changed", "unreachable", "failed"), (int(g) for g in match.groups())))


@pytest.fixture
def role_playbook(workdir, collections_path):  # noqa: F811
    return RolePlaybook(workdir, collections_path)


def role_vars(repo, cluster, workdir, wheelhouse):
    variables = {
        "walrus_repo": repo.url,
        "walrus_install_dir": os.path.join(workdir, "opt", "venv"),
        "walrus_build_dir": os.path.join(workdir, "opt", "src"),
        "walrus_config_file": os.path.join(workdir, "etc", "walrus.conf"),
        "walrus_pip_extra_args": ["--no-index", "--find-links", wheelhouse],
        "walrus_pg_datadir": cluster.datadir,
        "walrus_pg_port": cluster.port,
        "walrus_pg_host": cluster.host,
        "walrus_pg_bindir": cluster.bin_dir,
        "walrus_pg_restart_method": "pg_ctl",
        "walrus_archive_timeout": 30,
    }
    if repo.kind == "s3":
        variables.update(walrus_aws_endpoint_url=repo.env["AWS_ENDPOINT_URL_S3"],
                         walrus_aws_region=repo.env["AWS_REGION"],
                         walrus_aws_access_key_id=repo.env["AWS_ACCESS_KEY_ID"],
                         walrus_aws_secret_access_key=repo.env["AWS_SECRET_ACCESS_KEY"])
    return variables


def settings(cluster):
    names = ("wal_level", "archive_mode", "archive_command", "archive_timeout")
    rows = cluster.psql("select name || '=' || setting from pg_settings where name in (%s) order by name"
                        % ", ".join("'%s'" % n for n in names))
    return dict(line.split("=", 1) for line in rows.splitlines())


# A dozen ansible-playbook runs, some at -vvv: it took 500 s on a loaded two-core machine.
@pytest.mark.timeout(1500)
def test_archiving_role(s3_repo, cluster_factory, role_playbook, workdir, wheelhouse):
    """On S3 only: the molecule scenario `archiving` covers a directory repository (converge,
    idempotence, a switched segment archived)."""
    repo = s3_repo
    # archive_library (PostgreSQL 15+) would take precedence over archive_command: the role clears it.
    cluster = cluster_factory(None, archive=False, archive_library="'basic_archive'")
    variables = role_vars(repo, cluster, workdir, wheelhouse)
    variables.update(walrus_encryption_key=os.urandom(32).hex(), walrus_encryption_old_keys=[os.urandom(32).hex()])
    secrets = [repo.env["AWS_SECRET_ACCESS_KEY"], variables["walrus_encryption_key"]] + variables["walrus_encryption_old_keys"]
    with ArgvWatcher(secrets) as watcher:
        archive_with_the_role(repo, cluster, role_playbook, workdir, variables, secrets)
    assert watcher.leaks == [], watcher.leaks
    # Proof that it was looking: it saw the playbooks, and walrus run by them and by PostgreSQL.
    assert watcher.scans > 100 and watcher.saw("ansible-playbook") and watcher.saw("bin/walrus wal-push")


def archive_with_the_role(repo, cluster, role_playbook, workdir, variables, secrets):
    venv, config = variables["walrus_install_dir"], variables["walrus_config_file"]
    before = settings(cluster)
    assert before["archive_mode"] == "off"

    # Check mode on a fresh host: reports changes, makes none.
    recap = role_playbook.run_role("walrus.postgres.archiving", variables, check=True)
    assert recap["failed"] == 0 and recap["changed"] > 0, role_playbook.last.stdout
    assert not os.path.exists(os.path.join(workdir, "opt")) and not os.path.exists(config)
    assert settings(cluster) == before
    assert [k for k in repo.keys() if k.startswith("wal/")] == []

    # The real run, verbose: the cluster archives through walrus, into the repository.
    recap = role_playbook.run_role("walrus.postgres.archiving", variables, verbosity=3)
    output = role_playbook.last.stdout + role_playbook.last.stderr
    assert recap["failed"] == 0 and recap["changed"] > 0
    match = re.search(r"WAL segment ([0-9A-F]{24}) archived into", output)
    assert match, output
    segment = match.group(1)
    assert "wal/%s/%s" % (segment[:8], segment) in repo.keys()
    now = settings(cluster)
    assert now["wal_level"] == "replica" and now["archive_mode"] == "on" and now["archive_timeout"] == "30"
    assert now["archive_command"] == "%s/bin/walrus wal-push --config %s %%p" % (venv, config)
    assert cluster.psql("show archive_library") == ""

    # The config file is private to postgres; the secret stays out of the output and of PostgreSQL's files.
    st = os.stat(config)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam("postgres").pw_uid
    with open(config) as handle:
        text = handle.read()
    assert 'repo = "%s"' % repo.url in text
    with open(os.path.join(cluster.datadir, "postgresql.auto.conf")) as handle:
        auto_conf = handle.read()
    assert 'aws_secret_access_key = "%s"' % secrets[0] in text
    assert 'encryption_key = "%s"' % variables["walrus_encryption_key"] in text
    assert 'encryption_old_keys = "%s"' % ",".join(variables["walrus_encryption_old_keys"]) in text
    for secret in secrets:
        assert secret not in output and secret not in auto_conf

    # More WAL arrives by itself through archive_command (look-ahead and all).
    cluster.psql("create table t as select g from generate_series(1, 1000) g")
    cluster.wait_archived(cluster.switch_wal())

    # Idempotent: a second run changes nothing (and still proves archiving), check mode too.
    recap = role_playbook.run_role("walrus.postgres.archiving", variables)
    assert recap["failed"] == 0 and recap["changed"] == 0, role_playbook.last.stdout
    recap = role_playbook.run_role("walrus.postgres.archiving", variables, check=True)
    assert recap["failed"] == 0 and recap["changed"] == 0, role_playbook.last.stdout

    # The engine is reinstalled when the shipped sources differ from those installed (simulated by
    # an older digest), and only then.
    stamp = os.path.join(venv, "walrus-engine.sha256")
    with open(stamp, "w") as handle:
        handle.write("0" * 64 + "\n")
    recap = role_playbook.run_role("walrus.postgres.archiving", variables)
    assert recap["failed"] == 0 and recap["changed"] > 0
    assert "Install the engine and its dependencies into the virtualenv] ***\nchanged" in role_playbook.last.stdout
    with open(stamp) as handle:
        assert handle.read().strip() != "0" * 64

    drill_and_restore_keep_the_secret(repo, cluster, role_playbook, workdir, variables, output, secrets)


def files_holding(root, needle, skip):
    found = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if path in skip or os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                if needle in handle.read():
                    found.append(path)
    return found


def drill_and_restore_keep_the_secret(repo, cluster, role_playbook, workdir, variables, output, secrets):
    variables = dict(variables, walrus_drill_primary_pghost=cluster.host, walrus_drill_primary_pgport=cluster.port,
                     walrus_drill_report_dir=os.path.join(workdir, "reports"), walrus_drill_install=False,
                     walrus_drill_amcheck=False, walrus_restore_install=False,
                     walrus_restore_datadir=os.path.join(workdir, "restored"), walrus_restore_port=free_port(),
                     walrus_restore_settings={"unix_socket_directories": cluster.host})
    config = variables["walrus_config_file"]
    env = repo.full_env(WALRUS_CONFIG=config)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        env.pop(name)  # the backup, too, takes the secret from the config file only
    backup_push(cluster, env)
    recap = role_playbook.run_role([{"role": "walrus.postgres.restore_drill"}, {"role": "walrus.postgres.restore"}],
                                   variables, verbosity=3)
    assert recap["failed"] == 0
    output += role_playbook.last.stdout + role_playbook.last.stderr
    assert "passed: backup" in output and "restored backup" in output
    # A failing run too: a backup that does not exist.
    role_playbook.run_role("walrus.postgres.restore", dict(variables, walrus_restore_backup="no-such-backup",
                                                           walrus_restore_datadir=os.path.join(workdir, "restored-2")),
                           verbosity=3, fails=True)
    output += role_playbook.last.stdout + role_playbook.last.stderr
    assert "no-such-backup" in output
    vars_files = set(os.path.join(role_playbook.dir, n) for n in os.listdir(role_playbook.dir) if n.startswith("vars-"))
    stored = dict((key, repo.read(key)) for key in repo.keys())
    for secret in secrets:
        assert secret not in output
        assert files_holding(workdir, secret.encode(), skip={config} | vars_files) == []
        for key, data in stored.items():
            assert secret.encode() not in data, key
    # The key from the config file encrypted every object but the identity.
    assert all(data[8] == 1 for key, data in stored.items() if key != IDENTITY_KEY)
