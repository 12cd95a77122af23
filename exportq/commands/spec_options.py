"""The options that describe a job spec, shared by `exportq export` and `exportq submit` so the
two commands take exactly the same arguments (read by `exportq.specbuild.build_spec`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def spec_options(f: F) -> F:
    """Add the spec options to a command, in the order `--help` lists them."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


_OPTIONS = [
    click.option(
        "--input",
        "inputs",
        multiple=True,
        required=True,
        metavar="[NAME=]SHAPE[:DTYPE]",
        help="an input, e.g. 1x3x224x224 or ids=1x32:int64; repeat for several",
    ),
    click.option(
        "--input2",
        "inputs2",
        multiple=True,
        metavar="SHAPE",
        help="a second shape per input, for dynamic dimensions (PNNX inputshape2)",
    ),
    click.option(
        "--kwarg",
        "kwargs",
        multiple=True,
        metavar="KEY=VALUE",
        help="a keyword argument for the factory (VALUE read as JSON)",
    ),
    click.option(
        "--method",
        type=click.Choice(["trace", "script", "auto"]),
        default="trace",
        show_default=True,
    ),
    click.option(
        "--weights",
        type=_FILE,
        help="safetensors or a torch.save state_dict",
    ),
    click.option(
        "--torchscript",
        type=_FILE,
        help="convert an existing TorchScript file instead of a TARGET",
    ),
    click.option(
        "--samples",
        type=_FILE,
        help="an .npz of real inputs to validate on",
    ),
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
    click.option(
        "--gpu-min-memory",
        type=click.FloatRange(min=0, min_open=True),
        metavar="GB",
        help="with --device cuda: a GPU with at least this much memory (rounded up to a tier)",
    ),
    click.option(
        "--gpu-min-cc",
        type=click.FloatRange(min=0, min_open=True),
        metavar="X.Y",
        help="with --device cuda: a GPU of at least this compute capability (e.g. 8.0)",
    ),
    click.option("--no-fp16", is_flag=True, help="keep ncnn weights in fp32"),
    click.option(
        "--target",
        "targets",
        multiple=True,
        type=click.Choice(["pnnx", "ncnn", "onnx"]),
        help="artifacts to produce (default: pnnx and ncnn)",
    ),
    click.option(
        "--mode",
        type=click.Choice(["strict", "warn"]),
        default="strict",
        show_default=True,
        help="strict: a tolerance breach fails the export",
    ),
    click.option("--trials", type=click.IntRange(1, 20), default=3, show_default=True),
]
