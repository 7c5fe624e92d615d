import os

import pytest

from walrus.errors import NotFound, ObjectExists, StorageError, UsageError
from walrus.storage.fs import FsStorage


def test_put_never_overwrites_and_lists_by_prefix(tmp_path):
    st = FsStorage(str(tmp_path))
    for key in ["a/b/c1", "a/b/c2", "a/x", "wal/1/z", "top"]:
        st.put(key, b"1")
    with pytest.raises(ObjectExists):
        st.put("a/x", b"2")
    assert st.get("a/x") == b"1"
    st.put("a/x", b"3", overwrite=True)
    assert st.get("a/x") == b"3"
    assert sorted(k for k, _size in st.list("a/b/")) == ["a/b/c1", "a/b/c2"]
    assert sorted(k for k, _size in st.list("a/")) == ["a/b/c1", "a/b/c2", "a/x"]
    assert sorted(k for k, _size in st.list("a/b/c")) == ["a/b/c1", "a/b/c2"]
    assert len(list(st.list(""))) == 5 and list(st.list("nope/")) == []
    assert not [n for n in os.listdir(tmp_path / "a") if n.startswith(".tmp-")]


def test_missing_objects_and_root_and_bad_keys(tmp_path):
    st = FsStorage(str(tmp_path / "repo"))
    with pytest.raises(StorageError, match="does not exist"):
        st.get("x")
    with pytest.raises(StorageError, match="create it"):
        st.prepare_write()
    os.mkdir(tmp_path / "repo")
    with pytest.raises(NotFound):
        st.get("x")
    for bad in ("../x", "/x", "a//b", "a/./b", ""):
        with pytest.raises(UsageError):
            st.put(bad, b"")
