from __future__ import annotations

import pytest

from exportq.settings import Settings, get_settings


def test_embedded_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPORTQ_ALLOWED_MODULES")
    settings = Settings()
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.allowed_modules == ("exportq.samples",)


def test_allowed_modules_are_comma_separated_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTQ_ALLOWED_MODULES", " team.models , vision ")
    settings = Settings()
    assert settings.allowed_modules == ("team.models", "vision")
    assert settings.module_allowed("team.models")
    assert settings.module_allowed("team.models.resnet")
    assert not settings.module_allowed("team.modelsX")
    assert not settings.module_allowed("os")


def test_settings_are_built_once() -> None:
    assert get_settings() is get_settings()


def test_a_bad_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTQ_MAX_INPUT_ELEMENTS", "-1")
    with pytest.raises(ValueError, match="max_input_elements"):
        Settings()
