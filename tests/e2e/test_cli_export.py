"""`exportq export` as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from exportq.report import ExportReport
from exportq.storage import digest_of_file

ROOT = Path(__file__).resolve().parents[2]


def exportq(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "exportq.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_json_report_and_artifacts_in_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = exportq(
        "export",
        "tests.models.zoo:cnn_bn",
        "--input",
        "1x3x32x32",
        "--trials",
        "2",
        "--out",
        str(out),
        "--json",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = ExportReport.model_validate(json.loads(proc.stdout))
    assert report.status == "succeeded"
    names = {a.name for a in report.artifacts}
    assert names == {
        "model.pt",
        "model.pnnx.param",
        "model.pnnx.bin",
        "model_pnnx.py",
        "model.ncnn.param",
        "model.ncnn.bin",
        "model_ncnn.py",
    }
    assert {p.name for p in out.iterdir()} == names | {"report.json"}
    for artifact in report.artifacts:
        assert Path(artifact.path or "") == out / artifact.name
        assert digest_of_file(out / artifact.name) == artifact.sha256
    assert ExportReport.model_validate_json((out / "report.json").read_text()) == report


def test_readable_summary(tmp_path: Path) -> None:
    proc = exportq(
        "export",
        "tests.models.zoo:two_inputs",
        "--input",
        "1x3x16x16",
        "--input",
        "1x6",
        "--out",
        str(tmp_path / "out"),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for expected in ("export succeeded", "validation", "ncnn", "artifacts:", "timings:"):
        assert expected in proc.stdout


def test_failed_export_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = exportq(
        "export",
        "tests.models.zoo:trace_divergent",
        "--input",
        "1x8",
        "--out",
        str(out),
        "--json",
        tmp_path=tmp_path,
    )
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["status"] == "failed"
    assert report["error"]["code"] == "trace_divergent"
    assert not out.exists()


def test_failure_summary_shows_code_and_advice(tmp_path: Path) -> None:
    proc = exportq(
        "export", "tests.models.zoo:trace_divergent", "--input", "1x8", tmp_path=tmp_path
    )
    assert proc.returncode == 1
    assert "[trace_divergent]" in proc.stdout and "script" in proc.stdout


def test_bad_shape_is_a_usage_error(tmp_path: Path) -> None:
    proc = exportq("export", "tests.models.zoo:cnn_bn", "--input", "1x3xfoo", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "cannot read shape '1x3xfoo'" in proc.stderr


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    proc = exportq("export", "tests.models.zoo:cnn_bn", "--input", "1x0x32x32", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "inputs.0.shape" in proc.stderr and "positive" in proc.stderr


def test_the_cli_does_not_import_torch() -> None:
    code = "import sys, exportq.cli, exportq.spec; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
