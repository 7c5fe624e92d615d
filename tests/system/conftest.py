"""Fixtures with real components: a SeaweedFS S3 server on 127.0.0.1, PostgreSQL clusters
started with initdb/pg_ctl as the postgres user, and the `walrus` command from .venv."""
import os
import shutil
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools.pgcluster import Cluster, as_postgres, chown_postgres, scratch_dir  # noqa: E402
from tools.seaweed import SeaweedFS  # noqa: E402

WALRUS = os.path.join(ROOT, ".venv", "bin", "walrus")


@pytest.fixture(scope="session")
def seaweed():
    server = SeaweedFS(scratch_dir("walrus-weed-")).start()
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def workdir():
    """A scratch directory the postgres user owns; removed afterwards."""
    path = scratch_dir("walrus-test-")
    chown_postgres(path)
    yield path
    subprocess.run(["pkill", "-f", "-u", "postgres", "--", "-D " + path], check=False)
    shutil.rmtree(path, ignore_errors=True)


class Repo(object):
    """A repository and the environment a walrus process needs to use it."""

    def __init__(self, kind, url, env, server=None, bucket=None):
        self.kind, self.url, self.env, self.server, self.bucket = kind, url, env, server, bucket

    def full_env(self, **extra):
        env = dict(os.environ)
        env.update(self.env)
        env["WALRUS_REPO"] = self.url
        env.update(extra)
        return env

    def keys(self):
        """All object keys (relative to the repository root)."""
        if self.kind == "fs":
            out = []
            for dirpath, _dirs, files in os.walk(self.url):
                for name in files:
                    out.append(os.path.relpath(os.path.join(dirpath, name), self.url))
            return sorted(out)
        prefix = self.url.split("/", 3)[3] + "/"
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"][len(prefix):] for page in pages for item in page.get("Contents", ()))

    def read(self, key):
        if self.kind == "fs":
            with open(os.path.join(self.url, key), "rb") as handle:
                return handle.read()
        prefix = self.url.split("/", 3)[3]
        return self.server.client().get_object(Bucket=self.bucket, Key=prefix + "/" + key)["Body"].read()

    def write(self, key, data):
        """Overwrite an object behind walrus's back (to simulate corruption)."""
        if self.kind == "fs":
            with open(os.path.join(self.url, key), "wb") as handle:
                handle.write(data)
            return
        prefix = self.url.split("/", 3)[3]
        self.server.client().put_object(Bucket=self.bucket, Key=prefix + "/" + key, Body=data)

    def damage(self, key):
        """Flip one bit of the object's stored SHA-256 (in its 48-byte trailer).

        A flipped bit in a compressed body is not always a change: in a run of zeros an lz4 match
        offset can move and decode to the same bytes (CI saw exactly that). The checksum bit is a
        change every reader must catch.
        """
        data = bytearray(self.read(key))
        data[-5] ^= 0x10
        self.write(key, bytes(data))


def make_s3_repo(seaweed):
    bucket = "walrus-" + uuid.uuid4().hex[:12]
    seaweed.create_bucket(bucket)
    return Repo("s3", "s3://%s/cluster-a" % bucket, seaweed.env(), seaweed, bucket)


def make_fs_repo(workdir):
    path = os.path.join(workdir, "repo")
    os.makedirs(path)
    chown_postgres(path)
    return Repo("fs", path, {})


@pytest.fixture
def s3_repo(seaweed):
    return make_s3_repo(seaweed)


@pytest.fixture
def fs_repo(workdir):
    return make_fs_repo(workdir)


@pytest.fixture(params=["fs", "s3"])
def repo(request, workdir):
    if request.param == "fs":
        return make_fs_repo(workdir)
    return make_s3_repo(request.getfixturevalue("seaweed"))


def walrus(*args, env=None, as_user="postgres", cwd=None, check=False, timeout=120):
    """Run the installed walrus command (as the postgres user by default, as PostgreSQL would)."""
    cmd = [WALRUS] + list(args)
    if as_user == "postgres" and os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError("walrus %s exited %d: %s" % (" ".join(args), res.returncode, res.stderr))
    return res


@pytest.fixture
def cluster_factory(workdir):
    """Make clusters whose archive_command pushes to a repository through walrus."""
    made = []

    def make(repo=None, name="primary", start=True, archive=True, extra_env=None, initdb_args=(), bin_dir=None, **conf):
        cluster = Cluster(os.path.join(workdir, name), bin_dir=bin_dir)
        cluster.initdb(*initdb_args)
        settings = {"wal_level": "replica", "archive_timeout": "0"}
        if archive and repo is not None:
            settings.update(archive_mode="on", archive_command="'%s wal-push %%p'" % WALRUS)
        settings.update(conf)
        cluster.configure(**settings)
        cluster.env = repo.full_env(**(extra_env or {})) if repo is not None else dict(os.environ)
        made.append(cluster)
        if start:
            start_with_env(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop(mode="immediate")


def start_with_env(cluster):
    """pg_ctl start with the cluster's environment, so archive/restore_command see it."""
    as_postgres([cluster.bin("pg_ctl"), "-D", cluster.datadir, "-l", cluster.logfile,
                 "-o", "-p %d" % cluster.port, "-w", "-t", "120", "start"], env=cluster.env)
    return cluster


# Test modules that use machine-wide state: the archiving role's default venv /opt/walrus/venv
# (molecule scenarios, make demo), the postgres user's crontab (molecule backup_schedule and
# archiving), /var/tmp/walrus-demo. Under pytest-xdist (tools/run-tests.sh) they share one
# group, so they run one after another on one worker while the rest run beside them.
MACHINE_WIDE_MODULES = ("test_molecule.py", "test_demo.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if os.path.basename(str(item.fspath)) in MACHINE_WIDE_MODULES:
            item.add_marker(pytest.mark.xdist_group("machine-wide"))


# Short S3 timeouts and few attempts, so that a test of injected faults fails fast when walrus gives up.
FAULT_ENV = {"WALRUS_S3_MAX_ATTEMPTS": "3", "WALRUS_S3_READ_TIMEOUT": "3", "WALRUS_S3_CONNECT_TIMEOUT": "2"}


@pytest.fixture
def proxy(seaweed):
    """A fault-injecting proxy (faultproxy.py) in front of the session's SeaweedFS, no rules yet."""
    from faultproxy import FaultProxy
    with FaultProxy(seaweed.port) as running:
        yield running


@pytest.fixture
def proxied_repo(seaweed, proxy):
    """An S3 repository that walrus reaches through the proxy; the test reads it directly."""
    repo = make_s3_repo(seaweed)
    repo.env = dict(repo.env, AWS_ENDPOINT_URL_S3=proxy.endpoint, **FAULT_ENV)
    return repo
