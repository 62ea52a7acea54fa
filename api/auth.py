"""Bearer API keys, roles and the per-key rate limit, as FastAPI dependencies.

Roles: submit (create; read and cancel its own jobs), ops (read everything), admin (everything).
`require(*roles)` admits those roles plus admin.

The key is looked up in the request's own session (`get_session`), so the lookup and the route's work
share one pooled connection, and the lookup plus the rate-limit call are one trip through the
threadpool. A revoked key is refused from the next request on: nothing about keys is cached (an
in-process cache would save the lookup, but revocation would then lag by the cache's lifetime).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from genqueue.api.deps import get_session
from genqueue.api.errors import ApiError
from genqueue.api.ratelimit import RateLimiter
from genqueue.models.keys import Role, find_active_key

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


def _principal(request: Request, session: Session, token: str) -> Principal:
    """The blocking part: the key in SQL, then the per-key limit in Redis."""
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        # The request's session runs in autocommit (see `api.deps.get_session`): no BEGIN and no
        # COMMIT/ROLLBACK round trips around the lookup and the route's single-statement writes.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    key = find_active_key(session, token)
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


async def authenticate(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[Session, Depends(get_session)],
) -> Principal:
    if creds is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key>")
    return await run_in_threadpool(_principal, request, session, creds.credentials)


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = frozenset(roles) | {Role.ADMIN}
    needed = " or ".join(sorted(allowed))

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "forbidden", f"this needs a {needed} key")
        return principal

    return dependency
