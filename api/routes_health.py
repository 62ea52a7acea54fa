"""Liveness and readiness probes: no auth, and no detail in the body (reasons go to the log)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from genqueue.api.deps import session_factory

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class HealthStatus(BaseModel):
    status: str


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> HealthStatus:
    return HealthStatus(status="ok")


@router.get("/readyz", summary="Readiness: SQL and Redis answer",
            responses={503: {"model": HealthStatus, "description": "A dependency does not answer"}})
def readyz(request: Request) -> JSONResponse:
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
    if ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable"}, status_code=503)
