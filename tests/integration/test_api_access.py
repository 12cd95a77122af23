"""Bearer tokens and owners through the real app: no token no access, another user's job is
404, an admin sees and cancels everyone's, a revoked token stops working."""

from __future__ import annotations

from fastapi.testclient import TestClient

from db import tokens
from db.models import Token
from exportq.settings import Settings
from tests.integration.api_helpers import bearer, make_token, session_on, spec_doc

PROTECTED = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/abc"),
    ("POST", "/v1/jobs/abc/cancel"),
    ("GET", "/v1/jobs/abc/artifacts"),
    ("GET", "/v1/jobs/abc/artifacts/x"),
    ("POST", "/v1/blobs"),
    ("GET", "/v1/fleet"),
]


def test_no_token_is_401_with_a_challenge_everywhere_but_health(api: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for method, path in PROTECTED:
        response = api.request(method, path, headers=anonymous, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == 'Bearer realm="exportq"'
        assert response.json()["error"]["code"] == "unauthorized"
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert api.get(path, headers=anonymous).status_code == 200, path


def test_a_bad_or_malformed_token_is_401_invalid_token(api: TestClient) -> None:
    for header in ("Bearer eq_not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "eq_bare"):
        response = api.get("/v1/jobs", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"
    bad = api.get("/v1/jobs", headers=bearer("eq_not-a-token"))
    assert bad.headers["www-authenticate"] == 'Bearer realm="exportq", error="invalid_token"'


def test_tokens_are_stored_hashed_and_record_their_use(
    api: TestClient, api_settings: Settings
) -> None:
    secret = make_token(api_settings.database_url, "carol")
    assert api.get("/v1/jobs", headers=bearer(secret)).status_code == 200
    with session_on(api_settings.database_url) as session:
        row = session.query(Token).filter_by(owner="carol").one()
        assert row.token_hash == tokens.hash_token(secret) != secret
        assert row.last_used_at is not None


def test_a_revoked_token_stops_working(api: TestClient, api_settings: Settings) -> None:
    secret = make_token(api_settings.database_url, "dave")
    assert api.get("/v1/jobs", headers=bearer(secret)).status_code == 200
    with session_on(api_settings.database_url) as session:
        [revoked] = tokens.revoke(session, "dave-test")
    assert revoked.owner == "dave"
    assert api.get("/v1/jobs", headers=bearer(secret)).status_code == 401


def test_a_user_sees_and_cancels_only_their_own_jobs(
    api: TestClient, api_settings: Settings
) -> None:
    alices = api.post("/v1/jobs", json=spec_doc()).json()
    assert alices["owner"] == "alice"
    bob = bearer(make_token(api_settings.database_url, "bob"))
    # bob's identical submit is a job of his own: never joined to alice's
    bobs = api.post("/v1/jobs", json=spec_doc(), headers=bob).json()
    assert bobs["id"] != alices["id"] and bobs["owner"] == "bob"
    for method, path in [
        ("GET", f"/v1/jobs/{alices['id']}"),
        ("POST", f"/v1/jobs/{alices['id']}/cancel"),
        ("GET", f"/v1/jobs/{alices['id']}/artifacts"),
        ("GET", f"/v1/jobs?before={alices['id']}"),  # not even as a page cursor
    ]:
        response = api.request(method, path, headers=bob)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert [j["id"] for j in api.get("/v1/jobs", headers=bob).json()["jobs"]] == [bobs["id"]]
    assert api.get(f"/v1/jobs/{alices['id']}").json()["status"] == "queued"  # not cancelled


def test_an_admin_sees_and_cancels_every_job(api: TestClient, api_settings: Settings) -> None:
    alices = api.post("/v1/jobs", json=spec_doc()).json()
    admin = bearer(make_token(api_settings.database_url, "root", admin=True))
    listed = api.get("/v1/jobs", headers=admin).json()["jobs"]
    assert [j["id"] for j in listed] == [alices["id"]]
    assert api.get(f"/v1/jobs/{alices['id']}", headers=admin).json()["owner"] == "alice"
    cancelled = api.post(f"/v1/jobs/{alices['id']}/cancel", headers=admin).json()
    assert cancelled["status"] == "cancelled"
    # an admin's own submit is the admin's job
    assert api.post("/v1/jobs", json=spec_doc(), headers=admin).json()["owner"] == "root"


def test_the_openapi_document_declares_bearer_auth(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "a token from `exportq token create` (EXPORTQ_TOKEN)",
    }
    submit = doc["paths"]["/v1/jobs"]["post"]
    assert submit["security"] == [{"bearerAuth": []}]
    assert "401" in submit["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
