"""Compare-and-set status changes on the jobs table, and the derived timings.

A status change is `UPDATE jobs SET ... WHERE id = :id AND status = :expected`: when two workers
(or a worker and the sweeper) race on one job, exactly one wins and the other sees `False`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.status import JobStatus, check_transition
from models.tables import Job


def transition(
    session: Session, job_id: str, src: JobStatus | tuple[JobStatus, ...], dst: JobStatus, **values: Any
) -> bool:
    """Move a job from `src` (one status or any of several) to `dst`; True if this call did it."""
    sources = src if isinstance(src, tuple) else (src,)
    for s in sources:
        check_transition(s, dst)
    values.setdefault("updated_at", utcnow())
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in sources]))
        .values(status=dst.value, **values)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def touch(session: Session, job_id: str, status: JobStatus, **values: Any) -> bool:
    """Update fields of a job only while it is still in `status` (no status change)."""
    values.setdefault("updated_at", utcnow())
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == status.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 6)


def finish_timings(job: Job, finished_at: datetime) -> dict[str, float | None]:
    """The derived timings for a job that becomes terminal at `finished_at`."""
    return {
        "queue_time": _secs(job.created_at, job.submit_started_at),
        "start_time": _secs(job.prediction_created_at, job.prediction_started_at),
        "detection_lag": _secs(job.completed_at, job.detected_at),
        "storage_time": _secs(job.detected_at, finished_at) if job.detected_at else None,
        "end_to_end_time": _secs(job.created_at, finished_at),
    }
