"""`exportq token create|list|revoke` on the database directly (the embedded SQLite)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from db import tokens
from db.models import Token
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.cli import cli
from exportq.settings import Settings


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def stored(settings: Settings) -> list[Token]:
    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return tokens.list_tokens(session)
    finally:
        engine.dispose()


def test_create_prints_the_token_last_and_stores_only_its_hash(settings: Settings) -> None:
    code, out, _ = run("token", "create", "ci", "--owner", "team-a")
    assert code == 0, out
    secret = out.splitlines()[-1]
    assert secret.startswith("eq_") and len(secret) > 40
    [row] = stored(settings)
    assert (row.name, row.owner, row.admin) == ("ci", "team-a", False)
    assert row.token_hash == tokens.hash_token(secret)
    assert secret not in row.token_hash


def test_the_owner_defaults_to_the_name_and_admin_is_a_flag(settings: Settings) -> None:
    assert run("token", "create", "root", "--admin")[0] == 0
    [row] = stored(settings)
    assert (row.owner, row.admin) == ("root", True)


def test_list_and_revoke_by_name_or_id(settings: Settings) -> None:
    run("token", "create", "laptop")
    run("token", "create", "laptop")
    run("token", "create", "ci")
    code, out, _ = run("token", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["laptop", "laptop", "ci"]
    assert all(t["revoked_at"] is None and t["last_used_at"] is None for t in listed)
    code, out, _ = run("token", "revoke", "laptop")  # every live token of that name
    assert code == 0 and out.count("revoked token 'laptop'") == 2
    code, out, _ = run("token", "revoke", listed[2]["id"])
    assert code == 0 and "revoked token 'ci'" in out
    assert all(t.revoked_at is not None for t in stored(settings))
    assert "revoked" in run("token", "list")[1]


def test_revoking_nothing_is_an_error(settings: Settings) -> None:
    code, _, err = run("token", "revoke", "nobody")
    assert code == 1
    assert "no live token named 'nobody'" in err


def test_authenticate_refuses_unknown_and_revoked_tokens(settings: Settings) -> None:
    secret = run("token", "create", "x")[1].splitlines()[-1]
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        with unit_of_work(factory) as session:
            token = tokens.authenticate(session, secret)
            assert token is not None and token.owner == "x"
            assert tokens.authenticate(session, secret + "x") is None
            tokens.revoke(session, "x")
        with unit_of_work(factory) as session:
            assert tokens.authenticate(session, secret) is None
    finally:
        engine.dispose()
