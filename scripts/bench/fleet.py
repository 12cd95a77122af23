"""Benchmark: exports through the fleet against the way a user without exportq does them.

throughput: the sample and zoo models (>= 20 jobs) submitted to a running fleet with two
worker processes, against one fresh `python` process per model running the pipeline, one
after the other. Target: the fleet at most 0.6x the wall time.

overhead: submit-to-done through the fleet for a tiny model, against `run_export` in-process.
Target: at most 150 ms more per job.

The fleet runs on this machine: SQLite and artifacts in a temporary folder, a Redis database of
its own (EXPORTQ_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14, flushed).

    .venv/bin/python scripts/bench/fleet.py [--repeat-overhead 10] [--only throughput|overhead]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from exportq.client import ExportqClient
from exportq.localfleet import LocalFleet
from exportq.processes import managed_processes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exportq.samples import SAMPLES  # noqa: E402
from tests.models.zoo import ZOO  # noqa: E402

REDIS_URL = os.environ.get("EXPORTQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TINY = {
    "model": {"kind": "callable", "target": "tests.models.zoo:cnn_bn"},
    "inputs": [{"name": "x", "shape": [1, 3, 16, 16]}],
    "validate": {"trials": 1},
}


def job_specs() -> list[dict[str, Any]]:
    """Every sample and every zoo model, the zoo twice with another seed: 4 + 2 x 17 jobs."""
    specs = []
    for info in SAMPLES.values():
        specs.append(_spec(info.target, info.inputs, None, "trace", {}))
    for seed in (0, 1):
        for entry in ZOO.values():
            kwargs = {} if entry.target.endswith("raises_in_factory") else {"seed": seed}
            specs.append(_spec(entry.target, entry.inputs, entry.dynamic, entry.method, kwargs))
    return specs


def _spec(
    target: str, inputs: Any, dynamic: Any, method: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"kind": "callable", "target": target, "kwargs": kwargs},
        "method": method,
        "inputs": [{"name": f"in{i}", "shape": s, "dtype": d} for i, (s, d) in enumerate(inputs)],
    }
    if dynamic:
        spec["dynamic"] = dynamic
    return spec


def env_for(folder: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPORTQ_")},
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "EXPORTQ_DATABASE_URL": f"sqlite:///{folder / 'exportq.db'}",
        "EXPORTQ_ARTIFACTS_URL": str(folder / "artifacts"),
        "EXPORTQ_WORK_DIR": str(folder / "work"),
        "EXPORTQ_BROKER_URL": REDIS_URL,
        "EXPORTQ_ALLOWED_MODULES": "exportq.samples,tests.models",
    }


ONE_PROCESS = """
import json, sys, tempfile
from exportq.spec import JobSpec
from workers.export import run_export
spec = JobSpec.model_validate(json.loads(sys.argv[1]))
with tempfile.TemporaryDirectory() as d:
    print(run_export(spec, d).status)
"""


def baseline(specs: list[dict[str, Any]], env: dict[str, str]) -> float:
    start = time.perf_counter()
    for spec in specs:
        subprocess.run(
            [sys.executable, "-c", ONE_PROCESS, json.dumps(spec)],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
    return time.perf_counter() - start


def through_fleet(
    client: ExportqClient, specs: list[dict[str, Any]]
) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    # forced: the benchmark measures exports, never a reused or joined identical job
    ids = [client.submit(spec, force=True).id for spec in specs]
    pending = set(ids)
    statuses: dict[str, int] = {}
    while pending:
        for job_id in list(pending):
            view = client.get_job(job_id)
            if view.terminal:
                pending.discard(job_id)
                statuses[view.status] = statuses.get(view.status, 0) + 1
        time.sleep(0.05)
    return time.perf_counter() - start, statuses


def submit_to_done(client: ExportqClient) -> tuple[float, dict[str, float]]:
    """Submit-to-done for one job, as the service adds it: the submit request's round trip
    plus the job's own record from creation to its recorded result (one clock: this machine).
    The client polls every 50 ms only to learn that the job ended; polling faster would load
    the 2 cores the worker needs and slow what is measured. Also: where the time went."""
    start = time.perf_counter()
    job_id = client.submit(TINY, force=True).id
    submitted = time.perf_counter() - start
    while not (view := client.get_job(job_id)).terminal:
        time.sleep(0.05)
    observed = time.perf_counter() - start
    assert view.started_at and view.finished_at and view.report
    pipeline = sum(t for stage, t in view.report.timings.items() if stage != "store")
    recorded = (view.finished_at - view.created_at).total_seconds()
    parts = {
        "submit_request_s": submitted,
        "queued_s": (view.started_at - view.created_at).total_seconds(),
        "worker_besides_pipeline_s": (view.finished_at - view.started_at).total_seconds()
        - pipeline,
        "observed_with_50ms_polling_s": observed,
    }
    return submitted + recorded, parts


def in_process(repeat: int) -> float:
    from exportq.spec import JobSpec
    from workers.export import run_export

    spec = JobSpec.model_validate(TINY)
    times = []
    for _ in range(repeat + 1):
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            assert run_export(spec, Path(d)).succeeded
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run pays for imports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "overhead"])
    parser.add_argument("--repeat-overhead", type=int, default=10)
    args = parser.parse_args()
    redis.Redis.from_url(REDIS_URL).flushdb()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = env_for(folder)
        if args.only in (None, "throughput"):
            specs = job_specs()
            os.environ.update({k: v for k, v in env.items() if k.startswith("EXPORTQ_")})
            base = baseline(specs, env)
            with managed_processes(folder / "logs") as processes:
                fleet = LocalFleet(processes, env)
                fleet.start_api()
                fleet.start_worker("bench1", concurrency=1)
                fleet.start_worker("bench2", concurrency=1)
                with fleet.client() as client:
                    took, statuses = through_fleet(client, specs)
            result["throughput"] = {
                "jobs": len(specs),
                "outcomes": statuses,
                "baseline_one_process_per_model_s": round(base, 2),
                "fleet_two_workers_s": round(took, 2),
                "ratio": round(took / base, 3),
                "target_ratio": 0.6,
            }
        if args.only in (None, "overhead"):
            os.environ.update({k: v for k, v in env.items() if k.startswith("EXPORTQ_")})
            local = in_process(args.repeat_overhead)
            with managed_processes(folder / "logs2") as processes:
                fleet = LocalFleet(processes, env)
                fleet.start_api()
                fleet.start_worker("bench-overhead", concurrency=1)
                with fleet.client() as client:
                    submit_to_done(client)  # warm-up: the worker's first job
                    runs = [submit_to_done(client) for _ in range(args.repeat_overhead)]
            fleet_s = statistics.median(took for took, _ in runs)
            result["overhead"] = {
                "repeat": args.repeat_overhead,
                "run_export_in_process_s": round(local, 3),
                "submit_to_done_s": round(fleet_s, 3),
                "overhead_ms": round((fleet_s - local) * 1000, 1),
                "median_parts_ms": {
                    key: round(statistics.median(parts[key] for _, parts in runs) * 1000, 1)
                    for key in runs[0][1]
                },
                "target_ms": 150,
            }
    redis.Redis.from_url(REDIS_URL).flushdb()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
