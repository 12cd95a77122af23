"""Supervising local child processes: the demo, the benchmarks and the end-to-end tests start
a whole fleet (API, workers, Flower) on one machine with this.

Each process runs in its own process group with its output in a log file, so `stop()` reaches
its children too (a Celery worker's pool, PNNX) and a failure can show what it printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


def exportq_command(*args: str) -> list[str]:
    """The `exportq` CLI of this installation, as a command line."""
    return [sys.executable, "-m", "exportq.cli", *args]


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise OSError("no free TCP port")


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 6000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process (a warm shutdown), then SIGKILL to its whole group."""
        if self.alive:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()


@dataclass
class Processes:
    """Processes started together; `stop_all()` ends them, newest first."""

    folder: Path
    started: list[ManagedProcess] = field(default_factory=list)

    def start(
        self, args: list[str], env: dict[str, str], name: str, cwd: Path | None = None
    ) -> ManagedProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        log_path = self.folder / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by ManagedProcess.stop
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd or self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        managed = ManagedProcess(name, args, proc, log_path, log)
        self.started.append(managed)
        return managed

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()

    def dead(self) -> list[str]:
        return [p.name for p in self.started if not p.alive]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()}" for p in self.started)


@contextlib.contextmanager
def managed_processes(folder: Path) -> Iterator[Processes]:
    processes = Processes(folder)
    try:
        yield processes
    finally:
        processes.stop_all()


class WaitFailed(RuntimeError):
    """A bounded wait ran out of time, or a process it depended on died."""


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    processes: Processes | None = None,
    interval: float = 0.1,
) -> T:
    """Poll `check` until it returns something truthy; raise WaitFailed after `timeout`
    seconds, or as soon as one of `processes` dies, with their logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        dead = processes.dead() if processes else []
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(dead)} exited" if dead else f"{timeout:g} s passed"
            logs = processes.logs() if processes else ""
            raise WaitFailed(f"waiting for {what}: {reason}\n{logs}")
        time.sleep(interval)
