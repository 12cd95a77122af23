from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from exportq.errors import BlobMissing, PayloadTooLarge
from exportq.storage import LocalArtifactStore, digest_of_file, open_store


def test_identical_bytes_are_stored_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    a = store.put_stream([b"hello ", b"world"])
    b = store.put_stream([b"hello world"])
    assert a == b
    assert a.digest == "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert a.size == 11
    files = [p for p in (tmp_path / "store" / "sha256").rglob("*") if p.is_file()]
    assert len(files) == 1


def test_put_file_fetch_and_read_back(tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01" * 4096)
    store = LocalArtifactStore(tmp_path / "store")
    obj = store.put_file(src)
    assert obj.digest == digest_of_file(src)
    dest = store.fetch(obj.digest, tmp_path / "copy" / "w.bin")
    assert dest.read_bytes() == src.read_bytes()
    assert b"".join(store.read_chunks(obj.digest)) == src.read_bytes()
    assert store.size(obj.digest) == 8192 and store.exists(obj.digest)


def test_oversize_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(PayloadTooLarge):
        store.put_stream([b"x" * 10, b"y" * 10], max_bytes=15)
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_interrupted_write_is_not_published(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")

    def chunks() -> object:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put_stream(chunks())  # type: ignore[arg-type]
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_missing_and_malformed_digests(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(BlobMissing, match="upload it first"):
        store.fetch("sha256:" + "0" * 64, tmp_path / "x")
    with pytest.raises(BlobMissing, match="content address"):
        store.exists("sha256:../../etc/passwd")


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalArtifactStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalArtifactStore)
    with pytest.raises(ValueError, match="only local folders"):
        open_store("s3://bucket/prefix")
