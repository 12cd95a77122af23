"""Who is asking: the bearer token of a request, resolved to a `Caller`.

Every route but `/healthz` and `/readyz` depends on `current_caller` (mounted per router in
`api.app`), so no token means no access: 401 with a `WWW-Authenticate` challenge. A caller
sees their own jobs; an admin sees everyone's. Another owner's job answers 404, exactly like a
job that does not exist, so ids of other people's jobs cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError

from api.services import Services
from db import tokens
from db.session import unit_of_work
from exportq.errors import ServiceUnavailable, Unauthorized

# auto_error off: the 401 is ours (`Unauthorized`, the one error shape), not FastAPI's 403.
# The scheme is what puts `bearerAuth` into the OpenAPI document for every protected route.
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    description="a token from `exportq token create` (EXPORTQ_TOKEN)",
    auto_error=False,
)


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool = False
    token_id: str | None = None

    @property
    def scope(self) -> str | None:
        """Whose jobs this caller may see: their own, or everyone's (None) for an admin."""
        return None if self.admin else self.owner


def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    if credentials is None:
        raise Unauthorized(details={"reason": "missing"})
    services = cast(Services, request.app.state.services)
    try:
        with unit_of_work(services.sessions) as session:
            token = tokens.authenticate(session, credentials.credentials)
            if token is not None and tokens.needs_touch(token):
                tokens.touch(session, token.id)
    except OperationalError as exc:  # every route starts here: say what is down, not 500
        raise ServiceUnavailable(
            "the database is unreachable; cannot check the bearer token",
            details={"service": "database"},
        ) from exc
    if token is None:
        raise Unauthorized(
            "the bearer token is unknown or revoked; ask an admin for a new one "
            "(exportq token create)",
            details={"reason": "invalid_token"},
        )
    return Caller(owner=token.owner, admin=token.admin, token_id=token.id)


CallerDep = Annotated[Caller, Depends(current_caller)]
