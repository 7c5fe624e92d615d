"""walrus wal-verify against real archives (directory and SeaweedFS S3): a healthy archive and
its PITR window, one segment removed behind walrus's back, and a promotion to timeline 2."""
import json
import os

from conftest import start_with_env, walrus
from test_backup_fetch import backup_push
from tools.pgcluster import Cluster


def remove(repo, key):
    """Delete an object behind walrus's back."""
    if repo.kind == "fs":
        os.remove(os.path.join(repo.url, key))
    else:
        repo.server.client().delete_object(Bucket=repo.bucket, Key=repo.url.split("/", 3)[3] + "/" + key)


def verify(env):
    res = walrus("wal-verify", "--json", env=env)
    assert res.returncode in (0, 4), res.stderr
    return res.returncode, json.loads(res.stdout)


def test_healthy_archive_then_a_removed_segment_is_named(cluster_factory, repo):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    pushed = backup_push(primary, env, "--name", "b1")
    for round_ in range(3):
        primary.psql("create table t%d as select g from generate_series(1, 1000) g" % round_)
        last = primary.switch_wal()
    primary.wait_archived(last)

    code, result = verify(env)
    assert code == 0 and result["ok"] and result["missing"] == []
    assert result["start"] == {"backup": "b1", "segment": pushed["start_wal"]}
    assert result["end"]["segment"] == last
    window = result["window"]
    assert window["from_backup"] == "b1" and window["from_lsn"] == pushed["stop_lsn"]
    assert window["to_segment"] == last and window["complete"] is True
    text = walrus("wal-verify", env=env)
    assert text.returncode == 0 and "PITR window: from %s" % pushed["stop_time"] in text.stdout, text.stdout

    # A segment after the backup's stop goes missing: exit 4, named, and the window ends before it.
    keys = sorted(k for k in repo.keys() if k.startswith("wal/00000001/") and len(k) == len("wal/00000001/") + 24)
    victim = [k for k in keys if pushed["stop_wal"] < k.rsplit("/", 1)[1] < last][0]
    remove(repo, victim)
    name = victim.rsplit("/", 1)[1]
    res = walrus("wal-verify", env=env)
    assert res.returncode == 4 and "MISSING %s" % name in res.stdout, res.stdout
    code, result = verify(env)
    assert code == 4 and result["missing"] == [name]
    assert result["window"]["to_segment"] < name and result["window"]["complete"] is False

    # The backup's own start segment missing: the backup cannot become consistent.
    remove(repo, "wal/00000001/" + pushed["start_wal"])
    code, result = verify(env)
    assert code == 4 and pushed["start_wal"] in result["missing"] and result["window"] is None
    assert result["backups"][0]["restorable"] is False


def test_promotion_to_a_new_timeline_verifies(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    pushed = backup_push(primary, env, "--name", "before-failover")
    primary.psql("create table after_backup as select g from generate_series(1, 1000) g")
    primary.wait_archived(primary.switch_wal())
    primary.stop(mode="immediate")

    # The replacement: restored from the backup, promoted as soon as consistent, archiving into
    # the same repository on timeline 2.
    target = os.path.join(workdir, "replacement")
    res = walrus("backup-fetch", "before-failover", target, "--target-immediate", "--target-action", "promote",
                 env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    clone = Cluster(target, bin_dir=primary.bin_dir)
    clone.configure(port=clone.port)
    clone.env = env
    start_with_env(clone)
    try:
        clone.wait_ready()
        assert clone.psql("select timeline_id from pg_control_checkpoint()") == "2"
        clone.psql("create table on_tl2 as select g from generate_series(1, 1000) g")
        last = clone.switch_wal()
        clone.wait_archived(last)
    finally:
        clone.stop()
    assert last.startswith("00000002")
    assert "wal/00000002/00000002.history" in repo.keys()

    code, result = verify(env)
    assert code == 0 and result["ok"], result
    assert [entry["timeline"] for entry in result["timeline_path"]] == [1, 2]
    switch = result["timeline_path"][0]
    assert switch["switch_segment"][8:] >= pushed["stop_wal"][8:]
    assert result["end"]["segment"] == last and result["window"]["to_segment"] == last
    # The old primary archived timeline 1 past the switch point; recovery along 2 does not need it.
    assert any("after its switch" in note for note in result["notes"])
