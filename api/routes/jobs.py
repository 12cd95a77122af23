"""`/v1/jobs`: submit, read, list and cancel export jobs.

A job and its dispatch (the outbox row of its message) are committed together, and the message
is published after: a worker never receives the id of a job the database does not hold, and a
job is never stored without its message. If the broker is down the job stays `queued` (503
naming its id: stored, dispatched when the broker is back) and the reconciler publishes it; a
duplicate message is harmless because workers claim jobs with a fenced update.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status

from api.admission import Request as AdmissionRequest
from api.admission import admit, serving_versions
from api.deps import (
    CallerDep,
    DispatcherDep,
    FleetDep,
    JobIdDep,
    OwnerDep,
    SessionDep,
    SessionsDep,
    SettingsDep,
    job_id_param,
)
from api.errors import problem_responses
from api.fleet_admission import require_capable_worker
from api.openapi import SUBMIT_OPERATION
from api.relay import publish_pending
from api.submission import (
    check_blobs_present,
    check_module_allowed,
    fleet_notices,
    parse_spec,
    read_live_workers,
    revoke_failed_notice,
)
from api.views import job_view
from db import dispatch as outbox
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
        200: {
            "model": JobView,
            "description": "a replay of an earlier Idempotency-Key, or your identical job "
            "in flight",
        },
        **problem_responses(409, 422, 503),
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
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
    force: Annotated[
        bool, Query(description="export again even when an identical job exists")
    ] = False,
    queue_anyway: Annotated[
        bool, Query(description="queue the job even when no live worker could serve it yet")
    ] = False,
) -> JobView:
    """Submit an export job. Upload its files first (`POST /v1/blobs`). An identical job
    (same spec, same blobs) that succeeded with the tools the workers run now is served at
    once (`cached_from`); your identical job still in flight is answered instead of a new one;
    `force` exports again. `notices` says which, and when no live worker serves the queue."""
    spec = parse_spec(raw, settings)
    check_module_allowed(spec, settings)
    queue = queue_for(spec)
    workers = read_live_workers(fleet)
    versions = [] if force else serving_versions(workers, queue)
    request = AdmissionRequest(spec, owner, queue, idempotency_key=idempotency_key, force=force)
    with unit_of_work(sessions) as session:
        check_blobs_present(session, spec)
        admission = admit(session, request, versions)  # replay, reuse, join or a new job
        if admission.created and admission.dispatch:
            # A new job must have a live worker to go to, or be allowed to wait for one:
            # refusing here rolls the job back (api/fleet_admission.py).
            require_capable_worker(workers, spec, queue, settings, queue_anyway)
            # the message, in the job's own transaction
            outbox.add_dispatch(session, admission.job)
        view = job_view(admission.job, admission.notices)
    if not admission.created:
        response.status_code = status.HTTP_200_OK
    # Committed: publish at once (a replay publishes what its first try could not). When the
    # broker is down the dispatch stays in the outbox and the reconciler publishes it later.
    # A reused job needs no message; a joined one was published by its own submit.
    if admission.dispatch:
        published = publish_pending(sessions, dispatcher, job_id=view.id)
        if published.error is not None:
            raise published.error
        view.notices += fleet_notices(workers, view.queue)
    return view


@router.get("", responses=problem_responses(404, 422))
def list_jobs(
    session: SessionDep,
    caller: CallerDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=repository.MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> JobPage:
    """Your jobs (an admin: everyone's), newest first."""
    if before is not None:  # a cursor is a job id: only one the caller may see
        repository.get_job(session, job_id_param(before), caller.scope)
    page = repository.list_jobs(
        session, owner=caller.scope, status=status_, limit=limit, before=before
    )
    return JobPage(jobs=[job_view(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", responses=problem_responses(404))
def get_job(job_id: JobIdDep, session: SessionDep, caller: CallerDep) -> JobView:
    """A job of yours (an admin: anyone's); another owner's job is 404, like a missing one."""
    return job_view(repository.get_job(session, job_id, caller.scope))


@router.post("/{job_id}/cancel", responses=problem_responses(404))
def cancel_job(
    job_id: JobIdDep, sessions: SessionsDep, dispatcher: DispatcherDep, caller: CallerDep
) -> JobView:
    """Cancel a job: a queued one ends `cancelled` at once; a running one is flagged and its
    worker signalled, and it ends `cancelled` shortly; a finished one is left as it is."""
    with unit_of_work(sessions) as session:
        view = job_view(repository.request_cancel(session, job_id, caller.scope))
    if view.status == "running":
        try:
            dispatcher.revoke(job_id)
        except ServiceUnavailable as exc:  # the flag is set; the worker also polls it
            view.notices.append(revoke_failed_notice(exc))
    return view
