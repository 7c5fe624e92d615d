"""Pure rendering of status facts (Prometheus text format) and drill history (HTML)."""
import re

from walrus import drills, status


def facts(**overrides):
    result = {"checked_epoch": 1795570000.5, "repository": 's3://b/p"x\\y', "attention": [], "repository_up": True,
              "database": None, "archiver": None, "drill": None, "pitr": None, "wal": {"missing": []},
              "backup": {"count": 0, "last": None}, "repository_bytes": {"wal": 10, "basebackups": 0, "drills": 0,
                                                                         "other": 1},
              "repository_objects": {"wal": 1, "basebackups": 0, "drills": 0, "other": 1}}
    result.update(overrides)
    return result


def test_metrics_escape_labels_and_leave_unknown_facts_out():
    text = status.render_metrics(facts())
    assert 'walrus_repository_bytes{kind="wal",repo="s3://b/p\\"x\\\\y"} 10' in text
    assert "# TYPE walrus_last_backup_timestamp_seconds gauge" in text
    assert not re.search(r"^walrus_last_backup_timestamp_seconds", text, re.M)  # no backup: no sample
    assert not re.search(r"^walrus_database_up", text, re.M)  # --no-db
    assert re.search(r'^walrus_needs_attention\{repo="[^\n]*"\} 0$', text, re.M)
    for line in text.splitlines():
        assert line.startswith("# ") or re.match(r"^walrus_[a-z_]+\{.*\} -?[0-9.e+]+$", line), line


def test_thresholds():
    assert status.threshold("8d", "--x") == 8 * 86400 and status.threshold("off", "--x") is None
    assert status.threshold("0s", "--x") == 0


def test_html_page_escapes_and_charts_each_drill():
    reports = [{"id": "20261120T101010Z-<h>", "started_at": "2026-11-20T10:10:10Z", "passed": True, "rto_seconds": 3.0,
                "rpo_seconds": 1.0, "checks": [{"name": "x", "ok": True, "detail": "<script>", "seconds": 0.1}]},
               {"id": "20261121T101010Z-h", "started_at": "2026-11-21T10:10:10Z", "passed": False, "rto_seconds": 9.0,
                "rpo_seconds": None, "checks": [{"name": "orders", "ok": False, "detail": "returned False"}]}]
    page = drills.render_html(reports, "/repo")
    assert "<script>" not in page and "&lt;script&gt;" in page and "20261120T101010Z-&lt;h&gt;" in page
    assert page.count("<circle") == 3 + 1  # RTO twice, RPO once, and the legend's ring
    assert "<polyline" in page and drills.render(reports)[2].split()[-1] == "orders"
    assert "no drill yet" in drills.render_html([], "/repo")
