"""GPU capability tiers: the fixed steps that GPU queues are named after (docs/ROUTING.md).

A GPU is rounded *down* to the tiers it reaches; a request is rounded *up* to the smallest tier
that covers it. A worker consumes the queue of every tier pair its GPU reaches, so a job's one
queue is consumed by exactly the workers whose GPU reaches the request's tiers. Torch-free:
the API routes with it, the workers pick their queues with it, the spec validates against it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Compute capabilities as NVIDIA ships them: Pascal 6.0, Volta 7.0, Turing 7.5, Ampere 8.0 and
# 8.6, Ada 8.9, Hopper 9.0, Blackwell 10.0 (data centre) and 12.0 (workstation).
CC_TIERS: tuple[float, ...] = (6.0, 7.0, 7.5, 8.0, 8.6, 8.9, 9.0, 10.0, 12.0)
# Memory as cards are sold (GB): 8, T4/V100 16, L4/A10/4090 24, A100 40, L40S/A6000 48,
# A100/H100 80, H200 141, B200 180.
MEMORY_TIERS_GB: tuple[int, ...] = (8, 16, 24, 40, 48, 80, 141, 180)
# Drivers keep memory back (ECC, firmware): a T4 sold as 16 GB reports 15.0 GiB, an H100 80 GB
# 79.6 GiB. A GPU reaches a memory tier when it reports at least this share of it.
MEMORY_SLACK = 0.9
_EPS = 1e-6


class GpuInfo(BaseModel):
    """One GPU as a worker announces it: detected (nvidia-smi) or declared (EXPORTQ_WORKER_GPUS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    memory_gb: float = Field(gt=0, le=4096, description="total memory, GiB as the driver reports")
    compute_capability: float = Field(ge=1.0, le=20.0)
    source: Literal["declared", "nvidia-smi"] = "declared"


def tier_queue(cc_tier: float, memory_tier: int) -> str:
    """`cuda.cc<NN>.mem<GB>`: compute capability in tenths (8.6 -> cc86), memory in GB."""
    return f"cuda.cc{round(cc_tier * 10)}.mem{memory_tier}"


def cc_tiers_reached(compute_capability: float) -> list[float]:
    return [t for t in CC_TIERS if t <= compute_capability + _EPS]


def memory_tiers_reached(memory_gb: float) -> list[int]:
    return [t for t in MEMORY_TIERS_GB if memory_gb >= t * MEMORY_SLACK - _EPS]


def gpu_tier_queues(gpu: GpuInfo) -> list[str]:
    """Every tier queue `gpu` serves, the most demanding first: Celery's Redis transport reads a
    worker's queues in this order, so a big GPU takes the jobs only it can run before the rest."""
    return [
        tier_queue(cc, mem)
        for cc in reversed(cc_tiers_reached(gpu.compute_capability))
        for mem in reversed(memory_tiers_reached(gpu.memory_gb))
    ]


def cc_tier_for(requested: float | None) -> float | None:
    """The smallest compute-capability tier at or above `requested` (lowest tier for None);
    None when it is above every tier."""
    if requested is None:
        return CC_TIERS[0]
    return next((t for t in CC_TIERS if t >= requested - _EPS), None)


def memory_tier_for(requested: float | None) -> int | None:
    """The smallest memory tier at or above `requested` GB (lowest tier for None); None when
    it is above every tier."""
    if requested is None:
        return MEMORY_TIERS_GB[0]
    return next((t for t in MEMORY_TIERS_GB if t >= requested - _EPS), None)
