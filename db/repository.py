"""Every query of the store. Functions take a Session and never commit: the task or request
wrapper owns the transaction (`db.session.unit_of_work`).

Worker writes are fenced: `claim_job` moves a queued job to running and returns a new
`claim_token`; `set_stage` and `finish_job` (and `fail_job` with a token) write only while the
job is still running under that token. A duplicate or stale delivery therefore writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from db.hashing import spec_document, spec_hash
from db.models import Artifact, Blob, Job, JobStatus, utcnow
from exportq.errors import ErrorCode, NotFound
from exportq.report import ArtifactInfo, ExportReport
from exportq.spec import JobSpec

LOG_TAIL_MAX_CHARS = 32_000
MESSAGE_MAX_CHARS = 8_000
MAX_PAGE = 500


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None  # pass as `before` to get the next (older) page


# -- jobs: submit and read -------------------------------------------------------------------


def create_job(
    session: Session,
    spec: JobSpec,
    owner: str,
    queue: str,
) -> Job:
    """A new queued job. An Idempotency-Key is bound afterwards, under a unique constraint
    that settles concurrent submits (`db.submissions.bind_key`)."""
    job = Job(
        owner=owner,
        spec=spec_document(spec),
        spec_hash=spec_hash(spec),
        device=spec.device,
        queue=queue,
        priority=spec.priority,
        status=JobStatus.QUEUED,
    )
    session.add(job)
    session.flush()
    return job


def find_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    stmt = sa.select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    return session.scalars(stmt).one_or_none()


def get_job(session: Session, job_id: str, owner: str | None = None) -> Job:
    """The job, if it exists and `owner` may see it (None: an admin, sees all)."""
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise NotFound(f"no job {job_id!r}", details={"job_id": job_id})
    return job


def list_jobs(
    session: Session,
    *,
    owner: str | None = None,
    status: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> JobPage:
    """Jobs newest first, `limit` at a time. `before` is the `next_cursor` of the previous page
    (a job id): the page holds the jobs created before that one."""
    limit = max(1, min(limit, MAX_PAGE))
    # Each job is shown with its artifacts: load them in one more query, not one per job.
    stmt = sa.select(Job).options(selectinload(Job.artifacts))
    if owner is not None:
        stmt = stmt.where(Job.owner == owner)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if before is not None:
        stmt = stmt.where(_older_than(session, before))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    jobs = list(session.scalars(stmt))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JobPage(jobs=jobs, next_cursor=jobs[-1].id if more else None)


def _older_than(session: Session, cursor: str) -> sa.ColumnElement[bool]:
    row = session.execute(sa.select(Job.created_at).where(Job.id == cursor)).one_or_none()
    if row is None:
        raise NotFound(f"no job {cursor!r} to page from", details={"job_id": cursor})
    created_at = row[0]
    return sa.or_(
        Job.created_at < created_at,
        sa.and_(Job.created_at == created_at, Job.id < cursor),
    )


# -- jobs: the worker's fenced writes -----------------------------------------------------------


def claim_job(
    session: Session, job_id: str, worker: str, lease_s: float | None = None
) -> int | None:
    """Move a queued job to running for `worker`; the new claim token, or None when the job is
    not queued (claimed already, finished, cancelled, or missing). One conditional UPDATE, so
    of two concurrent claimers exactly one wins. With `lease_s` the claim is a lease the worker
    must renew (`db.leases`); a running job whose lease ran out is recovered there first."""
    now = utcnow()
    lease = {} if lease_s is None else {"lease_expires_at": now + timedelta(seconds=lease_s)}
    stmt = (
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            worker=worker,
            attempts=Job.attempts + 1,
            claim_token=Job.claim_token + 1,
            stage=None,
            started_at=now,
            updated_at=now,
            **lease,
        )
        .returning(Job.claim_token)
        .execution_options(synchronize_session="fetch")
    )
    return session.execute(stmt).scalar_one_or_none()


def set_stage(session: Session, job_id: str, token: int, stage: str) -> bool:
    """Record the running job's stage; False (nothing written) when `token` is stale."""
    return _fenced_update(session, job_id, token, stage=stage)


def finish_job(
    session: Session,
    job_id: str,
    token: int,
    report: ExportReport,
    artifacts: list[ArtifactInfo],
) -> bool:
    """Store the result of a run: status from the report, its error, the artifacts. False, and
    nothing written, when `token` is stale or the job is no longer running."""
    error = report.error
    written = _fenced_update(
        session,
        job_id,
        token,
        status=report.status,
        stage=(error.stage if error and error.stage else report.stage),
        error_code=error.code if error else None,
        error_message=_clip_message(error.message) if error else None,
        error_log_tail=_tail(error.log_tail) if error else None,
        report=report.model_dump(mode="json"),
        finished_at=utcnow(),
    )
    if written:
        session.add_all(_artifact_row(job_id, a) for a in artifacts)
        session.flush()
    return written


def fail_job(
    session: Session,
    job_id: str,
    token: int | None,
    code: str,
    message: str,
    log_tail: str | None = None,
    stage: str | None = None,
) -> bool:
    """End a job as failed with an error. With a token: only the running job of that claim.
    Without (the admin and reconciler path): any job not finished yet, queued or running; a
    worker still running it is then fenced off. False when nothing was written."""
    values: dict[str, Any] = {
        "status": JobStatus.FAILED,
        "error_code": code,
        "error_message": _clip_message(message),
        "error_log_tail": _tail(log_tail),
        "finished_at": utcnow(),
    }
    if stage is not None:
        values["stage"] = stage
    if token is not None:
        return _fenced_update(session, job_id, token, **values)
    unfinished = Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
    return _update_where(session, job_id, unfinished, **values)


def cancel_job(
    session: Session,
    job_id: str,
    token: int,
    message: str = "cancelled while running",
    stage: str | None = None,
) -> bool:
    """End the running job of this claim as cancelled: its worker stopped because it was asked
    to. False, and nothing written, when `token` is stale or the job is no longer running."""
    values: dict[str, Any] = {
        "status": JobStatus.CANCELLED,
        "error_code": ErrorCode.CANCELLED.value,
        "error_message": _clip_message(message),
        "finished_at": utcnow(),
    }
    if stage is not None:
        values["stage"] = stage
    return _fenced_update(session, job_id, token, **values)


def _fenced_update(session: Session, job_id: str, token: int, **values: Any) -> bool:
    fence = sa.and_(Job.claim_token == token, Job.status == JobStatus.RUNNING)
    return _update_where(session, job_id, fence, **values)


def _update_where(
    session: Session, job_id: str, condition: sa.ColumnElement[bool], **values: Any
) -> bool:
    stmt = (
        sa.update(Job)
        .where(Job.id == job_id, condition)
        .values(updated_at=utcnow(), **values)
        .returning(Job.id)
        .execution_options(synchronize_session="fetch")
    )
    return session.execute(stmt).scalar_one_or_none() is not None


# -- cancellation ----------------------------------------------------------------------------


def request_cancel(session: Session, job_id: str, owner: str | None = None) -> Job:
    """Cancel a job: a queued one ends `cancelled` at once; a running one is flagged
    (`cancel_requested`) for its worker to stop; a finished one is left as it is."""
    get_job(session, job_id, owner)
    cancelled = _update_where(
        session,
        job_id,
        Job.status == JobStatus.QUEUED,
        status=JobStatus.CANCELLED,
        cancel_requested=True,
        error_code=ErrorCode.CANCELLED.value,
        error_message="cancelled before it started",
        finished_at=utcnow(),
    )
    if not cancelled:  # claimed meanwhile, or already running: ask the worker
        _update_where(session, job_id, Job.status == JobStatus.RUNNING, cancel_requested=True)
    return _reload(session, job_id)


def is_cancel_requested(session: Session, job_id: str) -> bool:
    """True when the job was asked to stop (or is cancelled already); False when missing."""
    stmt = sa.select(Job.cancel_requested, Job.status).where(Job.id == job_id)
    row = session.execute(stmt).one_or_none()
    return row is not None and (row[0] or row[1] == JobStatus.CANCELLED)


def _reload(session: Session, job_id: str) -> Job:
    stmt = sa.select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    return session.scalars(stmt).one()


# -- blobs and artifacts ---------------------------------------------------------------------


def add_blob(session: Session, digest: str, size: int) -> None:
    """Record an uploaded blob; a second record of the same digest is a no-op, even when two
    uploads race."""
    dialect = session.get_bind().dialect.name
    values = {"sha256": digest, "size": size, "created_at": utcnow()}
    if dialect == "postgresql":
        session.execute(postgresql.insert(Blob).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(Blob).values(values).on_conflict_do_nothing())
    elif session.get(Blob, digest) is None:
        session.add(Blob(**values))
        session.flush()


def blob_exists(session: Session, digest: str) -> bool:
    stmt = sa.select(sa.literal(True)).where(Blob.sha256 == digest)
    return session.execute(stmt).first() is not None


def missing_blobs(session: Session, digests: list[str]) -> list[str]:
    """The digests of `digests` that no upload recorded, in the given order."""
    if not digests:
        return []
    known = set(session.scalars(sa.select(Blob.sha256).where(Blob.sha256.in_(digests))))
    return [d for d in digests if d not in known]


def list_artifacts(session: Session, job_id: str) -> list[Artifact]:
    stmt = sa.select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id)
    return list(session.scalars(stmt))


def get_artifact(session: Session, job_id: str, name: str) -> Artifact:
    stmt = sa.select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
    artifact = session.scalars(stmt).one_or_none()
    if artifact is None:
        raise NotFound(
            f"job {job_id!r} has no artifact {name!r}",
            details={"job_id": job_id, "name": name},
        )
    return artifact


def _artifact_row(job_id: str, info: ArtifactInfo) -> Artifact:
    return Artifact(
        job_id=job_id, kind=info.kind, name=info.name, size=info.size, sha256=info.sha256
    )


def _tail(text: str | None) -> str | None:
    if text is None or len(text) <= LOG_TAIL_MAX_CHARS:
        return text
    return "...\n" + text[-LOG_TAIL_MAX_CHARS:]


def _clip_message(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX_CHARS else text[:MESSAGE_MAX_CHARS] + "..."
