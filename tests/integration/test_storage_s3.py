"""What only the S3 store has to get right: large uploads in parts, prefixes that keep stores
apart, failed uploads that publish nothing, and S3's failures named as ours.
(The behaviour every store shares is in test_storage_contract.py.)"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exportq.errors import PayloadTooLarge, ServiceUnavailable
from exportq.storage import CHUNK, open_store
from exportq.storage_s3 import S3ArtifactStore, boto3_client_factory
from tests.integration.s3_server import bucket_keys, s3_client, unfinished_uploads

MIB = 1 << 20


@pytest.fixture
def client(s3_endpoint: str) -> Iterator[Any]:
    client = s3_client(s3_endpoint)
    yield client
    client.close()


def make_store(endpoint: str, bucket: str, prefix: str = "p", **kw: Any) -> S3ArtifactStore:
    return S3ArtifactStore(bucket, prefix, client_factory=boto3_client_factory(endpoint), **kw)


def pattern(i: int) -> bytes:
    """One MiB that differs from every other index (so parts cannot be confused)."""
    return hashlib.sha256(str(i).encode()).digest() * (MIB // 32)


def test_large_stream_is_uploaded_in_parts_and_round_trips(
    s3_endpoint: str, s3_bucket: str, client: Any, tmp_path: Path
) -> None:
    store = make_store(s3_endpoint, s3_bucket, tmp_dir=tmp_path)
    expected = hashlib.sha256()
    for i in range(12):
        expected.update(pattern(i))

    obj = store.put_stream(pattern(i) for i in range(12))

    assert obj.digest == "sha256:" + expected.hexdigest() and obj.size == 12 * MIB
    assert bucket_keys(client, s3_bucket) == [store.key(obj.digest)]
    # A multipart object's ETag ends in -<number of parts>: 12 MiB in 8 MiB parts.
    etag = client.head_object(Bucket=s3_bucket, Key=store.key(obj.digest))["ETag"]
    assert etag.strip('"').endswith("-2")
    assert list(tmp_path.iterdir()) == []
    chunks = list(store.read_chunks(obj.digest))
    assert all(len(c) <= CHUNK for c in chunks) and len(chunks) >= 12
    assert "sha256:" + hashlib.sha256(b"".join(chunks)).hexdigest() == obj.digest
    fetched = store.fetch(obj.digest, tmp_path / "out" / "big.bin")
    assert fetched.stat().st_size == 12 * MIB and store.size(obj.digest) == 12 * MIB


def test_small_objects_are_one_put(s3_endpoint: str, s3_bucket: str, client: Any) -> None:
    obj = make_store(s3_endpoint, s3_bucket).put_stream([b"abc"])
    etag = client.head_object(Bucket=s3_bucket, Key=f"p/sha256/{obj.digest[7:9]}/{obj.digest[7:]}")
    assert "-" not in etag["ETag"]


def test_identical_bytes_are_uploaded_once(s3_endpoint: str, s3_bucket: str) -> None:
    """The key is the content, so a second upload of the same bytes sends no PUT at all."""
    calls: list[str] = []

    def counting_client() -> Any:
        made = boto3_client_factory(s3_endpoint)()
        made.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
        return made

    store = S3ArtifactStore(s3_bucket, "p", client_factory=counting_client)
    store.put_stream([b"same bytes"])
    assert calls == ["HeadObject", "PutObject"]
    calls.clear()
    store.put_stream([b"same ", b"bytes"])
    assert calls == ["HeadObject"]


def test_oversize_stream_uploads_nothing(
    s3_endpoint: str, s3_bucket: str, client: Any, tmp_path: Path
) -> None:
    store = make_store(s3_endpoint, s3_bucket, tmp_dir=tmp_path)
    with pytest.raises(PayloadTooLarge) as caught:
        store.put_stream((pattern(i) for i in range(12)), max_bytes=10 * MIB)
    assert caught.value.http_status == 413
    assert bucket_keys(client, s3_bucket) == [] and unfinished_uploads(client, s3_bucket) == []
    assert list(tmp_path.iterdir()) == []


def test_failed_multipart_upload_publishes_nothing(
    s3_endpoint: str, s3_bucket: str, client: Any, tmp_path: Path
) -> None:
    """The network dies on the second part: no object under the key, no upload left open."""

    def flaky_client() -> Any:
        made = boto3_client_factory(s3_endpoint)()
        parts = {"n": 0}

        def fail_second_part(**_: Any) -> None:
            parts["n"] += 1
            if parts["n"] == 2:
                raise ConnectionResetError("network died mid-upload")

        made.meta.events.register("before-call.s3.UploadPart", fail_second_part)
        return made

    store = S3ArtifactStore(s3_bucket, "p", client_factory=flaky_client, tmp_dir=tmp_path)
    with pytest.raises(ConnectionResetError):
        store.put_stream(pattern(i) for i in range(12))
    assert bucket_keys(client, s3_bucket) == [] and unfinished_uploads(client, s3_bucket) == []
    assert list(tmp_path.iterdir()) == []


def test_prefixes_keep_stores_apart(s3_endpoint: str, s3_bucket: str, client: Any) -> None:
    team_a = open_store(f"s3://{s3_bucket}/team-a/", s3_endpoint_url=s3_endpoint)
    team_b = open_store(f"s3://{s3_bucket}/team-b", s3_endpoint_url=s3_endpoint)
    bare = open_store(f"s3://{s3_bucket}", s3_endpoint_url=s3_endpoint)
    a = team_a.put_stream([b"only in a"])
    hexpart = a.digest[len("sha256:") :]
    assert team_a.exists(a.digest)
    assert not team_b.exists(a.digest) and not bare.exists(a.digest)
    b = bare.put_stream([b"at the root"])
    assert bucket_keys(client, s3_bucket) == sorted(
        [f"team-a/sha256/{hexpart[:2]}/{hexpart}", f"sha256/{b.digest[7:9]}/{b.digest[7:]}"]
    )
    assert not team_a.exists(b.digest)


def test_missing_bucket_and_unreachable_service_are_unavailable(
    s3_endpoint: str, closed_port_url: str
) -> None:
    with pytest.raises(ServiceUnavailable, match="s3://no-such-bucket/p/sha256/"):
        make_store(s3_endpoint, "no-such-bucket").put_stream([b"x"])
    closed = closed_port_url.replace("redis://", "http://").rsplit("/", 1)[0]
    with pytest.raises(ServiceUnavailable, match="s3://b/p/sha256/"):
        make_store(closed, "b").size("sha256:" + "0" * 64)
