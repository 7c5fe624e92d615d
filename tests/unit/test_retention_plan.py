"""The pure planning of retention (what to keep and delete, given sentinels and WAL names) and
of wal-verify (which segments must be there), plus the deletion order on a directory repository."""
import datetime
import json
import os

import pytest

from walrus import backups, codec, retention, walnames, walverify
from walrus.errors import IntegrityError, NotFound, UsageError
from walrus.storage.fs import FsStorage

SEG = 16 << 20


def seg(tli, segno):
    return walnames.segment_name(tli, segno, SEG)


def sentinel(name, day, start, tli=1, kind=None, base=None, chain=None):
    """A sentinel of a backup that started at segment `start` and stopped on `day`."""
    out = {"name": name, "start_wal": seg(tli, start), "stop_wal": seg(tli, start + 1), "timeline": tli,
           "start_time": "2026-11-%02dT01:00:00Z" % day, "stop_time": "2026-11-%02dT01:05:00Z" % day,
           "start_lsn": "0/%X" % (start * SEG + 0x28), "stop_lsn": "0/%X" % ((start + 1) * SEG + 0x100)}
    if kind:
        out.update(kind=kind, base=base, chain=chain)
    return out


def weekly():
    """full f1 (day 1), deltas d1a d1b; full f2 (day 8), deltas d2a d2b; full f3 (day 15), delta d3a."""
    return [
        sentinel("f1", 1, 2), sentinel("d1a", 2, 4, kind="delta", base="f1", chain=["f1"]),
        sentinel("d1b", 3, 6, kind="delta", base="d1a", chain=["f1", "d1a"]),
        sentinel("f2", 8, 10, kind="full"), sentinel("d2a", 9, 12, kind="delta", base="f2", chain=["f2"]),
        sentinel("d2b", 10, 14, kind="delta", base="d2a", chain=["f2", "d2a"]),
        sentinel("f3", 15, 16), sentinel("d3a", 16, 18, kind="delta", base="f3", chain=["f3"]),
    ]


def names(sentinels):
    return [s["name"] for s in sentinels]


def test_retain_n_keeps_the_newest_and_every_base_they_need():
    keep, delete, problems = retention.select(weekly(), "retain", count=3)
    # d3a, f3, d2b are the 3 newest; d2b needs d2a and f2.
    assert sorted(keep) == ["d2a", "d2b", "d3a", "f2", "f3"]
    assert "base of delta d2b" in keep["f2"] and "base of delta d2b" in keep["d2a"]
    # newest first: a delta is always deleted before its base
    assert names(delete) == ["d1b", "d1a", "f1"] and problems == []


def test_retain_full_keeps_n_full_backups_and_their_deltas():
    keep, delete, _problems = retention.select(weekly(), "retain", count=2, full=True)
    assert sorted(keep) == ["d2a", "d2b", "d3a", "f2", "f3"]
    assert names(delete) == ["d1b", "d1a", "f1"]
    keep, delete, _problems = retention.select(weekly(), "retain", count=1, full=True)
    assert sorted(keep) == ["d3a", "f3"]


def test_permanent_backups_and_their_chain_survive_and_the_newest_full_always_does():
    keep, delete, _problems = retention.select(weekly(), "retain", count=1, permanent={"d1a"})
    assert sorted(keep) == ["d1a", "d3a", "f1", "f3"]
    assert "permanent" in keep["d1a"] and "base of delta d1a" in keep["f1"]
    assert "the newest full backup" in keep["f3"]
    assert names(delete) == ["d2b", "d2a", "f2", "d1b"]


def test_deltas_without_kind_fields_are_full_and_a_chain_is_followed_through_base_links():
    plain = [sentinel("a", 1, 2), sentinel("b", 2, 4)]
    keep, delete, _problems = retention.select(plain, "retain", count=1)
    assert sorted(keep) == ["b"] and names(delete) == ["a"]
    linked = [sentinel("a", 1, 2), sentinel("b", 2, 4, kind="delta", base="a"),
              sentinel("c", 3, 6, kind="delta", base="b")]
    chains, problems = retention.chains(linked)
    assert chains["c"] == ["a", "b"] and problems == []
    keep, delete, _problems = retention.select(linked, "retain", count=1)
    assert sorted(keep) == ["a", "b", "c"] and delete == []


def test_a_delta_with_a_missing_base_is_reported():
    broken = [sentinel("b", 2, 4, kind="delta", base="gone", chain=["gone"]), sentinel("c", 3, 6)]
    _keep, delete, problems = retention.select(broken, "retain", count=1)
    assert names(delete) == ["b"] and "depends on gone" in problems[0]


def test_before_a_name_or_a_time():
    keep, delete, _problems = retention.select(weekly(), "before", before_name="f2")
    assert sorted(keep) == ["d2a", "d2b", "d3a", "f2", "f3"] and names(delete) == ["d1b", "d1a", "f1"]
    # A delta named: its bases stay.
    keep, delete, _problems = retention.select(weekly(), "before", before_name="d2b")
    assert sorted(keep) == ["d2a", "d2b", "d3a", "f2", "f3"]
    # A time: the newest backup that ended by then (d2a, day 9) stays, so PITR to that time still works.
    when = datetime.datetime(2026, 11, 9, 12, 0, tzinfo=datetime.timezone.utc)
    keep, delete, _problems = retention.select(weekly(), "before", before_time=when)
    assert sorted(keep) == ["d2a", "d2b", "d3a", "f2", "f3"]
    # A time before every backup deletes nothing.
    early = datetime.datetime(2026, 10, 1, tzinfo=datetime.timezone.utc)
    assert retention.select(weekly(), "before", before_time=early)[1] == []
    with pytest.raises(NotFound):
        retention.select(weekly(), "before", before_name="nope")


def test_retain_needs_at_least_one():
    with pytest.raises(UsageError):
        retention.select(weekly(), "retain", count=0)


def wal(*items):
    return [walnames.parse(n) for n in items]


def test_wal_before_the_oldest_kept_start_goes_oldest_first_history_and_other_branches_stay():
    kept = [sentinel("f2", 8, 10, tli=2), sentinel("f3", 15, 16, tli=2)]
    names_ = wal(seg(1, 3), seg(1, 4), "000000010000000000000005.00000028.backup", seg(1, 9) + ".partial",
                 seg(1, 10), "00000002.history", seg(2, 9), seg(2, 10), seg(2, 11),
                 "00000003.history", seg(3, 7))
    histories = {2: [(1, 9 * SEG + 0x100)], 3: [(1, 7 * SEG)]}
    doomed, first = retention.plan_wal(kept, names_, histories, SEG)
    # Timeline 3 branched off timeline 1 elsewhere: not on a kept backup's history, kept.
    assert [n.name for n in doomed] == [seg(1, 3), seg(1, 4), "000000010000000000000005.00000028.backup",
                                        seg(1, 9) + ".partial", seg(2, 9)]
    assert first == seg(2, 10)
    assert retention.plan_wal([], names_, histories, SEG) == ([], None)


def test_incomplete_backups_younger_than_the_safety_age_are_left_alone():
    groups = {"old": [("basebackups/old/part-00001.tar", 10, 1000.0), ("basebackups/old/manifest.json", 5, 1100.0)],
              "running": [("basebackups/running/part-00001.tar", 10, 9000.0)]}
    old, young = retention.plan_incomplete(groups, now=10000.0, min_age=3600)
    assert [e["name"] for e in old] == ["old"] and old[0]["bytes"] == 15
    assert [e["name"] for e in young] == ["running"]


def test_parse_age():
    assert retention.parse_age("90") == 90 and retention.parse_age("6h") == 21600 and retention.parse_age("2d") == 172800
    with pytest.raises(UsageError):
        retention.parse_age("soon")


# --- wal-verify's pure check ----------------------------------------------------------

def archive_of(*items, partial=()):
    archive = walverify.Archive()
    for name in items:
        parsed = walnames.parse(name)
        if parsed.kind == "segment":
            archive.segments.setdefault(parsed.timeline, {})[parsed.segno(SEG)] = 1764000000.0
        elif parsed.kind == "history":
            archive.histories[parsed.timeline] = parsed.object_key()
        elif parsed.kind == "partial":
            archive.partials.setdefault(parsed.timeline, {})[parsed.segno(SEG)] = name
    return archive


def test_verify_a_healthy_archive_across_a_timeline_switch():
    archive = archive_of(seg(1, 2), seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6) + ".partial",
                         "00000002.history", seg(2, 6), seg(2, 7), seg(1, 1))
    histories = {2: [(1, 6 * SEG + 0x2000)]}
    result = walverify.plan_check(archive, histories, [sentinel("b", 1, 3)], SEG)
    assert result["ok"] and result["missing"] == [] and result["segments_checked"] == 5
    assert [e["timeline"] for e in result["timeline_path"]] == [1, 2]
    assert result["timeline_path"][0]["partial_stored"] is True
    assert result["end"]["segment"] == seg(2, 7)
    window = result["window"]
    assert window["from_backup"] == "b" and window["to_segment"] == seg(2, 7) and window["complete"]
    assert window["to_lsn"] == "0/8000000"


def test_verify_names_a_missing_segment_and_the_window_stops_before_it():
    archive = archive_of(seg(1, 3), seg(1, 4), seg(1, 6), seg(1, 7))
    result = walverify.plan_check(archive, {}, [sentinel("b", 1, 3)], SEG)
    assert not result["ok"] and result["missing"] == [seg(1, 5)]
    assert result["window"]["to_segment"] == seg(1, 4) and not result["window"]["complete"]


def test_verify_a_backup_whose_own_wal_is_missing_and_a_timeline_without_history():
    archive = archive_of(seg(1, 3), seg(1, 5), seg(2, 9))
    result = walverify.plan_check(archive, {}, [sentinel("b", 1, 3), sentinel("c", 2, 7)], SEG)
    assert seg(1, 4) in result["missing"] and seg(1, 7) in result["missing"] and seg(1, 8) in result["missing"]
    assert [b["restorable"] for b in result["backups"]] == [False, False]
    assert any("no history file" in p for p in result["problems"])
    assert result["window"] is None


def test_history_files_are_parsed_and_checked():
    text = "1\t0/9000100\tno recovery target specified\n\n2\t0/C000000\tat restore point \"x\"\n"
    assert walverify.parse_history(text, 3) == [(1, 0x9000100), (2, 0xC000000)]
    with pytest.raises(IntegrityError):
        walverify.parse_history("5\t0/1\n", 3)


# --- plan and execute on a directory repository ----------------------------------------

def put_json(storage, key, body):
    storage.put(key, codec.encode(json.dumps(body).encode("utf-8"), "none"), overwrite=True)


def make_backup(storage, s, complete=True):
    storage.put(backups.backup_key(s["name"], "part-00001.tar"), b"x" * 10)
    storage.put(backups.backup_key(s["name"], "manifest.json"), b"m")
    if complete:
        body = dict(s, format=backups.SENTINEL_FORMAT, format_version=1, manifest_sha256="0" * 64)
        put_json(storage, backups.backup_key(s["name"], "sentinel.json"), body)


class Recorder(FsStorage):
    def __init__(self, root):
        FsStorage.__init__(self, root)
        self.deleted = []

    def delete(self, keys):
        keys = list(keys)
        self.deleted.extend(keys)
        FsStorage.delete(self, keys)


def test_plan_and_execute_in_a_directory_repository(tmp_path):
    storage = Recorder(str(tmp_path))
    identity = {"format": "walrus", "format_version": 1, "system_identifier": "1", "wal_segment_size": SEG}
    storage.put("walrus-repository.json", json.dumps(identity).encode())
    for s in weekly()[:4]:
        make_backup(storage, s)
    make_backup(storage, sentinel("failed", 5, 8), complete=False)
    for n in range(1, 12):
        storage.put("wal/00000001/" + seg(1, n), codec.encode(b"w", "none"))
    before = sorted(k for k, _s in storage.list())

    result = retention.delete(storage=storage, mode="retain", count=1)  # dry run: f2 (newest full) kept
    assert [b["name"] for b in result["backups"]] == ["d1b", "d1a", "f1"]
    assert result["wal"] == [seg(1, n) for n in range(1, 10)] and result["wal_kept_from"] == seg(1, 10)
    assert not result["confirmed"] and sorted(k for k, _s in storage.list()) == before and storage.deleted == []

    retention.mark(storage=storage, name="d1a", permanent=True)
    result = retention.delete(storage=storage, mode="retain", count=1, confirm=True)
    assert [b["name"] for b in result["backups"]] == ["d1b"]
    assert result["wal"] == [seg(1, n) for n in range(1, 2)]
    # the sentinel first, then the manifest, then the parts; WAL last; then the lock is released
    assert storage.deleted[:3] == ["basebackups/d1b/sentinel.json", "basebackups/d1b/manifest.json",
                                   "basebackups/d1b/part-00001.tar"]
    assert storage.deleted[3:] == ["wal/00000001/" + seg(1, 1), "locks/repository.json"]
    assert not os.path.exists(os.path.join(str(tmp_path), "basebackups", "d1b"))
    assert [s["name"] for s in backups.list_backups(storage)] == ["f1", "d1a", "f2"]

    retention.mark(storage=storage, name="d1a", permanent=False)
    result = retention.delete(storage=storage, mode="garbage", min_age="1h")
    assert result["incomplete"] == [] and [e["name"] for e in result["incomplete_kept"]] == ["failed"]
    assert result["backups"] == [] and result["wal"] == []
    result = retention.delete(storage=storage, mode="garbage", min_age="0", confirm=True)
    assert [e["name"] for e in result["incomplete"]] == ["failed"]
    assert not any(k.startswith("basebackups/failed/") for k, _s in storage.list())
    with pytest.raises(NotFound):
        retention.mark(storage=storage, name="failed", permanent=True)


def test_nothing_is_deleted_while_a_sentinel_cannot_be_read(tmp_path):
    storage = FsStorage(str(tmp_path))
    for s in weekly()[:4]:
        make_backup(storage, s)
    storage.put(backups.backup_key("f1", "sentinel.json"), b"garbage", overwrite=True)
    with pytest.raises(IntegrityError):
        retention.delete(storage=storage, mode="retain", count=1, confirm=True)
    assert storage.exists(backups.backup_key("d1a", "sentinel.json"))


def test_backups_that_end_in_the_same_second_are_ordered_by_stop_lsn(tmp_path):
    storage = FsStorage(str(tmp_path))
    base, delta = sentinel("z-base", 1, 2), sentinel("a-delta", 1, 4, kind="delta", base="z-base", chain=["z-base"])
    for s in (base, delta):
        make_backup(storage, s)
    assert [s["name"] for s in backups.list_backups(storage)] == ["z-base", "a-delta"]
    assert backups.resolve(storage, backups.LATEST)["name"] == "a-delta"
