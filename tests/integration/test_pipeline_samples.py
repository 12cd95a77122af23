"""The demo's sample models (full-size architectures) convert and validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from exportq.samples import SAMPLES
from exportq.spec import JobSpec
from tests.integration.pipeline_helpers import assert_succeeded, zoo_spec
from tests.models.zoo import ZOO
from workers.export import run_export


def sample_spec(name: str) -> JobSpec:
    return JobSpec.model_validate(SAMPLES[name].spec(validate={"trials": 1}))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_model_exports_and_validates(name: str, tmp_path: Path) -> None:
    report = run_export(sample_spec(name), tmp_path)
    assert_succeeded(report, tmp_path)


def test_fp32_ncnn_is_checked_with_fp32_arithmetic(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["cnn_bn"], convert={"fp16": False}), tmp_path)
    assert_succeeded(report, tmp_path)
    ncnn = report.step("ncnn")
    assert ncnn is not None and ncnn.tolerance.max_rel <= 1e-3
    assert max(row.max_rel for row in ncnn.comparisons) < 1e-4
