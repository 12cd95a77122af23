"""The real services the tests and benchmarks run against, each used in isolation: a fresh,
migrated PostgreSQL database, and a claimed Redis database (1..15, never 0).

Shared by tests/integration, tests/e2e, tests/faults and the benchmarks under scripts/bench.
A service that cannot be reached raises ServiceUnreachable with what to set: CI has both, and a
test that silently skipped them would prove nothing.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "EXPORTQ_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_HOST_URL = os.environ.get("EXPORTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_CLAIM_KEY = "exportq:test:claim"


class ServiceUnreachable(RuntimeError):
    """A service the tests need is not running."""


@contextlib.contextmanager
def temporary_database(prefix: str = "exportq_e2e") -> Iterator[str]:
    """A PostgreSQL database of its own, migrated to head; dropped afterwards."""
    from db import migrate

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise ServiceUnreachable(f"PostgreSQL is unreachable (EXPORTQ_TEST_PG_URL): {exc}") from exc
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def claimed_redis_db(ttl_s: int = 900) -> Iterator[str]:
    """The first empty Redis database of 1..15 (never 0), claimed with a key so that
    concurrent runs never share one; flushed afterwards."""
    import redis

    token = uuid.uuid4().hex
    for n in range(1, 16):
        url = f"{REDIS_HOST_URL}/{n}"
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, token, nx=True, ex=ttl_s):
                break
        except redis.ConnectionError as exc:
            client.close()
            raise ServiceUnreachable(f"Redis is unreachable at {REDIS_HOST_URL}: {exc}") from exc
        client.close()
    else:
        raise ServiceUnreachable("no empty Redis database among 1..15 to run in")
    try:
        yield url
    finally:
        if client.get(REDIS_CLAIM_KEY) == token.encode():
            client.flushdb()
        client.close()
