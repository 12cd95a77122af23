"""The validation chain: eager -> TorchScript -> PNNX -> ncnn, each step compared per output
with the eager reference and with the step before it, on every input set."""

from __future__ import annotations

import numpy as np

from exportq.errors import ExportqError, NcnnMismatch, PnnxMismatch, TorchScriptMismatch
from exportq.report import Comparison, StepReport
from exportq.spec import JobSpec, Step
from workers.export.compare import compare_outputs

Outputs = dict[str, dict[str, np.ndarray]]  # input set -> output name -> array
MISMATCH: dict[str, type[ExportqError]] = {
    "torchscript": TorchScriptMismatch,
    "pnnx": PnnxMismatch,
    "ncnn": NcnnMismatch,
}


def compare_step(
    spec: JobSpec,
    step: Step,
    outputs: Outputs,
    eager: Outputs,
    previous: tuple[str, Outputs] | None,
) -> StepReport:
    tolerance = spec.tolerance(step)
    rows: list[Comparison] = []
    for set_name, got in outputs.items():
        rows += compare_outputs(
            eager[set_name], got, tolerance, input_set=set_name, against="eager"
        )
        if previous is not None:
            prev_name, prev = previous
            rows += compare_outputs(
                prev[set_name], got, tolerance, input_set=set_name, against=prev_name
            )
    passed = all(r.passed for r in rows)
    return StepReport(
        step=step, status="passed" if passed else "failed", tolerance=tolerance, comparisons=rows
    )


def breach_message(report: StepReport) -> str:
    bad = next(r for r in report.comparisons if not r.passed)
    tol = report.tolerance
    if bad.max_rel == float("inf"):
        detail = f"shape {bad.shape} where {bad.against} gives {bad.ref_shape}"
    else:
        detail = (
            f"max rel error {bad.max_rel:.3g} (limit {tol.max_rel:g}), max abs {bad.max_abs:.3g}, "
            f"cosine {bad.cosine:.6f} (limit {tol.min_cosine:g})"
        )
    failing = sorted({r.input_set for r in report.comparisons if not r.passed})
    return (
        f"{report.step} output {bad.output!r} differs from {bad.against} on {bad.input_set}: "
        f"{detail}; failing input sets: {', '.join(failing)}"
    )


def mismatch_error(report: StepReport) -> ExportqError:
    return MISMATCH[report.step](breach_message(report), stage=f"check_{report.step}")
