"""The pipeline's pure parts: comparison, PNNX arguments and output, the generated-code
repair, the ncnn layer scan. No PNNX or ncnn process runs here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exportq.errors import UnsupportedOps
from exportq.spec import JobSpec, Tolerance
from workers.export.compare import compare_outputs
from workers.export.ncnn_check import Blob, blob_layout, check_layers, unsupported_layers
from workers.export.pnnx_model import repaired_source
from workers.export.pnnx_runner import pnnx_arguments, pnnx_warnings

TOL = Tolerance(max_rel=1e-3, min_cosine=0.999)


def compare(ref: np.ndarray, got: np.ndarray) -> tuple[bool, float, float]:
    [row] = compare_outputs({"y": ref}, {"y": got}, TOL, input_set="t", against="eager")
    return row.passed, row.max_rel, row.cosine


def test_identical_outputs_pass() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert compare(x, x.copy()) == (True, 0.0, pytest.approx(1.0))


def test_relative_error_is_against_the_reference_scale() -> None:
    ref = np.array([100.0, -50.0, 0.0])
    passed, rel, _ = compare(ref, ref + np.array([0.5, 0.0, 0.0]))
    assert rel == pytest.approx(0.005) and not passed


def test_a_missing_batch_axis_is_not_a_shape_error() -> None:
    ref = np.ones((1, 4, 2, 2), np.float32)
    assert compare(ref, ref[0])[0]


def test_wrong_shape_fails_even_with_the_same_size() -> None:
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    passed, rel, _ = compare(ref, ref.reshape(3, 2))
    assert not passed and rel == float("inf")


def test_nan_where_the_reference_is_finite_fails() -> None:
    ref = np.ones(4, np.float32)
    got = ref.copy()
    got[2] = np.nan
    assert not compare(ref, got)[0]


def test_missing_output_fails() -> None:
    [row] = compare_outputs({"y": np.ones(2)}, {}, TOL, input_set="t", against="eager")
    assert not row.passed and row.shape == []


def test_all_zero_reference_and_output_pass() -> None:
    assert compare(np.zeros(3), np.zeros(3)) == (True, 0.0, 1.0)


def test_pnnx_arguments_have_no_spaces() -> None:
    spec = JobSpec.model_validate(
        {
            "model": {"kind": "callable", "target": "m:f"},
            "inputs": [
                {"name": "a", "shape": [1, 3, 32, 32]},
                {"name": "b", "shape": [1, 16], "dtype": "int64"},
            ],
            "dynamic": [[1, 3, 64, 48], [1, 8]],
            "convert": {"fp16": False, "optlevel": 1, "moduleop": ["pkg.mod.Focus"]},
        }
    )
    args = pnnx_arguments(spec, Path("/w/model.pt"))
    assert args == [
        "model.pt",
        "inputshape=[1,3,32,32]f32,[1,16]i64",
        "fp16=0",
        "optlevel=1",
        "device=cpu",
        "inputshape2=[1,3,64,48]f32,[1,8]i64",
        "moduleop=pkg.mod.Focus",
    ]
    assert not any(" " in a for a in args)


def test_pnnx_warnings_keep_ignored_ops_and_batch_guesses() -> None:
    log = "pass_level2\nignore aten::foo\nfallback batch axis 233 for operand 0\nignore aten::foo\n"
    assert pnnx_warnings(log) == [
        "pnnx: ignore aten::foo",
        "pnnx: fallback batch axis 233 for operand 0",
    ]


GENERATED = """
import zipfile
class Model(nn.Module):
    def __init__(self):
        self.2 = nn.ReLU()
        self.conv_0 = nn.Conv2d(1, 1, 1)
        archive = zipfile.ZipFile('model.pnnx.bin', 'r')
        self.conv_0.weight = self.load(archive, 'seq.2.weight', (1), 'float32')
        self.x = 1.5
    def forward(self, v_0):
        return self.2(self.conv_0(v_0))
"""


def test_repair_renames_numeric_attributes_and_pins_the_archive() -> None:
    fixed = repaired_source(GENERATED, Path("/work/job"))
    assert "self.m_2 = nn.ReLU()" in fixed
    assert "return self.m_2(self.conv_0(v_0))" in fixed
    assert "'seq.2.weight'" in fixed  # archive keys stay as PNNX wrote them
    assert "self.x = 1.5" in fixed
    assert "zipfile.ZipFile('/work/job/model.pnnx.bin', 'r')" in fixed
    compile(fixed, "generated", "exec")


PARAM = """7767517
4 4
Input                    in0                      0 1 in0
Convolution              conv_0                   1 1 in0 1 0=8
torch.gt                 gt_0                     1 1 1 2
prim::If                 if_0                     1 1 2 out0
"""


def test_layer_scan_names_what_ncnn_cannot_create(tmp_path: Path) -> None:
    param = tmp_path / "model.ncnn.param"
    param.write_text(PARAM)
    assert unsupported_layers(param) == ["torch.gt", "prim::If"]
    with pytest.raises(UnsupportedOps, match=r"torch\.gt, prim::If") as info:
        check_layers(param)
    assert info.value.stage == "check_ncnn"


def test_blob_layout_reads_batch_axes_from_the_generated_script(tmp_path: Path) -> None:
    script = tmp_path / "model_ncnn.py"
    script.write_text(
        'ex.input("in0", ncnn.Mat(in0.numpy(), batch_index=0).clone())\n'
        'ex.input("in1", ncnn.Mat(in1.numpy()).clone())\n'
        "out.append(torch.from_numpy(out0.numpy(batch_index=0)))\n"
        "out.append(torch.from_numpy(out1.numpy()))\n"
    )
    assert blob_layout(script) == (
        [Blob("in0", 0), Blob("in1", None)],
        [Blob("out0", 0), Blob("out1", None)],
    )
