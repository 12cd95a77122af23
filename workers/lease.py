"""Keeping a claimed job's lease alive while it runs (`db.leases`).

A daemon thread of the process running the job renews the lease every `lease_s / 3`, so two
renewals may fail (the database restarting, a long GC pause) before the lease runs out. When
the process dies, the renewals stop with it and the lease runs out: the reconciler, or the
next delivery of the job's message, recovers the job. A renewal that finds the claim gone
(recovered after a freeze, cancelled by an admin) sets `lost`; the run's next fenced write
then writes nothing and the run stops.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from db import leases
from db.session import unit_of_work

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self, sessions: sessionmaker[Session], job_id: str, token: int, lease_s: float
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.token = token
        self.lease_s = lease_s
        self.lost = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="exportq-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.lease_s)

    def _loop(self) -> None:
        while not self._stopping.wait(self.lease_s / 3):
            try:
                with unit_of_work(self.sessions) as session:
                    held = leases.extend(session, self.job_id, self.token, self.lease_s)
            except Exception as exc:  # the database is away: the lease covers a few misses
                log.warning("job %s: could not renew its lease: %s", self.job_id, exc)
                continue
            if not held:
                log.warning("job %s: claim %d is no longer held", self.job_id, self.token)
                self.lost = True
                return
