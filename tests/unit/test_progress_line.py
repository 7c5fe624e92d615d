"""progress.py: the redrawn stderr line of backup-push and backup-fetch, on a fake terminal
with a fake clock; and the CLI's --quiet / --log-format json on stderr."""
import io
import json
import threading

from test_restore_fetch import env, fetch, sample_files  # noqa: F401 pylint: disable=unused-import
from walrus import cli
from walrus.progress import NULL, Progress, ensure, human_bytes, human_seconds

MIB = 1 << 20


class FakeTTY(object):
    """A terminal as far as Progress can tell: isatty() is true; it keeps what is written."""

    def __init__(self, tty=True):
        self.tty = tty
        self.writes = []

    def isatty(self):
        return self.tty

    def write(self, text):
        self.writes.append(text)

    def text(self):
        return "".join(self.writes)


class Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make(stream=None, **kwargs):
    clock = Clock()
    progress = Progress("backup-push", stream=FakeTTY() if stream is None else stream, clock=clock, **kwargs)
    progress.start(40 * MIB, "backup-push base_1")
    return progress, clock


def test_line_shows_what_bytes_percent_rate_and_eta():
    progress, clock = make()
    clock.now += 1.0
    progress.add(10 * MIB)
    assert progress.stream.writes == ["\rbackup-push base_1: 10.0 MiB / 40.0 MiB  25%  10.5 MB/s  ETA 0:03"]


def test_redrawn_at_most_every_half_second():
    progress, clock = make()
    progress.add(MIB)  # no time has passed: nothing drawn yet
    assert progress.stream.writes == []
    clock.now += 0.6
    progress.add(MIB)
    for _i in range(10):
        clock.now += 0.01
        progress.add(MIB)
    assert len(progress.stream.writes) == 1
    clock.now += 0.5
    progress.add(MIB)
    assert len(progress.stream.writes) == 2
    assert progress.stream.writes[1].startswith("\rbackup-push base_1: 13.0 MiB / 40.0 MiB  32%")
    assert "\n" not in progress.stream.text()


def test_final_line_has_the_totals_and_100_percent_once():
    progress, clock = make()
    clock.now += 1.0
    progress.add(30 * MIB)
    clock.now += 1.0
    progress.add(10 * MIB)
    progress.finish()
    progress.finish()
    final = progress.stream.writes[-1]
    assert final.endswith("\n") and final.startswith("\r")
    assert final.strip() == "backup-push base_1: 40.0 MiB / 40.0 MiB 100%  21.0 MB/s  in 0:02"
    assert progress.stream.text().count("\n") == 1
    # a shorter line blanks what is left of the longer one before it
    assert len(final.rstrip("\n")) >= len(progress.stream.writes[-2])


def test_gib_units_and_long_eta():
    assert human_bytes(3 * (1 << 30)) == "3.00 GiB"
    assert human_bytes(512 * MIB, 2 << 30) == "0.50 GiB"
    assert human_bytes(5 * MIB) == "5.0 MiB"
    assert human_seconds(3725) == "1:02:05"
    assert human_seconds(59.6) == "1:00"


def test_not_a_terminal_prints_nothing_unless_forced():
    pipe = FakeTTY(tty=False)
    progress, clock = make(pipe)
    clock.now += 1
    progress.add(40 * MIB)
    progress.finish()
    assert pipe.writes == [] and progress.done == 40 * MIB
    forced, clock = make(FakeTTY(tty=False), force=True)
    clock.now += 1
    forced.add(40 * MIB)
    forced.finish()
    assert forced.stream.writes[-1].strip().endswith("100%  41.9 MB/s  in 0:01")
    closed = io.StringIO()
    closed.close()
    assert not Progress("x", stream=closed).enabled


def test_quiet_wins_over_a_terminal_and_force():
    progress, clock = make(quiet=True, force=True)
    clock.now += 1
    progress.add(MIB)
    progress.finish()
    progress.abandon()
    assert progress.stream.writes == []


def test_abandon_ends_a_drawn_line_only():
    progress, clock = make()
    progress.abandon()
    assert progress.stream.writes == []
    progress, clock = make()
    clock.now += 1
    progress.add(MIB)
    progress.abandon()
    progress.finish()  # after a failure: no final line
    assert progress.stream.writes[-1] == "\n" and progress.stream.text().count("\n") == 1


def test_counts_from_many_threads():
    progress, clock = make()
    threads = [threading.Thread(target=lambda: [progress.add(1) for _i in range(1000)]) for _t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert progress.done == 8000


def test_null_progress():
    assert ensure(None) is NULL
    NULL.start(10, "x")
    NULL.add(5)
    NULL.finish()
    NULL.abandon()
    progress = Progress("x", stream=FakeTTY())
    assert ensure(progress) is progress


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_backup_fetch_errors_as_json_lines(capsys, tmp_path):
    repo = str(tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    code, _out, err = run_cli(capsys, "backup-fetch", "LATEST", str(tmp_path / "t"), "--repo", repo,
                              "--log-format", "json")
    assert code == 2
    line = json.loads(err)
    assert line["level"] == "error" and line["event"] == "backup-fetch.error" and line["exit_code"] == 2
    assert "message" in line and "\n" not in err.rstrip("\n")
    code, _out, err = run_cli(capsys, "backup-fetch", "LATEST", str(tmp_path / "t"), "--repo", repo,
                              "--tablespace-map", "x", "--log-format", "json", "--quiet")
    assert code == 2 and json.loads(err)["message"].startswith("--tablespace-map")
    # text mode: the usual message, unchanged
    code, _out, err = run_cli(capsys, "backup-fetch", "LATEST", str(tmp_path / "t"), "--repo", repo)
    assert code == 2 and err.startswith("walrus: error: ")


def test_json_done_line_and_quiet(capsys, monkeypatch):
    from walrus import backup
    result = {"name": "base_1", "kind": "full", "files": 3, "raw_size": 10, "stored_size": 5, "parts": 1,
              "start_wal": "A", "stop_wal": "B", "seconds": 1.0, "note": "full backup instead of a delta: none"}
    monkeypatch.setattr(backup, "push", lambda *a, **k: dict(result))
    code, out, err = run_cli(capsys, "backup-push", "/nowhere", "--log-format", "json")
    assert code == 0 and out.startswith("full backup base_1: 3 files")
    lines = [json.loads(line) for line in err.splitlines()]
    assert [(l["level"], l["event"]) for l in lines] == [("warning", "backup-push.note"), ("info", "backup-push.done")]
    assert lines[1]["name"] == "base_1" and lines[1]["files"] == 3
    code, out, err = run_cli(capsys, "backup-push", "/nowhere", "--log-format", "json", "--quiet")
    assert code == 0 and out and err == ""
    code, out, err = run_cli(capsys, "backup-push", "/nowhere", "--quiet")
    assert code == 0 and err == ""
    code, out, err = run_cli(capsys, "backup-push", "/nowhere")
    assert err == "walrus: note: full backup instead of a delta: none\n"


def test_backup_fetch_counts_every_byte_written_of_the_manifest_total(env):  # noqa: F811 pylint: disable=redefined-outer-name
    files = sample_files()
    env.writer.write("base_1", files=files)
    stream = FakeTTY()
    progress = Progress("backup-fetch", stream=stream, clock=Clock())
    result = fetch(env, jobs=2, progress=progress)
    assert progress.total == progress.done == result["bytes"] == sum(len(d) for d, _m in files.values())
    assert stream.writes[-1].startswith("\rbackup-fetch base_1: ") and " 100% " in stream.writes[-1]
    assert progress.finished
