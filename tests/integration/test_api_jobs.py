"""Submitting, reading, listing and cancelling jobs through the real app, on real PostgreSQL
and Redis: what the API answers, and what really reached the database and the broker."""

from __future__ import annotations

import base64
import json
import time

from fastapi.testclient import TestClient

from api.app import create_app
from db import repository as repo
from db.models import Job
from exportq.settings import Settings
from tests.integration.api_helpers import (
    bearer,
    make_token,
    queued_messages,
    session_on,
    spec_doc,
)

UNKNOWN_BLOB = "sha256:" + "ab" * 32


def test_submit_commits_a_queued_job_and_sends_its_id_to_the_cpu_queue(
    api: TestClient, api_settings: Settings
) -> None:
    response = api.post("/v1/jobs", json=spec_doc())
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["queue"], job["device"]) == ("queued", "cpu", "cpu")
    assert job["spec"]["model"]["target"] == "exportq.samples:tiny_cnn"
    with session_on(api_settings.database_url) as session:
        assert repo.get_job(session, job["id"]).status == "queued"
    [message] = queued_messages(api_settings.broker_url, "cpu")
    assert message["headers"]["id"] == job["id"]
    assert message["headers"]["task"] == "exportq.export"
    assert message["body"][0] == [job["id"]]  # the id only, never the spec
    assert queued_messages(api_settings.broker_url, "cuda") == []


def test_a_cuda_job_lands_in_the_cuda_queue_only(api: TestClient, api_settings: Settings) -> None:
    job = api.post("/v1/jobs", json=spec_doc(device="cuda", priority=9)).json()
    assert job["queue"] == "cuda"
    assert [m["headers"]["id"] for m in queued_messages(api_settings.broker_url, "cuda")] == [
        job["id"]
    ]
    assert queued_messages(api_settings.broker_url, "cpu") == []


def test_notice_when_no_live_worker_consumes_the_queue(api: TestClient) -> None:
    job = api.post("/v1/jobs", json=spec_doc(device="cuda")).json()
    assert job["notices"] == ["no live worker consumes queue 'cuda'; the job waits until one joins"]


def test_invalid_spec_is_422_naming_each_field(api: TestClient) -> None:
    doc = spec_doc(method="bogus", inputs=[{"name": "x", "shape": [1, 0]}])
    response = api.post("/v1/jobs", json=doc)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "spec_invalid"
    fields = {e["field"] for e in error["details"]["errors"]}
    assert {"method", "inputs.0.shape"} <= fields
    assert "inputs.0.shape" in error["message"]


def test_element_cap_comes_from_the_server_settings(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"max_input_elements": 100})
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(make_token(settings.database_url, "alice")))
        response = client.post("/v1/jobs", json=spec_doc())
    assert response.status_code == 422
    assert "over the cap of 100" in response.json()["error"]["message"]


def test_a_body_that_is_not_an_object_is_422(api: TestClient) -> None:
    response = api.post("/v1/jobs", content=b"[1, 2", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "spec_invalid"


def test_unknown_blob_is_422_blob_missing(api: TestClient, api_settings: Settings) -> None:
    doc = spec_doc(model={"kind": "torchscript", "blob": UNKNOWN_BLOB})
    response = api.post("/v1/jobs", json=doc)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "blob_missing"
    assert error["details"]["missing"] == [UNKNOWN_BLOB]
    assert queued_messages(api_settings.broker_url, "cpu") == []


def test_a_module_outside_the_allow_list_is_refused(api: TestClient) -> None:
    response = api.post(
        "/v1/jobs", json=spec_doc(model={"kind": "callable", "target": "os.path:join"})
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "module_not_allowed"
    assert error["details"]["module"] == "os.path"


def test_unknown_job_is_404(api: TestClient) -> None:
    for response in (api.get("/v1/jobs/nope"), api.post("/v1/jobs/nope/cancel")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_list_pages_newest_first_and_filters_by_status(api: TestClient) -> None:
    # forced: identical specs would otherwise join the first job in flight
    ids = [
        api.post("/v1/jobs", json=spec_doc(), params={"force": "true"}).json()["id"]
        for _ in range(3)
    ]
    api.post(f"/v1/jobs/{ids[0]}/cancel")
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["jobs"]] == [ids[2], ids[1]]
    second = api.get("/v1/jobs", params={"limit": 2, "before": first["next_cursor"]}).json()
    assert ([j["id"] for j in second["jobs"]], second["next_cursor"]) == ([ids[0]], None)
    cancelled = api.get("/v1/jobs", params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
    bad = api.get("/v1/jobs", params={"status": "lost", "limit": 0})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["error"]["details"]["errors"]} == {
        "query.status",
        "query.limit",
    }


def test_cancel_a_queued_job_ends_it_at_once(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json=spec_doc()).json()["id"]
    job = api.post(f"/v1/jobs/{job_id}/cancel").json()
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "cancelled"
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_cancel_a_running_job_flags_it_and_signals_its_worker(
    api: TestClient, api_settings: Settings
) -> None:
    import redis

    job_id = api.post("/v1/jobs", json=spec_doc()).json()["id"]
    with session_on(api_settings.database_url) as session:
        assert repo.claim_job(session, job_id, "w1") is not None
    client = redis.Redis.from_url(api_settings.broker_url)
    pubsub = client.pubsub()
    pubsub.psubscribe("*pidbox*")  # Celery broadcasts control commands on a fanout exchange
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    try:
        job = api.post(f"/v1/jobs/{job_id}/cancel").json()
        message = pubsub.get_message(timeout=2)
    finally:
        pubsub.close()
        client.close()
    assert job["status"] == "running"
    with session_on(api_settings.database_url) as session:
        assert session.get(Job, job_id).cancel_requested  # type: ignore[union-attr]
    assert message is not None
    command = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
    assert command["method"] == "revoke"
    assert command["arguments"]["task_id"] == job_id
    assert command["arguments"]["terminate"] is True
    assert command["arguments"]["signal"] == "SIGUSR1"


def test_idempotency_key_replays_the_first_job(api: TestClient, api_settings: Settings) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = api.post("/v1/jobs", json=spec_doc(), headers=headers)
    again = api.post("/v1/jobs", json=spec_doc(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    # the replay publishes only what its first try could not (the outbox): one message
    assert len(queued_messages(api_settings.broker_url, "cpu")) == 1


def test_broker_down_answers_503_quickly_and_keeps_the_job_queued(
    api_settings: Settings, closed_port_url: str
) -> None:
    settings = api_settings.model_copy(update={"broker_url": closed_port_url})
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(make_token(settings.database_url, "alice")))
        started = time.monotonic()
        response = client.post("/v1/jobs", json=spec_doc())
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert elapsed < 5
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    job_id = error["details"]["job_id"]
    with session_on(api_settings.database_url) as session:
        assert repo.get_job(session, job_id).status == "queued"
