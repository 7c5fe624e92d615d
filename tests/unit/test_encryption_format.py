"""Client-side encryption (encryption.py, keys.py, storage/encrypted.py) on a real directory
repository: round trips, and the specific error for each way an encrypted object can be
damaged or unreadable."""
import base64
import os

import pytest

from walrus import codec, config, encryption, keys, repolock
from walrus.catalog import IDENTITY_KEY
from walrus.errors import ConfigError, EncryptionKeyMissing, IntegrityError
from walrus.storage import open_storage

KEY_A, KEY_B = bytes(range(32)), bytes(range(100, 132))
RING_A = keys.Keyring(KEY_A)
SMALL_RECORDS = 1024  # many records from little data


def settings_for(repo, **values):
    return config.load(dict({"repo": str(repo)}, **values), environ={})


def seal(raw, key=KEY_A, record_size=SMALL_RECORDS, compression="none"):
    return encryption.seal(key, codec.encode(raw, compression), "obj", record_size)


def open_and_decode(sealed, ring=RING_A):
    return codec.decode(encryption.open_object(ring, sealed, "obj"), "obj")


@pytest.mark.parametrize("size", [0, 1, SMALL_RECORDS - 48, SMALL_RECORDS - 47, 5 * SMALL_RECORDS + 7])
def test_round_trip_whole_and_streamed(size):
    raw = os.urandom(size)
    sealed = seal(raw)
    assert sealed[:8] == codec.encode(raw, "none")[:8] and sealed[8] == encryption.ENCRYPTION_AES256_GCM
    assert open_and_decode(sealed) == raw
    # Streamed both ways, in chunks that straddle header, envelope and record boundaries.
    sealer = encryption.Sealer(KEY_A, "obj", SMALL_RECORDS)
    blob = codec.encode(raw, "lz4")
    streamed = b"".join(sealer.stream(blob[i:i + 333] for i in range(0, len(blob), 333)))
    opener = encryption.Opener(RING_A, "obj")
    plain = b"".join(opener.stream(streamed[i:i + 100] for i in range(0, len(streamed), 100)))
    assert codec.decode(plain, "obj") == raw
    # Expected size: prefix, then each record's plaintext plus a 16-byte tag.
    records = max(1, -(-(len(blob) - 16) // SMALL_RECORDS))
    assert len(streamed) == encryption.PREFIX_SIZE + len(blob) - 16 + 16 * records


def test_default_records_of_one_mib():
    raw = os.urandom(3 << 20)
    sealed = encryption.seal(KEY_A, codec.encode(raw, "none"), "obj")
    assert len(sealed) == encryption.PREFIX_SIZE + len(raw) + 48 + 16 * 4
    assert open_and_decode(sealed) == raw


def test_same_content_never_the_same_ciphertext():
    assert seal(b"x" * 5000) != seal(b"x" * 5000)


def test_tampered_ciphertext_names_the_record():
    sealed = bytearray(seal(os.urandom(4 * SMALL_RECORDS)))
    sealed[encryption.PREFIX_SIZE + 2 * (SMALL_RECORDS + 16) + 5] ^= 1
    with pytest.raises(IntegrityError, match="object obj fails authentication at encrypted record 2"):
        open_and_decode(bytes(sealed))


def test_tampered_header_fails_authentication():
    sealed = bytearray(seal(os.urandom(100)))
    sealed[7] = codec.COMPRESSION_IDS["lz4"]  # header bytes are associated data of every record
    with pytest.raises(IntegrityError, match="fails authentication at encrypted record 0"):
        open_and_decode(bytes(sealed))


def test_truncated_at_a_record_boundary():
    sealed = seal(os.urandom(4 * SMALL_RECORDS))
    cut = encryption.PREFIX_SIZE + 2 * (SMALL_RECORDS + 16)
    with pytest.raises(IntegrityError, match="truncated: it ends after encrypted record 1, which is not its final"):
        open_and_decode(sealed[:cut])


@pytest.mark.parametrize("cut", [1, 15, 17, 500])
def test_truncated_inside_a_record(cut):
    sealed = seal(os.urandom(3 * SMALL_RECORDS))
    with pytest.raises(IntegrityError, match="obj (is truncated|fails authentication)"):
        open_and_decode(sealed[:-cut])


@pytest.mark.parametrize("keep", [0, 10, 43])
def test_truncated_inside_the_envelope(keep):
    sealed = seal(b"abc")
    with pytest.raises(IntegrityError, match="obj is truncated"):
        open_and_decode(sealed[:16 + keep])


def test_swapped_records():
    sealed = seal(os.urandom(4 * SMALL_RECORDS))
    rec, start = SMALL_RECORDS + 16, encryption.PREFIX_SIZE
    swapped = sealed[:start] + sealed[start + rec:start + 2 * rec] + sealed[start:start + rec] + sealed[start + 2 * rec:]
    with pytest.raises(IntegrityError, match="fails authentication at encrypted record 0"):
        open_and_decode(swapped)


def test_record_spliced_from_another_object():
    one, other = seal(os.urandom(3 * SMALL_RECORDS)), seal(os.urandom(3 * SMALL_RECORDS))
    start, rec = encryption.PREFIX_SIZE, SMALL_RECORDS + 16
    spliced = one[:start + rec] + other[start + rec:start + 2 * rec] + one[start + 2 * rec:]
    with pytest.raises(IntegrityError, match="fails authentication at encrypted record 1"):
        open_and_decode(spliced)


def test_appended_data_is_refused():
    with pytest.raises(IntegrityError, match="fails authentication"):
        open_and_decode(seal(os.urandom(2 * SMALL_RECORDS)) + os.urandom(SMALL_RECORDS + 16))


def test_wrong_key_names_object_and_key_id():
    sealed = seal(b"secret rows")
    wanted = keys.key_id(KEY_A).hex()
    with pytest.raises(EncryptionKeyMissing, match="object obj is encrypted with key id %s, which is not among the "
                                                   "configured keys \\(current %s" % (wanted, keys.key_id(KEY_B).hex())):
        open_and_decode(sealed, keys.Keyring(KEY_B))
    with pytest.raises(EncryptionKeyMissing, match="key id %s, but no encryption key is configured" % wanted):
        open_and_decode(sealed, keys.Keyring())


def test_forged_key_id_fails_authentication():
    sealed = bytearray(seal(b"secret rows"))
    sealed[16:24] = keys.key_id(KEY_B)
    with pytest.raises(IntegrityError, match="fails authentication"):
        open_and_decode(bytes(sealed), keys.Keyring(KEY_B))


def test_only_walrus_objects_are_sealed():
    with pytest.raises(IntegrityError, match="refusing to store obj"):
        encryption.seal(KEY_A, b"{\"plain\": \"json\"} and more bytes", "obj")
    with pytest.raises(IntegrityError, match="refusing to store obj"):
        encryption.seal(KEY_A, seal(b"twice"), "obj")


def test_storage_encrypts_and_rotates_keys(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = b"walrus-marker-" + os.urandom(8).hex().encode()
    raw = marker * 10000
    plain = open_storage(settings_for(repo))
    plain.put("wal/old", codec.encode(raw, "none"))
    plain.put(IDENTITY_KEY, b'{"format": "walrus"}\n')

    with_a = open_storage(settings_for(repo, encryption_key=KEY_A.hex()))
    with_a.put("wal/a", codec.encode(raw, "none"))
    with_a.put_stream("basebackups/b/part", iter([codec.encode(raw, "lz4")]))
    stored = (repo / "wal" / "a").read_bytes()
    assert marker not in stored and stored[8] == 1 and stored[16:24] == keys.key_id(KEY_A)
    assert marker not in (repo / "basebackups" / "b" / "part").read_bytes()
    assert (repo / IDENTITY_KEY).read_bytes() == b'{"format": "walrus"}\n'  # plaintext by design, as are locks
    with_a.put(repolock.LOCK_KEY, b'{"format": "walrus-lock"}')
    assert (repo / "locks" / "repository.json").read_bytes() == with_a.get(repolock.LOCK_KEY) == b'{"format": "walrus-lock"}'
    with pytest.raises(IntegrityError, match="refusing to store"):
        with_a.put("wal/unframed", b'{"format": "not framed"}')
    with pytest.raises(IntegrityError):
        codec.decode(stored, "wal/a")  # nor does a plain decode read it

    rotated = open_storage(settings_for(repo, encryption_key=base64.b64encode(KEY_B).decode(),
                                        encryption_old_keys=KEY_A.hex()))
    rotated.put("wal/b", codec.encode(raw, "none"))
    assert (repo / "wal" / "b").read_bytes()[16:24] == keys.key_id(KEY_B)
    for key in ("wal/old", "wal/a", "wal/b"):
        assert codec.decode(rotated.get(key), key) == raw
    decoder = codec.Decoder("part")
    out = b"".join(decoder.update(c) for c in rotated.get_stream("basebackups/b/part", chunk_size=4096))
    decoder.finish()
    assert out == raw

    only_b = open_storage(settings_for(repo, encryption_key=KEY_B.hex()))
    with pytest.raises(EncryptionKeyMissing, match="object %s is encrypted with key id %s"
                       % (os.path.join(str(repo), "wal/a"), keys.key_id(KEY_A).hex())):
        only_b.get("wal/a")
    with pytest.raises(EncryptionKeyMissing, match="no encryption key is configured"):
        b"".join(open_storage(settings_for(repo)).get_stream("basebackups/b/part"))
    assert codec.decode(only_b.get("wal/old"), "wal/old") == raw  # unencrypted objects stay readable


def test_key_settings(tmp_path):
    good = tmp_path / "key"
    good.write_text(KEY_A.hex() + "\n")
    good.chmod(0o600)
    ring = keys.keyring(settings_for(tmp_path, encryption_key_file=str(good),
                                     encryption_old_keys="%s, %s" % (KEY_B.hex(), base64.b64encode(KEY_B).decode())))
    assert ring.current == KEY_A and ring.find(keys.key_id(KEY_B)) == KEY_B
    assert ring.describe() == {"current_key_id": keys.key_id(KEY_A).hex(), "old_key_ids": [keys.key_id(KEY_B).hex()]}

    good.chmod(0o640)
    with pytest.raises(ConfigError, match="key file %s is mode 0640, readable by others: run chmod 600" % good):
        keys.keyring(settings_for(tmp_path, encryption_key_file=str(good)))
    with pytest.raises(ConfigError, match="both encryption_key \\(from flag\\) and encryption_key_file"):
        keys.keyring(settings_for(tmp_path, encryption_key=KEY_A.hex(), encryption_key_file=str(good)))
    for bad in ("abc", "zz" * 32, base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigError, match="encryption_key \\(from env WALRUS_ENCRYPTION_KEY\\) is not a 256-bit") as err:
            keys.keyring(config.load({"repo": str(tmp_path)}, environ={"WALRUS_ENCRYPTION_KEY": bad}))
        assert bad not in str(err.value)
    with pytest.raises(ConfigError, match="key 2 of encryption_old_keys"):
        keys.keyring(settings_for(tmp_path, encryption_old_keys=KEY_A.hex() + " nope"))
    with pytest.raises(ConfigError, match="cannot read key file"):
        keys.keyring(settings_for(tmp_path, encryption_old_key_files=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="not a 256-bit"):
        open_storage(settings_for(tmp_path, encryption_key="abc"))  # before anything is read or written


def test_key_in_config_file_is_a_secret(tmp_path):
    path = tmp_path / "walrus.conf"
    path.write_text("repo = %s\nencryption_key = %s\n" % (tmp_path, KEY_A.hex()))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="holds a secret but its mode is 0644"):
        config.load({"config": str(path)}, environ={})
    path.chmod(0o600)
    settings = config.load({"config": str(path)}, environ={})
    assert keys.keyring(settings).current == KEY_A
    assert settings.redacted()["encryption_key"] == "********"
    assert KEY_A.hex() not in repr(settings.redacted())
