"""The whole fleet as a team runs it: `exportq api`, `exportq worker`, `exportq flower` as real
processes on a PostgreSQL database and a Redis database of their own, used through the Python
client and the CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from exportq.api_models import JobView
from exportq.client import ExportqClient
from exportq.errors import NoCapableWorker
from exportq.localfleet import LocalFleet
from exportq.storage import digest_of_file
from tests.e2e.conftest import (
    TEST_ALLOWED_MODULES,
    e2e_database,
    e2e_redis_url,
    exportq_command,
    managed_processes,
    process_env,
    wait_until,
)

AUTH = ("team", "fleet-e2e")
CNN = {"kind": "callable", "target": "tests.models.zoo:cnn_bn"}


def spec(model: dict[str, Any], shape: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "inputs": [{"name": "x", "shape": shape}],
        "validate": {"trials": 1},
        **extra,
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    folder = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        env = process_env(
            EXPORTQ_DATABASE_URL=stack.enter_context(e2e_database()),
            EXPORTQ_BROKER_URL=stack.enter_context(e2e_redis_url()),
            EXPORTQ_ARTIFACTS_URL=str(folder / "artifacts"),
            EXPORTQ_WORK_DIR=str(folder / "work"),
            EXPORTQ_ALLOWED_MODULES=TEST_ALLOWED_MODULES,
            EXPORTQ_FLOWER_BASIC_AUTH=":".join(AUTH),
        )
        processes = stack.enter_context(managed_processes(folder / "processes"))
        local = LocalFleet(processes, env)
        local.start_api()
        local.start_worker("cpu-fleet", concurrency=1)
        local.start_flower()
        yield local


@pytest.fixture
def client(fleet: LocalFleet) -> Iterator[ExportqClient]:
    with fleet.client() as c:
        yield c


def wait_for(client: ExportqClient, fleet: LocalFleet, job_id: str, timeout: float = 90) -> JobView:
    return wait_until(
        lambda: (v := client.get_job(job_id)).terminal and v,
        timeout,
        f"job {job_id} to end",
        fleet.processes,
    )


def cli(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**fleet.env, "EXPORTQ_URL": fleet.url}
    return subprocess.run(
        exportq_command(*args), env=env, capture_output=True, text=True, timeout=120
    )


def test_a_job_succeeds_and_its_artifacts_download_intact(
    fleet: LocalFleet, client: ExportqClient, tmp_path: Path
) -> None:
    job = client.submit(spec(CNN, [1, 3, 32, 32]))
    view = wait_for(client, fleet, job.id)
    assert view.status == "succeeded", view.error
    assert view.report is not None and view.report.succeeded
    kinds = {a.kind for a in view.artifacts}
    assert {"torchscript", "ncnn_param", "ncnn_bin", "report"} <= kinds
    paths = client.download(job.id, tmp_path / "out")
    recorded = {a.name: a.sha256 for a in view.artifacts}
    assert {p.name for p in paths} == set(recorded)
    for path in paths:
        assert digest_of_file(path) == recorded[path.name]


def test_a_model_that_cannot_convert_fails_visibly_in_api_and_cli(
    fleet: LocalFleet, client: ExportqClient
) -> None:
    job = client.submit(
        spec(
            {"kind": "callable", "target": "tests.models.zoo:scripted_control_flow"},
            [1, 8],
            method="script",
        )
    )
    view = wait_for(client, fleet, job.id)
    assert view.status == "failed"
    assert view.error is not None and view.error.code == "unsupported_ops"
    assert "prim::If" in view.error.message
    status = cli(fleet, "status", job.id, "--json")
    shown = json.loads(status.stdout)
    assert shown["error"]["code"] == "unsupported_ops"
    human = cli(fleet, "status", job.id)
    assert "unsupported_ops" in human.stdout


def test_submit_wait_exits_non_zero_on_failure(fleet: LocalFleet) -> None:
    proc = cli(
        fleet, "submit", "tests.models.zoo:trace_divergent", "--input", "1x8", "--wait", "--json"
    )
    assert proc.returncode != 0
    assert json.loads(proc.stdout)["error"]["code"] == "trace_divergent"


def test_a_cuda_job_is_never_taken_by_a_cpu_worker(
    fleet: LocalFleet, client: ExportqClient
) -> None:
    with pytest.raises(NoCapableWorker, match="the fleet offers 1 cpu worker"):
        client.submit(spec(CNN, [1, 3, 32, 32], device="cuda"))  # no GPU worker: refused
    cuda = client.submit(spec(CNN, [1, 3, 32, 32], device="cuda"), queue_anyway=True)
    assert any("cuda" in n for n in cuda.notices)
    cpu = client.submit(spec(CNN, [1, 3, 32, 32]))
    assert wait_for(client, fleet, cpu.id).status == "succeeded"
    still = client.get_job(cuda.id)
    assert still.status == "queued" and still.queue == "cuda" and still.attempts == 0
    cancelled = client.cancel(cuda.id)  # a queued job is cancelled at once and never starts
    assert cancelled.status == "cancelled"


def test_a_running_job_is_cancelled(fleet: LocalFleet, client: ExportqClient) -> None:
    sleepy = {"kind": "callable", "target": "tests.models.slow:sleepy", "kwargs": {"seconds": 60}}
    job = client.submit(spec(sleepy, [1, 4]))
    wait_until(
        lambda: client.get_job(job.id).status == "running", 60, "the job to start", fleet.processes
    )
    proc = cli(fleet, "cancel", job.id)
    assert proc.returncode == 0, proc.stderr
    view = wait_for(client, fleet, job.id, timeout=30)
    assert view.status == "cancelled"
    assert view.error is not None and view.error.code == "cancelled"
    # the worker goes on serving (forced: an identical finished job would be served instead)
    after = client.submit(spec(CNN, [1, 3, 32, 32]), force=True)
    assert wait_for(client, fleet, after.id).status == "succeeded"


def test_flower_shows_the_fleet_only_with_credentials(
    fleet: LocalFleet, client: ExportqClient
) -> None:
    job = client.submit(spec(CNN, [1, 3, 32, 32]), force=True)  # a real task, not a reuse
    wait_for(client, fleet, job.id)
    assert httpx.get(f"{fleet.flower_url}/api/workers", timeout=10).status_code == 401
    assert (
        httpx.get(f"{fleet.flower_url}/api/workers", auth=("team", "wrong"), timeout=10).status_code
        == 401
    )
    workers = wait_until(
        lambda: httpx.get(
            f"{fleet.flower_url}/api/workers?refresh=1", auth=AUTH, timeout=10
        ).json(),
        30,
        "Flower to list the worker",
        fleet.processes,
    )
    assert any(name.startswith("cpu-fleet@") for name in workers)
    tasks = wait_until(
        lambda: (
            (t := httpx.get(f"{fleet.flower_url}/api/tasks", auth=AUTH, timeout=10).json())
            and job.id in t
            and t
        ),
        30,
        "Flower to list the task",
        fleet.processes,
    )
    assert tasks[job.id]["state"] == "SUCCESS"


def test_fleet_view_lists_the_worker_and_its_queue(fleet: LocalFleet) -> None:
    proc = cli(fleet, "fleet", "--json")
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    [worker] = [w for w in view["workers"] if w["name"].startswith("cpu-fleet@")]
    assert worker["queues"] == ["cpu"]
    assert set(worker["versions"]) >= {"torch", "pnnx", "ncnn", "exportq"}
    assert {q["name"] for q in view["queues"]} >= {"cpu", "cuda"}


def test_an_identical_job_is_served_from_the_finished_one(
    fleet: LocalFleet, client: ExportqClient, tmp_path: Path
) -> None:
    """The real worker's report versions are the versions it announces: reuse works."""
    tiny = spec(CNN, [1, 3, 24, 24])
    first = wait_for(client, fleet, client.submit(tiny, force=True).id)
    assert first.status == "succeeded", first.error
    again = client.submit({**tiny, "priority": 8})
    assert (again.status, again.cached_from) == ("succeeded", first.id)
    assert [a.sha256 for a in again.artifacts] == [a.sha256 for a in first.artifacts]
    assert len(client.download(again.id, tmp_path / "again")) == len(first.artifacts)
    forced = client.submit(tiny, force=True)
    assert forced.status == "queued" and forced.cached_from is None
    assert wait_for(client, fleet, forced.id).status == "succeeded"


def test_no_token_no_access(fleet: LocalFleet) -> None:
    response = httpx.get(f"{fleet.url}/v1/jobs", timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{fleet.url}/healthz", timeout=10).status_code == 200
