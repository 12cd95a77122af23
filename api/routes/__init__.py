"""One router per resource; `api.app` mounts them all."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import artifacts, blobs, fleet, health, jobs

# Open to anyone: probes (a load balancer, `exportq` fleet scripts) carry no token.
PUBLIC_ROUTERS: list[APIRouter] = [health.router]
# Everything else needs a bearer token (`api.auth`); `api.app` mounts these behind it.
ROUTERS: list[APIRouter] = [
    blobs.router,
    jobs.router,
    artifacts.router,
    fleet.router,
]
