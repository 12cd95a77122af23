"""How the pipeline starts its helper processes (the PNNX binary, the ncnn check).

A helper must never outlive the export that started it: when a worker child is killed
(cancellation, a time limit, SIGKILL) the kernel kills the helper too (Linux parent-death
signal). And a helper's OpenMP threads must not spin between parallel regions: the pipeline
runs its own checks on the other cores meanwhile.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_options() -> dict[str, Any]:
    """Keyword arguments for subprocess.Popen/run."""
    options: dict[str, Any] = {"env": {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}}
    if sys.platform == "linux":
        options["preexec_fn"] = _die_with_parent
    return options
