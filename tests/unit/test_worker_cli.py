"""The worker and Flower commands' pure parts: Celery arguments, GPU facts, Flower's auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest

from exportq.commands.worker import parse_basic_auth, worker_argv
from exportq.commands.worker_group import child_commands, child_hostname, supervise
from exportq.settings import Settings
from exportq.tiers import GpuInfo
from workers.capabilities import (
    VisibleGpu,
    parse_gpu_lines,
    select_visible,
    visible_entries,
    visible_gpu,
    visible_gpus,
)


def test_cpu_worker_consumes_cpu_with_events_on_prefork() -> None:
    argv = worker_argv("cpu", 3, "w@host", "info")
    assert argv[0] == "worker"
    assert argv[argv.index("--queues") + 1] == "cpu"
    assert "--task-events" in argv
    assert argv[argv.index("--pool") + 1] == "prefork"
    assert argv[argv.index("--concurrency") + 1] == "3"
    assert "--max-tasks-per-child" not in argv


def test_cuda_worker_runs_one_job_per_fresh_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    argv = worker_argv("cuda", None, None, "info")
    assert argv[argv.index("--queues") + 1] == "cuda"
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--max-tasks-per-child") + 1] == "1"
    assert argv[argv.index("--hostname") + 1] == "cuda2@%h"
    with pytest.raises(click.UsageError):
        worker_argv("cuda", 2, None, "info")


def test_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpu() == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,1")
    assert visible_gpu() == "GPU-abc"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpu() is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,3")
    assert visible_entries() == ["2"]


SMI = """0, GPU-aaaa-1111, NVIDIA H200, 143771, 9.0
1, GPU-bbbb-2222, Tesla T4, 15360, 7.5
2, GPU-cccc-3333, Old GPU, 8192, [N/A]
"""


def test_parse_gpu_lines() -> None:
    gpus = parse_gpu_lines(SMI)
    assert [(g.index, g.uuid) for g in gpus] == [("0", "GPU-aaaa-1111"), ("1", "GPU-bbbb-2222")]
    assert gpus[0].info == GpuInfo(
        name="NVIDIA H200", memory_gb=140.4, compute_capability=9.0, source="nvidia-smi"
    )
    assert parse_gpu_lines("") == []


def test_select_visible_follows_cuda_visible_devices() -> None:
    gpus = parse_gpu_lines(SMI)
    assert [g.device for g in select_visible(gpus, None)] == ["GPU-aaaa-1111", "GPU-bbbb-2222"]
    assert [g.info.name for g in select_visible(gpus, ["1"])] == ["Tesla T4"]
    assert [g.device for g in select_visible(gpus, ["GPU-bbbb", "0"])] == [
        "GPU-bbbb-2222",
        "GPU-aaaa-1111",
    ]
    assert select_visible(gpus, ["7", "0"]) == []  # CUDA stops at what it cannot resolve


def test_declared_gpus_override_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    declared = [{"name": "H200", "memory_gb": 141, "compute_capability": 9.0}] * 2
    monkeypatch.setenv("EXPORTQ_WORKER_GPUS", json.dumps(declared))
    monkeypatch.setattr(
        "workers.capabilities.query_gpus", lambda: pytest.fail("detection despite a declaration")
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = visible_gpus(Settings())
    assert [(g.device, g.info.name, g.info.source) for g in gpus] == [
        ("0", "H200", "declared"),
        ("1", "H200", "declared"),
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [g.device for g in visible_gpus(Settings())] == ["3", "5"]


def test_a_gpu_worker_consumes_its_tiers_and_cuda() -> None:
    gpu = GpuInfo(name="A100", memory_gb=40, compute_capability=8.0)
    queues = worker_argv("cuda", None, "w@h", "info", gpu)[2].split(",")
    assert queues[0] == "cuda.cc80.mem40" and queues[-1] == "cuda"
    assert "cuda.cc86.mem8" not in queues and "cuda.cc80.mem48" not in queues


def test_one_worker_per_gpu_children() -> None:
    gpus = [
        VisibleGpu("GPU-a", GpuInfo(name="H200", memory_gb=141, compute_capability=9.0)),
        VisibleGpu("GPU-b", GpuInfo(name="T4", memory_gb=15, compute_capability=7.5)),
    ]
    [(args0, env0), (args1, env1)] = child_commands(gpus, None, "info", {"PATH": "/bin"})
    assert args0[args0.index("--hostname") + 1] == "cuda0@%h"
    assert args1[args1.index("--hostname") + 1] == "cuda1@%h"
    assert env1["CUDA_VISIBLE_DEVICES"] == "GPU-b" and env1["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert json.loads(env1["EXPORTQ_WORKER_GPUS"])[0]["name"] == "T4"
    assert env0["PATH"] == "/bin"
    assert child_hostname("big@node7", 3) == "big-3@node7"


def _sleepers(folder: Path, *runs: tuple[float, int]) -> list[subprocess.Popen[bytes]]:
    """Children that exit 0 on SIGTERM, else with `code` after `seconds`; returned once each
    one has its SIGTERM handler in place."""
    children = []
    for i, (seconds, code) in enumerate(runs):
        ready = folder / f"ready{i}"
        script = (
            "import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            f"pathlib.Path({str(ready)!r}).touch()\n"
            f"time.sleep({seconds}); sys.exit({code})\n"
        )
        children.append(subprocess.Popen([sys.executable, "-c", script]))
    deadline = time.monotonic() + 60
    while not all((folder / f"ready{i}").exists() for i in range(len(runs))):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.05)
    return children


def test_the_group_stops_when_a_child_exits(tmp_path: Path) -> None:
    survivor, failing = _sleepers(tmp_path, (60, 0), (0.5, 3))
    started = time.monotonic()
    assert supervise([survivor, failing], poll_s=0.05) == 3
    assert survivor.returncode == 0  # stopped with SIGTERM, a warm shutdown
    assert time.monotonic() - started < 30


def test_the_group_forwards_sigterm_once(tmp_path: Path) -> None:
    children = _sleepers(tmp_path, (60, 0), (60, 0))
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert supervise(children, poll_s=0.05) == 0
    assert [c.returncode for c in children] == [0, 0]


@pytest.mark.parametrize("value", [None, "", "user", "user:", ":pw", "a:b,c:d"])
def test_flower_auth_is_required_and_well_formed(value: str | None) -> None:
    with pytest.raises(click.ClickException, match="EXPORTQ_FLOWER_BASIC_AUTH"):
        parse_basic_auth(value)


def test_flower_auth_accepts_user_and_password() -> None:
    assert parse_basic_auth("team:pa:ss") == "team:pa:ss"
