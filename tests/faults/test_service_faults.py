"""Faults done to the services: Redis restarted empty while jobs are queued and running, Redis
down when a job is submitted, PostgreSQL restarted while a job runs, and many concurrent
submits with one idempotency key."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from db import dispatch as outbox
from db import migrate, tokens
from db.session import make_engine, make_session_factory, unit_of_work
from tests.e2e.conftest import exportq_command, free_port, wait_until
from tests.faults.conftest import CNN, CNN_INPUTS, SLEEPY_INPUTS, FaultFleet, sleepy
from tests.faults.test_worker_faults import assert_one_result

pytestmark = pytest.mark.timeout(180)


def test_redis_restarted_empty_while_jobs_are_queued_and_running(
    fault_fleet: FaultFleet,
) -> None:
    fault_fleet.start_reconciler()
    fault_fleet.start_worker()
    running = fault_fleet.submit(sleepy(3), SLEEPY_INPUTS)
    fault_fleet.wait_stage(running, "export")
    queued = [fault_fleet.submit(CNN, CNN_INPUTS, labels={"n": str(n)}) for n in range(3)]
    wait_until(
        lambda: all(d.published_at for q in queued for d in _dispatches(fault_fleet, q)),
        20,
        "the queued jobs' messages to be in Redis",
    )

    fault_fleet.redis_server.restart_empty()  # every queued message is gone

    for job_id in [running, *queued]:
        job = fault_fleet.wait_terminal(job_id, 120)
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert_one_result(fault_fleet, job_id)
    # The lost messages were dispatched again: each queued job has a second dispatch.
    assert all(len(_dispatches(fault_fleet, q)) >= 2 for q in queued)


def _dispatches(fleet: FaultFleet, job_id: str) -> list[outbox.Dispatch]:
    with unit_of_work(fleet.sessions) as s:
        return outbox.dispatches_of(s, job_id)


@pytest.fixture
def api_fleet(fault_fleet: FaultFleet) -> Iterator[tuple[FaultFleet, httpx.Client]]:
    """The fault fleet with a real `exportq api` (its reconciler thread on) and a token."""
    with unit_of_work(fault_fleet.sessions) as s:
        _, secret = tokens.create_token(s, "faults", "alice")
    port = free_port()
    fault_fleet.processes.start(
        exportq_command("api", "--port", str(port), "--no-migrate"), fault_fleet.env, "api"
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, 60, "the API to be ready", fault_fleet.processes)
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        yield fault_fleet, client


def spec_doc() -> dict[str, object]:
    return {"model": CNN, "inputs": CNN_INPUTS, "validate": {"trials": 1}}


def test_redis_down_at_submit_answers_503_quickly_and_dispatches_when_it_returns(
    api_fleet: tuple[FaultFleet, httpx.Client],
) -> None:
    fleet, client = api_fleet
    fleet.start_worker()
    fleet.redis_server.kill()

    started = time.monotonic()
    # A plain submit: the fleet registry is unreadable too, and admission lets the job in.
    response = client.post("/v1/jobs", json=spec_doc())
    assert time.monotonic() - started < 5
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and "will be dispatched" in error["message"]
    job_id = error["details"]["job_id"]
    assert fleet.job(job_id).status == "queued"  # stored, with its dispatch pending
    (pending,) = _dispatches(fleet, job_id)
    assert pending.published_at is None and pending.last_error

    fleet.redis_server.start()  # back, empty: the outbox still holds the message

    job = fleet.wait_terminal(job_id, 120)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert_one_result(fleet, job_id)


def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    api_fleet: tuple[FaultFleet, httpx.Client],
) -> None:
    fleet, client = api_fleet
    headers = {"Idempotency-Key": "same-key"}

    def submit(_: int) -> httpx.Response:
        return client.post(
            "/v1/jobs", json=spec_doc(), headers=headers, params={"queue_anyway": "true"}
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(submit, range(8)))

    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sorted(r.status_code for r in responses).count(201) == 1
    (job_id,) = {r.json()["id"] for r in responses}
    assert len(_dispatches(fleet, job_id)) == 1
    fleet.start_worker()
    assert fleet.wait_terminal(job_id, 120).status == "succeeded"
    assert_one_result(fleet, job_id)


# -- PostgreSQL restarted: a private cluster of this test's own -------------------------------

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _as_postgres(*args: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, list[str]]]:
    """(URL, the pg_ctl command line) of a fresh PostgreSQL cluster on a free port; its log
    goes to a file (`-l`), so no pipe of ours stays open in the server."""
    if PG_BIN is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) to start a private cluster")
    folder = Path(tempfile.mkdtemp(prefix="exportq-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60")
    ctl += ["-l", str(folder / "log")]
    subprocess.run([*ctl, "start"], check=True, timeout=90, capture_output=True)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        migrate.upgrade(url)
        yield url, ctl
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], timeout=60, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_restarted_while_a_job_runs(
    fault_fleet: FaultFleet, private_postgres: tuple[str, list[str]]
) -> None:
    url, ctl = private_postgres
    fault_fleet.database_url = url
    engine = make_engine(url, poolclass=sa.NullPool)
    fault_fleet.sessions = make_session_factory(engine)
    fault_fleet.start_reconciler()
    fault_fleet.start_worker()
    job_id = fault_fleet.submit(sleepy(3), SLEEPY_INPUTS)
    fault_fleet.wait_stage(job_id, "export")

    # Stopped (its connections cut), then started again: the worker's writes meanwhile fail.
    subprocess.run([*ctl, "-m", "fast", "stop"], check=True, timeout=60, capture_output=True)
    time.sleep(1)
    subprocess.run([*ctl, "start"], check=True, timeout=60, capture_output=True)

    job = fault_fleet.wait_terminal(job_id, 120)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert_one_result(fault_fleet, job_id)
    engine.dispose()
