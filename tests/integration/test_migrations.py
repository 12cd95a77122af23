"""The Alembic migrations, on both backends: they build the schema the models describe."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from db import migrate
from db.models import Base
from db.session import make_engine
from exportq.commands.db import db as db_group
from exportq.settings import get_settings

TABLES = {"jobs", "blobs", "artifacts", "dispatches", "tokens", "blob_keys"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _drift(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_one_head() -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.make_config("sqlite://")).get_heads()
    assert heads == [migrate.head()]


def test_upgrade_builds_the_schema(blank_db_url: str) -> None:
    assert migrate.current(blank_db_url) is None
    assert migrate.upgrade(blank_db_url) == migrate.head()
    assert _tables(blank_db_url) == TABLES


def test_models_and_migrations_do_not_drift(blank_db_url: str) -> None:
    migrate.upgrade(blank_db_url)
    assert _drift(blank_db_url) == []


def test_drift_check_notices_a_difference(blank_db_url: str) -> None:
    """The check above is live: a model change without a migration is reported."""
    migrate.upgrade(blank_db_url)
    engine = make_engine(blank_db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_jobs_spec_hash")
    finally:
        engine.dispose()
    diffs = _drift(blank_db_url)
    assert [d[0] for d in diffs if isinstance(d, tuple)] == ["add_index"]


def test_downgrade_to_base_and_back(blank_db_url: str) -> None:
    migrate.upgrade(blank_db_url)
    assert migrate.downgrade(blank_db_url, "base") is None
    assert _tables(blank_db_url) == set()
    assert migrate.upgrade(blank_db_url) == migrate.head()
    assert _drift(blank_db_url) == []


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'var' / 'cli.db'}"
    monkeypatch.setenv("EXPORTQ_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_cli_db_upgrade(settings_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(db_group, ["upgrade"])
    assert result.exit_code == 0, result.output
    assert f"revision {migrate.head()}" in result.output
    assert _tables(settings_env) == TABLES

    result = runner.invoke(db_group, ["current"])
    assert result.exit_code == 0, result.output
    assert f"current: {migrate.head()}" in result.output


def test_concurrent_upgrades_on_postgresql(postgresql_blank_url: str) -> None:
    """Processes starting together may all run the upgrade: one migrates, the rest wait.
    (Separate processes: Alembic's context is process-global, not thread-safe.)"""
    code = "import sys; from db import migrate; migrate.upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgresql_blank_url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert migrate.current(postgresql_blank_url) == migrate.head()


def test_cli_reports_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTQ_DATABASE_URL", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(db_group, ["upgrade"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot use the database at postgresql+psycopg://u:***@127.0.0.1:1/x" in result.output
    assert "hunter2" not in result.output
