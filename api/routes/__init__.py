"""One router per resource; `api.app` mounts them all."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import artifacts, blobs, fleet, health, jobs

ROUTERS: list[APIRouter] = [
    health.router,
    blobs.router,
    jobs.router,
    artifacts.router,
    fleet.router,
]
