"""The remote commands, parsed by click and run against the real app in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from db import repository as repo
from exportq.api_models import WorkerView
from exportq.cli import cli
from exportq.client import ExportqClient
from exportq.commands import remote
from exportq.report import ArtifactInfo, ErrorInfo, ExportReport
from exportq.settings import Settings
from exportq.storage import open_store
from tests.unit.api_harness import Harness, served

TARGET = "exportq.samples:tiny_cnn"
PARAM = b"7767517\n" * 100


@pytest.fixture
def harness(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with served(settings) as h:
        monkeypatch.setattr(remote, "make_client", lambda: ExportqClient(http=h.http))
        yield h


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def play_worker(harness: Harness, succeed: bool) -> None:
    """The next job sent ends at once, as a worker would end it."""

    def finish(job_id: str) -> None:
        stored = open_store(harness.settings.artifacts_url).put_stream(iter([PARAM]))
        artifact = ArtifactInfo(
            kind="ncnn_param", name="m.ncnn.param", size=stored.size, sha256=stored.digest
        )
        if succeed:
            report = ExportReport(
                status="succeeded", stage="store", method="trace", artifacts=[artifact]
            )
        else:
            error = ErrorInfo(code="unsupported_ops", message="prim::If", stage="check_ncnn")
            report = ExportReport(status="failed", stage="check_ncnn", error=error)
        with harness.session() as session:
            token = repo.claim_job(session, job_id, "w1")
            assert token is not None
            repo.finish_job(session, job_id, token, report, [artifact] if succeed else [])

    harness.dispatcher.on_send = finish


def test_submit_json_prints_the_job_and_uploads_files_first(
    harness: Harness, tmp_path: Path
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x00" * 64)
    code, out, _ = run("submit", TARGET, "--input", "1x3x8x8", "--weights", str(weights), "--json")
    assert code == 0, out
    job = json.loads(out)
    assert (job["status"], job["queue"]) == ("queued", "cpu")
    assert job["spec"]["model"]["weights"].startswith("sha256:")
    assert job["spec"]["inputs"] == [
        {"name": "in0", "shape": [1, 3, 8, 8], "dtype": "float32", "range": None}
    ]
    assert harness.dispatcher.sent[0][0] == job["id"]


def test_submit_readable_shows_the_notice(harness: Harness) -> None:
    code, out, err = run("submit", TARGET, "--input", "1x3x8x8", "--device", "cuda")
    assert code == 0
    assert out.startswith("submitted job ")
    assert "no live worker consumes queue 'cuda'" in err


def test_bad_options_are_a_usage_error_before_any_upload(harness: Harness) -> None:
    code, _, err = run("submit", TARGET, "--input", "1xbad")
    assert code == 2
    assert "cannot read shape" in err
    assert harness.dispatcher.sent == []


def test_wait_follows_the_job_and_shows_its_report(harness: Harness) -> None:
    play_worker(harness, succeed=True)
    code, out, err = run("submit", TARGET, "--input", "1x3x8x8", "--wait")
    assert code == 0, out + err
    assert ": succeeded" in err  # the progress line (not a TTY: one line per change)
    assert "export succeeded" in out  # render_report
    assert "m.ncnn.param" in out


def test_wait_exits_nonzero_when_the_job_fails(harness: Harness) -> None:
    play_worker(harness, succeed=False)
    code, out, _ = run("submit", TARGET, "--input", "1x3x8x8", "--wait", "--json")
    assert code == 1
    job = json.loads(out)
    assert (job["status"], job["error"]["code"]) == ("failed", "unsupported_ops")


def test_status_jobs_download_cancel(harness: Harness, tmp_path: Path) -> None:
    play_worker(harness, succeed=True)
    done = json.loads(run("submit", TARGET, "--input", "1x3x8x8", "--json")[1])
    harness.dispatcher.on_send = None
    queued = json.loads(run("submit", TARGET, "--input", "1x3x8x8", "--json")[1])

    code, out, _ = run("status", done["id"], "--json")
    assert (code, json.loads(out)["artifacts"][0]["name"]) == (0, "m.ncnn.param")
    code, out, _ = run("status", done["id"])
    assert f"job {done['id']}  succeeded" in out

    code, out, _ = run("jobs", "--limit", "1")
    assert queued["id"] in out and done["id"] not in out
    assert f"--before {queued['id']}" in out
    code, out, _ = run("jobs", "--status", "succeeded", "--json")
    assert [j["id"] for j in json.loads(out)["jobs"]] == [done["id"]]

    code, out, _ = run("download", done["id"], "--out", str(tmp_path / "out"))
    assert code == 0
    assert (tmp_path / "out" / "m.ncnn.param").read_bytes() == PARAM

    code, out, _ = run("cancel", queued["id"])
    assert (code, out.strip()) == (0, f"job {queued['id']}: cancelled")


def test_an_api_error_is_one_line_and_exit_1(harness: Harness) -> None:
    code, _, err = run("status", "nope")
    assert code == 1
    assert err.strip() == "Error: [not_found] no job 'nope'"


def test_fleet_readable_and_json(harness: Harness) -> None:
    now = datetime.now(UTC)
    harness.fleet.beat(
        WorkerView(
            name="gpu-0@box",
            device="cuda",
            queues=["cuda"],
            capabilities={"gpu": "H200"},
            versions={"torch": "2.13.0"},
            started_at=now,
            last_seen=now,
        )
    )
    code, out, _ = run("fleet")
    assert code == 0
    assert "gpu-0@box  cuda  queues cuda" in out
    assert "gpu H200" in out
    code, out, _ = run("fleet", "--json")
    queues = {q["name"]: q["workers"] for q in json.loads(out)["queues"]}
    assert queues == {"cpu": 0, "cuda": 1}
