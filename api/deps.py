"""Route dependencies as typed aliases: a route says `session: SessionDep` and gets one.

Tests swap a part through `app.dependency_overrides[get_dispatcher] = ...`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.dispatch import Dispatcher
from api.services import Services
from exportq.fleet import FleetRegistry
from exportq.settings import Settings
from exportq.storage import ArtifactStore

# Every job belongs to this owner until bearer tokens name people (a later issue).
LOCAL_OWNER = "local"


def get_services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session for reads; writes use `db.session.unit_of_work(sessions)` explicitly, so a
    route can act (send a task, revoke) only after its transaction committed."""
    with services.sessions() as session:
        yield session


def get_sessions(services: ServicesDep) -> sessionmaker[Session]:
    return services.sessions


def get_store(services: ServicesDep) -> ArtifactStore:
    return services.store


def get_fleet(services: ServicesDep) -> FleetRegistry:
    return services.fleet


def get_dispatcher(services: ServicesDep) -> Dispatcher:
    return services.dispatcher


def current_owner() -> str:
    """Who is asking. The one place authentication will plug in."""
    return LOCAL_OWNER


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
FleetDep = Annotated[FleetRegistry, Depends(get_fleet)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
OwnerDep = Annotated[str, Depends(current_owner)]
