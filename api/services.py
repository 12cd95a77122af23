"""Everything a request needs, built once at start-up (never at import) and closed at
shutdown: the database, the artifact store, Redis (fleet registry) and the broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.dispatch import CeleryDispatcher, Dispatcher, sending_app
from api.reconciler import Reconciler, ReconcilerLoop
from db.session import make_engine, make_session_factory
from exportq.fleet import FleetRegistry
from exportq.redis_tls import client_options
from exportq.settings import Settings
from exportq.storage import ArtifactStore, open_store

# Health checks and fleet reads must answer quickly even when a dependency is gone.
CONNECT_TIMEOUT_S = 2


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    redis: redis.Redis
    fleet: FleetRegistry
    dispatcher: Dispatcher

    def close(self) -> None:
        self.dispatcher.close()
        self.redis.close()
        self.engine.dispose()


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.database_url, **_engine_options(settings.database_url))
    client = redis.Redis.from_url(
        settings.broker_url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=CONNECT_TIMEOUT_S,
        decode_responses=True,
        **client_options(settings, settings.broker_url),
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        store=open_store(settings.artifacts_url, s3_endpoint_url=settings.s3_endpoint_url),
        redis=client,
        fleet=FleetRegistry(client, ttl_s=settings.fleet_ttl_s),
        dispatcher=CeleryDispatcher(sending_app(settings), settings.broker_url),
    )


def reconciler_loop(services: Services) -> ReconcilerLoop:
    """The reconciler on these services' database, broker and Redis (not started)."""
    reconciler = Reconciler(
        services.settings, services.sessions, services.dispatcher, services.redis
    )
    return ReconcilerLoop(reconciler, services.settings.reconcile_interval_s)


def _engine_options(url: str) -> dict[str, Any]:
    if sa.make_url(url).get_backend_name() == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}
