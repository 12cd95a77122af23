"""Helpers for the end-to-end tests: real processes, a database and a Redis database of their
own, bounded waits.

- `Processes.start(args, env, name)` starts a process in its own process group with its output
  in a log file; `stop_all()` (every fixture's teardown) ends each one and its children.
- `wait_until(check, timeout, what)` polls, and fails with the logs of the processes given.
- `e2e_database(...)` / `e2e_redis_url()` are context managers for module-scoped fixtures: a
  migrated PostgreSQL database, and a Redis database claimed the way the integration tests
  claim theirs (never db 0, never one in use).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from exportq.processes import (  # noqa: F401 - re-exported for the tests
    ManagedProcess,
    Processes,
    WaitFailed,
    exportq_command,
    free_port,
    managed_processes,
)
from exportq.processes import wait_until as _wait_until

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "EXPORTQ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_HOST_URL = os.environ.get("EXPORTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_CLAIM_KEY = "exportq:test:claim"  # the same claim as tests/integration/conftest.py
TEST_ALLOWED_MODULES = "exportq.samples,tests.models"

T = TypeVar("T")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with managed_processes(tmp_path / "processes") as procs:
        yield procs


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    processes: Processes | None = None,
    interval: float = 0.1,
) -> T:
    """exportq.processes.wait_until, failing the test (with the processes' logs) instead."""
    try:
        return _wait_until(check, timeout, what, processes, interval)
    except WaitFailed as exc:
        pytest.fail(str(exc), pytrace=False)


def process_env(**overrides: str) -> dict[str, str]:
    """This environment without the developer's EXPORTQ_* settings, with the checkout on the
    path (for the `tests.models` zoo), plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXPORTQ_") or k.startswith("EXPORTQ_TEST_")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@contextlib.contextmanager
def e2e_database() -> Iterator[str]:
    """A PostgreSQL database of its own, migrated to head; dropped afterwards."""
    from db import migrate

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"exportq_e2e_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is unreachable (EXPORTQ_TEST_PG_URL): {exc}", pytrace=False)
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def e2e_redis_url() -> Iterator[str]:
    """An empty Redis database of 1..15 (never 0), claimed with a key so concurrent test runs
    never share it; flushed afterwards."""
    import redis

    token = uuid.uuid4().hex
    for n in range(1, 16):
        url = f"{REDIS_HOST_URL}/{n}"
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, token, nx=True, ex=900):
                break
        except redis.ConnectionError as exc:
            client.close()
            pytest.fail(f"Redis is unreachable at {REDIS_HOST_URL}: {exc}", pytrace=False)
        client.close()
    else:
        pytest.fail("no empty Redis database among 1..15 to run the test in", pytrace=False)
    try:
        yield url
    finally:
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            client.flushdb()
        client.close()
