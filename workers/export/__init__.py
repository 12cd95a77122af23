"""The export pipeline: `run_export(spec, workdir) -> ExportReport`. Imports torch; knows
nothing of Celery, HTTP or SQL."""

from workers.export.pipeline import run_export

__all__ = ["run_export"]
