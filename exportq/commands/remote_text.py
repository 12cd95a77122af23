"""How the remote commands show jobs and the fleet to a person (`--json` shows the JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from exportq.api_models import FleetView, JobView
from exportq.render import render_report


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _what(job: JobView) -> str:
    model = job.spec.get("model", {})
    return str(model.get("target") or model.get("blob") or "?")


def status_line(job: JobView) -> str:
    """One line: what the job is doing now."""
    line = f"job {job.id}: {job.status}"
    if job.stage and job.status == "running":
        line += f" ({job.stage})"
    if job.error:
        line += f" [{job.error.code}] {job.error.message}"
    return line


def render_job(job: JobView) -> str:
    lines = [
        f"job {job.id}  {job.status}" + (f" ({job.stage})" if job.stage else ""),
        f"  model    {_what(job)}",
        f"  queue    {job.queue} (device {job.device}), attempts {job.attempts}"
        + (f", worker {job.worker}" if job.worker else ""),
        f"  created  {_when(job.created_at)}   started {_when(job.started_at)}   "
        f"finished {_when(job.finished_at)}",
    ]
    lines.extend(f"  note: {notice}" for notice in job.notices)
    if job.report is not None:
        lines += ["", render_report(job.report)]
    elif job.error is not None:
        lines.append(f"  error    [{job.error.code}] {job.error.message}")
    return "\n".join(lines)


def render_jobs(jobs: list[JobView]) -> str:
    if not jobs:
        return "no jobs"
    rows = [("ID", "STATUS", "STAGE", "QUEUE", "CREATED", "MODEL")]
    rows += [(j.id, j.status, j.stage or "-", j.queue, _when(j.created_at), _what(j)) for j in jobs]
    return _table(rows)


def render_fleet(fleet: FleetView) -> str:
    lines = ["workers:"]
    if not fleet.workers:
        lines.append("  none live")
    for w in fleet.workers:
        caps = ", ".join(
            f"{k} {_capability(v)}" for k, v in sorted(w.capabilities.items()) if k != "gpu"
        )
        versions = ", ".join(f"{k} {v}" for k, v in sorted(w.versions.items()))
        lines.append(f"  {w.name}  {w.device}  queues {_queues(w.queues)}")
        if "gpu" in w.capabilities:
            lines.append(f"    gpu {_capability(w.capabilities['gpu'])}")
        if caps:
            lines.append(f"    {caps}")
        if versions:
            lines.append(f"    {versions}")
        lines.append(f"    up since {_when(w.started_at)}, last seen {_when(w.last_seen)}")
    lines += ["", "queues:"]
    # A GPU worker consumes dozens of tier queues; list those with jobs waiting, count the rest.
    shown = [q for q in fleet.queues if not _is_tier(q.name) or q.length > 0]
    rows = [("NAME", "WAITING", "WORKERS")]
    rows += [(q.name, str(q.length), str(q.workers)) for q in shown]
    lines.append(_table(rows, indent="  "))
    idle = len(fleet.queues) - len(shown)
    if idle:
        lines.append(f"  (+{idle} GPU tier queues served, none waiting)")
    return "\n".join(lines)


def _is_tier(queue: str) -> bool:
    return queue.startswith("cuda.")


def _queues(queues: list[str]) -> str:
    tiers = [q for q in queues if _is_tier(q)]
    plain = [q for q in queues if not _is_tier(q)]
    if len(tiers) <= 2:
        return ", ".join(queues)
    # The worker lists its tiers most demanding first: the first one is its GPU's own tier.
    return ", ".join([*plain, f"{len(tiers)} GPU tiers up to {tiers[0]}"])


def _capability(value: object) -> str:
    if isinstance(value, dict) and "name" in value:  # a GPU
        text = f"{value['name']}"
        if "memory_gb" in value and "compute_capability" in value:
            text += (
                f", {value['memory_gb']:g} GB, compute capability {value['compute_capability']:g}"
            )
        if "source" in value:
            text += f" ({value['source']})"
        return text
    return str(value)


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
