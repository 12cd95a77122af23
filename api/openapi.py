"""The OpenAPI document. `POST /v1/jobs` validates its body by hand (the element cap comes from
this server's settings through the validation context, which FastAPI cannot pass), so its
request schema, JobSpec, is added here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from exportq.spec import JobSpec

SUBMIT_OPERATION = "submit_job"
UPLOAD_OPERATION = "upload_blob"
REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    spec_schema = JobSpec.model_json_schema(by_alias=True, ref_template=REF)
    for name, schema in spec_schema.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["JobSpec"] = spec_schema
    for operation in _operations(doc):
        if operation.get("operationId") == SUBMIT_OPERATION:
            operation["requestBody"] = _body(
                "application/json", {"$ref": REF.format(model="JobSpec")}
            )
        elif operation.get("operationId") == UPLOAD_OPERATION:
            operation["requestBody"] = _body(
                "application/octet-stream", {"type": "string", "format": "binary"}
            )
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in doc.get("paths", {}).values() for op in path.values()]


def _body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": schema}}}
