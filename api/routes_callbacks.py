"""`GET /v1/jobs/{id}/callbacks`: a job's callback deliveries and every attempt (time, status, latency)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from genqueue.api.auth import Principal, require
from genqueue.api.deps import get_session
from genqueue.api.errors import ErrorResponse
from genqueue.api.queries import visible_job
from genqueue.intake.callback_url import parse
from genqueue.models import callbacks
from genqueue.models.keys import Role

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null: no answer (network error, "
                                                "timeout, refused address)")
    latency_ms: float
    error: str | None


class CallbackView(BaseModel):
    id: str = Field(description="The `webhook-id` header of every attempt")
    event: str = Field(description="running | terminal")
    url: str = Field(description="Where it is posted (query string left out: it may carry a token)")
    state: str = Field(description="pending | delivered | failed (gave up: error.code callback_failed)")
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="While pending: when it is tried next")
    finished_at: datetime | None
    error_code: str | None
    last_error: str | None
    attempt_log: list[AttemptView]


class CallbackList(BaseModel):
    callbacks: list[CallbackView]


def _shown(url: str) -> str:
    parsed = parse(url)
    if parsed is None:
        return ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


@router.get("/{job_id}/callbacks", responses={c: {"model": ErrorResponse} for c in (401, 404, 429)},
            summary="A job's callback deliveries and their attempts")
def get_callbacks(job_id: Annotated[str, Path(max_length=64)], session: Annotated[Session, Depends(get_session)],
                  principal: Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))]) -> CallbackList:
    visible_job(session, job_id, principal)  # 404 unless this key may see the job
    out = []
    for d, attempts in callbacks.for_job(session, job_id):
        out.append(CallbackView(
            id=d.id, event=d.event, url=_shown(d.url), state=d.state, attempts=d.attempts, created_at=d.created_at,
            next_attempt_at=d.next_attempt_at if d.state == "pending" else None, finished_at=d.finished_at,
            error_code=d.error_code, last_error=d.last_error,
            attempt_log=[AttemptView(attempt=a.attempt, at=a.at, status_code=a.status_code, latency_ms=a.latency_ms,
                                     error=a.error) for a in attempts]))
    return CallbackList(callbacks=out)
