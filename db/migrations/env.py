"""Alembic environment. The URL comes from `config.attributes["url"]` (set by db.migrate),
else `sqlalchemy.url` in an ini file, else the settings (EXPORTQ_DATABASE_URL), read only when
a migration runs. SQLite uses batch mode, so ALTERs become table copies."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from db.models import Base
from db.session import make_engine

target_metadata = Base.metadata
MIGRATION_LOCK = 0x6578_706F_7274  # "export": the advisory lock that serialises migrations


def _url() -> str | sa.URL:
    url: str | sa.URL | None = context.config.attributes.get("url")
    if url is None:
        url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        from exportq.settings import get_settings

        url = get_settings().database_url
    return url


def run_offline() -> None:
    url = sa.make_url(_url())
    context.configure(
        url=url,
        literal_binds=True,
        target_metadata=target_metadata,
        render_as_batch=url.get_backend_name() == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Several processes may run `exportq db upgrade` at once (api and workers
                    # starting together): one migrates, the others wait and find it done.
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
