"""The page filter and the delta file encoding of delta backups (delta.py), on synthetic pages."""
import hashlib
import io
import os
import struct

import pytest

from walrus import delta, filedigest
from walrus.errors import IntegrityError

BLCKSZ = delta.BLCKSZ


def page(lsn, fill=b"x", lower=28, upper=8000, special=8192):
    """A page with a plausible header (layout version 4) and a recognisable body."""
    head = struct.pack("<IIHHHHHHI", lsn >> 32, lsn & 0xFFFFFFFF, 0, 0, lower, upper, special,
                       BLCKSZ | 4, 0)
    return head + (fill * BLCKSZ)[:BLCKSZ - len(head)]


def scan(data, chunk=BLCKSZ * 3 + 100, **kwargs):
    scanner = delta.PageScanner(**kwargs)
    for i in range(0, len(data), chunk):  # chunk boundaries that do not fall on pages
        scanner.update(data[i:i + chunk])
    scanner.finish()
    return scanner


@pytest.mark.parametrize("path,expected", [
    ("base/5/16384", True), ("base/5/16384.2", True), ("base/5/16384_fsm", True), ("base/5/16384_vm.1", True),
    ("base/5/16384_init", True), ("global/1262", True), ("pg_tblspc/16390/PG_15_202209061/5/16391", True),
    ("base/5/16384_foo", False), ("base/5/PG_VERSION", False), ("base/5/pg_filenode.map", False),
    ("global/pg_control", False), ("pg_xact/0000", False), ("base/5/t3_16384", False),
    ("pg_tblspc/16390/PG_15_202209061/5/16391_xyz", False), ("base/x/16384", False), ("16384", False),
])
def test_relation_files_are_recognised_by_directory_and_name(path, expected):
    assert delta.is_relation_file(path) is expected


def test_page_header_checks():
    assert delta.page_is_valid(page(0x100000028))
    assert delta.page_is_valid(bytes(BLCKSZ))  # a new, all-zero page
    assert delta.page_lsn(page(0x100000028)) == 0x100000028
    assert not delta.page_is_valid(b"\0" * 100 + b"\1" + b"\0" * (BLCKSZ - 101))  # zero header, not a zero page
    assert not delta.page_is_valid(page(5, lower=9000))  # pd_lower past pd_upper
    bad_version = bytearray(page(5))
    struct.pack_into("<H", bad_version, 18, BLCKSZ | 3)
    assert not delta.page_is_valid(bytes(bad_version))
    assert not delta.page_is_valid(os.urandom(BLCKSZ))


def test_scanner_stores_pages_that_differ_from_the_base_whatever_their_lsn():
    base_pages = [page(10, b"a"), page(20, b"b"), page(30, b"c"), bytes(BLCKSZ)]
    base = scan(b"".join(base_pages))
    assert base.valid and len(base.hashes) == 4 * delta.HASH_BYTES
    now = list(base_pages)
    now[1] = page(500, b"B")        # changed after the base started: new LSN
    now[2] = page(30, b"C")         # hint bits / FSM / VM: content changed, LSN did not
    now += [page(600, b"d"), bytes(BLCKSZ)]  # the file grew, a zero page included
    got = scan(b"".join(now), base_hashes=bytes(base.hashes), base_start_lsn=100, keep_changed=True)
    assert got.valid
    assert [b for b, _p in got.changed] == [1, 2, 4, 5]
    assert [p for _b, p in got.changed] == [now[1], now[2], now[4], now[5]]
    assert (got.by_lsn, got.by_content) == (3, 1)
    # A page with a new LSN but the base's exact bytes (the base read it after the change) is not stored.
    same = scan(b"".join(base_pages), base_hashes=bytes(base.hashes), base_start_lsn=0, keep_changed=True)
    assert same.changed == []


def test_scanner_flags_untrustworthy_files():
    assert not scan(page(1) + os.urandom(BLCKSZ)).valid
    assert not scan(page(1) + b"tail").valid  # not a whole number of pages
    big = scan(b"".join(page(1000 + i) for i in range(6)), base_hashes=b"", keep_changed=True, limit=3 * BLCKSZ)
    assert big.overflow and len(big.changed) == 6


def apply_to(old, member, size):
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "walrus-delta-unit-%d" % os.getpid())
    with open(path, "wb") as handle:
        handle.write(old)
    fd = os.open(path, os.O_WRONLY)
    try:
        digest = hashlib.sha256()
        count = delta.apply(io.BytesIO(member), fd, "test", size, digest)
    finally:
        os.close(fd)
    with open(path, "rb") as handle:
        out = handle.read()
    os.unlink(path)
    assert count == len(member) and digest.hexdigest() == hashlib.sha256(member).hexdigest()
    return out


@pytest.mark.parametrize("old_pages,new_pages", [(4, 6), (6, 2), (3, 3), (0, 2), (5, 0)])
def test_delta_members_round_trip_when_files_grow_shrink_or_stay(old_pages, new_pages):
    old = [page(10 + i, bytes([65 + i])) for i in range(old_pages)]
    new = [page(900 + i, bytes([97 + i])) if i % 2 or i >= old_pages else old[i] for i in range(new_pages)]
    base = scan(b"".join(old))
    got = scan(b"".join(new), base_hashes=bytes(base.hashes), base_start_lsn=100, keep_changed=True)
    member = b"".join(delta.encode_delta(new_pages * BLCKSZ, got.changed))
    assert len(member) == delta.delta_member_size(len(got.changed))
    assert apply_to(b"".join(old), member, new_pages * BLCKSZ) == b"".join(new)


def test_malformed_delta_members_are_refused():
    member = b"".join(delta.encode_delta(3 * BLCKSZ, [(0, page(1)), (2, page(2))]))
    with pytest.raises(IntegrityError, match="manifest says"):
        apply_to(b"", member, 4 * BLCKSZ)
    with pytest.raises(IntegrityError, match="not a walrus delta"):
        apply_to(b"", b"X" + member[1:], 3 * BLCKSZ)
    with pytest.raises(IntegrityError, match="truncated"):
        apply_to(b"", member[:-1], 3 * BLCKSZ)
    with pytest.raises(IntegrityError, match="after its last page"):
        apply_to(b"", member + b"\0", 3 * BLCKSZ)
    unordered = b"".join(delta.encode_delta(3 * BLCKSZ, [(2, page(1)), (0, page(2))]))
    with pytest.raises(IntegrityError, match="out of order"):
        apply_to(b"", unordered, 3 * BLCKSZ)
    past_end = b"".join(delta.encode_delta(2 * BLCKSZ, [(2, page(1))]))
    with pytest.raises(IntegrityError, match="past the file's end"):
        apply_to(b"", past_end, 2 * BLCKSZ)


def test_page_hashes_round_trip_and_detect_damage():
    hashes = {"base/5/16384": bytes(range(16)), "global/1262": b"", "base/5/16384_vm": b"\1" * 8}
    raw = delta.encode_page_hashes(hashes)
    assert delta.decode_page_hashes(raw, "x") == hashes
    with pytest.raises(IntegrityError, match="malformed"):
        delta.decode_page_hashes(raw[:-3], "x")
    with pytest.raises(IntegrityError, match="malformed"):
        delta.decode_page_hashes(b"NOTHASH!" + raw[8:], "x")


# ---------------------------------------------------------------------------------------------
# Choosing the base of a delta (synthetic repositories written as docs/backup-format.md says)


def write_backup(writer, name, stop_time, timeline=1, stop_lsn="0/5000138", chain=(), hashes=True):
    from walrus import backups, codec
    raw = delta.encode_page_hashes({"base/5/16384": b"\1" * 16})
    lineage = {"kind": "delta" if chain else "full", "base": chain[-1] if chain else None, "chain": list(chain)}

    def edit_manifest(manifest):
        manifest.update(lineage, timeline=timeline)
        if hashes:
            manifest["page_hashes"] = {"key": delta.PAGE_HASHES, "raw_size": len(raw),
                                       "sha256": hashlib.sha256(raw).hexdigest()}

    def edit_sentinel(sentinel):
        sentinel.update(lineage, timeline=timeline)
    if hashes:
        writer.storage.put(backups.backup_key(name, delta.PAGE_HASHES), codec.encode(raw, "none"))
    writer.write(name, stop_time=stop_time, stop_lsn=stop_lsn, edit_manifest=edit_manifest, edit_sentinel=edit_sentinel)


def choose(writer, timeline=1, history=None, max_chain=6):
    from test_restore_fetch import SYSID
    return delta.choose_base(writer.storage, SYSID, 150018, timeline, history, max_chain)


def test_choose_base_takes_the_newest_usable_backup_or_says_why_not(tmp_path):
    from test_restore_fetch import Writer
    writer = Writer(str(tmp_path))
    assert "no complete backup" in choose(writer)[3]
    write_backup(writer, "old", "2026-11-20T00:00:00Z", hashes=False)
    assert "has no page hashes" in choose(writer)[3]
    write_backup(writer, "f1", "2026-11-21T00:00:00Z")
    base, manifest, hashes, reason = choose(writer)
    assert (base["name"], reason, hashes) == ("f1", None, {"base/5/16384": b"\1" * 16})
    write_backup(writer, "d1", "2026-11-22T00:00:00Z", chain=["f1"])
    write_backup(writer, "d2", "2026-11-23T00:00:00Z", chain=["f1", "d1"])
    assert choose(writer, max_chain=3)[0]["name"] == "d2"
    assert "would have 3 delta steps, more than --delta-max-chain 2" in choose(writer, max_chain=2)[3]


def test_choose_base_follows_the_timeline_history(tmp_path):
    from test_restore_fetch import Writer
    writer = Writer(str(tmp_path))
    write_backup(writer, "tl1", "2026-11-21T00:00:00Z", timeline=1, stop_lsn="0/5000138")
    # Timeline 2 branched off timeline 1 after the backup stopped: the backup is on its history.
    assert choose(writer, timeline=2, history={1: 0x6000000})[0]["name"] == "tl1"
    # Branched off before the backup stopped, or no history known: not a base.
    assert "timeline 2" in choose(writer, timeline=2, history={1: 0x4000000})[3]
    assert choose(writer, timeline=2, history=None)[0] is None
    # A newer backup on a sibling timeline (3, off 1) is skipped for the older one on the history.
    write_backup(writer, "tl3", "2026-11-22T00:00:00Z", timeline=3)
    assert choose(writer, timeline=2, history={1: 0x6000000})[0]["name"] == "tl1"


def test_timeline_history_file_is_read_from_pg_wal(tmp_path):
    os.makedirs(str(tmp_path / "pg_wal"))
    (tmp_path / "pg_wal" / "00000003.history").write_text(
        "1\t0/5000138\tno recovery target specified\n\n2\t0/9000000\tat restore point \"x\"\n")
    assert delta.timeline_history(str(tmp_path), 3) == {1: 0x5000138, 2: 0x9000000}
    assert delta.timeline_history(str(tmp_path), 1) == {}
    assert delta.timeline_history(str(tmp_path), 4) is None


@pytest.mark.parametrize("limit_pages,invalid_at,expect", [
    (100, None, 1), (4, None, 1), (3, None, 2), (1, None, 2), (1, 8, 2), (0, None, 2), (0, 1, "whole")])
def test_pages_delta_streams_past_the_memory_limit_even_when_it_is_reached_at_the_end(limit_pages, invalid_at, expect):
    old = [page(10 + i, bytes([65 + i])) for i in range(8)]
    new = old[:5] + [page(900, b"z"), page(901, b"y"), old[7], page(903, b"v"), page(902, b"w")]  # 4 changed, 2 at the end
    if invalid_at is not None:
        new[invalid_at] = os.urandom(BLCKSZ)
    base = scan(b"".join(old))
    pages = delta.Pages({"name": "b", "start_lsn": "0/64"}, {"base/5/16384": bytes(base.hashes)})
    pages.limit = limit_pages * BLCKSZ
    handle = io.BytesIO(b"".join(new))
    size = len(handle.getvalue())
    got = pages.delta("base/5/16384", handle, size, 2 * BLCKSZ)
    if expect == "whole":  # an invalid page before streaming started: the file goes whole
        assert got is None and handle.tell() == 0
        return
    member = b"".join(got.chunks())
    assert len(member) == got.member_size and member[8] == expect
    whole = filedigest.new({"digest": "pages"})
    whole.update(b"".join(new))
    assert got.sha256 == whole.hexdigest()
    assert apply_to(b"".join(old), member, size) == b"".join(new)
    assert got.pages == 4 + (invalid_at is not None and invalid_at < 5)
    assert ("base/5/16384" in pages.hashes) is (invalid_at is None)  # an invalid page: no hashes, next time whole
    assert pages.delta("base/5/other", io.BytesIO(b""), 0, BLCKSZ) is None  # not in the base: whole


def test_unchanged_files_need_no_member():
    old = [page(10 + i) for i in range(3)]
    pages = delta.Pages({"name": "b", "start_lsn": "0/64"}, {"base/5/1": bytes(scan(b"".join(old)).hashes)})
    got = pages.delta("base/5/1", io.BytesIO(b"".join(old)), 3 * BLCKSZ, BLCKSZ)
    assert got.member_size == 0 and list(got.chunks()) == [] and pages.stats["unchanged_files"] == 1
    shrunk = pages.delta("base/5/1", io.BytesIO(b"".join(old[:2])), 2 * BLCKSZ, BLCKSZ)
    assert shrunk.member_size == delta.delta_member_size(0)  # no page changed, but the file is shorter


def test_streamed_members_must_end_in_zeros():
    member = bytearray(b"".join([delta.DELTA_HEAD.pack(delta.DELTA_MAGIC, 2, 0, BLCKSZ, 2 * BLCKSZ, 0, 0),
                                 delta.RECORD.pack(1), page(5), delta.RECORD.pack(delta.END_MARK)]))
    member += bytes(delta.streamed_member_size(2) - len(member))
    assert apply_to(page(1) * 2, bytes(member), 2 * BLCKSZ) == page(1) + page(5)
    member[-1] = 1
    with pytest.raises(IntegrityError, match="after its end mark"):
        apply_to(b"", bytes(member), 2 * BLCKSZ)


def test_page_digest_is_the_sha256_of_page_sha256s_in_any_pieces():
    import hashlib
    import os
    from walrus import filedigest
    data = os.urandom(8192 * 5 + 100)
    want = hashlib.sha256(b"".join(hashlib.sha256(data[i:i + 8192]).digest()
                                   for i in range(0, len(data), 8192))).hexdigest()
    for piece in (1, 1000, 8192, 9000, 1 << 20):
        digest = filedigest.new({"digest": "pages"})
        for i in range(0, len(data), piece):
            digest.update(data[i:i + piece])
        assert digest.hexdigest() == want
    scanner = delta.PageScanner()
    scanner.update(data[:8192 * 3])
    scanner.update(data[8192 * 3:])
    assert scanner.sha256() == want
    assert filedigest.new({}).name == "sha256"
    flipped = bytearray(data)
    flipped[8192 * 2 + 7] ^= 1
    other = filedigest.new({"digest": "pages"})
    other.update(bytes(flipped))
    assert other.hexdigest() != want


def test_unknown_digest_kind_is_refused():
    from walrus import filedigest
    from walrus.errors import IntegrityError
    with pytest.raises(IntegrityError, match="digest kind 'md4'"):
        filedigest.new({"path": "base/1/1", "digest": "md4"})
