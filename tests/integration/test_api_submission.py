"""Submission through the real app on PostgreSQL and Redis: Idempotency-Key on jobs and
uploads, an identical finished job served at once, an identical job in flight joined, and
`force`. Each test checks what reached the database and the broker, not only the answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from db import repository as repo
from db.models import Artifact, Blob, BlobKey, Job
from exportq.api_models import WorkerView
from exportq.fleet import FleetRegistry
from exportq.report import ArtifactInfo, ExportReport
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.storage import open_store
from tests.integration.api_helpers import (
    bearer,
    make_token,
    queued_messages,
    session_on,
    spec_doc,
)

VERSIONS = {"exportq": "0.1.0", "torch": "2.13.0", "pnnx": "20261020", "ncnn": "1.0.20261020"}
PARAM = b"7767517\n" * 64


def announce(settings: Settings, versions: dict[str, str], name: str = "w1@host") -> None:
    """A live cpu worker in the fleet registry, running `versions`."""
    client = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    now = datetime.now(UTC)
    worker = WorkerView(
        name=name,
        device="cpu",
        queues=["cpu"],
        versions=versions,
        started_at=now,
        last_seen=now,
    )
    FleetRegistry(client).beat(worker)
    client.close()


def exported_job(
    settings: Settings, owner: str = "alice", versions: dict[str, str] = VERSIONS
) -> str:
    """A job of `owner` run to success by hand, its artifact in the store."""
    stored = open_store(settings.artifacts_url).put_stream(iter([PARAM]))
    artifact = ArtifactInfo(
        kind="ncnn_param", name="model.ncnn.param", size=stored.size, sha256=stored.digest
    )
    report = ExportReport(
        status="succeeded", stage="store", method="trace", versions=versions, artifacts=[artifact]
    )
    with session_on(settings.database_url) as session:
        job = repo.create_job(session, JobSpec.model_validate(spec_doc()), owner, "cpu")
        token = repo.claim_job(session, job.id, "w1")
        assert token is not None and repo.finish_job(session, job.id, token, report, [artifact])
        return job.id


def count(settings: Settings, table: type[Job] | type[Blob] | type[BlobKey]) -> int:
    with session_on(settings.database_url) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table)) or 0


# -- Idempotency-Key on jobs ----------------------------------------------------------------


def test_the_same_key_and_body_give_the_same_job(api: TestClient, api_settings: Settings) -> None:
    key = {"Idempotency-Key": "build-42"}
    first = api.post("/v1/jobs", json=spec_doc(), headers=key)
    # the same request spelled differently: a default written out, keys in another order
    same = {"inputs": spec_doc()["inputs"], "method": "trace", "model": spec_doc()["model"]}
    again = api.post("/v1/jobs", json=same, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert count(api_settings, Job) == 1


def test_the_same_key_with_another_body_is_refused_and_stores_nothing(
    api: TestClient, api_settings: Settings
) -> None:
    key = {"Idempotency-Key": "build-43"}
    first = api.post("/v1/jobs", json=spec_doc(), headers=key).json()
    for other in (spec_doc(method="script"), spec_doc(priority=9)):
        response = api.post("/v1/jobs", json=other, headers=key)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "idempotency_conflict"
        assert error["details"] == {"idempotency_key": "build-43", "job_id": first["id"]}
    assert count(api_settings, Job) == 1
    assert len(queued_messages(api_settings.broker_url, "cpu")) == 1


def test_keys_belong_to_their_owner(api: TestClient, api_settings: Settings) -> None:
    key = {"Idempotency-Key": "shared-name"}
    alices = api.post("/v1/jobs", json=spec_doc(), headers=key).json()
    bob = {**key, **bearer(make_token(api_settings.database_url, "bob"))}
    bobs = api.post("/v1/jobs", json=spec_doc(method="script"), headers=bob)
    assert bobs.status_code == 201
    assert bobs.json()["id"] != alices["id"]


def test_concurrent_submits_with_one_key_make_exactly_one_job(
    api: TestClient, api_settings: Settings
) -> None:
    key = {"Idempotency-Key": "retry-storm"}

    def submit(_: int) -> tuple[int, str]:
        response = api.post("/v1/jobs", json=spec_doc(), headers=key)
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert len({job_id for _, job_id in answers}) == 1
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert count(api_settings, Job) == 1


# -- identical jobs: reuse, join, force -------------------------------------------------------


def test_a_finished_identical_job_is_served_at_once_without_an_export(
    api: TestClient, api_settings: Settings
) -> None:
    origin = exported_job(api_settings, owner="carol")
    announce(api_settings, VERSIONS)
    response = api.post("/v1/jobs", json=spec_doc(labels={"run": "2"}, priority=7))
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["owner"], job["cached_from"]) == ("succeeded", "alice", origin)
    assert job["id"] != origin
    assert any(origin in n for n in job["notices"])
    assert job["report"]["versions"] == VERSIONS
    assert [(a["name"], a["sha256"]) for a in job["artifacts"]] == [
        (
            "model.ncnn.param",
            open_store(api_settings.artifacts_url).put_stream(iter([PARAM])).digest,
        )
    ]
    assert queued_messages(api_settings.broker_url, "cpu") == []  # nothing was sent
    download = api.get(f"/v1/jobs/{job['id']}/artifacts/model.ncnn.param")
    assert download.content == PARAM  # the same bytes, served to the new owner
    with session_on(api_settings.database_url) as session:
        rows = session.scalars(sa.select(Artifact).where(Artifact.job_id == job["id"])).all()
        assert len(rows) == 1
    # served again: the new job points at the export that really ran
    again = api.post("/v1/jobs", json=spec_doc()).json()
    assert again["cached_from"] == origin


def test_no_reuse_without_a_live_worker_or_with_other_tool_versions(
    api: TestClient, api_settings: Settings
) -> None:
    exported_job(api_settings)
    nobody = api.post("/v1/jobs", json=spec_doc()).json()
    assert (nobody["status"], nobody["cached_from"]) == ("queued", None)
    api.post(f"/v1/jobs/{nobody['id']}/cancel")
    announce(api_settings, {**VERSIONS, "pnnx": "20270101"}, name="new@host")
    upgraded = api.post("/v1/jobs", json=spec_doc()).json()
    assert (upgraded["status"], upgraded["cached_from"]) == ("queued", None)
    # one worker still on the old tools is not enough: a new export could land on either
    api.post(f"/v1/jobs/{upgraded['id']}/cancel")
    announce(api_settings, VERSIONS, name="old@host")
    mixed = api.post("/v1/jobs", json=spec_doc()).json()
    assert mixed["status"] == "queued"


def test_an_identical_job_in_flight_is_joined(api: TestClient, api_settings: Settings) -> None:
    first = api.post("/v1/jobs", json=spec_doc())
    joined = api.post("/v1/jobs", json=spec_doc(labels={"again": "yes"}))
    assert (first.status_code, joined.status_code) == (201, 200)
    assert joined.json()["id"] == first.json()["id"]
    assert any("joined" in n for n in joined.json()["notices"])
    assert count(api_settings, Job) == 1
    assert len(queued_messages(api_settings.broker_url, "cpu")) == 1
    # another spec is another job
    other = api.post("/v1/jobs", json=spec_doc(method="script")).json()
    assert other["id"] != first.json()["id"]


def test_force_exports_again(api: TestClient, api_settings: Settings) -> None:
    exported_job(api_settings)
    announce(api_settings, VERSIONS)
    forced = api.post("/v1/jobs", json=spec_doc(), params={"force": "true"}).json()
    assert (forced["status"], forced["cached_from"]) == ("queued", None)
    forced_again = api.post("/v1/jobs", json=spec_doc(), params={"force": "true"}).json()
    assert forced_again["id"] != forced["id"]  # not joined either
    assert len(queued_messages(api_settings.broker_url, "cpu")) == 2


# -- Idempotency-Key on uploads ---------------------------------------------------------------


def test_an_upload_key_is_bound_to_its_bytes(api: TestClient, api_settings: Settings) -> None:
    key = {"Idempotency-Key": "weights-v1"}
    first = api.post("/v1/blobs", content=b"first bytes", headers=key)
    again = api.post("/v1/blobs", content=b"first bytes", headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    other = api.post("/v1/blobs", content=b"other bytes", headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert other.json()["error"]["details"]["digest"] == first.json()["digest"]
    assert (count(api_settings, Blob), count(api_settings, BlobKey)) == (1, 1)
    # another key, or no key, takes the other bytes
    assert api.post("/v1/blobs", content=b"other bytes").status_code == 201
