"""`/healthz` (the process is up) and `/readyz` (it can serve: the database and Redis answer)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from api.deps import ServicesDep
from api.errors import problem_responses
from exportq.api_models import HealthView
from exportq.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> HealthView:
    return HealthView()


@router.get("/readyz", responses=problem_responses(503))
def readyz(services: ServicesDep) -> HealthView:
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0]
    try:
        services.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0]
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        raise ServiceUnavailable(
            f"not ready: {', '.join(failed)} unreachable", details={"checks": checks}
        )
    return HealthView(checks=checks)
