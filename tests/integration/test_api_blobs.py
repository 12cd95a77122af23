"""`POST /v1/blobs`: streamed, content-addressed, bounded uploads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from db.models import Blob
from exportq.settings import Settings
from tests.integration.api_helpers import bearer, make_token, session_on

DATA = b"exportq blob \x00\x01" * 1000


def blob_rows(settings: Settings) -> list[tuple[str, int]]:
    with session_on(settings.database_url) as session:
        return [(r[0], r[1]) for r in session.execute(sa.select(Blob.sha256, Blob.size))]


def stored_files(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.artifacts_url).rglob("*") if p.is_file()]


def test_upload_answers_the_digest_and_the_same_bytes_are_stored_once(
    api: TestClient, api_settings: Settings
) -> None:
    digest = "sha256:" + hashlib.sha256(DATA).hexdigest()
    first = api.post("/v1/blobs", content=DATA)
    assert first.status_code == 201, first.text
    assert first.json() == {"digest": digest, "size": len(DATA)}
    again = api.post("/v1/blobs", content=DATA)
    assert (again.status_code, again.json()["digest"]) == (200, digest)
    assert blob_rows(api_settings) == [(digest, len(DATA))]
    assert len(stored_files(api_settings)) == 1


def test_a_streamed_upload_without_length_is_hashed_as_it_arrives(api: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(DATA), 4096):
            yield DATA[i : i + 4096]

    response = api.post("/v1/blobs", content=chunks())
    assert response.status_code == 201
    assert response.json()["digest"] == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_over_the_limit_is_413_and_stores_nothing(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(make_token(settings.database_url, "alice")))
        declared = client.post("/v1/blobs", content=DATA)  # refused on Content-Length
        streamed = client.post("/v1/blobs", content=iter([DATA[:800], DATA[800:1600]]))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert blob_rows(settings) == []
    assert stored_files(settings) == []
