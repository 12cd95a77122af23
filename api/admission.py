"""What a valid submission becomes, in this order:

1. replay: the owner used this Idempotency-Key before. The same request (same request hash)
   answers that job again; another request is refused (409), and nothing is stored.
2. reuse: a succeeded job with the same spec hash, made with the tool versions of every live
   worker on the job's queue, exists (any owner's: the artifacts are content-addressed and the
   spec names the same blobs). A new job is recorded, `succeeded` at once, with
   `cached_from`, that job's report and artifacts; nothing is sent to a worker.
3. join: the owner already has an identical job queued or running: that job answers (200,
   with a notice). Only the owner's own: another owner's job would be invisible to them.
   Not with an Idempotency-Key: a key names a job of its own, so a replay answers the job
   the key created whatever has ended since.
4. a new queued job.

`force` skips 2 and 3. Concurrent requests with one key race on the unique (owner, key)
constraint: one inserts, the others read its job and answer as a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from db import repository, submissions
from db.hashing import spec_hash
from db.models import Job
from exportq.api_models import WorkerView
from exportq.errors import IdempotencyConflict, InternalError
from exportq.spec import JobSpec


@dataclass
class Admission:
    job: Job
    created: bool  # a new job row: 201, else 200
    dispatch: bool  # a queued job of this request's own whose message should be sent
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    spec: JobSpec
    owner: str
    queue: str
    idempotency_key: str | None = None
    force: bool = False


def serving_versions(workers: list[WorkerView] | None, queue: str) -> list[Mapping[str, str]]:
    """The tool versions of each live worker consuming `queue`; [] when unknown (no reuse)."""
    return [w.versions for w in workers or [] if queue in w.queues]


def admit(session: Session, request: Request, versions: list[Mapping[str, str]]) -> Admission:
    """Decide and record what the request becomes (see the module docstring)."""
    rhash = submissions.request_hash(request.spec)
    key = request.idempotency_key
    if key is not None:
        replay = _replay(session, request.owner, key, rhash)
        if replay is not None:
            return replay
    shash = spec_hash(request.spec)
    if not request.force:
        source = submissions.reusable_job(session, shash, versions)
        if source is not None:
            source_id = source.cached_from or source.id
            job = submissions.insert_once(
                session,
                lambda: submissions.copy_succeeded_job(
                    session,
                    source,
                    request.spec,
                    shash,
                    request.owner,
                    idempotency_key=key,
                    request_hash=rhash,
                ),
            )
            if job is None:
                return _lost_race(session, request.owner, key, rhash)
            notice = (
                f"served from job {source_id}: an identical export made with the tools the "
                "workers run now; nothing was exported again (force to export anyway)"
            )
            return Admission(job=job, created=True, dispatch=False, notices=[notice])
        joined = submissions.find_in_flight(session, request.owner, shash) if key is None else None
        if joined is not None:
            notice = (
                f"joined your identical job {joined.id}, already {joined.status}; its result "
                "is this submission's (force to export again)"
            )
            return Admission(job=joined, created=False, dispatch=False, notices=[notice])

    def create() -> Job:
        # The key is bound here, not by create_job: its lookup would answer a job a concurrent
        # request committed meanwhile as if it were new; a bound key collides instead.
        job = repository.create_job(session, request.spec, request.owner, request.queue)
        submissions.bind_key(session, job, key, rhash)
        return job

    created = submissions.insert_once(session, create)
    if created is None:
        return _lost_race(session, request.owner, key, rhash)
    return Admission(job=created, created=True, dispatch=True)


def _replay(session: Session, owner: str, key: str, rhash: str) -> Admission | None:
    job = repository.find_by_idempotency_key(session, owner, key)
    if job is None:
        return None
    # A job keyed before request hashes were recorded (NULL) cannot be told apart: replay it.
    if job.request_hash is not None and job.request_hash != rhash:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was used for job {job.id} with another request; "
            "use a new key for a new request",
            details={"idempotency_key": key, "job_id": job.id},
        )
    # Still queued: send again, its first send may have failed (workers claim it once).
    return Admission(job=job, created=False, dispatch=job.status == "queued")


def _lost_race(session: Session, owner: str, key: str | None, rhash: str) -> Admission:
    """A concurrent request with the same key inserted first: answer as its replay."""
    replay = _replay(session, owner, key, rhash) if key is not None else None
    if replay is None:  # only a key is unique per owner; nothing else can collide
        raise InternalError("a new job broke a unique constraint without an idempotency key")
    return replay
