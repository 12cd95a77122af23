"""`POST /v1/blobs`: content-addressed uploads (TorchScript files, weights, samples)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.deps import OwnerDep, SessionsDep, SettingsDep, StoreDep
from api.errors import problem_responses
from api.openapi import UPLOAD_OPERATION
from api.streaming import store_body
from db import repository, submissions
from db.session import unit_of_work
from exportq.api_models import BlobView
from exportq.errors import IdempotencyConflict, PayloadTooLarge
from exportq.storage import StoredObject

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])


@router.post(
    "",
    operation_id=UPLOAD_OPERATION,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobView, "description": "these bytes were uploaded before"},
        **problem_responses(409, 413),
    },
)
async def upload_blob(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    sessions: SessionsDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> BlobView:
    """Upload a file as the raw request body; answers its digest `sha256:<hex>`, the name a
    job spec uses for it. The same bytes twice give the same digest (stored once). With an
    `Idempotency-Key`, the key is bound to the bytes first sent with it: other bytes are
    refused (409).

    Blobs are shared by content, not owned: uploading bytes someone else uploaded stores
    nothing new. A digest works as a capability (whoever knows it may name the blob in a
    spec); digests appear only in their owners' job specs, and 64 hex digits cannot be guessed."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refuse before reading a byte
        raise PayloadTooLarge(f"upload of {int(declared):,} bytes is over the limit of {limit:,}")
    stored = await store_body(request, store, limit)
    if not await run_in_threadpool(_record, sessions, stored, owner, idempotency_key):
        response.status_code = status.HTTP_200_OK
    return BlobView(digest=stored.digest, size=stored.size)


def _record(
    sessions: sessionmaker[Session], stored: StoredObject, owner: str, key: str | None
) -> bool:
    """Record the blob (and the key's digest); True when it is new."""
    with unit_of_work(sessions) as session:
        if key is not None:
            _bind_key(session, owner, key, stored.digest)
        known = repository.blob_exists(session, stored.digest)
        repository.add_blob(session, stored.digest, stored.size)
    return not known


def _bind_key(session: Session, owner: str, key: str, digest: str) -> None:
    """Bind `key` to `digest`, or check the binding it has; IdempotencyConflict (and the
    transaction rolled back: no row written) when the key was used for other bytes. The bytes
    are in the content store by now, unreferenced, like any upload never used in a spec."""
    bound = submissions.find_blob_key(session, owner, key)
    if bound is None:
        inserted = submissions.insert_once(
            session, lambda: submissions.add_blob_key(session, owner, key, digest)
        )
        # lost a race with the same key: compare with the winner's bytes
        bound = inserted or submissions.find_blob_key(session, owner, key)
    if bound is not None and bound.digest != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was used for other bytes ({bound.digest}); "
            "use a new key for a new upload",
            details={"idempotency_key": key, "digest": bound.digest},
        )
