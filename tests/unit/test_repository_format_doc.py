"""The decoding and decrypting snippets in docs/repository-format.md must read what walrus writes."""
import os
import re

import pytest

from walrus import codec, config, encryption, wal, walnames

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "docs", "repository-format.md")


def doc_function(name="decode_walrus_object"):
    with open(DOC) as handle:
        text = handle.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    snippet = [b for b in blocks if "def %s" % name in b]
    assert len(snippet) == 1, "docs/repository-format.md must hold one %s snippet" % name
    namespace = {"__name__": "walrus_decode_doc"}
    exec(compile(snippet[0], DOC, "exec"), namespace)
    return namespace[name]


def doc_decoder():
    return doc_function("decode_walrus_object")


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_snippet_decodes_codec_output(compression):
    raw = os.urandom(3000) + b"\0" * 200000
    assert doc_decoder()(codec.encode(raw, compression)) == raw


def test_snippet_decodes_a_pushed_segment_and_refuses_a_damaged_one(tmp_path):
    segsize, segno = 1 << 20, 5
    name = walnames.segment_name(1, segno, segsize)
    head = walnames.LONG_HEADER.pack(0xD110, walnames.XLP_LONG_HEADER, 1, segno * segsize, 0, 4242, segsize, 8192)
    raw = head + os.urandom(1000) + b"\0" * (segsize - len(head) - 1000)
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    (pg_wal / name).write_bytes(raw)
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = config.load({"repo": str(repo), "lookahead": 0}, environ={})
    wal.push(settings, str(pg_wal / name))
    stored = (repo / "wal" / "00000001" / name).read_bytes()
    decode = doc_decoder()
    assert decode(stored) == raw
    damaged = bytearray(stored)
    damaged[-40] ^= 1  # inside the trailer's raw length
    with pytest.raises(ValueError):
        decode(bytes(damaged))


@pytest.mark.parametrize("size", [0, 100, 3 << 20])
def test_snippet_decrypts_what_walrus_encrypts(tmp_path, size):
    from cryptography.exceptions import InvalidTag
    key, other = os.urandom(32), os.urandom(32)
    raw = os.urandom(size // 2) + b"\0" * (size - size // 2)
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = config.load({"repo": str(repo), "encryption_key": key.hex()}, environ={})
    from walrus.storage import open_storage
    open_storage(settings).put_stream("obj", iter([codec.encode(raw, "lz4")]))
    stored = (repo / "obj").read_bytes()
    decrypt, decode = doc_function("decrypt_walrus_object"), doc_decoder()
    assert decode(decrypt(stored, [other, key])) == raw
    assert decrypt(codec.encode(raw, "none"), []) == codec.encode(raw, "none")  # unencrypted: as it is
    with pytest.raises(ValueError, match="key id %s" % stored[16:24].hex()):
        decrypt(stored, [other])
    for damaged in (stored[:-1], stored[:-(encryption.RECORD_SIZE + 16)] if size > (2 << 20) else stored[:-3],
                    stored[:30] + bytes([stored[30] ^ 1]) + stored[31:]):
        with pytest.raises((InvalidTag, ValueError)):
            decrypt(damaged, [key])
