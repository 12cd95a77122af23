"""What a worker can do, as it announces it to the fleet registry.

GPU facts come from `nvidia-smi` (NVML underneath), never from torch: asking torch would
initialise CUDA in the worker's parent process, and the children it forks could then not use
the GPU. GPUs declared in the settings (EXPORTQ_WORKER_GPUS) replace detection, so a worker's
routing can be set by hand and tested on a machine without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from exportq.settings import Settings
from exportq.tiers import GpuInfo

NVIDIA_SMI_TIMEOUT_S = 10.0
GPU_QUERY = "index,uuid,name,memory.total,compute_cap"


@dataclass(frozen=True)
class VisibleGpu:
    """A GPU this worker may use: `device` is what CUDA_VISIBLE_DEVICES names it by."""

    device: str
    info: GpuInfo


def capabilities(
    device: str, concurrency: int | None = None, gpu: GpuInfo | None = None
) -> dict[str, Any]:
    caps: dict[str, Any] = {"cpu_count": os.cpu_count() or 1}
    memory = _memory_gb()
    if memory is not None:
        caps["memory_gb"] = memory
    if concurrency is not None:
        caps["concurrency"] = concurrency
    if device == "cuda":
        if gpu is not None:
            caps["gpu"] = gpu.model_dump()
        caps["cuda_initialized_in_parent"] = cuda_initialized()
    return caps


def cuda_initialized() -> bool:
    """Whether CUDA is initialised in this process. Asked without importing torch (a process
    that has not imported it has not initialised CUDA through it) and without initialising
    anything: `is_initialized` only reads torch's flag."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def visible_entries() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (None when unset: every GPU). CUDA stops at the first
    empty or negative entry, and so do we."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries = []
    for part in raw.split(","):
        entry = part.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def visible_gpu() -> str | None:
    """The GPU a one-GPU worker uses (the first of CUDA_VISIBLE_DEVICES); None when it hides
    all; "0" when it is unset."""
    entries = visible_entries()
    if entries is None:
        return "0"
    return entries[0] if entries else None


def visible_gpus(settings: Settings) -> list[VisibleGpu]:
    """The GPUs this worker may use: the declared ones (named by CUDA_VISIBLE_DEVICES's entries
    in order, else 0, 1, ...), or those nvidia-smi finds among the visible devices."""
    entries = visible_entries()
    if settings.worker_gpus is not None:
        names = (
            entries if entries is not None else [str(i) for i in range(len(settings.worker_gpus))]
        )
        return [VisibleGpu(d, g) for d, g in zip(names, settings.worker_gpus, strict=False)]
    return select_visible(query_gpus(), entries)


@dataclass(frozen=True)
class DetectedGpu:
    index: str
    uuid: str
    info: GpuInfo


def select_visible(gpus: list[DetectedGpu], entries: list[str] | None) -> list[VisibleGpu]:
    """The detected GPUs CUDA_VISIBLE_DEVICES shows, named by UUID so that a child given one
    sees that GPU whatever CUDA's device order is. Integer entries are nvidia-smi's (PCI bus)
    indices: the children run with CUDA_DEVICE_ORDER=PCI_BUS_ID. MIG instances are not
    detected; declare them."""
    if entries is None:
        return [VisibleGpu(g.uuid, g.info) for g in gpus]
    chosen = []
    for entry in entries:
        match = next(
            (
                g
                for g in gpus
                if entry == g.index or (entry.startswith("GPU-") and g.uuid.startswith(entry))
            ),
            None,
        )
        if match is None:  # CUDA ignores everything after an entry it cannot resolve
            break
        chosen.append(VisibleGpu(match.uuid, match.info))
    return chosen


def query_gpus() -> list[DetectedGpu]:
    """Every GPU nvidia-smi lists; [] when there is no nvidia-smi or it fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_gpu_lines(proc.stdout) if proc.returncode == 0 else []


def parse_gpu_lines(output: str) -> list[DetectedGpu]:
    """`0, GPU-5f.., NVIDIA H200, 143771, 9.0` lines -> GPUs (memory from MiB to GiB). A line
    without a number for memory or compute capability (`[N/A]`: an old driver) is skipped: such
    a GPU cannot be placed in a tier, and the worker says to declare it."""
    gpus = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        index, uuid, name, memory_mib, compute = parts
        try:
            info = GpuInfo(
                name=name,
                memory_gb=round(float(memory_mib) / 1024, 1),
                compute_capability=float(compute),
                source="nvidia-smi",
            )
        except ValueError:
            continue
        gpus.append(DetectedGpu(index, uuid, info))
    return gpus


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
