"""Engines and the unit of work, on a throwaway SQLite file; and the UTC datetime type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from db.models import UTCDateTime
from db.session import make_engine, make_session_factory, unit_of_work


def test_sqlite_engine_creates_the_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()


def test_make_engine_connects_lazily() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert engine.dialect.name == "postgresql"
    engine.dispose()


def test_unit_of_work_commits_or_rolls_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        factory = make_session_factory(engine)
        with unit_of_work(factory) as s:
            s.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(ValueError), unit_of_work(factory) as s:
            s.execute(sa.text("INSERT INTO t VALUES (2)"))
            raise ValueError("boom")
        with unit_of_work(factory) as s:
            assert s.execute(sa.text("SELECT x FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()


def test_utc_datetime_normalises_to_utc() -> None:
    kind = UTCDateTime()
    dialect = sqlite.dialect()
    plus2 = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    stored = kind.process_bind_param(plus2, dialect)
    assert stored == datetime(2030, 1, 1, 10, tzinfo=UTC) and stored.tzinfo == UTC
    assert kind.process_result_value(datetime(2030, 1, 1, 10), dialect) == stored
    assert kind.process_bind_param(None, dialect) is None
    with pytest.raises(ValueError, match="naive"):
        kind.process_bind_param(datetime(2030, 1, 1), dialect)
