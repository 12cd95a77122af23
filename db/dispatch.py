"""The dispatch outbox: every message the fleet must receive is first a row in `dispatches`,
written in the transaction that makes it necessary (a submit, a recovered job). A relay
publishes the rows and stamps `published_at`; a row is never deleted, so the table is also the
history of a job's dispatches. Functions take a Session and never commit.

A dispatch is published at least once: a relay that dies between the broker's accept and its
stamp publishes it again. Workers claim jobs with a fenced update, so a duplicate is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.models import Dispatch, Job, JobStatus, utcnow

ERROR_MAX_CHARS = 2_000


@dataclass(frozen=True)
class Pending:
    """An unpublished dispatch, and whether its job still needs it."""

    id: int
    job_id: str
    queue: str
    priority: int
    needed: bool  # the job is still queued; a cancelled or finished job needs no message


def add_dispatch(session: Session, job: Job) -> Dispatch:
    """A message to send for `job`, in the caller's transaction."""
    dispatch = Dispatch(job_id=job.id, queue=job.queue, priority=job.priority)
    session.add(dispatch)
    session.flush()
    return dispatch


def redispatch(session: Session, job_id: str) -> bool:
    """A new dispatch for a queued job (its message was lost); False when it is not queued."""
    row = session.execute(
        sa.select(Job.queue, Job.priority).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
    ).one_or_none()
    if row is None:
        return False
    session.add(Dispatch(job_id=job_id, queue=row.queue, priority=row.priority))
    session.flush()
    return True


def pending(
    session: Session,
    limit: int = 100,
    job_id: str | None = None,
    created_before: datetime | None = None,
) -> list[Pending]:
    """Unpublished dispatches, oldest first (only `job_id`'s; only those created before
    `created_before`, so a relay leaves a submit's own fast publish alone)."""
    stmt = (
        sa.select(Dispatch.id, Dispatch.job_id, Dispatch.queue, Dispatch.priority, Job.status)
        .join(Job, Job.id == Dispatch.job_id)
        .where(Dispatch.published_at.is_(None))
        .order_by(Dispatch.id)
        .limit(limit)
    )
    if job_id is not None:
        stmt = stmt.where(Dispatch.job_id == job_id)
    if created_before is not None:
        stmt = stmt.where(Dispatch.created_at < created_before)
    return [
        Pending(r.id, r.job_id, r.queue, r.priority, r.status == JobStatus.QUEUED)
        for r in session.execute(stmt)
    ]


def mark_published(session: Session, dispatch_id: int) -> None:
    session.execute(
        sa.update(Dispatch)
        .where(Dispatch.id == dispatch_id)
        .values(published_at=utcnow(), attempts=Dispatch.attempts + 1, last_error=None)
    )


def mark_failed(session: Session, dispatch_id: int, error: str) -> None:
    """The broker refused or was unreachable: keep the row pending, note why."""
    session.execute(
        sa.update(Dispatch)
        .where(Dispatch.id == dispatch_id)
        .values(attempts=Dispatch.attempts + 1, last_error=error[:ERROR_MAX_CHARS])
    )


def last_published(
    session: Session, published_before: datetime, limit: int = 500
) -> list[tuple[str, str]]:
    """(job id, queue) of the queued jobs with no pending dispatch whose latest one was
    published before `published_before`, oldest first: whose message Redis may have lost."""
    latest = (
        sa.select(Dispatch.job_id, sa.func.max(Dispatch.published_at).label("at"))
        .group_by(Dispatch.job_id)
        .having(sa.func.count() == sa.func.count(Dispatch.published_at))  # none pending
        .subquery()
    )
    stmt = (
        sa.select(Job.id, Job.queue)
        .join(latest, latest.c.job_id == Job.id)
        .where(Job.status == JobStatus.QUEUED, latest.c.at < published_before)
        .order_by(latest.c.at, Job.id)
        .limit(limit)
    )
    return [(row.id, row.queue) for row in session.execute(stmt)]


def dispatches_of(session: Session, job_id: str) -> list[Dispatch]:
    stmt = sa.select(Dispatch).where(Dispatch.job_id == job_id).order_by(Dispatch.id)
    return list(session.scalars(stmt))
