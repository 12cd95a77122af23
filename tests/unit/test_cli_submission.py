"""`exportq submit --idempotency-key KEY --force` against the real app in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from exportq.cli import cli
from exportq.client import ExportqClient
from exportq.commands import remote
from exportq.settings import Settings
from tests.unit.api_harness import Harness, served

TARGET = "exportq.samples:tiny_cnn"


@pytest.fixture
def harness(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with served(settings) as h:
        monkeypatch.setattr(remote, "make_client", lambda: ExportqClient(http=h.http))
        yield h


def submit(*args: str) -> tuple[int, dict[str, object] | str]:
    result = CliRunner().invoke(cli, ["submit", TARGET, "--input", "1x3x8x8", "--json", *args])
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else result.stderr


def test_a_keyed_submit_is_retry_safe_and_keys_its_uploads(
    harness: Harness, tmp_path: Path
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x01" * 32)
    key = ("--idempotency-key", "nightly-7", "--weights", str(weights))
    code, first = submit(*key)
    code_again, again = submit(*key)
    assert (code, code_again) == (0, 0)
    assert isinstance(first, dict) and isinstance(again, dict)
    assert first["id"] == again["id"]
    weights.write_bytes(b"\x02" * 32)  # a changed file under the old key is refused
    code, err = submit(*key)
    assert code == 1 and "idempotency_conflict" in str(err)


def test_identical_submits_join_unless_forced(harness: Harness) -> None:
    _, first = submit()
    _, joined = submit()
    _, forced = submit("--force")
    assert isinstance(first, dict) and isinstance(joined, dict) and isinstance(forced, dict)
    assert joined["id"] == first["id"]
    assert forced["id"] != first["id"]
    assert [sent[0] for sent in harness.dispatcher.sent] == [first["id"], forced["id"]]


def test_an_overlong_key_is_a_usage_error(harness: Harness) -> None:
    code, err = submit("--idempotency-key", "k" * 101)
    assert code == 2 and "--idempotency-key" in str(err)
