"""A finished job's artifacts: listed, shown in the job, and streamed with their checksum."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from db import repository as repo
from exportq.report import ArtifactInfo, ExportReport
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.storage import open_store
from tests.integration.api_helpers import session_on, spec_doc

PARAM = b"7767517\n3 3\nInput in0 0 1 in0\n" * 50


def finished_job(settings: Settings) -> str:
    """A job run to success by hand: claimed, its artifact in the store, finished."""
    stored = open_store(settings.artifacts_url).put_stream(iter([PARAM]))
    artifact = ArtifactInfo(
        kind="ncnn_param", name="model.ncnn.param", size=stored.size, sha256=stored.digest
    )
    report = ExportReport(status="succeeded", stage="store", method="trace", artifacts=[artifact])
    with session_on(settings.database_url) as session:
        job = repo.create_job(session, JobSpec.model_validate(spec_doc()), "alice", "cpu")
        token = repo.claim_job(session, job.id, "w1")
        assert token is not None
        assert repo.finish_job(session, job.id, token, report, [artifact])
        return job.id


def test_artifacts_are_listed_and_shown_in_the_job(api: TestClient, api_settings: Settings) -> None:
    job_id = finished_job(api_settings)
    listed = api.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert listed == [
        {
            "kind": "ncnn_param",
            "name": "model.ncnn.param",
            "size": len(PARAM),
            "sha256": "sha256:" + hashlib.sha256(PARAM).hexdigest(),
            "url": f"/v1/jobs/{job_id}/artifacts/model.ncnn.param",
        }
    ]
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["artifacts"] == listed
    assert job["report"]["method"] == "trace"


def test_download_streams_the_bytes_with_their_checksum(
    api: TestClient, api_settings: Settings
) -> None:
    job_id = finished_job(api_settings)
    with api.stream("GET", f"/v1/jobs/{job_id}/artifacts/model.ncnn.param") as response:
        body = b"".join(response.iter_bytes())
        headers = response.headers
    assert response.status_code == 200
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert body == PARAM
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(PARAM))
    assert headers["etag"] == f'"{digest}"'
    assert headers["x-exportq-sha256"] == digest


def test_unknown_artifact_or_job_is_404(api: TestClient, api_settings: Settings) -> None:
    job_id = finished_job(api_settings)
    for path in (
        f"/v1/jobs/{job_id}/artifacts/nope.bin",
        "/v1/jobs/nope/artifacts/model.ncnn.param",
        "/v1/jobs/nope/artifacts",
    ):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
