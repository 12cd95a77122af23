"""ExportqClient against the real app in-process (TestClient is an httpx.Client), and against
scripted transports for the wire's failure modes."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from db import repository as repo
from exportq.api_models import JobView
from exportq.client import ExportqClient
from exportq.errors import (
    ApiUnreachable,
    BlobMissing,
    ChecksumMismatch,
    InternalError,
    NotFound,
    ServiceUnavailable,
    SpecInvalid,
)
from exportq.report import ArtifactInfo, ExportReport
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.storage import open_store
from tests.unit.api_harness import Harness, served

SPEC: dict[str, Any] = {
    "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
    "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
}


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    with served(settings) as h:
        yield h


@pytest.fixture
def client(harness: Harness) -> ExportqClient:
    return ExportqClient(http=harness.http)


def finish(harness: Harness, job_id: str, files: dict[str, bytes]) -> None:
    """Run a job to success by hand, its artifacts in the store."""
    store = open_store(harness.settings.artifacts_url)
    infos = []
    for name, data in files.items():
        stored = store.put_stream(iter([data]))
        infos.append(ArtifactInfo(kind="onnx", name=name, size=stored.size, sha256=stored.digest))
    report = ExportReport(status="succeeded", stage="store", method="trace", artifacts=infos)
    with harness.session() as session:
        token = repo.claim_job(session, job_id, "w1")
        assert token is not None
        assert repo.finish_job(session, job_id, token, report, infos)


def test_upload_submit_get_list_cancel(
    client: ExportqClient, harness: Harness, tmp_path: Path
) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x01" * 5000)
    blob = client.upload_blob(weights)
    assert blob.digest == "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    spec = JobSpec.model_validate(
        {**SPEC, "model": {**SPEC["model"], "weights": blob.digest}, "validate": {"trials": 1}}
    )
    job = client.submit(spec)
    assert job.status == "queued"
    assert job.spec["model"]["weights"] == blob.digest
    assert job.spec["validate"]["trials"] == 1  # the alias travels
    assert harness.dispatcher.sent == [(job.id, "cpu", 5)]
    second = client.submit(SPEC)
    assert client.get_job(job.id).id == job.id
    page = client.list_jobs(limit=1)
    assert ([j.id for j in page.jobs], page.next_cursor) == ([second.id], second.id)
    assert [j.id for j in client.list_jobs(before=page.next_cursor).jobs] == [job.id]
    assert client.cancel(job.id).status == "cancelled"
    assert [j.id for j in client.list_jobs(status="cancelled").jobs] == [job.id]


def test_api_errors_raise_the_matching_exception(client: ExportqClient) -> None:
    with pytest.raises(NotFound, match="no job 'nope'"):
        client.get_job("nope")
    with pytest.raises(SpecInvalid) as invalid:
        client.submit({**SPEC, "method": "bogus"})
    assert invalid.value.details["errors"][0]["field"] == "method"
    with pytest.raises(BlobMissing):
        client.submit({**SPEC, "samples": "sha256:" + "cd" * 32})


def test_download_writes_checked_files(
    client: ExportqClient, harness: Harness, tmp_path: Path
) -> None:
    job = client.submit(SPEC)
    finish(harness, job.id, {"model.onnx": b"onnx" * 3000, "model.pt": b"pt"})
    paths = client.download(job.id, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["model.onnx", "model.pt"]
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx" * 3000
    assert not list((tmp_path / "out").glob("*.part"))
    assert client.get_job(job.id).report is not None


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> ExportqClient:
    http = httpx.Client(base_url="http://exportq.test", transport=httpx.MockTransport(handler))
    return ExportqClient(http=http, token="t0k")


def test_download_checksum_mismatch_raises_and_keeps_nothing(tmp_path: Path) -> None:
    listing = [
        {"kind": "onnx", "name": "m.onnx", "size": 3, "sha256": "sha256:" + "0" * 64, "url": "/a"}
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifacts"):
            return httpx.Response(200, json=listing)
        return httpx.Response(200, content=b"bad")

    with pytest.raises(ChecksumMismatch, match=r"m\.onnx"):
        scripted(handler).download("j1", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_problems_map_to_error_classes_and_the_token_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/fleet":
            return httpx.Response(502, text="<html>bad gateway</html>")
        problem = {"code": "service_unavailable", "message": "broker down", "details": None}
        return httpx.Response(503, json={"error": problem})

    client = scripted(handler)
    with pytest.raises(ServiceUnavailable, match="broker down"):
        client.submit(SPEC)
    with pytest.raises(InternalError, match="HTTP 502"):
        client.fleet()
    assert seen[0].headers["authorization"] == "Bearer t0k"


def test_an_unreachable_api_names_the_url_and_the_variable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with ExportqClient(url=url) as client, pytest.raises(ApiUnreachable) as err:
        client.get_job("x")
    assert url in err.value.message
    assert "EXPORTQ_URL" in err.value.message


def test_wait_reports_each_change_until_the_job_ends() -> None:
    states = [("queued", None), ("running", "load"), ("running", "load"), ("running", "export")]
    states.append(("succeeded", "store"))
    base = {
        "id": "j1",
        "owner": "local",
        "device": "cpu",
        "queue": "cpu",
        "spec": SPEC,
        "created_at": "2026-01-01T00:00:00Z",
    }
    answers = iter(states)

    def handler(request: httpx.Request) -> httpx.Response:
        status, stage = next(answers)
        return httpx.Response(200, content=json.dumps({**base, "status": status, "stage": stage}))

    updates: list[JobView] = []
    job = scripted(handler).wait("j1", on_update=updates.append, poll_s=0)
    assert job.status == "succeeded"
    assert [(u.status, u.stage) for u in updates] == [
        ("queued", None),
        ("running", "load"),
        ("running", "export"),
        ("succeeded", "store"),
    ]
