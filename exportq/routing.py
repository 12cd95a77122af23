"""Which queue a job goes to. Shared by the API (routing at submit) and the workers (which
queues to consume), so both sides always agree."""

from __future__ import annotations

from exportq.spec import JobSpec

CPU_QUEUE = "cpu"
CUDA_QUEUE = "cuda"
# The Celery task every export message names; the API sends it by name, never importing workers.
EXPORT_TASK = "exportq.export"


def queue_for(spec: JobSpec) -> str:
    """The single queue that serves this job's device request."""
    return CUDA_QUEUE if spec.device == "cuda" else CPU_QUEUE


def queues_for_device(device: str) -> list[str]:
    """Every queue a worker of this device kind consumes."""
    return [CUDA_QUEUE] if device == "cuda" else [CPU_QUEUE]
