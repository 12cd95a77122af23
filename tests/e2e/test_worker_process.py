"""A real `exportq worker --device cpu` and `exportq flower`, as the fleet runs them: jobs are
rows in a PostgreSQL database of their own, messages go through a Redis database of their own,
sent by name the way the API sends them."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.models import Job
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.celery_config import celery_config
from exportq.fleet import FleetRegistry
from exportq.routing import EXPORT_TASK
from exportq.settings import Settings
from exportq.spec import JobSpec
from tests.e2e.conftest import (
    TEST_ALLOWED_MODULES,
    ManagedProcess,
    Processes,
    e2e_database,
    e2e_redis_url,
    exportq_command,
    free_port,
    managed_processes,
    process_env,
    wait_until,
)

AUTH = ("team", "s3cret-e2e")
FLEET_TTL_S = 6
CNN = {"kind": "callable", "target": "tests.models.zoo:cnn_bn"}
SLEEPY = {"kind": "callable", "target": "tests.models.slow:sleepy", "kwargs": {"seconds": 60}}


@dataclass
class Fleet:
    processes: Processes
    worker: ManagedProcess
    worker_name: str
    flower_url: str
    redis_url: str
    engine: Engine
    sessions: sessionmaker[Session]
    sender: Celery
    redis: redis.Redis

    def submit(self, model: dict[str, Any], queue: str = "cpu", **spec: Any) -> str:
        doc = {
            "model": model,
            "inputs": [{"name": "x", "shape": [1, 3, 32, 32]}],
            "validate": {"trials": 1},
            **spec,
        }
        with unit_of_work(self.sessions) as s:
            job_id = repo.create_job(s, JobSpec.model_validate(doc), "alice", queue).id
        self.sender.send_task(EXPORT_TASK, args=[job_id], task_id=job_id, queue=queue)
        return job_id

    def job(self, job_id: str) -> Job:
        with unit_of_work(self.sessions) as s:
            return repo.get_job(s, job_id)

    def wait_status(self, job_id: str, status: str, timeout: float = 60) -> Job:
        def reached() -> Job | None:
            job = self.job(job_id)
            if job.terminal and job.status != status:
                pytest.fail(f"job ended {job.status} ({job.error_code}: {job.error_message})")
            return job if job.status == status else None

        return wait_until(reached, timeout, f"job {job_id} {status}", self.processes)

    def wait_stage(self, job_id: str, stage: str, timeout: float = 30) -> None:
        wait_until(
            lambda: self.job(job_id).stage == stage,
            timeout,
            f"job {job_id} in stage {stage}",
            self.processes,
        )

    def flower(self, path: str, auth: Any = AUTH) -> httpx.Response:
        return httpx.get(self.flower_url + path, auth=auth, timeout=10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        database_url = stack.enter_context(e2e_database())
        redis_url = stack.enter_context(e2e_redis_url())
        env = process_env(
            EXPORTQ_DATABASE_URL=database_url,
            EXPORTQ_BROKER_URL=redis_url,
            EXPORTQ_ARTIFACTS_URL=str(folder / "artifacts"),
            EXPORTQ_WORK_DIR=str(folder / "work"),
            EXPORTQ_ALLOWED_MODULES=TEST_ALLOWED_MODULES,
            EXPORTQ_FLEET_TTL_S=str(FLEET_TTL_S),
            EXPORTQ_FLOWER_BASIC_AUTH=":".join(AUTH),
        )
        processes = stack.enter_context(managed_processes(folder / "processes"))
        port = free_port()
        processes.start(exportq_command("flower", "--port", str(port)), env, "flower")
        worker_name = f"cpu-e2e-{uuid.uuid4().hex[:6]}@localhost"
        worker = processes.start(
            exportq_command(
                "worker", "--device", "cpu", "--concurrency", "2", "--hostname", worker_name
            ),
            env,
            "worker",
        )
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        sender = Celery("e2e-sender", set_as_current=False)
        sender.conf.update(celery_config(Settings(broker_url=redis_url)), result_backend=None)
        stack.callback(sender.close)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        stack.callback(client.close)
        fleet = Fleet(
            processes,
            worker,
            worker_name,
            f"http://127.0.0.1:{port}",
            redis_url,
            engine,
            make_session_factory(engine),
            sender,
            client,
        )
        registry = FleetRegistry(client, FLEET_TTL_S)
        wait_until(
            lambda: worker_name in {w.name for w in registry.live_workers()},
            60,
            "the worker in the fleet registry",
            processes,
        )
        wait_until(lambda: _flower_up(fleet), 30, "Flower to answer", processes)
        yield fleet
        worker.stop()  # a warm shutdown: the worker leaves the fleet registry
        assert worker_name not in {w.name for w in registry.live_workers()}, worker.output()


def _flower_up(fleet: Fleet) -> bool:
    try:
        return fleet.flower("/api/workers").status_code == 200
    except httpx.HTTPError:
        return False


def test_cpu_job_succeeds_and_a_cuda_job_is_left_for_a_cuda_worker(fleet: Fleet) -> None:
    cuda_job = fleet.submit(CNN, queue="cuda", device="cuda")
    cpu_job = fleet.submit(CNN)

    job = fleet.wait_status(cpu_job, "succeeded")

    assert job.worker == fleet.worker_name and job.stage == "store"
    with unit_of_work(fleet.sessions) as s:
        kinds = {a.kind for a in repo.list_artifacts(s, cpu_job)}
    assert {"torchscript", "ncnn_param", "ncnn_bin", "report"} <= kinds
    assert fleet.job(cuda_job).status == "queued"
    assert FleetRegistry(fleet.redis, FLEET_TTL_S).queue_length("cuda") == 1


def test_worker_announces_itself_in_the_fleet_registry(fleet: Fleet) -> None:
    workers = {w.name: w for w in FleetRegistry(fleet.redis, FLEET_TTL_S).live_workers()}
    me = workers[fleet.worker_name]
    assert (me.device, me.queues) == ("cpu", ["cpu"])
    assert me.capabilities["cpu_count"] >= 1 and me.capabilities["concurrency"] == 2
    assert {"torch", "pnnx", "ncnn", "exportq"} <= set(me.versions)
    assert "gpu" not in me.capabilities


def test_torch_is_loaded_in_the_worker_parent_before_it_forks(fleet: Fleet) -> None:
    maps = Path(f"/proc/{fleet.worker.proc.pid}/maps").read_text()
    assert "libtorch" in maps  # the children inherit it: no import per job
    assert "libcuda" not in maps  # and CUDA is never initialised in the parent


def test_cancel_a_running_job_and_the_worker_keeps_serving(fleet: Fleet) -> None:
    job_id = fleet.submit(SLEEPY, inputs=[{"name": "x", "shape": [1, 4]}])
    fleet.wait_stage(job_id, "export")
    # The stage is a custom state in Flower (from the task-export event) and in the backend.
    wait_until(
        lambda: fleet.flower(f"/api/task/info/{job_id}").json().get("state") == "EXPORT",
        15,
        "Flower to show the task in state EXPORT",
        fleet.processes,
    )
    assert fleet.flower(f"/api/task/result/{job_id}").json()["state"] == "EXPORT"

    with unit_of_work(fleet.sessions) as s:  # what the API does on DELETE of a running job
        repo.request_cancel(s, job_id)
    fleet.sender.control.revoke(job_id, terminate=True, signal="SIGUSR1")

    started = time.monotonic()
    job = fleet.wait_status(job_id, "cancelled", timeout=20)
    assert time.monotonic() - started < 15  # interrupted, not waited out (the model sleeps 60 s)
    assert (job.error_code, job.stage) == ("cancelled", "export")
    assert fleet.wait_status(fleet.submit(CNN), "succeeded").worker == fleet.worker_name


def test_job_past_its_timeout_is_stopped_in_the_worker(fleet: Fleet) -> None:
    job_id = fleet.submit(SLEEPY, inputs=[{"name": "x", "shape": [1, 4]}], timeout_s=2)

    job = fleet.wait_status(job_id, "failed", timeout=20)

    assert (job.error_code, job.stage) == ("timeout", "export")


def test_flower_shows_workers_and_tasks_by_job_id_behind_basic_auth(fleet: Fleet) -> None:
    job_id = fleet.submit(
        {"kind": "callable", "target": "tests.models.zoo:trace_divergent"},
        inputs=[{"name": "x", "shape": [1, 8]}],
    )
    assert fleet.wait_status(job_id, "failed").error_code == "trace_divergent"

    for path in ("/api/workers", "/api/tasks", f"/api/task/info/{job_id}", "/"):
        assert fleet.flower(path, auth=None).status_code == 401, path
        assert fleet.flower(path, auth=("team", "wrong")).status_code == 401, path
    workers = wait_until(
        lambda: fleet.flower("/api/workers?refresh=1").json(), 15, "Flower's workers"
    )
    assert fleet.worker_name in workers

    def task_listed() -> dict[str, Any] | None:
        task: dict[str, Any] | None = fleet.flower("/api/tasks").json().get(job_id)
        return task if task and task.get("state") == "SUCCESS" else None

    task = wait_until(task_listed, 15, f"Flower to list task {job_id}", fleet.processes)
    assert task["name"] == EXPORT_TASK and job_id in task["args"]
    assert task["worker"] == fleet.worker_name


@pytest.mark.parametrize("value", [None, "", "no-colon", "user:", ":password"])
def test_flower_refuses_to_start_without_basic_auth(tmp_path: Path, value: str | None) -> None:
    env = process_env(EXPORTQ_BROKER_URL="redis://127.0.0.1:6379/15")
    if value is not None:
        env["EXPORTQ_FLOWER_BASIC_AUTH"] = value
    proc = subprocess.run(
        exportq_command("flower", "--port", str(free_port())),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "EXPORTQ_FLOWER_BASIC_AUTH" in proc.stderr


def test_worker_refuses_a_database_without_the_schema(tmp_path: Path) -> None:
    env = process_env(EXPORTQ_DATABASE_URL=f"sqlite:///{tmp_path / 'blank.db'}")
    proc = subprocess.run(
        exportq_command("worker", "--device", "cpu"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "migrate it first" in proc.stderr
