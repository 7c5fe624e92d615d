"""walrus backup-push against a real running cluster (with a tablespace and an unlogged
table) into real repositories: what the backup holds, and what it refuses."""
import hashlib
import io
import json
import os
import sys
import tarfile

from conftest import ROOT, walrus

sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
from walrus import codec, filedigest  # noqa: E402


def pg_env(repo, cluster, **extra):
    values = {"PGHOST": cluster.host, "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    values.update(extra)
    return repo.full_env(**values)


def read_json(repo, key):
    return json.loads(codec.decode(repo.read(key), key))


def test_backup_holds_every_file_once_verified_and_leaves_out_what_it_must(repo, cluster_factory, workdir):
    cluster = cluster_factory(repo)
    tablespace = os.path.join(workdir, "ts1")
    os.makedirs(tablespace)
    os.chown(tablespace, *[os.stat(cluster.datadir).st_uid, os.stat(cluster.datadir).st_gid])
    cluster.psql("create tablespace ts1 location '%s'" % tablespace)
    cluster.psql("create table t_ts(v int) tablespace ts1; insert into t_ts select generate_series(1, 5000)")
    cluster.psql("create unlogged table t_unlogged(v int); insert into t_unlogged select generate_series(1, 5000)")
    cluster.pgbench("-i", "-s", "2", "-q")
    res = walrus("backup-push", cluster.datadir, "--name", "first", "--jobs", "3", "--json", env=pg_env(repo, cluster))
    assert res.returncode == 0, res.stderr
    sentinel = json.loads(res.stdout)
    assert sentinel["name"] == "first" and sentinel["parts"] >= 2

    keys = repo.keys()
    manifest = read_json(repo, "basebackups/first/manifest.json")
    raw_manifest = codec.decode(repo.read("basebackups/first/manifest.json"), "m")
    assert hashlib.sha256(raw_manifest).hexdigest() == read_json(repo, "basebackups/first/sentinel.json")["manifest_sha256"]
    assert "wal/%08X/%s" % (manifest["timeline"], manifest["stop_wal"]) in keys, "stop segment archived before the sentinel"
    assert manifest["system_identifier"] == sentinel["system_identifier"]
    assert "START WAL LOCATION" in manifest["backup_label"]
    assert manifest["tablespaces"] == [{"oid": cluster.psql("select oid from pg_tablespace where spcname = 'ts1'"),
                                        "location": tablespace}]

    files = dict((f["path"], f) for f in manifest["files"])
    seen = set()
    for part in manifest["parts"]:
        stored = repo.read("basebackups/first/" + part["key"])
        raw = codec.decode(stored, part["key"])
        # The part's digest covers its stored body; each member's its own bytes (below).
        assert part["sha256_of"] == "body" and stored[9] == codec.DIGEST_OF_BODY
        assert hashlib.sha256(stored[codec.HEADER.size:-codec.TRAILER_SIZE]).hexdigest() == part["sha256"]
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
            for member in tar:
                assert member.isfile() and not member.name.startswith("/") and ".." not in member.name.split("/")
                data = tar.extractfile(member).read()
                entry = files[member.name]
                digest = filedigest.new(entry)
                digest.update(data)
                assert (entry["part"], entry["size"], entry["sha256"]) == (part["number"], len(data), digest.hexdigest())

                assert member.name not in seen
                seen.add(member.name)
    assert seen == set(files)
    # Relation files are proven by their page hashes (one pass over their bytes when read).
    assert files["global/pg_control"].get("digest", "sha256") == "sha256"
    assert files["PG_VERSION"].get("digest", "sha256") == "sha256"
    assert any(f.get("digest") == "pages" for path, f in files.items() if path.startswith("base/"))

    ts_file = cluster.psql("select pg_relation_filepath('t_ts')")
    assert ts_file in files and ts_file.startswith("pg_tblspc/")
    unlogged = cluster.psql("select pg_relation_filepath('t_unlogged')")
    assert unlogged not in files and unlogged + "_init" in files
    assert "global/pg_control" in files and "PG_VERSION" in files
    for left_out in ("postmaster.pid", "postmaster.opts"):
        assert left_out not in files
    assert not [p for p in files if p.startswith(("pg_wal/", "pg_replslot/", "pg_stat_tmp/", "pg_subtrans/"))]
    directories = [d["path"] for d in manifest["directories"]]
    assert "pg_wal" in directories and "pg_wal/archive_status" in directories and "pg_subtrans" in directories
    assert directories.index("pg_wal") < directories.index("pg_wal/archive_status")
    # walrus's own look-ahead/prefetch state under pg_wal never travels with a backup.
    assert os.path.isdir(os.path.join(cluster.datadir, "pg_wal", "walrus"))
    assert not [d for d in directories if d.startswith("pg_wal/walrus")]


def test_backup_push_refuses_bad_input_and_leaves_no_complete_backup(repo, cluster_factory):
    cluster = cluster_factory(repo)
    env = pg_env(repo, cluster)
    assert walrus("backup-push", cluster.datadir, "--name", "dup", env=env).returncode == 0
    res = walrus("backup-push", cluster.datadir, "--name", "dup", env=env)
    assert res.returncode == 2 and "already exists" in res.stderr
    res = walrus("backup-push", cluster.datadir, "--name", "../evil", env=env)
    assert res.returncode == 2 and "invalid backup name" in res.stderr
    res = walrus("backup-push", "/tmp", env=env)
    assert res.returncode == 2 and "not a PostgreSQL data directory" in res.stderr

    other = cluster_factory(repo, name="other", archive=False)
    res = walrus("backup-push", other.datadir, env=env)  # PGPORT points at the first cluster
    assert res.returncode == 2 and "does not run the data directory" in res.stderr
    res = walrus("backup-push", other.datadir, env=pg_env(repo, other))
    assert res.returncode == 5 and "belongs to" in res.stderr
    res = walrus("backup-push", cluster.datadir, env=pg_env(repo, cluster, PGPORT="1"))
    assert res.returncode == 3 and "cannot connect to PostgreSQL" in res.stderr
    assert not [k for k in repo.keys() if k.startswith("basebackups/") and "/dup/" not in k]


def test_backup_without_archiving_times_out_clearly_without_a_sentinel(repo, cluster_factory):
    cluster = cluster_factory(repo, archive=False, archive_mode="on", archive_command="'/bin/false'")
    # The repository knows the cluster (a first segment was pushed by hand), but nothing archives.
    res = walrus("backup-push", cluster.datadir, "--name", "stuck", "--archive-timeout", "3", env=pg_env(repo, cluster))
    assert res.returncode == 3 and "did not reach" in res.stderr and "archive_command" in res.stderr
    keys = repo.keys()
    assert any(k.startswith("basebackups/stuck/part-") for k in keys)
    assert "basebackups/stuck/sentinel.json" not in keys and "basebackups/stuck/manifest.json" not in keys
