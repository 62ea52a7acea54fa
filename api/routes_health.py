"""Liveness and readiness probes: no auth, and no detail in the body (reasons go to the log)."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from genqueue.api.deps import session_factory

log = logging.getLogger(__name__)
# Every route that touches SQL needs a thread of the pool; a pool whose threads are all held (a stalled
# dependency) answers nothing while the event loop still does. /readyz checks through the pool and
# calls that not ready when it gets no thread within this long.
POOL_PROBE_SECONDS = 2.0
router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    status: str


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get("/readyz", summary="Readiness: SQL and Redis answer, and the thread pool has room",
            responses={503: {"model": HealthStatus, "description": "A dependency does not answer"}})
async def readyz(request: Request) -> JSONResponse:
    ready = False
    with anyio.move_on_after(POOL_PROBE_SECONDS) as probe:
        ready = await run_in_threadpool(_check_dependencies, request)
    if probe.cancelled_caught:
        log.warning("not ready: no thread-pool thread within %.0f s (the pool is stalled)", POOL_PROBE_SECONDS)
    if ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


def _check_dependencies(request: Request) -> bool:
    ready = True
    try:
        with session_factory(request)() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        ready = False
        log.warning("not ready: database check failed (%s)", type(exc).__name__)
    try:
        request.app.state.redis.ping()
    except Exception as exc:
        ready = False
        log.warning("not ready: Redis ping failed (%s)", type(exc).__name__)
    return ready
