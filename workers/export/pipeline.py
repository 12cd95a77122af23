"""`run_export(spec, workdir) -> ExportReport`: the whole export, with no Celery, HTTP or SQL.

Stages, in order: load, export, check_torchscript, convert, check_pnnx, check_ncnn. Every
failure becomes a report with an error code from the closed list, the stage and a log tail;
nothing escapes as a bare traceback. Artifacts are written into `workdir`; the caller decides
where they go (the CLI copies them to --out, a worker puts them in the artifact store).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from exportq.errors import ExportqError, InternalError, ModelFailed, OutOfMemory, TraceDivergent
from exportq.report import ArtifactInfo, ArtifactKind, ErrorInfo, ExportReport, StepReport
from exportq.settings import Settings, get_settings
from exportq.spec import JobSpec, TorchScriptModel
from exportq.storage import ArtifactStore, digest_of_file, hex_of
from workers.export import gpu
from workers.export import inputs as input_sets
from workers.export.inputs import InputSet
from workers.export.loading import load_model, traceback_tail
from workers.export.ncnn_check import NcnnRun, check_layers
from workers.export.outputs import forward_outputs, rename_positional
from workers.export.pnnx_model import GeneratedCodeError, load_pnnx_model, run_pnnx_model
from workers.export.pnnx_runner import PnnxOutputs, PnnxProcess
from workers.export.torchscript import (
    divergence_message,
    freeze,
    is_jit_deprecation,
    to_torchscript,
)
from workers.export.validation import Outputs, compare_step, mismatch_error
from workers.export.versions import tool_versions

StageCallback = Callable[[str], None]
TORCHSCRIPT_FILE = "model.pt"


def run_export(
    spec: JobSpec,
    workdir: Path,
    *,
    settings: Settings | None = None,
    store: ArtifactStore | None = None,
    on_stage: StageCallback | None = None,
) -> ExportReport:
    """Export, convert and validate one model; never raises for a failed export."""
    run = _Run(spec, Path(workdir), settings or get_settings(), store, on_stage)
    return run.execute()


class _Run:
    def __init__(
        self,
        spec: JobSpec,
        workdir: Path,
        settings: Settings,
        store: ArtifactStore | None,
        on_stage: StageCallback | None,
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self.settings = settings
        self.store = store
        self.on_stage = on_stage
        self.stage = "load"
        self.method: Literal["trace", "script"] | None = None
        self.steps: list[StepReport] = []
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self.artifacts: list[ArtifactInfo] = []

    # -- orchestration -------------------------------------------------------------------------

    def execute(self) -> ExportReport:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The run keeps its own warning policy whatever the caller's is (pytest turns warnings
        # into errors): everything is recorded and reported, torch.jit's deprecations dropped.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            error = self._guarded()
        self.warnings += list(
            dict.fromkeys(
                f"{w.category.__name__}: {w.message}" for w in caught if not is_jit_deprecation(w)
            )
        )
        return self._report(error)

    def _guarded(self) -> ExportqError | None:
        try:
            with _plain_attention(), gpu.gpu_run(self.spec.device):
                self._stages()
            return None
        except ExportqError as exc:
            return exc
        except MemoryError as exc:
            return OutOfMemory(f"out of memory: {exc}"[:500], log_tail=traceback_tail(exc))
        except Exception as exc:
            if gpu.is_out_of_memory(exc):
                return gpu.out_of_memory(exc, self.spec.device, self.stage)
            return InternalError(
                f"unexpected {type(exc).__name__}: {exc}"[:500], log_tail=traceback_tail(exc)
            )

    def _report(self, error: ExportqError | None) -> ExportReport:
        info = None
        if error is not None:
            info = ErrorInfo.from_exception(error)
            info.stage = info.stage or self.stage
        failing = [s.step for s in self.steps if s.status == "failed"]
        return ExportReport(
            status="failed" if error else "succeeded",
            error=info,
            stage=self.stage,
            method=self.method,
            first_divergent_step=failing[0] if failing else None,
            steps=self.steps,
            warnings=self.warnings,
            timings=self.timings,
            versions=tool_versions(),
            gpu=gpu.usage(self.spec.device),
            artifacts=[] if error else self.artifacts,
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self.stage = name
        if self.on_stage is not None:
            self.on_stage(name)  # may raise Cancelled
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 4)

    def _stages(self) -> None:
        spec = self.spec
        with self._stage("load"):
            device = _device(spec.device)
            model = load_model(spec.model, self.settings, self._blob_path, device)
            sets = self._input_sets()
        with self._stage("export"):
            # The example's reference first: a model whose forward raises fails as
            # model_failed, not as a failed trace. `auto` needs every reference to choose.
            first = sets if spec.method == "auto" else sets[:1]
            eager = self._reference(model, first, device)
            exported = self._export(model, sets, device, eager)
            ts_path = self.workdir / TORCHSCRIPT_FILE
            exported.save(str(ts_path))
        with ExitStack() as helpers:
            # PNNX converts in the background while the saved TorchScript is checked here, and
            # the ncnn check's process starts up meanwhile.
            conversion = helpers.enter_context(
                PnnxProcess(spec, ts_path, self.settings.pnnx_timeout_s)
            )
            ncnn = None
            if "ncnn" in spec.convert.targets:
                ncnn = helpers.enter_context(NcnnRun(self.workdir, self.settings.ncnn_timeout_s))
            with self._stage("check_torchscript"), _sharing_cores():
                eager.update(
                    self._reference(model, [s for s in sets if s.name not in eager], device)
                )
                ts_out = self._check_torchscript(ts_path, sets, device, eager)
            with self._stage("convert"):
                pnnx = conversion.wait()
            self.warnings += pnnx.warnings
            ncnn_refused = self._submit_ncnn(ncnn, pnnx, sets)
            previous: tuple[str, Outputs] = ("torchscript", ts_out)
            if "pnnx" in spec.convert.targets:
                with self._stage("check_pnnx"), _sharing_cores():
                    previous = self._check_pnnx(pnnx, sets, eager, previous)
            if ncnn is not None:
                with self._stage("check_ncnn"):
                    if ncnn_refused is not None:
                        raise ncnn_refused
                    self._check_ncnn(ncnn, eager, previous)
        self._collect_artifacts(pnnx)

    # -- stages --------------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        if self.store is None:
            raise InternalError("the spec refers to a blob but no artifact store was given")
        return self.store.fetch(digest, self.workdir / "blobs" / hex_of(digest))

    def _input_sets(self) -> list[InputSet]:
        spec = self.spec
        sets = input_sets.trial_sets(spec)
        if spec.method != "script" and not isinstance(spec.model, TorchScriptModel):
            sets += input_sets.distribution_sets(spec)
        sets += input_sets.dynamic_sets(spec)
        if spec.samples:
            sets += input_sets.sample_sets(spec, self._blob_path(spec.samples))
        return sets

    def _reference(
        self, model: torch.nn.Module, sets: list[InputSet], device: torch.device
    ) -> dict[str, dict[str, np.ndarray]]:
        return {s.name: _eager(model, s.to(device)) for s in sets}

    def _export(
        self, model: torch.nn.Module, sets: list[InputSet], device: torch.device, eager: Outputs
    ) -> torch.jit.ScriptModule:
        if isinstance(self.spec.model, TorchScriptModel):
            self.warnings.append("the uploaded TorchScript module is the reference")
            return freeze(model)  # type: ignore[arg-type]
        exported = to_torchscript(
            model,
            self.spec.method,
            [s.to(device) for s in sets],
            eager,
            self.spec.tolerance("torchscript"),
        )
        self.method = exported.method
        self.warnings += exported.warnings
        return exported.module

    def _check_torchscript(
        self, ts_path: Path, sets: list[InputSet], device: torch.device, eager: Outputs
    ) -> Outputs:
        # Validate the saved file, not the object in memory: the artifact is what ships.
        reloaded = torch.jit.load(str(ts_path), map_location=device).eval()
        outputs = {s.name: _run(reloaded, s.to(device)) for s in sets}
        if isinstance(self.spec.model, TorchScriptModel):
            return outputs
        step = compare_step(self.spec, "torchscript", outputs, eager, None)
        if step.status == "failed" and self.method == "trace":
            # A trace that disagrees with its own eager model on other inputs is divergent.
            bad = next(r for r in step.comparisons if not r.passed)
            self._judge(step, TraceDivergent(divergence_message(bad), stage="check_torchscript"))
        else:
            self._judge(step)
        return outputs

    def _check_pnnx(
        self,
        pnnx: PnnxOutputs,
        sets: list[InputSet],
        eager: Outputs,
        previous: tuple[str, Outputs],
    ) -> tuple[str, Outputs]:
        names = list(next(iter(eager.values())))
        try:
            model = load_pnnx_model(pnnx.pnnx_py)
            outputs = {
                s.name: rename_positional(
                    names, [t.numpy() for t in run_pnnx_model(model, s.tensors)]
                )
                for s in sets
            }
        except GeneratedCodeError as exc:
            note = f"not checked: {exc}; ncnn is compared with {previous[0]} instead"
            self.warnings.append(f"pnnx step {note}")
            self.steps.append(
                StepReport(
                    step="pnnx", status="skipped", tolerance=self.spec.tolerance("pnnx"), note=note
                )
            )
            return previous
        self._judge(compare_step(self.spec, "pnnx", outputs, eager, previous))
        return ("pnnx", outputs)

    def _submit_ncnn(
        self, ncnn: NcnnRun | None, pnnx: PnnxOutputs, sets: list[InputSet]
    ) -> ExportqError | None:
        """Hand the converted model to the ncnn process. A refusal (layers ncnn cannot create)
        is returned, to be reported at check_ncnn after the PNNX check: the chain goes in
        order."""
        if ncnn is None:
            return None
        try:
            check_layers(pnnx.ncnn_param)
            ncnn.submit(
                pnnx.ncnn_param, pnnx.ncnn_bin, pnnx.ncnn_py, sets, fp16=self.spec.convert.fp16
            )
        except ExportqError as exc:
            return exc
        return None

    def _check_ncnn(self, ncnn: NcnnRun, eager: Outputs, previous: tuple[str, Outputs]) -> None:
        names = list(next(iter(eager.values())))
        raw = ncnn.wait()
        outputs = {name: rename_positional(names, arrays) for name, arrays in raw.items()}
        self._judge(compare_step(self.spec, "ncnn", outputs, eager, previous))

    def _judge(self, step: StepReport, error: ExportqError | None = None) -> None:
        self.steps.append(step)
        if step.status == "passed":
            return
        error = error or mismatch_error(step)
        if self.spec.validate_options.mode == "strict":
            raise error
        self.warnings.append(f"tolerance breached (mode warn): {error.message}")

    def _collect_artifacts(self, pnnx: PnnxOutputs) -> None:
        wanted: list[tuple[ArtifactKind, Path]] = [("torchscript", self.workdir / TORCHSCRIPT_FILE)]
        targets = self.spec.convert.targets
        if "pnnx" in targets:
            wanted += [
                ("pnnx_param", pnnx.pnnx_param),
                ("pnnx_bin", pnnx.pnnx_bin),
                ("pnnx_py", pnnx.pnnx_py),
            ]
        if "ncnn" in targets:
            wanted += [
                ("ncnn_param", pnnx.ncnn_param),
                ("ncnn_bin", pnnx.ncnn_bin),
                ("ncnn_py", pnnx.ncnn_py),
            ]
        if "onnx" in targets:
            wanted.append(("onnx", pnnx.onnx))
        for kind, path in wanted:
            if not path.exists():
                self.warnings.append(f"PNNX did not write {path.name}; no {kind} artifact")
                continue
            self.artifacts.append(
                ArtifactInfo(
                    kind=kind,
                    name=path.name,
                    size=path.stat().st_size,
                    sha256=digest_of_file(path),
                    path=str(path),
                )
            )


@contextmanager
def _sharing_cores() -> Iterator[None]:
    """Run torch on one thread while a helper process (PNNX, ncnn) works beside us: the checks
    here are a few forward passes, and torch's idle pool threads would spin on the cores the
    helper needs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _plain_attention() -> Iterator[None]:
    """Turn off MultiheadAttention's inference fast path for the run: under no_grad it would
    trace into `aten::_transformer_encoder_layer_fwd`, a fused op PNNX cannot lower, instead of
    the plain ops it converts to ncnn."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InternalError("the job asks for device cuda but this worker has no usable CUDA GPU")
    return torch.device(name)


def _run(module: torch.nn.Module, inputs: InputSet) -> dict[str, np.ndarray]:
    return forward_outputs(module, inputs.tensors)


def _eager(model: torch.nn.Module, inputs: InputSet) -> dict[str, np.ndarray]:
    try:
        return _run(model, inputs)
    except ExportqError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        if gpu.is_out_of_memory(exc):
            raise
        raise ModelFailed(
            f"the model's forward raised {type(exc).__name__} on {inputs.name}: {exc}"[:1000],
            stage="export",
            log_tail=traceback_tail(exc),
        ) from exc
