"""Stopping a running job: cancellation and the job's own time limit, as one signal.

The API cancels a running job with `revoke(job_id, terminate=True, signal="SIGUSR1")`: Celery
sends SIGUSR1 to the child running it, the same signal as a soft time limit. A job's own limit
(`spec.timeout_s`, capped by EXPORTQ_MAX_JOB_TIMEOUT_S) cannot be set on a task already
running, so a timer sends this process the same signal when it expires.

While a job runs, `StopSignal` owns SIGUSR1 in the main thread: armed, the signal raises
`SoftTimeLimitExceeded` where the job is (a PNNX wait, a model's forward); disarmed (claiming
the job, writing its outcome) it is only recorded, and raised when the job is armed again.
Either way it is remembered, even when the pipeline turns the exception into a failed report,
so the task can tell "stopped" from "failed". Outside the main thread signals cannot be caught;
there the stage boundaries (`expired`, the cancel flag) are the only checks.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType, TracebackType

from celery.exceptions import SoftTimeLimitExceeded

STOP_SIGNAL = signal.SIGUSR1


class StopSignal:
    def __init__(self) -> None:
        self.received = False  # a stop signal arrived (revoke, soft limit, our own timer)
        self.timed_out = False  # our own timer fired
        self._armed = False
        self._installed = False
        self._previous: signal.Handlers | int | object = signal.SIG_DFL
        self._timer: threading.Timer | None = None
        self._deadline: float | None = None
        self.limit_s: float | None = None

    # -- the handler -------------------------------------------------------------------------

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(STOP_SIGNAL, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._armed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._installed:
            signal.signal(STOP_SIGNAL, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        if self._armed:
            self._armed = False  # raise once: writing the outcome must not be interrupted
            raise SoftTimeLimitExceeded(f"stopped by signal {signal.Signals(signum).name}")

    def arm(self) -> None:
        """From now on a stop signal raises; one that came while disarmed raises now."""
        if self.received:
            raise SoftTimeLimitExceeded("stopped before the job started")
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    # -- the job's own time limit ------------------------------------------------------------

    def start_timer(self, limit_s: float) -> None:
        """After `limit_s` seconds, stop the job as if by a soft time limit."""
        self.limit_s = limit_s
        self._deadline = time.monotonic() + limit_s
        self._timer = threading.Timer(limit_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        if self._installed:
            os.kill(os.getpid(), STOP_SIGNAL)

    @property
    def expired(self) -> bool:
        """True once the job's own time limit has passed."""
        return self.timed_out or (self._deadline is not None and time.monotonic() >= self._deadline)
