"""`create_app()`: the FastAPI application. Nothing connects at import: the lifespan builds the
services (database, store, Redis, broker) when the server starts and closes them at stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.routes import ROUTERS
from api.services import build_services
from exportq import __version__
from exportq.settings import Settings, get_settings

DESCRIPTION = (
    "Export PyTorch models to validated TorchScript, PNNX and ncnn artifacts. Upload files as "
    "blobs, submit a job spec, follow the job, download its artifacts. Every error answers "
    '`{"error": {"code", "message", "details"}}` with a code from docs/ERRORS.md.'
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="exportq", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    return app
