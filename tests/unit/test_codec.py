import os

import pytest

from walrus import codec
from walrus.errors import IntegrityError

RAW = os.urandom(100000) + b"\0" * 300000 + b"walrus" * 5000


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_round_trip_and_header_names_codec(compression):
    blob = codec.encode(RAW, compression)
    assert blob[:6] == b"WALRUS"
    assert blob[7] == codec.COMPRESSION_IDS[compression]
    assert codec.decode(blob, "x") == RAW
    if compression != "none":
        assert len(blob) < len(RAW)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_streaming_encoder_and_decoder_agree_with_one_shot(compression):
    enc = codec.Encoder(compression)
    parts = [enc.header()]
    for start in range(0, len(RAW), 65536):
        parts.append(enc.update(RAW[start:start + 65536]))
    parts.append(enc.finish())
    blob = b"".join(parts)
    assert codec.decode(blob, "x") == RAW
    dec = codec.Decoder("x")
    out = [dec.update(blob[i:i + 7777]) for i in range(0, len(blob), 7777)]
    dec.finish()
    assert b"".join(out) == RAW
    one_shot = codec.encode(RAW, compression)
    dec2 = codec.Decoder("y")
    assert dec2.update(one_shot) + dec2.finish() == RAW


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("where", ["body", "trailer_sum", "trailer_len"])
def test_any_flipped_byte_is_detected_naming_the_object(compression, where):
    blob = bytearray(codec.encode(RAW, compression))
    pos = {"body": len(blob) // 2, "trailer_sum": len(blob) - 5, "trailer_len": len(blob) - 40}[where]
    blob[pos] ^= 0x40
    with pytest.raises(IntegrityError, match="wal/00000001/X"):
        codec.decode(bytes(blob), "wal/00000001/X")
    dec = codec.Decoder("wal/00000001/X")
    with pytest.raises(IntegrityError, match="wal/00000001/X"):
        dec.update(bytes(blob))
        dec.finish()


@pytest.mark.parametrize("cut", [1, 10, 48, 1000])
def test_truncated_object_is_detected(cut):
    blob = codec.encode(RAW, "lz4")
    with pytest.raises(IntegrityError, match="truncated|corrupt"):
        codec.decode(blob[:-cut], "obj")


def test_not_a_walrus_object():
    with pytest.raises(IntegrityError, match="not a walrus object"):
        codec.decode(b"\0" * 100, "obj")
    with pytest.raises(IntegrityError, match="truncated"):
        codec.decode(b"WAL", "obj")


def test_unknown_codec_id_is_reported():
    blob = bytearray(codec.encode(b"abc", "none"))
    blob[7] = 9
    with pytest.raises(IntegrityError, match="compression id 9"):
        codec.decode(bytes(blob), "obj")


def _streamed(compression, digest_of_body):
    enc = codec.Encoder(compression, digest_of_body=digest_of_body)
    blob = enc.header() + b"".join(enc.update(RAW[i:i + 65536]) for i in range(0, len(RAW), 65536)) + enc.finish()
    return enc, blob


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_digest_of_body_objects_decode_and_carry_the_stored_bodys_digest(compression):
    import hashlib
    enc, blob = _streamed(compression, True)
    assert blob[9] == codec.DIGEST_OF_BODY
    body = blob[codec.HEADER.size:-codec.TRAILER_SIZE]
    assert enc.sha256 == hashlib.sha256(body).hexdigest() == blob[-32:].hex()
    assert codec.decode(blob, "x") == RAW
    for digest in (True, False):  # the body's digest is checked even when the raw one is not asked for
        dec = codec.Decoder("x", digest=digest)
        assert b"".join(dec.update(blob[i:i + 5000]) for i in range(0, len(blob), 5000)) + dec.finish() == RAW
        assert dec.sha256 == enc.sha256


@pytest.mark.parametrize("digest", [True, False])
@pytest.mark.parametrize("where", ["body", "trailer_sum"])
def test_digest_of_body_objects_detect_a_flipped_byte(digest, where):
    _enc, blob = _streamed("none", True)  # uncompressed: a flipped body byte still decodes
    blob = bytearray(blob)
    blob[{"body": len(blob) // 2, "trailer_sum": len(blob) - 5}[where]] ^= 0x40
    with pytest.raises(IntegrityError, match="part-00001.tar is corrupt: SHA-256 mismatch"):
        codec.decode(bytes(blob), "part-00001.tar")
    dec = codec.Decoder("part-00001.tar", digest=digest)
    with pytest.raises(IntegrityError, match="part-00001.tar is corrupt: SHA-256 mismatch"):
        dec.update(bytes(blob))
        dec.finish()


def test_unknown_header_flags_are_refused():
    blob = bytearray(codec.encode(b"abc", "none"))
    blob[9] = 0x80
    with pytest.raises(IntegrityError, match="header flags 0x80"):
        codec.decode(bytes(blob), "obj")
