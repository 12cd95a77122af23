"""`/v1/jobs/{id}/artifacts`: what a job produced, and the bytes, streamed from the store."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, JobIdDep, SessionDep, StoreDep
from api.errors import problem_responses
from api.views import artifact_view
from db import repository
from exportq.api_models import ArtifactView
from exportq.errors import InternalError

router = APIRouter(prefix="/v1/jobs/{job_id}/artifacts", tags=["artifacts"])

CHECKSUM_HEADER = "X-Exportq-Sha256"


@router.get("", responses=problem_responses(404))
def list_artifacts(job_id: JobIdDep, session: SessionDep, caller: CallerDep) -> list[ArtifactView]:
    repository.get_job(session, job_id, caller.scope)
    return [artifact_view(a) for a in repository.list_artifacts(session, job_id)]


@router.get(
    "/{name}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": f"the bytes; `ETag` and `{CHECKSUM_HEADER}` carry their sha256",
        },
        **problem_responses(404),
    },
)
def download_artifact(
    job_id: JobIdDep, name: str, session: SessionDep, store: StoreDep, caller: CallerDep
) -> StreamingResponse:
    repository.get_job(session, job_id, caller.scope)
    artifact = repository.get_artifact(session, job_id, name)
    # Checked before answering: once streaming starts, the status line has gone out.
    if not store.exists(artifact.sha256):
        raise InternalError(f"artifact {name!r} of job {job_id} is recorded but not in the store")
    return StreamingResponse(
        store.read_chunks(artifact.sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(store.size(artifact.sha256)),
            "ETag": f'"{artifact.sha256}"',
            CHECKSUM_HEADER: artifact.sha256,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        },
    )
