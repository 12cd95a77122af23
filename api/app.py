"""`create_app()`: the FastAPI application. Nothing connects at import: the lifespan builds the
services (database, store, Redis, broker) when the server starts and closes them at stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.auth import current_caller
from api.errors import install_error_handlers, problem_responses
from api.openapi import install_openapi
from api.routes import PUBLIC_ROUTERS, ROUTERS
from api.services import build_services, reconciler_loop
from exportq import __version__
from exportq.settings import Settings, get_settings

DESCRIPTION = (
    "Export PyTorch models to validated TorchScript, PNNX and ncnn artifacts. Upload files as "
    "blobs, submit a job spec, follow the job, download its artifacts. Every error answers "
    '`{"error": {"code", "message", "details"}}` with a code from docs/ERRORS.md. Every route '
    "but `/healthz` and `/readyz` needs `Authorization: Bearer <token>`."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        # The outbox relay and the reconciler (docs/RELIABILITY.md), unless a separate
        # `exportq reconciler` does it for the deployment.
        loop = reconciler_loop(services).start() if settings.reconciler_in_api else None
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()
            services.close()

    app = FastAPI(title="exportq", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    for router in ROUTERS:
        app.include_router(
            router, dependencies=[Depends(current_caller)], responses=problem_responses(401)
        )
    install_openapi(app)
    return app
