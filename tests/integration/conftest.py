"""Databases for integration tests, one isolated database per test.

PostgreSQL: a template database is migrated once per session (`alembic upgrade head`), then
every test gets `CREATE DATABASE ... TEMPLATE` of it and drops it afterwards. The admin
connection is EXPORTQ_TEST_PG_URL; PostgreSQL being unreachable fails the tests (CI has it).
SQLite: a migrated file is copied per test. `db_url` runs a test on both backends.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.session import make_engine, make_session_factory
from exportq.settings import Settings
from tests.services import PG_ADMIN_URL, claimed_redis_db

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

BACKENDS = ["sqlite", "postgresql"]


def pg_url_for(database: str) -> str:
    return sa.make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the admin database, for CREATE/DROP DATABASE."""
    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        shown = sa.make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is unreachable at {shown} (set EXPORTQ_TEST_PG_URL): {exc}",
            pytrace=False,
        )
    yield engine
    engine.dispose()


def _create_database(admin: Engine, name: str, template: str = "template0") -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_template(pg_admin: Engine) -> Iterator[str]:
    """The name of a database migrated to head, to copy per test."""
    name = _unique("exportq_tpl")
    _create_database(pg_admin, name)
    try:
        migrate.upgrade(pg_url_for(name))
        yield name
    finally:
        _drop_database(pg_admin, name)


@pytest.fixture
def postgresql_blank_url(pg_admin: Engine) -> Iterator[str]:
    """An empty PostgreSQL database of its own (not migrated)."""
    name = _unique("exportq_blank")
    _create_database(pg_admin, name)
    yield pg_url_for(name)
    _drop_database(pg_admin, name)


@pytest.fixture
def postgresql_url(pg_admin: Engine, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of its own."""
    name = _unique("exportq_test")
    _create_database(pg_admin, name, template=pg_template)
    yield pg_url_for(name)
    _drop_database(pg_admin, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite_template") / "exportq.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_blank_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'blank.db'}"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of its own."""
    path = tmp_path / "exportq.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of this test's own, on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=BACKENDS)
def blank_db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of this test's own, on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_blank_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


# -- the API on real PostgreSQL and Redis ---------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of this test's own (see tests/services.py)."""
    with claimed_redis_db(ttl_s=600) as url:
        yield url


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL on a local port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/1"


@pytest.fixture
def api_settings(postgresql_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=postgresql_url,
        broker_url=redis_url,
        artifacts_url=str(tmp_path / "artifacts"),
        # No worker runs in these tests: jobs wait with a notice instead of being refused.
        # Refusal by the fleet has its own tests (test_api_fleet_admission.py).
        admission="queue",
    )


@pytest.fixture
def api(api_settings: Settings) -> Iterator[TestClient]:
    """The real app, started (lifespan run) on this test's own databases, authenticated as
    the user "alice"."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.integration.api_helpers import bearer, make_token

    with TestClient(create_app(api_settings)) as client:
        # as a plain user, "alice" (tests of other users and admins make their own tokens)
        client.headers.update(bearer(make_token(api_settings.database_url, "alice")))
        yield client


# -- an S3-compatible artifact store (moto's server mode) -----------------------------------


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server started for this session, with fake AWS credentials in the
    environment (the store reads them through boto3's standard chain, as in production)."""
    from tests.integration.s3_server import AWS_ENV, AWS_ENV_REMOVED, moto_server

    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        for name in AWS_ENV_REMOVED:
            mp.delenv(name, raising=False)
        with moto_server(tmp_path_factory.mktemp("moto") / "server.log") as url:
            yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """An empty bucket of this test's own on the session's S3 server."""
    from tests.integration.s3_server import s3_client

    name = f"exportq-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name
