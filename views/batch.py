"""The batch as the API shows it (status, counts, progress and ETA derived from its jobs), and the
lines of its results file."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genqueue.models.batch_status import batch_progress
from genqueue.models.status import JobStatus
from genqueue.models.tables import Batch, Job
from genqueue.views.job import OutputUrl


class LineErrorView(BaseModel):
    line: int = Field(description="1-based line of the NDJSON body (position in `jobs` for a JSON body)")
    field: str
    reason: str


class BatchView(BaseModel):
    id: str
    status: str = Field(description="accepting | processing | completed | canceled (from its jobs' statuses)")
    counts: dict[str, int] = Field(description="Jobs by status, plus `total` (accepted) and `rejected` (lines)")
    progress: float = Field(description="Share of accepted jobs that are terminal, 0 to 1")
    eta_seconds: float | None = Field(description="Until every job is terminal, at the pace so far")
    lines: int = Field(description="Lines (jobs) read from the body")
    truncated: bool = Field(description="The body ended early (too large, client gone): later lines never came")
    metadata: dict[str, str]
    callback_url: str | None
    cancel_requested: bool
    created_at: datetime
    accepted_at: datetime | None = Field(description="The whole body was read")
    finished_at: datetime | None = Field(description="Every job was seen terminal (the batch callback is sent)")


class BatchCreated(BatchView):
    errors: list[LineErrorView] = Field(description="Refused lines (the first 1000), also in the results")
    errors_omitted: int = Field(0, description="Refused lines beyond those listed")


class BatchPage(BaseModel):
    batches: list[BatchView]
    next_cursor: str | None


def batch_view(batch: Batch, counts: Mapping[str, int], now: datetime) -> BatchView:
    p = batch_progress(counts, sealed=batch.sealed_at is not None,
                       cancel_requested=batch.cancel_requested_at is not None, created_at=batch.created_at, now=now)
    shown = {s.value: counts.get(s.value, 0) for s in JobStatus}
    return BatchView(
        id=batch.id, status=p.status, counts={"total": p.total, "rejected": batch.rejected, **shown},
        progress=p.progress, eta_seconds=p.eta_seconds, lines=batch.lines, truncated=batch.truncated,
        metadata=batch.meta or {}, callback_url=batch.callback_url,
        cancel_requested=batch.cancel_requested_at is not None, created_at=batch.created_at,
        accepted_at=batch.sealed_at, finished_at=batch.finished_at,
    )


def result_line(line: int, item: Job | list[dict[str, str]], url: OutputUrl) -> dict[str, Any]:
    """One line of `GET /v1/batches/{id}/results`: an accepted job as it is now, or a refused line."""
    if not isinstance(item, Job):
        return {"line": line, "id": None, "status": "rejected", "outputs": [],
                "error": {"code": "validation_error", "message": "the line was refused", "fields": item}}
    return {
        "line": line, "id": item.id, "status": item.status,
        "outputs": [{"index": o.index, "url": url(item.id, o.index), "sha256": o.sha256, "size": o.size,
                     "content_type": o.content_type} for o in item.outputs],
        "error": {"code": item.error_code, "message": item.error_message} if item.error_code else None,
        "metadata": item.meta or {},
    }
