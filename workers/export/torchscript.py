"""Export stage: eager model -> TorchScript, by trace, script, or trace-then-script (`auto`).

Tracing records one path through the model. When the model takes a Python decision on a tensor's
value, the trace silently hard-codes it; torch warns ("Converting a tensor to a Python boolean")
and the traced model then disagrees with eager on other inputs. Both signs fail the trace as
`trace_divergent`, with the advice to script.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.jit._trace import TracingCheckError

from exportq.errors import ExportqError, ScriptFailed, TraceDivergent, TraceFailed
from exportq.report import Comparison
from exportq.spec import Tolerance
from workers.export.compare import compare_outputs
from workers.export.gpu import is_out_of_memory
from workers.export.inputs import InputSet
from workers.export.loading import traceback_tail
from workers.export.outputs import forward_outputs
from workers.export.validation import Outputs

STAGE = "export"
# Substrings of TracerWarnings that mean "a tensor's value steered Python code".
DATA_DEPENDENT = ("Converting a tensor to a Python", "might cause the trace to be incorrect")
TRACE_CHECK_MISMATCH = "does not match the corresponding output"

TORCH_ROOT = Path(torch.__file__).resolve().parent
# torch 2.13 deprecates every torch.jit entry point; PNNX needs TorchScript all the same.
JIT_DEPRECATION = "is deprecated. Please"


@dataclass
class Exported:
    module: torch.jit.ScriptModule
    method: Literal["trace", "script"]
    warnings: list[str] = field(default_factory=list)


def to_torchscript(
    model: torch.nn.Module,
    method: Literal["trace", "script", "auto"],
    sets: Sequence[InputSet],
    eager: Outputs,
    tolerance: Tolerance,
) -> Exported:
    """Trace on the first input set (torch re-traces on the second to compare graphs), script,
    or `auto`: trace, and script when the trace disagrees with eager on the other sets.

    A plain trace is not re-run here: the pipeline checks the saved file on every set next,
    and reports a traced model that disagrees with eager as `trace_divergent`.
    """
    if method == "script":
        return script(model)
    try:
        exported = trace(model, sets[0], sets[1] if len(sets) > 1 else None)
        if method == "auto":
            recheck_trace(exported.module, sets[1:], eager, tolerance)
        return exported
    except TraceDivergent as divergent:
        if method == "trace":
            raise
        exported = script(model)
        exported.warnings.insert(
            0, f"the trace was divergent, so the model was scripted instead: {divergent.message}"
        )
        return exported


def trace(model: torch.nn.Module, example: InputSet, check: InputSet | None) -> Exported:
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        try:
            # no_grad: MultiheadAttention's inference fast path makes a trace taken with grad
            # enabled fail its own check. strict=False: dict and list outputs are allowed.
            traced = torch.jit.trace(
                model,
                example.tensors,
                strict=False,
                check_trace=True,
                check_inputs=[check.tensors] if check else None,
            )
        except TracingCheckError as exc:
            raise TraceDivergent(
                "tracing the model twice on different inputs gave different graphs: the model's "
                "control flow depends on its input values; use method 'script'",
                stage=STAGE,
                log_tail=traceback_tail(exc),
            ) from exc
        except ExportqError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise  # the run reports it as out_of_memory, with the GPU's peak
            raise TraceFailed(
                f"torch.jit.trace failed: {type(exc).__name__}: {_head(exc)}",
                stage=STAGE,
                log_tail=traceback_tail(exc),
            ) from exc
    kept = [w for w in caught if not is_jit_deprecation(w)]
    notes = list(dict.fromkeys(str(w.message) for w in kept))
    # torch's own modules compare sizes while tracing (nn.LSTM checks its input's shape), which
    # warns the same way; only the model's code taking a decision on a value is divergence.
    # A value-dependent branch inside torch would still show in the numeric checks.
    divergent = [
        str(w.message)
        for w in kept
        if not _inside_torch(w.filename)
        and (
            any(s in str(w.message) for s in DATA_DEPENDENT)
            or TRACE_CHECK_MISMATCH in str(w.message)
        )
    ]
    if divergent:
        raise TraceDivergent(
            "tracing hit data-dependent control flow (a tensor became a Python value), so the "
            f"trace only holds one path: {_head_text(divergent[0])}; use method 'script'",
            stage=STAGE,
            log_tail="\n".join(notes)[-4000:],
        )
    return Exported(traced, "trace", [f"trace: {_head_text(n)}" for n in notes])


def recheck_trace(
    traced: torch.jit.ScriptModule,
    sets: Sequence[InputSet],
    eager: Outputs,
    tolerance: Tolerance,
) -> None:
    for inputs in sets:
        got = forward_outputs(traced, inputs.tensors)
        rows = compare_outputs(
            eager[inputs.name], got, tolerance, input_set=inputs.name, against="eager"
        )
        bad = [r for r in rows if not r.passed]
        if bad:
            raise TraceDivergent(divergence_message(bad[0]), stage=STAGE)


def divergence_message(row: Comparison) -> str:
    return (
        f"the traced model differs from eager on {row.input_set} (output {row.output!r}: "
        f"max rel error {row.max_rel:.3g}, cosine {row.cosine:.6f}): its behaviour depends on "
        "input values or shapes that the trace fixed; use method 'script'"
    )


def _inside_torch(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(TORCH_ROOT)


def is_jit_deprecation(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, DeprecationWarning) and JIT_DEPRECATION in str(w.message)


def script(model: torch.nn.Module) -> Exported:
    if isinstance(model, torch.jit.ScriptModule):
        return Exported(freeze(model), "script")
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:
        raise ScriptFailed(
            f"torch.jit.script failed: {type(exc).__name__}: {_head(exc, lines=6)}",
            stage=STAGE,
            log_tail=traceback_tail(exc),
        ) from exc
    # PNNX crashes on a plain scripted module; a frozen one converts.
    return Exported(freeze(scripted), "script")


def freeze(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    try:
        return torch.jit.freeze(module.eval())
    except Exception as exc:
        raise ScriptFailed(
            f"torch.jit.freeze failed on the scripted model: {_head(exc)}",
            stage=STAGE,
            log_tail=traceback_tail(exc),
        ) from exc


def _head(exc: BaseException, lines: int = 2) -> str:
    return _head_text(str(exc), lines)


def _head_text(text: str, lines: int = 2) -> str:
    return " ".join(text.strip().splitlines()[:lines])[:500]
