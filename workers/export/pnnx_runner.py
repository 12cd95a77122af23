"""Convert stage: run the PNNX binary on the saved TorchScript file.

The `pnnx` Python wrapper ignores the binary's exit status and runs generated code in-process,
so the binary is run directly: in its own process group (a timeout kills it and anything it
started), with a time limit, its output kept in `pnnx.log`, and its exit status checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exportq.errors import OutOfMemory, PnnxCrashed, PnnxFailed, PnnxTimeout
from exportq.spec import JobSpec
from workers.export.children import child_options

STAGE = "convert"
TAIL_LINES = 40
PNNX_DTYPES = {
    "float32": "f32",
    "float16": "f16",
    "float64": "f64",
    "int64": "i64",
    "int32": "i32",
    "uint8": "u8",
    "bool": "u8",
}


@dataclass
class PnnxOutputs:
    """The files PNNX wrote for `model.pt` in the work folder."""

    folder: Path
    stem: str = "model"
    warnings: list[str] = field(default_factory=list)

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"

    @property
    def pnnx_param(self) -> Path:
        return self.file(".pnnx.param")

    @property
    def pnnx_bin(self) -> Path:
        return self.file(".pnnx.bin")

    @property
    def pnnx_py(self) -> Path:
        return self.file("_pnnx.py")

    @property
    def ncnn_param(self) -> Path:
        return self.file(".ncnn.param")

    @property
    def ncnn_bin(self) -> Path:
        return self.file(".ncnn.bin")

    @property
    def ncnn_py(self) -> Path:
        return self.file("_ncnn.py")

    @property
    def onnx(self) -> Path:
        return self.file(".pnnx.onnx")

    @property
    def log(self) -> Path:
        return self.folder / "pnnx.log"


def pnnx_executable() -> str:
    import pnnx  # the PyPI package ships the binary; we only need its path

    return str(pnnx.EXEC_PATH)


def shape_arg(shapes: Sequence[Sequence[int]], dtypes: Sequence[str]) -> str:
    return ",".join(
        "[" + ",".join(str(d) for d in shape) + "]" + PNNX_DTYPES[dtype]
        for shape, dtype in zip(shapes, dtypes, strict=True)
    )


def pnnx_arguments(spec: JobSpec, torchscript: Path) -> list[str]:
    """PNNX's key=value arguments. None may contain a space: PNNX would split it."""
    dtypes = [i.dtype for i in spec.inputs]
    args = [
        torchscript.name,
        "inputshape=" + shape_arg([i.shape for i in spec.inputs], dtypes),
        f"fp16={int(spec.convert.fp16)}",
        f"optlevel={spec.convert.optlevel}",
        f"device={'gpu' if spec.device == 'cuda' else 'cpu'}",
    ]
    if spec.dynamic is not None:
        args.append("inputshape2=" + shape_arg(spec.dynamic, dtypes))
    if spec.convert.customop:
        args.append("customop=" + ",".join(spec.convert.customop))
    if spec.convert.moduleop:
        args.append("moduleop=" + ",".join(spec.convert.moduleop))
    return args


class PnnxProcess:
    """PNNX converting in the background, so the TorchScript check can run meanwhile.

    Use as a context manager: leaving the block without `wait()` (an error, a cancellation)
    kills PNNX and everything it started.
    """

    def __init__(self, spec: JobSpec, torchscript: Path, timeout_s: float) -> None:
        self.outputs = PnnxOutputs(torchscript.parent, torchscript.stem)
        self.timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._log = open(self.outputs.log, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self._proc = subprocess.Popen(
            [pnnx_executable(), *pnnx_arguments(spec, torchscript)],
            cwd=torchscript.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **child_options(),
        )

    def __enter__(self) -> PnnxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._log.close()

    def wait(self) -> PnnxOutputs:
        try:
            rc = self._proc.wait(timeout=max(self._deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self.kill()
            raise PnnxTimeout(
                f"PNNX did not finish within {self.timeout_s:g} s and was killed",
                stage=STAGE,
                log_tail=log_tail(self.outputs.log),
            ) from None
        self._log.close()
        return check_result(self.outputs, rc)


def run_pnnx(spec: JobSpec, torchscript: Path, timeout_s: float) -> PnnxOutputs:
    with PnnxProcess(spec, torchscript, timeout_s) as process:
        return process.wait()


def check_result(outputs: PnnxOutputs, rc: int) -> PnnxOutputs:
    text = outputs.log.read_text(errors="replace")
    outputs.warnings = pnnx_warnings(text)
    if rc != 0 and "CUDA out of memory" in text:  # PNNX's libtorch ran the model with device=gpu
        raise OutOfMemory(
            "PNNX ran out of GPU memory running the model (device=gpu); use smaller inputs or "
            "ask for a larger GPU (gpu.min_memory_gb)",
            stage=STAGE,
            log_tail=tail(text),
        )
    if rc < 0:
        name = _signal_name(-rc)
        raise PnnxCrashed(
            f"PNNX crashed with {name}: it could not convert this model; the log tail shows "
            "the last pass it reached",
            stage=STAGE,
            log_tail=tail(text),
            details={"signal": name},
        )
    if rc != 0:
        raise PnnxFailed(f"PNNX exited with status {rc}", stage=STAGE, log_tail=tail(text))
    expected = (outputs.pnnx_param, outputs.ncnn_param, outputs.ncnn_bin)
    missing = [p.name for p in expected if not p.exists()]
    if missing:
        raise PnnxFailed(
            f"PNNX exited 0 but did not write {', '.join(missing)}",
            stage=STAGE,
            log_tail=tail(text),
        )
    return outputs


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# PNNX's own notes on what it dropped or guessed.
NOTEWORTHY = ("fallback batch axis", "fallback to", "batch_index", "is not supported")


def pnnx_warnings(text: str) -> list[str]:
    found: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ignore") or any(n in line for n in NOTEWORTHY):
            found.setdefault(f"pnnx: {line}", None)
    return list(found)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def log_tail(path: Path) -> str:
    try:
        return tail(path.read_text(errors="replace"))
    except OSError:
        return ""
