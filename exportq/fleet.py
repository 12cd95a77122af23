"""The fleet registry: workers announce themselves in Redis with a heartbeat and a TTL, so a
worker that stops beating drops out of the fleet view by itself. Torch-free: the API reads it,
workers write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from exportq.api_models import QueueView, WorkerView
from exportq.celery_config import PRIORITY_STEPS

KEY_PREFIX = "exportq:fleet:worker:"
# Celery's Redis transport keeps one list per queue and priority step: "cpu", "cpu\x06\x163", ...
PRIORITY_SEPARATOR = "\x06\x16"


class RedisLike(Protocol):
    def set(self, name: str, value: str, ex: int | None = None) -> Any: ...
    def get(self, name: str) -> Any: ...
    def delete(self, *names: str) -> Any: ...
    def scan_iter(self, match: str | None = None) -> Any: ...
    def llen(self, name: str) -> Any: ...


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


class FleetRegistry:
    def __init__(self, redis: RedisLike, ttl_s: int = 30) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    def beat(self, worker: WorkerView) -> None:
        """Announce (or refresh) a worker; it expires after `ttl_s` without a beat."""
        worker = worker.model_copy(update={"last_seen": datetime.now(UTC)})
        self.redis.set(KEY_PREFIX + worker.name, worker.model_dump_json(), ex=self.ttl_s)

    def leave(self, name: str) -> None:
        self.redis.delete(KEY_PREFIX + name)

    def live_workers(self) -> list[WorkerView]:
        workers = []
        for key in self.redis.scan_iter(match=KEY_PREFIX + "*"):
            raw = self.redis.get(key)
            if raw is None:  # expired between the scan and the read
                continue
            workers.append(WorkerView.model_validate(json.loads(raw)))
        return sorted(workers, key=lambda w: w.name)

    def queue_length(self, queue: str) -> int:
        return sum(int(self.redis.llen(key)) for key in queue_keys(queue))

    def queues(self, names: list[str]) -> list[QueueView]:
        workers = self.live_workers()
        return [
            QueueView(
                name=name,
                length=self.queue_length(name),
                workers=sum(name in w.queues for w in workers),
            )
            for name in names
        ]
