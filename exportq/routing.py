"""Which queue a job goes to, and which queues a worker consumes. Shared by the API (routing at
submit) and the workers (what they consume), so both sides always agree (docs/ROUTING.md).

- A cpu job goes to `cpu`; a cuda job without a GPU request to `cuda`, which every GPU worker
  consumes.
- A cuda job with a GPU request goes to one tier queue, `cuda.cc<NN>.mem<GB>`: the smallest
  compute-capability and memory tiers that cover the request (`exportq.tiers`).
- A GPU worker consumes the tier queue of every pair of tiers its GPU reaches, and `cuda`.
  So it consumes a job's queue exactly when its GPU reaches the request's tiers.
"""

from __future__ import annotations

from exportq.spec import GpuRequest, JobSpec
from exportq.tiers import GpuInfo, cc_tier_for, gpu_tier_queues, memory_tier_for, tier_queue

CPU_QUEUE = "cpu"
CUDA_QUEUE = "cuda"
# The Celery task every export message names; the API sends it by name, never importing workers.
EXPORT_TASK = "exportq.export"


def queue_for(spec: JobSpec) -> str:
    """The single queue that serves this job's device and GPU request."""
    if spec.device != "cuda":
        return CPU_QUEUE
    if spec.gpu is None or spec.gpu.empty:
        return CUDA_QUEUE
    return queue_for_request(spec.gpu)


def queue_for_request(request: GpuRequest) -> str:
    cc = cc_tier_for(request.min_compute_capability)
    memory = memory_tier_for(request.min_memory_gb)
    # GpuRequest bounds both fields by the largest tier, so a tier always exists.
    assert cc is not None and memory is not None, request
    return tier_queue(cc, memory)


def worker_queues(device: str, gpu: GpuInfo | None = None) -> list[str]:
    """Every queue a worker consumes, in the order it reads them: a GPU worker its tier queues
    (the most demanding first) and then `cuda`; a GPU worker of unknown hardware only `cuda`."""
    if device != "cuda":
        return [CPU_QUEUE]
    tiers = gpu_tier_queues(gpu) if gpu is not None else []
    return [*tiers, CUDA_QUEUE]
