"""The export task run in this process (`task.apply`) against a real PostgreSQL database and a
local artifact store: claim, stages, artifacts, outcome; duplicates, cancel and timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.models import Job
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.report import STAGES, ExportReport
from exportq.routing import EXPORT_TASK
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.storage import LocalArtifactStore, digest_of_file
from tests.integration.pipeline_helpers import ALL_KINDS, zoo_spec
from tests.models.zoo import ZOO
from workers.celery_app import create_celery_app
from workers.tasks import stage_state

Factory = sessionmaker[Session]
SLEEPY = "tests.models.slow:sleepy"


@pytest.fixture
def worker_settings(postgresql_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=postgresql_url,
        broker_url="memory://",
        result_backend_url="cache+memory://",
        artifacts_url=str(tmp_path / "artifacts"),
        work_dir=str(tmp_path / "work"),
    )


@pytest.fixture
def app(worker_settings: Settings) -> Iterator[Celery]:
    app = create_celery_app(worker_settings)
    yield app
    app.close()


@pytest.fixture
def pg_factory(postgresql_url: str) -> Iterator[Factory]:
    engine = make_engine(postgresql_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def published(app: Celery, pg_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """(state, meta, the job's stage in the database at that moment) for every custom state
    the task publishes."""
    seen: list[Any] = []
    store_result = app.backend.store_result

    def spy(task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((state, result, load(pg_factory, task_id).stage))
        return store_result(task_id, result, state, *args, **kwargs)

    monkeypatch.setattr(app.backend, "store_result", spy)
    return seen


@pytest.fixture
def stray_stop_signals_ignored() -> Iterator[None]:
    """A stop signal that lands after the task restored the handler must not kill pytest."""
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGUSR1, previous)


def submit(factory: Factory, spec: JobSpec, queue: str = "cpu") -> str:
    with unit_of_work(factory) as s:
        return repo.create_job(s, spec, "alice", queue).id


def load(factory: Factory, job_id: str) -> Job:
    with unit_of_work(factory) as s:
        return repo.get_job(s, job_id)


def run_task(app: Celery, job_id: str) -> dict[str, Any]:
    result = app.tasks[EXPORT_TASK].apply(args=[job_id], task_id=job_id)
    value: dict[str, Any] = result.get(timeout=60)
    return value


def sleepy_spec(seconds: float, **overrides: Any) -> JobSpec:
    doc: dict[str, Any] = {
        "model": {"kind": "callable", "target": SLEEPY, "kwargs": {"seconds": seconds}},
        "inputs": [{"name": "x", "shape": [1, 4]}],
        "validate": {"trials": 1},
    }
    doc.update(overrides)
    return JobSpec.model_validate(doc)


def test_zoo_model_succeeds_with_its_artifacts_stored(
    app: Celery, pg_factory: Factory, worker_settings: Settings, published: list[Any]
) -> None:
    job_id = submit(pg_factory, zoo_spec(ZOO["cnn_bn"]))

    outcome = run_task(app, job_id)

    assert outcome == {"job_id": job_id, "status": "succeeded", "error_code": None}
    job = load(pg_factory, job_id)
    assert (job.status, job.stage, job.error_code) == ("succeeded", "store", None)
    assert job.worker and job.attempts == 1 and job.finished_at is not None
    store = LocalArtifactStore(Path(worker_settings.artifacts_url))
    artifacts = repo_artifacts(pg_factory, job_id)
    assert {a.kind for a in artifacts} == ALL_KINDS | {"report"}
    with unit_of_work(pg_factory) as s:
        for a in artifacts:
            assert digest_of_file(store.local_path(a.sha256)) == a.sha256
            assert store.size(a.sha256) == a.size
            assert repo.blob_exists(s, a.sha256)
    report_row = next(a for a in artifacts if a.kind == "report")
    stored = ExportReport.model_validate_json(store.local_path(report_row.sha256).read_bytes())
    assert job.report is not None and stored == ExportReport.model_validate(job.report)
    assert stored.status == "succeeded" and stored.stage == "store"
    assert {a.sha256 for a in stored.artifacts} == {a.sha256 for a in artifacts} - {
        report_row.sha256
    }
    assert all(a.path is None and a.key == a.sha256 for a in stored.artifacts)
    # Every stage was written to the job before it was published, as a custom state.
    assert [state for state, _, _ in published] == [stage_state(s) for s in STAGES]
    for state, meta, db_stage in published:
        assert meta == {"job_id": job_id, "stage": db_stage}
        assert state == stage_state(db_stage)
    assert list(Path(worker_settings.work_dir).iterdir()) == []  # the work folder is gone


def repo_artifacts(factory: Factory, job_id: str) -> list[Any]:
    with unit_of_work(factory) as s:
        return repo.list_artifacts(s, job_id)


def test_failing_model_ends_failed_with_its_code(
    app: Celery, pg_factory: Factory, worker_settings: Settings
) -> None:
    job_id = submit(pg_factory, zoo_spec(ZOO["trace_divergent"]))

    outcome = run_task(app, job_id)

    assert outcome["status"] == "failed"
    job = load(pg_factory, job_id)
    assert (job.status, job.error_code, job.stage) == ("failed", "trace_divergent", "export")
    assert job.error_message and job.report is not None
    assert [a.kind for a in repo_artifacts(pg_factory, job_id)] == ["report"]
    assert list(Path(worker_settings.work_dir).iterdir()) == []


def test_job_not_queued_is_skipped_without_writes(app: Celery, pg_factory: Factory) -> None:
    claimed = submit(pg_factory, zoo_spec(ZOO["cnn_bn"]))
    cancelled = submit(pg_factory, zoo_spec(ZOO["cnn_bn"]))
    with unit_of_work(pg_factory) as s:
        assert repo.claim_job(s, claimed, "elsewhere") == 1
        repo.request_cancel(s, cancelled)
    before = {job_id: snapshot(pg_factory, job_id) for job_id in (claimed, cancelled)}

    for job_id in (claimed, cancelled, "no-such-job"):
        assert run_task(app, job_id) == {"job_id": job_id, "status": "skipped"}

    assert {job_id: snapshot(pg_factory, job_id) for job_id in before} == before
    assert repo_artifacts(pg_factory, claimed) == []


def snapshot(factory: Factory, job_id: str) -> dict[str, Any]:
    job = load(factory, job_id)
    return {c: getattr(job, c) for c in Job.__table__.columns.keys()}  # noqa: SIM118


def test_duplicate_delivery_writes_nothing(app: Celery, pg_factory: Factory) -> None:
    job_id = submit(pg_factory, zoo_spec(ZOO["trace_divergent"]))
    assert run_task(app, job_id)["status"] == "failed"
    first = snapshot(pg_factory, job_id)

    assert run_task(app, job_id)["status"] == "skipped"

    assert snapshot(pg_factory, job_id) == first


def test_cancel_requested_before_a_stage_ends_cancelled(
    app: Celery, pg_factory: Factory, published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submit(pg_factory, zoo_spec(ZOO["cnn_bn"]))
    store_result = app.backend.store_result

    def cancel_after_load(task_id: str, result: Any, state: str, *a: Any, **kw: Any) -> Any:
        if state == stage_state("load"):
            with unit_of_work(pg_factory) as s:
                assert repo.request_cancel(s, task_id).cancel_requested
        return store_result(task_id, result, state, *a, **kw)

    monkeypatch.setattr(app.backend, "store_result", cancel_after_load)

    outcome = run_task(app, job_id)

    assert (outcome["status"], outcome["error_code"]) == ("cancelled", "cancelled")
    job = load(pg_factory, job_id)
    assert (job.status, job.error_code, job.stage) == ("cancelled", "cancelled", "export")
    assert repo_artifacts(pg_factory, job_id) == []


def wait_for_stage(factory: Factory, job_id: str, stage: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while load(factory, job_id).stage != stage:
        assert time.monotonic() < deadline, f"job {job_id} never reached stage {stage}"
        time.sleep(0.05)


@pytest.mark.usefixtures("stray_stop_signals_ignored")
def test_cancel_while_running_interrupts_the_stage(app: Celery, pg_factory: Factory) -> None:
    """What the API does to a running job: flag it, then revoke(terminate, SIGUSR1), which
    Celery delivers as SIGUSR1 to the process running the task (here: this one)."""
    job_id = submit(pg_factory, sleepy_spec(60))

    def cancel() -> None:
        wait_for_stage(pg_factory, job_id, "export")
        time.sleep(0.2)  # inside the model's forward
        with unit_of_work(pg_factory) as s:
            repo.request_cancel(s, job_id)
        os.kill(os.getpid(), signal.SIGUSR1)

    canceller = threading.Thread(target=cancel, daemon=True)
    canceller.start()
    started = time.monotonic()
    outcome = run_task(app, job_id)
    canceller.join(timeout=5)

    assert time.monotonic() - started < 20
    assert outcome["status"] == "cancelled"
    job = load(pg_factory, job_id)
    assert (job.status, job.error_code, job.stage) == ("cancelled", "cancelled", "export")


@pytest.mark.usefixtures("stray_stop_signals_ignored")
def test_job_past_its_own_timeout_fails_with_timeout(app: Celery, pg_factory: Factory) -> None:
    job_id = submit(pg_factory, sleepy_spec(60, timeout_s=1))

    started = time.monotonic()
    outcome = run_task(app, job_id)

    assert time.monotonic() - started < 20
    assert (outcome["status"], outcome["error_code"]) == ("failed", "timeout")
    job = load(pg_factory, job_id)
    assert (job.status, job.error_code, job.stage) == ("failed", "timeout", "export")
    assert job.error_message and "time limit of 1 s" in job.error_message


def test_timeout_is_capped_by_the_settings(
    pg_factory: Factory, worker_settings: Settings, stray_stop_signals_ignored: None
) -> None:
    capped = worker_settings.model_copy(update={"max_job_timeout_s": 1})
    app = create_celery_app(capped)
    try:
        job_id = submit(pg_factory, sleepy_spec(60, timeout_s=3600))
        assert run_task(app, job_id)["error_code"] == "timeout"
    finally:
        app.close()


def test_storage_failure_ends_failed_with_the_traceback(
    app: Celery, pg_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: LocalArtifactStore, path: Path) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalArtifactStore, "put_file", disk_full)
    job_id = submit(pg_factory, zoo_spec(ZOO["cnn_bn"]))

    assert run_task(app, job_id)["error_code"] == "internal_error"

    job = load(pg_factory, job_id)
    assert (job.status, job.stage) == ("failed", "store")
    assert job.error_message and "No space left" in job.error_message
    assert job.error_log_tail and "disk_full" in job.error_log_tail
    assert repo_artifacts(pg_factory, job_id) == []
