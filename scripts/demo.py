"""Export the sample models one after another through `exportq export` and summarise.

Run through scripts/demo, which sets up .venv first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from exportq.report import ExportReport
from exportq.samples import SAMPLES
from exportq.shapes import format_shape

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "demo"


def export(name: str) -> tuple[ExportReport, float]:
    info = SAMPLES[name]
    args = [sys.executable, "-m", "exportq.cli", "export", info.target, "--json"]
    for shape, dtype in info.inputs:
        args += ["--input", f"{format_shape(shape)}:{dtype}"]
    args += ["--out", str(OUT / name)]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if not proc.stdout.strip():
        raise SystemExit(f"exportq export {name} printed no report:\n{proc.stderr}")
    return ExportReport.model_validate(json.loads(proc.stdout)), elapsed


def worst(report: ExportReport, step: str) -> str:
    result = report.step(step)
    row = result.worst() if result else None
    return "-" if row is None else f"{row.max_rel:.1e}"


def main() -> int:
    print(f"exporting {len(SAMPLES)} sample models into {OUT.relative_to(ROOT)}/ ...\n")
    header = f"{'model':<22}{'status':<11}{'torchscript':>12}{'pnnx':>10}{'ncnn':>10}{'ncnn.bin':>11}{'time':>8}"
    print(header)
    print("-" * len(header))
    failed = 0
    for name in SAMPLES:
        report, elapsed = export(name)
        ncnn_bin = report.artifact("ncnn_bin")
        size = f"{ncnn_bin.size / 2**20:.1f} MiB" if ncnn_bin else "-"
        status = report.status if report.succeeded else f"{report.error.code}"  # type: ignore[union-attr]
        failed += not report.succeeded
        print(
            f"{name:<22}{status:<11}{worst(report, 'torchscript'):>12}{worst(report, 'pnnx'):>10}"
            f"{worst(report, 'ncnn'):>10}{size:>11}{elapsed:>7.1f}s"
        )
    print("\ncolumns: worst max relative error against eager per step; ncnn uses fp16 weights")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
