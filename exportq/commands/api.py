"""`exportq api`: serve the HTTP API with uvicorn. The server packages (FastAPI, SQLAlchemy,
uvicorn) are imported inside the command, so the client-only install keeps a light CLI."""

from __future__ import annotations

import click


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--migrate/--no-migrate",
    default=None,
    help="apply the database migrations first (default: only for the embedded SQLite; a "
    "shared database is migrated once, by `exportq db upgrade`, before the APIs start)",
)
def api(host: str, port: int, migrate: bool | None) -> None:
    """Serve the exportq HTTP API (EXPORTQ_DATABASE_URL, EXPORTQ_BROKER_URL, ...)."""
    try:
        import uvicorn

        from api.app import create_app
        from db import migrate as migrations
    except ImportError as exc:
        raise click.ClickException(
            f"the API needs the server extra: pip install 'exportq[server]' ({exc})"
        ) from exc
    from exportq.settings import get_settings

    settings = get_settings()
    if migrate or (migrate is None and settings.database_url.startswith("sqlite")):
        # Idempotent: at head already, this changes nothing.
        migrations.upgrade(settings.database_url)
    uvicorn.run(create_app(settings), host=host, port=port)
