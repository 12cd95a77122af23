"""`exportq db ...`: the store's schema. Alembic and SQLAlchemy are imported inside the
commands, so `exportq --help` stays light and works on a client-only install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click


@click.group()
def db() -> None:
    """The database schema (EXPORTQ_DATABASE_URL)."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION and print the revision reached."""
    from db import migrate
    from exportq.settings import get_settings

    url = get_settings().database_url
    with _reporting(url):
        reached = migrate.upgrade(url, revision)
    click.echo(f"database at revision {reached} ({_safe(url)})")


@db.command()
def current() -> None:
    """Print the revision the database is at, and the newest one available."""
    from db import migrate
    from exportq.settings import get_settings

    url = get_settings().database_url
    with _reporting(url):
        at = migrate.current(url)
    click.echo(f"current: {at or 'none'}  head: {migrate.head()}")


@contextmanager
def _reporting(url: str) -> Iterator[None]:
    """Turn "cannot connect" into a one-line error that names the database (no password)."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        raise click.ClickException(f"cannot use the database at {_safe(url)}: {exc.orig}") from exc


def _safe(url: str) -> str:
    """The URL without its password, fit to print."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)
