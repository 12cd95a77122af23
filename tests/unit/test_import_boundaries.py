"""Who imports whom (DESIGN.md): the API and the client never import torch; the pipeline
knows nothing of Celery, HTTP or SQL; nothing imports the API. Checked in fresh interpreters,
since this process has imported everything already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


@pytest.mark.parametrize(
    "module", ["api.app", "exportq.client", "exportq.cli", "db.repository", "exportq.fleet"]
)
def test_no_torch(module: str) -> None:
    assert "torch" not in modules_after_import(module)


def test_the_pipeline_knows_no_celery_http_or_sql() -> None:
    loaded = modules_after_import("workers.export")
    assert not loaded & {
        "celery",
        "kombu",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "db",
        "api",
        "httpx",
    }


def test_nothing_imports_the_api() -> None:
    # (`exportq api` loads it inside the command, to serve it; no module depends on it.)
    offenders = [
        path.relative_to(ROOT)
        for folder in ("exportq", "db", "workers")
        for path in (ROOT / folder).rglob("*.py")
        if any(
            line.startswith(("import api", "from api")) for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
