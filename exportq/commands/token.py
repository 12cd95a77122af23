"""`exportq token ...`: bearer tokens, straight on the database (EXPORTQ_DATABASE_URL), like
`exportq db upgrade`: whoever can reach the database is an admin already, so these commands
need no token themselves. The server packages are imported inside the commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from exportq.commands.db import _reporting, _safe

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@click.group()
def token() -> None:
    """Bearer tokens for the API: create, list, revoke (EXPORTQ_DATABASE_URL)."""


@token.command()
@click.argument("name")
@click.option("--owner", help="the user the token acts as (default: NAME)")
@click.option("--admin", is_flag=True, help="the token sees and cancels every owner's jobs")
def create(name: str, owner: str | None, admin: bool) -> None:
    """Create a token NAME and print it; the last line of stdout is the token, shown once."""
    from db import tokens

    with _session() as (session, url):
        row, secret = tokens.create_token(session, name, owner or name, admin)
    role = "admin" if admin else "user"
    click.echo(f"token {row.name!r} (id {row.id}) for {role} {row.owner!r} on {_safe(url)}")
    click.echo("it is shown once only; set it as EXPORTQ_TOKEN:")
    click.echo(secret)


@token.command()
@click.argument("name_or_id")
def revoke(name_or_id: str) -> None:
    """Revoke the token with this id, or every live token with this name."""
    from db import tokens
    from exportq.errors import NotFound

    try:
        with _session() as (session, _url):
            revoked = tokens.revoke(session, name_or_id)
    except NotFound as exc:
        raise click.ClickException(exc.message) from exc
    for row in revoked:
        click.echo(f"revoked token {row.name!r} (id {row.id}) of {row.owner!r}")


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the tokens as JSON")
def list_(as_json: bool) -> None:
    """Every token: name, id, owner, role, when created, last used and revoked."""
    from db import tokens

    with _session() as (session, _url):
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "owner": t.owner,
                "admin": t.admin,
                "created_at": t.created_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in tokens.list_tokens(session)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "live"
        role = "admin" if r["admin"] else "user"
        used = r["last_used_at"] or "never"
        click.echo(f"{r['id']}  {r['name']:<20} {r['owner']:<16} {role:<5} {state}, used {used}")


@contextmanager
def _session() -> Iterator[tuple[Session, str]]:
    """One committed transaction on EXPORTQ_DATABASE_URL. The embedded SQLite is migrated
    first, as `exportq api` does, so a token can be made before the API ever ran."""
    from db import migrate
    from db.session import make_engine, make_session_factory, unit_of_work
    from exportq.settings import get_settings

    url = get_settings().database_url
    with _reporting(url):
        if url.startswith("sqlite"):
            migrate.upgrade(url)
        engine = make_engine(url)
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                yield session, url
        finally:
            engine.dispose()
