"""Alembic, driven from code: `upgrade(url)`, `downgrade(url, rev)`, `current(url)`, `head()`.

The Alembic config is built here, pointing at `db/migrations` by absolute path, so nothing
depends on the working directory and no alembic.ini is needed. The database URL travels in
`config.attributes`; `env.py` reads it when it runs, never at import.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.session import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_config(url: str | sa.URL | None = None) -> Config:
    """An Alembic config for our migrations; `url` None means the settings' database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade(url: str | sa.URL, revision: str = "head") -> str | None:
    """Migrate the database at `url` up to `revision`; the revision it is at afterwards."""
    command.upgrade(make_config(url), revision)
    return current(url)


def downgrade(url: str | sa.URL, revision: str) -> str | None:
    command.downgrade(make_config(url), revision)
    return current(url)


def current(url: str | sa.URL) -> str | None:
    """The revision the database is at (None: not migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision in the migrations folder."""
    heads = ScriptDirectory.from_config(make_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must have exactly one head, found {heads}")
    return heads[0]
