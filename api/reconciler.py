"""The reconciler: makes Redis agree with the database again, on a timer.

Each pass, in this order:
1. Expired leases. A running job whose lease ran out lost its worker (killed, frozen, cut off
   from the database): it is requeued with a new dispatch, or ends `failed`/`worker_lost` once
   it has been claimed `max_attempts` times (`db.leases.recover`).
2. Lost messages. A queued job whose latest dispatch was published more than
   `redispatch_after_s` ago, and whose message is in none of its queue's lists nor in the
   transport's `unacked` hash (a message a worker holds is there until it is acked), lost its
   message (Redis restarted empty, flushed, failed over): it gets a new dispatch.
3. The outbox: every pending dispatch is published (`api.relay`).

Every step is safe to run twice and from several processes at once: recoveries are fenced on
the claim token, a redundant dispatch only makes a duplicate message, and a duplicate writes
nothing (the workers' fenced claim). It runs as a thread of each API process
(EXPORTQ_RECONCILER_IN_API, the default) and/or as `exportq reconciler`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from api.dispatch import Dispatcher
from api.relay import publish_pending
from db import dispatch as outbox
from db import leases
from db.models import utcnow
from db.session import unit_of_work
from exportq.fleet import queue_keys
from exportq.settings import Settings

log = logging.getLogger("exportq.reconciler")

# Kombu's Redis transport keeps the messages delivered and not yet acked in this hash.
UNACKED_KEY = "unacked"
FAST_PATH_S = 2.0


class BrokerRedis(Protocol):
    def lrange(self, name: str, start: int, end: int) -> Any: ...
    def hvals(self, name: str) -> Any: ...


@dataclass
class Pass:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the attempt cap: worker_lost
    redispatched: list[str] = field(default_factory=list)
    published: int = 0
    broker_error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.redispatched or self.published)


@dataclass
class Reconciler:
    settings: Settings
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher
    redis: BrokerRedis

    def run_once(self) -> Pass:
        result = Pass()
        self._recover_leases(result)
        try:
            self._redispatch_lost(result)
        except Exception as exc:  # Redis away: its messages cannot be checked this pass
            result.broker_error = f"{type(exc).__name__}: {exc}"
        # The dispatches this pass made go out now; a submit's own dispatch is left the moment
        # its fast path needs to publish it (fewer duplicate messages).
        for job_id in [*result.requeued, *result.redispatched, None]:
            published = publish_pending(
                self.sessions, self.dispatcher, job_id, min_age_s=0 if job_id else FAST_PATH_S
            )
            result.published += published.sent
            if published.error is not None:
                result.broker_error = published.error.message
                break
        if result:
            log.info(
                "reconciled: %d requeued, %d failed worker_lost, %d re-dispatched, %d published",
                len(result.requeued),
                len(result.failed),
                len(result.redispatched),
                result.published,
            )
        return result

    def _recover_leases(self, result: Pass) -> None:
        with unit_of_work(self.sessions) as session:
            expired = leases.expired(session)
        for job_id in expired:
            with unit_of_work(self.sessions) as session:
                outcome = leases.recover(session, job_id, self.settings.max_attempts)
            if outcome is leases.Recovery.REQUEUED:
                result.requeued.append(job_id)
            elif outcome is leases.Recovery.FAILED:
                result.failed.append(job_id)

    def _redispatch_lost(self, result: Pass) -> None:
        before = utcnow() - timedelta(seconds=self.settings.redispatch_after_s)
        with unit_of_work(self.sessions) as session:
            candidates = outbox.last_published(session, before)
        if not candidates:
            return
        present = messages_in_broker(self.redis, sorted({queue for _, queue in candidates}))
        for job_id, _ in candidates:
            if job_id in present:
                continue
            with unit_of_work(self.sessions) as session:
                if outbox.redispatch(session, job_id):
                    result.redispatched.append(job_id)


def messages_in_broker(redis: BrokerRedis, queues: list[str]) -> set[str]:
    """The task ids (our job ids) of every message waiting in `queues` or delivered and not
    yet acked. Reads the lists first, then the hash: a message moving from a list to the hash
    meanwhile is seen in the hash; one acked meanwhile belonged to a job no longer queued."""
    ids: set[str] = set()
    for queue in queues:
        for key in queue_keys(queue):
            for raw in redis.lrange(key, 0, -1):
                ids.add(_task_id(raw))
    for raw in redis.hvals(UNACKED_KEY):
        try:
            payload = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        ids.add(_task_id(payload))
    ids.discard("")
    return ids


def _task_id(raw: Any) -> str:
    try:
        message = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        return str(message["headers"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


class ReconcilerLoop:
    """`Reconciler.run_once` every `interval_s` in a daemon thread, until `stop()`. A pass that
    fails (the database is away) is logged and the next one tries again."""

    def __init__(self, reconciler: Reconciler, interval_s: float) -> None:
        self.reconciler = reconciler
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="exportq-reconciler", daemon=True)

    def start(self) -> ReconcilerLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 10)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.reconciler.run_once()
            except Exception:
                log.exception("reconciler pass failed; trying again in %g s", self.interval_s)
