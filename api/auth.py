"""Bearer API keys, roles and the per-key rate limit, as FastAPI dependencies.

Roles: submit (create; read and cancel its own jobs), ops (read everything), admin (everything).
`require(*roles)` admits those roles plus admin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import session_factory
from api.errors import ApiError
from api.ratelimit import RateLimiter
from models.keys import Role, find_key

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key (`gq_...`) from `genqueue keys create`.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role

    @property
    def sees_all(self) -> bool:
        """ops and admin keys see every job; submit keys only their own."""
        return self.role in (Role.OPS, Role.ADMIN)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def authenticate(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if creds is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    with session_factory(request)() as session:
        key = find_key(session, creds.credentials)
    if key is None:
        raise _unauthorized("invalid or revoked API key")
    try:
        role = Role(key.role)
    except ValueError:
        raise _unauthorized("invalid or revoked API key") from None
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.hit(key.id)
    if wait is not None:
        raise ApiError(429, "rate_limited", "too many requests for this API key",
                       headers={"Retry-After": str(wait)})
    return Principal(key_id=key.id, name=key.name, role=role)


def require(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = frozenset(roles) | {Role.ADMIN}
    needed = " or ".join(sorted(allowed))

    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "forbidden", f"this needs a {needed} key")
        return principal

    return dependency
