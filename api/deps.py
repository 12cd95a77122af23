"""Route dependencies as typed aliases: a route says `session: SessionDep` and gets one.

Tests swap a part through `app.dependency_overrides[get_dispatcher] = ...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Caller, current_caller
from api.dispatch import Dispatcher
from api.services import Services
from exportq.errors import NotFound
from exportq.fleet import FleetRegistry
from exportq.settings import Settings
from exportq.storage import ArtifactStore

JOB_ID = re.compile(r"[0-9a-f]{32}")  # db.models.new_job_id


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


def job_id_param(job_id: str) -> str:
    """A job id from the path; one that cannot be a job id is answered 404 like any unknown
    job, before it reaches the database (which refuses some strings, e.g. with a NUL)."""
    if not JOB_ID.fullmatch(job_id):
        raise NotFound(f"no job {job_id!r}", details={"job_id": job_id})
    return job_id


def current_owner(caller: Annotated[Caller, Depends(current_caller)]) -> str:
    """The owner a new job or upload key is recorded under: the caller's own name (an admin
    too). Reads use `CallerDep` and its `scope`, so an admin sees every owner's jobs."""
    return caller.owner


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
FleetDep = Annotated[FleetRegistry, Depends(get_fleet)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
OwnerDep = Annotated[str, Depends(current_owner)]
JobIdDep = Annotated[str, Depends(job_id_param)]
CallerDep = Annotated[Caller, Depends(current_caller)]
