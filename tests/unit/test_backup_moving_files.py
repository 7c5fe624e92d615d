"""backup._tar_stream on files that change while they are read (real files, changed at chosen
moments): a vanished file is left out, a small file that shrank ends at its new end, a big one is
padded to its header's size, a grown one is cut at its size when opened; every member matches its
manifest entry, so the backup verifies and restores."""
import io
import os
import tarfile

from walrus import backup, delta, filedigest

MIB = 1 << 20


def _members(stream):
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r|") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _check_entries(members, entries):
    for entry in entries:
        data = members[entry["path"]]
        digest = filedigest.new(entry)
        digest.update(data)
        assert len(data) == entry["size"] and digest.hexdigest() == entry["sha256"], entry["path"]


def test_vanished_small_shrunk_and_grown_files(tmp_path, monkeypatch):
    paths = {}
    for name, size in (("gone", 100), ("pg_hba.conf", 5000), ("grows", 3000), ("kept", 10)):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"%c" % (65 + len(paths)) * size)
    members = [(name, str(path), path.stat().st_size) for name, path in sorted(paths.items())]
    os.unlink(paths["gone"])

    real_fstat = os.fstat

    def fstat_then_change(fd):
        """Stat the file as it was opened, then change it before a byte is read."""
        result = real_fstat(fd)
        name = os.path.basename(os.readlink("/proc/self/fd/%d" % fd))
        if name == "pg_hba.conf":
            os.truncate(paths[name], 1200)
        elif name == "grows":
            with open(paths[name], "ab") as handle:
                handle.write(b"more" * 1000)
        return result
    monkeypatch.setattr(backup.os, "fstat", fstat_then_change)

    entries = []
    got = _members(backup._tar_stream(members, entries, 1, delta.Pages()))
    assert sorted(got) == ["grows", "kept", "pg_hba.conf"]
    assert got["pg_hba.conf"] == b"C" * 1200  # its new end, no NUL padding
    assert got["grows"] == b"D" * 3000  # cut at its size when opened
    _check_entries(got, entries)


def test_big_file_that_shrinks_mid_read_is_padded_and_consistent(tmp_path):
    path = tmp_path / "16384"
    path.write_bytes(b"\1" * (3 * MIB))
    entries = []
    stream = backup._tar_stream([("base/5/16384", str(path), 3 * MIB)], entries, 1, delta.Pages())
    chunks = [next(stream), next(stream)]  # the header and the first MiB
    os.truncate(path, MIB + 8192)  # VACUUM truncated it meanwhile
    chunks.extend(stream)
    got = _members(chunks)
    data = got["base/5/16384"]
    assert len(data) == 3 * MIB and data[:MIB + 8192] == b"\1" * (MIB + 8192) and data[MIB + 8192:].count(0) == len(data) - MIB - 8192
    _check_entries(got, entries)
