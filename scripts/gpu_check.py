"""The GPU check's driver: a fleet with one cuda worker exports three sample models on the GPU.

Run through scripts/gpu-check, which makes the CUDA venv and a private Redis first. SQLite and
artifacts go under ./var/gpu-check/ (wiped first). Prints the fleet's view of the worker, a
table per model (status, worst relative error per step, GPU, peak GPU memory, time) and exits
0 only when every model succeeded on a GPU within DEADLINE_S and CUDA stayed uninitialised in
every worker's parent process.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from db import migrate
from exportq.api_models import JobView, WorkerView
from exportq.client import ExportqClient
from exportq.localfleet import LocalFleet
from exportq.processes import exportq_command, free_port, managed_processes, wait_until
from exportq.render import worst_error
from exportq.samples import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "gpu-check"
MODELS = ("resnet18", "mobilenet_v2", "transformer_encoder")
DEADLINE_S = 300.0


def cuda_workers(client: ExportqClient) -> list[WorkerView]:
    return [w for w in client.fleet().workers if w.device == "cuda"]


def ended(client: ExportqClient, jobs: dict[str, str]) -> dict[str, JobView] | None:
    views = {name: client.get_job(job_id) for name, job_id in jobs.items()}
    return views if all(v.terminal for v in views.values()) else None


def table(views: dict[str, JobView]) -> None:
    header = (
        f"{'model':<21}{'status':<15}{'torchscript':>12}{'pnnx':>9}{'ncnn':>9}  "
        f"{'gpu':<28}{'peak GiB':>9}{'time':>8}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, view in views.items():
        status = view.status if view.error is None else view.error.code
        gpu = view.report.gpu if view.report else None
        took = (view.finished_at - view.created_at).total_seconds() if view.finished_at else 0.0
        print(
            f"{name:<21}{status:<15}{worst_error(view.report, 'torchscript'):>12}{worst_error(view.report, 'pnnx'):>9}"
            f"{worst_error(view.report, 'ncnn'):>9}  {(gpu.name if gpu else '-')[:27]:<28}"
            f"{(f'{gpu.peak_memory_gb:.3f}' if gpu else '-'):>9}{took:>7.1f}s"
        )
    print(
        "\nerrors: worst max relative error against the eager model on the GPU, per step "
        "(PNNX and ncnn run on the CPU; ncnn with fp16 weights)"
    )
    for name, view in views.items():
        if view.error is not None:
            print(f"{name}: [{view.error.code}] {view.error.message}")


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    database_url = f"sqlite:///{VAR / 'exportq.db'}"
    migrate.upgrade(database_url)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "EXPORTQ_DATABASE_URL": database_url,
        "EXPORTQ_ARTIFACTS_URL": str(VAR / "artifacts"),
        "EXPORTQ_WORK_DIR": str(VAR / "work"),
    }
    print(f"logs of every process: {VAR / 'logs'}/")
    with managed_processes(VAR / "logs") as processes:
        fleet = LocalFleet(processes, env, api_port=free_port(8000))
        fleet.start_api()
        processes.start(exportq_command("worker", "--device", "cuda"), env, "cuda-worker")
        with fleet.client() as client:
            workers = wait_until(
                lambda: cuda_workers(client), 180, "a cuda worker to join the fleet", processes
            )
            for w in workers:
                print(f"worker {w.name}: {w.capabilities.get('gpu')}, queues {len(w.queues)}")
            jobs = {
                name: client.submit(
                    SAMPLES[name].spec(device="cuda", labels={"gpu-check": name})
                ).id
                for name in MODELS
            }
            print(f"submitted {', '.join(MODELS)} with device cuda")
            views = wait_until(
                lambda: ended(client, jobs),
                max(DEADLINE_S - (time.monotonic() - started), 1.0),
                "the three exports to end",
                processes,
                interval=1.0,
            )
            parents = {
                w.name: w.capabilities.get("cuda_initialized_in_parent")
                for w in cuda_workers(client)
            }
    elapsed = time.monotonic() - started
    table(views)
    print(f"\nCUDA initialised in the workers' parent processes: {parents}")
    print(f"end to end, venv and Redis aside: {elapsed:.0f} s (limit {DEADLINE_S:.0f} s)")
    ok = (
        all(v.status == "succeeded" and v.report and v.report.gpu for v in views.values())
        and all(value is False for value in parents.values())
        and elapsed <= DEADLINE_S
    )
    print("gpu-check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
