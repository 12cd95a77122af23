"""The repository on a real database: both SQLite and PostgreSQL (see conftest.db_url)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import leases, submissions
from db import repository as repo
from db.hashing import spec_hash
from db.models import Artifact, Job
from db.session import unit_of_work
from exportq.errors import NotFound
from exportq.report import ArtifactInfo, ErrorInfo, ExportReport
from exportq.spec import JobSpec

Factory = sessionmaker[Session]
DIGEST = "sha256:" + "ab" * 32


def make_spec(**overrides: object) -> JobSpec:
    doc: dict[str, object] = {
        "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
    }
    doc.update(overrides)
    return JobSpec.model_validate(doc)


def submit(factory: Factory, owner: str = "alice", queue: str = "cpu", **spec: object) -> str:
    with unit_of_work(factory) as s:
        return repo.create_job(s, make_spec(**spec), owner, queue).id


def expire_lease(factory: Factory, job_id: str) -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    with unit_of_work(factory) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(lease_expires_at=long_ago))


def claim(factory: Factory, job_id: str, worker: str = "w1") -> int | None:
    with unit_of_work(factory) as s:
        return repo.claim_job(s, job_id, worker)


def load(factory: Factory, job_id: str) -> Job:
    with unit_of_work(factory) as s:
        return repo.get_job(s, job_id)


def artifact_infos() -> list[ArtifactInfo]:
    return [
        ArtifactInfo(kind="torchscript", name="model.pt", size=10, sha256=DIGEST),
        ArtifactInfo(kind="ncnn_param", name="model.ncnn.param", size=3, sha256=DIGEST),
    ]


def ok_report() -> ExportReport:
    return ExportReport(status="succeeded", stage="store", method="trace")


def failed_report(log_tail: str = "Traceback ...") -> ExportReport:
    error = ErrorInfo(code="pnnx_crashed", message="pnnx died", stage="convert", log_tail=log_tail)
    return ExportReport(status="failed", stage="convert", error=error)


# -- lifecycle -----------------------------------------------------------------------------


def test_create_stores_the_spec_and_queues(factory: Factory) -> None:
    spec = make_spec(device="cuda", priority=7)
    with unit_of_work(factory) as s:
        job = repo.create_job(s, spec, "alice", "cuda")
    job = load(factory, job.id)
    assert (job.status, job.owner, job.queue, job.device, job.priority) == (
        "queued",
        "alice",
        "cuda",
        "cuda",
        7,
    )
    assert len(job.id) == 32
    assert JobSpec.model_validate(job.spec) == spec
    assert job.spec_hash == spec_hash(spec)
    assert (job.attempts, job.claim_token, job.cancel_requested) == (0, 0, False)
    assert job.created_at.tzinfo is not None
    assert job.started_at is None and job.finished_at is None


def test_lifecycle_to_succeeded(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id, worker="cpu@host")
    assert token == 1
    running = load(factory, job_id)
    assert (running.status, running.worker, running.attempts) == ("running", "cpu@host", 1)
    assert running.started_at is not None and running.started_at.tzinfo == UTC

    with unit_of_work(factory) as s:
        assert repo.set_stage(s, job_id, token, "convert")
    assert load(factory, job_id).stage == "convert"

    with unit_of_work(factory) as s:
        assert repo.finish_job(s, job_id, token, ok_report(), artifact_infos())
    done = load(factory, job_id)
    assert (done.status, done.stage, done.error_code) == ("succeeded", "store", None)
    assert done.finished_at is not None and done.finished_at >= done.started_at  # type: ignore[operator]
    assert ExportReport.model_validate(done.report).status == "succeeded"

    with unit_of_work(factory) as s:
        rows = repo.list_artifacts(s, job_id)
        assert [(a.kind, a.name, a.size, a.sha256) for a in rows] == [
            ("torchscript", "model.pt", 10, DIGEST),
            ("ncnn_param", "model.ncnn.param", 3, DIGEST),
        ]
        assert repo.get_artifact(s, job_id, "model.pt").kind == "torchscript"
        with pytest.raises(NotFound, match=r"model\.bin"):
            repo.get_artifact(s, job_id, "model.bin")
        # a finished job takes no second result
        assert not repo.finish_job(s, job_id, token, ok_report(), artifact_infos())
        assert not repo.set_stage(s, job_id, token, "store")


def test_failed_report_records_the_error(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    long_tail = "x" * (repo.LOG_TAIL_MAX_CHARS + 100) + "END"
    with unit_of_work(factory) as s:
        assert repo.finish_job(s, job_id, token, failed_report(long_tail), [])
    job = load(factory, job_id)
    assert (job.status, job.stage, job.error_code, job.error_message) == (
        "failed",
        "convert",
        "pnnx_crashed",
        "pnnx died",
    )
    assert job.error_log_tail is not None and job.error_log_tail.endswith("END")
    assert len(job.error_log_tail) <= repo.LOG_TAIL_MAX_CHARS + 10


def test_fail_job_with_token_and_admin_path(factory: Factory) -> None:
    running = submit(factory)
    token = claim(factory, running)
    queued = submit(factory)
    with unit_of_work(factory) as s:
        assert token is not None
        assert not repo.fail_job(s, running, token + 1, "timeout", "too slow")
        assert repo.fail_job(s, running, token, "timeout", "too slow", stage="convert")
        assert repo.fail_job(s, queued, None, "blob_missing", "upload it", log_tail="tail")
        # finished jobs are never failed again, not even by an admin
        assert not repo.fail_job(s, running, None, "worker_lost", "gone")
    job = load(factory, running)
    assert (job.status, job.error_code, job.stage) == ("failed", "timeout", "convert")
    other = load(factory, queued)
    assert (other.status, other.error_code, other.error_log_tail) == (
        "failed",
        "blob_missing",
        "tail",
    )
    assert other.finished_at is not None


# -- ownership ---------------------------------------------------------------------------


def test_owner_isolation(factory: Factory) -> None:
    job_id = submit(factory, owner="alice")
    submit(factory, owner="bob")
    with unit_of_work(factory) as s:
        assert repo.get_job(s, job_id, owner="alice").id == job_id
        assert repo.get_job(s, job_id).id == job_id  # admin
        with pytest.raises(NotFound, match=job_id):
            repo.get_job(s, job_id, owner="bob")
        with pytest.raises(NotFound, match=job_id):
            repo.request_cancel(s, job_id, owner="bob")
        with pytest.raises(NotFound, match="nope"):
            repo.get_job(s, "nope")
        assert [j.owner for j in repo.list_jobs(s, owner="bob").jobs] == ["bob"]
        assert len(repo.list_jobs(s).jobs) == 2
    assert load(factory, job_id).status == "queued"


def test_an_idempotency_key_finds_its_owners_job_only(factory: Factory) -> None:
    job_id = submit(factory)
    with unit_of_work(factory) as s:
        submissions.bind_key(s, repo.get_job(s, job_id), "k1", "request-hash")
    with unit_of_work(factory) as s:
        found = repo.find_by_idempotency_key(s, "alice", "k1")
        assert found is not None and found.id == job_id
        assert repo.find_by_idempotency_key(s, "bob", "k1") is None
        assert repo.find_by_idempotency_key(s, "alice", "k2") is None


# -- claims and fencing -------------------------------------------------------------------


def test_second_claim_gets_nothing(factory: Factory) -> None:
    job_id = submit(factory)
    assert claim(factory, job_id, "w1") == 1
    assert claim(factory, job_id, "w2") is None
    assert claim(factory, "no-such-job", "w2") is None
    job = load(factory, job_id)
    assert (job.worker, job.attempts, job.claim_token) == ("w1", 1, 1)


def test_stale_token_writes_nothing(factory: Factory) -> None:
    job_id = submit(factory)
    old = claim(factory, job_id, "lost-worker")
    expire_lease(factory, job_id)  # the worker went silent: the job is recovered, requeued
    with unit_of_work(factory) as s:
        assert leases.recover(s, job_id, 3, dispatch=False) is leases.Recovery.REQUEUED
        assert leases.recover(s, job_id, 3, dispatch=False) is leases.Recovery.NONE
    new = claim(factory, job_id, "w2")
    assert (old, new) == (1, 2)
    with unit_of_work(factory) as s:
        assert old is not None
        assert not repo.set_stage(s, job_id, old, "export")
        assert not repo.finish_job(s, job_id, old, ok_report(), artifact_infos())
        assert not repo.fail_job(s, job_id, old, "worker_lost", "late")
    job = load(factory, job_id)
    assert (job.status, job.worker, job.attempts, job.stage) == ("running", "w2", 2, None)
    with unit_of_work(factory) as s:
        assert repo.list_artifacts(s, job_id) == []


def _claim_in_threads(factory: Factory, job_id: str, n: int) -> list[int | None]:
    barrier = threading.Barrier(n, timeout=10)
    results: list[int | None] = []
    errors: list[BaseException] = []

    def run(worker: str) -> None:
        try:
            barrier.wait()
            results.append(claim(factory, job_id, worker))
        except BaseException as exc:  # reported below, not as a thread warning
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_concurrent_claims_exactly_one_wins(factory: Factory) -> None:
    for _ in range(3):
        job_id = submit(factory)
        results = _claim_in_threads(factory, job_id, n=4)
        assert sorted(results, key=lambda r: r or 0) == [None, None, None, 1]
        assert load(factory, job_id).attempts == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_pg_claim_waits_for_the_first_claimer_then_loses(factory: Factory, engine: Engine) -> None:
    """The second claimer blocks on the first's row lock, then re-checks and finds the job
    running: the conditional UPDATE is race-safe under READ COMMITTED."""
    job_id = submit(factory)
    result: list[int | None] = []
    with factory() as first, first.begin():
        assert repo.claim_job(first, job_id, "w1") == 1
        second = threading.Thread(target=lambda: result.append(claim(factory, job_id, "w2")))
        second.start()
        _wait_for_lock_wait(engine)
        assert second.is_alive()
    second.join(timeout=10)
    assert result == [None]
    assert load(factory, job_id).worker == "w1"


def _wait_for_lock_wait(engine: Engine, timeout: float = 10.0) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(query).scalar_one() > 0:
                return
            conn.rollback()
            time.sleep(0.02)
    pytest.fail("the second claimer never waited on the row lock")


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_queued_job_ends_it(factory: Factory) -> None:
    job_id = submit(factory)
    with unit_of_work(factory) as s:
        job = repo.request_cancel(s, job_id, owner="alice")
        assert (job.status, job.error_code) == ("cancelled", "cancelled")
        assert job.finished_at is not None
    assert claim(factory, job_id) is None
    with unit_of_work(factory) as s:
        assert repo.is_cancel_requested(s, job_id)


def test_cancel_running_job_flags_it(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    with unit_of_work(factory) as s:
        assert not repo.is_cancel_requested(s, job_id)
        job = repo.request_cancel(s, job_id)
        assert (job.status, job.cancel_requested) == ("running", True)
    with unit_of_work(factory) as s:
        assert repo.is_cancel_requested(s, job_id)
        assert repo.fail_job(s, job_id, token, "cancelled", "cancelled while running")
    assert load(factory, job_id).status == "failed"


def test_cancel_finished_job_changes_nothing(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    with unit_of_work(factory) as s:
        repo.finish_job(s, job_id, token, ok_report(), [])
    with unit_of_work(factory) as s:
        job = repo.request_cancel(s, job_id)
        assert (job.status, job.cancel_requested, job.error_code) == ("succeeded", False, None)
        assert not repo.is_cancel_requested(s, job_id)
        assert not repo.is_cancel_requested(s, "missing")


# -- listing ----------------------------------------------------------------------------------


def test_list_filters_and_pages_newest_first(factory: Factory) -> None:
    ids = [submit(factory, owner="alice") for _ in range(7)]
    submit(factory, owner="bob")
    claim(factory, ids[0])
    # two jobs created in the same instant still page in a stable order
    same = datetime(2030, 1, 1, tzinfo=UTC)
    with unit_of_work(factory) as s:
        s.execute(sa.update(Job).where(Job.id.in_(ids[5:])).values(created_at=same))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        with unit_of_work(factory) as s:
            page = repo.list_jobs(s, owner="alice", limit=3, before=cursor)
        seen += [j.id for j in page.jobs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert set(seen[:2]) == set(ids[5:])  # the far-future pair first
    assert seen[2:] == list(reversed(ids[:5]))

    with unit_of_work(factory) as s:
        running = repo.list_jobs(s, status="running").jobs
        assert [j.id for j in running] == [ids[0]]
        assert len(repo.list_jobs(s, owner="alice", status="queued").jobs) == 6
        assert repo.list_jobs(s, owner="carol").jobs == []
        with pytest.raises(NotFound):
            repo.list_jobs(s, before="missing")


# -- blobs, artifacts, transactions -------------------------------------------------------------


def test_blobs_are_idempotent(factory: Factory) -> None:
    other = "sha256:" + "cd" * 32
    with unit_of_work(factory) as s:
        assert not repo.blob_exists(s, DIGEST)
        repo.add_blob(s, DIGEST, 123)
        repo.add_blob(s, DIGEST, 123)
    with unit_of_work(factory) as s:
        repo.add_blob(s, DIGEST, 123)
        assert repo.blob_exists(s, DIGEST)
        assert repo.missing_blobs(s, [other, DIGEST]) == [other]
        assert repo.missing_blobs(s, []) == []


def test_deleting_a_job_deletes_its_artifacts(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    with unit_of_work(factory) as s:
        repo.finish_job(s, job_id, token, ok_report(), artifact_infos())
    with unit_of_work(factory) as s:  # a bulk delete: only the database's ON DELETE acts
        s.execute(sa.delete(Job).where(Job.id == job_id))
    with unit_of_work(factory) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Artifact)) == 0


def test_unit_of_work_rolls_back_on_error(factory: Factory) -> None:
    with pytest.raises(RuntimeError), unit_of_work(factory) as s:
        repo.create_job(s, make_spec(), "alice", "cpu")
        raise RuntimeError("boom")
    with unit_of_work(factory) as s:
        assert repo.list_jobs(s).jobs == []
