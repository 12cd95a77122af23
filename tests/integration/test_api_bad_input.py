"""Bad input through the real app: each answer is a clear error with its code (and the field
path for a spec), and nothing stored changes: no job, no dispatch, no blob, no message.

The worker-side refusals (a corrupt TorchScript file, a pickle `weights_only` refuses, a raw
pickle) are in tests/integration/test_pipeline_inputs.py: those bytes are only opened there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from db.models import Blob, Dispatch, Job
from exportq.settings import Settings
from tests.integration.api_helpers import bearer, queued_messages, session_on, spec_doc

INPUT = {"name": "x", "shape": [1, 3, 8, 8]}
BAD_SPECS: list[tuple[str, dict[str, Any], int, str, str]] = [
    # id, body, status, code, a field path (or a word) the error names
    (
        "unknown dtype",
        spec_doc(inputs=[{**INPUT, "dtype": "complex32"}]),
        422,
        "spec_invalid",
        "inputs.0.dtype",
    ),
    (
        "over the element cap",
        spec_doc(inputs=[{"name": "x", "shape": [64, 3, 2048, 2048]}]),
        422,
        "spec_invalid",
        "inputs.0.shape",
    ),
    (
        "zero dimension",
        spec_doc(inputs=[{"name": "x", "shape": [1, 0]}]),
        422,
        "spec_invalid",
        "inputs.0.shape",
    ),
    ("unknown field", spec_doc(colour="red"), 422, "spec_invalid", "colour"),
    (
        "unknown model kind",
        spec_doc(model={"kind": "onnx", "blob": "x"}),
        422,
        "spec_invalid",
        "model",
    ),
    ("no inputs", {"model": spec_doc()["model"]}, 422, "spec_invalid", "inputs"),
    (
        "bad target",
        spec_doc(model={"kind": "callable", "target": "no colon"}),
        422,
        "spec_invalid",
        "model.callable.target",
    ),
    (
        "disallowed module",
        spec_doc(model={"kind": "callable", "target": "subprocess:run"}),
        422,
        "module_not_allowed",
        "subprocess",
    ),
    (
        "blob never uploaded",
        spec_doc(model={"kind": "torchscript", "blob": "sha256:" + "0" * 64}),
        422,
        "blob_missing",
        "sha256:" + "0" * 64,
    ),
    ("a list, not a spec", [1, 2], 422, "spec_invalid", "body"),
]


def stored(settings: Settings) -> dict[str, int]:
    """What a refused request must not change: rows, files in the store, queued messages."""
    with session_on(settings.database_url) as session:
        rows = {
            t.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(t)) or 0
            for t in (Job, Dispatch, Blob)
        }
    files = [p for p in Path(settings.artifacts_url).rglob("*") if p.is_file()]
    return {
        **rows,
        "files": len(files),
        "messages": len(queued_messages(settings.broker_url, "cpu")),
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [case[1:] for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_a_bad_spec_is_a_clear_error_and_stores_nothing(
    api: TestClient, api_settings: Settings, body: Any, status: int, code: str, named: str
) -> None:
    api.post("/v1/blobs", content=b"an unrelated upload")  # so "nothing" is not trivially 0
    before = stored(api_settings)
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert named in response.text
    if code == "spec_invalid":  # each field named by its path
        assert all(e["field"] and e["message"] for e in error["details"]["errors"])
    assert stored(api_settings) == before


def test_bad_tokens_and_unknown_ids_change_nothing(api: TestClient, api_settings: Settings) -> None:
    job_id = api.post("/v1/jobs", json=spec_doc()).json()["id"]
    before = stored(api_settings)
    wrong = bearer("eq_wrong")
    assert api.post("/v1/jobs", json=spec_doc(method="script"), headers=wrong).status_code == 401
    assert api.post("/v1/blobs", content=b"x", headers=wrong).status_code == 401
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=wrong).status_code == 401
    for path in ("/v1/jobs/0123456789abcdef0123456789abcdef/cancel", "/v1/jobs/%00/cancel"):
        response = api.post(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert stored(api_settings) == before
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_an_oversize_idempotency_key_is_refused(api: TestClient, api_settings: Settings) -> None:
    before = stored(api_settings)
    response = api.post("/v1/jobs", json=spec_doc(), headers={"Idempotency-Key": "k" * 129})
    assert response.status_code == 422
    assert "header.idempotency-key" in {
        e["field"] for e in response.json()["error"]["details"]["errors"]
    }
    assert stored(api_settings) == before
