"""S3 connection settings through boto3's own variables and the walrus config file, against
a real SeaweedFS (HTTP and HTTPS with a self-signed certificate)."""
import os
import shutil

import pytest

from conftest import make_s3_repo, walrus
from test_wal_rules import push, queue_segments
from tools.pgcluster import chown_postgres, scratch_dir
from tools.seaweed import SeaweedFS


@pytest.fixture(scope="module")
def tls_seaweed():
    server = SeaweedFS(scratch_dir("walrus-weed-tls-"), tls=True).start()
    os.chmod(server.cert, 0o644)
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def segment(cluster_factory):
    cluster = cluster_factory(None, archive=False, archive_mode="on", archive_command="'/bin/false'")
    cluster.names = queue_segments(cluster, 1)
    return cluster


def bare_env(**values):
    """An environment with no AWS settings but those given (no inherited credentials)."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("AWS_", "WALRUS_")))
    env.update(values)
    return env


def test_https_endpoint_needs_and_uses_the_ca_bundle(tls_seaweed, segment):
    repo = make_s3_repo(tls_seaweed)
    env = repo.full_env(AWS_ENDPOINT_URL_S3=tls_seaweed.https_endpoint, WALRUS_LOOKAHEAD="0")
    res = push(segment, segment.names[0], env)
    assert res.returncode == 3 and "TLS error" in res.stderr and "AWS_CA_BUNDLE" in res.stderr
    env["AWS_CA_BUNDLE"] = tls_seaweed.cert
    res = push(segment, segment.names[0], env)
    assert res.returncode == 0, res.stderr
    assert "wal/00000001/" + segment.names[0] in repo.keys()


def test_credentials_and_endpoint_from_the_walrus_config_file(seaweed, segment, workdir):
    repo = make_s3_repo(seaweed)
    conf = os.path.join(workdir, "walrus.conf")
    with open(conf, "w") as handle:
        handle.write("repo = %s\naws_endpoint_url = %s\naws_region = us-east-1\n"
                     "aws_access_key_id = %s\naws_secret_access_key = %s\nlookahead = 0\n"
                     % (repo.url, seaweed.endpoint, seaweed.access_key, seaweed.secret_key))
    os.chmod(conf, 0o600)
    chown_postgres(conf)
    res = push(segment, segment.names[0], bare_env(WALRUS_CONFIG=conf))
    assert res.returncode == 0, res.stderr
    assert "wal/00000001/" + segment.names[0] in repo.keys()
    # The environment beats the file: a wrong key in AWS_SECRET_ACCESS_KEY is used, and refused.
    res = walrus("check", env=bare_env(WALRUS_CONFIG=conf, AWS_SECRET_ACCESS_KEY="not-the-secret"))
    assert res.returncode == 3 and "denied" in res.stdout
    # A config file holding a secret that others can read is refused before anything runs.
    os.chmod(conf, 0o644)
    res = push(segment, segment.names[0], bare_env(WALRUS_CONFIG=conf))
    assert res.returncode == 2 and "chmod 600" in res.stderr


def test_shared_credentials_file_and_profile(seaweed, segment, workdir):
    repo = make_s3_repo(seaweed)
    creds = os.path.join(workdir, "credentials")
    with open(creds, "w") as handle:
        handle.write("[backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                     % (seaweed.access_key, seaweed.secret_key))
    chown_postgres(creds)
    env = bare_env(WALRUS_REPO=repo.url, AWS_ENDPOINT_URL_S3=seaweed.endpoint, AWS_REGION="us-east-1",
                   AWS_SHARED_CREDENTIALS_FILE=creds, AWS_CONFIG_FILE="/nonexistent", AWS_PROFILE="backup",
                   WALRUS_LOOKAHEAD="0")
    res = push(segment, segment.names[0], env)
    assert res.returncode == 0, res.stderr
    env.pop("AWS_PROFILE")
    res = walrus("check", env=env)
    assert res.returncode == 3 and "no S3 credentials" in res.stdout


def test_storage_class_is_passed_through(seaweed, segment):
    repo = make_s3_repo(seaweed)
    env = repo.full_env(WALRUS_S3_STORAGE_CLASS="STANDARD_IA", WALRUS_LOOKAHEAD="0")
    assert push(segment, segment.names[0], env).returncode == 0
    prefix = repo.url.split("/", 3)[3]
    head = seaweed.client().head_object(Bucket=repo.bucket, Key="%s/wal/00000001/%s" % (prefix, segment.names[0]))
    assert head.get("StorageClass") == "STANDARD_IA"
