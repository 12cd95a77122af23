"""check_ncnn: scan the converted model for layers ncnn cannot create, then run it in a child
process (see ncnn_child.py) on every input set."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exportq.errors import NcnnCrashed, NcnnLoadFailed, UnsupportedOps
from workers.export.children import child_options
from workers.export.inputs import InputSet

STAGE = "check_ncnn"
CHILD = Path(__file__).with_name("ncnn_child.py")
INPUT_RE = re.compile(
    r'ex\.input\("(in\d+)",\s*ncnn\.Mat\(\w+\.numpy\(\)(?:,\s*batch_index=(\d+))?\)'
)
OUTPUT_RE = re.compile(r"\b(out\d+)\.numpy\((?:batch_index=(\d+))?\)")


@dataclass(frozen=True)
class Blob:
    blob: str
    batch_index: int | None


def layer_types(param: Path) -> list[str]:
    """Layer types in an .ncnn.param, in order (line 1 is the magic, line 2 the counts)."""
    lines = param.read_text().splitlines()[2:]
    return [line.split()[0] for line in lines if line.strip()]


def unsupported_layers(param: Path) -> list[str]:
    import ncnn

    found: dict[str, None] = {}
    for kind in layer_types(param):
        if "." in kind or "::" in kind or ncnn.layer_to_index(kind) < 0:
            found.setdefault(kind, None)
    return list(found)


def check_layers(param: Path) -> None:
    bad = unsupported_layers(param)
    if bad:
        raise UnsupportedOps(
            f"ncnn cannot run layers {', '.join(bad)}: PNNX left them unlowered. Usual causes: "
            "data-dependent control flow (prim::If/prim::Loop, torch.gt...: make the branch "
            "static or move it out of the model) or an op PNNX does not lower (rewrite it with "
            "supported ops, or register a custom layer)",
            stage=STAGE,
            details={"ops": bad},
        )


def blob_layout(ncnn_py: Path) -> tuple[list[Blob], list[Blob]]:
    """Input and output blobs with their batch axes, as the generated *_ncnn.py uses them."""
    text = ncnn_py.read_text()
    inputs = [Blob(m[1], _int(m[2])) for m in INPUT_RE.finditer(text)]
    outputs = [Blob(m[1], _int(m[2])) for m in OUTPUT_RE.finditer(text)]
    return inputs, outputs


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


class NcnnRun:
    """The ncnn check's child process. It is started early (`NcnnRun(folder)`) so that Python,
    numpy and ncnn are loaded while PNNX still converts; `submit` hands it the model and every
    input set, and `wait` collects the outputs while the PNNX check runs here meanwhile. A
    context manager: leaving it without `wait()` kills the child."""

    def __init__(self, folder: Path, timeout_s: float) -> None:
        self.folder = folder
        self.timeout_s = timeout_s
        self.sets: list[str] = []
        self.outputs: list[Blob] = []
        self._proc = subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **child_options(),
        )

    def _path(self, name: str) -> Path:
        return self.folder / f"ncnn_{name}"

    def __enter__(self) -> NcnnRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()
        for name in ("inputs.npz", "outputs.npz", "job.json"):
            self._path(name).unlink(missing_ok=True)

    def submit(
        self, param: Path, weights: Path, ncnn_py: Path, sets: list[InputSet], fp16: bool
    ) -> None:
        inputs, self.outputs = blob_layout(ncnn_py)
        if len(inputs) != len(sets[0].tensors):
            raise NcnnLoadFailed(
                f"the ncnn model takes {len(inputs)} inputs but the job declares "
                f"{len(sets[0].tensors)}",
                stage=STAGE,
            )
        self.sets = [s.name for s in sets]
        arrays = {f"{s.name}__{i}": a for s in sets for i, a in enumerate(s.arrays())}
        np.savez(self._path("inputs.npz"), **arrays)  # type: ignore[arg-type]
        job = {
            "param": str(param),
            "bin": str(weights),
            "inputs_npz": str(self._path("inputs.npz")),
            "outputs_npz": str(self._path("outputs.npz")),
            "sets": self.sets,
            "fp16": fp16,
            "inputs": [b.__dict__ for b in inputs],
            "outputs": [b.__dict__ for b in self.outputs],
        }
        self._path("job.json").write_text(json.dumps(job))
        assert self._proc.stdin is not None
        try:
            # One line is the whole request; communicate() in wait() closes stdin.
            self._proc.stdin.write(str(self._path("job.json")) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died while starting: wait() reports how

    def wait(self) -> dict[str, list[np.ndarray]]:
        """{input set name: outputs in blob order}."""
        try:
            stdout, stderr = self._proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise NcnnCrashed(
                f"the ncnn run did not finish within {self.timeout_s:g} s", stage=STAGE
            ) from None
        _raise_for_exit(self._proc.returncode, stdout, stderr)
        with np.load(self._path("outputs.npz")) as npz:
            count = len(self.outputs)
            return {s: [npz[f"{s}__{j}"] for j in range(count)] for s in self.sets}


def _raise_for_exit(returncode: int, stdout: str, stderr: str) -> None:
    if returncode == 0:
        return
    log = (stdout + stderr)[-4000:]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        raise NcnnCrashed(
            f"ncnn crashed with {name} while running the converted model", stage=STAGE, log_tail=log
        )
    message = _child_message(stdout) or f"the ncnn check exited with status {returncode}"
    raise NcnnLoadFailed(message, stage=STAGE, log_tail=log)


def _child_message(stdout: str) -> str | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return str(json.loads(line)["error"])
        except (ValueError, KeyError, TypeError):
            continue
    return None
