"""Bearer tokens: who a request acts as. Functions take a Session and never commit.

Only the sha256 of a token is stored: the database (a backup, a read replica) never holds a
secret that works. A token is 32 random bytes, so one unsalted hash is enough: nothing about
it can be guessed, and a lookup by hash needs no scan.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.models import Token, utcnow
from exportq.errors import NotFound

PREFIX = "eq_"  # recognisable in a leaked log or a secret scanner
# `last_used_at` is a hint for admins, not an audit log: writing it on every request would
# turn every read into a write, so it is refreshed at most this often.
TOUCH_EVERY = timedelta(minutes=1)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, owner: str, admin: bool = False) -> tuple[Token, str]:
    """A new token for `owner`; returns its row and the secret, which is shown once only."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token = Token(name=name, owner=owner, admin=admin, token_hash=hash_token(secret))
    session.add(token)
    session.flush()
    return token, secret


def authenticate(session: Session, secret: str) -> Token | None:
    """The live (not revoked) token with this secret, or None."""
    digest = hash_token(secret)
    token = session.scalars(sa.select(Token).where(Token.token_hash == digest)).one_or_none()
    # The lookup compared hashes of the secret; compare again in constant time so that no
    # timing of the database's index comparison ever decides alone.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return None if token.revoked_at is not None else token


def touch(session: Session, token_id: str, now: datetime | None = None) -> None:
    """Record a use of the token, unless one was recorded within TOUCH_EVERY."""
    now = now or utcnow()
    stale = sa.or_(Token.last_used_at.is_(None), Token.last_used_at < now - TOUCH_EVERY)
    session.execute(sa.update(Token).where(Token.id == token_id, stale).values(last_used_at=now))


def needs_touch(token: Token, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY


def revoke(session: Session, name_or_id: str) -> list[Token]:
    """Revoke the token with this id, or else every live token with this name; the tokens
    revoked. NotFound when nothing live matches."""
    now = utcnow()
    by_id = session.get(Token, name_or_id)
    if by_id is not None and by_id.revoked_at is None:
        matches = [by_id]
    else:
        stmt = sa.select(Token).where(Token.name == name_or_id, Token.revoked_at.is_(None))
        matches = list(session.scalars(stmt))
    if not matches:
        raise NotFound(f"no live token named {name_or_id!r} or with that id")
    for token in matches:
        token.revoked_at = now
    session.flush()
    return matches


def list_tokens(session: Session) -> list[Token]:
    return list(session.scalars(sa.select(Token).order_by(Token.created_at, Token.id)))
