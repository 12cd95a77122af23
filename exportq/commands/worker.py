"""`exportq worker` and `exportq flower`: the fleet's processes, on the same Celery app.

Celery, Flower and torch are imported inside the commands, so `exportq --help` stays light and
works on a client-only install. The worker needs the database schema to exist (the API
migrates it, or `exportq db upgrade`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Literal

import click

from exportq.routing import worker_queues

if TYPE_CHECKING:
    from exportq.settings import Settings
    from exportq.tiers import GpuInfo
    from workers.capabilities import VisibleGpu

Device = Literal["cpu", "cuda"]


def default_hostname(device: str) -> str:
    """`cpu@<host>`; a GPU worker is named after its GPU (one worker per GPU): `cuda0@<host>`."""
    if device == "cuda":
        from workers.capabilities import visible_gpu

        return f"cuda{visible_gpu() or ''}@%h"
    return f"{device}@%h"


def worker_argv(
    device: str,
    concurrency: int | None,
    hostname: str | None,
    loglevel: str,
    gpu: GpuInfo | None = None,
) -> list[str]:
    """The `celery worker` arguments for a worker of this device kind (and GPU)."""
    if device == "cuda":
        if concurrency not in (None, 1):
            raise click.UsageError("a cuda worker runs one job at a time: --concurrency 1")
        concurrency = 1
    argv = [
        "worker",
        "--queues",
        ",".join(worker_queues(device, gpu)),
        "--task-events",
        "--pool",
        "prefork",
        "--hostname",
        hostname or default_hostname(device),
        "--loglevel",
        loglevel,
    ]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if device == "cuda":
        argv += ["--max-tasks-per-child", "1"]  # a fresh child, and a fresh CUDA context, per job
    return argv


@click.command()
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Which queues to consume: cpu, or cuda (one worker per visible GPU, each running one "
    "job at a time in a fresh process, consuming `cuda` and every GPU tier its GPU reaches).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once (default: the CPU count; cuda: 1).",
)
@click.option("--hostname", default=None, help="Node name (default: cpu@<host>, cuda0@<host>).")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
def worker(device: Device, concurrency: int | None, hostname: str | None, loglevel: str) -> None:
    """Run an export worker for DEVICE's queues (EXPORTQ_BROKER_URL, EXPORTQ_DATABASE_URL).

    The GPUs are detected with nvidia-smi among CUDA_VISIBLE_DEVICES, or declared in
    EXPORTQ_WORKER_GPUS (JSON), which overrides detection."""
    from exportq.settings import get_settings

    settings = get_settings()
    gpu = None
    if device == "cuda":
        gpus = gpus_or_fail(settings)
        if len(gpus) > 1:
            if concurrency not in (None, 1):
                raise click.UsageError("a cuda worker runs one job at a time: --concurrency 1")
            from exportq.commands.worker_group import run_group

            sys.exit(run_group(gpus, hostname, loglevel.lower()))
        gpu = gpus[0].info
    argv = worker_argv(device, concurrency, hostname, loglevel.lower(), gpu)
    require_schema(settings.database_url)

    # torch is imported once, here in the parent: the pool's children inherit it when they
    # fork. Nothing here touches torch.cuda, so CUDA is never initialised in the parent.
    import workers.export  # noqa: F401
    from workers import heartbeat
    from workers.celery_app import create_celery_app

    app = create_celery_app(settings)
    effective = 1 if device == "cuda" else (concurrency or os.cpu_count() or 1)
    heartbeat.install(settings, device, worker_queues(device, gpu), effective, gpu)
    app.worker_main(argv)


def gpus_or_fail(settings: Settings) -> list[VisibleGpu]:
    """The GPUs a cuda worker serves; refuses to start a GPU worker without one."""
    from workers.capabilities import visible_gpus

    gpus = visible_gpus(settings)
    if not gpus:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise click.ClickException(
            f"no GPU found for a cuda worker (nvidia-smi, CUDA_VISIBLE_DEVICES={shown}); "
            "declare them in EXPORTQ_WORKER_GPUS, e.g. "
            '\'[{"name": "H200", "memory_gb": 141, "compute_capability": 9.0}]\''
        )
    return gpus


def require_schema(url: str) -> None:
    """Refuse to start on a database that is unreachable or not migrated to head."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from db import migrate

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        current, head = migrate.current(url), migrate.head()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot use the database at {shown}: {exc}") from exc
    if current != head:
        raise click.ClickException(
            f"the database at {shown} is at revision {current or 'none'}, not {head}: "
            "migrate it first (`exportq db upgrade`; the API does it when it starts)"
        )


def parse_basic_auth(value: str | None) -> str:
    """EXPORTQ_FLOWER_BASIC_AUTH as Flower takes it; refuses a missing or malformed value."""
    if not value:
        raise click.ClickException(
            "EXPORTQ_FLOWER_BASIC_AUTH is not set: Flower is never started without "
            "authentication; set it to user:password"
        )
    user, sep, password = value.partition(":")
    if not sep or not user or not password or "," in value:
        raise click.ClickException(
            "EXPORTQ_FLOWER_BASIC_AUTH must be user:password (both non-empty, no commas)"
        )
    return value


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
def flower(port: int, address: str) -> None:
    """Run Flower on the workers' Celery app, behind EXPORTQ_FLOWER_BASIC_AUTH."""
    from exportq.settings import get_settings

    settings = get_settings()
    auth = parse_basic_auth(settings.flower_basic_auth)
    from workers.celery_app import create_celery_app

    app = create_celery_app(settings)
    app.start(["flower", f"--port={port}", f"--address={address}", f"--basic-auth={auth}"])
