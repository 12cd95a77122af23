"""The service on one S3 store shared by the API and a worker, as on many machines: a blob
uploaded through the API, fetched by the export task, and the artifacts the task stored
downloaded through the API with their checksums. Nothing goes through a local store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import save

from exportq.routing import EXPORT_TASK
from exportq.settings import Settings
from tests.integration.pipeline_helpers import ALL_KINDS, zoo_spec
from tests.integration.s3_server import bucket_keys, s3_client
from tests.models import zoo
from tests.models.zoo import ZOO
from workers.celery_app import create_celery_app

CNN = ZOO["cnn_bn"]
PREFIX = "fleet"


@pytest.fixture
def api_settings(api_settings: Settings, s3_endpoint: str, s3_bucket: str) -> Settings:
    """conftest's settings for the `api` app, with the artifacts on S3 instead of a folder."""
    return api_settings.model_copy(
        update={"artifacts_url": f"s3://{s3_bucket}/{PREFIX}", "s3_endpoint_url": s3_endpoint}
    )


def run_task_eagerly(settings: Settings, job_id: str) -> dict[str, Any]:
    """The export task run in this process, as a worker on another machine would run it."""
    app = create_celery_app(
        settings.model_copy(
            update={"broker_url": "memory://", "result_backend_url": "cache+memory://"}
        )
    )
    try:
        outcome: dict[str, Any] = (
            app.tasks[EXPORT_TASK].apply(args=[job_id], task_id=job_id).get(timeout=90)
        )
        return outcome
    finally:
        app.close()


def test_api_and_worker_share_the_s3_store(
    api: TestClient, api_settings: Settings, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    weights = save(zoo.cnn_bn(seed=7).state_dict())
    uploaded = api.post("/v1/blobs", content=weights)
    assert uploaded.status_code == 201, uploaded.text
    digest = uploaded.json()["digest"]
    assert digest == "sha256:" + hashlib.sha256(weights).hexdigest()
    spec = zoo_spec(CNN, model={"kind": "callable", "target": CNN.target, "weights": digest})
    submitted = api.post("/v1/jobs", json=spec.model_dump(mode="json", exclude_none=True))
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]

    outcome = run_task_eagerly(api_settings, job_id)

    assert outcome == {"job_id": job_id, "status": "succeeded", "error_code": None}
    listed = api.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert {a["kind"] for a in listed} == ALL_KINDS | {"report"}
    for artifact in listed:
        with api.stream("GET", artifact["url"]) as response:
            body = b"".join(response.iter_bytes())
        assert response.status_code == 200, artifact
        assert "sha256:" + hashlib.sha256(body).hexdigest() == artifact["sha256"]
        assert response.headers["x-exportq-sha256"] == artifact["sha256"]
        assert len(body) == artifact["size"] > 0

    client = s3_client(s3_endpoint)
    try:
        stored = bucket_keys(client, s3_bucket)
    finally:
        client.close()
    hexes = {a["sha256"][len("sha256:") :] for a in listed} | {digest[len("sha256:") :]}
    assert stored == sorted(f"{PREFIX}/sha256/{h[:2]}/{h}" for h in hexes)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    assert not (tmp_path / "artifacts").exists()  # conftest's local store was never opened
