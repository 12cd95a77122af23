"""One worker per GPU: `exportq worker --device cuda` on a machine with several visible GPUs
starts one `exportq worker --device cuda` child per GPU and supervises them.

Each child sees only its GPU (CUDA_VISIBLE_DEVICES=<its UUID or entry>, PCI bus order so an
index means what nvidia-smi says), is told that GPU's facts (EXPORTQ_WORKER_GPUS, one entry, so
it does not detect again), and is named `cuda<i>@<host>` (or `<name>-<i>@<host>` from
--hostname). The supervisor imports neither torch nor Celery. It forwards SIGTERM, SIGINT and
SIGQUIT to the children once; when any child exits it stops the others (a warm shutdown: their
running jobs finish) and exits with the first failing status, so a service manager restarts the
whole set and no GPU is silently left unserved. Children run in their own sessions (a
terminal's Ctrl-C reaches them once, through us) and get SIGTERM if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from exportq.processes import exportq_command

if TYPE_CHECKING:  # exportq imports workers only inside the worker command
    from workers.capabilities import VisibleGpu

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
POLL_S = 0.5
PR_SET_PDEATHSIG = 1


def child_hostname(hostname: str | None, index: int) -> str:
    """`cuda<i>@%h` by default; `name@host` -> `name-<i>@host`."""
    if hostname is None:
        return f"cuda{index}@%h"
    name, sep, host = hostname.partition("@")
    return f"{name}-{index}{sep}{host}"


def child_env(base: Mapping[str, str], gpu: VisibleGpu) -> dict[str, str]:
    return {
        **base,
        "CUDA_VISIBLE_DEVICES": gpu.device,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "EXPORTQ_WORKER_GPUS": json.dumps([gpu.info.model_dump()]),
    }


def child_commands(
    gpus: list[VisibleGpu], hostname: str | None, loglevel: str, base: Mapping[str, str]
) -> list[tuple[list[str], dict[str, str]]]:
    """The command line and environment of each GPU's worker."""
    return [
        (
            exportq_command(
                "worker",
                "--device",
                "cuda",
                "--hostname",
                child_hostname(hostname, i),
                "--loglevel",
                loglevel,
            ),
            child_env(base, gpu),
        )
        for i, gpu in enumerate(gpus)
    ]


def run_group(gpus: list[VisibleGpu], hostname: str | None, loglevel: str) -> int:
    """Start one worker per GPU and supervise them; returns the exit status for the group."""
    children = [
        subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_term_with_parent)
        for args, env in child_commands(gpus, hostname, loglevel, os.environ)
    ]
    print(
        f"exportq: one worker per GPU, {len(children)} children: "
        + ", ".join(f"{g.info.name} (pid {c.pid})" for g, c in zip(gpus, children, strict=True)),
        file=sys.stderr,
        flush=True,
    )
    return supervise(children)


def supervise(children: list[subprocess.Popen[Any]], poll_s: float = POLL_S) -> int:
    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not stopping:  # once: a second signal would turn Celery's warm shutdown cold
            stopping.append(signum)
            _signal_all(children, signum)

    previous: dict[int, Callable[..., Any] | int | None] = {
        sig: signal.signal(sig, forward) for sig in FORWARDED
    }
    try:
        first_exit: int | None = None
        while True:
            codes = [c.poll() for c in children]  # every child: poll() reaps the exited
            if all(code is not None for code in codes):
                break
            exited = [code for code in codes if code is not None]
            if exited and first_exit is None:
                first_exit = next((code for code in exited if code != 0), exited[0])
                if not stopping:
                    stopping.append(signal.SIGTERM)
                    _signal_all(children, signal.SIGTERM)
            time.sleep(poll_s)
        if first_exit is None:  # they ended together (a forwarded signal): the worst counts
            first_exit = next((c.returncode for c in children if c.returncode != 0), 0)
        return first_exit if first_exit >= 0 else 128 - first_exit
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_all(children: list[subprocess.Popen[Any]], signum: int) -> None:
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM (a warm shutdown) when the supervisor dies."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
