"""`GET /v1/stats`: the ops report (counts, live gauges, series, latency, failures, models, cost) as JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from genqueue.api.auth import Principal, require
from genqueue.api.deps import get_session
from genqueue.api.errors import ApiError, ErrorResponse
from genqueue.api.estimates import Estimator
from genqueue.api.queries import metadata_query
from genqueue.core.settings import Settings
from genqueue.intake.errors import FieldError
from genqueue.models.base import utcnow
from genqueue.models.jobs import STUCK_AFTER
from genqueue.models.keys import Role
from genqueue.models.schedule import cap_report
from genqueue.models.stats_report import filters_for, report

router = APIRouter(prefix="/v1", tags=["ops"])


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ApiError(422, "validation_error", "timestamps need a timezone",
                       [FieldError(name, "must include a UTC offset, e.g. 2025-01-01T00:00:00Z")])
    if value is not None:
        # Far-off dates overflow date arithmetic and make absurd series: keep them in a sane range.
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            value = None
        if value is None or not 1970 <= value.year <= 2200:
            raise ApiError(422, "validation_error", f"{name} out of range",
                           [FieldError(name, "must be between 1970 and 2200")])
    return value


@router.get("/stats", summary="Ops statistics (ops or admin key)",
            responses={c: {"model": ErrorResponse} for c in (401, 403, 422, 429)})
def get_stats(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _: Annotated[Principal, Depends(require(Role.OPS))],
    window: Annotated[str | None, Query(max_length=16, description="15m, 1h, 7d or all (default 1h)")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with offset; wins over window")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with offset (default now)")] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    api_key_id: Annotated[str | None, Query(max_length=64)] = None,
    cost_by_metadata: Annotated[str | None, Query(max_length=64, description="Also break the cost down by "
                                                  "the values of this metadata key (`cost.by_metadata`)")] = None,
) -> dict[str, Any]:
    """Counts by status, in-flight by phase, queue depth and age, stuck jobs, throughput and create series,
    latency p50/p95/p99 by phase with a p50 series, failures by error code, per-model figures and cost.
    `metadata.<key>=<value>` (repeatable with other keys) keeps only jobs tagged so."""
    settings: Settings = request.app.state.settings
    now = utcnow()
    tags = metadata_query(request)
    try:
        f = filters_for(window=window, since=_aware(since, "since"), until=_aware(until, "until"), model=model,
                        api_key_id=api_key_id, now=now, metadata=tags)
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_error", "invalid window",
                       [FieldError("window", "must look like 15m, 1h, 7d or all")]) from None
    if f.since and f.until and f.since >= f.until:
        raise ApiError(422, "validation_error", "empty time range", [FieldError("since", "must be before until")])
    result = report(session, f, prices=settings.prices(), cost_by_metadata=cost_by_metadata,
                    create_rate_per_min=settings.create_budget_per_min, stuck_after=STUCK_AFTER.total_seconds(),
                    now=now)
    estimator: Estimator = request.app.state.estimator
    result["scheduling"] = estimator.scheduling(session, api_key_id)
    result["spend_caps"] = cap_report(session, settings.prices(), now)
    return result
