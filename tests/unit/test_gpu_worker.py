"""The GPU worker without a GPU: CUDA is never initialised in a worker's parent process (every
torch.cuda entry point that could initialise it is made to fail), the supervisor imports no
torch, and the pipeline's cuda bookkeeping (peak memory, out of memory, a clean GPU after) with
torch.cuda faked."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import pytest
import torch
from click.testing import CliRunner

from exportq.api_models import WorkerView
from exportq.cli import cli
from exportq.spec import JobSpec
from workers import heartbeat
from workers.capabilities import capabilities
from workers.export import gpu as gpu_module
from workers.export import pipeline
from workers.export.versions import tool_versions

ROOT = Path(__file__).resolve().parents[2]
H200 = {"name": "H200", "memory_gb": 141, "compute_capability": 9.0}
# Everything in torch.cuda that initialises CUDA, or asks the driver (cudaGetDeviceCount, which
# is enough to break CUDA in forked children).
CUDA_ENTRY_POINTS = [
    "is_available",
    "device_count",
    "init",
    "_lazy_init",
    "current_device",
    "get_device_properties",
    "get_device_name",
    "mem_get_info",
    "set_device",
    "synchronize",
    "empty_cache",
    "reset_peak_memory_stats",
    "max_memory_allocated",
]


@pytest.fixture
def cuda_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(name: str) -> Callable[..., NoReturn]:
        def call(*_: Any, **__: Any) -> NoReturn:
            raise AssertionError(f"torch.cuda.{name} called in a worker's parent process")

        return call

    for name in CUDA_ENTRY_POINTS:
        monkeypatch.setattr(torch.cuda, name, forbidden(name))


def test_cuda_worker_startup_never_touches_cuda(
    cuda_forbidden: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTQ_WORKER_GPUS", json.dumps([H200]))
    started: dict[str, Any] = {}

    class App:
        def worker_main(self, argv: list[str]) -> None:
            started["argv"] = argv

    def install(settings: Any, device: str, queues: list[str], concurrency: Any, gpu: Any) -> None:
        # What the heartbeat announces when the worker is ready, built here in the parent.
        now = datetime.now(UTC)
        view = WorkerView(
            name="cuda0@test",
            device="cuda",
            queues=queues,
            capabilities=capabilities(device, concurrency, gpu),
            versions=tool_versions(),
            started_at=now,
            last_seen=now,
        )
        started["view"] = heartbeat.with_cuda_state(view)

    monkeypatch.setattr("exportq.commands.worker.require_schema", lambda url: None)
    monkeypatch.setattr("workers.celery_app.create_celery_app", lambda settings: App())
    monkeypatch.setattr(heartbeat, "install", install)
    result = CliRunner().invoke(cli, ["worker", "--device", "cuda"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    argv = started["argv"]
    assert argv[argv.index("--queues") + 1].split(",")[0] == "cuda.cc90.mem141"
    assert argv[argv.index("--max-tasks-per-child") + 1] == "1"
    caps = started["view"].capabilities
    assert caps["gpu"]["name"] == "H200"
    assert caps["cuda_initialized_in_parent"] is False
    assert not torch.cuda.is_initialized()


def test_several_gpus_start_one_worker_each(
    cuda_forbidden: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTQ_WORKER_GPUS", json.dumps([H200, {**H200, "name": "H200b"}]))
    calls: list[tuple[list[str], Any]] = []

    def run_group(gpus: Any, hostname: Any, loglevel: str) -> int:
        calls.append(([g.info.name for g in gpus], hostname))
        return 0

    monkeypatch.setattr("exportq.commands.worker_group.run_group", run_group)
    result = CliRunner().invoke(cli, ["worker", "--device", "cuda"])
    assert result.exit_code == 0, result.output
    assert calls == [(["H200", "H200b"], None)]


def test_a_cuda_worker_without_a_gpu_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.capabilities.query_gpus", lambda: [])
    result = CliRunner().invoke(cli, ["worker", "--device", "cuda"])
    assert result.exit_code == 1
    assert "no GPU found" in result.output and "EXPORTQ_WORKER_GPUS" in result.output


def test_the_supervisor_imports_no_torch() -> None:
    code = (
        "import sys, os\n"
        f"os.environ['EXPORTQ_WORKER_GPUS'] = {json.dumps(json.dumps([H200, H200]))}\n"
        "import exportq.cli\n"
        "from exportq.commands.worker import gpus_or_fail\n"
        "from exportq.commands.worker_group import child_commands\n"
        "from exportq.settings import get_settings\n"
        "gpus = gpus_or_fail(get_settings())\n"
        "assert len(child_commands(gpus, None, 'info', os.environ)) == 2\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


# -- the pipeline's cuda bookkeeping, torch.cuda faked ------------------------------------------

GIB = 2**30


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"reset": 0, "empty_cache": 0}
    props = SimpleNamespace(name="Fake T4", total_memory=15 * GIB, major=7, minor=5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: int(14.5 * GIB))

    def count(name: str) -> Callable[..., None]:
        def call(*_: Any) -> None:
            calls[name] += 1

        return call

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", count("reset"))
    monkeypatch.setattr(torch.cuda, "empty_cache", count("empty_cache"))
    return calls


def cuda_spec() -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
            "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
            "device": "cuda",
        }
    )


def run_with_stages(
    monkeypatch: pytest.MonkeyPatch, stages: Callable[[Any], None], tmp_path: Path
) -> Any:
    monkeypatch.setattr(pipeline._Run, "_stages", stages)
    return pipeline.run_export(cuda_spec(), tmp_path)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        # TorchScript's interpreter re-raises it as a RuntimeError
        RuntimeError(
            "The following operation failed in the TorchScript interpreter.\n"
            "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
        ),
    ],
)
def test_out_of_memory_fails_the_job_with_the_peak(
    fake_cuda: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    error: Exception,
) -> None:
    def stages(run: Any) -> None:
        run.stage = "export"
        raise error

    report = run_with_stages(monkeypatch, stages, tmp_path)
    assert report.status == "failed"
    assert report.error.code == "out_of_memory"
    assert report.error.stage == "export"
    assert "peak 14.50 GiB allocated of 15 GiB on Fake T4" in report.error.message
    assert report.gpu.peak_memory_gb == 14.5 and report.gpu.compute_capability == 7.5
    assert fake_cuda == {"reset": 1, "empty_cache": 1}  # measured from the start, freed at the end


def test_a_cuda_run_computes_in_ieee_fp32_and_restores_the_setting(
    fake_cuda: dict[str, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conv = torch.backends.cudnn.conv.fp32_precision
    seen: list[str] = []

    def stages(run: Any) -> None:
        seen.append(torch.backends.cudnn.conv.fp32_precision)
        seen.append(torch.backends.cuda.matmul.fp32_precision)

    report = run_with_stages(monkeypatch, stages, tmp_path)
    assert report.status == "succeeded" and report.gpu is not None
    assert seen == ["ieee", "ieee"]  # TF32 would read as a conversion error
    assert torch.backends.cudnn.conv.fp32_precision == conv
    assert fake_cuda["empty_cache"] == 1


def test_a_cpu_run_never_touches_cuda(
    cuda_forbidden: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pipeline._Run, "_stages", lambda run: None)
    spec = cuda_spec().model_copy(update={"device": "cpu"})
    report = pipeline.run_export(spec, tmp_path)
    assert report.status == "succeeded" and report.gpu is None
    assert gpu_module.is_out_of_memory(RuntimeError("CUDA out of memory"))
