"""ASGI middleware capping request bodies at `max_body_bytes`: 413 with the standard error body.

A declared Content-Length over the cap is refused before reading; otherwise the body is read (at most
cap + one chunk) and replayed to the app, so chunked uploads cannot slip past the cap either.

Routes that stream their body (`streamed`: path -> cap, POST only; `POST /v1/batches`) are not buffered:
the app reads the body as it arrives, through a `receive` that counts and raises `BodyTooLarge` past
their own cap, which the route turns into a 413 (after keeping what it has already accepted).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genqueue.api.errors import error_response
from genqueue.intake.errors import FieldError


class BodyTooLarge(Exception):
    """Raised by a streamed route's `receive` once its body passed the route's cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, streamed: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = dict(streamed or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.streamed.get(scope.get("path", "")) if scope.get("method") == "POST" else None
        if cap is not None:
            length = self._declared(scope)
            if length is not None and length > cap:
                await self._too_large(scope, receive, send, cap)
                return
            await self.app(scope, _counting(receive, cap), send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
                if length < 0:
                    raise ValueError(declared)
            except ValueError:
                await error_response(400, "bad_request", "invalid Content-Length header",
                                     [FieldError("Content-Length", "must be a non-negative integer")])(
                    scope, receive, send)
                return
            if length > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    @staticmethod
    def _declared(scope: Scope) -> int | None:
        raw = dict(scope.get("headers") or []).get(b"content-length")
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None  # the route reads the body and counts it anyway

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int | None = None) -> None:
        response = error_response(413, "payload_too_large",
                                  f"request body larger than {limit or self.max_bytes} bytes")
        await response(scope, receive, send)


def _counting(receive: Receive, cap: int) -> Receive:
    total = 0

    async def counted() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > cap:
                raise BodyTooLarge(cap)
        return message

    return counted


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for http.disconnect, as the app expects

    return replay
