"""What a worker can do, as it announces it to the fleet registry.

GPU facts come from `nvidia-smi`, never from torch: asking torch would initialise CUDA in the
worker's parent process, and the children it forks could then not use the GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

NVIDIA_SMI_TIMEOUT_S = 10.0
GPU_QUERY = "name,memory.total,compute_cap"


def capabilities(device: str, concurrency: int | None = None) -> dict[str, Any]:
    caps: dict[str, Any] = {"cpu_count": os.cpu_count() or 1}
    memory = _memory_gb()
    if memory is not None:
        caps["memory_gb"] = memory
    if concurrency is not None:
        caps["concurrency"] = concurrency
    if device == "cuda":
        gpu = query_gpu()
        if gpu is not None:
            caps["gpu"] = gpu
    return caps


def visible_gpu() -> str | None:
    """The GPU this worker uses (the first of CUDA_VISIBLE_DEVICES); None when it hides all;
    "0" when it is unset."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "0"
    first = visible.split(",")[0].strip()
    return None if first in ("", "-1") else first


def query_gpu() -> dict[str, Any] | None:
    """Name, memory and compute capability of the worker's GPU; None when unknown."""
    gpu = visible_gpu()
    exe = shutil.which("nvidia-smi")
    if gpu is None or exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits", "-i", gpu],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return parse_gpu_line(proc.stdout)


def parse_gpu_line(output: str) -> dict[str, Any] | None:
    """`NVIDIA H100 80GB HBM3, 81559, 9.0` -> {name, memory_gb, compute_capability}."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return None
    parts = [p.strip() for p in lines[0].split(",")]
    if len(parts) != 3:
        return None
    name, memory_mib, compute = parts
    try:
        return {
            "name": name,
            "memory_gb": round(float(memory_mib) / 1024, 1),
            "compute_capability": float(compute),
        }
    except ValueError:
        return {"name": name}


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
