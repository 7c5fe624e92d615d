import os

from walrus import lookahead


def test_record_matches_until_the_file_changes(tmp_path):
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(b"x" * 1000)
    state = str(tmp_path / "state")
    lookahead.write(state, seg.name, os.stat(seg))
    assert lookahead.take(state, str(seg), seg.name) is True
    assert lookahead.take(state, str(seg), seg.name) is False  # consumed

    lookahead.write(state, seg.name, os.stat(seg))
    with open(seg, "r+b") as handle:  # same size, new content, mtime forced back
        handle.write(b"y")
    st = os.stat(seg)
    os.utime(seg, ns=(st.st_atime_ns, st.st_mtime_ns - 10 ** 9))
    assert lookahead.take(state, str(seg), seg.name) is False
    assert not os.listdir(state)  # a mismatching record is dropped too


def test_ready_files_in_archiving_order(tmp_path):
    status = tmp_path / "archive_status"
    status.mkdir()
    for name in ["000000010000000000000003.ready", "000000010000000000000002.ready", "00000002.history.ready",
                 "000000010000000000000001.done", "000000010000000000000004.ready"]:
        (status / name).write_text("")
    assert lookahead.ready_files(str(tmp_path)) == [
        "00000002.history", "000000010000000000000002", "000000010000000000000003", "000000010000000000000004"]
    assert lookahead.ready_files(str(tmp_path / "nowhere")) == []
