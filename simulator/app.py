"""ASGI application factory for the Replicate simulator."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from simulator import routes_admin, routes_misc, routes_predictions
from simulator.config import SimConfig
from simulator.middleware import SimMiddleware
from simulator.responses import NOT_FOUND, problem
from simulator.state import SimState


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(NOT_FOUND)
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
    return problem({"detail": detail, "status": status})


def create_app(config: SimConfig | None = None, clock: Callable[[], float] = time.time) -> SimMiddleware:
    """A fresh simulator (own state). ``app.sim`` is its SimState (config, store, stats)."""
    state = SimState(config if config is not None else SimConfig(), clock)
    inner = Starlette(
        routes=[*routes_predictions.routes(), *routes_misc.routes(), *routes_admin.routes()],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    inner.state.sim = state
    return SimMiddleware(inner, state)
