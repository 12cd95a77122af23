"""check_pnnx: run the PNNX-generated `*_pnnx.py` model in this process.

The generated file is meant to run from its own folder and is not always valid Python: PNNX
names the children of an `nn.Sequential` after their index (`self.2 = nn.ReLU()`). We compile a
repaired copy in memory (attribute names made identifiers, the weight archive's path made
absolute); the artifact on disk stays as PNNX wrote it.
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ARCHIVE = re.compile(r"zipfile\.ZipFile\('([^']+)'")


def repaired_source(source: str, folder: Path) -> str:
    lines = source.splitlines(keepends=True)
    # `self.2` tokenizes as NAME `self` followed by the float `.2`.
    fixes: list[tuple[int, int]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for before, tok in itertools.pairwise(tokens):
        if tok.type == tokenize.NUMBER and tok.string.startswith(".") and before.end == tok.start:
            fixes.append(tok.start)
    for row, col in sorted(fixes, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[: col + 1] + "m_" + line[col + 1 :]
    fixed = "".join(lines)
    return ARCHIVE.sub(lambda m: f"zipfile.ZipFile({str(folder / m.group(1))!r}", fixed)


def load_pnnx_model(pnnx_py: Path) -> torch.nn.Module:
    source = repaired_source(pnnx_py.read_text(), pnnx_py.parent)
    module = types.ModuleType("exportq_pnnx_model")
    module.__file__ = str(pnnx_py)
    try:
        # Our own PNNX output, compiled after repair.
        exec(compile(source, str(pnnx_py), "exec"), module.__dict__)
        module.Model.load_pnnx_bin_as_tensor = _load_tensor
        model = module.Model()
    except Exception as exc:
        raise GeneratedCodeError(f"{pnnx_py.name} does not build: {_short(exc)}") from exc
    model.float()
    return model.eval()


class GeneratedCodeError(Exception):
    """PNNX's generated Python does not run (e.g. `prim::DictConstruct` left in it). That is a
    defect of the debugging artifact, not of the ncnn model, which is checked on its own."""


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _load_tensor(
    self: torch.nn.Module, archive: zipfile.ZipFile, key: str, shape: Any, dtype: str
) -> torch.Tensor:
    # The generated loader goes through a temporary file per tensor; reading the archive
    # member straight into memory gives the same tensor several times faster.
    return torch.from_numpy(np.frombuffer(archive.read(key), dtype=dtype).reshape(shape).copy())


def run_pnnx_model(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    try:
        with torch.no_grad():
            out = model(*[t.cpu() for t in inputs])
    except Exception as exc:
        raise GeneratedCodeError(f"the generated model's forward raised {_short(exc)}") from exc
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out)
