"""walrus status, metrics and drill-list against a real PostgreSQL cluster and real repositories
in known states: nothing archived, no backup yet, healthy, a stale backup, archive_command
failing, and after a passing drill (by the restore_drill role, which fetches the drill history
page) and a failing one; backup_info's status facts. The metrics textfile is checked by a small
parser of the Prometheus text format."""
import json
import os
import re
import shutil
import subprocess
import time

from conftest import WALRUS, walrus
from test_backup_fetch import backup_push
from test_modules import collections_path, playbook  # noqa: F401 pylint: disable=unused-import
from test_role_archiving import role_playbook  # noqa: F401 pylint: disable=unused-import
from tools.pgcluster import chown_postgres

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'(%s)="((?:[^"\\]|\\.)*)"(?:,|$)' % NAME)


def parse_textfile(text):
    """{name: {labels tuple: value}}; fails unless every line is a comment or a sample and every
    metric with a sample has HELP and TYPE lines before it."""
    helps, types, metrics = {}, {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _sep, help_text = line[7:].partition(" ")
            assert re.match("^%s$" % NAME, name) and help_text, line
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("gauge", "counter"), line
            types[name] = kind
        elif line.startswith("#"):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, "not a sample: %r" % line
            name, labels, value = match.groups()
            assert name in helps and name in types, "%s has no HELP/TYPE" % name
            pairs = LABEL.findall(labels or "")
            assert ",".join('%s="%s"' % p for p in pairs) == (labels or ""), line
            metrics.setdefault(name, {})[tuple(sorted(pairs))] = float(value)
    return metrics


def value(metrics, name, **labels):
    for key, val in metrics[name].items():
        if all((k, v) in key for k, v in labels.items()):
            return val
    raise KeyError(name)


def status(cluster, env, *extra):
    res = walrus("status", "--json", "--pghost", cluster.host, "--pgport", str(cluster.port), "--pguser", "postgres",
                 *extra, env=env)
    assert res.returncode in (0, 7), res.stderr
    return res.returncode, json.loads(res.stdout)


def test_status_and_metrics_through_a_clusters_life(cluster_factory, fs_repo, workdir, playbook):  # noqa: F811
    env = fs_repo.full_env()
    res = walrus("status", "--no-db", env=env)
    assert res.returncode == 7 and "nothing archived into" in res.stdout, res.stdout

    primary = cluster_factory(fs_repo)
    primary.psql("create table t(v int); insert into t select generate_series(1, 1000)")
    primary.wait_archived(primary.switch_wal())
    code, facts = status(primary, env)
    assert code == 7 and facts["attention"] == ["no complete backup in %s" % fs_repo.url], facts["attention"]
    res = walrus("status", "--pghost", primary.host, "--pgport", str(primary.port), env=env)
    assert res.returncode == 7 and "ATTENTION: no complete backup" in res.stdout and "archiver:     ok" in res.stdout

    taken = backup_push(primary, env)
    code, facts = status(primary, env)  # the last file archived may be the .backup history file
    assert code == 0 and facts["archiver"]["lag_segments"] == 0, facts
    primary.psql("insert into t values (1001)")
    primary.wait_archived(primary.switch_wal())
    code, facts = status(primary, env)
    assert code == 0 and facts["ok"] and facts["attention"] == [], facts["attention"]
    archiver = facts["archiver"]
    assert archiver["failing"] is False and archiver["failed_count"] == 0 and archiver["lag_segments"] == 0
    assert archiver["archived_count"] >= 3 and archiver["archive_mode"] == "on"
    assert facts["backup"]["last"]["name"] == taken["name"] and facts["backup"]["count"] == 1
    assert facts["wal"]["newest_segment"] == archiver["last_archived_wal"] and facts["wal"]["missing"] == []
    assert facts["pitr"]["from_backup"] == taken["name"] and facts["pitr"]["seconds"] >= 0
    assert facts["repository_bytes"]["wal"] > 0 and facts["repository_bytes"]["basebackups"] > 0
    assert facts["drill"] is None
    # The same facts from the backup_info module, for a playbook to assert on.
    (info,) = playbook.run([{"walrus.postgres.backup_info": {
        "repo": fs_repo.url, "status": True, "pg_host": primary.host, "pg_port": primary.port, "pg_user": "postgres"}}])
    assert info["status"]["ok"] is True and info["status"]["attention"] == [], info
    assert info["status"]["backup"]["last"]["name"] == taken["name"] and info["status"]["archiver"]["failing"] is False
    assert info["latest"]["name"] == taken["name"]

    textfile = os.path.join(workdir, "walrus.prom")
    res = walrus("metrics", "--textfile", textfile, "--pghost", primary.host, "--pgport", str(primary.port), env=env)
    assert res.returncode == 0 and res.stdout == "", res.stderr
    assert [n for n in os.listdir(workdir) if n.startswith(".walrus-")] == []  # the temporary file was renamed
    with open(textfile) as handle:
        metrics = parse_textfile(handle.read())
    assert value(metrics, "walrus_needs_attention", repo=fs_repo.url) == 0
    assert value(metrics, "walrus_database_up") == 1 and value(metrics, "walrus_archiver_failing") == 0
    assert value(metrics, "walrus_archive_lag_segments") == 0 and value(metrics, "walrus_archiver_failed_count") == 0
    assert 0 <= value(metrics, "walrus_backup_age_seconds") < 300
    assert abs(value(metrics, "walrus_last_backup_timestamp_seconds") - time.time()) < 300
    assert value(metrics, "walrus_repository_bytes", kind="wal") == facts["repository_bytes"]["wal"]
    assert value(metrics, "walrus_repository_bytes", kind="basebackups") > 0
    assert value(metrics, "walrus_pitr_window_seconds") >= 0 and value(metrics, "walrus_backups_complete") == 1
    assert "walrus_last_drill_passed" not in metrics  # no drill yet: no sample

    # Stale backup: any age is too old with a threshold of 0 s.
    code, facts = status(primary, env, "--max-backup-age", "0s")
    assert code == 7 and len(facts["attention"]) == 1 and "newest backup %s is" % taken["name"] in facts["attention"][0]
    # Repository facts only.
    res = walrus("status", "--no-db", "--json", env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["database"] is None, res.stdout

    # archive_command failing.
    primary.psql("alter system set archive_command = 'false'")
    primary.psql("select pg_reload_conf()")
    time.sleep(0.3)
    primary.psql("insert into t values (1002)")
    primary.switch_wal()
    deadline = time.time() + 60
    while int(primary.psql("select failed_count from pg_stat_archiver")) == 0:
        assert time.time() < deadline, "the archiver never failed"
        time.sleep(0.2)
    code, facts = status(primary, env)
    assert code == 7 and facts["archiver"]["failing"] is True, facts
    assert any(item.startswith("archiver failing: archive_command failed") for item in facts["attention"]), facts
    res = walrus("metrics", "--pghost", primary.host, "--pgport", str(primary.port), env=env)
    metrics = parse_textfile(res.stdout)
    assert value(metrics, "walrus_archiver_failing") == 1 and value(metrics, "walrus_archiver_failed_count") >= 1
    assert value(metrics, "walrus_needs_attention") == 1
    res = walrus("status", "--max-archive-lag", "bogus", env=env)
    assert res.returncode == 2 and "--max-archive-lag 'bogus'" in res.stderr


def test_drill_list_and_status_after_a_passing_and_a_failing_drill(cluster_factory, fs_repo, workdir,
                                                                   role_playbook):  # noqa: F811
    env = fs_repo.full_env()
    primary = cluster_factory(fs_repo)
    primary.psql("create table orders(id int); insert into orders select generate_series(1, 10)")
    backup_push(primary, env)
    # A passing drill by the restore_drill role, which fetches the history page to the "controller".
    config = os.path.join(workdir, "walrus.conf")
    with open(config, "w") as handle:
        handle.write("repo = %s\n" % fs_repo.url)
    os.chmod(config, 0o600)
    chown_postgres(config)
    controller_page = os.path.join(workdir, "controller", "drills.html")
    role_playbook.run_role("walrus.postgres.restore_drill", {
        "walrus_install_dir": os.path.dirname(os.path.dirname(WALRUS)), "walrus_config_file": config,
        "walrus_drill_install": False, "walrus_drill_amcheck": False, "walrus_pg_bindir": primary.bin_dir,
        "walrus_drill_primary_pghost": primary.host, "walrus_drill_primary_pgport": primary.port,
        "walrus_drill_scratch": os.path.join(workdir, "drill0"), "walrus_drill_report_dir": "",
        "walrus_drill_checks": [{"name": "orders", "sql": "select count(*) = 10 from orders"}],
        "walrus_drill_history_html": controller_page})
    ids = [json.loads(walrus("drill-list", "--json", env=env, check=True).stdout)[0]["id"]]
    with open(controller_page) as handle:
        page = handle.read()
    assert ids[0] in page and "<svg" in page and "canary" in page
    assert not [n for n in os.listdir("/tmp") if n.endswith(".walrus-drill-history")]  # removed from the host
    time.sleep(max(0.0, 1.1 - (time.time() % 1)))  # drill ids have one-second resolution
    res = walrus("drill", "--pg-bindir", primary.bin_dir, "--scratch", os.path.join(workdir, "drill6"),
                 "--no-amcheck", "--check", "orders=select false", "--json", env=env, timeout=300)
    assert res.returncode == 6, res.stderr
    ids.append(json.loads(res.stdout)["id"])

    page = os.path.join(workdir, "history.html")
    res = walrus("drill-list", "--html", page, env=env)
    assert res.returncode == 0, res.stderr
    rows = res.stdout.splitlines()
    assert rows[0].split() == ["ID", "BACKUP", "PASSED", "RTO", "RPO", "FAILED", "CHECKS"]
    assert [r.split()[0] for r in rows[1:]] == ids and rows[1].split()[2] == "yes"
    assert rows[2].split()[2] == "NO" and rows[2].split()[-1] == "orders"
    with open(page) as handle:
        html = handle.read()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and all(i in html for i in ids)
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    rendered_in_chromium(page, ids, os.path.join(workdir, "history.png"))
    listed = json.loads(walrus("drill-list", "--json", env=env, check=True).stdout)
    assert [r["id"] for r in listed] == ids and [r["passed"] for r in listed] == [True, False]

    code, facts = status(primary, env)
    assert code == 7 and facts["drill"]["id"] == ids[1] and facts["drill"]["failed_checks"] == ["orders"]
    assert facts["attention"] == ["last restore drill %s FAILED: orders" % ids[1]], facts["attention"]
    assert facts["repository_bytes"]["drills"] > 0
    res = walrus("metrics", "--no-db", "--max-drill-age", "1w", env=env)
    metrics = parse_textfile(res.stdout)
    assert value(metrics, "walrus_last_drill_passed") == 0 and value(metrics, "walrus_last_drill_rto_seconds") > 0
    assert value(metrics, "walrus_repository_bytes", kind="drills") > 0
    code, facts = status(primary, env, "--max-drill-age", "0s")
    assert code == 7 and any("is" in a and "old (more than 0 s)" in a for a in facts["attention"]), facts["attention"]


def rendered_in_chromium(page, ids, png):
    """Debian's chromium, headless: the page parses with its chart and both drills, and renders."""
    browser = shutil.which("chromium")
    assert browser, "chromium is installed by tools/install.sh dev"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,900"]
    dom = subprocess.run(flags + ["--dump-dom", "file://" + page], capture_output=True, text=True, timeout=120,
                         check=False)
    assert dom.returncode == 0 and "<svg" in dom.stdout and all(i in dom.stdout for i in ids), dom.stderr[-2000:]
    shot = subprocess.run(flags + ["--screenshot=" + png, "file://" + page], capture_output=True, text=True,
                          timeout=120, check=False)
    assert shot.returncode == 0, shot.stderr[-2000:]
    with open(png, "rb") as handle:
        image = handle.read()
    assert image.startswith(b"\x89PNG") and len(image) > 10000  # a blank 1200x900 page compresses to far less
