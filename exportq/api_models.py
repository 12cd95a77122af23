"""The JSON the API speaks, shared by the server (`api/`) and the client (`exportq/client.py`).

Torch-free pydantic models; the OpenAPI document is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from exportq.report import ExportReport

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class ErrorView(BaseModel):
    code: str
    message: str
    stage: str | None = None
    log_tail: str | None = None


class ArtifactView(BaseModel):
    kind: str
    name: str
    size: int
    sha256: str
    url: str = Field(description="path of the streamed download, relative to the API root")


class JobView(BaseModel):
    id: str
    owner: str
    status: JobStatus
    stage: str | None = None
    device: str
    queue: str
    attempts: int = 0
    worker: str | None = None
    error: ErrorView | None = None
    report: ExportReport | None = None
    artifacts: list[ArtifactView] = Field(default_factory=list)
    spec: dict[str, Any]
    cached_from: str | None = Field(
        default=None,
        description="the job whose export this one reuses (an identical spec, same tools)",
    )
    notices: list[str] = Field(
        default_factory=list, description="things the submitter should know, e.g. no live worker"
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(default=None, description="pass as `before` for the next page")


class BlobView(BaseModel):
    digest: str
    size: int


class WorkerView(BaseModel):
    name: str
    device: Literal["cpu", "cuda"]
    queues: list[str]
    capabilities: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started_at: datetime
    last_seen: datetime


class QueueView(BaseModel):
    name: str
    length: int
    workers: int = Field(description="live workers consuming this queue")


class FleetView(BaseModel):
    workers: list[WorkerView]
    queues: list[QueueView]


class ProblemView(BaseModel):
    """Every error response: `{"error": {"code": ..., "message": ..., "details": ...}}`."""

    class Problem(BaseModel):
        code: str
        message: str
        details: dict[str, Any] | list[Any] | None = None

    error: Problem


class HealthView(BaseModel):
    status: Literal["ok"] = "ok"
    checks: dict[str, str] = Field(
        default_factory=dict, description="each dependency checked, and what it answered"
    )
