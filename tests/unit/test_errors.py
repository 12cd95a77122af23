from __future__ import annotations

import re
from pathlib import Path

from exportq.errors import ErrorCode, ExportqError, InternalError, ModuleNotAllowed, error_class

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ERRORS.md"


def test_every_code_has_exactly_one_exception_class() -> None:
    for code in ErrorCode:
        cls = error_class(code)
        assert cls.code == code, code


def test_unknown_code_maps_to_internal_error() -> None:
    assert error_class("no_such_code") is InternalError


def test_docstring_is_the_default_message_and_str_carries_the_code() -> None:
    exc = ModuleNotAllowed()
    assert exc.message.startswith("The model's module is not in the allow-list")
    assert str(exc).startswith("[module_not_allowed]")
    assert isinstance(exc, ExportqError)


def test_every_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOCS.read_text(), re.MULTILINE))
    assert documented == {c.value for c in ErrorCode}
