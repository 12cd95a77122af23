from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from exportq.spec import NCNN_FP16_TOLERANCE, JobSpec, Tolerance

DIGEST = "sha256:" + "ab" * 32


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"kind": "callable", "target": "exportq.samples:resnet18"},
        "inputs": [{"name": "x", "shape": [1, 3, 224, 224]}],
    }
    base.update(overrides)
    return base


def errors(raw: dict[str, Any], **context: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(raw, context=context or None)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


def test_defaults_are_filled_in() -> None:
    job = JobSpec.model_validate(spec())
    assert job.method == "trace"
    assert job.convert.targets == ["pnnx", "ncnn"]
    assert job.validate_options.mode == "strict"
    assert job.tolerance("ncnn") == NCNN_FP16_TOLERANCE


def test_round_trips_through_json_with_the_validate_key() -> None:
    job = JobSpec.model_validate(spec(validate={"mode": "warn", "trials": 2}))
    dumped = job.to_json()
    assert '"validate":' in dumped
    assert JobSpec.model_validate_json(dumped) == job


def test_target_must_name_module_and_factory() -> None:
    [(where, msg)] = errors(spec(model={"kind": "callable", "target": "resnet18"}))
    assert where == "model.callable.target"
    assert "package.module:factory" in msg


def test_non_positive_dimension_is_named() -> None:
    [(where, msg)] = errors(spec(inputs=[{"name": "x", "shape": [1, 0, 8]}]))
    assert where == "inputs.0.shape"
    assert "positive" in msg


def test_element_cap_stops_a_typo() -> None:
    [(_, msg)] = errors(
        spec(inputs=[{"name": "x", "shape": [1, 3, 2240, 2240]}]), max_elements=10**6
    )
    assert "inputs.0.shape" in msg and "EXPORTQ_MAX_INPUT_ELEMENTS" in msg


def test_unknown_dtype_lists_the_known_ones() -> None:
    [(where, msg)] = errors(spec(inputs=[{"name": "x", "shape": [1], "dtype": "float8"}]))
    assert where == "inputs.0.dtype"
    assert "float32" in msg


def test_tolerances_must_be_positive() -> None:
    [(where, _)] = errors(spec(validate={"tolerances": {"ncnn": {"max_rel": 0}}}))
    assert where == "validate.tolerances.ncnn.max_rel"


def test_user_tolerance_wins_over_the_default() -> None:
    job = JobSpec.model_validate(spec(validate={"tolerances": {"ncnn": {"max_rel": 0.5}}}))
    assert job.tolerance("ncnn") == Tolerance(max_rel=0.5)


def test_fp32_ncnn_gets_the_tight_tolerance() -> None:
    job = JobSpec.model_validate(spec(convert={"fp16": False}))
    assert job.tolerance("ncnn").max_rel < NCNN_FP16_TOLERANCE.max_rel


def test_dynamic_needs_one_shape_per_input_of_the_same_rank() -> None:
    [(_, msg)] = errors(spec(dynamic=[[1, 3, 64]]))
    assert "rank" in msg
    [(_, msg)] = errors(spec(dynamic=[[1, 3, 64, 64], [1]]))
    assert "one shape per input" in msg


def test_unknown_keys_are_refused() -> None:
    [(where, _)] = errors(spec(colour="blue"))
    assert where == "colour"


def test_duplicate_input_names() -> None:
    [(_, msg)] = errors(spec(inputs=[{"name": "x", "shape": [1]}, {"name": "x", "shape": [2]}]))
    assert "repeated: x" in msg


def test_gpu_request_needs_cuda() -> None:
    [(_, msg)] = errors(spec(gpu={"min_memory_gb": 16}))
    assert "cuda" in msg


def test_blob_refs_are_content_addresses() -> None:
    job = JobSpec.model_validate(
        spec(model={"kind": "torchscript", "blob": DIGEST}, samples=DIGEST)
    )
    assert job.blob_refs() == [DIGEST, DIGEST]
    [(where, _)] = errors(spec(model={"kind": "torchscript", "blob": "sha256:xyz"}))
    assert where == "model.torchscript.blob"


def test_pnnx_option_values_cannot_carry_spaces() -> None:
    [(where, _)] = errors(spec(convert={"moduleop": ["models.common Focus"]}))
    assert where == "convert.moduleop"
