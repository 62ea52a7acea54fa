"""Which events an SSE subscriber of `GET /v1/events` gets: the query parsed into a filter, and the
match. Pure functions, no I/O.

`batch=` and `metadata.<key>=` match the job JSON's `batch_id` and `metadata` when the job has them (a
job without them never matches), so the filters work as soon as jobs carry those fields.
`status=` (repeatable) matches the status the event announces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genqueue.api.errors import ApiError
from genqueue.intake.errors import FieldError
from genqueue.models.status import JobStatus

_MAX_VALUE = 200
_STATUSES = {s.value for s in JobStatus}


@dataclass(frozen=True)
class EventFilter:
    statuses: frozenset[str] = frozenset()  # empty: any
    batch: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def needs_job(self) -> bool:
        """Whether matching reads the job JSON (else the event alone decides)."""
        return self.batch is not None or bool(self.metadata)


def parse_filter(params: Iterable[tuple[str, str]]) -> EventFilter:
    """The query string of `GET /v1/events`; a 422 naming each bad parameter."""
    statuses: set[str] = set()
    batch: str | None = None
    metadata: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, value in params:
        where = f"query.{name[:60]}"
        if len(value) > _MAX_VALUE:
            errors.append(FieldError(where, f"must have at most {_MAX_VALUE} characters"))
        elif name == "status":
            if value not in _STATUSES:
                errors.append(FieldError(where, "must be one of " + ", ".join(s.value for s in JobStatus)))
            statuses.add(value)
        elif name == "batch":
            if not value or (batch is not None and batch != value):
                errors.append(FieldError(where, "must be one non-empty batch id"))
            batch = value
        elif name.startswith("metadata."):
            key = name.removeprefix("metadata.")
            if not key or len(key) > 100:
                errors.append(FieldError("query.metadata", "needs a key: metadata.<key>=<value>"))
            elif key in metadata and metadata[key] != value:
                errors.append(FieldError(where, "must be given once"))
            metadata[key] = value
        else:
            errors.append(FieldError(where, "is not a filter (status, batch, metadata.<key>)"))
    if errors:
        raise ApiError(422, "validation_error", "request validation failed", errors)
    return EventFilter(frozenset(statuses), batch, metadata)


def _same(actual: Any, wanted: str) -> bool:
    """A metadata value against the query's text: strings as they are, other JSON values as JSON."""
    if isinstance(actual, str):
        return actual == wanted
    return json.dumps(actual, separators=(",", ":")) == wanted


def matches(flt: EventFilter, status: str, job: Mapping[str, Any] | None) -> bool:
    """Whether an event announcing `status` for a job rendered as `job` passes the filter."""
    if flt.statuses and status not in flt.statuses:
        return False
    if not flt.needs_job:
        return True
    if job is None:
        return False
    if flt.batch is not None and job.get("batch_id") != flt.batch:
        return False
    if flt.metadata:
        meta = job.get("metadata")
        if not isinstance(meta, Mapping):
            return False
        return all(k in meta and _same(meta[k], v) for k, v in flt.metadata.items())
    return True
