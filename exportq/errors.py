"""The one exception tree of exportq.

Every failure a user can see has a stable `code` from a closed list (`ErrorCode`). A subclass's
docstring is its default message. `api/errors.py` is the single place that maps `http_status`
to responses; the pipeline records `stage` and `log_tail` so a failed job explains itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    # the job spec and its inputs
    SPEC_INVALID = "spec_invalid"
    MODULE_NOT_ALLOWED = "module_not_allowed"
    MODEL_IMPORT_FAILED = "model_import_failed"
    MODEL_FAILED = "model_failed"
    WEIGHTS_INVALID = "weights_invalid"
    TORCHSCRIPT_INVALID = "torchscript_invalid"
    INPUT_INVALID = "input_invalid"
    BLOB_MISSING = "blob_missing"
    # export
    TRACE_FAILED = "trace_failed"
    TRACE_DIVERGENT = "trace_divergent"
    SCRIPT_FAILED = "script_failed"
    TORCHSCRIPT_MISMATCH = "torchscript_mismatch"
    # conversion
    PNNX_FAILED = "pnnx_failed"
    PNNX_CRASHED = "pnnx_crashed"
    PNNX_TIMEOUT = "pnnx_timeout"
    PNNX_MISMATCH = "pnnx_mismatch"
    UNSUPPORTED_OPS = "unsupported_ops"
    NCNN_LOAD_FAILED = "ncnn_load_failed"
    NCNN_CRASHED = "ncnn_crashed"
    NCNN_MISMATCH = "ncnn_mismatch"
    # the run itself
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    # the service
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    SERVICE_UNAVAILABLE = "service_unavailable"
    NO_CAPABLE_WORKER = "no_capable_worker"
    INTERNAL_ERROR = "internal_error"
    # the client's side of the wire
    API_UNREACHABLE = "api_unreachable"
    CHECKSUM_MISMATCH = "checksum_mismatch"


class ExportqError(Exception):
    """Something went wrong inside exportq."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        stage: str | None = None,
        log_tail: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or _default_message(type(self))
        self.stage = stage
        self.log_tail = log_tail
        self.details = details or {}
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def _default_message(cls: type[ExportqError]) -> str:
    return " ".join((cls.__doc__ or cls.code).split())


class InternalError(ExportqError):
    """An unexpected internal error; the log tail has the traceback."""


class SpecInvalid(ExportqError):
    """The job spec is invalid."""

    code = ErrorCode.SPEC_INVALID
    http_status = 422


class ModuleNotAllowed(ExportqError):
    """The model's module is not in the allow-list (EXPORTQ_ALLOWED_MODULES)."""

    code = ErrorCode.MODULE_NOT_ALLOWED
    http_status = 422


class ModelImportFailed(ExportqError):
    """The model factory could not be imported."""

    code = ErrorCode.MODEL_IMPORT_FAILED


class ModelFailed(ExportqError):
    """The model's factory or forward raised an exception."""

    code = ErrorCode.MODEL_FAILED


class WeightsInvalid(ExportqError):
    """The weights could not be loaded into the model."""

    code = ErrorCode.WEIGHTS_INVALID


class TorchScriptInvalid(ExportqError):
    """The TorchScript file could not be loaded."""

    code = ErrorCode.TORCHSCRIPT_INVALID


class InputInvalid(ExportqError):
    """The declared inputs or the samples do not fit the model."""

    code = ErrorCode.INPUT_INVALID
    http_status = 422


class BlobMissing(ExportqError):
    """A blob the spec refers to is not in the store; upload it first."""

    code = ErrorCode.BLOB_MISSING
    http_status = 422


class TraceFailed(ExportqError):
    """torch.jit.trace failed."""

    code = ErrorCode.TRACE_FAILED


class TraceDivergent(ExportqError):
    """The traced model does not match eager on other inputs; use method 'script'."""

    code = ErrorCode.TRACE_DIVERGENT


class ScriptFailed(ExportqError):
    """torch.jit.script failed."""

    code = ErrorCode.SCRIPT_FAILED


class TorchScriptMismatch(ExportqError):
    """The TorchScript module's outputs differ from the eager model beyond tolerance."""

    code = ErrorCode.TORCHSCRIPT_MISMATCH


class PnnxFailed(ExportqError):
    """PNNX exited with an error."""

    code = ErrorCode.PNNX_FAILED


class PnnxCrashed(ExportqError):
    """PNNX was killed by a signal."""

    code = ErrorCode.PNNX_CRASHED


class PnnxTimeout(ExportqError):
    """PNNX did not finish within its time limit."""

    code = ErrorCode.PNNX_TIMEOUT


class PnnxMismatch(ExportqError):
    """The PNNX model's outputs differ from the reference beyond tolerance."""

    code = ErrorCode.PNNX_MISMATCH


class UnsupportedOps(ExportqError):
    """The ncnn model holds layers that ncnn cannot create."""

    code = ErrorCode.UNSUPPORTED_OPS


class NcnnLoadFailed(ExportqError):
    """ncnn could not load the converted model."""

    code = ErrorCode.NCNN_LOAD_FAILED


class NcnnCrashed(ExportqError):
    """The ncnn check process died."""

    code = ErrorCode.NCNN_CRASHED


class NcnnMismatch(ExportqError):
    """The ncnn model's outputs differ from the reference beyond tolerance."""

    code = ErrorCode.NCNN_MISMATCH


class OutOfMemory(ExportqError):
    """The export ran out of memory."""

    code = ErrorCode.OUT_OF_MEMORY


class Timeout(ExportqError):
    """The job ran past its time limit."""

    code = ErrorCode.TIMEOUT


class WorkerLost(ExportqError):
    """The worker running the job died."""

    code = ErrorCode.WORKER_LOST


class Cancelled(ExportqError):
    """The job was cancelled."""

    code = ErrorCode.CANCELLED


class NotFound(ExportqError):
    """No such object."""

    code = ErrorCode.NOT_FOUND
    http_status = 404


class Unauthorized(ExportqError):
    """No valid bearer token: send `Authorization: Bearer <token>` (EXPORTQ_TOKEN)."""

    code = ErrorCode.UNAUTHORIZED
    http_status = 401


class IdempotencyConflict(ExportqError):
    """This Idempotency-Key was used before with another request; use a new key."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT
    http_status = 409


class PayloadTooLarge(ExportqError):
    """The upload is larger than the server accepts."""

    code = ErrorCode.PAYLOAD_TOO_LARGE
    http_status = 413


class ServiceUnavailable(ExportqError):
    """A service exportq depends on (the broker, the database) is unreachable; retry later."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    http_status = 503


class ApiUnreachable(ExportqError):
    """The exportq API could not be reached; check EXPORTQ_URL and that the API is running."""

    code = ErrorCode.API_UNREACHABLE
    http_status = 502


class ChecksumMismatch(ExportqError):
    """A downloaded file does not match its sha256; nothing was kept, download it again."""

    code = ErrorCode.CHECKSUM_MISMATCH
    http_status = 502


class NoCapableWorker(ExportqError):
    """No live worker could serve the job; submit it with queue_anyway to wait for one."""

    code = ErrorCode.NO_CAPABLE_WORKER
    http_status = 409


def error_class(code: str) -> type[ExportqError]:
    """The exception class for an error code (InternalError for an unknown one)."""
    return _BY_CODE.get(code, InternalError)


def _all_subclasses(cls: type[ExportqError]) -> list[type[ExportqError]]:
    out: list[type[ExportqError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[ExportqError]] = {c.code.value: c for c in _all_subclasses(ExportqError)}
