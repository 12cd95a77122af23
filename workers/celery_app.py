"""The workers' Celery app, built by a factory from the settings.

Creating the app connects to nothing: the broker is first reached when a worker, Flower or a
sender uses it. The export task is registered on every app the factory builds; importing this
module (Flower, `celery -A workers.celery_app`) does not import torch.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from exportq.celery_config import celery_config
from exportq.routing import CPU_QUEUE
from exportq.settings import Settings, get_settings

_SETTINGS_ATTR = "exportq_settings"


def create_celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured by `exportq.celery_config` with the export task registered."""
    from workers.tasks import register

    settings = settings or get_settings()
    app = Celery("exportq")
    app.conf.update(celery_config(settings))
    # Messages always name their queue; one sent without it must not land on a GPU worker.
    app.conf.task_default_queue = CPU_QUEUE
    setattr(app, _SETTINGS_ATTR, settings)
    register(app)
    return app


def settings_of(app: Celery) -> Settings:
    """The settings `app` was built with (the process's settings for a foreign app)."""
    settings = getattr(app, _SETTINGS_ATTR, None)
    return settings if isinstance(settings, Settings) else get_settings()


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """`workers.celery_app.app`: the process's app, built on first use (for `celery -A`)."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_celery_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
