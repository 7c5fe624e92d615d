"""Retention against real repositories (directory and SeaweedFS S3) and real PostgreSQL: full
and delta backups, a permanent mark, garbage (a failed backup, WAL older than every backup),
dry runs that delete nothing, and restores of what is kept after `--confirm`."""
import json
import os

from conftest import walrus
from test_backup_fetch import backup_push, start_restored
import test_modules
from tools.pgcluster import chown_postgres
from walhelpers import snapshot


collections_path = test_modules.collections_path  # fixtures of the module test
playbook = test_modules.playbook


def delete(env, *args):
    res = walrus("delete", *(list(args) + ["--json"]), env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def plant(repo, key, data):
    """Store an object behind walrus's back, as the postgres user would own it."""
    if repo.kind == "fs":
        directory = os.path.dirname(os.path.join(repo.url, key))
        os.makedirs(directory, exist_ok=True)
        chown_postgres(directory)
    repo.write(key, data)
    if repo.kind == "fs":
        chown_postgres(os.path.join(repo.url, key))


def wal_keys(repo):
    return sorted(k for k in repo.keys() if k.startswith("wal/"))


def test_retention_keeps_what_kept_backups_need_and_they_still_restore(cluster_factory, repo, workdir):
    primary = cluster_factory(repo)
    env = repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    primary.psql("create table canary(v int); insert into canary values (1)")
    primary.wait_archived(primary.switch_wal())  # WAL from before any backup: garbage later
    pushed = {}

    def backup(name, *extra):
        primary.pgbench("-t", "20", "-n")
        primary.psql("insert into canary values (%d)" % (len(pushed) + 2))
        pushed[name] = backup_push(primary, env, "--name", name, *extra)

    backup("f1")
    backup("d1", "--delta")
    backup("f2")
    backup("d2", "--delta")
    backup("f3")
    backup("d3", "--delta")
    assert [pushed[n].get("kind", "full") for n in ("f1", "d1", "f3", "d3")] == ["full", "delta", "full", "delta"]
    assert pushed["d3"]["chain"] == ["f3"]

    # A backup-push that died after writing a part: no sentinel.
    plant(repo, "basebackups/died/part-00001.tar", repo.read("basebackups/f1/part-00001.tar"))
    first_backup_wal = "wal/00000001/" + pushed["f1"]["start_wal"]
    old_wal = [k for k in wal_keys(repo) if k[len("wal/00000001/"):][:24] < pushed["f1"]["start_wal"]
               and not k.endswith(".history")]
    assert old_wal

    # garbage, dry run with the default safety age: the failed backup is too young; nothing changes.
    keys = repo.keys()
    plan = delete(env, "garbage")
    assert plan["confirmed"] is False and plan["incomplete"] == []
    assert [e["name"] for e in plan["incomplete_kept"]] == ["died"]
    assert plan["wal"] == sorted(k.rsplit("/", 1)[1] for k in old_wal) and plan["backups"] == []
    assert repo.keys() == keys
    done = delete(env, "garbage", "--min-age", "0", "--confirm")
    assert [e["name"] for e in done["incomplete"]] == ["died"] and done["confirmed"]
    left = repo.keys()
    assert not any(k.startswith("basebackups/died/") for k in left)
    assert not set(old_wal) & set(left) and first_backup_wal in left

    # A permanent backup survives retain, with what it needs.
    mark = walrus("backup-mark", "d1", "--permanent", env=env)
    assert mark.returncode == 0 and "d1 is permanent" in mark.stdout, mark.stderr
    keys = repo.keys()
    plan = delete(env, "retain", "1", "--full")
    assert repo.keys() == keys  # a dry run deletes nothing
    assert [b["name"] for b in plan["backups"]] == ["d2", "f2"]  # newest first: a delta before its base
    kept = dict((b["name"], b) for b in plan["kept"])
    assert sorted(kept) == ["d1", "d3", "f1", "f3"] and kept["d1"]["permanent"]
    assert "base of delta d1" in kept["f1"]["reasons"] and plan["wal"] == []

    done = delete(env, "retain", "1", "--full", "--confirm")
    assert [b["name"] for b in done["backups"]] == ["d2", "f2"]
    names = [b["name"] for b in json.loads(walrus("backup-list", "--json", env=env, check=True).stdout)]
    assert names == ["f1", "d1", "f3", "d3"]
    assert not any(k.startswith(("basebackups/f2/", "basebackups/d2/")) for k in repo.keys())
    assert first_backup_wal in repo.keys()

    # Without the mark, the old chain and the WAL only it needed go; the newest chain stays.
    walrus("backup-mark", "d1", "--impermanent", env=env, check=True)
    done = delete(env, "before", "f3", "--confirm")
    assert [b["name"] for b in done["backups"]] == ["d1", "f1"]
    assert done["wal_kept_from"] == pushed["f3"]["start_wal"]
    left = repo.keys()
    assert first_backup_wal not in left and "wal/00000001/" + pushed["f3"]["start_wal"] in left
    assert all(k.rsplit("/", 1)[1][:24] >= pushed["f3"]["start_wal"] for k in left
               if k.startswith("wal/") and not k.endswith(".history"))
    # Nothing more to delete: the newest full backup is never deleted.
    text = walrus("delete", "retain", "1", env=env)
    assert text.returncode == 0 and "dry run" in text.stdout and "would delete" not in text.stdout
    assert "kept backup f3 (full" in text.stdout and "the newest full backup" in text.stdout, text.stdout
    verified = walrus("wal-verify", env=env)
    assert verified.returncode == 0, verified.stdout

    # Every kept backup still restores; the newest (a delta) is started and replays to the end.
    expected = snapshot(primary)
    primary.wait_archived(primary.switch_wal())
    res = walrus("backup-fetch", "f3", os.path.join(workdir, "f3"), env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    target = os.path.join(workdir, "d3")
    res = walrus("backup-fetch", "d3", target, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    clone = start_restored(primary, target, env)
    try:
        assert snapshot(clone) == expected
        assert clone.psql("select count(*) from canary") == "7"
    finally:
        clone.stop(mode="immediate")


def test_a_missing_backup_or_a_time_without_zone_is_refused(repo):
    env = repo.full_env()
    res = walrus("delete", "before", "2026-11-01", env=env)
    assert res.returncode == 2 and "time zone" in res.stderr
    keys = repo.keys()
    res = walrus("backup-mark", "nope", "--permanent", env=env)
    assert res.returncode == 2 and "backup 'nope' does not exist" in res.stderr, res.stderr  # as backup-fetch
    res = walrus("backup-mark", "LATEST", "--impermanent", env=env)
    assert res.returncode == 2 and "no complete backup" in res.stderr, res.stderr
    assert repo.keys() == keys
    res = walrus("delete", env=env)
    assert res.returncode == 2


def test_retention_module_check_mode_then_delete(fs_repo, cluster_factory, playbook):
    group_defaults = test_modules.group_defaults
    primary = cluster_factory(fs_repo)
    env = fs_repo.full_env()
    primary.pgbench("-i", "-s", "1", "-q")
    for name in ("a", "b", "c"):
        primary.psql("create table t_%s as select 1" % name)
        backup_push(primary, env, "--name", name)
    task = {"walrus.postgres.retention": {"retain": 1, "permanent": ["a"]}}
    keys = fs_repo.keys()
    (planned,) = playbook.run([task], None, group_defaults(fs_repo), check=True)
    assert not planned.get("failed"), planned
    assert planned["changed"] and [b["name"] for b in planned["deleted"]["backups"]] == ["b"]
    assert planned["marked"] == [{"name": "a", "permanent": True, "changed": True}]
    assert fs_repo.keys() == keys  # check mode writes and deletes nothing

    (done,) = playbook.run([task], None, group_defaults(fs_repo))
    assert done["changed"] and [b["name"] for b in done["deleted"]["backups"]] == ["b"]
    assert sorted(k["name"] for k in done["kept"]) == ["a", "c"] and done["wal_kept_from"]
    assert "basebackups/a/permanent.json" in fs_repo.keys()
    again, bad = playbook.run([task, {"walrus.postgres.retention": {"before": "yesterday"}}], None,
                              group_defaults(fs_repo))
    assert not again["changed"] and again["deleted"] == {"backups": [], "incomplete": [], "wal": []}
    assert bad["failed"] and "time zone" in bad["msg"] and bad["error_kind"] == "usage"
