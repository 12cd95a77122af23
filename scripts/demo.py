"""The demo: start a fleet, submit every sample model, follow them, print a result table.

Run through scripts/demo, which sets up .venv and Redis first.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from exportq.api_models import JobView
from exportq.client import ExportqClient
from exportq.localfleet import LocalFleet
from exportq.processes import free_port, managed_processes
from exportq.render import worst_error
from exportq.samples import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "demo"


def follow(client: ExportqClient, jobs: dict[str, str], started: float) -> dict[str, JobView]:
    """Print each job's status and stage as they change, until every job has ended."""
    seen: dict[str, tuple[str, str | None]] = {}
    views: dict[str, JobView] = {}
    while len(views) < len(jobs) or not all(v.terminal for v in views.values()):
        for name, job_id in jobs.items():
            view = client.get_job(job_id)
            views[name] = view
            state = (view.status, view.stage)
            if seen.get(name) != state:
                seen[name] = state
                where = f" ({view.stage})" if view.stage and not view.terminal else ""
                print(f"  [{time.monotonic() - started:6.1f}s] {name:<20} {view.status}{where}")
        time.sleep(0.3)
    return views


def table(views: dict[str, JobView]) -> None:
    header = (
        f"{'model':<20}{'status':<11}{'torchscript':>12}{'pnnx':>9}{'ncnn':>9}"
        f"{'ncnn.bin':>11}{'model.pt':>11}{'time':>8}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, view in views.items():
        sizes = {a.kind: a.size for a in view.artifacts}
        status = view.status if view.error is None else view.error.code
        took = (view.finished_at - view.created_at).total_seconds() if view.finished_at else 0.0
        print(
            f"{name:<20}{status:<11}{worst_error(view.report, 'torchscript'):>12}{worst_error(view.report, 'pnnx'):>9}"
            f"{worst_error(view.report, 'ncnn'):>9}{_mib(sizes.get('ncnn_bin')):>11}"
            f"{_mib(sizes.get('torchscript')):>11}{took:>7.1f}s"
        )
    print("\nerrors: worst max relative error against eager, per step (ncnn with fp16 weights)")


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--linger",
        type=float,
        default=None,
        help="seconds to keep the fleet up after the table (default: until Ctrl-C on a "
        "terminal, 0 otherwise)",
    )
    args = parser.parse_args()
    linger = args.linger if args.linger is not None else (float("inf") if sys.stdin.isatty() else 0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("EXPORTQ_FLOWER_BASIC_AUTH", f"demo:{secrets.token_urlsafe(9)}")
    user, _, password = env["EXPORTQ_FLOWER_BASIC_AUTH"].partition(":")
    print(f"logs of every process: {(VAR / 'logs').relative_to(ROOT)}/")
    views: dict[str, JobView] = {}
    try:
        with managed_processes(VAR / "logs") as processes:
            # start_api makes the demo's bearer token (exportq token create demo)
            fleet = LocalFleet(processes, env, api_port=free_port(8000), user="demo")
            print(f"starting the API on {fleet.url} ...")
            fleet.start_api()
            print("starting a cpu worker ...")
            fleet.start_worker("cpu1")
            fleet.start_flower()
            print(f"Flower: {fleet.flower_url}  (user {user!r}, password {password!r})\n")
            started = time.monotonic()
            with fleet.client() as client:
                # forced: the demo shows exports, not the results of an earlier run served
                # again (the same models with the same tools would be reused at once)
                jobs = {
                    name: client.submit(SAMPLES[name].spec(labels={"demo": name}), force=True).id
                    for name in SAMPLES
                }
                print(f"submitted {len(jobs)} sample models:")
                views = follow(client, jobs, started)
                for name, view in views.items():
                    if view.status == "succeeded":
                        client.download(view.id, VAR / "artifacts" / name)
            table(views)
            print(f"\nartifacts (checksums verified): {(VAR / 'artifacts').relative_to(ROOT)}/")
            if linger > 0:
                print("the fleet keeps running for Flower; press Ctrl-C to stop it")
                time.sleep(linger)
    except KeyboardInterrupt:
        print("\nstopping the fleet ...")
    print("stopped everything the demo started")
    return 0 if views and all(v.status == "succeeded" for v in views.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
