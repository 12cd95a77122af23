"""Fault tests: real workers, a real reconciler, and faults done to them for real (SIGKILL,
SIGTERM, a Redis restarted empty, PostgreSQL restarted).

Each test gets a PostgreSQL database of its own and a PRIVATE `redis-server` on a free port (the
machine's shared Redis is never restarted). Jobs are submitted the way the API submits them:
the job and its dispatch in one transaction; the reconciler process publishes the outbox.
Leases, reconcile intervals and re-dispatch delays are seconds, so faults heal quickly.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import dispatch as outbox
from db import repository as repo
from db.models import Artifact, Job
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.fleet import FleetRegistry
from exportq.spec import JobSpec
from tests.e2e.conftest import (
    TEST_ALLOWED_MODULES,
    ManagedProcess,
    Processes,
    e2e_database,
    exportq_command,
    free_port,
    managed_processes,
    process_env,
    wait_until,
)

REDIS_SERVER = shutil.which("redis-server")
CNN = {"kind": "callable", "target": "tests.models.zoo:cnn_bn"}
CNN_INPUTS = [{"name": "x", "shape": [1, 3, 16, 16]}]
SLEEPY_INPUTS = [{"name": "x", "shape": [1, 4]}]
FAST = {
    "EXPORTQ_LEASE_S": "8",
    "EXPORTQ_MAX_ATTEMPTS": "3",
    "EXPORTQ_RECONCILE_INTERVAL_S": "0.5",
    "EXPORTQ_REDISPATCH_AFTER_S": "2",
    "EXPORTQ_FLEET_TTL_S": "6",
}


def sleepy(seconds: float) -> dict[str, Any]:
    return {
        "kind": "callable",
        "target": "tests.models.slow:sleepy",
        "kwargs": {"seconds": seconds},
    }


class RedisServer:
    """A redis-server of this test's own, with no persistence: a restart comes back empty."""

    def __init__(self, processes: Processes) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        self.processes = processes
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        args = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = self.processes.start(args, {}, f"redis-{self.starts}")
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 10, "the private Redis to answer")
        client.close()

    def kill(self) -> None:
        """Gone at once, and everything it held with it."""
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.proc.wait(timeout=10)
        # A dead process's entry would make `Processes.dead()` fail every later wait.
        self.processes.started.remove(self.proc)
        self.proc.stop()

    def restart_empty(self) -> None:
        self.kill()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class FaultFleet:
    processes: Processes
    folder: Path
    database_url: str
    redis_server: RedisServer
    engine: Engine
    sessions: sessionmaker[Session]
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 0

    @property
    def env(self) -> dict[str, str]:
        return process_env(
            EXPORTQ_DATABASE_URL=self.database_url,
            EXPORTQ_BROKER_URL=self.redis_server.url,
            EXPORTQ_ARTIFACTS_URL=str(self.folder / "artifacts"),
            EXPORTQ_WORK_DIR=str(self.folder / "work"),
            EXPORTQ_ALLOWED_MODULES=TEST_ALLOWED_MODULES,
            **{**FAST, **self.extra_env},
        )

    # -- processes -----------------------------------------------------------------------------

    def start_worker(self, concurrency: int = 1, wait: bool = True) -> tuple[ManagedProcess, str]:
        self.workers += 1
        name = f"fault{self.workers}-{uuid.uuid4().hex[:4]}@localhost"
        args = ["worker", "--device", "cpu", "--concurrency", str(concurrency)]
        proc = self.processes.start(
            exportq_command(*args, "--hostname", name), self.env, f"worker{self.workers}"
        )
        if wait:
            self.wait_worker(name)
        return proc, name

    def wait_worker(self, name: str) -> None:
        client = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        registry = FleetRegistry(client, 6)
        try:
            wait_until(
                lambda: name in {w.name for w in registry.live_workers()},
                120,
                f"worker {name} to be ready",
                self.processes,
            )
        finally:
            client.close()

    def forget(self, proc: ManagedProcess) -> None:
        """A process that ended on purpose: no longer a failure for the waits, its log closed."""
        self.processes.started.remove(proc)
        proc.stop()

    def start_reconciler(self) -> ManagedProcess:
        return self.processes.start(exportq_command("reconciler"), self.env, "reconciler")

    # -- jobs ----------------------------------------------------------------------------------

    def submit(self, model: dict[str, Any], inputs: list[dict[str, Any]], **spec: Any) -> str:
        """What the API does: the job and its dispatch, committed together."""
        doc = {"model": model, "inputs": inputs, "validate": {"trials": 1}, **spec}
        with unit_of_work(self.sessions) as s:
            job = repo.create_job(s, JobSpec.model_validate(doc), "alice", "cpu")
            outbox.add_dispatch(s, job)
            return job.id

    def job(self, job_id: str) -> Job:
        with unit_of_work(self.sessions) as s:
            return repo.get_job(s, job_id)

    def artifacts(self, job_id: str) -> list[Artifact]:
        with unit_of_work(self.sessions) as s:
            return repo.list_artifacts(s, job_id)

    def wait_terminal(self, job_id: str, timeout: float) -> Job:
        def ended() -> Job | None:
            job = self.job(job_id)
            return job if job.terminal else None

        return wait_until(ended, timeout, f"job {job_id} to end", self.processes, interval=0.3)

    def wait_stage(self, job_id: str, stage: str, timeout: float = 60) -> Job:
        def reached() -> Job | None:
            job = self.job(job_id)
            return job if job.status == "running" and job.stage == stage else None

        return wait_until(reached, timeout, f"job {job_id} at {stage}", self.processes, 0.1)


def pool_children(pid: int) -> list[int]:
    """The pids of a Celery worker's pool processes (its direct children)."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children += [int(c) for c in text]
    return children


@pytest.fixture
def fault_fleet(tmp_path: Path) -> Iterator[FaultFleet]:
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(e2e_database())
        processes = stack.enter_context(managed_processes(tmp_path / "processes"))
        server = RedisServer(processes)
        server.start()
        engine = make_engine(database_url)
        stack.callback(engine.dispose)
        yield FaultFleet(
            processes, tmp_path, database_url, server, engine, make_session_factory(engine)
        )


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
