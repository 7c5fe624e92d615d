import struct

import pytest

from walrus import walnames
from walrus.errors import UsageError


@pytest.mark.parametrize("name,kind,tli,key", [
    ("000000010000000A000000FF", "segment", 1, "wal/00000001/000000010000000A000000FF"),
    ("0000000200000000000000FE.partial", "partial", 2, "wal/00000002/0000000200000000000000FE.partial"),
    ("000000010000000000000002.00000028.backup", "backup", 1, "wal/00000001/000000010000000000000002.00000028.backup"),
    ("0000000A.history", "history", 10, "wal/0000000A/0000000A.history"),
])
def test_parse_names(name, kind, tli, key):
    parsed = walnames.parse(name)
    assert (parsed.kind, parsed.timeline, parsed.object_key()) == (kind, tli, key)


@pytest.mark.parametrize("bad", [
    "", "00000001000000000000000", "000000010000000000000001x", "000000010000000000000001.history",
    "../000000010000000000000001", "0000000100000000000000aa", "00000000.history",
    "000000000000000000000001", "RECOVERYXLOG", "00000001.history.partial",
])
def test_malformed_names_are_refused(bad):
    with pytest.raises(UsageError, match="malformed WAL file name"):
        walnames.parse(bad)


@pytest.mark.parametrize("segsize", [1 << 24, 1 << 26, 1 << 30])
def test_segment_numbers_round_trip(segsize):
    for segno in (1, 255, 256, 257, 10 ** 6):
        name = walnames.segment_name(3, segno, segsize)
        assert walnames.parse(name).segno(segsize) == segno


def _header(sysid=42, segsize=1 << 24, pageaddr=0x1000000 * 5, info=2):
    head = walnames.LONG_HEADER.pack(0xD110, info, 1, pageaddr, 0, sysid, segsize, 8192)
    return head + b"\0" * (segsize - len(head))


def test_long_header_is_read_and_checked():
    name = walnames.parse("000000010000000000000005")
    assert walnames.read_long_header(_header(), name) == (42, 1 << 24, 0xD110)
    with pytest.raises(UsageError, match="does not match its name"):
        walnames.read_long_header(_header(pageaddr=0), name)
    with pytest.raises(UsageError, match="no valid long page header"):
        walnames.read_long_header(_header(info=0), name)
    with pytest.raises(UsageError, match="incomplete segment"):
        walnames.read_long_header(_header()[:1 << 20], name)
    assert struct.calcsize("<HHIQI4xQII") == 40
