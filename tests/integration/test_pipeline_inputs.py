"""What the pipeline does with what users hand it: weights, TorchScript files, samples,
disallowed modules, tolerances, and PNNX misbehaving."""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from exportq.errors import PnnxCrashed
from exportq.settings import get_settings
from exportq.storage import LocalArtifactStore
from tests.integration.pipeline_helpers import assert_failed, assert_succeeded, zoo_spec
from tests.models import zoo
from tests.models.zoo import ZOO
from workers.export import run_export
from workers.export.pnnx_runner import run_pnnx

CNN = ZOO["cnn_bn"]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


def weights_spec(digest: str) -> object:
    return zoo_spec(CNN, model={"kind": "callable", "target": CNN.target, "weights": digest})


def trained_cnn() -> torch.nn.Module:
    model = zoo.cnn_bn(seed=123)
    for p in model.parameters():
        p.data.add_(0.25)
    return model


@pytest.mark.parametrize("fmt", ["safetensors", "torch_save"])
def test_weights_are_loaded_into_the_model(
    fmt: str, tmp_path: Path, store: LocalArtifactStore
) -> None:
    model = trained_cnn()
    path = tmp_path / "w.bin"
    if fmt == "safetensors":
        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)
    report = run_export(weights_spec(store.put_file(path).digest), tmp_path / "work", store=store)
    assert_succeeded(report, tmp_path / "work")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exported = torch.jit.load(str(tmp_path / "work" / "model.pt"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model.eval()(x))


def test_weights_with_wrong_keys_name_them(tmp_path: Path, store: LocalArtifactStore) -> None:
    state = trained_cnn().state_dict()
    first = sorted(state)[0]
    del state[first]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "w.safetensors"))
    digest = store.put_file(tmp_path / "w.safetensors").digest
    message = assert_failed(
        run_export(weights_spec(digest), tmp_path / "w", store=store), "weights_invalid"
    )
    assert f"missing keys: {first}" in message and "unexpected keys: extra.weight" in message


def test_a_pickle_that_weights_only_refuses(tmp_path: Path, store: LocalArtifactStore) -> None:
    # A torch.save of an arbitrary object: loading it would run code, so weights_only refuses.
    path = tmp_path / "evil.pt"
    torch.save({"payload": os.getcwd, "w": torch.zeros(1)}, path)
    report = run_export(weights_spec(store.put_file(path).digest), tmp_path / "w", store=store)
    assert "weights_only" in assert_failed(report, "weights_invalid")


def test_a_raw_pickle_is_refused(tmp_path: Path, store: LocalArtifactStore) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    report = run_export(weights_spec(store.put_file(path).digest), tmp_path / "w", store=store)
    assert_failed(report, "weights_invalid")


def test_garbage_weights(tmp_path: Path, store: LocalArtifactStore) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(b"not weights at all" * 10)
    report = run_export(weights_spec(store.put_file(path).digest), tmp_path / "w", store=store)
    assert "neither safetensors nor" in assert_failed(report, "weights_invalid")


def test_disallowed_module_is_refused_before_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXPORTQ_TEST_CANARY_IMPORTED", raising=False)
    sys.modules.pop("tests.models.import_canary", None)
    monkeypatch.setenv("EXPORTQ_ALLOWED_MODULES", "exportq.samples")
    get_settings.cache_clear()
    spec = zoo_spec(CNN, model={"kind": "callable", "target": "tests.models.import_canary:factory"})
    message = assert_failed(run_export(spec, tmp_path), "module_not_allowed")
    assert "tests.models.import_canary" in message and "EXPORTQ_ALLOWED_MODULES" in message
    assert "tests.models.import_canary" not in sys.modules
    assert "EXPORTQ_TEST_CANARY_IMPORTED" not in os.environ


def test_missing_module_is_an_import_failure(tmp_path: Path) -> None:
    spec = zoo_spec(CNN, model={"kind": "callable", "target": "tests.models.nope:factory"})
    assert "tests.models.nope" in assert_failed(run_export(spec, tmp_path), "model_import_failed")


def save_traced_cnn(path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.trace(zoo.cnn_bn(), torch.rand(1, 3, 32, 32)).save(str(path))


def test_torchscript_input_is_the_reference(tmp_path: Path, store: LocalArtifactStore) -> None:
    save_traced_cnn(tmp_path / "user.pt")
    digest = store.put_file(tmp_path / "user.pt").digest
    spec = zoo_spec(CNN, model={"kind": "torchscript", "blob": digest})
    report = run_export(spec, tmp_path / "work", store=store)
    assert report.status == "succeeded", report.error
    assert [s.step for s in report.steps] == ["pnnx", "ncnn"]
    assert all(s.status == "passed" for s in report.steps)


def test_corrupt_torchscript(tmp_path: Path, store: LocalArtifactStore) -> None:
    save_traced_cnn(tmp_path / "user.pt")
    data = (tmp_path / "user.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    spec = zoo_spec(
        CNN, model={"kind": "torchscript", "blob": store.put_file(tmp_path / "cut.pt").digest}
    )
    report = run_export(spec, tmp_path / "work", store=store)
    assert_failed(report, "torchscript_invalid")
    assert report.error is not None and report.error.stage == "load"


def test_user_samples_join_the_validation(tmp_path: Path, store: LocalArtifactStore) -> None:
    np.savez(
        tmp_path / "s.npz",
        in0=np.random.default_rng(1).normal(size=(3, 1, 3, 32, 32)).astype(np.float32),
    )
    spec = zoo_spec(CNN, samples=store.put_file(tmp_path / "s.npz").digest)
    report = run_export(spec, tmp_path / "work", store=store)
    assert_succeeded(report, tmp_path / "work")
    sets = {row.input_set for row in report.steps[-1].comparisons}
    assert {"sample0", "sample1", "sample2"} <= sets


def test_samples_that_do_not_fit(tmp_path: Path, store: LocalArtifactStore) -> None:
    np.savez(tmp_path / "s.npz", other=np.zeros((1, 3, 32, 32), np.float32))
    spec = zoo_spec(CNN, samples=store.put_file(tmp_path / "s.npz").digest)
    message = assert_failed(run_export(spec, tmp_path / "work", store=store), "input_invalid")
    assert "'in0'" in message


def test_strict_breach_names_the_first_divergent_step(tmp_path: Path) -> None:
    tight = {"tolerances": {"ncnn": {"max_rel": 1e-12}}, "trials": 1}
    report = run_export(zoo_spec(CNN, validate=tight), tmp_path)
    message = assert_failed(report, "ncnn_mismatch")
    assert report.first_divergent_step == "ncnn"
    assert message.startswith("ncnn output 'out0' differs from")


def test_warn_mode_reports_the_breach_and_succeeds(tmp_path: Path) -> None:
    tight = {"tolerances": {"ncnn": {"max_rel": 1e-12}}, "trials": 1, "mode": "warn"}
    report = run_export(zoo_spec(CNN, validate=tight), tmp_path)
    assert report.status == "succeeded"
    assert report.first_divergent_step == "ncnn"
    assert any("tolerance breached" in w for w in report.warnings)


def test_onnx_target_adds_the_onnx_artifact(tmp_path: Path) -> None:
    report = run_export(zoo_spec(CNN, convert={"targets": ["ncnn", "onnx"]}), tmp_path)
    assert report.status == "succeeded", report.error
    assert {a.kind for a in report.artifacts} == {
        "torchscript",
        "ncnn_param",
        "ncnn_bin",
        "ncnn_py",
        "onnx",
    }
    assert [s.step for s in report.steps] == ["torchscript", "ncnn"]


def test_pnnx_timeout_kills_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTQ_PNNX_TIMEOUT_S", "0.01")
    get_settings.cache_clear()
    report = run_export(zoo_spec(CNN), tmp_path)
    assert_failed(report, "pnnx_timeout")


def test_pnnx_crash_is_reported_with_its_signal(tmp_path: Path) -> None:
    # PNNX segfaults on a plain (unfrozen) scripted module: the pipeline always freezes, so
    # the crash is provoked by handing the runner such a file directly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(zoo.cnn_bn()).save(str(tmp_path / "model.pt"))
    with pytest.raises(PnnxCrashed) as info:
        run_pnnx(zoo_spec(CNN), tmp_path / "model.pt", 60)
    assert "SIGSEGV" in info.value.message
    assert info.value.log_tail


def test_pnnx_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # A worker child killed mid-export (cancel, time limit, SIGKILL) must not leave PNNX running.
    import signal
    import subprocess
    import textwrap
    import time

    script = textwrap.dedent(
        f"""
        import subprocess, time
        from pathlib import Path
        from workers.export.children import child_options
        # a stand-in for PNNX, started the way the pipeline starts PNNX
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True, **child_options())
        Path({str(tmp_path / "pid")!r}).write_text(str(proc.pid))
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the helper process outlived its parent")
