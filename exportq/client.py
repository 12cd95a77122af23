"""The Python client of the exportq API: torch-free, synchronous, on httpx.

    client = ExportqClient()                       # EXPORTQ_URL, EXPORTQ_TOKEN
    digest = client.upload_blob("weights.safetensors").digest
    job = client.submit(spec)                      # a JobSpec or its dict
    job = client.wait(job.id, on_update=print)
    client.download(job.id, "out/")                # checked against each sha256

An error the API answers is raised as the matching `ExportqError` subclass (`NotFound`,
`SpecInvalid`, ...) with the server's message and details; an unreachable API raises
`ApiUnreachable` naming the URL.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from exportq.api_models import ArtifactView, BlobView, FleetView, JobPage, JobView
from exportq.errors import ApiUnreachable, ChecksumMismatch, InternalError, error_class
from exportq.settings import get_settings
from exportq.spec import JobSpec

CHUNK = 1 << 20
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_ARTIFACTS = TypeAdapter(list[ArtifactView])


class ExportqClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        """`url` and `token` default to EXPORTQ_URL and EXPORTQ_TOKEN. An `http` client (a
        test's TestClient, a client with custom TLS) brings its own base URL."""
        settings = get_settings()
        given_base = str(http.base_url) if http is not None else ""
        self.url = (url or given_base or settings.url).rstrip("/")
        token = token or settings.token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=DEFAULT_TIMEOUT)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ExportqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs and jobs ---------------------------------------------------------------------

    def upload_blob(self, path: str | Path, idempotency_key: str | None = None) -> BlobView:
        """Upload a file (streamed, never read whole into memory); its digest names it in a
        spec. With `idempotency_key`, the server refuses other bytes under the same key."""
        path = Path(path)
        with open(path, "rb") as f:
            chunks = iter(lambda: f.read(CHUNK), b"")
            headers = {
                "Content-Length": str(path.stat().st_size),
                "Content-Type": "application/octet-stream",
            }
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            response = self._request("POST", "/v1/blobs", content=chunks, headers=headers)
        return BlobView.model_validate(response.json())

    def submit(
        self,
        spec: JobSpec | dict[str, Any],
        idempotency_key: str | None = None,
        *,
        queue_anyway: bool = False,
        force: bool = False,
    ) -> JobView:
        """Submit a job. With `idempotency_key`, submitting again returns the same job. A job
        no live worker could serve is refused (NoCapableWorker) unless `queue_anyway`. An
        identical finished job may be served at once (`cached_from`), or your identical job in
        flight answered, unless `force`."""
        body = spec.model_dump(mode="json", by_alias=True) if isinstance(spec, JobSpec) else spec
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"queue_anyway": "true"} if queue_anyway else {}
        if force:
            params["force"] = "true"
        return JobView.model_validate(
            self._request("POST", "/v1/jobs", json=body, headers=headers, params=params).json()
        )

    def get_job(self, job_id: str) -> JobView:
        return JobView.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list_jobs(
        self, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> JobPage:
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if before:
            params["before"] = before
        return JobPage.model_validate(self._request("GET", "/v1/jobs", params=params).json())

    def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def wait(
        self,
        job_id: str,
        on_update: Callable[[JobView], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> JobView:
        """Poll the job until it ends; `on_update` sees it each time its status or stage
        changes. Raises TimeoutError after `timeout_s` (None: wait as long as it takes)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[str, str | None] | None = None
        while True:
            job = self.get_job(job_id)
            if on_update is not None and (job.status, job.stage) != seen:
                on_update(job)
            seen = (job.status, job.stage)
            if job.terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            time.sleep(poll_s)

    # -- artifacts and the fleet ------------------------------------------------------------

    def artifacts(self, job_id: str) -> list[ArtifactView]:
        return _ARTIFACTS.validate_python(
            self._request("GET", f"/v1/jobs/{job_id}/artifacts").json()
        )

    def download(self, job_id: str, out_dir: str | Path) -> list[Path]:
        """Download every artifact of the job into `out_dir`. Each file is written as
        `<name>.part`, checked against its sha256, then renamed: a file under its real name is
        complete and intact. Raises ChecksumMismatch (and keeps nothing) on a bad download."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return [self._download_one(artifact, out) for artifact in self.artifacts(job_id)]

    def fleet(self) -> FleetView:
        return FleetView.model_validate(self._request("GET", "/v1/fleet").json())

    def _download_one(self, artifact: ArtifactView, out: Path) -> Path:
        dest = out / Path(artifact.name).name  # never a path from the server
        part = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with part.open("wb") as f:
                for chunk in self._stream(artifact.url):
                    digest.update(chunk)
                    f.write(chunk)
            got = "sha256:" + digest.hexdigest()
            if got != artifact.sha256:
                raise ChecksumMismatch(
                    f"{artifact.name}: downloaded bytes have {got}, expected {artifact.sha256}",
                    details={"name": artifact.name, "expected": artifact.sha256, "got": got},
                )
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return dest

    # -- the wire ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            raise _api_error(response)
        return response

    def _stream(self, path: str) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, headers=self._headers) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                yield from response.iter_bytes(CHUNK)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> ApiUnreachable:
        return ApiUnreachable(
            f"cannot reach the exportq API at {self.url} ({type(exc).__name__}: {exc}); "
            "is it running? Set EXPORTQ_URL to point at it"
        )


def _api_error(response: httpx.Response) -> Exception:
    """The API's `{"error": {...}}` as the matching exception; anything else (a proxy's HTML
    page) as InternalError with the status."""
    try:
        problem = response.json()["error"]
        code, message = str(problem["code"]), str(problem["message"])
    except (ValueError, KeyError, TypeError):
        return InternalError(f"HTTP {response.status_code} from the API: {response.text[:500]}")
    details = problem.get("details")
    return error_class(code)(
        message, details=details if isinstance(details, dict) else {"details": details}
    )
