"""Download a stored output: streams the bytes from object storage with type, length and sha256 ETag."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from genqueue.api.auth import Principal, require
from genqueue.api.deps import OutputReader, OutputStore, get_output_store, get_session, get_storage, session_factory
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.queries import visible_job
from genqueue.api.routes_jobs import output_url
from genqueue.models.base import utcnow
from genqueue.models.keys import Role
from genqueue.models.retention import erase
from genqueue.models.status import TERMINAL_NAMES
from genqueue.storage import StorageError
from genqueue.views.job import JobView, job_view

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Raster formats a browser only ever displays. SVG is not here: it is a document that can run script.
_INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif"})
# Outputs are remote content served from the API's own origin (where the dashboard keeps an ops key in
# sessionStorage): whatever type one claims, it must not be sniffed into something else, nor run script,
# nor load anything, nor be rendered inline unless it is a plain raster image.
_SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def download_headers(content_type: str, index: int) -> dict[str, str]:
    """Security headers for serving an output of ``content_type``: inline only for raster images."""
    media = content_type.split(";", 1)[0].strip().lower()
    headers = dict(_SAFETY_HEADERS)
    if media not in _INLINE_TYPES:
        headers["Content-Disposition"] = f'attachment; filename="output-{index}"'
    return headers


def _not_found_errors() -> tuple[type[BaseException], ...]:
    try:
        from genqueue.storage import StorageNotFound
    except ImportError:  # storage package not installed: only injected readers, which raise FileNotFoundError
        return (FileNotFoundError,)
    return (StorageNotFound, FileNotFoundError)


@router.get(
    "/{job_id}/outputs/{index}",
    name="get_job_output",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The stored bytes"},
               304: {"description": "Not modified (If-None-Match)"},
               **{c: {"model": ErrorResponse} for c in (401, 404, 410, 429)}},
    summary="Download an output",
)
def get_job_output(
    job_id: Annotated[str, Path(max_length=64)],
    index: Annotated[int, Path(ge=0, le=10_000)],
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    principal: Annotated[Principal, Depends(require(Role.SUBMIT, Role.OPS))],
    storage: Annotated[OutputReader, Depends(get_storage)],
) -> Response:
    job = visible_job(session, job_id, principal)
    if job.outputs_deleted_at is not None:
        raise ApiError(410, "output_deleted", f"the job's outputs were deleted at {job.outputs_deleted_at.isoformat()} "
                                              "(retention or an erasure request)")
    output = next((o for o in job.outputs if o.index == index), None)
    if output is None:
        raise ApiError(404, "not_found", "no such output")
    etag = f'"{output.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    try:
        chunks, content_type, size = storage.open(output.storage_key)
    except _not_found_errors():
        raise ApiError(404, "output_missing", "the output is recorded but missing from storage") from None
    media_type = output.content_type or content_type
    headers["Content-Length"] = str(size)
    headers.update(download_headers(media_type, index))
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


@router.delete(
    "/{job_id}/outputs",
    name="delete_job_outputs",
    response_model=JobView,
    responses={c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 429, 503)},
    summary="Delete a job's stored outputs and input now (erasure)",
)
def delete_job_outputs(
    job_id: Annotated[str, Path(max_length=64)],
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    principal: Annotated[Principal, Depends(require(Role.SUBMIT))],
    storage: Annotated[OutputStore, Depends(get_output_store)],
) -> JobView:
    """The stored bytes (S3 or the local folder) and the job's input are deleted at once; the job keeps
    its status, timings, metadata and each output's size and sha256, with `outputs_deleted_at` set. Only
    a finished job (cancel a running one first: its outputs would be stored after). Repeating it is a no-op."""
    job = visible_job(session, job_id, principal)
    if job.status not in TERMINAL_NAMES:
        raise ApiError(409, "not_terminal", f"the job is {job.status}: cancel it first, then delete its outputs")
    session.rollback()  # ends the read: erase writes in transactions of its own
    if job.outputs_deleted_at is None:
        try:
            erase(session_factory(request), storage, job_id, utcnow())
        except StorageError as exc:
            raise ApiError(503, "storage_unavailable", f"the storage refused the delete ({exc.reason}); "
                                                       "nothing was marked, try again") from None
        log.info("job outputs erased on request job=%s", job_id)
    session.expire_all()
    settings = request.app.state.settings
    return job_view(visible_job(session, job_id, principal), output_url(request), show_storage=principal.sees_all,
                    prices=settings.prices())
