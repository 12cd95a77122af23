"""GPU routing through a real fleet on a machine without a GPU: `exportq api` and `exportq
worker --device cuda` processes whose GPUs are declared (EXPORTQ_WORKER_GPUS).

A declared-GPU worker here has no CUDA, so a job it takes fails (`internal_error`: no usable
CUDA GPU). That failure, recorded with the worker's name, is the evidence that the job was
taken from its tier queue by the worker whose GPU matches; the export on a GPU itself is for
`scripts/gpu-check` on a GPU machine."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from exportq.client import ExportqClient
from exportq.errors import NoCapableWorker
from exportq.localfleet import LocalFleet
from tests.e2e.conftest import (
    TEST_ALLOWED_MODULES,
    e2e_database,
    e2e_redis_url,
    exportq_command,
    managed_processes,
    process_env,
    wait_until,
)

FLEET_TTL_S = 4
T4 = {"name": "Tesla T4", "memory_gb": 15.0, "compute_capability": 7.5}
A100 = {"name": "A100-SXM4-40GB", "memory_gb": 40.0, "compute_capability": 8.0}
BIG_REQUEST = {"min_memory_gb": 40, "min_compute_capability": 8.0}


def cnn_spec(**extra: Any) -> dict[str, Any]:
    return {
        "model": {"kind": "callable", "target": "tests.models.zoo:cnn_bn"},
        "inputs": [{"name": "x", "shape": [1, 3, 32, 32]}],
        "validate": {"trials": 1},
        "device": "cuda",
        **extra,
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    folder = tmp_path_factory.mktemp("gpu-fleet")
    with ExitStack() as stack:
        database_url = stack.enter_context(e2e_database())
        env = process_env(
            EXPORTQ_DATABASE_URL=database_url,
            EXPORTQ_TOKEN=make_token(database_url, "alice"),
            EXPORTQ_BROKER_URL=stack.enter_context(e2e_redis_url()),
            EXPORTQ_ARTIFACTS_URL=str(folder / "artifacts"),
            EXPORTQ_WORK_DIR=str(folder / "work"),
            EXPORTQ_ALLOWED_MODULES=TEST_ALLOWED_MODULES,
            EXPORTQ_FLEET_TTL_S=str(FLEET_TTL_S),
        )
        processes = stack.enter_context(managed_processes(folder / "processes"))
        local = LocalFleet(processes, env)
        local.start_api()
        yield local


def make_token(database_url: str, owner: str) -> str:
    from db import tokens
    from db.session import make_engine, make_session_factory, unit_of_work

    engine = make_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return tokens.create_token(session, f"{owner}-e2e", owner)[1]
    finally:
        engine.dispose()


def start_gpu_worker(fleet: LocalFleet, name: str, gpus: list[dict[str, Any]]) -> Any:
    env = {**fleet.env, "EXPORTQ_WORKER_GPUS": json.dumps(gpus)}
    return fleet.processes.start(
        exportq_command("worker", "--device", "cuda", "--hostname", f"{name}@localhost"),
        env,
        name,
    )


def live_names(client: ExportqClient) -> set[str]:
    return {w.name for w in client.fleet().workers}


def test_a_queued_anyway_job_waits_on_its_tier_until_a_matching_worker_appears(
    fleet: LocalFleet,
) -> None:
    with fleet.client() as client:
        start_gpu_worker(fleet, "t4", [T4])
        wait_until(
            lambda: "t4@localhost" in live_names(client), 90, "the T4 worker", fleet.processes
        )

        with pytest.raises(NoCapableWorker) as refused:
            client.submit(cnn_spec(gpu=BIG_REQUEST))
        assert "(queue cuda.cc80.mem40)" in refused.value.message
        assert "Tesla T4, 15 GB, compute capability 7.5" in refused.value.message

        job = client.submit(cnn_spec(gpu=BIG_REQUEST), queue_anyway=True)
        assert (job.status, job.queue) == ("queued", "cuda.cc80.mem40")
        assert job.notices  # nobody consumes the tier yet
        time.sleep(3)  # the T4 worker reads its own 6 tiers and `cuda`, never this one
        still = client.get_job(job.id)
        assert (still.status, still.attempts, still.worker) == ("queued", 0, None)
        [queue] = [q for q in client.fleet().queues if q.name == "cuda"]
        assert queue.workers == 1

        start_gpu_worker(fleet, "a100", [A100])
        taken = wait_until(
            lambda: (v := client.get_job(job.id)).terminal and v,
            120,
            "the A100 worker to take the job",
            fleet.processes,
        )
        # Taken from its tier by the matching worker, which has no CUDA on this machine.
        assert taken.worker == "a100@localhost"
        assert taken.status == "failed" and taken.error is not None
        assert "no usable CUDA GPU" in taken.error.message

        a100 = next(w for w in client.fleet().workers if w.name == "a100@localhost")
        assert a100.queues[0] == "cuda.cc80.mem40" and a100.queues[-1] == "cuda"
        assert a100.capabilities["gpu"]["name"] == "A100-SXM4-40GB"
        assert a100.capabilities["cuda_initialized_in_parent"] is False
        assert set(a100.versions) >= {"torch", "pnnx", "ncnn", "exportq"}


def test_one_worker_per_gpu_and_a_dead_worker_leaves_the_fleet(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    env = {**fleet.env, "EXPORTQ_WORKER_GPUS": json.dumps([T4, A100])}
    group = fleet.processes.start(
        exportq_command("worker", "--device", "cuda", "--hostname", "pair@localhost"),
        env,
        "pair",
    )
    with fleet.client() as client:
        wait_until(
            lambda: {"pair-0@localhost", "pair-1@localhost"} <= live_names(client),
            120,
            "both GPU workers to join",
            fleet.processes,
        )
        workers = {w.name: w for w in client.fleet().workers}
        assert workers["pair-0@localhost"].capabilities["gpu"]["name"] == "Tesla T4"
        assert workers["pair-1@localhost"].queues[0] == "cuda.cc80.mem40"
        assert workers["pair-0@localhost"].capabilities["concurrency"] == 1

        # SIGKILL the supervisor: the children get SIGTERM (parent-death signal) and leave; a
        # worker that could not leave would drop out when its entry expires (FLEET_TTL_S).
        group.signal(signal.SIGKILL)
        wait_until(
            lambda: not ({"pair-0@localhost", "pair-1@localhost"} & live_names(client)),
            FLEET_TTL_S + 60,
            "the pair to leave the fleet",
            None,
        )
