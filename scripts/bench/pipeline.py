"""Benchmark: `run_export` with its whole validation chain against the bare export path.

The bare path is what a user without exportq does by hand: trace, save, run the pnnx binary,
load the ncnn model and run it once. Both run in this one process on the ResNet-18-sized
sample; each is repeated and the median is reported. Target: run_export <= 1.3x bare.

    .venv/bin/python scripts/bench/pipeline.py [--repeat 3] [--model resnet18]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import ncnn
import numpy as np
import torch

from exportq import samples
from exportq.spec import JobSpec
from workers.export import run_export
from workers.export.pnnx_runner import pnnx_executable

TARGET_RATIO = 1.3


def bare_export(name: str, workdir: Path) -> float:
    info = samples.SAMPLES[name]
    shape = info.inputs[0][0]
    start = time.perf_counter()
    model = getattr(samples, name)().eval()
    x = torch.rand(shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x)
    traced.save(str(workdir / "model.pt"))
    shape_arg = "[" + ",".join(map(str, shape)) + "]"
    subprocess.run(
        [pnnx_executable(), "model.pt", f"inputshape={shape_arg}"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    net = ncnn.Net()
    net.load_param(str(workdir / "model.ncnn.param"))
    net.load_model(str(workdir / "model.ncnn.bin"))
    with net.create_extractor() as ex:
        ex.input("in0", ncnn.Mat(x.numpy(), batch_index=0).clone())
        _, out = ex.extract("out0")
        np.array(out.numpy(batch_index=0))
    return time.perf_counter() - start


def full_export(name: str, workdir: Path, stages: list[dict[str, float]]) -> float:
    info = samples.SAMPLES[name]
    spec = JobSpec.model_validate(info.spec())
    start = time.perf_counter()
    report = run_export(spec, workdir)
    elapsed = time.perf_counter() - start
    if not report.succeeded:
        raise SystemExit(f"run_export failed: {report.error}")
    stages.append(report.timings)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", choices=sorted(samples.SAMPLES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    bare: list[float] = []
    full: list[float] = []
    stages: list[dict[str, float]] = []
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits both alike
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            bare.append(bare_export(args.model, Path(a)))
            full.append(full_export(args.model, Path(b), stages))
    result = {
        "model": args.model,
        "repeat": args.repeat,
        "bare_s": round(statistics.median(bare), 3),
        "run_export_s": round(statistics.median(full), 3),
    }
    result["ratio"] = round(result["run_export_s"] / result["bare_s"], 3)
    result["target_ratio"] = TARGET_RATIO
    result["met"] = result["ratio"] <= TARGET_RATIO
    result["run_export_stages_s"] = {
        k: round(statistics.median(t[k] for t in stages), 3) for k in stages[0]
    }
    print(f"bare path   {result['bare_s']:.2f} s   (trace + save + pnnx + one ncnn run)")
    print(f"run_export  {result['run_export_s']:.2f} s   (with the whole validation chain)")
    print(f"ratio       {result['ratio']:.2f}x   (target <= {TARGET_RATIO}x)")
    print(
        "run_export stages (median s): "
        + ", ".join(f"{k} {v}" for k, v in result["run_export_stages_s"].items())
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
