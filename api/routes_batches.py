"""Batch routes: create one from an NDJSON stream or a JSON body, read it, list, results, cancel.

The NDJSON body is read as it arrives (`BodySizeLimit` streams this route, up to
GENQUEUE_MAX_BATCH_BYTES), split into lines, and handed to `intake.batches.BatchWriter` a chunk of
1,000 lines at a time in the threadpool: the event loop reads while a chunk is validated and written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from genqueue.api.auth import Principal, require
from genqueue.api.bodylimit import BodyTooLarge
from genqueue.api.deps import JobEnqueuer, get_enqueuer, get_intake, get_session, session_factory
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.pagination import decode_cursor, encode_cursor
from genqueue.api.queries import list_batches, metadata_query, visible_batch
from genqueue.api.routes_jobs import output_url
from genqueue.core.settings import Settings
from genqueue.intake import Intake
from genqueue.intake.batches import CHUNK, MAX_LINES, BatchOutcome, BatchWriter, Item, options_problems
from genqueue.intake.errors import FieldError, field_errors
from genqueue.intake.ndjson import LineSplitter
from genqueue.models import batches
from genqueue.models.base import utcnow
from genqueue.models.keys import Role
from genqueue.views.batch import BatchCreated, BatchPage, BatchView, LineErrorView, batch_view, result_line

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/batches", tags=["batches"])
CREATE_PATH = "/v1/batches"
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")

Session_ = Annotated[Session, Depends(get_session)]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Reader = Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))]
BatchId = Annotated[str, Path(max_length=64)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


class BatchBody(BaseModel):
    """`Content-Type: application/json`: the whole batch in one body (bounded by GENQUEUE_MAX_BODY_BYTES)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[Any] = Field(min_length=1, max_length=MAX_LINES, description="Job requests (as for POST /v1/jobs)")
    callback_url: str | None = Field(None, description="Called once every job is terminal")
    metadata: dict[str, Any] | None = Field(None, description="Tags of the batch, given to each of its jobs")
    all_or_nothing: bool = Field(False, description="Refuse the whole batch if any job is refused")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


# The body is read by hand (streamed), so its two shapes are declared for the OpenAPI document here.
_BODY = {"requestBody": {"required": True, "content": {
    "application/x-ndjson": {"schema": {"type": "string", "description": "One job request (JSON) per line"}},
    "application/json": {"schema": BatchBody.model_json_schema()},
}}}


@router.post("", status_code=202, responses=_errors(401, 403, 413, 415, 422, 429), openapi_extra=_BODY,
             summary="Create a batch (NDJSON stream of up to 50,000 jobs, or JSON)")
async def create_batch(
    request: Request,
    principal: Submitter,
    intake: Annotated[Intake, Depends(get_intake)],
    all_or_nothing: Annotated[bool, Query(description="NDJSON: refuse the batch if any line is refused")] = False,
    callback_url: Annotated[str | None, Query(max_length=4096, description="NDJSON: called when every job "
                                                                          "is terminal")] = None,
) -> BatchCreated:
    """`application/x-ndjson`: one job request per line; options as query parameters (`all_or_nothing`,
    `callback_url`, `metadata.<key>=<value>`). `application/json`: `{"jobs": [...], "callback_url",
    "metadata", "all_or_nothing"}`. A bad line is refused with its number and reasons, the others are
    accepted (unless `all_or_nothing`: then 422 and nothing is kept)."""
    media = _media_type(request)
    settings: Settings = request.app.state.settings
    if media in NDJSON_TYPES:
        options = {"callback_url": callback_url, "metadata": metadata_query(request) or None,
                   "all_or_nothing": all_or_nothing}
        writer = _writer(request, intake, principal, options)
        try:
            outcome = await _stream_ndjson(request, writer)
        finally:
            await run_in_threadpool(writer.close)
    elif media == "application/json":
        body = await _json_body(request, settings.max_body_bytes)
        writer = _writer(request, intake, principal, body.model_dump(exclude={"jobs"}))
        try:
            # A job that is not an object is handed over as the bytes of one, so it is refused like such a line.
            items: list[Item] = [(i, job if isinstance(job, dict) else b"[]") for i, job in enumerate(body.jobs, 1)]
            await run_in_threadpool(writer.add, items)
            outcome = await run_in_threadpool(writer.finish)
        finally:
            await run_in_threadpool(writer.close)
    else:
        raise ApiError(415, "unsupported_media_type", "send the batch as application/x-ndjson or application/json",
                       [FieldError("Content-Type", "must be application/x-ndjson or application/json")])
    return await run_in_threadpool(_created, request, outcome)


def _writer(request: Request, intake: Intake, principal: Principal, options: dict[str, Any]) -> BatchWriter:
    settings: Settings = request.app.state.settings
    problems = options_problems(options.get("callback_url"), options.get("metadata"),
                                allow_private=settings.callback_allow_private, can_sign=principal.callbacks.can_sign)
    if problems:
        raise ApiError(422, "validation_error", "invalid batch options", problems)
    return BatchWriter(intake, api_key_id=principal.key_id, callback_url=options.get("callback_url"),
                       metadata=options.get("metadata"), all_or_nothing=bool(options.get("all_or_nothing")),
                       max_queued=principal.max_queued)


async def _stream_ndjson(request: Request, writer: BatchWriter) -> BatchOutcome:
    """Read the body while the previous chunk is validated and written in the threadpool: at most one
    chunk being written and one being read are held."""
    splitter = LineSplitter(writer.max_line_bytes)
    pending: list[Item] = []
    writing: asyncio.Future[None] | None = None
    too_large: BodyTooLarge | None = None
    truncated = False
    try:
        async for chunk in request.stream():
            pending += splitter.feed(chunk)
            if len(pending) >= CHUNK:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(run_in_threadpool(writer.add, pending))
                pending = []
        pending += splitter.end()
    except BodyTooLarge as exc:
        too_large, truncated = exc, True
    except ClientDisconnect:
        truncated = True
    finally:
        if writing is not None:
            await writing
    if pending:
        await run_in_threadpool(writer.add, pending)
    outcome = await run_in_threadpool(writer.finish, truncated=truncated)
    if too_large is not None:
        raise ApiError(413, "payload_too_large",
                       f"request body larger than {too_large.limit} bytes: the {outcome.accepted} jobs before it "
                       f"were accepted in batch {outcome.id} (split the file)",
                       [FieldError("body", f"must be at most {too_large.limit} bytes")])
    return outcome


async def _json_body(request: Request, limit: int) -> BatchBody:
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ApiError(413, "payload_too_large", f"a JSON batch is at most {limit} bytes: "
                               "send larger ones as application/x-ndjson",
                               [FieldError("body", f"must be at most {limit} bytes as JSON")])
    except BodyTooLarge:
        raise ApiError(413, "payload_too_large", "request body too large") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON",
                       [FieldError("body", "is not valid JSON")]) from None
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "request validation failed",
                       [FieldError("body", "must be a JSON object")])
    try:
        return BatchBody.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "request validation failed", field_errors(exc.errors())) from None


def _created(request: Request, outcome: BatchOutcome) -> BatchCreated:
    with session_factory(request)() as session:
        batch = batches.get(session, outcome.id)
        view = batch_view(batch, batches.counts(session, [batch.id])[batch.id], utcnow())
    errors = [LineErrorView(line=e.line, field=e.field, reason=e.reason) for e in outcome.errors]
    shown_lines = len({e.line for e in outcome.errors})
    return BatchCreated(**view.model_dump(), errors=errors, errors_omitted=max(outcome.rejected - shown_lines, 0))


@router.get("", responses=_errors(401, 422, 429), summary="List batches, newest first")
def get_batches(
    session: Session_,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page")] = None,
) -> BatchPage:
    rows, more = list_batches(session, principal, limit=limit, after=decode_cursor(cursor) if cursor else None)
    counts = batches.counts(session, [b.id for b in rows])
    now = utcnow()
    return BatchPage(batches=[batch_view(b, counts[b.id], now) for b in rows],
                     next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None)


@router.get("/{batch_id}", responses=_errors(401, 404, 429), summary="Get a batch: counts, progress, ETA")
def get_batch(batch_id: BatchId, session: Session_, principal: Reader) -> BatchView:
    batch = visible_batch(session, batch_id, principal)
    return batch_view(batch, batches.counts(session, [batch.id])[batch.id], utcnow())


@router.get("/{batch_id}/results", responses={200: {"content": {"application/x-ndjson": {}}},
                                              **_errors(401, 404, 429)},
            summary="The batch's results as NDJSON, in input order")
def get_results(batch_id: BatchId, request: Request, session: Session_, principal: Reader) -> StreamingResponse:
    """One line per input line: `{"line", "id", "status", "outputs": [{"index", "url", "sha256", "size",
    "content_type"}], "error", "metadata"}`; a refused line has `"status": "rejected"` and its reasons."""
    batch = visible_batch(session, batch_id, principal)
    factory, url = session_factory(request), output_url(request)

    def lines() -> Iterator[bytes]:
        with factory() as own:  # read a page at a time while the client downloads
            for line, item in batches.results(own, batch.id):
                yield (json.dumps(result_line(line, item, url), default=str) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="batch-{batch.id}.ndjson"'})


@router.post("/{batch_id}/cancel", status_code=202, responses=_errors(401, 403, 404, 409, 429),
             summary="Cancel every job of the batch that is not finished")
def cancel_batch(batch_id: BatchId, request: Request, session: Session_, principal: Submitter,
                 enqueuer: Annotated[JobEnqueuer, Depends(get_enqueuer)]) -> BatchView:
    """Queued jobs are canceled at once; submitting and running ones are canceled on Replicate by a
    worker. Jobs already finished keep their outcome."""
    batch = visible_batch(session, batch_id, principal)
    if batch.finished_at is not None:
        raise ApiError(409, "not_cancelable", "every job of the batch is already finished")
    with session_factory(request).begin() as own:  # several writes, atomic: a session of its own
        marked = batches.cancel(own, batch.id, utcnow())
    for job_id in marked:
        try:
            enqueuer.cancel(job_id)
        except Exception as exc:  # broker down: cancel_requested_at is in SQL, the next poll acts on it
            log.warning("cancel enqueue failed job=%s (%s)", job_id, type(exc).__name__)
    log.info("batch cancel requested batch=%s running=%d", batch.id, len(marked))
    batch = visible_batch(session, batch.id, principal)
    return batch_view(batch, batches.counts(session, [batch.id])[batch.id], utcnow())
