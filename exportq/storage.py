"""Content-addressed storage for blobs (uploads) and artifacts (export outputs).

Every object is named by its digest `sha256:<hex>`, so identical bytes are stored once and a
reader can verify what it got. Writes are atomic: bytes go to a temporary file that is renamed
into place only when complete, so a crash never leaves a truncated object under a real name.
`ArtifactStore` is the interface both backends implement (`exportq.storage_s3` holds the
S3-compatible one); `open_store` picks the backend from `EXPORTQ_ARTIFACTS_URL`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exportq.errors import BlobMissing, PayloadTooLarge

CHUNK = 1 << 20
PREFIX = "sha256:"


@dataclass(frozen=True)
class StoredObject:
    digest: str  # "sha256:<hex>"
    size: int


def digest_of_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return PREFIX + h.hexdigest()


def hex_of(digest: str) -> str:
    if not digest.startswith(PREFIX) or len(digest) != len(PREFIX) + 64:
        raise BlobMissing(f"{digest!r} is not a content address of the form sha256:<64 hex>")
    hexpart = digest[len(PREFIX) :]
    if any(c not in "0123456789abcdef" for c in hexpart):
        raise BlobMissing(f"{digest!r} is not a content address of the form sha256:<64 hex>")
    return hexpart


def spool(
    chunks: Iterable[bytes], max_bytes: int | None, folder: Path | None, *, durable: bool
) -> tuple[Path, StoredObject]:
    """Write a stream to a new temporary file in `folder`, hashing it as it comes, so that its
    content address is known before anything is published under it. Over `max_bytes` it raises
    PayloadTooLarge and leaves nothing behind; `durable` syncs the file to disk. The caller
    owns the file."""
    h = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(prefix="exportq-", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"upload is larger than the limit of {max_bytes:,} bytes")
                h.update(chunk)
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, StoredObject(PREFIX + h.hexdigest(), size)


class ArtifactStore(Protocol):
    def put_file(self, path: Path) -> StoredObject: ...

    def put_stream(self, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject: ...

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...

    def read_chunks(self, digest: str) -> Iterator[bytes]: ...

    def fetch(self, digest: str, dest: Path) -> Path: ...


class LocalArtifactStore:
    """Objects as files under `root/sha256/ab/<hex>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        hexpart = hex_of(digest)
        return self.root / "sha256" / hexpart[:2] / hexpart

    def put_file(self, path: Path) -> StoredObject:
        with open(path, "rb") as f:
            return self.put_stream(iter(lambda: f.read(CHUNK), b""))

    def put_stream(self, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject:
        tmp, obj = spool(chunks, max_bytes, self._tmp, durable=True)
        try:
            final = self._path(obj.digest)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            return obj
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def _existing(self, digest: str) -> Path:
        path = self._path(digest)
        if not path.is_file():
            raise BlobMissing(f"blob {digest} is not in the store; upload it first")
        return path

    def size(self, digest: str) -> int:
        return self._existing(digest).stat().st_size

    def read_chunks(self, digest: str) -> Iterator[bytes]:
        with open(self._existing(digest), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def fetch(self, digest: str, dest: Path) -> Path:
        """Copy an object to `dest` (atomically) and return `dest`."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(self._existing(digest), tmp)
        os.replace(tmp, dest)
        return dest

    def local_path(self, digest: str) -> Path:
        """The object's file, read-only by convention: callers must not modify it."""
        return self._existing(digest)


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store for `EXPORTQ_ARTIFACTS_URL`: a folder (or file:// URL), or `s3://bucket/prefix`
    (on AWS, or on the S3-compatible service at `s3_endpoint_url`)."""
    if url.startswith("s3://"):
        # Imported here: the S3 backend needs boto3, which the bare client install lacks.
        from exportq.storage_s3 import S3ArtifactStore, boto3_client_factory, parse_s3_url

        bucket, prefix = parse_s3_url(url)
        return S3ArtifactStore(bucket, prefix, client_factory=boto3_client_factory(s3_endpoint_url))
    if url.startswith("file://"):
        return LocalArtifactStore(Path(url[len("file://") :]))
    if "://" in url:
        raise ValueError(
            f"EXPORTQ_ARTIFACTS_URL={url!r}: use a local folder, file:// or s3://bucket/prefix"
        )
    return LocalArtifactStore(Path(url))
