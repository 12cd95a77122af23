"""The worker's heartbeat in the fleet registry (`exportq.fleet`).

When the worker is ready (Celery's `worker_ready`, in the main process) a daemon thread
announces it every `fleet_ttl_s / 3` seconds with its device, queues, capabilities and tool
versions; on shutdown it stops and the worker leaves the registry. A worker that dies without
leaving drops out when its entry expires. A GPU worker's beat also says whether CUDA is
initialised in its parent process (`cuda_initialized_in_parent`, read at each beat, in that
process): it must stay false, or the forked children could not use the GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from celery.signals import worker_ready, worker_shutdown

from exportq.api_models import WorkerView
from exportq.fleet import FleetRegistry
from exportq.redis_tls import client_options
from exportq.settings import Settings
from exportq.tiers import GpuInfo
from workers.capabilities import capabilities, cuda_initialized

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats `view` into `registry` from a daemon thread until `stop()`."""

    def __init__(
        self,
        registry: FleetRegistry,
        view: WorkerView,
        interval_s: float,
        refresh: Callable[[WorkerView], WorkerView] | None = None,
    ) -> None:
        self.registry = registry
        self.view = view
        self.interval_s = interval_s
        self.refresh = refresh
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="exportq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        try:
            self.registry.leave(self.view.name)
        except redis.RedisError as exc:
            log.warning("could not leave the fleet registry: %s", exc)

    def _loop(self) -> None:
        while True:
            try:
                if self.refresh is not None:
                    self.view = self.refresh(self.view)
                self.registry.beat(self.view)
            except redis.RedisError as exc:  # Redis away for a moment: beat again later
                log.warning("fleet heartbeat failed: %s", exc)
            if self._stopping.wait(self.interval_s):
                return


def with_cuda_state(view: WorkerView) -> WorkerView:
    """The view with this process's CUDA state as of now (the beat runs in the parent)."""
    caps = {**view.capabilities, "cuda_initialized_in_parent": cuda_initialized()}
    return view.model_copy(update={"capabilities": caps})


def registry_for(settings: Settings) -> FleetRegistry:
    """The fleet registry in the broker's Redis."""
    client = redis.Redis.from_url(
        settings.broker_url,
        decode_responses=True,
        **client_options(settings, settings.broker_url),  # rediss:// needs TLS options
    )
    return FleetRegistry(client, settings.fleet_ttl_s)


def install(
    settings: Settings,
    device: Literal["cpu", "cuda"],
    queues: list[str],
    concurrency: int | None = None,
    gpu: GpuInfo | None = None,
) -> None:
    """Connect the heartbeat to this process's worker start and shutdown."""
    running: dict[str, Heartbeat] = {}

    def on_ready(sender: Any = None, **_: Any) -> None:
        from workers.export.versions import tool_versions

        now = datetime.now(UTC)
        view = WorkerView(
            name=str(sender.hostname),
            device=device,
            queues=queues,
            capabilities=capabilities(device, concurrency, gpu),
            versions=tool_versions(),
            started_at=now,
            last_seen=now,
        )
        heartbeat = Heartbeat(
            registry_for(settings),
            view,
            max(settings.fleet_ttl_s / 3, 0.5),
            refresh=with_cuda_state if device == "cuda" else None,
        )
        heartbeat.start()
        running["heartbeat"] = heartbeat
        log.info("announced %s to the fleet (queues %s)", view.name, ", ".join(queues))

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        heartbeat = running.pop("heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
