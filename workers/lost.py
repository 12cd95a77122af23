"""What the worker's main process does when the process running a job dies under it.

Celery's pool reports a child that died (SIGKILL, SIGSEGV, the out-of-memory killer) as a
`WorkerLostError` in the main process; `task_reject_on_worker_lost` then puts the message back
in the queue. Before that, this request class ends the job's lease and notes the signal
(`db.leases.mark_lost`), so the redelivered message recovers the job at once (requeued and
claimed again, or `failed`/`worker_lost` at the attempt cap) instead of waiting for the lease
to run out. A child killed at the hard time limit (`TimeLimitExceeded`; its message is acked)
ends the job `failed`/`timeout`.

Only the parent's view is used: if this write fails (the database is away) nothing is lost,
the lease runs out and the reconciler recovers the job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from celery.exceptions import TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request
from sqlalchemy.orm import Session

from db import leases
from db.session import make_engine, make_session_factory, unit_of_work
from workers.celery_app import settings_of

log = logging.getLogger(__name__)

# billiard: "Worker exited prematurely: signal 9 (SIGKILL) Job: 0." / "...: exitcode 1 Job: 3."
_SIGNAL = re.compile(r"signal \d+ \((SIG\w+)\)|signal (\d+)|exitcode (-?\d+)")


def signal_of(error: BaseException) -> str:
    """`SIGSEGV`, `signal 42`, `exit 1`; `unknown` when the message names neither."""
    match = _SIGNAL.search(str(error))
    if match is None:
        return leases.UNKNOWN_SIGNAL
    name, number, exitcode = match.groups()
    return name or (f"signal {number}" if number else f"exit {exitcode}")


class ExportRequest(Request):  # type: ignore[misc]
    """Celery's request, recording in the database how the process running the job ended."""

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # ExceptionWithTraceback
        lost = isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt)
        try:
            if lost and not (self._already_cancelled or self._already_revoked):
                self._record_lost(signal_of(exc))
            elif isinstance(exc, TimeLimitExceeded):
                self._record_timeout(f"the job ran past the hard time limit and was killed ({exc})")
        except Exception:  # the lease runs out and the reconciler recovers the job
            log.warning("could not record the lost process of task %s", self.id, exc_info=True)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _record_lost(self, signal: str) -> None:
        with self._session() as session:
            written = leases.mark_lost(session, self._job_id(), self.hostname, signal)
        log.warning(
            "job %s: its process died (%s); lease ended: %s", self._job_id(), signal, written
        )

    def _record_timeout(self, message: str) -> None:
        with self._session() as session:
            leases.fail_timed_out(session, self._job_id(), self.hostname, message)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        settings = settings_of(self.task.app)
        # NullPool: this is the main process, which forks the pool's children: it must keep
        # no connection open for them to inherit.
        engine = make_engine(settings.database_url, poolclass=sa.NullPool)
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                yield session
        finally:
            engine.dispose()

    def _job_id(self) -> str:
        args = self.args
        return str(args[0]) if args else str(self.id)
