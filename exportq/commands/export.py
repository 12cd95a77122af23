"""`exportq export`: run the whole pipeline in this process, no server needed."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from exportq.errors import ExportqError, SpecInvalid
from exportq.report import ExportReport
from exportq.shapes import parse_shape
from exportq.spec import JobSpec
from exportq.storage import LocalArtifactStore


def parse_inputs(values: tuple[str, ...]) -> list[dict[str, Any]]:
    """`[NAME=]SHAPE[:DTYPE]` options -> InputSpec dicts (names default to in0, in1, ...)."""
    inputs = []
    for i, value in enumerate(values):
        name, sep, rest = value.partition("=")
        if not sep:
            name, rest = f"in{i}", value
        dims, dtype = parse_shape(rest)
        inputs.append({"name": name, "shape": dims, **({"dtype": dtype} if dtype else {})})
    return inputs


def parse_kwargs(values: tuple[str, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise SpecInvalid(f"--kwarg {value!r}: write KEY=VALUE (VALUE as JSON, or a string)")
        try:
            kwargs[key] = json.loads(raw)
        except ValueError:
            kwargs[key] = raw
    return kwargs


def build_spec(
    target: str | None,
    *,
    inputs: tuple[str, ...],
    inputs2: tuple[str, ...],
    kwargs: tuple[str, ...],
    method: str,
    device: str,
    fp16: bool,
    targets: tuple[str, ...],
    mode: str,
    trials: int,
    blobs: dict[str, str | None],
) -> JobSpec:
    """The JobSpec the CLI options describe; `blobs` holds already stored digests."""
    if bool(target) == bool(blobs.get("torchscript")):
        raise SpecInvalid("give either a TARGET (pkg.module:factory) or --torchscript FILE")
    if blobs.get("torchscript"):
        model: dict[str, Any] = {"kind": "torchscript", "blob": blobs["torchscript"]}
    else:
        model = {"kind": "callable", "target": target, "kwargs": parse_kwargs(kwargs)}
        if blobs.get("weights"):
            model["weights"] = blobs["weights"]
    declared = parse_inputs(inputs)
    raw: dict[str, Any] = {
        "model": model,
        "method": method,
        "inputs": declared,
        "device": device,
        "convert": {"fp16": fp16, **({"targets": list(targets)} if targets else {})},
        "validate": {"mode": mode, "trials": trials},
    }
    if inputs2:
        raw["dynamic"] = [d["shape"] for d in parse_inputs(inputs2)]
    if blobs.get("samples"):
        raw["samples"] = blobs["samples"]
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecInvalid(_validation_text(exc)) from exc


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def publish(report: ExportReport, out: Path) -> None:
    """Copy the artifacts into `out` and write report.json there, report.json last: a folder
    with a report.json holds a complete, successful export."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    for artifact in report.artifacts:
        assert artifact.path is not None
        dest = out / artifact.name
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(artifact.path, tmp)
        tmp.replace(dest)
        artifact.path = str(dest)
    (out / "report.json").write_text(report.model_dump_json(indent=2))


@click.command("export")
@click.argument("target", required=False)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    required=True,
    metavar="[NAME=]SHAPE[:DTYPE]",
    help="an input, e.g. 1x3x224x224 or ids=1x32:int64; repeat for several",
)
@click.option(
    "--input2",
    "inputs2",
    multiple=True,
    metavar="SHAPE",
    help="a second shape per input, for dynamic dimensions (PNNX inputshape2)",
)
@click.option(
    "--kwarg",
    "kwargs",
    multiple=True,
    metavar="KEY=VALUE",
    help="a keyword argument for the factory (VALUE read as JSON)",
)
@click.option(
    "--method", type=click.Choice(["trace", "script", "auto"]), default="trace", show_default=True
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="safetensors or a torch.save state_dict",
)
@click.option(
    "--torchscript",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="convert an existing TorchScript file instead of a TARGET",
)
@click.option(
    "--samples",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="an .npz of real inputs to validate on",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--no-fp16", is_flag=True, help="keep ncnn weights in fp32")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(["pnnx", "ncnn", "onnx"]),
    help="artifacts to produce (default: pnnx and ncnn)",
)
@click.option(
    "--mode",
    type=click.Choice(["strict", "warn"]),
    default="strict",
    show_default=True,
    help="strict: a tolerance breach fails the export",
)
@click.option("--trials", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exported"),
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON only")
def export(
    target: str | None,
    inputs: tuple[str, ...],
    inputs2: tuple[str, ...],
    kwargs: tuple[str, ...],
    method: str,
    weights: Path | None,
    torchscript: Path | None,
    samples: Path | None,
    device: str,
    no_fp16: bool,
    targets: tuple[str, ...],
    mode: str,
    trials: int,
    out: Path,
    as_json: bool,
) -> None:
    """Export TARGET (pkg.module:factory) to TorchScript, PNNX and ncnn, validating each step."""
    try:
        from workers.export import run_export
    except ImportError as exc:  # the bare client install has no torch
        raise click.ClickException(
            f"the export pipeline needs the worker extra: pip install 'exportq[worker]' ({exc})"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="exportq-") as tmp:
        store = LocalArtifactStore(Path(tmp) / "blobs")
        files = {"weights": weights, "torchscript": torchscript, "samples": samples}
        blobs = {k: store.put_file(v).digest if v else None for k, v in files.items()}
        try:
            spec = build_spec(
                target,
                inputs=inputs,
                inputs2=inputs2,
                kwargs=kwargs,
                method=method,
                device=device,
                fp16=not no_fp16,
                targets=targets,
                mode=mode,
                trials=trials,
                blobs=blobs,
            )
        except ExportqError as exc:
            raise click.UsageError(exc.message) from exc
        report = run_export(spec, Path(tmp) / "work", store=store)
        if report.succeeded:
            publish(report, out)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        from exportq.render import render_report

        click.echo(render_report(report))
        if report.succeeded:
            click.echo(f"\nwritten to {out}/")
    sys.exit(0 if report.succeeded else 1)
