"""The walrus.postgres modules run by a real `ansible-playbook` against localhost, on WAL
segments of a real PostgreSQL cluster, with a directory repository and a real S3 server.

Each playbook registers every task's result (errors are ignored so that failures become
data) and writes them all to a JSON file that the test reads back.
"""
import json
import os
import stat
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
PYTHON = os.path.join(VENV_BIN, "python")


@pytest.fixture(scope="session")
def collections_path():
    """A scratch collections tree whose walrus/postgres is a symlink to this checkout
    (ansible-playbook follows it; only ansible-test needs a real copy)."""
    base = tempfile.mkdtemp(prefix="walrus-ansible-")
    os.makedirs(os.path.join(base, "ansible_collections", "walrus"))
    os.symlink(ROOT, os.path.join(base, "ansible_collections", "walrus", "postgres"))
    yield base
    subprocess.run(["rm", "-rf", base], check=False)


class Playbook(object):
    """Runs lists of tasks on localhost with the checkout's collection."""

    def __init__(self, workdir, collections):
        self.dir = os.path.join(workdir, "ansible")
        os.makedirs(self.dir, exist_ok=True)
        self.collections = collections
        self.runs = 0
        self.last = None
        with open(os.path.join(self.dir, "ansible.cfg"), "w") as handle:
            handle.write("[defaults]\n")
        with open(os.path.join(self.dir, "inventory"), "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % PYTHON)

    def env(self):
        return {
            "PATH": VENV_BIN + ":/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": os.path.join(self.dir, "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": self.collections,
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.dir, "tmp-local"),
            "ANSIBLE_REMOTE_TEMP": os.path.join(self.dir, "tmp-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
        }

    def run(self, tasks, extra_vars=None, module_defaults=None, verbosity=0, check=False):
        """Run `tasks`; return the list of registered results (the process is kept in self.last)."""
        self.runs += 1
        results_file = os.path.join(self.dir, "results-%d.json" % self.runs)
        play_tasks = []
        for index, task in enumerate(tasks):
            task = dict(task)
            task.setdefault("name", "task %d" % index)
            task.update(register="r%d" % index, ignore_errors=True)
            play_tasks.append(task)
        collected = "[%s]" % ", ".join("r%d" % i for i in range(len(tasks)))
        play_tasks.append({
            "name": "write the results",
            "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % collected, "dest": results_file},
            "check_mode": False,
        })
        play = {"name": "walrus modules", "hosts": "localhost", "gather_facts": False, "tasks": play_tasks}
        if module_defaults:
            play["module_defaults"] = module_defaults
        playbook = os.path.join(self.dir, "play-%d.yml" % self.runs)
        with open(playbook, "w") as handle:
            json.dump([play], handle, indent=1)  # JSON is YAML
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", os.path.join(self.dir, "inventory"), playbook]
        if extra_vars:
            vars_file = os.path.join(self.dir, "vars-%d.json" % self.runs)
            with open(vars_file, "w") as handle:
                json.dump(extra_vars, handle)
            os.chmod(vars_file, 0o600)
            cmd += ["-e", "@" + vars_file]
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        if check:
            cmd.append("--check")
        proc = subprocess.run(cmd, env=self.env(), cwd=self.dir, capture_output=True, text=True, timeout=300, check=False)
        self.last = proc
        assert proc.returncode == 0, "ansible-playbook failed (%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr)
        with open(results_file) as handle:
            return json.load(handle)


@pytest.fixture
def playbook(workdir, collections_path):
    return Playbook(workdir, collections_path)


def s3_options(repo):
    """Module options that reach the test S3 server (the module's process has no AWS_* variables)."""
    return {
        "aws_endpoint_url": repo.env["AWS_ENDPOINT_URL_S3"],
        "aws_access_key_id": repo.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": repo.env["AWS_SECRET_ACCESS_KEY"],
        "aws_region": repo.env["AWS_REGION"],
    }


def group_defaults(repo):
    """module_defaults for the collection's action group: the repository set once per play."""
    options = {"repo": repo.url}
    if repo.kind == "s3":
        options.update((key, "{{ %s }}" % key) for key in s3_options(repo))
    return {"group/walrus.postgres.walrus": options}


def extra_vars(repo):
    return s3_options(repo) if repo.kind == "s3" else {}


def make_segment(cluster_factory):
    """A real, complete WAL segment in pg_wal of a running (non-archiving) cluster:
    (name, path, content)."""
    cluster = cluster_factory(None, archive=False)
    cluster.psql("create table t as select g, md5(g::text) from generate_series(1, 20000) g")
    name = cluster.switch_wal()
    path = os.path.join(cluster.datadir, "pg_wal", name)
    with open(path, "rb") as handle:
        return name, path, handle.read()


def wal_keys(repo):
    return [k for k in repo.keys() if k.startswith("wal/")]


def test_push_check_idempotence_and_fetch(repo, cluster_factory, playbook, workdir):
    name, path, data = make_segment(cluster_factory)
    defaults, evars = group_defaults(repo), extra_vars(repo)
    restore_dir = os.path.join(workdir, "restore")
    os.makedirs(restore_dir)

    # Check mode first: reports the upload it would do, and writes nothing.
    (planned,) = playbook.run([{"walrus.postgres.wal_push": {"path": path}}], evars, defaults, check=True)
    assert not planned.get("failed"), planned
    assert planned["changed"] is True and planned["status"] == "would_upload"
    assert planned["repo"] == repo.url and planned["name"] == name
    assert wal_keys(repo) == []

    results = playbook.run([
        {"walrus.postgres.wal_push": {"path": path}},
        {"walrus.postgres.wal_push": {"path": path}},
        {"walrus.postgres.wal_push": {"path": path}, "check_mode": True},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": restore_dir + "/"}},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, name)}},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, "copy"), "mode": "0640"}},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, "planned")},
         "check_mode": True},
    ], evars, defaults)
    for result in results:
        assert not result.get("failed"), result
    pushed, again, checked, fetched, refetched, with_mode, planned_fetch = results
    assert pushed["changed"] is True and pushed["status"] == "uploaded"
    assert again["changed"] is False and again["status"] == "already_stored"
    assert checked["changed"] is False and checked["status"] == "already_stored"
    assert wal_keys(repo) == ["wal/00000001/" + name]

    assert fetched["changed"] is True and fetched["status"] == "fetched" and fetched["missing"] is False
    assert fetched["dest"] == os.path.join(restore_dir, name)
    assert fetched["bytes"] == len(data) == 16 * 1024 * 1024
    with open(os.path.join(restore_dir, name), "rb") as handle:
        assert handle.read() == data
    assert refetched["changed"] is False and refetched["status"] == "unchanged"
    assert refetched["checksum"] == fetched["checksum"]
    assert with_mode["changed"] is True
    assert stat.S_IMODE(os.stat(os.path.join(restore_dir, "copy")).st_mode) == 0o640
    assert planned_fetch["changed"] is True and planned_fetch["status"] == "would_fetch"
    assert not os.path.exists(os.path.join(restore_dir, "planned"))
    # No temporary files left beside the destinations.
    assert sorted(os.listdir(restore_dir)) == sorted([name, "copy"])

    # A destination with other content is replaced (and check mode says so first).
    with open(os.path.join(restore_dir, "copy"), "r+b") as handle:
        handle.seek(8192)
        handle.write(b"not wal")
    results = playbook.run([
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, "copy")}, "check_mode": True},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, "copy")}},
        {"walrus.postgres.wal_fetch": {"name": name, "dest": os.path.join(restore_dir, "copy")}},
    ], evars, defaults)
    assert [r["changed"] for r in results] == [True, True, False], results
    assert [r["status"] for r in results] == ["would_fetch", "fetched", "unchanged"]
    with open(os.path.join(restore_dir, "copy"), "rb") as handle:
        assert handle.read() == data
    assert stat.S_IMODE(os.stat(os.path.join(restore_dir, "copy")).st_mode) == 0o640


def test_fetch_missing(repo, cluster_factory, playbook, workdir):
    name, path = make_segment(cluster_factory)[:2]
    defaults, evars = group_defaults(repo), extra_vars(repo)
    absent = "00000001000000000000FFFF"
    results = playbook.run([
        {"walrus.postgres.wal_push": {"path": path}},
        {"walrus.postgres.wal_fetch": {"name": absent, "dest": workdir + "/"}},
        {"walrus.postgres.wal_fetch": {"name": absent, "dest": workdir + "/", "fail_on_missing": False}},
        {"walrus.postgres.wal_fetch": {"name": "00000002.history", "dest": workdir + "/", "fail_on_missing": False},
         "check_mode": True},
        {"walrus.postgres.wal_fetch": {"name": absent, "dest": workdir + "/"}, "check_mode": True},
        {"walrus.postgres.wal_fetch": {"name": "not-a-wal-name", "dest": workdir + "/"}},
    ], evars, defaults)
    pushed, missing, tolerated, tolerated_check, missing_check, malformed = results
    assert pushed["status"] == "uploaded", pushed
    assert missing["failed"] is True and missing["missing"] is True
    assert missing["error_kind"] == "not_found" and missing["walrus_exit_code"] == 1
    assert missing["msg"].startswith("WAL file %s is not archived" % absent), missing["msg"]
    assert tolerated.get("failed") is not True and tolerated["changed"] is False, tolerated
    assert tolerated["missing"] is True and tolerated["status"] == "missing"
    assert tolerated_check.get("failed") is not True and tolerated_check["missing"] is True, tolerated_check
    assert missing_check["failed"] is True and missing_check["missing"] is True, missing_check
    assert malformed["failed"] is True and malformed["error_kind"] == "usage", malformed
    assert "malformed WAL file name" in malformed["msg"]
    assert not os.path.exists(os.path.join(workdir, absent))


def test_push_conflict_and_bad_input(fs_repo, cluster_factory, playbook, workdir):
    """Different content under an archived name fails loudly and overwrites nothing."""
    name, path, data = make_segment(cluster_factory)
    forged_dir = os.path.join(workdir, "forged")
    os.makedirs(forged_dir)
    forged = os.path.join(forged_dir, name)
    with open(forged, "wb") as handle:
        handle.write(data[:100000] + b"\x55" * 16 + data[100016:])
    defaults = group_defaults(fs_repo)
    results = playbook.run([
        {"walrus.postgres.wal_push": {"path": path}},
        {"walrus.postgres.wal_push": {"path": forged}, "check_mode": True},
        {"walrus.postgres.wal_push": {"path": forged}},
        {"walrus.postgres.wal_push": {"path": os.path.join(forged_dir, "000000010000000000000099")}},
        {"walrus.postgres.wal_push": {"path": path, "repo": "relative/repo"}},
    ], {}, defaults)
    pushed, conflict_check, conflict, absent, bad_repo = results
    assert pushed["status"] == "uploaded"
    for result in (conflict_check, conflict):
        assert result["failed"] is True and result["error_kind"] == "conflict", result
        assert result["walrus_exit_code"] == 5
        assert "different content" in result["msg"] and name in result["msg"]
    assert absent["failed"] is True and absent["error_kind"] == "usage" and "does not exist" in absent["msg"], absent
    assert bad_repo["failed"] is True and bad_repo["error_kind"] == "usage" and "absolute" in bad_repo["msg"], bad_repo
    (fetched,) = playbook.run([{"walrus.postgres.wal_fetch": {"name": name, "dest": forged_dir + "/copy"}}], {}, defaults)
    assert fetched["status"] == "fetched", fetched
    with open(os.path.join(forged_dir, "copy"), "rb") as handle:
        assert handle.read() == data


def test_secrets_stay_out_of_output(s3_repo, cluster_factory, playbook, workdir):
    """The S3 secret and encryption keys are passed as module options, and appear nowhere in verbose output."""
    name, path = make_segment(cluster_factory)[:2]
    secret = s3_repo.env["AWS_SECRET_ACCESS_KEY"]
    token = "walrus-test-session-token-f00d"
    key, old_key, wrong_key = [os.urandom(32).hex() for _unused in range(3)]
    options = dict(s3_options(s3_repo), repo=s3_repo.url, encryption_key=key)
    # Explicit options on each task (no module_defaults), plus a bogus session token and a
    # wrong encryption key on tasks that must fail, so that failure results are checked too.
    results = playbook.run([
        {"walrus.postgres.wal_push": dict(options, path=path)},
        {"walrus.postgres.wal_fetch": dict(options, name=name, dest=workdir + "/", encryption_old_keys=[old_key])},
        {"walrus.postgres.wal_fetch": dict(options, name=name, dest=workdir + "/token", aws_session_token=token)},
        {"walrus.postgres.wal_fetch": dict(options, name=name, dest=workdir + "/wrong", encryption_key=wrong_key)},
    ], verbosity=3)
    pushed, fetched, with_token, with_wrong_key = results
    assert pushed["changed"] is True and fetched["changed"] is True, results
    assert with_token["failed"] is True and with_token["error_kind"] == "storage", with_token
    assert with_wrong_key["failed"] is True and with_wrong_key["error_kind"] == "usage", with_wrong_key
    assert "is encrypted with key id" in with_wrong_key["msg"] and name in with_wrong_key["msg"], with_wrong_key
    assert s3_repo.read("wal/00000001/" + name)[8] == 1  # the module's key encrypted it
    output = playbook.last.stdout + playbook.last.stderr
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the invocation was printed, masked
    with open(os.path.join(playbook.dir, "results-%d.json" % playbook.runs)) as handle:
        registered = handle.read()
    for hidden in (secret, token, key, old_key, wrong_key):
        assert hidden not in output and hidden not in registered


def test_backup_module_check_mode_idempotent_by_name(repo, cluster_factory, playbook):
    cluster = cluster_factory(repo)
    cluster.pgbench("-i", "-s", "1", "-q")
    evars = extra_vars(repo)
    evars["pg_secret"] = "not-a-real-password-1234"
    task = {"walrus.postgres.backup": {"datadir": cluster.datadir, "name": "nightly", "pg_host": cluster.host,
                                       "pg_port": cluster.port, "pg_user": "postgres",
                                       "pg_password": "{{ pg_secret }}", "jobs": 2}}
    (planned,) = playbook.run([task], evars, group_defaults(repo), check=True)
    assert planned["changed"] and planned["status"] == "would_take", planned
    assert not [k for k in repo.keys() if k.startswith("basebackups/")]

    (taken,) = playbook.run([task], evars, group_defaults(repo), verbosity=3)
    assert not taken.get("failed"), taken
    assert taken["changed"] and taken["status"] == "taken" and taken["backup"]["name"] == "nightly"
    assert "basebackups/nightly/sentinel.json" in repo.keys()
    assert "not-a-real-password-1234" not in playbook.last.stdout + playbook.last.stderr

    (again,) = playbook.run([task], evars, group_defaults(repo))
    assert not again["changed"] and again["status"] == "exists"

    bad = {"walrus.postgres.backup": dict(task["walrus.postgres.backup"], name="other", pg_port=1)}
    (failed,) = playbook.run([bad], evars, group_defaults(repo))
    assert failed["failed"] and "cannot connect to PostgreSQL" in failed["msg"] and failed["error_kind"] == "storage"


def test_backup_info_and_restore_modules(repo, cluster_factory, playbook, workdir):
    cluster = cluster_factory(repo)
    cluster.pgbench("-i", "-s", "1", "-q")
    defaults = group_defaults(repo)
    evars = extra_vars(repo)
    backup_task = {"walrus.postgres.backup": {"datadir": cluster.datadir, "name": "b1", "pg_host": cluster.host,
                                              "pg_port": cluster.port, "pg_user": "postgres"}}
    (taken,) = playbook.run([backup_task], evars, defaults)
    assert taken["status"] == "taken", taken

    (info,) = playbook.run([{"walrus.postgres.backup_info": {}}], evars, defaults)
    assert [b["name"] for b in info["backups"]] == ["b1"] and info["latest"]["name"] == "b1"
    assert info["identity"]["system_identifier"] == taken["backup"]["system_identifier"]

    target = os.path.join(workdir, "restored")
    restore_task = {"walrus.postgres.restore": {"target": target, "target_immediate": True, "target_action": "promote",
                                                "walrus_command": "/opt/walrus/venv/bin/walrus"}}
    (planned,) = playbook.run([restore_task], evars, defaults, check=True)
    assert planned["changed"] and planned["backup"] == "b1" and not os.path.exists(target)

    (restored,) = playbook.run([restore_task], evars, defaults)
    assert not restored.get("failed"), restored
    assert restored["backup"] == "b1" and restored["files"] == taken["backup"]["files"]
    assert os.path.exists(os.path.join(target, "recovery.signal"))
    auto_conf = open(os.path.join(target, "postgresql.auto.conf")).read()
    assert "/opt/walrus/venv/bin/walrus wal-fetch" in auto_conf and "recovery_target = 'immediate'" in auto_conf
    if repo.kind == "s3":
        assert repo.env["AWS_SECRET_ACCESS_KEY"] not in auto_conf  # credentials stay out of the data directory

    (refused,) = playbook.run([restore_task], evars, defaults)
    assert refused["failed"] and "not empty" in refused["msg"] and refused["error_kind"] == "usage"
    (missing,) = playbook.run([dict(restore_task, **{"walrus.postgres.restore": dict(
        restore_task["walrus.postgres.restore"], backup="nope", target=target + "-2")})], evars, defaults)
    assert missing["failed"] and "does not exist" in missing["msg"] and "b1" in missing["msg"]
