"""Faults done to workers: a pool process SIGKILLed mid-export, the whole worker SIGKILLed, a
job outliving the broker's visibility timeout, SIGTERM during an export, a job that segfaults
its worker every time. Every job ends exactly once, and a duplicate writes nothing."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.conftest import (
    CNN,
    CNN_INPUTS,
    SLEEPY_INPUTS,
    FaultFleet,
    elapsed_since,
    pool_children,
    sleepy,
)

pytestmark = pytest.mark.timeout(150)
POISON = {"kind": "callable", "target": "tests.models.poison:poison"}


def assert_one_result(fleet: FaultFleet, job_id: str) -> None:
    """Exactly one export result: one report artifact, every artifact named once."""
    names = [a.name for a in fleet.artifacts(job_id)]
    assert names.count("report.json") == 1 and len(names) == len(set(names)), names


def test_sigkill_of_the_pool_process_mid_export_runs_the_job_again(
    fault_fleet: FaultFleet,
) -> None:
    fault_fleet.start_reconciler()
    worker, _ = fault_fleet.start_worker()
    job_id = fault_fleet.submit(sleepy(2), SLEEPY_INPUTS)
    fault_fleet.wait_stage(job_id, "export")

    (child,) = pool_children(worker.proc.pid)
    os.kill(child, signal.SIGKILL)

    job = fault_fleet.wait_terminal(job_id, 90)
    assert (job.status, job.attempts, job.last_signal) == ("succeeded", 2, "SIGKILL")
    assert_one_result(fault_fleet, job_id)
    assert worker.alive  # the pool replaced its process


def test_sigkill_of_the_whole_worker_then_a_new_worker_runs_the_job(
    fault_fleet: FaultFleet,
) -> None:
    fault_fleet.start_reconciler()
    first, first_name = fault_fleet.start_worker()
    job_id = fault_fleet.submit(sleepy(2), SLEEPY_INPUTS)
    fault_fleet.wait_stage(job_id, "export")

    os.killpg(first.proc.pid, signal.SIGKILL)  # the worker and its pool: no one reports it
    first.proc.wait(timeout=10)
    fault_fleet.forget(first)
    _, second_name = fault_fleet.start_worker()

    # Its message sits unacked in Redis for the visibility timeout (an hour): the lease (8 s)
    # running out is what brings the job back.
    job = fault_fleet.wait_terminal(job_id, 90)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 2, second_name)
    assert job.worker != first_name
    assert_one_result(fault_fleet, job_id)


def test_a_job_outliving_a_short_visibility_timeout_runs_once(fault_fleet: FaultFleet) -> None:
    fault_fleet.extra_env["EXPORTQ_BROKER_VISIBILITY_TIMEOUT_S"] = "2"
    fault_fleet.start_reconciler()
    first, _ = fault_fleet.start_worker()
    second, _ = fault_fleet.start_worker()
    job_id = fault_fleet.submit(sleepy(4), SLEEPY_INPUTS)

    job = fault_fleet.wait_terminal(job_id, 120)

    assert (job.status, job.attempts) == ("succeeded", 1)
    assert_one_result(fault_fleet, job_id)
    logs = first.output(200_000) + second.output(200_000)
    assert "is not queued" in logs  # Redis did hand it out again; the duplicate wrote nothing


def test_sigterm_during_an_export_lets_it_finish(fault_fleet: FaultFleet) -> None:
    fault_fleet.start_reconciler()
    worker, name = fault_fleet.start_worker()
    job_id = fault_fleet.submit(sleepy(2), SLEEPY_INPUTS)
    fault_fleet.wait_stage(job_id, "export")

    worker.signal(signal.SIGTERM)  # a warm shutdown: the running job finishes first

    job = fault_fleet.wait_terminal(job_id, 90)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 1, name)
    assert worker.proc.wait(timeout=30) == 0
    fault_fleet.forget(worker)
    assert_one_result(fault_fleet, job_id)


def test_a_job_that_segfaults_its_worker_every_time_ends_worker_lost(
    fault_fleet: FaultFleet,
) -> None:
    fault_fleet.start_reconciler()
    worker, _ = fault_fleet.start_worker()
    started = time.monotonic()
    job_id = fault_fleet.submit(POISON, SLEEPY_INPUTS)

    job = fault_fleet.wait_terminal(job_id, 90)

    assert (job.status, job.error_code) == ("failed", "worker_lost"), job.error_message
    assert (job.attempts, job.last_signal) == (3, "SIGSEGV")
    assert "3 time(s)" in (job.error_message or "") and "SIGSEGV" in (job.error_message or "")
    assert elapsed_since(started) < 60  # each loss is recorded at once, not at lease expiry
    # The worker survived its pool's crashes and keeps serving.
    assert fault_fleet.wait_terminal(fault_fleet.submit(CNN, CNN_INPUTS), 60).status == "succeeded"
    assert worker.alive
