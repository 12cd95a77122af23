"""The commands that talk to a running API (EXPORTQ_URL): submit, status, jobs, download,
cancel, fleet. They take the same spec options as `exportq export`, and need no torch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click

from exportq.api_models import JobView
from exportq.client import ExportqClient
from exportq.commands import remote_text
from exportq.commands.spec_options import spec_options
from exportq.errors import ExportqError, SpecInvalid
from exportq.spec import JobSpec
from exportq.specbuild import build_spec

# A digest that stands in for the files while the options are checked, before any upload.
_PLACEHOLDER = "sha256:" + "0" * 64
FAILED_EXIT = 1
# The server takes keys of up to 128 characters; a file's upload key adds "/torchscript".
MAX_KEY_CHARS = 100


def make_client() -> ExportqClient:
    """The client every command uses; tests replace it to talk to an in-process app."""
    return ExportqClient()


@contextmanager
def _client() -> Iterator[ExportqClient]:
    """A client whose errors end the command with their code and message, exit status 1."""
    client = make_client()
    try:
        yield client
    except ExportqError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()


class Progress:
    """The job's status on one line: rewritten in place on a terminal, one line per change
    otherwise (a log file or CI output stays readable)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, job: JobView) -> None:
        line = remote_text.status_line(job)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _show(job: JobView, as_json: bool) -> None:
    click.echo(job.model_dump_json(indent=2) if as_json else remote_text.render_job(job))


@click.command("submit")
@click.argument("target", required=False)
@spec_options
@click.option("--priority", type=click.IntRange(0, 9), help="9 runs first (default 5)")
@click.option(
    "--queue-anyway",
    is_flag=True,
    help="queue the job even when no live worker can serve it yet (it waits for one)",
)
@click.option(
    "--wait", is_flag=True, help="follow the job until it ends; exit 1 unless it succeeds"
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="retry-safe submit: the same KEY and spec give the same job (files: KEY/weights...)",
)
@click.option("--force", is_flag=True, help="export again even when an identical job exists")
@click.option("--json", "as_json", is_flag=True, help="print the job as JSON")
def submit(
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
    priority: int | None,
    queue_anyway: bool,
    wait: bool,
    idempotency_key: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Submit TARGET (pkg.module:factory), or --torchscript FILE, to the export service."""
    files = {"weights": weights, "torchscript": torchscript, "samples": samples}

    def spec_with(blobs: dict[str, str | None]) -> JobSpec:
        return build_spec(
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
            priority=priority,
            gpu_min_memory=gpu_min_memory,
            gpu_min_cc=gpu_min_cc,
        )

    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_CHARS:
        raise click.UsageError(f"--idempotency-key must be 1 to {MAX_KEY_CHARS} characters")
    try:  # check the options before uploading anything
        spec_with({k: _PLACEHOLDER if v else None for k, v in files.items()})
    except SpecInvalid as exc:
        raise click.UsageError(exc.message) from exc
    with _client() as client:
        blobs = {
            role: client.upload_blob(path, _file_key(idempotency_key, role)).digest
            if path
            else None
            for role, path in files.items()
        }
        job = client.submit(
            spec_with(blobs),
            idempotency_key=idempotency_key,
            queue_anyway=queue_anyway,
            force=force,
        )
        if not as_json:
            click.echo(f"submitted job {job.id} (queue {job.queue})")
            for notice in job.notices:
                click.echo(f"note: {notice}", err=True)
        if wait:
            progress = Progress(sys.stderr)
            job = client.wait(job.id, on_update=progress)
            progress.done()
            if not as_json:
                click.echo(remote_text.render_job(job))
    if as_json:
        click.echo(job.model_dump_json(indent=2))
    if wait and job.status != "succeeded":
        sys.exit(FAILED_EXIT)


def _file_key(key: str | None, role: str) -> str | None:
    """The upload key of one file of a keyed submit: a retry re-sends the same file under the
    same key, and a changed file under an old key is refused instead of silently used."""
    return None if key is None else f"{key}/{role}"


@click.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the job as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job: status, stage, error, and the report once it ended."""
    with _client() as client:
        _show(client.get_job(job_id), as_json)


@click.command("jobs")
@click.option(
    "--status",
    "status_",
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
    help="only jobs in this status",
)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--before", metavar="JOB", help="the page after this job (a previous next_cursor)")
@click.option("--json", "as_json", is_flag=True, help="print the page as JSON")
def jobs(status_: str | None, limit: int, before: str | None, as_json: bool) -> None:
    """List your jobs, newest first."""
    with _client() as client:
        page = client.list_jobs(status=status_, limit=limit, before=before)
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    click.echo(remote_text.render_jobs(page.jobs))
    if page.next_cursor:
        click.echo(f"(more: --before {page.next_cursor})")


@click.command("download")
@click.argument("job_id")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exported"),
    show_default=True,
)
def download(job_id: str, out: Path) -> None:
    """Download a job's artifacts into OUT, each checked against its sha256."""
    with _client() as client:
        paths = client.download(job_id, out)
    if not paths:
        raise click.ClickException(f"job {job_id} has no artifacts (yet)")
    for path in paths:
        click.echo(str(path))


@click.command("cancel")
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job: a queued one at once, a running one as soon as its worker stops it."""
    with _client() as client:
        job = client.cancel(job_id)
    if job.status == "running":
        click.echo(f"job {job.id}: cancel requested; its worker is stopping it")
    else:
        click.echo(f"job {job.id}: {job.status}")
    for notice in job.notices:
        click.echo(f"note: {notice}", err=True)


@click.command("fleet")
@click.option("--json", "as_json", is_flag=True, help="print the fleet as JSON")
def fleet(as_json: bool) -> None:
    """The live workers, their hardware and versions, and the queues."""
    with _client() as client:
        view = client.fleet()
    click.echo(view.model_dump_json(indent=2) if as_json else remote_text.render_fleet(view))


COMMANDS = [submit, status, jobs, download, cancel, fleet]
