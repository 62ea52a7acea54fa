"""Bearer API keys, roles and the per-key rate limit, as FastAPI dependencies.

Roles: submit (create; read and cancel its own jobs), ops (read everything), admin (everything).
`require(*roles)` admits those roles plus admin.

The key is looked up in the request's own session (`get_session`), so the lookup and the route's work
share one pooled connection, and the lookup plus the rate-limit call are one trip through the
threadpool. A revoked key is refused from the next request on: nothing about keys is cached (an
in-process cache would save the lookup, but revocation would then lag by the cache's lifetime).

A request that can carry a body (POST/PUT/PATCH/DELETE under /v1/) is authenticated by the ASGI layer
`AuthBeforeBody` before any of its body is read: FastAPI parses a route's body before it solves the
route's dependencies, and `BodySizeLimit` buffers it, so an anonymous client could otherwise make the
API receive and hold up to GENQUEUE_MAX_BODY_BYTES per request. The layer leaves the session and the
principal in the request's scope, and `authenticate` then uses them: still one lookup, one connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from genqueue.api.deps import SCOPE_SESSION, close_session, get_session, session_factory, single_write
from genqueue.api.errors import ApiError, error_response
from genqueue.api.ratelimit import RateLimiter
from genqueue.api.webhook_auth import WebhookRejected, check_headers
from genqueue.intake.service import CallbackKey
from genqueue.models.keys import Role, find_active_key

bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key (`gq_...`) from `genqueue keys create`.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_MISSING = "missing API key: send Authorization: Bearer <key>"
SCOPE_PRINCIPAL = "genqueue.principal"  # set by AuthBeforeBody, read by `authenticate`
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WEBHOOK_PATH = "/v1/replicate/webhook"  # authenticated by its signature, not by an API key


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role
    # The key's default callback URL, and whether it can sign callbacks (has a secret).
    callbacks: CallbackKey = field(default_factory=CallbackKey)
    max_queued: int | None = None  # the key's limit on queued jobs (intake answers 429 beyond it)

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
    return Principal(key_id=key.id, name=key.name, role=role, max_queued=key.max_queued,
                     callbacks=CallbackKey(default_url=key.callback_url, can_sign=key.can_sign))


async def authenticate(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[Session, Depends(get_session)],
) -> Principal:
    known: Principal | None = request.scope.get(SCOPE_PRINCIPAL)
    if known is not None:  # AuthBeforeBody looked the key up (and counted the request) already
        return known
    if creds is None:
        raise _unauthorized(_MISSING)
    return await run_in_threadpool(_principal, request, session, creds.credentials)


def _bearer_token(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer <token>` (what HTTPBearer accepts), else None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class AuthBeforeBody:
    """ASGI layer (outside `BodySizeLimit`): authenticate a request that may carry a body before any
    of the body is received. API-key routes: the key lookup and rate limit, as `authenticate` does;
    the webhook: its signature headers (the signature itself needs the body, so the route checks it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # without `receive`: nothing here can read the body
        if path == WEBHOOK_PATH:
            try:
                check_headers(request.headers)
            except WebhookRejected as exc:
                await error_response(401, "unauthorized", f"webhook signature check failed: {exc}")(
                    scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            await error_response(401, "unauthorized", _MISSING, headers=_CHALLENGE)(scope, receive, send)
            return
        session = single_write(session_factory(request)())
        try:
            try:
                principal = await run_in_threadpool(_principal, request, session, token)
            except ApiError as exc:
                await error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)(
                    scope, receive, send)
                return
            scope[SCOPE_SESSION], scope[SCOPE_PRINCIPAL] = session, principal
            await self.app(scope, receive, send)
        finally:
            await close_session(session)


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = frozenset(roles) | {Role.ADMIN}
    needed = " or ".join(sorted(allowed))

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            raise ApiError(403, "forbidden", f"this needs a {needed} key")
        return principal

    return dependency
