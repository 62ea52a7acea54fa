"""A job as a step sees it: an immutable snapshot of its row, never an ORM object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genqueue.models.status import JobStatus
from genqueue.worker.replicate.types import Prediction


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    id: str
    status: JobStatus
    target: str
    model: str | None
    version: str | None
    deployment: str | None
    input_public: dict[str, Any]
    input_sealed: str | None
    created_at: datetime
    deadline_at: datetime | None
    cancel_requested_at: datetime | None
    prediction_id: str | None
    prediction_status: str | None
    prediction_get_url: str | None
    prediction_cancel_url: str | None
    prediction_created_at: datetime | None
    prediction_started_at: datetime | None
    completed_at: datetime | None
    submit_started_at: datetime | None
    create_in_flight_until: datetime | None
    detected_at: datetime | None
    next_check_at: datetime | None
    output_refs: list[str] | None
    polls: int
    attempts: int
    deliveries: int
    api_key_id: str | None = None
    priority: int = 5
    # 0008: the retry policy and where the job is in it (models/tables.py Job).
    attempt: int = 1
    retries_left: int = 0
    retry_on: list[str] | None = None
    deadline_seconds: float | None = None
    submitted_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobSnapshot:
        """From a jobs row (a Core `Row` or anything with these attributes)."""
        values = {name: getattr(row, name) for name in _FIELDS}
        values["status"] = JobStatus(values["status"])
        return cls(**values)

    def replace(self, **changes: Any) -> JobSnapshot:
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(JobSnapshot))


def prediction_fields(p: Prediction) -> dict[str, Any]:
    """The columns a look at a prediction records (never its input or raw output)."""
    return {
        "prediction_id": p.id,
        "prediction_status": p.status,
        "prediction_created_at": p.created_at,
        "prediction_started_at": p.started_at,
        "completed_at": p.completed_at,
        "predict_time": p.predict_time,
        "total_time": p.total_time,
    }
