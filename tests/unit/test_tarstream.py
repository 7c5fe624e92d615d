"""tarstream.py, the restore's tar reader: what tarfile writes in PAX format reads back member
by member, and every byte that is not member data is checked (header checksums, zero padding,
zeros after the end), since the restore no longer hashes the whole part a second time. Also
backup.plan_parts: the largest part first, small files grouped so the workers finish together."""
import io
import os
import tarfile

import pytest

from walrus import backup, tarstream
from walrus.errors import IntegrityError


class Source(object):
    """read_view() over bytes, in pieces of at most `piece` bytes (as decoded parts arrive)."""

    def __init__(self, data, piece=700):
        self.view, self.piece = memoryview(data), piece

    def read_view(self, size):
        out, self.view = self.view[:min(size, self.piece)], self.view[min(size, self.piece):]
        return out


def make_tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return bytearray(buf.getvalue())


def read_all(raw, piece=700):
    stream = tarstream.TarStream(Source(bytes(raw), piece), "repo/part-00001.tar")
    out = []
    for member in stream:
        if member.isreg():
            out.append((member.name, b"".join(bytes(v) for v in stream.views(300))))
        else:
            out.append((member.name, None))
    return out


LONG = "base/16384/" + "x" * 150  # longer than a ustar name: a pax header carries it
MEMBERS = [("base", None), ("base/1/PG_VERSION", b"15\n"), (LONG, os.urandom(5000)), ("empty", b""),
           ("global/pg_control", os.urandom(8192))]


@pytest.mark.parametrize("piece", [1, 700, 1 << 20])
def test_reads_back_what_tarfile_writes_including_pax_long_names(piece):
    assert read_all(make_tar(MEMBERS), piece) == MEMBERS


def test_extractfile_reads_exact_sizes_and_unread_data_is_skipped():
    stream = tarstream.TarStream(Source(bytes(make_tar(MEMBERS))), "p")
    seen = []
    for member in stream:
        if member.name == LONG:
            reader = stream.extractfile(member)
            assert reader.read(10) == MEMBERS[2][1][:10] and len(reader.read(4000)) == 4000
        seen.append(member.name)  # the other members' data is not read at all
    assert seen == [name for name, _d in MEMBERS]


def offset_after_member(raw, name):
    """Raw offset of the padding after member `name`'s data."""
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        member = tar.getmember(name)
        return member.offset_data + member.size


@pytest.mark.parametrize("damage, message", [
    ("padding", "non-zero bytes in the padding of a member"),
    ("after_end", "non-zero bytes after the end of the archive"),
    ("header", "a damaged header"),
    ("truncated", "truncated"),
    ("pax", "malformed pax record"),
])
def test_every_byte_that_is_not_member_data_is_checked(damage, message):
    raw = make_tar(MEMBERS)
    if damage == "padding":
        raw[offset_after_member(raw, "base/1/PG_VERSION") + 5] = 0x41
    elif damage == "after_end":
        raw[-3] = 1
    elif damage == "header":
        raw[512 + 136] ^= 0x01  # mtime digit of the second header: its checksum no longer adds up
    elif damage == "truncated":
        raw = raw[:offset_after_member(raw, LONG) - 10]
    elif damage == "pax":
        start = raw.index(b" path=")
        raw[start - 3:start] = b"x99"
    with pytest.raises(IntegrityError, match="part repo/part-00001.tar is not a valid tar stream: .*" + message):
        read_all(raw)


def test_member_of_another_type_with_data_is_refused():
    raw = make_tar([("a", b"x")])
    info = tarfile.TarInfo("d")
    info.type, info.size = tarfile.DIRTYPE, 3
    block = info.tobuf(tarfile.PAX_FORMAT)
    raw = raw[:1024] + block + b"abc" + bytes(509) + bytes(1024)
    with pytest.raises(IntegrityError, match="member d of type .* with 3 bytes of data"):
        read_all(raw)


def test_plan_parts_puts_the_largest_part_first_and_groups_small_files(tmp_path):
    files = []
    for name, size in [("a/1", 3 << 20), ("a/2", 3 << 20), ("b/big", 80 << 20), ("c/1", 20 << 20),
                       ("c/2", 2 << 20), ("c/3", 1 << 20)]:
        path = tmp_path / name.replace("/", "_")
        with open(str(path), "wb") as handle:
            handle.truncate(size)
        files.append((name, str(path)))
    files.append(("gone", str(tmp_path / "gone")))
    parts = backup.plan_parts(files, jobs=1, part_bytes=64 << 20)
    sizes = [sum(item[2] for item in members) for members in parts]
    assert sizes == sorted(sizes, reverse=True)
    assert [item[0] for item in parts[0]] == ["b/big"]  # bigger than a small-file part: a part of its own
    # 109 MiB over 4 parts per job: small files in path order, in parts of at most ~27 MiB
    assert [[item[0] for item in members] for members in parts[1:]] == [["a/1", "a/2", "c/1"], ["c/2", "c/3"]]
    assert sorted(item[0] for members in parts for item in members) == sorted(n for n, _p in files if n != "gone")
