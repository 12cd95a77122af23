"""GPU tier routing: which queue a request lands on, which queues a GPU consumes, and the
invariant that ties them (a worker consumes a job's queue iff its GPU reaches the request's
tiers), checked over a grid of GPUs and requests."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from exportq.routing import queue_for, queue_for_request, worker_queues
from exportq.spec import GpuRequest, JobSpec
from exportq.tiers import (
    CC_TIERS,
    MEMORY_SLACK,
    MEMORY_TIERS_GB,
    GpuInfo,
    cc_tier_for,
    memory_tier_for,
)


def job(**extra: Any) -> JobSpec:
    doc = {
        "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
        "inputs": [{"name": "x", "shape": [1]}],
    }
    return JobSpec.model_validate({**doc, **extra})


def gpu(cc: float, memory: float, name: str = "gpu") -> GpuInfo:
    return GpuInfo(name=name, memory_gb=memory, compute_capability=cc)


def test_cpu_and_plain_cuda_jobs() -> None:
    assert queue_for(job()) == "cpu"
    assert queue_for(job(device="cuda")) == "cuda"
    assert queue_for(job(device="cuda", gpu={})) == "cuda"


@pytest.mark.parametrize(
    ("request_", "queue"),
    [
        ({"min_memory_gb": 16}, "cuda.cc60.mem16"),
        ({"min_memory_gb": 17}, "cuda.cc60.mem24"),
        ({"min_memory_gb": 0.5}, "cuda.cc60.mem8"),
        ({"min_compute_capability": 8.0}, "cuda.cc80.mem8"),
        ({"min_compute_capability": 8.7}, "cuda.cc89.mem8"),
        ({"min_compute_capability": 8.0, "min_memory_gb": 40}, "cuda.cc80.mem40"),
        ({"min_compute_capability": 9.0, "min_memory_gb": 141}, "cuda.cc90.mem141"),
        ({"min_compute_capability": 12.0, "min_memory_gb": 180}, "cuda.cc120.mem180"),
    ],
)
def test_a_request_lands_on_the_smallest_covering_tier(
    request_: dict[str, float], queue: str
) -> None:
    assert queue_for(job(device="cuda", gpu=request_)) == queue


@pytest.mark.parametrize("request_", [{"min_memory_gb": 181}, {"min_compute_capability": 12.1}])
def test_a_request_beyond_the_largest_tier_is_invalid(request_: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="less than or equal"):
        job(device="cuda", gpu=request_)


def test_queues_a_declared_gpu_consumes() -> None:
    # A T4 reports 15.0 GiB: it counts as a 16 GB card (drivers keep some memory back).
    t4 = worker_queues("cuda", gpu(7.5, 15.0, "Tesla T4"))
    assert t4 == [
        "cuda.cc75.mem16",
        "cuda.cc75.mem8",
        "cuda.cc70.mem16",
        "cuda.cc70.mem8",
        "cuda.cc60.mem16",
        "cuda.cc60.mem8",
        "cuda",
    ]
    h100 = worker_queues("cuda", gpu(9.0, 79.6, "H100"))
    assert h100[0] == "cuda.cc90.mem80" and h100[-1] == "cuda"
    assert "cuda.cc90.mem141" not in h100 and "cuda.cc100.mem8" not in h100
    assert len(h100) == len([t for t in CC_TIERS if t <= 9.0]) * 6 + 1
    assert worker_queues("cuda", None) == ["cuda"]
    assert worker_queues("cpu", gpu(9.0, 80)) == ["cpu"]
    # Below every tier (an old or small GPU): plain cuda jobs only.
    assert worker_queues("cuda", gpu(5.2, 4.0)) == ["cuda"]


GPUS = [
    gpu(cc, memory)
    for cc, memory in itertools.product(
        [5.0, 6.0, 6.1, 7.0, 7.5, 8.0, 8.6, 8.7, 8.9, 9.0, 10.0, 12.0],
        [4.0, 7.9, 8.0, 11.0, 15.0, 16.0, 22.5, 24.0, 31.7, 40.0, 45.0, 79.6, 93.6, 140.4, 179.0],
    )
]
REQUESTS = [
    GpuRequest(min_compute_capability=cc, min_memory_gb=memory)
    for cc, memory in itertools.product(
        [None, 3.0, 6.0, 6.5, 7.5, 8.0, 8.6, 8.7, 9.0, 10.0, 12.0],
        [None, 1.0, 8.0, 12.0, 16.0, 20.0, 24.0, 40.0, 48.0, 64.0, 80.0, 141.0, 180.0],
    )
]


@pytest.mark.parametrize(
    "request_", REQUESTS, ids=lambda r: f"cc{r.min_compute_capability}-mem{r.min_memory_gb}"
)
def test_a_worker_consumes_the_queue_iff_its_gpu_reaches_the_requested_tiers(
    request_: GpuRequest,
) -> None:
    queue = queue_for_request(request_)
    cc_tier = cc_tier_for(request_.min_compute_capability)
    memory_tier = memory_tier_for(request_.min_memory_gb)
    assert cc_tier is not None and memory_tier is not None
    for g in GPUS:
        consumes = queue in worker_queues("cuda", g)
        reaches = g.compute_capability >= cc_tier and g.memory_gb >= memory_tier * MEMORY_SLACK
        assert consumes == reaches, (g, queue)
        if consumes:  # sound: never a GPU below what was asked (memory: up to the slack)
            assert g.compute_capability >= (request_.min_compute_capability or 0)
            assert g.memory_gb >= (request_.min_memory_gb or 0) * MEMORY_SLACK
        # Tier rounding only ever asks for more, and by less than one tier step.
        assert cc_tier >= (request_.min_compute_capability or CC_TIERS[0])
        assert memory_tier >= (request_.min_memory_gb or MEMORY_TIERS_GB[0])


def test_every_gpu_at_a_tier_serves_every_request_at_or_below_it() -> None:
    for cc, memory in itertools.product(CC_TIERS, MEMORY_TIERS_GB):
        queues = worker_queues("cuda", gpu(cc, memory))
        for asked_cc, asked_memory in itertools.product(CC_TIERS, MEMORY_TIERS_GB):
            asked = GpuRequest(min_compute_capability=asked_cc, min_memory_gb=asked_memory)
            assert (queue_for_request(asked) in queues) == (
                asked_cc <= cc and asked_memory <= memory
            )
