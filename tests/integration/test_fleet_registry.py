"""The fleet registry in real Redis: a worker that stops beating leaves the view within its
TTL; one that beats stays; one that leaves is gone at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from exportq.api_models import WorkerView
from exportq.fleet import FleetRegistry

TTL_S = 1


@pytest.fixture
def registry(redis_url: str) -> Iterator[FleetRegistry]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield FleetRegistry(client, ttl_s=TTL_S)
    client.close()


def view(name: str) -> WorkerView:
    now = datetime.now(UTC)
    return WorkerView(name=name, device="cuda", queues=["cuda"], started_at=now, last_seen=now)


def test_a_worker_that_stops_beating_expires_within_its_ttl(registry: FleetRegistry) -> None:
    registry.beat(view("silent@a"))
    registry.beat(view("beating@b"))
    registry.beat(view("leaving@c"))
    registry.leave("leaving@c")
    assert [w.name for w in registry.live_workers()] == ["beating@b", "silent@a"]
    deadline = time.monotonic() + TTL_S + 2
    while "silent@a" in {w.name for w in registry.live_workers()}:
        assert time.monotonic() < deadline, "the silent worker outlived its TTL"
        registry.beat(view("beating@b"))
        time.sleep(0.2)
    assert [w.name for w in registry.live_workers()] == ["beating@b"]
    assert registry.queues(["cuda"])[0].workers == 1
