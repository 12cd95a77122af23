"""Model outputs as a flat, named list of tensors.

Eager and TorchScript models may return a tensor, or tuples, lists and dicts of them; PNNX and
ncnn number their outputs out0, out1, ... in the same depth-first order. Flattening both sides
the same way lets every step be compared output by output, by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.jit._fuser import optimized_execution

from exportq.errors import ModelFailed


def flatten_outputs(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """{name: array} in depth-first order; a lone tensor is named `out0`."""
    flat: dict[str, np.ndarray] = {}
    _flatten(value, prefix, flat, top=True)
    return flat


def _flatten(value: Any, prefix: str, flat: dict[str, np.ndarray], top: bool) -> None:
    if isinstance(value, torch.Tensor):
        flat[prefix or "out0"] = value.detach().cpu().numpy()
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), flat, top=False)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            name = f"{prefix}.{i}" if prefix else f"out{i}"
            _flatten(item, name, flat, top=False)
    else:
        raise ModelFailed(
            f"the model returned a {type(value).__name__}; outputs must be tensors, or tuples, "
            "lists or dicts of tensors"
        )


def forward_outputs(
    module: torch.nn.Module, tensors: tuple[torch.Tensor, ...]
) -> dict[str, np.ndarray]:
    """Run a model for validation and flatten what it returns."""
    # A TorchScript module runs only a few times here: the profiling executor's warm-up and
    # fusion passes would cost more than the runs themselves.
    with torch.no_grad(), optimized_execution(False):
        return flatten_outputs(module(*tensors))


def rename_positional(names: list[str], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Give positional outputs (out0, out1, ...) the reference's names, in order."""
    return dict(zip(names, arrays, strict=False))
