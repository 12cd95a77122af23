"""What every artifact store promises, run against each backend: a local folder, and S3
(a moto server the session starts). A backend passes only if it behaves the same."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exportq.errors import BlobMissing, PayloadTooLarge
from exportq.storage import ArtifactStore, LocalArtifactStore, digest_of_file
from exportq.storage_s3 import S3ArtifactStore, boto3_client_factory
from tests.integration.s3_server import bucket_keys, s3_client, unfinished_uploads


@dataclass
class Backend:
    store: ArtifactStore
    # Everything the store has left anywhere: objects, and temporary files.
    leftovers: Callable[[], list[str]]


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        root = tmp_path / "store"
        yield Backend(LocalArtifactStore(root), lambda: _files(root))
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("s3_bucket")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    store = S3ArtifactStore(
        bucket, "team/exports", client_factory=boto3_client_factory(endpoint), tmp_dir=tmp
    )
    client = s3_client(endpoint)

    def leftovers() -> list[str]:
        return bucket_keys(client, bucket) + unfinished_uploads(client, bucket) + _files(tmp)

    yield Backend(store, leftovers)
    client.close()


def test_identical_bytes_are_stored_once(backend: Backend) -> None:
    a = backend.store.put_stream([b"hello ", b"world"])
    b = backend.store.put_stream([b"hello world"])
    assert a == b
    assert a.digest == "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert a.size == 11
    assert len(backend.leftovers()) == 1


def test_put_file_fetch_and_read_back(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01" * 4096)
    obj = store.put_file(src)
    assert obj.digest == digest_of_file(src) and obj.size == 8192
    dest = store.fetch(obj.digest, tmp_path / "copy" / "w.bin")
    assert dest.read_bytes() == src.read_bytes()
    assert not dest.with_name("w.bin.part").exists()
    assert b"".join(store.read_chunks(obj.digest)) == src.read_bytes()
    assert store.size(obj.digest) == 8192 and store.exists(obj.digest)
    assert store.put_file(src) == obj and len(backend.leftovers()) == 1


def test_empty_object(backend: Backend, tmp_path: Path) -> None:
    obj = backend.store.put_stream([])
    assert obj.digest == "sha256:" + hashlib.sha256(b"").hexdigest() and obj.size == 0
    assert backend.store.size(obj.digest) == 0
    assert backend.store.fetch(obj.digest, tmp_path / "empty").read_bytes() == b""


def test_oversize_upload_leaves_nothing_behind(backend: Backend) -> None:
    with pytest.raises(PayloadTooLarge):
        backend.store.put_stream([b"x" * 10, b"y" * 10], max_bytes=15)
    assert backend.leftovers() == []


def test_interrupted_write_is_not_published(backend: Backend) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        backend.store.put_stream(chunks())
    assert backend.leftovers() == []


def test_missing_and_malformed_digests(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    missing = "sha256:" + "0" * 64
    with pytest.raises(BlobMissing, match="upload it first"):
        store.fetch(missing, tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    with pytest.raises(BlobMissing, match="upload it first"):
        store.size(missing)
    with pytest.raises(BlobMissing, match="upload it first"):
        b"".join(store.read_chunks(missing))
    assert not store.exists(missing)
    with pytest.raises(BlobMissing, match="content address"):
        store.exists("sha256:../../etc/passwd")
