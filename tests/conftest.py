"""Shared fixtures: every test gets its own settings, built from a clean environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exportq.settings import Settings, get_settings

TEST_ALLOWED_MODULES = "exportq.samples,tests.models"


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's EXPORTQ_* variables or writes under ./var."""
    import os

    for key in list(os.environ):
        if key.startswith("EXPORTQ_") and not key.startswith("EXPORTQ_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EXPORTQ_ALLOWED_MODULES", TEST_ALLOWED_MODULES)
    monkeypatch.setenv("EXPORTQ_ARTIFACTS_URL", str(tmp_path / "artifacts"))
    monkeypatch.setenv("EXPORTQ_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("EXPORTQ_DATABASE_URL", f"sqlite:///{tmp_path / 'exportq.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    return get_settings()
