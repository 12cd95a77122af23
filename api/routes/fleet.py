"""`GET /v1/fleet`: the live workers (from their heartbeats) and the queues' lengths."""

from __future__ import annotations

import redis
from fastapi import APIRouter

from api.deps import FleetDep
from api.errors import problem_responses
from exportq.api_models import FleetView
from exportq.errors import ServiceUnavailable
from exportq.routing import CPU_QUEUE, CUDA_QUEUE

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])

BASE_QUEUES = [CPU_QUEUE, CUDA_QUEUE]


@router.get("", responses=problem_responses(503))
def fleet_view(fleet: FleetDep) -> FleetView:
    """Every live worker, and every queue: cpu, cuda, and each one a live worker consumes."""
    try:
        workers = fleet.live_workers()
        extra = sorted({q for w in workers for q in w.queues} - set(BASE_QUEUES))
        queues = fleet.queues(BASE_QUEUES + extra)
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"cannot read the fleet registry in Redis ({exc})", details={"service": "redis"}
        ) from exc
    return FleetView(workers=workers, queues=queues)
