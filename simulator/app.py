"""ASGI application factory for the Replicate simulator."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from genqueue.simulator import routes_admin, routes_misc, routes_predictions
from genqueue.simulator.config import SimConfig
from genqueue.simulator.middleware import SimMiddleware
from genqueue.simulator.responses import NOT_FOUND, problem
from genqueue.simulator.state import SimState


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(NOT_FOUND)
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
    return problem({"detail": detail, "status": status})


def create_app(config: SimConfig | None = None, clock: Callable[[], float] = time.time) -> SimMiddleware:
    """A fresh simulator (own state). ``app.sim`` is its SimState (config, store, stats)."""
    state = SimState(config if config is not None else SimConfig(), clock)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Webhook sending starts lazily on the first webhook anyway; the lifespan is what stops it
        # (cancels in-flight sends, closes the client) when the server shuts down.
        await state.webhooks.start()
        try:
            yield
        finally:
            await state.webhooks.stop()

    inner = Starlette(
        routes=[*routes_predictions.routes(), *routes_misc.routes(), *routes_admin.routes()],
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=lifespan,
    )
    inner.state.sim = state
    return SimMiddleware(inner, state)
