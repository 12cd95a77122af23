"""Every zoo model through the real pipeline (torch, the PNNX binary, ncnn): the outcome each
one is known to give, with its numbers checked, or the exact error code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.pipeline_helpers import assert_failed, assert_succeeded, zoo_spec
from tests.models.zoo import ZOO
from workers.export import run_export


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_gives_its_known_outcome(name: str, tmp_path: Path) -> None:
    entry = ZOO[name]
    report = run_export(zoo_spec(entry), tmp_path)
    if entry.expect == "succeeded":
        assert_succeeded(report, tmp_path)
    else:
        assert_failed(report, entry.expect)


def test_dict_outputs_are_compared_by_name(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["dict_out"]), tmp_path)
    assert_succeeded(report, tmp_path)
    for step in report.steps:
        if step.step != "pnnx":
            assert {row.output for row in step.comparisons} == {"logits", "features"}
    # PNNX writes `prim::DictConstruct` into the generated Python: that step is reported
    # as not checked, and ncnn is compared with TorchScript instead.
    pnnx = report.step("pnnx")
    assert (
        pnnx is not None and pnnx.status == "skipped" and "DictConstruct" not in (pnnx.note or "x")
    )
    ncnn = report.step("ncnn")
    assert ncnn is not None and {r.against for r in ncnn.comparisons} == {"eager", "torchscript"}


def test_tuple_outputs_are_compared_one_by_one(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["tuple_out"]), tmp_path)
    assert_succeeded(report, tmp_path)
    ncnn = report.step("ncnn")
    assert ncnn is not None and {row.output for row in ncnn.comparisons} == {"out0", "out1"}


def test_dynamic_shapes_are_validated_on_every_step(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["dynamic_cnn"]), tmp_path)
    assert_succeeded(report, tmp_path)
    for step in report.steps:
        dynamic = [row for row in step.comparisons if row.input_set == "dynamic"]
        assert dynamic, step.step
        assert all(row.ref_shape[2:] != [] for row in dynamic)


def test_each_step_is_compared_with_eager_and_with_the_step_before(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["cnn_bn"]), tmp_path)
    assert_succeeded(report, tmp_path)
    against = {s.step: {row.against for row in s.comparisons} for s in report.steps}
    assert against == {
        "torchscript": {"eager"},
        "pnnx": {"eager", "torchscript"},
        "ncnn": {"eager", "pnnx"},
    }
    sets = {row.input_set for row in report.steps[0].comparisons}
    # two trials (uniform, normal); a trace is also checked on negative inputs
    assert sets == {"trial0", "trial1", "check_uniform_pm3"}


def test_trace_divergent_says_to_script(tmp_path: Path) -> None:
    message = assert_failed(
        run_export(zoo_spec(ZOO["trace_divergent"]), tmp_path), "trace_divergent"
    )
    assert "script" in message


def test_auto_falls_back_to_script_when_the_trace_diverges(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["trace_divergent"], method="auto"), tmp_path)
    assert report.method == "script"
    assert any("scripted instead" in w for w in report.warnings)
    # The scripted model keeps its data-dependent branch, which ncnn cannot run.
    message = assert_failed(report, "unsupported_ops")
    assert "prim::If" in message or "torch.gt" in message


def test_scripted_control_flow_names_the_unsupported_layers(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["scripted_control_flow"]), tmp_path)
    message = assert_failed(report, "unsupported_ops")
    assert report.error is not None and report.error.stage == "check_ncnn"
    assert "control flow" in message


def test_model_exception_text_reaches_the_user(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["raises_in_forward"]), tmp_path)
    message = assert_failed(report, "model_failed")
    assert "this model always fails" in message
    assert report.error is not None and "Traceback" in (report.error.log_tail or "")


def test_factory_exception_text_reaches_the_user(tmp_path: Path) -> None:
    report = run_export(zoo_spec(ZOO["raises_in_factory"]), tmp_path)
    message = assert_failed(report, ZOO["raises_in_factory"].expect)
    assert "always fails before building a model" in message
