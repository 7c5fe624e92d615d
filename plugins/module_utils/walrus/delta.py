# SPDX-License-Identifier: GPL-3.0-or-later
"""Delta backups: store, for each relation file, only the pages that changed since the base
backup, and put a chain of backups back together on restore. docs/backup-format.md ("Delta
backups") is the format.

Which pages are stored. Every backup (full or delta) records a 64-bit hash of every page of
every relation file it read (`pagehashes.bin`). A delta stores a page when its page LSN
(pd_lsn) is at or after the base's start LSN *and* its content differs from the base's copy,
or when its content differs although its LSN is older: hint bits, free space map pages and
visibility map bit clears change pages without moving pd_lsn, so the LSN alone would restore
stale pages and files whose SHA-256 no longer matches. Pages past the base's end (the file
grew, zero pages included) are stored too. The result: the reconstructed file is byte for
byte the file as this backup read it, so the manifest's size and SHA-256 of the whole file
verify the reconstruction, and a delta is exactly as consistent as a full backup.

Torn reads. Pages are read while PostgreSQL writes them, as in every base backup. A page
read mid-write either carries an LSN at or after this backup's start LSN (it was modified
after the start checkpoint, so WAL replay from this backup's start rewrites it from a
full-page image: the first change after a checkpoint always logs one while a backup runs),
or only its hint bits changed (harmless, not WAL-logged). So whatever bytes were read, the
reconstruction is what a full backup started at the same point could have read, and WAL
replay from the delta's own start makes it consistent. A page torn in the *base* differs
from the current page and is stored again.

When in doubt a file is copied whole: names that are not relation files (unknown forks
included), sizes that are not a multiple of the page size, any page whose header does not
look like an 8 KiB page of layout version 4 (nor an all-zero new page), and files the base
did not have.

A tar header needs the member's size first. Up to DELTA_BUFFER_MAX of changed pages are held
in memory (layout 1: block list, then pages). Past that, the member is streamed instead
(layout 2: (block, page) records as they are found, an end mark, zeros up to the size fixed
when streaming starts: the pages held plus the pages not read yet): memory stays bounded, the zeros cost almost nothing once
compressed. A page that looks invalid after streaming started is simply stored.
"""
import hashlib
import os
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

from . import filedigest, backups, codec, restore
from .errors import IntegrityError, NotFound

BLCKSZ = 8192
PAGE_LAYOUT_VERSION = 4
PAGESIZE_VERSION = BLCKSZ | PAGE_LAYOUT_VERSION
PAGE_HEADER = struct.Struct("<IIHHHHHH")  # pd_lsn (xlogid, xrecoff), checksum, flags, lower, upper, special, pagesize_version
SIZE_OF_PAGE_HEADER = 24
HASH_BYTES = 8
ZERO_PAGE = bytes(BLCKSZ)
DELTA_BUFFER_MAX = 128 << 20  # changed pages of one file held in memory before its member is streamed
DEFAULT_MAX_CHAIN = 6

PAGE_HASHES = "pagehashes.bin"
PAGE_HASHES_MAGIC = b"WALRUSPH"
PAGE_HASHES_HEAD = struct.Struct("<8sHHII")  # magic, version, hash bytes, page size, files
PAGE_HASHES_FILE = struct.Struct("<HI")  # path length, pages

DELTA_MAGIC = b"WALRUSDF"
DELTA_HEAD = struct.Struct("<8sHHIQII")  # magic, layout, reserved, page size, file size, pages, reserved
DELTA_LISTED = 1    # block numbers, then the pages
DELTA_STREAMED = 2  # (block, page) records, END_MARK, zeros to the member's end
RECORD = struct.Struct("<I")
END_MARK = 0xFFFFFFFF
ZEROS = bytes(1 << 20)

REL_NAME = re.compile(r"^\d+(_(fsm|vm|init))?(\.\d+)?$")
REL_DIR = re.compile(r"^(base/\d+|global|pg_tblspc/\d+/[^/]+/\d+)$")


def is_relation_file(rel):
    """Whether a backup path names a relation data file (any known fork, any segment)."""
    directory, _sep, name = rel.rpartition("/")
    return bool(REL_NAME.match(name) and REL_DIR.match(directory))


def page_lsn(page):
    xlogid, xrecoff = struct.unpack_from("<II", page)
    return (xlogid << 32) | xrecoff


def page_is_valid(page):
    """An all-zero (new) page, or a header that looks like PostgreSQL's 8 KiB page layout 4."""
    _hi, _lo, _sum, _flags, lower, upper, special, size_version = PAGE_HEADER.unpack_from(page)
    if size_version == 0:
        return page == ZERO_PAGE
    return (size_version == PAGESIZE_VERSION and SIZE_OF_PAGE_HEADER <= lower <= upper <= special <= BLCKSZ)


def page_hash(page):
    return hashlib.sha256(page).digest()[:HASH_BYTES]


def _page_sha256(page):
    return hashlib.sha256(page).digest()


class PageScanner(object):
    """Fed a relation file's bytes in order: the hash of every page and whether every page
    looked valid. With base hashes, also which pages differ from the base (and their bytes).
    sha256() is the file's filedigest.PAGES digest, from the same page hashes."""

    def __init__(self, base_hashes=None, base_start_lsn=0, keep_changed=False, limit=DELTA_BUFFER_MAX):
        self.hashes = bytearray()
        self.valid = True
        self.base = base_hashes
        self.base_start_lsn = base_start_lsn
        self.keep = keep_changed
        self.limit = limit
        self.changed = []  # (block number, page bytes)
        self.changed_bytes = 0
        self.by_lsn = self.by_content = 0
        self.overflow = False
        self._rest = b""
        self._block = 0
        self.file_digest = filedigest.PageDigest()

    def update(self, chunk):
        if self._rest:
            chunk = self._rest + bytes(chunk)
            self._rest = b""
        view = memoryview(chunk)
        whole = len(view) - len(view) % BLCKSZ
        if whole != len(view):
            self._rest = bytes(view[whole:])
        base, nbase = self.base, len(self.base) // HASH_BYTES if self.base is not None else 0
        add_page = self.file_digest.page
        for off in range(0, whole, BLCKSZ):
            page = view[off:off + BLCKSZ]
            full = _page_sha256(page)
            add_page(full)
            digest = full[:HASH_BYTES]
            self.hashes += digest
            if self.valid and not page_is_valid(page):
                self.valid = False
            block = self._block
            self._block += 1
            if base is None:
                continue
            if block < nbase and base[block * HASH_BYTES:(block + 1) * HASH_BYTES] == digest:
                continue  # byte for byte the base's copy (whatever its LSN says)
            if block < nbase and page_lsn(page) < self.base_start_lsn:
                self.by_content += 1  # hint bits, FSM, VM bit clears: changed without a new LSN
            else:
                self.by_lsn += 1
            if self.keep:
                self.changed.append((block, bytes(page)))
                self.changed_bytes += BLCKSZ
                if self.changed_bytes > self.limit:
                    self.overflow = True  # the caller streams the member from here on

    def finish(self):
        """True when the file was a whole number of valid pages."""
        if self._rest:
            self.valid = False
        return self.valid

    def sha256(self):
        """The hex filedigest.PAGES digest of every byte fed so far."""
        if self._rest:
            self.file_digest.update(self._rest)
            self._rest = b""
            self.valid = False
        return self.file_digest.hexdigest()


def encode_delta(file_size, changed):
    """A listed delta member's bytes, as a list of chunks: header, block numbers, pages."""
    head = DELTA_HEAD.pack(DELTA_MAGIC, DELTA_LISTED, 0, BLCKSZ, file_size, len(changed), 0)
    blocks = struct.pack("<%dI" % len(changed), *[b for b, _p in changed])
    return [head, blocks] + [p for _b, p in changed]


def delta_member_size(pages):
    return DELTA_HEAD.size + 4 * pages + BLCKSZ * pages


def streamed_member_size(pages):
    """A streamed member's size, fixed when it starts: room for `pages` records and the end mark."""
    return DELTA_HEAD.size + pages * (RECORD.size + BLCKSZ) + RECORD.size


class _Digesting(object):
    """Reads from a file-like object, feeding every byte read into a digest."""

    def __init__(self, source, digest, where):
        self.source, self.digest, self.where, self.count = source, digest, where, 0

    def read(self, size):
        data = self.source.read(size)
        if len(data) != size:
            raise IntegrityError("%s is truncated" % self.where)
        self.digest.update(data)
        self.count += size
        return data


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def apply(source, fd, where, expected_file_size, digest):
    """Apply one delta member (read from `source`) to the open file `fd`: set its size, write the
    pages. Every byte read goes into `digest` (the member's SHA-256). Returns the bytes read."""
    reader = _Digesting(source, digest, where)
    magic, layout, _r, block_size, file_size, pages, _r2 = DELTA_HEAD.unpack(reader.read(DELTA_HEAD.size))
    if magic != DELTA_MAGIC or layout not in (DELTA_LISTED, DELTA_STREAMED) or block_size != BLCKSZ:
        raise IntegrityError("%s is not a walrus delta file (layout %d, page size %d)" % (where, layout, block_size))
    if file_size != expected_file_size:
        raise IntegrityError("%s says the file has %d bytes, the manifest says %d" % (where, file_size, expected_file_size))
    os.ftruncate(fd, file_size)
    last = -1

    def check(block):
        if block <= last or (block + 1) * BLCKSZ > file_size:
            raise IntegrityError("%s lists block %d out of order or past the file's end" % (where, block))
        return block
    if layout == DELTA_LISTED:
        blocks = struct.unpack("<%dI" % pages, reader.read(4 * pages))
        for block in blocks:
            last = check(block)
            _pwrite_all(fd, reader.read(BLCKSZ), block * BLCKSZ)
    else:
        while True:
            (block,) = RECORD.unpack(reader.read(RECORD.size))
            if block == END_MARK:
                break
            last = check(block)
            _pwrite_all(fd, reader.read(BLCKSZ), block * BLCKSZ)
        while True:  # the rest of the member is zeros
            data = source.read(len(ZEROS))
            if not data:
                break
            if data != ZEROS[:len(data)]:
                raise IntegrityError("%s holds bytes after its end mark" % where)
            digest.update(data)
            reader.count += len(data)
    if source.read(1):
        raise IntegrityError("%s holds bytes after its last page" % where)
    return reader.count


# ---------------------------------------------------------------------------------------------
# Page hashes object (one per backup)


def encode_page_hashes(hashes):
    out = [PAGE_HASHES_HEAD.pack(PAGE_HASHES_MAGIC, 1, HASH_BYTES, BLCKSZ, len(hashes))]
    for path in sorted(hashes):
        name = path.encode("utf-8", "surrogateescape")
        out.append(PAGE_HASHES_FILE.pack(len(name), len(hashes[path]) // HASH_BYTES))
        out.append(name)
        out.append(bytes(hashes[path]))
    return b"".join(out)


def decode_page_hashes(raw, where):
    try:
        magic, version, hash_bytes, block_size, count = PAGE_HASHES_HEAD.unpack_from(raw)
        if magic != PAGE_HASHES_MAGIC or version != 1 or hash_bytes != HASH_BYTES or block_size != BLCKSZ:
            raise ValueError("unknown header")
        out, offset = {}, PAGE_HASHES_HEAD.size
        for _i in range(count):
            name_len, pages = PAGE_HASHES_FILE.unpack_from(raw, offset)
            offset += PAGE_HASHES_FILE.size
            name = raw[offset:offset + name_len].decode("utf-8", "surrogateescape")
            offset += name_len
            out[name] = raw[offset:offset + pages * HASH_BYTES]
            offset += pages * HASH_BYTES
            if len(out[name]) != pages * HASH_BYTES:
                raise ValueError("truncated")
        if offset != len(raw):
            raise ValueError("trailing bytes")
    except (struct.error, ValueError) as exc:
        raise IntegrityError("page hashes %s are malformed: %s" % (where, exc))
    return out


def read_page_hashes(storage, manifest):
    """The page hashes a backup recorded, verified against its manifest; None if it has none."""
    ref = manifest.get("page_hashes")
    if not isinstance(ref, dict):
        return None
    key = backups.backup_key(manifest["name"], PAGE_HASHES)
    where = storage.describe(key)
    try:
        raw = codec.decode(storage.get(key), where)
    except NotFound:
        raise IntegrityError("backup %s lists page hashes, but %s is missing" % (manifest["name"], where))
    if hashlib.sha256(raw).hexdigest() != ref.get("sha256"):
        raise IntegrityError("page hashes %s do not match the manifest" % where)
    return decode_page_hashes(raw, where)


# ---------------------------------------------------------------------------------------------
# Backup side


class Pages(object):
    """What a backup (full or delta) knows and learns about pages, shared by its part threads:
    the base's page hashes (delta only) and the hashes of every relation file read now."""

    def __init__(self, base=None, base_hashes=None):
        self.base = base  # the base's sentinel, or None for a full backup
        self.base_hashes = base_hashes or {}
        self.base_start_lsn = _lsn(base["start_lsn"]) if base else 0
        self.limit = DELTA_BUFFER_MAX
        self.hashes = {}
        self.lock = threading.Lock()
        self.stats = {"delta_files": 0, "unchanged_files": 0, "whole_files": 0, "pages_stored": 0,
                      "pages_changed_by_lsn": 0, "pages_changed_without_lsn": 0, "pages_read": 0}

    def scanner(self, rel, size):
        """A PageScanner for a file streamed whole, or None when it is not a relation file."""
        if size % BLCKSZ or not is_relation_file(rel):
            return None
        return PageScanner()

    def record(self, rel, scanner, whole=True):
        with self.lock:
            if scanner is not None and scanner.finish():
                self.hashes[rel] = scanner.hashes
                self.stats["pages_read"] += len(scanner.hashes) // HASH_BYTES
            if whole and self.base is not None:
                self.stats["whole_files"] += 1

    def delta(self, rel, handle, size, read_chunk):
        """Start reading an open relation file the base has. Returns None when it must be stored
        whole (then `handle` is rewound), else a DeltaFile: its member_size is known now; its
        chunks() give the member (nothing when no page changed); after them, sha256 is the
        whole file's."""
        if self.base is None or size % BLCKSZ or not is_relation_file(rel) or rel not in self.base_hashes:
            return None
        result = DeltaFile(self, rel, handle, size, read_chunk)
        while result.remaining and not result.scanner.overflow:
            result.read()
            if not result.scanner.valid:
                break
        if not result.scanner.valid or (result.remaining and not result.scanner.overflow):
            handle.seek(0)
            return None
        if result.scanner.overflow:
            # Room for the pages held and every page not read yet: the pages already read and
            # found unchanged need none, so the zeros at the end stay few in the usual case.
            unread = -(-(result.remaining + len(result.scanner._rest)) // BLCKSZ)
            result.member_size = streamed_member_size(len(result.scanner.changed) + unread)
        else:
            result.finish_listed()
        return result

    def done(self, result):
        scanner = result.scanner
        with self.lock:
            if scanner.finish():
                self.hashes[result.rel] = scanner.hashes
            self.stats["pages_read"] += len(scanner.hashes) // HASH_BYTES
            self.stats["unchanged_files" if result.member_size == 0 else "delta_files"] += 1
            self.stats["pages_stored"] += result.pages
            self.stats["pages_changed_by_lsn"] += scanner.by_lsn
            self.stats["pages_changed_without_lsn"] += scanner.by_content


class DeltaFile(object):
    """One relation file read for a delta: listed (changed pages held in memory, the whole file
    read before the member starts) or streamed (past DELTA_BUFFER_MAX)."""

    def __init__(self, pages, rel, handle, size, read_chunk):
        self.owner, self.rel, self.handle, self.size, self.read_chunk = pages, rel, handle, size, read_chunk
        self.scanner = PageScanner(pages.base_hashes[rel], pages.base_start_lsn, keep_changed=True, limit=pages.limit)
        self.remaining = size
        self.member_size = None
        self.pages = 0
        self._listed = None

    def read(self):
        chunk = self.handle.read(min(self.read_chunk, self.remaining)) or bytes(min(self.read_chunk, self.remaining))
        self.scanner.update(chunk)
        self.remaining -= len(chunk)

    def finish_listed(self):
        scanner = self.scanner
        nbase = len(self.owner.base_hashes[self.rel]) // HASH_BYTES
        if not scanner.changed and len(scanner.hashes) // HASH_BYTES == nbase:
            self._listed, self.member_size = [], 0  # unchanged: no member at all
        else:
            self._listed = encode_delta(self.size, scanner.changed)
            self.member_size = sum(len(chunk) for chunk in self._listed)
            self.pages = len(scanner.changed)
        scanner.changed = []

    @property
    def sha256(self):
        """The whole file's filedigest.PAGES digest (valid after chunks())."""
        return self.scanner.sha256()

    def chunks(self):
        if self._listed is not None:
            yield from self._listed
            self._listed = None
        else:
            yield DELTA_HEAD.pack(DELTA_MAGIC, DELTA_STREAMED, 0, BLCKSZ, self.size, 0, 0)
            written = DELTA_HEAD.size
            while True:
                for block, page in self.scanner.changed:
                    yield RECORD.pack(block) + page
                    written += RECORD.size + BLCKSZ
                    self.pages += 1
                self.scanner.changed = []
                if not self.remaining:
                    break
                self.read()
            yield RECORD.pack(END_MARK)
            written += RECORD.size
            while written < self.member_size:
                pad = ZEROS[:min(len(ZEROS), self.member_size - written)]
                written += len(pad)
                yield pad
        self.owner.done(self)


def _lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def timeline_history(datadir, timeline):
    """{ancestor timeline: LSN where the next one branched off} from pg_wal/<TL>.history."""
    if timeline <= 1:
        return {}
    path = os.path.join(datadir, "pg_wal", "%08X.history" % timeline)
    out = {}
    try:
        with open(path) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and fields[0].isdigit() and "/" in fields[1]:
                    out[int(fields[0])] = _lsn(fields[1])
    except OSError:
        return None
    return out


def choose_base(storage, system_identifier, pg_version_num, timeline, history, max_chain):
    """(base sentinel, its manifest, its page hashes, None) for a delta, or (None, None, None,
    reason) when a full backup must be taken."""
    candidates = [s for s in backups.list_backups(storage, problems=[])
                  if str(s.get("system_identifier")) == str(system_identifier)
                  and int(s.get("pg_version_num") or 0) // 10000 == pg_version_num // 10000]
    for sentinel in reversed(candidates):
        tl = int(sentinel.get("timeline") or 1)
        if tl != timeline:
            if history is None or tl not in history or _lsn(sentinel["stop_lsn"]) > history[tl]:
                continue  # not on this timeline's history
        chain = list(sentinel.get("chain") or []) + [sentinel["name"]]
        if len(chain) > max_chain:
            return None, None, None, ("the chain from full backup %s would have %d delta steps, more than "
                                      "--delta-max-chain %d" % (chain[0], len(chain), max_chain))
        manifest = backups.read_manifest(storage, sentinel)
        hashes = read_page_hashes(storage, manifest)
        if hashes is None:
            return None, None, None, "the newest backup, %s, has no page hashes (taken by an older walrus)" % sentinel["name"]
        return sentinel, manifest, hashes, None
    return None, None, None, "no complete backup of this cluster on timeline %d's history" % timeline


# ---------------------------------------------------------------------------------------------
# Restore side


def load_chain(storage, sentinel, manifest):
    """[(sentinel, manifest)] of the backups a delta depends on, full first, checked to be one
    chain of this cluster. Empty for a full backup."""
    if manifest.get("kind", "full") != "delta":
        return []
    names = manifest.get("chain")
    if (not isinstance(names, list) or not names or manifest.get("base") != names[-1]
            or any(not isinstance(n, str) or not backups.NAME_RE.match(n) for n in names)):
        raise IntegrityError("delta backup %s has a malformed chain %r (base %r)"
                             % (manifest["name"], names, manifest.get("base")))
    out = []
    for i, name in enumerate(names):
        try:
            older = backups.read_sentinel(storage, name)
        except NotFound:
            raise IntegrityError("delta backup %s depends on backup %s, which is not in %s (deleted?)"
                                 % (manifest["name"], name, storage.describe()))
        older_manifest = backups.read_manifest(storage, older)
        kind = older_manifest.get("kind", "full")
        expected_kind = "full" if i == 0 else "delta"
        if (kind != expected_kind or (older_manifest.get("chain") or []) != names[:i]
                or older_manifest.get("base") != (names[i - 1] if i else None)
                or str(older_manifest.get("system_identifier")) != str(manifest.get("system_identifier"))):
            raise IntegrityError("backup %s is not the %s backup %s's chain expects (kind %s, chain %r)"
                                 % (name, expected_kind, manifest["name"], kind, older_manifest.get("chain")))
        out.append((older, older_manifest))
    return out


class _ChainRestorer(restore._Restorer):
    """Applies one backup of a chain to the target: whole files are (re)written, delta files
    patched in place; files the newest backup no longer has are never written."""

    def _write(self, tar, member, entry, name, where, dirs):
        if name not in self.plan.files:
            return  # dropped before the newest backup: tarfile skips its bytes
        root, rel = self.plan.locate(name)
        parent, _sep, base = rel.rpartition("/")
        if name == restore.PG_CONTROL:
            base = restore.PG_CONTROL_PENDING
        parent_fd = dirs.fd(root, parent)
        source = tar.extractfile(member)
        digest = filedigest.for_member(entry)
        if entry.get("stored") == "delta":
            try:
                fd = os.open(base, _PATCH_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                raise IntegrityError("part %s holds changed pages of %s, but no earlier backup of the chain had "
                                     "that file" % (where, name))
            try:
                size = apply(source, fd, "file %s in part %s" % (name, where), entry["size"], digest)
                self.progress.add(size)
            finally:
                os.close(fd)
            expected = (entry["stored_size"], entry.get("stored_sha256"))
        else:
            fd = os.open(base, _REWRITE_FLAGS, 0o600, dir_fd=parent_fd)
            size = 0
            try:
                while True:
                    chunk = source.read(restore.READ_SIZE)
                    if not chunk:
                        break
                    digest.update(chunk)
                    size += len(chunk)
                    restore._write_all(fd, chunk)
                    self.progress.add(len(chunk))
            finally:
                os.close(fd)
            expected = (entry["size"], entry["sha256"])
        if (size, digest.hexdigest()) != expected:
            raise IntegrityError("file %s from part %s does not match the manifest: %d bytes with SHA-256 %s, "
                                 "manifest says %d bytes with SHA-256 %s" % (name, where, size, digest.hexdigest(),
                                                                             expected[0], expected[1]))
        with self.lock:
            self.bytes += size


_PATCH_FLAGS = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_REWRITE_FLAGS = _PATCH_FLAGS | os.O_CREAT | os.O_TRUNC
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _index(manifest, where):
    """A chain member's parts and files, checked enough to stream them safely."""
    parts = {}
    for part in manifest["parts"]:
        if (not isinstance(part, dict) or not isinstance(part.get("number"), int)
                or not restore._PART_KEY.match(str(part.get("key"))) or not restore._HEX64.match(str(part.get("sha256")))
                or part["number"] in parts):
            raise IntegrityError("manifest %s has a malformed part entry %r" % (where, part))
        parts[part["number"]] = part
    files = {}
    for entry in manifest["files"]:
        path = restore._check_relpath(entry.get("path") if isinstance(entry, dict) else None, "manifest %s file" % where)
        stored = entry.get("stored", "whole")
        ok = isinstance(entry.get("size"), int) and restore._HEX64.match(str(entry.get("sha256")))
        if stored == "base":
            ok = ok and entry.get("part") is None
        elif stored == "delta":
            ok = (ok and entry.get("part") in parts and isinstance(entry.get("stored_size"), int)
                  and restore._HEX64.match(str(entry.get("stored_sha256"))))
        else:
            ok = ok and stored == "whole" and entry.get("part") in parts
        if not ok or path in files:
            raise IntegrityError("manifest %s has a malformed or repeated entry for file %s" % (where, path))
        files[path] = entry
    return files, parts


def restore_chain(storage, chain, plan, roots, jobs, progress=None):
    """Apply [(sentinel, manifest)] (full first, the backup being restored last) into the
    target's roots, then check every file against the newest manifest. Returns (files, bytes)."""
    written = 0
    for sentinel, manifest in chain:
        where = storage.describe(backups.backup_key(sentinel["name"], backups.MANIFEST))
        files, parts = _index(manifest, where)
        restorer = _ChainRestorer(storage, sentinel, plan, roots, threading.Event(), files, parts, progress)
        restore.run_parts(restorer, jobs)
        written += restorer.bytes
    _verify(plan, roots, jobs)
    return len(plan.files), written


def _verify(plan, roots, jobs):
    """Every file of the newest manifest: size and SHA-256 of the reconstruction; mode and mtime."""
    paths = sorted(plan.files)
    groups = [paths[i::max(1, jobs)] for i in range(max(1, jobs))]

    def check(group):
        dirs = restore._Dirs(roots)
        try:
            for name in group:
                entry = plan.files[name]
                root, rel = plan.locate(name)
                parent, _sep, base = rel.rpartition("/")
                if name == restore.PG_CONTROL:
                    base = restore.PG_CONTROL_PENDING
                try:
                    fd = os.open(base, _READ_FLAGS, dir_fd=dirs.fd(root, parent))
                except FileNotFoundError:
                    raise IntegrityError("file %s of the manifest was in no backup of the chain" % name)
                try:
                    digest, size = filedigest.new(entry), 0
                    while True:
                        chunk = os.read(fd, restore.READ_SIZE * 4)
                        if not chunk:
                            break
                        digest.update(chunk)
                        size += len(chunk)
                    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                        raise IntegrityError(
                            "file %s, put together from the backup chain, does not match the manifest: %d bytes with "
                            "SHA-256 %s, manifest says %d bytes with SHA-256 %s"
                            % (name, size, digest.hexdigest(), entry["size"], entry["sha256"]))
                    os.fchmod(fd, entry["mode"] & 0o777)
                    if isinstance(entry.get("mtime"), (int, float)):
                        os.utime(fd, (entry["mtime"], entry["mtime"]))
                    os.fsync(fd)  # the file is final: durable before the restore's directories are fsynced
                finally:
                    os.close(fd)
        finally:
            dirs.close()

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        for future in [pool.submit(check, g) for g in groups]:
            future.result()


__all__ = ["Pages", "PageScanner", "is_relation_file", "choose_base", "load_chain", "apply", "encode_delta"]
