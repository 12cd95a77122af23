"""A whole exportq fleet on this machine: the API, workers and Flower as child processes.

Used by `scripts/demo`, the fleet benchmarks and the end-to-end tests, so the fleet they run
is the one a team deploys: the same commands, only with local settings.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

import httpx

from exportq.client import ExportqClient
from exportq.processes import ManagedProcess, Processes, exportq_command, free_port, wait_until

READY_TIMEOUT_S = 90.0


@dataclass
class LocalFleet:
    processes: Processes
    env: dict[str, str]
    api_port: int = field(default_factory=free_port)
    flower_port: int | None = None
    # The user the fleet's client and CLI act as: `start_api` makes a token for it (with
    # `exportq token create`, on the fleet's database) unless `env` has EXPORTQ_TOKEN.
    user: str = "localfleet"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def client(self) -> ExportqClient:
        return ExportqClient(url=self.url, token=self.env.get("EXPORTQ_TOKEN"))

    def start_api(self) -> ManagedProcess:
        api = self.processes.start(
            exportq_command("api", "--port", str(self.api_port)), self.env, "api"
        )
        wait_until(self._ready, READY_TIMEOUT_S, "the API to be ready", self.processes)
        if not self.env.get("EXPORTQ_TOKEN"):
            self.env["EXPORTQ_TOKEN"] = self.create_token(self.user)
        return api

    def create_token(self, name: str, admin: bool = False) -> str:
        """A new token on the fleet's database, made the way an admin makes one."""
        args = ["token", "create", name] + (["--admin"] if admin else [])
        proc = subprocess.run(
            exportq_command(*args),
            env=self.env,
            cwd=self.processes.folder,  # where the fleet's processes run: relative URLs agree
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"exportq token create failed: {proc.stderr.strip()}")
        return proc.stdout.splitlines()[-1]

    def start_worker(
        self, name: str, device: str = "cpu", concurrency: int | None = None
    ) -> ManagedProcess:
        args = ["worker", "--device", device, "--hostname", f"{name}@localhost"]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        worker = self.processes.start(exportq_command(*args), self.env, name)
        wait_until(
            lambda: self._in_fleet(f"{name}@localhost"),
            READY_TIMEOUT_S,
            f"worker {name} to join the fleet",
            self.processes,
        )
        return worker

    def start_flower(self) -> ManagedProcess:
        self.flower_port = self.flower_port or free_port(5555)
        flower = self.processes.start(
            exportq_command("flower", "--port", str(self.flower_port)), self.env, "flower"
        )
        wait_until(self._flower_up, READY_TIMEOUT_S, "Flower to listen", self.processes)
        return flower

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _in_fleet(self, hostname: str) -> bool:
        with self.client() as client:
            return any(w.name == hostname for w in client.fleet().workers)

    def _flower_up(self) -> bool:
        try:
            # Any answer will do (401 without credentials): the port is served.
            httpx.get(f"{self.flower_url}/healthcheck", timeout=2)
            return True
        except httpx.TransportError:
            return False
