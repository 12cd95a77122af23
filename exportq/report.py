"""The export report: what `run_export` returns and every interface shows.

`steps` is the validation chain: each converted form compared per output with the eager
reference and with the step before it, on every input set (random trials, the dynamic shapes,
the user's samples). `first_divergent_step` names where drift first breaks its tolerance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from exportq.errors import ExportqError
from exportq.spec import Tolerance

STAGES = ("load", "export", "check_torchscript", "convert", "check_pnnx", "check_ncnn", "store")
ArtifactKind = Literal[
    "torchscript",
    "pnnx_param",
    "pnnx_bin",
    "pnnx_py",
    "ncnn_param",
    "ncnn_bin",
    "ncnn_py",
    "onnx",
    "report",
]


class ErrorInfo(BaseModel):
    code: str
    message: str
    stage: str | None = None
    log_tail: str | None = None

    @classmethod
    def from_exception(cls, exc: ExportqError) -> ErrorInfo:
        return cls(code=exc.code, message=exc.message, stage=exc.stage, log_tail=exc.log_tail)


class Comparison(BaseModel):
    """One output of one step on one input set, against one reference."""

    output: str
    input_set: str
    against: str
    ref_shape: list[int]
    shape: list[int]
    max_abs: float
    max_rel: float
    cosine: float
    passed: bool


class StepReport(BaseModel):
    step: Literal["torchscript", "pnnx", "ncnn"]
    status: Literal["passed", "failed", "skipped"]
    tolerance: Tolerance
    comparisons: list[Comparison] = Field(default_factory=list)
    note: str | None = None

    @property
    def against_eager(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.against == "eager"]

    def worst(self) -> Comparison | None:
        """The comparison against eager with the largest relative error."""
        rows = self.against_eager
        return max(rows, key=lambda c: (not c.passed, c.max_rel)) if rows else None


class ArtifactInfo(BaseModel):
    kind: ArtifactKind
    name: str
    size: int
    sha256: str
    path: str | None = Field(default=None, description="local path, when on this machine")
    key: str | None = Field(default=None, description="content address in the artifact store")


class GpuUsage(BaseModel):
    """The GPU a cuda job ran on, and the most memory the run had allocated on it."""

    name: str
    memory_gb: float = Field(description="total memory, GiB")
    compute_capability: float
    peak_memory_gb: float = Field(description="peak allocated by torch during the run, GiB")


class ExportReport(BaseModel):
    status: Literal["succeeded", "failed"]
    error: ErrorInfo | None = None
    stage: str
    method: Literal["trace", "script"] | None = None
    first_divergent_step: str | None = None
    steps: list[StepReport] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    gpu: GpuUsage | None = Field(default=None, description="cuda jobs: the GPU and its peak use")
    artifacts: list[ArtifactInfo] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def step(self, name: str) -> StepReport | None:
        return next((s for s in self.steps if s.step == name), None)

    def artifact(self, kind: str) -> ArtifactInfo | None:
        return next((a for a in self.artifacts if a.kind == kind), None)
