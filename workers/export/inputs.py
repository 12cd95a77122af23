"""The input sets a model is validated on.

`trial<k>`: the declared shapes filled with seeded random data, a different distribution per
trial (uniform [0, 1), standard normal, uniform [-3, 3)) so that sign- or range-dependent
behaviour shows up; `check_<distribution>`: the distributions fewer than three trials leave
out, for a traced model; `dynamic`: the second shape set; `sample<k>`: the user's real inputs.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from exportq.errors import InputInvalid
from exportq.spec import InputSpec, JobSpec

TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DISTRIBUTIONS = ("uniform01", "normal", "uniform_pm3")
MAX_SAMPLES = 8


@dataclass(frozen=True)
class InputSet:
    name: str
    tensors: tuple[torch.Tensor, ...]

    def to(self, device: torch.device) -> InputSet:
        return InputSet(self.name, tuple(t.to(device) for t in self.tensors))

    def arrays(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy() for t in self.tensors]


def random_tensor(
    spec: InputSpec, shape: list[int], generator: torch.Generator, distribution: str
) -> torch.Tensor:
    dtype = TORCH_DTYPES[spec.dtype]
    if spec.dtype == "bool":
        return torch.rand(shape, generator=generator) < 0.5
    if not dtype.is_floating_point:
        low, high = spec.range or (0, 10)
        return torch.randint(int(low), max(int(high), int(low) + 1), shape, generator=generator).to(
            dtype
        )
    if spec.range is not None:
        low, high = spec.range
        t = torch.rand(shape, generator=generator) * (high - low) + low
    elif distribution == "normal":
        t = torch.randn(shape, generator=generator)
    elif distribution == "uniform_pm3":
        t = torch.rand(shape, generator=generator) * 6.0 - 3.0
    else:
        t = torch.rand(shape, generator=generator)
    return t.to(dtype)


def random_set(
    spec: JobSpec, name: str, shapes: list[list[int]], seed: int, distribution: str
) -> InputSet:
    generator = torch.Generator().manual_seed(seed)
    tensors = tuple(
        random_tensor(inp, shape, generator, distribution)
        for inp, shape in zip(spec.inputs, shapes, strict=True)
    )
    return InputSet(name, tensors)


def trial_sets(spec: JobSpec) -> list[InputSet]:
    shapes = [i.shape for i in spec.inputs]
    seed = spec.validate_options.seed
    return [
        random_set(spec, f"trial{k}", shapes, seed + k, DISTRIBUTIONS[k % len(DISTRIBUTIONS)])
        for k in range(spec.validate_options.trials)
    ]


def distribution_sets(spec: JobSpec) -> list[InputSet]:
    """Sets for the distributions the trials leave out (fewer than three trials), so a trace
    is always checked on uniform, normal and negative inputs."""
    shapes = [i.shape for i in spec.inputs]
    base = spec.validate_options.seed + 1000
    missing = DISTRIBUTIONS[spec.validate_options.trials :]
    return [random_set(spec, f"check_{d}", shapes, base + k, d) for k, d in enumerate(missing)]


def dynamic_sets(spec: JobSpec) -> list[InputSet]:
    if spec.dynamic is None:
        return []
    return [
        random_set(spec, "dynamic", spec.dynamic, spec.validate_options.seed + 500, "uniform01")
    ]


def sample_sets(spec: JobSpec, path: Path) -> list[InputSet]:
    """Read the user's .npz: one array per input (by name, else arr_0.. in order); an extra
    leading axis holds several samples."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputInvalid(
            f"the samples file is not a readable .npz without pickles: {exc}"
        ) from exc
    per_input = []
    for i, inp in enumerate(spec.inputs):
        arr = arrays.get(inp.name, arrays.get(f"arr_{i}"))
        if arr is None:
            raise InputInvalid(
                f"the samples file has no array for input {inp.name!r}; it holds "
                f"{sorted(arrays)}; name arrays after the inputs"
            )
        if arr.ndim == len(inp.shape):
            arr = arr[None]
        if arr.ndim != len(inp.shape) + 1:
            raise InputInvalid(
                f"samples[{inp.name!r}] has shape {list(arr.shape)}; expected rank "
                f"{len(inp.shape)} (one sample) or {len(inp.shape) + 1} (several)"
            )
        per_input.append(torch.from_numpy(np.ascontiguousarray(arr)).to(TORCH_DTYPES[inp.dtype]))
    count = min(len(t) for t in per_input)
    return [
        InputSet(f"sample{k}", tuple(t[k] for t in per_input))
        for k in range(min(count, MAX_SAMPLES))
    ]
