"""Outermost ASGI layer: request statistics, injected faults, auth and rate limits.

It runs before Starlette so it holds uvicorn's own ``send`` (needed to drop connections). A
handler can ask for its answer to be dropped by setting ``scope["sim.drop"] = True``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genqueue.simulator.faults import drop_connection
from genqueue.simulator.ratelimit import Decision
from genqueue.simulator.responses import PROBLEM, UNAUTHENTICATED, dumps, throttled_body
from genqueue.simulator.state import CREATE_ENDPOINTS, SimState, endpoint_name


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _rate_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset).encode()),
    ]


async def _send_simple(
    send: Send, status: int, body: bytes, content_type: str, headers: list[tuple[bytes, bytes]]
) -> None:
    all_headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


class SimMiddleware:
    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.sim = state

    def token_of(self, scope: Scope) -> str | None:
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "token") or not token:
            return None
        tokens = self.sim.config.tokens
        return token if not tokens or token in tokens else None

    def admin_refusal(self, scope: Scope) -> str | None:
        """Why a `/_sim/` request is refused (None: allowed). The admin routes show every prediction
        and change faults and limits, so they are not open to the network: with `admin_token` set
        they need it, otherwise they answer loopback clients only."""
        expected = self.sim.config.admin_token
        if expected:
            auth = _header(scope, b"authorization") or ""
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
                return None
            return "the /_sim/ routes need Authorization: Bearer <admin_token>"
        client = scope.get("client")
        try:
            if client and ipaddress.ip_address(client[0]).is_loopback:
                return None
        except ValueError:
            pass
        return "the /_sim/ routes answer loopback clients only; set admin_token to reach them remotely"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        endpoint = endpoint_name(method, path)
        stats = self.sim.stats
        if path.startswith("/_sim/"):
            refusal = self.admin_refusal(scope)
            if refusal is not None:  # before any of the body is read
                body = dumps({"title": "Unauthenticated", "detail": refusal, "status": 401})
                await _send_simple(send, 401, body, PROBLEM, [(b"www-authenticate", b"Bearer")])
                return
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self._handle(scope, receive, send, counted, endpoint)
        finally:
            stats.count(endpoint, status.get("code", "dropped"))

    async def _handle(
        self, scope: Scope, receive: Receive, raw_send: Send, send: Send, endpoint: str
    ) -> None:
        sim, faults = self.sim, self.sim.faults
        if faults.roll("fault_slow"):
            await asyncio.sleep(sim.config.slow_seconds)
        if faults.roll("fault_drop"):
            await self._drop(raw_send)
            return
        key = "anonymous"
        kind = "create" if endpoint in CREATE_ENDPOINTS else "read"
        if scope["path"].startswith("/v1/"):
            token = self.token_of(scope)
            if token is None:
                headers = _rate_headers(sim.limiter.peek(key, kind))
                await _send_simple(send, 401, dumps(UNAUTHENTICATED), PROBLEM, headers)
                return
            key = token
            decision = sim.limiter.take(key, kind)
        else:
            decision = sim.limiter.peek(key, kind)
        if decision.allowed and faults.roll("fault_429"):
            sim.stats.throttled_faults += 1
            decision = Decision(False, 0, decision.reset, 1)
        rate_headers = _rate_headers(decision)
        if not decision.allowed:
            sim.stats.throttled_by_kind[kind] = sim.stats.throttled_by_kind.get(kind, 0) + 1
            wait = str(decision.retry_after).encode()
            body = dumps(throttled_body(decision.retry_after))
            await _send_simple(send, 429, body, PROBLEM, [(b"retry-after", wait), *rate_headers])
            return
        if faults.roll("fault_5xx"):
            code, body, ctype = faults.server_error()
            await _send_simple(send, code, body, ctype, rate_headers)
            return
        await self._call_app(scope, receive, raw_send, send, rate_headers)

    async def _call_app(
        self, scope: Scope, receive: Receive, raw_send: Send, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        dropped = False

        async def wrapped(message: Message) -> None:
            nonlocal dropped
            if dropped:
                return
            if message["type"] == "http.response.start":
                if scope.get("sim.drop"):
                    dropped = True
                    await self._drop(raw_send)
                    return
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, wrapped)

    async def _drop(self, raw_send: Send) -> None:
        self.sim.stats.dropped += 1
        if not await drop_connection(raw_send):
            # Not under uvicorn: the closest thing is an answer cut short mid-body.
            start: dict[str, Any] = {"type": "http.response.start", "status": 200,
                                     "headers": [(b"content-length", b"1000")]}
            await raw_send(start)
            await raw_send({"type": "http.response.body", "body": b"{", "more_body": False})
