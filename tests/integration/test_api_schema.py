"""Property-based tests of the whole HTTP API from its own OpenAPI document (schemathesis):
for every operation, a bounded number of generated requests that fit the schema and as many
that do not, authenticated, and not one may answer a server error (5xx). Deterministic
(derandomized), so a failure reproduces; 25 examples per operation and mode keep the run
well under a minute."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from api.app import create_app
from api.deps import get_fleet
from exportq.fleet import FleetRegistry
from exportq.settings import Settings
from tests.integration.api_helpers import bearer, make_token

MAX_EXAMPLES = 25


@pytest.fixture
def served_app(api_settings: Settings) -> Iterator[FastAPI]:
    """The real app on this test's PostgreSQL and Redis databases, its lifespan running (the
    services are built) while schemathesis calls it."""
    app = create_app(api_settings.model_copy(update={"max_upload_bytes": 1 << 16}))
    with TestClient(app):
        yield app


@pytest.fixture
def api_schema(served_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served_app)


@pytest.fixture
def auth(api_settings: Settings) -> dict[str, str]:
    return bearer(make_token(api_settings.database_url, "schema-user"))


def no_server_errors(api_schema: Any, auth: dict[str, str], only: str | None = None) -> None:
    """One hypothesis run per operation and generation mode, driven here rather than by
    schemathesis's pytest plugin, so that the schema comes from this test's own app."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    operations = [op for op in operations if only in (None, op.label)]
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=[not_a_server_error])

        try:
            no_server_error()
        except Unsatisfiable:
            # nothing to make invalid (`GET /healthz` takes no input): only positive cases
            assert mode is GenerationMode.NEGATIVE, operation.label


def test_no_operation_answers_a_server_error(api_schema: Any, auth: dict[str, str]) -> None:
    no_server_errors(api_schema, auth)


def test_the_run_does_catch_a_server_error(
    served_app: FastAPI, api_schema: Any, auth: dict[str, str]
) -> None:
    def broken() -> FleetRegistry:
        raise RuntimeError("a bug")

    served_app.dependency_overrides[get_fleet] = broken
    # (the in-process transport re-raises the exception a 500 would have hidden)
    with pytest.raises(Exception, match=r"a bug|Server error"):
        no_server_errors(api_schema, auth, only="GET /v1/fleet")
