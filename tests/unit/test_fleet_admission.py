"""Admission by the fleet, with declared capabilities: a job no live worker could serve is
refused (409) with what it asked and what the fleet offers, unless queued anyway; through the
API, the Python client and the CLI (the real app in-process, a fake fleet registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from api.fleet_admission import require_capable_worker
from api.submission import read_live_workers
from exportq.api_models import WorkerView
from exportq.cli import cli
from exportq.client import ExportqClient
from exportq.commands import remote
from exportq.errors import NoCapableWorker
from exportq.fleet import FleetRegistry
from exportq.routing import worker_queues
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.tiers import GpuInfo
from tests.unit.api_harness import FakeRedis, Harness, served

TARGET = "exportq.samples:tiny_cnn"
T4 = GpuInfo(name="Tesla T4", memory_gb=15.0, compute_capability=7.5)
A100 = GpuInfo(name="A100-SXM4-40GB", memory_gb=40.0, compute_capability=8.0)


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "model": {"kind": "callable", "target": TARGET},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
        **extra,
    }


def announce(fleet: FleetRegistry, name: str, device: str, gpu: GpuInfo | None = None) -> None:
    now = datetime.now(UTC)
    fleet.beat(
        WorkerView(
            name=name,
            device=device,  # type: ignore[arg-type]
            queues=worker_queues(device, gpu),
            capabilities={"gpu": gpu.model_dump()} if gpu else {},
            started_at=now,
            last_seen=now,
        )
    )


@pytest.fixture
def harness(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with served(settings.model_copy(update={"admission": "refuse"})) as h:
        monkeypatch.setattr(remote, "make_client", lambda: ExportqClient(http=h.http))
        yield h


def test_a_job_no_live_worker_can_serve_is_refused_saying_what_was_asked_and_offered(
    harness: Harness,
) -> None:
    announce(harness.fleet, "cpu@a", "cpu")
    announce(harness.fleet, "cuda0@b", "cuda", T4)
    gpu_job = doc(device="cuda", gpu={"min_memory_gb": 40, "min_compute_capability": 8.0})
    response = harness.http.post("/v1/jobs", json=gpu_job)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_capable_worker"
    message = error["message"]
    assert "compute capability >= 8 and memory >= 40 GB (queue cuda.cc80.mem40)" in message
    assert "1 cpu worker" in message
    assert "1 cuda worker (Tesla T4, 15 GB, compute capability 7.5)" in message
    assert "queue_anyway" in message
    assert error["details"]["queue"] == "cuda.cc80.mem40"
    assert harness.dispatcher.sent == []
    assert harness.http.get("/v1/jobs").json()["jobs"] == []  # rolled back: nothing stored


def test_a_matching_worker_admits_the_job(harness: Harness) -> None:
    announce(harness.fleet, "cuda0@b", "cuda", A100)
    response = harness.http.post(
        "/v1/jobs", json=doc(device="cuda", gpu={"min_memory_gb": 40, "min_compute_capability": 8})
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["queue"], job["notices"]) == ("cuda.cc80.mem40", [])
    # A plain cuda job goes to `cuda`, which every GPU worker consumes; a cpu job is refused.
    assert harness.http.post("/v1/jobs", json=doc(device="cuda")).status_code == 201
    refused = harness.http.post("/v1/jobs", json=doc()).json()["error"]
    assert "asks for a cpu worker (queue cpu)" in refused["message"]
    assert "1 cuda worker (A100-SXM4-40GB, 40 GB, compute capability 8)" in refused["message"]


def test_queue_anyway_keeps_the_job_on_its_tier_with_a_notice(harness: Harness) -> None:
    response = harness.http.post(
        "/v1/jobs",
        params={"queue_anyway": "true"},
        json=doc(device="cuda", gpu={"min_memory_gb": 80}),
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["queue"] == "cuda.cc60.mem80"
    assert job["notices"] == [
        "no live worker consumes queue 'cuda.cc60.mem80'; the job waits until one joins"
    ]
    assert harness.dispatcher.sent == [(job["id"], "cuda.cc60.mem80", 5)]


def test_an_empty_fleet_says_so(harness: Harness) -> None:
    with ExportqClient(http=harness.http) as client, pytest.raises(NoCapableWorker) as caught:
        client.submit(doc(device="cuda"))
    assert "the fleet offers no live worker at all" in caught.value.message
    assert client.submit(doc(device="cuda"), queue_anyway=True).status == "queued"


def test_cli_gpu_options_and_queue_anyway(harness: Harness) -> None:
    runner = CliRunner()
    args = ["submit", TARGET, "--input", "1x3x8x8", "--device", "cuda"]
    args += ["--gpu-min-memory", "24", "--gpu-min-cc", "8.6"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1
    assert "[no_capable_worker]" in refused.stderr
    assert "compute capability >= 8.6 and memory >= 24 GB" in refused.stderr
    queued = runner.invoke(cli, [*args, "--queue-anyway", "--json"])
    assert queued.exit_code == 0, queued.output
    job = json.loads(queued.stdout)
    assert job["queue"] == "cuda.cc86.mem24"
    assert job["spec"]["gpu"] == {"min_memory_gb": 24.0, "min_compute_capability": 8.6}
    cpu_gpu = runner.invoke(cli, ["submit", TARGET, "--input", "1x3x8x8", "--gpu-min-cc", "8"])
    assert cpu_gpu.exit_code == 2 and "needs device 'cuda'" in cpu_gpu.stderr


class BrokenRedis(FakeRedis):
    def scan_iter(self, match: str | None = None) -> Iterator[str]:
        raise ConnectionError("redis is away")


def test_policy_and_an_unreadable_registry_admit() -> None:
    spec = JobSpec.model_validate(doc(device="cuda"))
    empty = read_live_workers(FleetRegistry(FakeRedis()))
    refuse, queue = Settings(admission="refuse"), Settings(admission="queue")
    with pytest.raises(NoCapableWorker):
        require_capable_worker(empty, spec, "cuda", refuse, queue_anyway=False)
    require_capable_worker(empty, spec, "cuda", refuse, queue_anyway=True)
    require_capable_worker(empty, spec, "cuda", queue, queue_anyway=False)
    # The registry lives in the broker's Redis: when it cannot be read the job is admitted and
    # the send (or the outbox) decides, rather than refusing on a guess.
    unreadable = read_live_workers(FleetRegistry(BrokenRedis()))
    assert unreadable is None
    require_capable_worker(unreadable, spec, "cuda", refuse, False)
