"""What a submitted spec must pass before it becomes a job, and what the submitter should be
told. The checks are the workers' own (same element cap, same module allow-list), so a job the
API accepts is not refused later for a reason known now."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from db import repository
from exportq.api_models import WorkerView
from exportq.errors import BlobMissing, ModuleNotAllowed, ServiceUnavailable, SpecInvalid
from exportq.fleet import FleetRegistry
from exportq.settings import Settings
from exportq.spec import CallableModel, JobSpec
from exportq.specbuild import validation_errors, validation_text

log = logging.getLogger("exportq.api")


def parse_spec(raw: Any, settings: Settings) -> JobSpec:
    """Validate the request body as a JobSpec with this server's element cap."""
    try:
        return JobSpec.model_validate(raw, context={"max_elements": settings.max_input_elements})
    except ValidationError as exc:
        raise SpecInvalid(validation_text(exc), details={"errors": validation_errors(exc)}) from exc


def check_module_allowed(spec: JobSpec, settings: Settings) -> None:
    if isinstance(spec.model, CallableModel) and not settings.module_allowed(spec.model.module):
        module = spec.model.module
        raise ModuleNotAllowed(
            f"module {module!r} is not allowed here; allowed prefixes: "
            f"{', '.join(settings.allowed_modules) or '(none)'} (EXPORTQ_ALLOWED_MODULES)",
            details={"module": module, "allowed": list(settings.allowed_modules)},
        )


def check_blobs_present(session: Session, spec: JobSpec) -> None:
    missing = repository.missing_blobs(session, spec.blob_refs())
    if missing:
        raise BlobMissing(
            f"blob(s) not uploaded: {', '.join(missing)}; upload them (POST /v1/blobs) first",
            details={"missing": missing},
        )


def read_live_workers(fleet: FleetRegistry) -> list[WorkerView] | None:
    """The live fleet, read once per submit for admission, reuse and notices; None when the
    registry (in the broker's Redis) cannot be read: then nothing is refused, reused or
    noticed on a guess, and the send (or the outbox) decides."""
    try:
        return fleet.live_workers()
    except Exception as exc:
        log.warning("cannot read the fleet registry: %s", exc)
        return None


def fleet_notices(workers: list[WorkerView] | None, queue: str) -> list[str]:
    """A notice when no live worker consumes `queue`: the job is accepted but waits."""
    if workers is None or any(queue in w.queues for w in workers):
        return []
    return [f"no live worker consumes queue {queue!r}; the job waits until one joins"]


def revoke_failed_notice(exc: ServiceUnavailable) -> str:
    return (
        f"could not signal the worker ({exc.message}); it stops at its next check of the "
        "job's cancel flag"
    )
