"""The outbox relay: publishes the `dispatches` rows the database holds and Redis does not yet.

A submit writes the job and its dispatch in one transaction, then publishes that dispatch at
once (the fast path); the reconciler's loop publishes whatever is left (the broker was down,
the API died between commit and send, a recovered job). A dispatch is stamped published only
after the broker accepted the message, so a crash in between publishes it again: delivery is
at least once, and the workers' fenced claim makes the duplicate harmless.

No transaction is held while the broker is called: on SQLite a write transaction locks every
other writer (the workers), and a broker that is down takes a second or two to say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from api.dispatch import Dispatcher
from db import dispatch as outbox
from db.models import utcnow
from db.session import unit_of_work
from exportq.errors import ServiceUnavailable

log = logging.getLogger("exportq.relay")
BATCH = 100


@dataclass
class Published:
    sent: int = 0
    dropped: int = 0  # the job was no longer queued (cancelled, or ran from another message)
    error: ServiceUnavailable | None = None  # the broker is unreachable; the rest waits


def publish_pending(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    job_id: str | None = None,
    min_age_s: float = 0.0,
) -> Published:
    """Publish pending dispatches (only `job_id`'s when given; only those at least
    `min_age_s` old), oldest first, until none is left or the broker fails. Never raises for
    the broker: the failure is in `error`."""
    total = Published()
    while True:
        created_before = utcnow() - timedelta(seconds=min_age_s) if min_age_s else None
        with unit_of_work(sessions) as session:
            rows = outbox.pending(session, BATCH, job_id, created_before)
        for row in rows:
            if not row.needed:
                _stamp(sessions, row.id)
                total.dropped += 1
                continue
            try:
                dispatcher.send_export(row.job_id, row.queue, row.priority)
            except ServiceUnavailable as exc:
                # One failure says the broker is away: the rows stay pending for the next pass.
                with unit_of_work(sessions) as session:
                    outbox.mark_failed(session, row.id, exc.message)
                total.error = exc
                log.warning("outbox: broker unreachable, dispatches wait: %s", exc)
                return total
            _stamp(sessions, row.id)
            total.sent += 1
        if len(rows) < BATCH:
            return total


def _stamp(sessions: sessionmaker[Session], dispatch_id: int) -> None:
    with unit_of_work(sessions) as session:
        outbox.mark_published(session, dispatch_id)
