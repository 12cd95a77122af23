"""`/v1/jobs`: submit, read, list and cancel export jobs.

A job is committed first and its task sent after: a worker never receives the id of a job the
database does not hold. If the broker is down the job stays `queued` (the answer is 503 naming
its id) and is dispatched again later; a duplicate message is harmless because workers claim
jobs with a fenced update.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status

from api.deps import DispatcherDep, FleetDep, OwnerDep, SessionDep, SessionsDep, SettingsDep
from api.errors import problem_responses
from api.openapi import SUBMIT_OPERATION
from api.submission import (
    check_blobs_present,
    check_module_allowed,
    fleet_notices,
    parse_spec,
    revoke_failed_notice,
)
from api.views import job_view
from db import repository
from db.session import unit_of_work
from exportq.api_models import JobPage, JobStatus, JobView
from exportq.errors import ServiceUnavailable
from exportq.routing import queue_for

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "",
    operation_id=SUBMIT_OPERATION,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": JobView, "description": "a replay of an earlier Idempotency-Key"},
        **problem_responses(422, 503),
    },
)
def submit_job(
    raw: Annotated[dict[str, Any], Body(description="a JobSpec")],
    response: Response,
    settings: SettingsDep,
    sessions: SessionsDep,
    fleet: FleetDep,
    dispatcher: DispatcherDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JobView:
    """Submit an export job. Upload its files first (`POST /v1/blobs`). `notices` says when no
    live worker serves the job's queue yet."""
    spec = parse_spec(raw, settings)
    check_module_allowed(spec, settings)
    with unit_of_work(sessions) as session:
        check_blobs_present(session, spec)
        job = None
        if idempotency_key is not None:
            job = repository.find_by_idempotency_key(session, owner, idempotency_key)
        if job is not None:
            response.status_code = status.HTTP_200_OK
        else:
            job = repository.create_job(
                session, spec, owner, queue_for(spec), idempotency_key=idempotency_key
            )
        view = job_view(job)
    # Committed. A replayed job still queued is sent again: its first send may have failed.
    if view.status == "queued":
        dispatcher.send_export(view.id, view.queue, spec.priority)
        view.notices = fleet_notices(fleet, view.queue)
    return view


@router.get("", responses=problem_responses(404, 422))
def list_jobs(
    session: SessionDep,
    owner: OwnerDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=repository.MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> JobPage:
    """Your jobs, newest first."""
    page = repository.list_jobs(session, owner=owner, status=status_, limit=limit, before=before)
    return JobPage(jobs=[job_view(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", responses=problem_responses(404))
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobView:
    return job_view(repository.get_job(session, job_id, owner))


@router.post("/{job_id}/cancel", responses=problem_responses(404))
def cancel_job(
    job_id: str, sessions: SessionsDep, dispatcher: DispatcherDep, owner: OwnerDep
) -> JobView:
    """Cancel a job: a queued one ends `cancelled` at once; a running one is flagged and its
    worker signalled, and it ends `cancelled` shortly; a finished one is left as it is."""
    with unit_of_work(sessions) as session:
        view = job_view(repository.request_cancel(session, job_id, owner))
    if view.status == "running":
        try:
            dispatcher.revoke(job_id)
        except ServiceUnavailable as exc:  # the flag is set; the worker also polls it
            view.notices.append(revoke_failed_notice(exc))
    return view
