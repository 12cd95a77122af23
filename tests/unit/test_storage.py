"""Choosing and addressing a store. What every store does with bytes is checked against each
backend in tests/integration/test_storage_contract.py (the local one needs no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exportq.errors import BlobMissing
from exportq.storage import LocalArtifactStore, open_store
from exportq.storage_s3 import S3ArtifactStore, parse_s3_url

DIGEST = "sha256:" + "ab" * 32


def test_local_objects_are_laid_out_by_digest(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    obj = store.put_stream([b"hello world"])
    hexpart = obj.digest[len("sha256:") :]
    assert store.local_path(obj.digest) == tmp_path / "store" / "sha256" / hexpart[:2] / hexpart


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalArtifactStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalArtifactStore)
    store = open_store("s3://bucket/team/exports/", s3_endpoint_url="http://127.0.0.1:1")
    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix) == ("bucket", "team/exports")
    assert store.key(DIGEST) == "team/exports/sha256/ab/" + "ab" * 32
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_store("gs://bucket/prefix")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://b", ("b", "")),
        ("s3://b/", ("b", "")),
        ("s3://b/p", ("b", "p")),
        ("s3://b//a/b//", ("b", "a/b")),
    ],
)
def test_s3_urls(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


def test_s3_url_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///prefix")


def test_s3_key_of_a_malformed_digest_is_refused() -> None:
    store = S3ArtifactStore("b", "", client_factory=lambda: None)
    assert store.key(DIGEST) == "sha256/ab/" + "ab" * 32
    with pytest.raises(BlobMissing, match="content address"):
        store.exists("sha256:../../etc/passwd")


def test_s3_without_boto3_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` sees when absent
    with pytest.raises(RuntimeError, match=r"pip install 'exportq\[s3\]'"):
        open_store("s3://bucket/prefix")
