"""The real app for unit tests of the client and the CLI: SQLite in the test's tmp folder, and
fakes at our own boundaries (the broker dispatcher, the fleet's Redis), so no server runs."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from api.deps import get_dispatcher, get_fleet
from db import migrate
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.fleet import FleetRegistry
from exportq.settings import Settings


class FakeRedis:
    """The few Redis calls FleetRegistry makes, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}

    def set(self, name: str, value: str, ex: int | None = None) -> None:
        self.values[name] = value

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def delete(self, *names: str) -> None:
        for name in names:
            self.values.pop(name, None)

    def scan_iter(self, match: str | None = None) -> Iterator[str]:
        return iter([k for k in list(self.values) if match is None or fnmatch.fnmatch(k, match)])

    def llen(self, name: str) -> int:
        return len(self.lists.get(name, []))


@dataclass
class RecordingDispatcher:
    sent: list[tuple[str, str, int]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    # Plays the worker when set: called with the job id of each message sent.
    on_send: Callable[[str], None] | None = None

    def send_export(self, job_id: str, queue: str, priority: int) -> None:
        self.sent.append((job_id, queue, priority))
        if self.on_send is not None:
            self.on_send(job_id)

    def revoke(self, job_id: str) -> None:
        self.revoked.append(job_id)

    def close(self) -> None:
        pass


@dataclass
class Harness:
    http: TestClient
    settings: Settings
    dispatcher: RecordingDispatcher
    fleet: FleetRegistry

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A committed unit of work on the app's database, from outside the app."""
        engine = make_engine(self.settings.database_url)
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                yield session
        finally:
            engine.dispose()


@contextmanager
def served(settings: Settings) -> Iterator[Harness]:
    migrate.upgrade(settings.database_url)
    app = create_app(settings)
    dispatcher = RecordingDispatcher()
    fleet = FleetRegistry(FakeRedis())
    app.dependency_overrides[get_dispatcher] = lambda: dispatcher
    app.dependency_overrides[get_fleet] = lambda: fleet
    with TestClient(app) as http:
        yield Harness(http=http, settings=settings, dispatcher=dispatcher, fleet=fleet)
