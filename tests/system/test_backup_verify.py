"""backup-verify: a whole backup and its WAL checked without restoring it, on a directory and on
SeaweedFS S3: good full and delta backups pass, a damaged part and a missing WAL segment are
named, an unknown name is a usage error."""
import json
import os

from conftest import walrus
from test_backup_fetch import backup_push


def verify(env, *args):
    return walrus("backup-verify", *args, env=env, timeout=120)


def test_backup_verify_good_full_and_delta_backups(cluster_factory, repo):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    full = backup_push(primary, env, "--name", "full-1")

    res = verify(env, "full-1", "--json", "--jobs", "2")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["ok"] and result["problems"] == [] and result["kind"] == "full"
    assert result["files"] == full["files"] == result["files_in_parts"] and result["bytes"] > 1 << 20
    assert result["parts"] == result["parts_ok"] >= 1
    assert result["wal"]["first"] == full["start_wal"] and result["wal"]["last"] == full["stop_wal"]
    assert result["wal"]["segments"] == result["wal"]["segments_ok"] >= 1

    primary.pgbench("-t", "200", "-n")
    primary.psql("create table after_full(v int); insert into after_full select generate_series(1, 1000)")
    pushed = backup_push(primary, env, "--delta", "--name", "delta-1")
    assert pushed.get("kind") == "delta"
    res = verify(env, "LATEST", "--json", "--chain")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["ok"] and result["name"] == "delta-1" and result["kind"] == "delta"
    assert result["chain"]["backups"] == ["full-1"] and result["chain"]["parts_checked"]
    assert result["chain"]["kept_from_base"] > 0 and result["not_checked"]
    res = verify(env, "delta-1")  # readable text
    assert res.returncode == 0 and "delta-1 (delta): OK" in res.stdout and "full-1" in res.stdout

    res = verify(env, "no-such-backup")
    assert res.returncode == 2 and "no-such-backup" in res.stderr and "full-1" in res.stderr, res.stderr


def test_backup_verify_names_a_damaged_part_and_a_missing_wal_segment(cluster_factory, repo):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    pushed = backup_push(primary, env, "--name", "nightly")
    part = "basebackups/nightly/part-00001.tar"
    good = repo.read(part)
    repo.damage(part)
    res = verify(env, "nightly", "--json")
    assert res.returncode == 4, res.stderr
    result = json.loads(res.stdout)
    assert not result["ok"] and result["problems"][0]["object"].endswith(part)
    assert "first bad object: %s" % result["problems"][0]["object"] in res.stderr

    repo.write(part, good)
    segment = "wal/%s/%s" % (pushed["start_wal"][:8], pushed["start_wal"])
    assert segment in repo.keys()
    wal_bytes = repo.read(segment)
    if repo.kind == "fs":
        os.unlink(os.path.join(repo.url, segment))
    else:
        repo.server.client().delete_object(Bucket=repo.bucket, Key=repo.url.split("/", 3)[3] + "/" + segment)
    res = verify(env, "LATEST")
    assert res.returncode == 4 and pushed["start_wal"] in res.stderr and "missing" in res.stderr, res.stderr
    assert res.stderr.count("\n  - ") == 1  # only the segment: the repaired part passes

    repo.write(segment, wal_bytes)
    assert verify(env, "nightly").returncode == 0
