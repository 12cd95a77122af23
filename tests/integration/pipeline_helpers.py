"""Building specs and checking reports for the pipeline tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exportq.report import ExportReport
from exportq.spec import JobSpec
from exportq.storage import digest_of_file
from tests.models.zoo import ZooEntry

ALL_KINDS = {
    "torchscript",
    "pnnx_param",
    "pnnx_bin",
    "pnnx_py",
    "ncnn_param",
    "ncnn_bin",
    "ncnn_py",
}


def zoo_spec(entry: ZooEntry, **overrides: Any) -> JobSpec:
    raw: dict[str, Any] = {
        "model": {"kind": "callable", "target": entry.target},
        "method": entry.method,
        "inputs": [
            {"name": f"in{i}", "shape": shape, "dtype": dtype}
            for i, (shape, dtype) in enumerate(entry.inputs)
        ],
        "validate": {"trials": 2},
    }
    if entry.dynamic:
        raw["dynamic"] = entry.dynamic
    raw.update(overrides)
    return JobSpec.model_validate(raw)


def assert_succeeded(report: ExportReport, workdir: Path) -> None:
    assert report.status == "succeeded", report.error
    assert report.error is None
    assert report.first_divergent_step is None
    assert [s.step for s in report.steps] == ["torchscript", "pnnx", "ncnn"]
    for step in report.steps:
        if step.status == "skipped":  # only PNNX's generated Python may be unusable
            assert step.step == "pnnx" and step.note, step
            continue
        assert step.status == "passed", step
        assert step.comparisons, step.step
        for row in step.comparisons:
            assert row.passed and row.max_rel <= step.tolerance.max_rel, row
            assert row.cosine >= step.tolerance.min_cosine, row
    assert {a.kind for a in report.artifacts} == ALL_KINDS
    for artifact in report.artifacts:
        path = Path(artifact.path or "")
        assert path.parent == workdir and path.is_file(), artifact
        assert path.stat().st_size == artifact.size > 0
        assert digest_of_file(path) == artifact.sha256
    assert set(report.versions) >= {"torch", "pnnx", "ncnn", "exportq"}
    assert set(report.timings) == {
        "load",
        "export",
        "check_torchscript",
        "convert",
        "check_pnnx",
        "check_ncnn",
    }


def assert_failed(report: ExportReport, code: str) -> str:
    """Check the failure's code and shape; return its message for further checks."""
    assert report.status == "failed"
    assert report.error is not None, report
    assert report.error.code == code, report.error
    assert report.error.stage and report.error.message
    assert report.artifacts == []
    return report.error.message
