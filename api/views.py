"""Database rows -> the JSON contract (`exportq.api_models`). One function per view, so every
route shows a job the same way."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from db.models import Artifact, Job
from exportq.api_models import ArtifactView, ErrorView, JobView
from exportq.report import ExportReport


def artifact_url(job_id: str, name: str) -> str:
    return f"/v1/jobs/{job_id}/artifacts/{quote(name, safe='')}"


def artifact_view(artifact: Artifact) -> ArtifactView:
    return ArtifactView(
        kind=artifact.kind,
        name=artifact.name,
        size=artifact.size,
        sha256=artifact.sha256,
        url=artifact_url(artifact.job_id, artifact.name),
    )


def job_view(job: Job, notices: Iterable[str] = ()) -> JobView:
    """The job as the API shows it; call it while the job's session is open (artifacts load
    lazily)."""
    error = None
    if job.error_code is not None:
        error = ErrorView(
            code=job.error_code,
            message=job.error_message or "",
            stage=job.stage,
            log_tail=job.error_log_tail,
        )
    return JobView(
        id=job.id,
        owner=job.owner,
        status=job.status,  # validated: the CHECK constraint keeps it in JobStatus
        stage=job.stage,
        device=job.device,
        queue=job.queue,
        attempts=job.attempts,
        worker=job.worker,
        error=error,
        report=ExportReport.model_validate(job.report) if job.report else None,
        artifacts=[artifact_view(a) for a in job.artifacts],
        spec=job.spec,
        cached_from=job.cached_from,
        notices=list(notices),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
