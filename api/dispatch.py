"""Sending work to the fleet: the API's only contact with Celery.

The API holds a *sending-only* Celery app: it never imports `workers` (nor torch) and sends the
export task by name. A message carries the job id only; the worker reads the spec from the
database. Broker failures become `ServiceUnavailable` within a second or two: a submit must not
hang for minutes on kombu's default retries while a person waits at a terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import redis
from celery import Celery
from kombu.exceptions import KombuError
from kombu.utils.url import maybe_sanitize_url

from exportq.celery_config import celery_config, celery_priority
from exportq.errors import ServiceUnavailable
from exportq.routing import EXPORT_TASK
from exportq.settings import Settings

# Signal the worker turns into a clean `cancelled` end (SIGTERM would look like a crash).
CANCEL_SIGNAL = "SIGUSR1"
BROKER_ERRORS: tuple[type[BaseException], ...] = (KombuError, redis.RedisError, OSError)


class Dispatcher(Protocol):
    def send_export(self, job_id: str, queue: str, priority: int) -> None: ...

    def revoke(self, job_id: str) -> None: ...

    def close(self) -> None: ...


def sending_config(settings: Settings) -> dict[str, Any]:
    """The shared Celery config, with the broker calls bounded for a request/response path."""
    conf = celery_config(settings)
    conf.update(
        # The API reads job state from the database, never from Celery results; without a
        # backend, send_task does not subscribe to a result channel per sent task.
        result_backend=None,
        broker_connection_timeout=1.0,
        broker_connection_max_retries=1,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
        broker_transport_options={
            **conf["broker_transport_options"],
            "socket_connect_timeout": 1.0,
            "socket_timeout": 2.0,
        },
    )
    return conf


def sending_app(settings: Settings) -> Celery:
    app = Celery("exportq-api", set_as_current=False)
    app.conf.update(sending_config(settings))
    return app


class CeleryDispatcher:
    def __init__(self, app: Celery, broker_url: str) -> None:
        self.app = app
        self._shown_url = maybe_sanitize_url(broker_url)

    def send_export(self, job_id: str, queue: str, priority: int) -> None:
        """Send the export task for a committed job; the task id is the job id, so Flower and
        a revoke name the job directly."""
        with self._broker(job_id):
            self.app.send_task(
                EXPORT_TASK,
                args=[job_id],
                task_id=job_id,
                queue=queue,
                priority=celery_priority(priority),
            )

    def revoke(self, job_id: str) -> None:
        """Ask the worker running `job_id` to stop it now."""
        with self._broker(job_id):
            self.app.control.revoke(job_id, terminate=True, signal=CANCEL_SIGNAL)

    def close(self) -> None:
        self.app.close()

    @contextmanager
    def _broker(self, job_id: str) -> Iterator[None]:
        try:
            yield
        except BROKER_ERRORS as exc:
            raise ServiceUnavailable(
                f"the broker at {self._shown_url} is unreachable ({exc}); job {job_id} is saved "
                "and will be dispatched when the broker is back",
                details={"service": "broker", "job_id": job_id},
            ) from exc
