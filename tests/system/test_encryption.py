"""Client-side encryption end to end, with real PostgreSQL and real repositories (directory
and SeaweedFS S3): archive and back up with key A, rotate to key B (A kept as old), restore
with both and find every row; the stored objects hold no plaintext and do not decode without
the key; a restore with the wrong key fails naming the object and the key id it needs. And
the S3 server-side encryption settings reach the server."""
import json
import os
import time
import uuid

import lz4.frame
import pytest

from conftest import WALRUS, make_s3_repo, start_with_env, walrus
from test_backup_fetch import archive_now, backup_push, start_restored
from test_wal_rules import push, queue_segments, state_dir
from walrus import codec, config, keys
from walrus.catalog import IDENTITY_KEY
from walrus.errors import IntegrityError, StorageError
from walrus.storage import open_storage, s3
from tools.pgcluster import as_postgres

KEY_A, KEY_B, KEY_C = [os.urandom(32).hex() for _unused in range(3)]


def key_id(hex_key):
    return keys.key_id(bytes.fromhex(hex_key)).hex()


def key_env(current, *old):
    # No compression: without encryption the marker would be there to see in the stored bytes.
    return {"WALRUS_ENCRYPTION_KEY": current, "WALRUS_ENCRYPTION_OLD_KEYS": ",".join(old), "WALRUS_COMPRESSION": "none"}


def insert_marked(cluster, marker, first, last):
    cluster.psql("insert into marked select '%s-' || g from generate_series(%d, %d) g" % (marker, first, last))


def test_encrypted_archive_backup_rotation_and_restore(cluster_factory, repo, workdir):
    marker = "walrus-plaintext-marker-" + uuid.uuid4().hex
    # No look-ahead: a background pusher keeps the key it started with until it exits (3 s idle),
    # and this test wants WAL written with B right after the restart.
    primary = cluster_factory(repo, extra_env=dict(key_env(KEY_A), WALRUS_LOOKAHEAD="0"))
    primary.psql("create table marked(v text)")
    insert_marked(primary, marker, 1, 1000)
    backup = backup_push(primary, repo.full_env(**key_env(KEY_A)))
    insert_marked(primary, marker, 1001, 1500)
    archive_now(primary)

    # Rotation: key B encrypts from now on, A stays listed for reading.
    primary.stop()
    primary.env = repo.full_env(WALRUS_LOOKAHEAD="0", **key_env(KEY_B, KEY_A))
    start_with_env(primary)
    insert_marked(primary, marker, 1501, 2000)
    archive_now(primary)

    # What is stored: every object but the identity is encrypted, with A or B, and holds no plaintext.
    used, identity = set(), None
    for key in repo.keys():
        data = repo.read(key)
        assert marker.encode() not in data, key
        if key == IDENTITY_KEY:
            identity = json.loads(data)
            continue
        if key.startswith("locks/"):
            continue  # a lock (plain JSON by design) left behind only while a run holds it
        assert data[:6] == b"WALRUS" and data[8] == 1, key
        used.add((key.split("/")[0], data[16:24].hex()))
        with pytest.raises(IntegrityError):
            codec.decode(data, key)
        with pytest.raises(RuntimeError):
            lz4.frame.decompress(data[16:])
    assert identity["format"] == "walrus"
    assert {("wal", key_id(KEY_A)), ("wal", key_id(KEY_B)), ("basebackups", key_id(KEY_A))} <= used
    # ... while the same objects, decrypted, do hold the marker: the check above would see plaintext.
    reader = open_storage(config.load({"repo": repo.url}, environ=repo.full_env(**key_env(KEY_B, KEY_A))))
    wal_keys = [k for k in repo.keys() if k.startswith("wal/") and not k.endswith(".history")]
    assert any(marker.encode() in codec.decode(reader.get(k), k) for k in wal_keys)

    # The wrong key, or the new key without the old: a clear error naming the object and the key id.
    segment = wal_keys[-1].rsplit("/", 1)[1]
    for env in (key_env(KEY_C), key_env(KEY_B)):
        target = os.path.join(workdir, "bad-restore")
        res = walrus("backup-fetch", "LATEST", target, env=repo.full_env(**env), timeout=120)
        assert res.returncode == 2, res.stderr
        assert "basebackups/%s/" % backup["name"] in res.stderr and "key id %s" % key_id(KEY_A) in res.stderr
        assert not os.path.exists(os.path.join(target, "recovery.signal"))
    res = walrus("wal-fetch", segment, os.path.join(workdir, "seg"), env=repo.full_env(**key_env(KEY_C)))
    assert res.returncode == 2 and "wal/%s/%s is encrypted with key id" % (segment[:8], segment) in res.stderr
    res = walrus("wal-fetch", segment, os.path.join(workdir, "seg"),
                 env=repo.full_env(WALRUS_ENCRYPTION_KEY="", WALRUS_ENCRYPTION_OLD_KEYS=""))
    assert res.returncode == 2 and "no encryption key is configured" in res.stderr, res.stderr

    # Restore with B current and A old: the A backup, then WAL written with A and with B.
    expected = primary.psql("select count(*) || ':' || md5(string_agg(v, ',' order by v)) from marked")
    target = os.path.join(workdir, "restored")
    env = repo.full_env(**key_env(KEY_B, KEY_A))
    res = walrus("backup-fetch", "LATEST", target, "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    clone = start_restored(primary, target, env)
    try:
        assert clone.psql("select count(*) || ':' || md5(string_agg(v, ',' order by v)) from marked") == expected
        assert expected.startswith("2000:")
    finally:
        clone.stop(mode="immediate")


def test_fast_path_does_not_import_cryptography(cluster_factory, fs_repo):
    """A look-ahead record hit with a key configured: the key is never even parsed."""
    cluster = cluster_factory(fs_repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    names = queue_segments(cluster, 2)
    env = fs_repo.full_env(WALRUS_LOOKAHEAD="4", **key_env(KEY_A))
    assert push(cluster, names[0], env).returncode == 0
    state = state_dir(cluster)
    deadline = time.time() + 30
    while names[1] not in os.listdir(state):
        assert time.time() < deadline, os.listdir(state)
        time.sleep(0.05)
    python = os.path.join(os.path.dirname(WALRUS), "python")
    res = as_postgres([python, "-X", "importtime", "-c", "import sys; from walrus.cli import main; sys.exit(main())",
                       "wal-push", os.path.join("pg_wal", names[1])], env=env, cwd=cluster.datadir)
    for heavy in ("cryptography", "walrus.encryption", "walrus.keys", "walrus.storage"):
        assert heavy not in res.stderr, heavy + " imported on the fast path"
    assert names[1] not in os.listdir(state)  # the record was consumed: this was the fast path
    assert fs_repo.read("wal/00000001/" + names[1])[8] == 1  # pushed ahead, encrypted


class SentHeaders(object):
    """Records the headers of every S3 request the storage's boto3 client sends (a botocore
    event hook on the real client; the requests still go to the real server)."""

    def __init__(self, storage):
        self.requests = []
        storage.inner.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, **_kwargs):
        self.requests.append((request.method, request.url, dict(request.headers)))

    def with_header(self, name):
        return [(m, u, h[name]) for m, u, h in self.requests if name in h]


def test_s3_server_side_encryption_is_sent(seaweed, monkeypatch):
    repo = make_s3_repo(seaweed)
    prefix = repo.url.split("/", 3)[3]
    sse_s3 = open_storage(config.load({"repo": repo.url, "s3_sse": "AES256"}, environ=repo.full_env()))
    sent = SentHeaders(sse_s3)
    sse_s3.put("small", codec.encode(b"x" * 100, "none"))
    monkeypatch.setattr(s3, "MULTIPART_SIZE", 5 << 20)  # S3's smallest part: a multipart upload from 6 MiB
    sse_s3.put_stream("large", iter([codec.encode(os.urandom(6 << 20), "none")]))
    # The header goes with the single PUT and with CreateMultipartUpload (S3 takes it there, not on the parts).
    posts = [(m, u) for m, u, v in sent.with_header("x-amz-server-side-encryption") if v in (b"AES256", "AES256")]
    assert any(m == "PUT" and u.endswith("/small") for m, u in posts), sent.requests
    assert any(m == "POST" and "/large?uploads" in u for m, u in posts), sent.requests
    # SeaweedFS implements SSE-S3 for PutObject: it says so when asked.
    head = seaweed.client().head_object(Bucket=repo.bucket, Key=prefix + "/small")
    assert head.get("ServerSideEncryption") == "AES256"

    # SSE-KMS: this SeaweedFS has no KMS and answers 500, so only the request can be checked here.
    kms = open_storage(config.load({"repo": repo.url, "s3_sse": "aws:kms", "s3_sse_kms_key_id": "alias/walrus-test",
                                    "s3_max_attempts": 1}, environ=repo.full_env()))
    sent = SentHeaders(kms)
    with pytest.raises(StorageError):
        kms.put("kms", codec.encode(b"y", "none"))
    puts = [(m, h) for m, u, h in sent.requests if u.endswith("/kms")]
    assert puts and all(m == "PUT" for m, _h in puts), sent.requests
    for _method, headers in puts:
        assert headers["x-amz-server-side-encryption"] in (b"aws:kms", "aws:kms")
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] in (b"alias/walrus-test", "alias/walrus-test")
