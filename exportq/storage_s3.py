"""The artifact store on S3 or any S3-compatible service (MinIO, Ceph, moto), so that the API
and workers on many machines share one store.

Objects live under `<prefix>/sha256/<ab>/<hex>` in one bucket. An upload is first streamed
into a local temporary file, hashed on the way (memory stays at one chunk) and bounded by
`max_bytes`; only then is its key known, and it is uploaded under that key unless the key
already exists. S3 makes an object visible only once its PUT, or its multipart upload, has
completed, and boto3 aborts a failed multipart upload, so a crash never leaves a truncated
object under a real key.

boto3 is imported when a store is built, never at import: the bare client install has no
boto3 (`pip install 'exportq[s3]'`). Credentials and region come from the standard AWS chain
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws, instance roles).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exportq.errors import BlobMissing, ServiceUnavailable
from exportq.storage import CHUNK, StoredObject, digest_of_file, hex_of, spool

# boto3's own defaults: S3 parts are at least 5 MiB, and 10,000 parts of 8 MiB cover 80 GB,
# far above the upload limit.
MULTIPART_THRESHOLD = 8 << 20
MULTIPART_CHUNKSIZE = 8 << 20

# The error codes S3 answers for a key that is not there (HEAD has no body, so only "404").
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}

ClientFactory = Callable[[], Any]


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"EXPORTQ_ARTIFACTS_URL={url!r} names no bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def boto3_client_factory(endpoint_url: str | None = None) -> ClientFactory:
    """A factory of S3 clients; `endpoint_url` points at an S3-compatible service."""

    def make() -> Any:
        try:
            import boto3
        except ImportError as exc:  # the bare client install
            raise RuntimeError(
                "the s3:// artifact store needs boto3: pip install 'exportq[s3]'"
            ) from exc
        # A session of its own: boto3's default session is not safe to share across threads,
        # while the client it makes is.
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url)

    return make


class S3ArtifactStore:
    """Objects under `s3://bucket/prefix/sha256/ab/<hex>`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client_factory: ClientFactory | None = None,
        tmp_dir: Path | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_CHUNKSIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp_dir = tmp_dir
        # Built once per store (clients are thread-safe and hold the connection pool).
        self._client = (client_factory or boto3_client_factory())()
        from boto3.s3.transfer import TransferConfig

        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )

    def key(self, digest: str) -> str:
        hexpart = hex_of(digest)
        tail = f"sha256/{hexpart[:2]}/{hexpart}"
        return f"{self.prefix}/{tail}" if self.prefix else tail

    def _where(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.key(digest)}"

    @contextmanager
    def _errors(self, digest: str) -> Iterator[None]:
        """S3's failures as ours: a missing key is `BlobMissing`, anything else (network,
        credentials, a missing bucket on GET) is the store being unavailable."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise BlobMissing(f"blob {digest} is not in the store; upload it first") from exc
            raise ServiceUnavailable(f"artifact store {self._where(digest)}: {exc}") from exc
        # upload_file re-raises a ClientError as boto3's S3UploadFailedError.
        except (BotoCoreError, Boto3Error) as exc:
            raise ServiceUnavailable(f"artifact store {self._where(digest)}: {exc}") from exc

    def _head(self, digest: str) -> dict[str, Any]:
        key = self.key(digest)
        with self._errors(digest):
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
            return head

    def _upload_if_absent(self, path: Path, digest: str) -> None:
        if self.exists(digest):  # identical bytes are stored once
            return
        with self._errors(digest):
            self._client.upload_file(
                str(path), self.bucket, self.key(digest), Config=self._transfer
            )

    # -- writes --------------------------------------------------------------------------------

    def put_file(self, path: Path) -> StoredObject:
        # Uploaded straight from `path` (no temporary copy): the caller's file must not change
        # while it is stored, as for the artifacts a worker has just written.
        digest = digest_of_file(path)
        self._upload_if_absent(path, digest)
        return StoredObject(digest, path.stat().st_size)

    def put_stream(self, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredObject:
        # Spooled to a local file first: the key is the digest, known only at the end.
        tmp, obj = spool(chunks, max_bytes, self.tmp_dir, durable=False)
        try:
            self._upload_if_absent(tmp, obj.digest)
            return obj
        finally:
            tmp.unlink(missing_ok=True)

    # -- reads ---------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        self.key(digest)  # a malformed digest is an error, not an absent object
        try:
            self._head(digest)
        except BlobMissing:
            return False
        return True

    def size(self, digest: str) -> int:
        return int(self._head(digest)["ContentLength"])

    def read_chunks(self, digest: str) -> Iterator[bytes]:
        key = self.key(digest)
        with self._errors(digest):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            with self._errors(digest):
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()  # a reader that stops early must not leak the connection

    def fetch(self, digest: str, dest: Path) -> Path:
        """Download an object to `dest` (atomically: `dest.part`, then renamed)."""
        key = self.key(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self._errors(digest):
                self._client.download_file(self.bucket, key, str(tmp), Config=self._transfer)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest
