"""The pipeline on a GPU: exact fp32, peak memory, out-of-memory, and a clean GPU afterwards.

A cuda job runs the model and the TorchScript checks on the GPU, while PNNX's generated model
and ncnn run on the CPU: the GPU outputs are the reference they are compared with. So the GPU
must compute fp32 as fp32: cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and
later, a drift of ~1e-3 that would read as a conversion error. The run sets IEEE fp32 for its
duration. Peak memory is measured from the run's start; an out-of-memory error says how much
was in use. A cuda worker runs each job in a fresh child process (max-tasks-per-child 1), so the
next job starts with a clean GPU whatever this one left; the cache is emptied anyway.

Nothing here touches CUDA unless the job's device is cuda and CUDA is available: on a CPU
worker, and in a worker's parent process, CUDA is never initialised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from exportq.errors import OutOfMemory
from exportq.report import GpuUsage
from workers.export.loading import traceback_tail

GIB = 2**30
# TorchScript's interpreter re-raises a CUDA OOM as a plain RuntimeError with this text.
OOM_TEXT = "CUDA out of memory"


def uses_cuda(device_name: str) -> bool:
    return device_name == "cuda" and torch.cuda.is_available()


@contextmanager
def gpu_run(device_name: str) -> Iterator[None]:
    """Around a whole run: IEEE fp32 and peak-memory accounting on a cuda job; nothing else."""
    if not uses_cuda(device_name):
        yield
        return
    torch.cuda.reset_peak_memory_stats()
    # torch's new precision switches (the legacy allow_tf32 flags must not be mixed with them);
    # `cudnn.conv` is missing from torch's type stubs.
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv")  # noqa: B009
    previous = (matmul.fp32_precision, conv.fp32_precision)
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = previous
        torch.cuda.empty_cache()


def usage(device_name: str) -> GpuUsage | None:
    """The GPU the run used and its peak memory; None for a run that used none."""
    if not uses_cuda(device_name) or not torch.cuda.is_initialized():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return GpuUsage(
        name=props.name,
        memory_gb=round(props.total_memory / GIB, 1),
        compute_capability=float(f"{props.major}.{props.minor}"),
        peak_memory_gb=round(torch.cuda.max_memory_allocated() / GIB, 3),
    )


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or OOM_TEXT in str(exc)


def out_of_memory(exc: BaseException, device_name: str, stage: str) -> OutOfMemory:
    """The failure for an out-of-memory error, with the peak the GPU saw."""
    seen = usage(device_name)
    if seen is None:
        message = f"out of memory in stage {stage}: {exc}"
    else:
        message = (
            f"out of GPU memory in stage {stage}: peak {seen.peak_memory_gb:.2f} GiB allocated "
            f"of {seen.memory_gb:g} GiB on {seen.name}; use smaller inputs or ask for a larger "
            f"GPU (gpu.min_memory_gb). {str(exc).splitlines()[0] if str(exc) else ''}"
        )
    return OutOfMemory(message[:1000], stage=stage, log_tail=traceback_tail(exc))
