"""Admission by the fleet: a new job that no live worker could serve is refused at submit (409
`no_capable_worker`) instead of waiting on a queue nobody reads, unless the submitter asks to
queue it anyway or the server admits such jobs (EXPORTQ_ADMISSION=queue, for fleets that start
workers from the queue's length).

"Could serve" is "consumes the job's queue": routing (`exportq.routing`) gives a job one queue,
and a worker consumes exactly the queues its hardware reaches, so this is the same rule the
broker will apply. The refusal says what the job asks for and what the live fleet offers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from exportq.api_models import WorkerView
from exportq.errors import NoCapableWorker
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.tiers import GpuInfo


def require_capable_worker(
    workers: list[WorkerView] | None,
    spec: JobSpec,
    queue: str,
    settings: Settings,
    queue_anyway: bool,
) -> None:
    """Raise NoCapableWorker when no live worker consumes `queue` and the job may not wait.
    `workers` None (the registry could not be read) admits: the send will tell."""
    if queue_anyway or settings.admission == "queue" or workers is None:
        return
    if any(queue in w.queues for w in workers):
        return
    raise NoCapableWorker(
        f"no live worker can serve this job: it asks for {asked(spec)} (queue {queue}); "
        f"the fleet offers {offered(workers)}. Ask for less, start a matching worker, or "
        "submit with queue_anyway (exportq submit --queue-anyway) to let it wait for one",
        details={
            "queue": queue,
            "asked": {
                "device": spec.device,
                "gpu": spec.gpu.model_dump() if spec.gpu else None,
            },
            "offered": offers(workers),
        },
    )


def asked(spec: JobSpec) -> str:
    if spec.device != "cuda":
        return "a cpu worker"
    bounds = []
    if spec.gpu is not None and spec.gpu.min_compute_capability is not None:
        bounds.append(f"compute capability >= {spec.gpu.min_compute_capability:g}")
    if spec.gpu is not None and spec.gpu.min_memory_gb is not None:
        bounds.append(f"memory >= {spec.gpu.min_memory_gb:g} GB")
    return "a GPU" + (f" with {' and '.join(bounds)}" if bounds else "")


def offers(workers: list[WorkerView]) -> list[dict[str, Any]]:
    """The live workers grouped by what they offer: device and GPU, with a count."""
    counts = Counter(_offer_key(w) for w in workers)
    return [
        {"device": device, "gpu": gpu, "workers": n}
        for (device, gpu), n in sorted(counts.items(), key=lambda item: str(item[0]))
    ]


def offered(workers: list[WorkerView]) -> str:
    if not workers:
        return "no live worker at all"
    parts = []
    for offer in offers(workers):
        n = offer["workers"]
        what = f"{n} {offer['device']} worker{'s' if n > 1 else ''}"
        if offer["gpu"] is not None:
            what += f" ({offer['gpu']})"
        parts.append(what)
    return ", ".join(parts)


def _offer_key(worker: WorkerView) -> tuple[str, str | None]:
    gpu = _gpu_of(worker)
    if gpu is None:
        return worker.device, "GPU unknown" if worker.device == "cuda" else None
    return worker.device, (
        f"{gpu.name}, {gpu.memory_gb:g} GB, compute capability {gpu.compute_capability:g}"
    )


def _gpu_of(worker: WorkerView) -> GpuInfo | None:
    raw = worker.capabilities.get("gpu")
    if not isinstance(raw, dict):
        return None
    try:
        return GpuInfo.model_validate(raw)
    except ValueError:  # a worker of another version may announce other fields
        return None
