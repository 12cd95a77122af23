"""The Celery configuration both sides use: the API's sending app and the workers' app.

Delivery is at least once, made safe: acks late (a message is acknowledged only after the task
ends), reject on worker lost (a killed worker's message is redelivered), prefetch 1 (a worker
never holds jobs it is not running), a visibility timeout above the hard time limit (Redis does
not hand a running job to a second worker). JSON only: no pickle anywhere.
"""

from __future__ import annotations

from typing import Any

from exportq.redis_tls import celery_ssl, is_tls
from exportq.settings import Settings

# Redis priorities: one list per step (lower runs first); exportq.fleet reads their lengths.
PRIORITY_STEPS = [0, 3, 6, 9]


def celery_priority(job_priority: int) -> int:
    """Job priority 9 is the most urgent; Celery's Redis transport runs lower numbers first."""
    return 9 - job_priority


def celery_config(settings: Settings) -> dict[str, Any]:
    conf = _base_config(settings)
    # `rediss://`: Celery refuses TLS URLs without being told how to check certificates.
    if is_tls(conf["broker_url"]):
        conf["broker_use_ssl"] = celery_ssl(settings)
    if is_tls(conf["result_backend"]):
        conf["redis_backend_use_ssl"] = celery_ssl(settings)
    return conf


def _base_config(settings: Settings) -> dict[str, Any]:
    hard_limit = settings.max_job_timeout_s + 60
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend_url or settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": hard_limit,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": PRIORITY_STEPS,
            "queue_order_strategy": "priority",
            **_restore_sweeps(settings),
        },
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        # Flower sees every task from the moment it is sent.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_create_missing_queues": True,
        "broker_connection_retry_on_startup": True,
        "result_expires": 7 * 24 * 3600,
    }


def _restore_sweeps(settings: Settings) -> dict[str, Any]:
    """Kombu looks for unacked messages past the visibility timeout about every 100 s; with a
    short timeout set on purpose (EXPORTQ_BROKER_VISIBILITY_TIMEOUT_S) it looks as often as
    the timeout allows, so a redelivery really happens."""
    if settings.broker_visibility_timeout_s is None:
        return {}
    interval = max(1, min(10, settings.broker_visibility_timeout_s // 2))
    return {"unacked_restore_interval": interval, "unacked_restore_throttle": 1}
