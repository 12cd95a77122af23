"""Leases on running jobs, and what happens to a job whose worker is gone.

A claim (`repository.claim_job`) gives the job a lease; the worker running it renews the lease
(`extend`) while it runs. A lease that ran out means the worker died, froze or lost the
database: `recover` puts the job back in the queue under a new dispatch, or, once the job has
been claimed `max_attempts` times, ends it `failed` with `worker_lost` (a job that kills its
worker every time must not take the fleet down in a loop). Every write is conditional on what
was read, so two reconcilers (or a reconciler and a redelivery) recover a job once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.dispatch import redispatch
from db.models import Job, JobStatus, utcnow
from exportq.errors import ErrorCode

UNKNOWN_SIGNAL = "unknown"


class Recovery(StrEnum):
    NONE = "none"  # not running, or its lease is alive: nothing written
    REQUEUED = "requeued"
    FAILED = "failed"  # the attempt cap: `worker_lost`
    CANCELLED = "cancelled"  # its owner had asked to cancel it


def lease_until(lease_s: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(seconds=lease_s)


def extend(session: Session, job_id: str, token: int, lease_s: float) -> bool:
    """Renew the lease of the running job of this claim; False when the claim is stale."""
    now = utcnow()
    stmt = (
        sa.update(Job)
        .where(Job.id == job_id, Job.claim_token == token, Job.status == JobStatus.RUNNING)
        .values(lease_expires_at=lease_until(lease_s, now))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def mark_lost(session: Session, job_id: str, worker: str, signal: str | None) -> bool:
    """The worker's pool saw the process running `job_id` die: end its lease now and note the
    signal, so the redelivered message (or the reconciler) recovers it at once instead of when
    the lease would have run out. Only the claim `worker` holds is touched."""
    stmt = (
        sa.update(Job)
        .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
        .values(lease_expires_at=utcnow(), last_signal=(signal or UNKNOWN_SIGNAL)[:32])
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def expired(session: Session, now: datetime | None = None, limit: int = 100) -> list[str]:
    """Running jobs whose lease ran out, the longest expired first."""
    stmt = (
        sa.select(Job.id)
        .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < (now or utcnow()))
        .order_by(Job.lease_expires_at, Job.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def recover(session: Session, job_id: str, max_attempts: int, *, dispatch: bool = True) -> Recovery:
    """Recover a running job whose lease ran out: requeue it (with a new dispatch when
    `dispatch`; a redelivered message claiming it needs none), or end it at the attempt cap.
    `Recovery.NONE`, and nothing written, when the job is not running on an expired lease."""
    now = utcnow()
    row = session.execute(
        sa.select(Job.claim_token, Job.attempts, Job.last_signal, Job.cancel_requested).where(
            Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_expires_at < now
        )
    ).one_or_none()
    if row is None:
        return Recovery.NONE
    # Fenced on the claim read above: a concurrent recovery or claim makes this a no-op.
    fence = sa.and_(
        Job.id == job_id,
        Job.status == JobStatus.RUNNING,
        Job.claim_token == row.claim_token,
        Job.lease_expires_at < now,
    )
    signal = row.last_signal or UNKNOWN_SIGNAL
    ended = {"lease_expires_at": None, "finished_at": now, "updated_at": now}
    if row.cancel_requested:
        outcome, values = (
            Recovery.CANCELLED,
            {
                "status": JobStatus.CANCELLED,
                "error_code": ErrorCode.CANCELLED.value,
                "error_message": "cancelled; its worker was lost while it ran",
                **ended,
            },
        )
    elif row.attempts >= max_attempts:
        outcome, values = (
            Recovery.FAILED,
            {
                "status": JobStatus.FAILED,
                "error_code": ErrorCode.WORKER_LOST.value,
                "error_message": (
                    f"the worker running this job was lost {row.attempts} time(s) (last signal: "
                    f"{signal}); it is not retried again. A model that crashes its process "
                    "(a segfault, the out-of-memory killer) fails this way every time."
                ),
                **ended,
            },
        )
    else:
        outcome, values = (
            Recovery.REQUEUED,
            {
                "status": JobStatus.QUEUED,
                "worker": None,
                "stage": None,
                "started_at": None,
                "lease_expires_at": None,
                "updated_at": now,
            },
        )
    stmt = (
        sa.update(Job)
        .where(fence)
        .values(**values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).scalar_one_or_none() is None:
        return Recovery.NONE
    if outcome is Recovery.REQUEUED and dispatch:
        redispatch(session, job_id)
    return outcome


def fail_timed_out(session: Session, job_id: str, worker: str, message: str) -> bool:
    """The pool killed the process running `job_id` at the hard time limit: end the job
    `failed`/`timeout` (never requeued: it would time out again)."""
    now = utcnow()
    stmt = (
        sa.update(Job)
        .where(Job.id == job_id, Job.worker == worker, Job.status == JobStatus.RUNNING)
        .values(
            status=JobStatus.FAILED,
            error_code=ErrorCode.TIMEOUT.value,
            error_message=message,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).scalar_one_or_none() is not None
