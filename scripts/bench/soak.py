"""Soak: many jobs through a fleet that is being broken on purpose, then a full audit.

Starts a private `redis-server` (no persistence, so a restart comes back empty), a PostgreSQL
database of its own (on EXPORTQ_TEST_PG_URL's server), `exportq reconciler` and cpu workers.
Submits `--jobs` small exports the way the API does (the job and its dispatch in one
transaction). While they run it SIGKILLs, at random, a worker's pool process or a whole worker
(then starts a new one), and restarts Redis empty once. At the end every job must be in a
terminal state, with exactly one export result (one report), and every artifact's bytes must
match its checksum. Prints the counts; exits 1 on any violation.

    .venv/bin/python scripts/bench/soak.py [--jobs 300] [--workers 2] [--kill-every 12]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from db import dispatch as outbox  # noqa: E402
from db import repository as repo  # noqa: E402
from db.models import Artifact, Job  # noqa: E402
from db.session import make_engine, make_session_factory, unit_of_work  # noqa: E402
from exportq.processes import (  # noqa: E402
    ManagedProcess,
    Processes,
    exportq_command,
    free_port,
    managed_processes,
    wait_until,
)
from exportq.spec import JobSpec  # noqa: E402
from exportq.storage import LocalArtifactStore, digest_of_file  # noqa: E402
from tests.services import temporary_database  # noqa: E402

SPEC = {
    "model": {"kind": "callable", "target": "tests.models.zoo:cnn_bn"},
    "inputs": [{"name": "x", "shape": [1, 3, 16, 16]}],
    "validate": {"trials": 1},
}


class Soak:
    def __init__(self, args: argparse.Namespace, processes: Processes, folder: Path) -> None:
        self.args = args
        self.processes = processes
        self.folder = folder
        self.rng = random.Random(args.seed)
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_proc: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.started_workers = 0
        self.kills: collections.Counter[str] = collections.Counter()
        self.env: dict[str, str] = {}

    # -- the fleet -------------------------------------------------------------------------

    def start_redis(self) -> None:
        server = shutil.which("redis-server") or "redis-server"
        args = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no"]
        self.redis_proc = self.processes.start(args, {}, f"redis-{time.monotonic_ns()}")
        client = redis.Redis.from_url(self.redis_url)
        wait_until(lambda: _pings(client), 10, "Redis to answer")
        client.close()

    def restart_redis(self) -> None:
        assert self.redis_proc is not None
        self._forget(self.redis_proc, signal.SIGKILL)
        self.start_redis()

    def start_worker(self) -> None:
        self.started_workers += 1
        name = f"soak{self.started_workers}@localhost"
        args = ["worker", "--device", "cpu", "--concurrency", str(self.args.concurrency)]
        proc = self.processes.start(
            exportq_command(*args, "--hostname", name), self.env, f"worker{self.started_workers}"
        )
        self.workers.append(proc)

    def chaos(self) -> None:
        """SIGKILL a pool process (most of the time) or a whole worker (then replace it)."""
        live = [w for w in self.workers if w.alive]
        if not live:
            return
        worker = self.rng.choice(live)
        children = _children(worker.proc.pid)
        if children and self.rng.random() < 0.7:
            os.kill(self.rng.choice(children), signal.SIGKILL)
            self.kills["pool process"] += 1
            return
        self.workers.remove(worker)
        self._forget(worker, signal.SIGKILL, group=True)
        self.kills["whole worker"] += 1
        self.start_worker()

    def _forget(self, proc: ManagedProcess, sig: int, group: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.proc.pid, sig)
            else:
                proc.proc.send_signal(sig)
        proc.proc.wait(timeout=30)
        self.processes.started.remove(proc)
        proc.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def audit(sessions: Any, store: LocalArtifactStore, job_ids: list[str]) -> dict[str, Any]:
    with unit_of_work(sessions) as s:
        jobs = {j.id: j for j in s.scalars(sa.select(Job).where(Job.id.in_(job_ids)))}
        artifacts = list(s.scalars(sa.select(Artifact).where(Artifact.job_id.in_(job_ids))))
    reports = collections.Counter(a.job_id for a in artifacts if a.name == "report.json")
    mismatched = 0
    for artifact in artifacts:
        path = store.local_path(artifact.sha256)
        if not path.is_file() or digest_of_file(path) != artifact.sha256:
            mismatched += 1
    statuses = collections.Counter(j.status for j in jobs.values())
    codes = collections.Counter(j.error_code for j in jobs.values() if j.error_code)
    return {
        "jobs": len(job_ids),
        "statuses": dict(statuses),
        "error_codes": dict(codes),
        "not_terminal": sum(1 for j in jobs.values() if not j.terminal),
        "ran_more_than_once": sum(1 for j in jobs.values() if j.attempts > 1),
        "max_attempts_seen": max((j.attempts for j in jobs.values()), default=0),
        "jobs_with_exactly_one_result": sum(1 for j in job_ids if reports[j] == 1),
        "jobs_with_more_than_one_result": sum(1 for j in job_ids if reports[j] > 1),
        "succeeded_without_exactly_one_result": sum(
            1 for j in jobs.values() if j.status == "succeeded" and reports[j.id] != 1
        ),
        "artifacts": len(artifacts),
        "artifact_checksum_mismatches": mismatched,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=12.0, help="seconds between kills")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="exportq-soak-"))
    started = time.monotonic()
    with (
        temporary_database("exportq_soak") as url,
        managed_processes(folder / "processes") as processes,
    ):
        soak = Soak(args, processes, folder)
        soak.start_redis()
        soak.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EXPORTQ_")},
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "EXPORTQ_DATABASE_URL": url,
            "EXPORTQ_BROKER_URL": soak.redis_url,
            "EXPORTQ_ARTIFACTS_URL": str(folder / "artifacts"),
            "EXPORTQ_WORK_DIR": str(folder / "work"),
            "EXPORTQ_ALLOWED_MODULES": "tests.models",
            "EXPORTQ_LEASE_S": "15",
            "EXPORTQ_RECONCILE_INTERVAL_S": "1",
            "EXPORTQ_REDISPATCH_AFTER_S": "5",
            # Random kills may hit one job several times: the cap is for a job that kills
            # its worker itself, so it is set high enough not to fire by chance here.
            "EXPORTQ_MAX_ATTEMPTS": "10",
        }
        processes.start(exportq_command("reconciler"), soak.env, "reconciler")
        for _ in range(args.workers):
            soak.start_worker()
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        spec = JobSpec.model_validate(SPEC)
        job_ids = []
        with unit_of_work(sessions) as s:
            for _ in range(args.jobs):
                job = repo.create_job(s, spec, "soak", "cpu")
                outbox.add_dispatch(s, job)
                job_ids.append(job.id)
        print(f"submitted {len(job_ids)} jobs; {args.workers} workers x {args.concurrency}")

        restarted = False
        deadline = time.monotonic() + args.timeout
        next_kill = time.monotonic() + args.kill_every
        while time.monotonic() < deadline:
            with unit_of_work(sessions) as s:
                done = s.scalar(
                    sa.select(sa.func.count())
                    .select_from(Job)
                    .where(Job.id.in_(job_ids), Job.finished_at.is_not(None))
                )
            done = int(done or 0)
            if done >= len(job_ids):
                break
            if not restarted and done >= len(job_ids) * 0.4:
                soak.restart_redis()
                restarted = True
                print(f"{time.monotonic() - started:6.0f}s  Redis restarted empty at {done} done")
            if time.monotonic() >= next_kill and done < len(job_ids) * 0.9:
                soak.chaos()
                next_kill = time.monotonic() + soak.rng.uniform(0.5, 1.5) * args.kill_every
            time.sleep(1)
        # Settle: a kill just before the end may leave a job to its lease.
        wait_until(lambda: _all_terminal(sessions, job_ids), 300, "every job to end", None, 1)
        result = audit(sessions, LocalArtifactStore(folder / "artifacts"), job_ids)
        engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)
    result["kills"] = dict(soak.kills)
    result["redis_restarts"] = int(restarted)
    result["wall_s"] = round(time.monotonic() - started)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    ok = (
        result["not_terminal"] == 0
        and result["jobs_with_more_than_one_result"] == 0
        and result["artifact_checksum_mismatches"] == 0
        and result["succeeded_without_exactly_one_result"] == 0
    )
    print("OK" if ok else "VIOLATIONS")
    return 0 if ok else 1


def _all_terminal(sessions: Any, job_ids: list[str]) -> bool:
    with unit_of_work(sessions) as s:
        left = s.scalar(
            sa.select(sa.func.count())
            .select_from(Job)
            .where(Job.id.in_(job_ids), Job.finished_at.is_(None))
        )
    return int(left or 0) == 0


if __name__ == "__main__":
    sys.exit(main())
