"""Helpers for the API integration tests: spec documents, and reading what really reached the
database and the broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from sqlalchemy.orm import Session

from db.session import make_engine, make_session_factory, unit_of_work
from exportq.fleet import queue_keys

TARGET = "exportq.samples:tiny_cnn"


def make_token(db_url: str, owner: str, admin: bool = False) -> str:
    """A new bearer token for `owner` in the test's database."""
    from db import tokens

    with session_on(db_url) as session:
        return tokens.create_token(session, f"{owner}-test", owner, admin)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def spec_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model": {"kind": "callable", "target": TARGET},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
    }
    doc.update(overrides)
    return doc


@contextmanager
def session_on(url: str) -> Iterator[Session]:
    """A committed unit of work on the test's database, from outside the app."""
    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def queued_messages(redis_url: str, queue: str) -> list[dict[str, Any]]:
    """The Celery messages waiting in `queue` (every priority list), body decoded."""
    client = redis.Redis.from_url(redis_url)
    try:
        messages = []
        for key in queue_keys(queue):
            for raw in client.lrange(key, 0, -1):
                message = json.loads(raw)
                message["body"] = json.loads(base64.b64decode(message["body"]))
                messages.append(message)
        return messages
    finally:
        client.close()
