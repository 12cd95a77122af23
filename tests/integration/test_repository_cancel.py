"""`cancel_job`: a worker ends its running job as cancelled, fenced by its claim token."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db import repository as repo
from db.models import Job
from db.session import unit_of_work
from exportq.spec import JobSpec

Factory = sessionmaker[Session]


def submit(factory: Factory) -> str:
    spec = JobSpec.model_validate(
        {
            "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
            "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
        }
    )
    with unit_of_work(factory) as s:
        return repo.create_job(s, spec, "alice", "cpu").id


def claim(factory: Factory, job_id: str) -> int | None:
    with unit_of_work(factory) as s:
        return repo.claim_job(s, job_id, "w1")


def load(factory: Factory, job_id: str) -> Job:
    with unit_of_work(factory) as s:
        return repo.get_job(s, job_id)


def test_cancel_job_ends_the_running_job_of_that_claim(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    with unit_of_work(factory) as s:
        repo.request_cancel(s, job_id)
        assert repo.cancel_job(s, job_id, token, "stopped in convert", stage="convert")
    job = load(factory, job_id)
    assert (job.status, job.stage, job.error_code) == ("cancelled", "convert", "cancelled")
    assert job.error_message == "stopped in convert"
    assert job.finished_at is not None


def test_cancel_job_with_a_stale_token_or_finished_job_writes_nothing(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    assert token is not None
    with unit_of_work(factory) as s:
        assert not repo.cancel_job(s, job_id, token + 1)
        assert repo.fail_job(s, job_id, token, "timeout", "too slow")
        assert not repo.cancel_job(s, job_id, token)
    job = load(factory, job_id)
    assert (job.status, job.error_code) == ("failed", "timeout")
