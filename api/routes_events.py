"""Server-Sent Events of job updates: `GET /v1/jobs/{id}/events` and `GET /v1/events`.

Each frame is `id: <stream id>`, `event: job.updated`, `data: <the job JSON>` (as `GET /v1/jobs/{id}`
shows it to this key, read when the event is delivered). Ids increase; a client that reconnects with
`Last-Event-ID` first gets every event after that id still in the stream (about MAX_EVENTS back), then
the live ones. A key sees only the jobs it may read. A job's stream starts with the job as it is now
(unless resuming) and ends after the job is terminal. The connection holds no thread and no SQL
connection between events (`api/events_hub.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from genqueue.api import admission
from genqueue.api.auth import Principal, require
from genqueue.api.deps import close_session, get_session
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.event_filter import EventFilter, matches, parse_filter
from genqueue.api.events_hub import EventHub, Subscriber
from genqueue.api.queries import visible_job
from genqueue.api.routes_jobs import output_url
from genqueue.core.events import JobEvent, is_after, parse_id
from genqueue.intake.errors import FieldError
from genqueue.models.keys import Role
from genqueue.models.status import TERMINAL_NAMES
from genqueue.models.tables import Job
from genqueue.views.job import job_view

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 1000  # what EventSource waits before reconnecting
EVENT = "job.updated"

Session_ = Annotated[Session, Depends(get_session)]
Reader = Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=45,
                                           description="Resume after this event id")]
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "job.updated events"},
    **{c: {"model": ErrorResponse} for c in (401, 404, 422, 429, 503)}}
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_frame(event_id: str, data: str) -> str:
    """One event; `data` is compact JSON, so it is a single line."""
    return f"id: {event_id}\nevent: {EVENT}\ndata: {data}\n\n"


def _hub(request: Request) -> EventHub:
    return cast(EventHub, request.app.state.events)


def _resume_point(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if parse_id(value) is None:
        raise ApiError(422, "validation_error", "request validation failed",
                       [FieldError("header.Last-Event-ID", "must be an event id as sent in `id:` (<ms>-<seq>)")])
    return value


def _unavailable() -> ApiError:
    return ApiError(503, "unavailable", "the event stream is not available (Redis); try again")


class _Renderer:
    """Turns an event and its job into a frame for one subscriber: its scope, its filter, its URLs."""

    def __init__(self, request: Request, principal: Principal, flt: EventFilter) -> None:
        self._url = output_url(request)
        self._principal = principal
        self._flt = flt

    def __call__(self, event: JobEvent, job: Job | None) -> str | None:
        if job is None or (self._flt.statuses and event.status not in self._flt.statuses):
            return None
        if not self._principal.sees_all and job.api_key_id != self._principal.key_id:
            return None
        data = job_view(job, self._url, show_storage=self._principal.sees_all).model_dump(mode="json")
        if not matches(self._flt, event.status, data):
            return None
        return sse_frame(event.id, json.dumps(data, separators=(",", ":")))


async def _stream(hub: EventHub, sub: Subscriber, render: Callable[[JobEvent, Job | None], str | None],
                  sent: str, first: str | None, resume: bool, last: str | None = None) -> AsyncIterator[str]:
    """`sent`: the id the client has everything up to; `first`: a frame to send before anything else
    (a job's current state); `resume`: read the stream's backlog after `sent` first; `last`: a job's
    terminal state, sent to end the stream when the backlog did not (its event was trimmed)."""
    one_job = sub.job_id is not None
    try:
        yield f"retry: {RETRY_MS}\n\n"
        if first is not None:
            yield first
        while resume:
            try:
                events, end = await hub.backlog(sent)
            except Exception:
                return  # Redis away: the client reconnects and resumes from its last id
            if end is None:
                break
            if one_job:
                events = [e for e in events if e.job_id == sub.job_id]
            jobs = await hub.load([e.job_id for e in events]) if events else {}
            for e in events:
                frame = render(e, jobs.get(e.job_id))
                if frame is not None:
                    yield frame
                    if one_job and jobs[e.job_id].status in TERMINAL_NAMES:
                        return
            sent = end
        if last is not None:
            yield last
            return
        while not sub.broken.is_set():
            try:
                d = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if not is_after(d.event.id, sent):
                continue  # already sent from the backlog, or older than the job's first state
            sent = d.event.id
            frame = render(d.event, d.job)
            if frame is not None:
                yield frame
                if one_job and d.job is not None and d.job.status in TERMINAL_NAMES:
                    return
    finally:
        hub.unsubscribe(sub)


@router.get("/v1/jobs/{job_id}/events", responses=_SSE, response_class=StreamingResponse,
            summary="Follow one job (Server-Sent Events)")
async def job_events(job_id: Annotated[str, Path(max_length=64)], request: Request, session: Session_,
                     principal: Reader, last_event_id: LastEventId = None) -> StreamingResponse:
    """`job.updated` events of this job: first its current state (unless resuming with `Last-Event-ID`),
    then each change; the stream ends once the job is terminal."""
    after = _resume_point(last_event_id)
    hub = _hub(request)
    sub = await hub.subscribe(job_id)
    try:
        tip = await hub.tip()
        render = _Renderer(request, principal, EventFilter())
        job = await run_in_threadpool(visible_job, session, job_id, principal)  # after the tip: no gap
        now = render(JobEvent(tip, job.id, job.status), job)
    except ApiError:
        hub.unsubscribe(sub)
        raise
    except Exception as exc:
        hub.unsubscribe(sub)
        raise _unavailable() from exc
    await close_session(session)  # no SQL connection is held while the stream is open
    admission.release(request)
    terminal = job.status in TERMINAL_NAMES
    if after is None:
        if terminal:
            hub.unsubscribe(sub)
            return StreamingResponse(_done(now), media_type="text/event-stream", headers=_HEADERS)
        stream = _stream(hub, sub, render, tip, now, False)
    else:
        stream = _stream(hub, sub, render, after, None, True, last=now if terminal else None)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)


async def _done(first: str | None) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    if first is not None:
        yield first


@router.get("/v1/events", responses=_SSE, response_class=StreamingResponse,
            summary="Follow every job this key may read (Server-Sent Events)")
async def events(request: Request, session: Session_, principal: Reader,
                 last_event_id: LastEventId = None) -> StreamingResponse:
    """`job.updated` events of the jobs this key may read, from now on (or after `Last-Event-ID`).
    Filters: `status=` (repeatable: the status the event announces), `batch=` (the job's `batch_id`),
    `metadata.<key>=` (a value in the job's `metadata`)."""
    flt = parse_filter(request.query_params.multi_items())
    after = _resume_point(last_event_id)
    await close_session(session)
    admission.release(request)
    hub = _hub(request)
    sub = await hub.subscribe(None)
    return StreamingResponse(_stream(hub, sub, _Renderer(request, principal, flt), after or "0-0", None,
                                     after is not None), media_type="text/event-stream", headers=_HEADERS)
