"""Two ASGI guards around the app: NUL bytes in the URL refused, and no traceback left to the server.

- A NUL byte (`%00`) in the path or a query parameter cannot be stored or compared by PostgreSQL (its
  text type has no NUL): without this, `GET /v1/jobs/a%00b` reached the database and answered 500.
  It is refused up front with 422 naming the parameter, whatever the route.
- Starlette's last-resort handler answers 500 and then re-raises, so uvicorn logged the whole
  traceback, SQL parameters included, around our redacting log filter. `CatchAll` sits inside it,
  logs only the exception's type through our logger and answers the standard 500 body.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genqueue.api.errors import error_response
from genqueue.intake.errors import FieldError

log = logging.getLogger(__name__)


def nul_fields(path: str, query_string: bytes) -> list[FieldError]:
    """The URL parts holding a NUL byte, as fields: `path`, or `query.<name>`."""
    found = [FieldError("path", "must not contain a NUL byte")] if "\x00" in path else []
    query = query_string.decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
            if "\x00" in name or "\x00" in value:
                shown = name.replace("\x00", "\\0")
                found.append(FieldError(f"query.{shown}", "must not contain a NUL byte"))
    return found


class RejectNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fields = nul_fields(scope.get("path", ""), scope.get("query_string", b""))
            if fields:
                await error_response(422, "validation_error", "the URL holds a NUL byte", fields)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


class CatchAll:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the last resort: type only, the text may carry request data
            log.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, "internal_error", "internal server error")(scope, receive, send)
