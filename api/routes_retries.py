"""Replays and bulk actions: `POST /v1/jobs/{id}/retry`, `POST /v1/jobs/bulk`, `GET /v1/jobs/bulk/{id}`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from genqueue.api.auth import Principal, require
from genqueue.api.deps import JobEnqueuer, get_enqueuer, get_intake, get_session, session_factory
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.queries import visible_job
from genqueue.api.routes_jobs import output_url
from genqueue.core.events import publish_many
from genqueue.intake import Intake
from genqueue.intake import bulk as bulk_actions
from genqueue.intake.errors import FieldError
from genqueue.intake.metadata import metadata_problems
from genqueue.models.attempts import replay
from genqueue.models.base import utcnow
from genqueue.models.keys import Role
from genqueue.models.status import REPLAYABLE, JobStatus
from genqueue.models.tables import BulkAction
from genqueue.sched.ready import entry
from genqueue.views.job import JobView, job_view

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["retries"])

Session_ = Annotated[Session, Depends(get_session)]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Reader = Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))]
JobId = Annotated[str, Path(max_length=64)]
_ACTION_STATUSES = {"retry": bulk_actions.RETRYABLE, "cancel": bulk_actions.CANCELABLE}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def _secrets_deleted(names: Sequence[str]) -> ApiError:
    fields = [FieldError(f"input.{n}", "sealed secret deleted after the replay window") for n in names]
    return ApiError(409, "secrets_deleted", "the job's secret input fields were deleted after the replay window "
                                            f"and cannot be sent again: {', '.join(names)}", fields)


@router.post("/{job_id}/retry", status_code=202, responses=_errors(401, 403, 404, 409, 429),
             summary="Replay a failed or canceled job: a new attempt")
def retry_job(job_id: JobId, request: Request, session: Session_, principal: Submitter,
              intake: Annotated[Intake, Depends(get_intake)]) -> JobView:
    """The job goes back to `queued` as a new attempt (its retry policy applies again); the finished
    attempt stays listed in `attempt_history`. 409 `not_retryable` on an active or succeeded job,
    409 `secrets_deleted` (naming the fields) when its sealed secrets were deleted, 409
    `prediction_active` when it failed while its prediction was not seen finished (it may still run)."""
    job = visible_job(session, job_id, principal)
    if JobStatus(job.status) not in REPLAYABLE:
        raise ApiError(409, "not_retryable", f"the job is {job.status}: only a failed or canceled job can be retried")
    session.rollback()  # ends the read; the replay is a transaction of its own
    with session_factory(request).begin() as tx:
        done = replay(tx, [job_id], utcnow())
    if done.secrets_deleted:
        raise _secrets_deleted(done.secrets_deleted[0][1])
    if done.prediction_active:
        raise ApiError(409, "prediction_active", "the job's prediction was never seen finished and may still run "
                                                 "on Replicate; a new attempt could run beside it")
    if not done.queued:
        raise ApiError(409, "not_retryable", "the job changed state meanwhile; read it again")
    intake.enqueue([entry(i, prio, key, created.timestamp()) for i, prio, key, created in done.queued])
    publish_many(request.app.state.redis, [(job_id, JobStatus.QUEUED.value)])
    log.info("job replayed job=%s", job_id)
    return job_view(visible_job(session, job_id, principal), output_url(request), show_storage=principal.sees_all)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class BulkFilterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: JobStatus | None = Field(None, description="retry: failed | canceled (default both); "
                                                       "cancel: queued | submitting | running (default all three)")
    model: str | None = Field(None, max_length=200)
    priority: int | None = Field(None, ge=0, le=9)
    metadata: dict[str, str] | None = Field(None, max_length=16, description="Every tag must match")
    created_before: AwareDatetime | None = Field(None, description="With a time zone, e.g. 2026-12-07T02:00:00Z")
    created_after: AwareDatetime | None = None
    batch: str | None = Field(None, max_length=64)
    error_code: str | None = Field(None, max_length=64, description="Only jobs that failed with this code")

    @field_validator("model", "batch", "error_code")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # A string no row can hold (NUL: PostgreSQL refuses it; a lone surrogate) is a 422, not a 500.
        if value is not None and ("\x00" in value or not _encodable(value)):
            raise ValueError("must be valid Unicode without NUL characters")
        return value


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["cancel", "retry"]
    filter: BulkFilterBody = Field(default_factory=BulkFilterBody)
    dry_run: bool = Field(False, description="Only count the jobs the filter matches")

    @model_validator(mode="after")
    def _status_fits(self) -> BulkRequest:
        allowed = _ACTION_STATUSES[self.action]
        if self.filter.status is not None and self.filter.status.value not in allowed:
            raise ValueError(f"filter.status: a {self.action} applies to {' | '.join(allowed)} jobs only")
        return self


class BulkView(BaseModel):
    id: str | None = Field(description="Follow its progress at GET /v1/jobs/bulk/{id}; null for a dry run")
    action: str
    dry_run: bool = False
    state: str = Field(description="running | done | failed (dry run: done)")
    matched: int = Field(description="Jobs the filter matched when the action started")
    done: int = 0
    skipped: int = Field(0, description="Jobs that had moved on meanwhile (retry: or whose prediction may "
                                        "still run)")
    skipped_secrets_deleted: int = Field(0, description="retry: jobs whose sealed secrets were deleted")
    created_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


def _view(row: BulkAction) -> BulkView:
    return BulkView(id=row.id, action=row.action, state=row.state, matched=row.matched, done=row.done,
                    skipped=row.skipped, skipped_secrets_deleted=row.skipped_secrets_deleted,
                    created_at=row.created_at, finished_at=row.finished_at, error=row.error)


@router.post("/bulk", status_code=202, responses={200: {"model": BulkView, "description": "Dry run"},
                                                   **_errors(401, 403, 422, 429)},
             summary="Retry or cancel every job a filter matches")
def bulk(body: BulkRequest, request: Request, response: Response, session: Session_, principal: Submitter,
         background: BackgroundTasks, intake: Annotated[Intake, Depends(get_intake)],
         enqueuer: Annotated[JobEnqueuer, Depends(get_enqueuer)]) -> BulkView:
    """Scoped to the caller's key (an admin key: every key's jobs). Answers 202 with the number of jobs
    matched and an id to follow; the action runs a chunk of 1,000 jobs at a time after the answer.
    `"dry_run": true` only counts them (200)."""
    f = body.filter
    problems = metadata_problems(f.metadata, "filter.metadata")
    if problems:
        raise ApiError(422, "validation_error", "invalid metadata filter", problems)
    flt = bulk_actions.JobFilter(
        api_key_id=principal.key_id, all_keys=principal.role is Role.ADMIN,
        status=f.status.value if f.status else None, model=f.model, priority=f.priority, metadata=f.metadata,
        created_before=f.created_before, created_after=f.created_after, batch=f.batch, error_code=f.error_code)
    matched = bulk_actions.count(session, body.action, flt)
    if body.dry_run:
        response.status_code = 200
        return BulkView(id=None, action=body.action, dry_run=True, state="done", matched=matched)
    session.rollback()
    with session_factory(request).begin() as tx:
        bulk_id = bulk_actions.start(tx, body.action, flt, f.model_dump(mode="json", exclude_none=True), matched)
    sinks = bulk_actions.sinks(request.app.state.redis, intake.enqueue, enqueuer.cancel)
    background.add_task(bulk_actions.run, session_factory(request), sinks,
                        body.action, flt, bulk_id=bulk_id)
    log.info("bulk %s started id=%s matched=%d", body.action, bulk_id, matched)
    return BulkView(id=bulk_id, action=body.action, state="running", matched=matched, created_at=utcnow())


@router.get("/bulk/{bulk_id}", responses=_errors(401, 404, 429), summary="A bulk action's progress")
def get_bulk(bulk_id: Annotated[str, Path(max_length=64)], session: Session_, principal: Reader) -> BulkView:
    stmt = select(BulkAction).where(BulkAction.id == bulk_id).execution_options(populate_existing=True)
    if not principal.sees_all:
        stmt = stmt.where(BulkAction.api_key_id == principal.key_id)
    row = session.scalar(stmt)
    if row is None:
        raise ApiError(404, "not_found", "no such bulk action")
    return _view(row)
