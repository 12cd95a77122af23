"""`POST /v1/blobs`: content-addressed uploads (TorchScript files, weights, samples)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SessionsDep, SettingsDep, StoreDep
from api.errors import problem_responses
from api.openapi import UPLOAD_OPERATION
from api.streaming import store_body
from db import repository
from db.session import unit_of_work
from exportq.api_models import BlobView
from exportq.errors import PayloadTooLarge
from exportq.storage import StoredObject

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])


@router.post(
    "",
    operation_id=UPLOAD_OPERATION,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobView, "description": "these bytes were uploaded before"},
        **problem_responses(413),
    },
)
async def upload_blob(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    sessions: SessionsDep,
) -> BlobView:
    """Upload a file as the raw request body; answers its digest `sha256:<hex>`, the name a
    job spec uses for it. The same bytes twice give the same digest (stored once)."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refuse before reading a byte
        raise PayloadTooLarge(f"upload of {int(declared):,} bytes is over the limit of {limit:,}")
    stored = await store_body(request, store, limit)
    if not await run_in_threadpool(_record, sessions, stored):
        response.status_code = status.HTTP_200_OK
    return BlobView(digest=stored.digest, size=stored.size)


def _record(sessions: sessionmaker[Session], stored: StoredObject) -> bool:
    """Record the blob; True when it is new."""
    with unit_of_work(sessions) as session:
        known = repository.blob_exists(session, stored.digest)
        repository.add_blob(session, stored.digest, stored.size)
    return not known
