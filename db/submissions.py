"""Queries for submission: idempotency keys, joining an identical job in flight, and serving a
finished identical job instead of exporting again. Functions take a Session and never commit.

"Identical" is the spec hash (`db.hashing`: the output-relevant spec, blob digests included);
tool versions are not in the hash, so `reusable_job` gets them from the caller (the versions
the live workers would export with) and compares them with each candidate's report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.hashing import canonical_json, spec_document
from db.models import Artifact, BlobKey, Job, JobStatus, utcnow
from exportq.spec import JobSpec

# How many finished identical jobs to look through for one made with the live tool versions.
REUSE_CANDIDATES = 10
IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING)

T = TypeVar("T")


def request_hash(spec: JobSpec) -> str:
    """What an Idempotency-Key is bound to: the whole spec as parsed (defaults filled in, so
    key order and spelled-out defaults do not matter), scheduling fields included: the same
    key with another priority is another request."""
    return hashlib.sha256(canonical_json(spec_document(spec)).encode("utf-8")).hexdigest()


def insert_once(session: Session, insert: Callable[[], T]) -> T | None:
    """Run `insert` in a savepoint; None when it broke a unique constraint (a concurrent
    request inserted the same idempotency key first: the caller reads that row instead)."""
    try:
        with session.begin_nested():
            return insert()
    except IntegrityError:
        return None


def find_in_flight(session: Session, owner: str, spec_hash: str) -> Job | None:
    """The owner's oldest queued or running job with this spec hash (the one to join)."""
    stmt = (
        sa.select(Job)
        .where(Job.owner == owner, Job.spec_hash == spec_hash, Job.status.in_(IN_FLIGHT))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    )
    return session.scalars(stmt).first()


def reusable_job(session: Session, spec_hash: str, versions: list[Mapping[str, str]]) -> Job | None:
    """The newest succeeded job with this spec hash whose report's tool versions equal every
    one of `versions` (the live workers that would run a new export); None when `versions` is
    empty: with no live worker nobody can vouch for the tools."""
    if not versions:
        return None
    stmt = (
        sa.select(Job)
        .where(Job.spec_hash == spec_hash, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(REUSE_CANDIDATES)
    )
    for job in session.scalars(stmt):
        made_with = (job.report or {}).get("versions") or {}
        if all(dict(v) == made_with for v in versions):
            return job
    return None


def copy_succeeded_job(
    session: Session,
    source: Job,
    spec: JobSpec,
    spec_hash: str,
    owner: str,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    """A new job for `owner`, succeeded at once with `source`'s report and artifact rows (the
    same content addresses: the bytes are shared, nothing is copied in the store)."""
    now = utcnow()
    job = Job(
        owner=owner,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        spec=spec_document(spec),
        spec_hash=spec_hash,
        device=source.device,
        queue=source.queue,
        priority=spec.priority,
        status=JobStatus.SUCCEEDED,
        stage=source.stage,
        report=source.report,
        # the job that really ran the export, also when `source` was itself served this way
        cached_from=source.cached_from or source.id,
        created_at=now,
        started_at=now,
        finished_at=now,
    )
    job.artifacts = [
        Artifact(kind=a.kind, name=a.name, size=a.size, sha256=a.sha256) for a in source.artifacts
    ]
    session.add(job)
    session.flush()
    return job


def bind_key(session: Session, job: Job, key: str | None, request_hash: str) -> None:
    """Record the request a new job came from; with a key, the flush raises IntegrityError
    when a concurrent request bound the same key first (run it under `insert_once`)."""
    job.idempotency_key = key
    job.request_hash = request_hash
    session.flush()


# -- upload keys ------------------------------------------------------------------------------


def find_blob_key(session: Session, owner: str, key: str) -> BlobKey | None:
    stmt = sa.select(BlobKey).where(BlobKey.owner == owner, BlobKey.key == key)
    return session.scalars(stmt).one_or_none()


def add_blob_key(session: Session, owner: str, key: str, digest: str) -> BlobKey:
    row = BlobKey(owner=owner, key=key, digest=digest)
    session.add(row)
    session.flush()
    return row
