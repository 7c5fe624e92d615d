"""docs/configuration.md is generated from config.py by tools/gen_config_doc.py: it must be current."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools import gen_config_doc  # noqa: E402


def test_configuration_doc_is_current():
    with open(gen_config_doc.DOC) as handle:
        current = handle.read()
    assert current == gen_config_doc.render(), (
        "docs/configuration.md is out of date: run .venv/bin/python tools/gen_config_doc.py")


def test_every_setting_is_documented():
    config, _cli = gen_config_doc.load_engine()
    text = gen_config_doc.render()
    for name in list(config.SETTINGS) + list(config.AWS_SETTINGS):
        assert "| `%s` |" % name in text
    for name in config.SETTINGS:
        assert "`WALRUS_%s`" % name.upper() in text


def test_check_mode_reports_a_stale_doc(tmp_path, monkeypatch):
    stale = tmp_path / "configuration.md"
    stale.write_text("# outdated\n")
    monkeypatch.setattr(gen_config_doc, "DOC", str(stale))
    assert gen_config_doc.main(["--check"]) == 1
    assert gen_config_doc.main([]) == 0
    assert gen_config_doc.main(["--check"]) == 0
