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
from db import migrate, tokens
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.fleet import FleetRegistry
from exportq.settings import Settings

OWNER = "alice"  # whom the harness's client is authenticated as


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

    def token(self, owner: str, admin: bool = False) -> str:
        """A new bearer token for `owner` (the harness's client sends one for OWNER)."""
        with self.session() as session:
            return tokens.create_token(session, f"{owner}-test", owner, admin)[1]

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
    if "admission" not in settings.model_fields_set:
        # The fake fleet has no worker: jobs wait with a notice unless a test asks otherwise.
        settings = settings.model_copy(update={"admission": "queue"})
    migrate.upgrade(settings.database_url)
    # No reconciler thread: it would publish through the real broker, not the recording one.
    app = create_app(settings.model_copy(update={"reconciler_in_api": False}))
    dispatcher = RecordingDispatcher()
    fleet = FleetRegistry(FakeRedis())
    app.dependency_overrides[get_dispatcher] = lambda: dispatcher
    app.dependency_overrides[get_fleet] = lambda: fleet
    with TestClient(app) as http:
        harness = Harness(http=http, settings=settings, dispatcher=dispatcher, fleet=fleet)
        http.headers["Authorization"] = f"Bearer {harness.token(OWNER)}"
        yield harness
