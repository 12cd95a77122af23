"""The one place errors become HTTP responses: `{"error": {"code", "message", "details"}}`.

An `ExportqError` answers with its own `http_status`; FastAPI's request validation answers 422
`spec_invalid` listing each field path; anything unexpected answers 500 `internal_error` with no
traceback (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from exportq.api_models import ProblemView
from exportq.errors import ErrorCode, ExportqError, Unauthorized

log = logging.getLogger("exportq.api")

_DESCRIPTIONS = {
    401: "no bearer token, or an unknown or revoked one",
    404: "no such object (or not yours)",
    409: "the Idempotency-Key was used before with another request",
    413: "the upload is larger than EXPORTQ_MAX_UPLOAD_BYTES",
    422: "the request is invalid; `details.errors` names each field",
    503: "a service the API depends on is unreachable",
}


def problem(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = ProblemView(error=ProblemView.Problem(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    return {s: {"model": ProblemView, "description": _DESCRIPTIONS[s]} for s in statuses}


async def _exportq_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ExportqError)
    response = problem(exc.http_status, exc.code, exc.message, exc.details or None)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = _challenge(exc)
    return response


def _challenge(exc: Unauthorized) -> str:
    """RFC 6750: a request without a token gets the bare challenge; a bad token is named."""
    if exc.details.get("reason") == "invalid_token":
        return 'Bearer realm="exportq", error="invalid_token"'
    return 'Bearer realm="exportq"'


async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
    # A value valid JSON but not storable (PostgreSQL refuses NUL characters in text and
    # JSONB): the request's fault, and its transaction was rolled back, so nothing changed.
    log.info("refused a value the database cannot store: %s", exc)
    return problem(
        422,
        ErrorCode.SPEC_INVALID,
        "the request holds a value the database cannot store (e.g. a NUL character)",
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, ErrorCode.SPEC_INVALID, message, {"errors": errors})


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own answers (unknown path, wrong method) in the same shape as ours.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        code = ErrorCode.NOT_FOUND
    elif exc.status_code < 500:
        code = ErrorCode.SPEC_INVALID
    else:
        code = ErrorCode.INTERNAL_ERROR
    response = problem(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, ErrorCode.INTERNAL_ERROR, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ExportqError, _exportq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)
