"""The worker and Flower commands' pure parts: Celery arguments, GPU facts, Flower's auth."""

from __future__ import annotations

import click
import pytest

from exportq.commands.worker import parse_basic_auth, worker_argv
from workers.capabilities import parse_gpu_line, visible_gpu


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


def test_parse_gpu_line() -> None:
    assert parse_gpu_line("NVIDIA H200, 143771, 9.0\n") == {
        "name": "NVIDIA H200",
        "memory_gb": 140.4,
        "compute_capability": 9.0,
    }
    assert parse_gpu_line("") is None
    assert parse_gpu_line("Tesla T4, [N/A], 7.5") == {"name": "Tesla T4"}


@pytest.mark.parametrize("value", [None, "", "user", "user:", ":pw", "a:b,c:d"])
def test_flower_auth_is_required_and_well_formed(value: str | None) -> None:
    with pytest.raises(click.ClickException, match="EXPORTQ_FLOWER_BASIC_AUTH"):
        parse_basic_auth(value)


def test_flower_auth_accepts_user_and_password() -> None:
    assert parse_basic_auth("team:pa:ss") == "team:pa:ss"
