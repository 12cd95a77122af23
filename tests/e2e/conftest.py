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

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from exportq.processes import (  # noqa: F401 - re-exported for the tests
    ManagedProcess,
    Processes,
    WaitFailed,
    exportq_command,
    free_port,
    managed_processes,
)
from exportq.processes import wait_until as _wait_until
from tests.services import claimed_redis_db, temporary_database

ROOT = Path(__file__).resolve().parents[2]
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


# Module-scoped fleets use these as context managers.
e2e_database = temporary_database
e2e_redis_url = claimed_redis_db
