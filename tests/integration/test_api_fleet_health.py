"""The fleet view, health and readiness, and the error shape of the unexpected."""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import get_fleet
from exportq.api_models import WorkerView
from exportq.fleet import FleetRegistry
from exportq.settings import Settings
from tests.integration.api_helpers import bearer, make_token, spec_doc


def announce(redis_url: str, name: str, device: str, queues: list[str]) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    now = datetime.now(UTC)
    worker = WorkerView(
        name=name,
        device=device,  # type: ignore[arg-type]
        queues=queues,
        capabilities={"gpu": "H100"} if device == "cuda" else {},
        versions={"torch": "2.13.0"},
        started_at=now,
        last_seen=now,
    )
    FleetRegistry(client, ttl_s=30).beat(worker)
    client.close()


def test_fleet_shows_live_workers_and_queue_lengths(
    api: TestClient, api_settings: Settings
) -> None:
    announce(api_settings.broker_url, "gpu-0@host", "cuda", ["cuda", "cuda.cc90.mem80"])
    api.post("/v1/jobs", json=spec_doc())
    api.post("/v1/jobs", json=spec_doc(priority=9), params={"force": "true"})  # not joined
    fleet = api.get("/v1/fleet").json()
    assert [(w["name"], w["capabilities"]) for w in fleet["workers"]] == [
        ("gpu-0@host", {"gpu": "H100"})
    ]
    queues = {q["name"]: (q["length"], q["workers"]) for q in fleet["queues"]}
    assert queues == {"cpu": (2, 0), "cuda": (0, 1), "cuda.cc90.mem80": (0, 1)}


def test_a_live_worker_on_the_queue_means_no_notice(
    api: TestClient, api_settings: Settings
) -> None:
    announce(api_settings.broker_url, "cpu-0@host", "cpu", ["cpu"])
    assert api.post("/v1/jobs", json=spec_doc()).json()["notices"] == []


def test_healthz_and_readyz(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_naming_redis_when_it_is_unreachable(
    api_settings: Settings, closed_port_url: str
) -> None:
    settings = api_settings.model_copy(update={"broker_url": closed_port_url})
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(make_token(settings.database_url, "alice")))
        response = client.get("/readyz")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"]["checks"]["database"] == "ok"
    assert error["details"]["checks"]["redis"].startswith("error: ConnectionError")
    assert "redis" in error["message"]


def test_unknown_path_and_unexpected_errors_keep_the_error_shape(api_settings: Settings) -> None:
    def broken() -> FleetRegistry:
        raise RuntimeError("secret internals")

    app = create_app(api_settings)
    app.dependency_overrides[get_fleet] = broken
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(bearer(make_token(api_settings.database_url, "alice")))
        missing = client.get("/v1/nothing")
        failed = client.get("/v1/fleet")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert failed.status_code == 500
    assert failed.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal error; the server log has the details",
            "details": None,
        }
    }


def test_every_route_is_documented_with_its_errors(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["components"]["schemas"]["JobSpec"]["properties"]["inputs"]
    submit = doc["paths"]["/v1/jobs"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobSpec"
    }
    assert {"201", "422", "503"} <= set(submit["responses"])
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/jobs/{job_id}"):
                assert "404" in operation["responses"], (method, path)
