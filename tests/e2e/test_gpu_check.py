"""scripts/gpu-check on a machine without a GPU: it says so and exits 2 at once, before it
installs or starts anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/bin:/bin"


def gpu_check(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "gpu-check")],
        env={"PATH": path, "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_no_nvidia_smi_means_no_cuda_device() -> None:
    if shutil.which("nvidia-smi", path=SYSTEM_PATH):
        pytest.skip("this machine has nvidia-smi")
    proc = gpu_check(SYSTEM_PATH)
    assert proc.returncode == 2
    assert "gpu-check: no CUDA device" in proc.stderr
    assert proc.stdout == ""  # nothing installed, nothing started


def test_nvidia_smi_without_a_gpu_means_no_cuda_device(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed: no NVIDIA driver' >&2\nexit 9\n")
    fake.chmod(0o755)
    proc = gpu_check(f"{tmp_path}:{SYSTEM_PATH}")
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert proc.stdout == ""  # nothing installed, nothing started
