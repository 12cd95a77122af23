"""`exportq export`: run the whole pipeline in this process, no server needed."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from exportq.commands.spec_options import spec_options
from exportq.errors import ExportqError
from exportq.report import ExportReport
from exportq.specbuild import build_spec
from exportq.storage import LocalArtifactStore


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
@spec_options
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
    gpu_min_memory: float | None,
    gpu_min_cc: float | None,
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
                gpu_min_memory=gpu_min_memory,
                gpu_min_cc=gpu_min_cc,
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
