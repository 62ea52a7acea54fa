"""Job routes: create (one or a batch), read, list, cancel."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import redis
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from genqueue.api import admission
from genqueue.api.auth import Principal, require
from genqueue.api.deps import JobEnqueuer, close_session, get_enqueuer, get_intake, get_session, session_factory
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.estimates import Estimator
from genqueue.api.events_hub import EventHub
from genqueue.api.pagination import decode_cursor, encode_cursor
from genqueue.api.prefer import parse_wait
from genqueue.api.queries import list_jobs, metadata_query, visible_job, visible_jobs
from genqueue.core.events import publish, publish_many
from genqueue.core.pricing import PriceTable
from genqueue.core.settings import Settings
from genqueue.intake import Intake, JobRequest
from genqueue.intake.service import MAX_BATCH
from genqueue.models import callbacks
from genqueue.models.base import utcnow
from genqueue.models.jobs import finish_timings, touch, transition
from genqueue.models.keys import Role
from genqueue.models.status import TERMINAL_NAMES, JobStatus
from genqueue.models.tables import Job
from genqueue.sched.ready import ReadyQueues, entry
from genqueue.views.job import (
    LIST_INPUT_MAX_BYTES,
    JobBatchView,
    JobPage,
    JobView,
    OutputUrl,
    accepted_view,
    job_view,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

Session_ = Annotated[Session, Depends(get_session)]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Reader = Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200,
    description="Retry-safe creates: the same key and body return the same job(s); another body is 409",
)]
JobId = Annotated[str, Path(max_length=64)]
Prefer = Annotated[str | None, Header(
    alias="Prefer", max_length=200,
    description="`wait=N` (1-60; bare `wait` = 60): answer once the job is terminal or N seconds passed",
)]


_ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"headers": {"Idempotent-Replayed": {
    "description": "`true` when an Idempotency-Key replay returned the job(s) created earlier",
    "schema": {"type": "string"}}}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH)


def output_url(request: Request) -> OutputUrl:
    def url(job_id: str, index: int) -> str:
        return str(request.url_for("get_job_output", job_id=job_id, index=str(index)))

    return url


def _accept(request: Request, session: Session, principal: Principal, intake: Intake, requests: list[JobRequest],
            idempotency_key: str | None, batch: bool) -> tuple[list[JobView], bool]:
    """Runs in the threadpool, in the session the key was looked up in: insert, commit, enqueue, views.
    New jobs are shown as written (queued), without reading them back; a replay is read back as it is now."""
    jobs, created = intake.submit(requests, api_key_id=principal.key_id, idempotency_key=idempotency_key,
                                  batch=batch, session=session, max_queued=principal.max_queued,
                                  callback_key=principal.callbacks)
    if created:
        publish_many(request.app.state.redis, [(j.id, j.status) for j in jobs])
        return [accepted_view(j) for j in jobs], True
    rows = visible_jobs(session, [j.id for j in jobs], principal)
    url = output_url(request)
    return [job_view(j, url, show_storage=principal.sees_all) for j in rows], False


# The create routes are `async`: their dependencies run on the event loop (the key lookup makes one
# trip to the threadpool) and the route's blocking work is one more trip, instead of a trip per sync
# dependency, per route and per response validation.
@router.post("", status_code=202, responses={**_ACCEPTED, **_errors(401, 403, 409, 413, 422, 429)},
             summary="Create a job")
async def create_job(body: JobRequest, request: Request, response: Response, session: Session_,
                     principal: Submitter, intake: Annotated[Intake, Depends(get_intake)],
                     idempotency_key: IdempotencyKey = None, prefer: Prefer = None) -> JobView:
    """Record the job and queue it; answers once it is durable. A replay carries `Idempotent-Replayed: true`.
    With `Prefer: wait=N` the answer (still 202) waits until the job is terminal or N seconds passed."""
    wait = parse_wait(prefer)
    views, created = await run_in_threadpool(_accept, request, session, principal, intake, [body],
                                             idempotency_key, False)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    if wait is None:
        return views[0]
    return await _wait_view(request, response, session, principal, views[0].id, wait)


@router.post("/batch", status_code=202, responses={**_ACCEPTED, **_errors(401, 403, 409, 413, 422, 429)},
             summary="Create up to 1000 jobs, all or nothing")
async def create_batch(body: BatchRequest, request: Request, response: Response, session: Session_,
                       principal: Submitter, intake: Annotated[Intake, Depends(get_intake)],
                       idempotency_key: IdempotencyKey = None) -> JobBatchView:
    """Either every job is accepted or none is; field errors name `jobs.<index>.<field>`. To stream up to
    50,000 jobs with per-line errors, progress and results, use `POST /v1/batches`."""
    views, created = await run_in_threadpool(_accept, request, session, principal, intake, body.jobs,
                                             idempotency_key, True)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return JobBatchView(jobs=views)


@router.get("", responses=_errors(401, 422, 429), summary="List jobs, newest first",
            description="`metadata.<key>=<value>` (repeatable with other keys): only jobs tagged so")
def get_jobs(
    request: Request,
    session: Session_,
    principal: Reader,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    model: Annotated[str | None, Query(max_length=200, description='Only this "owner/name"')] = None,
    priority: Annotated[int | None, Query(ge=0, le=9, description="Only jobs of this priority")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page")] = None,
    include: Annotated[list[Literal["input"]] | None, Query(
        description=f"`input`: carry every job's (masked) input; else inputs over {LIST_INPUT_MAX_BYTES} "
                    "bytes are left out to keep pages small")] = None,
) -> JobPage:
    after = decode_cursor(cursor) if cursor else None
    rows, more = list_jobs(session, principal, limit=limit, status=status, model=model, priority=priority,
                           after=after, metadata=metadata_query(request))
    estimates = _estimator(request).for_jobs(session, rows)
    input_limit = None if "input" in (include or []) else LIST_INPUT_MAX_BYTES
    url = output_url(request)
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    prices = _prices(request)
    jobs = [job_view(j, url, input_limit=input_limit, show_storage=principal.sees_all, estimate=estimates.get(j.id),
                     prices=prices) for j in rows]
    return JobPage(jobs=jobs, next_cursor=next_cursor)


def _read_view(request: Request, session: Session, job_id: str, principal: Principal) -> JobView:
    job = visible_job(session, job_id, principal)
    estimates = _estimator(request).for_jobs(session, [job])
    return job_view(job, output_url(request), show_storage=principal.sees_all, estimate=estimates.get(job.id),
                    prices=_prices(request))


def _prices(request: Request) -> PriceTable:
    return cast(Settings, request.app.state.settings).prices()


def _estimator(request: Request) -> Estimator:
    return cast(Estimator, request.app.state.estimator)


def _read_view_once(request: Request, job_id: str, principal: Principal) -> JobView:
    """The same in a session opened and closed within this one trip to the threadpool (api/admission.py)."""
    with session_factory(request)() as session:
        return _read_view(request, session, job_id, principal)


async def _wait_view(request: Request, response: Response, session: Session, principal: Principal, job_id: str,
                     wait: int) -> JobView:
    """The job once it is terminal or `wait` seconds passed. The wait holds neither a thread nor a SQL
    connection: a future the event hub sets to the job it read (api/events_hub.py), registered before
    the first read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    hub = cast(EventHub, request.app.state.events)
    response.headers["Preference-Applied"] = f"wait={wait}"
    done = await hub.watch(job_id)
    try:
        view = await run_in_threadpool(_read_view, request, session, job_id, principal)
        if view.status in TERMINAL_NAMES:
            return view
        await close_session(session)  # gives the connection back to the pool for the wait
        admission.release(request)
        await asyncio.wait({done}, timeout=max(0.0, deadline - loop.time()))
        job = done.result() if done.done() else None
        if job is not None:  # read by the hub for every waiter woken with it; visible: checked above
            return job_view(job, output_url(request), show_storage=principal.sees_all)
        return await run_in_threadpool(_read_view_once, request, job_id, principal)
    finally:
        hub.unwatch(job_id, done)


@router.get("/{job_id}", responses=_errors(401, 404, 422, 429), summary="Get a job")
async def get_job(job_id: JobId, request: Request, response: Response, session: Session_, principal: Reader,
                  prefer: Prefer = None) -> JobView:
    """With `Prefer: wait=N` the answer waits until the job is terminal or N seconds passed
    (`Preference-Applied: wait=N`)."""
    wait = parse_wait(prefer)
    if wait is None:
        return await run_in_threadpool(_read_view, request, session, job_id, principal)
    return await _wait_view(request, response, session, principal, job_id, wait)


@router.post("/{job_id}/cancel", status_code=202, responses={
    200: {"model": JobView, "description": "Was queued: canceled at once"},
    **_errors(401, 403, 404, 409, 429),
}, summary="Cancel a job")
def cancel_job(job_id: JobId, request: Request, response: Response, session: Session_, principal: Submitter,
               enqueuer: Annotated[JobEnqueuer, Depends(get_enqueuer)]) -> JobView:
    """A queued job is canceled at once (200). A submitting or running one is marked and the worker
    cancels it on Replicate, then marks it canceled (202). A finished or storing job is 409."""
    for _ in range(5):  # each pass re-reads; a pass repeats only when a worker moved the job meanwhile
        job = visible_job(session, job_id, principal)
        status = JobStatus(job.status)
        now = utcnow()
        if status == JobStatus.QUEUED:
            if _cancel_queued(request, job, now):
                session.commit()  # ends the read, so the answer below reads the job as canceled
                _leave_lane(request, job)
                publish(request.app.state.redis, job_id, JobStatus.CANCELED.value)
                log.info("job canceled while queued job=%s", job_id)
                response.status_code = 200
                break
        elif status in (JobStatus.SUBMITTING, JobStatus.RUNNING):
            if job.cancel_requested_at is not None or touch(session, job_id, status, cancel_requested_at=now):
                session.commit()
                publish(request.app.state.redis, job_id, status.value)  # the job JSON's cancel_requested
                _send_cancel(enqueuer, job_id)
                break
        else:
            raise ApiError(409, "not_cancelable", f"the job is {status.value} and can no longer be canceled")
        session.rollback()
    else:
        raise ApiError(409, "conflict", "the job kept changing state; try again")
    return job_view(visible_job(session, job_id, principal), output_url(request), show_storage=principal.sees_all)


def _cancel_queued(request: Request, job: Job, now: datetime) -> bool:
    """queued -> canceled, with the callback it triggers queued in the same transaction (the outbox,
    models.callbacks): a transaction of its own, as the request session writes one statement at most."""
    with session_factory(request).begin() as tx:
        if not transition(tx, job.id, JobStatus.QUEUED, JobStatus.CANCELED, finished_at=now,
                          error_code=None, **finish_timings(job, now)):
            return False
        callbacks.add_for_status(tx, job.id, JobStatus.CANCELED, now)
    return True


def _leave_lane(request: Request, job: Job) -> None:
    """A canceled queued job leaves its lane, so it costs no create token (the submit step would drop
    it anyway if this fails)."""
    try:
        ReadyQueues(request.app.state.redis).remove(entry(job.id, job.priority, job.api_key_id, 0.0))
    except redis.RedisError as exc:
        log.warning("job=%s canceled but still in its lane (%s)", job.id, type(exc).__name__)


def _send_cancel(enqueuer: JobEnqueuer, job_id: str) -> None:
    try:
        enqueuer.cancel(job_id)
    except Exception as exc:  # broker down: cancel_requested_at is in SQL, the next poll acts on it
        log.warning("cancel enqueue failed job=%s (%s)", job_id, type(exc).__name__)
    else:
        log.info("cancel requested job=%s", job_id)
