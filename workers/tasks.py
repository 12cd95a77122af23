"""The export task: a thin shell around `run_export`.

A message carries only the job id (it is also the task id). Delivery is at least once, so the
task first claims the job: a job that is not queued (running elsewhere under a live lease,
finished, cancelled) is left alone and nothing is written; every later write is fenced by the
claim token. The claim is a lease, renewed while the job runs (`workers.lease`); a job whose
lease ran out (its worker died) is recovered by the next delivery or the reconciler
(`db.leases`, docs/RELIABILITY.md). Then it
runs the pipeline in a fresh work folder, stores the artifacts and records the outcome.

While it runs, each stage is written to the job and published as a Celery custom state: the
result backend holds `state=<STAGE>` with meta `{"job_id", "stage"}`, and a `task-<stage>`
event makes Flower show the same state (Flower names a task's state after its latest event).

Stopping: a cancel (the API flags the job and revokes the task with SIGUSR1) or the job's own
time limit interrupts the run (`workers.interrupts`); the stage boundaries check both too. The
job then ends `cancelled` (code `cancelled`) or `failed` (code `timeout`).
"""

from __future__ import annotations

import shutil
import socket
import traceback
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from db import leases
from db import repository as repo
from db.session import make_engine, make_session_factory, unit_of_work
from exportq.errors import Cancelled, ErrorCode, ExportqError, Timeout
from exportq.report import ArtifactInfo, ErrorInfo, ExportReport
from exportq.routing import EXPORT_TASK
from exportq.settings import Settings
from exportq.spec import JobSpec
from exportq.storage import ArtifactStore, open_store
from workers.celery_app import settings_of
from workers.interrupts import StopSignal
from workers.lease import LeaseKeeper

log = get_task_logger(__name__)

REPORT_FILE = "report.json"
STORE_STAGE = "store"


def stage_state(stage: str) -> str:
    """The Celery state of a job in `stage` (`CONVERT`, `CHECK_PNNX`...): Flower derives a
    task's state from the type of its latest event, upper-cased, so the `task-<stage>` event
    and the result backend agree."""
    return stage.upper()


def register(app: Celery) -> Any:
    """Register the export task on `app` under EXPORT_TASK."""
    # The request class records a pool process that died under the job (workers.lost).
    return app.task(name=EXPORT_TASK, bind=True, Request="workers.lost:ExportRequest")(export_job)


def export_job(task: Any, job_id: str) -> dict[str, Any]:
    """The task body (`task` is the bound Celery task): run the job if this delivery claims it.
    Returns a small summary; the job row is the result."""
    settings = settings_of(task.app)
    worker = task.request.hostname or socket.gethostname()
    # An engine per job, made in the process that runs it (nothing shared across a fork) and
    # disposed after: its small pool serves the job's dozen transactions (stages, the lease
    # heartbeat, the outcome) without a new connection for each.
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=2)
    try:
        with StopSignal() as stop:
            run = _JobRun(task, settings, make_session_factory(engine), job_id, worker, stop)
            return run.run()
    except SoftTimeLimitExceeded:
        log.warning("job %s: a stop signal arrived after its outcome was written", job_id)
        return {"job_id": job_id, "status": "stopped"}
    finally:
        engine.dispose()


class _JobRun:
    def __init__(
        self,
        task: Any,
        settings: Settings,
        sessions: sessionmaker[Session],
        job_id: str,
        worker: str,
        stop: StopSignal,
    ) -> None:
        self.task = task
        self.settings = settings
        self.sessions = sessions
        self.job_id = job_id
        self.worker = worker
        self.stop = stop
        self.store: ArtifactStore = open_store(
            settings.artifacts_url, s3_endpoint_url=settings.s3_endpoint_url
        )
        self.token = 0
        self.stage: str | None = None

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        token, document, recovered = self._claim()
        if token is None or document is None:
            if recovered in (leases.Recovery.FAILED, leases.Recovery.CANCELLED):
                # Its worker died under it, and it may not run again (cap, or a cancel).
                code = ErrorCode.WORKER_LOST if recovered is leases.Recovery.FAILED else None
                log.warning("job %s ended %s: its worker was lost", self.job_id, recovered)
                return self._summary(str(recovered), True, code or ErrorCode.CANCELLED)
            log.info("job %s is not queued (running elsewhere, finished or cancelled)", self.job_id)
            return {"job_id": self.job_id, "status": "skipped"}
        self.token = token
        log.info("job %s claimed by %s (claim %d)", self.job_id, self.worker, token)
        with LeaseKeeper(self.sessions, self.job_id, token, self.settings.lease_s):
            return self._run_claimed(document)

    def _claim(self) -> tuple[int | None, dict[str, Any] | None, leases.Recovery]:
        """Claim the job with a lease. A job left running by a worker that died (its lease
        ran out) is recovered first: requeued and claimed here, or ended at the attempt cap.
        A job running under a live lease is not touched: this delivery is a duplicate."""
        with unit_of_work(self.sessions) as s:
            recovered = leases.recover(s, self.job_id, self.settings.max_attempts, dispatch=False)
            token = repo.claim_job(s, self.job_id, self.worker, lease_s=self.settings.lease_s)
            document = repo.get_job(s, self.job_id).spec if token is not None else None
        return token, document, recovered

    def _run_claimed(self, document: dict[str, Any]) -> dict[str, Any]:
        token = self.token
        try:
            spec = JobSpec.model_validate(document)
        except ValidationError as exc:
            return self._fail(ErrorCode.SPEC_INVALID, f"the stored job spec is invalid: {exc}")
        workdir = Path(self.settings.work_dir) / f"{self.job_id}-{token}"
        try:
            report, error = self._execute(spec, workdir)
            return self._record(report, error, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _execute(
        self, spec: JobSpec, workdir: Path
    ) -> tuple[ExportReport | None, BaseException | None]:
        """Run the pipeline and upload its artifacts, interruptible; never raises."""
        from workers.export import run_export  # torch: the worker imported it before forking

        self.stop.start_timer(min(spec.timeout_s, self.settings.max_job_timeout_s))
        try:
            self.stop.arm()
            report = run_export(
                spec,
                workdir,
                settings=self.settings,
                store=self.store,
                on_stage=self._on_stage,
            )
            if report.succeeded:
                self._on_stage(STORE_STAGE)
                report = self._upload(report)
            return report, None
        except Exception as exc:  # a stop signal, a cancel at "store", a storage failure
            return None, exc
        finally:
            self.stop.disarm()

    def _on_stage(self, stage: str) -> None:
        """Called at each stage's start: record it, publish it, stop if asked to."""
        self.stage = stage
        with unit_of_work(self.sessions) as s:
            ours = repo.set_stage(s, self.job_id, self.token, stage)
            cancel = repo.is_cancel_requested(s, self.job_id)
        self._publish(stage)
        if cancel:
            raise Cancelled(f"cancelled at stage {stage}", stage=stage)
        if not ours:
            raise Cancelled("the job is no longer running under this worker's claim", stage=stage)
        if self.stop.expired:
            raise Timeout(self._timeout_message(stage), stage=stage)

    def _publish(self, stage: str) -> None:
        request = self.task.request
        if request.id is None:  # called as a plain function
            return
        meta = {"job_id": self.job_id, "stage": stage}
        try:
            self.task.update_state(state=stage_state(stage), meta=meta)
            if not request.is_eager:
                self.task.send_event(f"task-{stage}", **meta)
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # monitoring must not fail the job
            log.warning("job %s: could not publish stage %s", self.job_id, stage, exc_info=True)

    def _upload(self, report: ExportReport) -> ExportReport:
        stored = []
        for artifact in report.artifacts:
            obj = self.store.put_file(Path(artifact.path or ""))
            if obj.digest != artifact.sha256:
                raise ExportqError(f"{artifact.name} changed while it was stored")
            stored.append(artifact.model_copy(update={"path": None, "key": obj.digest}))
        return report.model_copy(update={"artifacts": stored, "stage": STORE_STAGE})

    # -- the outcome ---------------------------------------------------------------------------

    def _record(
        self, report: ExportReport | None, error: BaseException | None, workdir: Path
    ) -> dict[str, Any]:
        stage = (report.error.stage if report and report.error else None) or self.stage
        code = _code_of(report, error)
        stopped = isinstance(error, SoftTimeLimitExceeded) or (
            self.stop.received and code is not None
        )
        with unit_of_work(self.sessions) as s:
            cancel_requested = repo.is_cancel_requested(s, self.job_id)
        if cancel_requested or code == ErrorCode.CANCELLED:
            return self._cancel(stage)
        if stopped or code == ErrorCode.TIMEOUT:
            message = self._timeout_message(stage)
            if report is None:
                return self._fail(ErrorCode.TIMEOUT, message, stage=stage)
            info = ErrorInfo(code=ErrorCode.TIMEOUT, message=message, stage=stage)
            report = report.model_copy(update={"status": "failed", "error": info})
        elif report is None:
            assert error is not None
            return self._fail(
                _code_of(None, error) or ErrorCode.INTERNAL_ERROR,
                f"{type(error).__name__}: {error}",
                stage=stage,
                log_tail="".join(traceback.format_exception(error)),
            )
        return self._finish(report, workdir)

    def _finish(self, report: ExportReport, workdir: Path) -> dict[str, Any]:
        report_file = workdir / REPORT_FILE
        workdir.mkdir(parents=True, exist_ok=True)
        report_file.write_text(report.model_dump_json(indent=2))
        obj = self.store.put_file(report_file)
        report_info = ArtifactInfo(
            kind="report", name=REPORT_FILE, size=obj.size, sha256=obj.digest, key=obj.digest
        )
        artifacts = [*report.artifacts, report_info]
        with unit_of_work(self.sessions) as s:
            for artifact in artifacts:
                repo.add_blob(s, artifact.sha256, artifact.size)
            written = repo.finish_job(s, self.job_id, self.token, report, artifacts)
        code = report.error.code if report.error else None
        return self._summary(report.status, written, code)

    def _cancel(self, stage: str | None) -> dict[str, Any]:
        message = f"cancelled while running (stage {stage})" if stage else "cancelled"
        with unit_of_work(self.sessions) as s:
            written = repo.cancel_job(s, self.job_id, self.token, message, stage=stage)
        return self._summary("cancelled", written, ErrorCode.CANCELLED)

    def _fail(
        self, code: str, message: str, stage: str | None = None, log_tail: str | None = None
    ) -> dict[str, Any]:
        with unit_of_work(self.sessions) as s:
            written = repo.fail_job(
                s, self.job_id, self.token, code, message, log_tail=log_tail, stage=stage
            )
        return self._summary("failed", written, code)

    def _summary(self, status: str, written: bool, code: str | None) -> dict[str, Any]:
        if not written:
            log.warning("job %s: claim %d superseded; outcome not written", self.job_id, self.token)
            status = "superseded"
        log.info("job %s %s%s", self.job_id, status, f" ({code})" if code else "")
        return {"job_id": self.job_id, "status": status, "error_code": code}

    def _timeout_message(self, stage: str | None) -> str:
        where = f" (stopped in stage {stage})" if stage else ""
        if self.stop.limit_s is None or not self.stop.expired:  # Celery's own soft limit
            return f"the job was stopped by a time limit{where}"
        return f"the job ran past its time limit of {self.stop.limit_s:g} s{where}"


def _code_of(report: ExportReport | None, error: BaseException | None) -> str | None:
    if report is not None and report.error is not None:
        return report.error.code
    if isinstance(error, ExportqError):
        return error.code.value
    if error is not None:
        return ErrorCode.INTERNAL_ERROR.value
    return None
