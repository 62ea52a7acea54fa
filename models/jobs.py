"""Compare-and-set status changes on the jobs table, and the derived timings.

A status change is `UPDATE jobs SET ... WHERE id = :id AND status = :expected`: when two workers
(or a worker and the sweeper) race on one job, exactly one wins and the other sees `False`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from genqueue.models.base import utcnow
from genqueue.models.status import JobStatus, check_transition
from genqueue.models.tables import Job

# Core UPDATEs on the table, not ORM-enabled ones: these run several times per job on the hot path and
# the ORM's bulk-update machinery (attribute lookup, session synchronisation) cost ~1 ms each on its
# own. Nothing is synchronised into the session anyway: callers hold detached rows.
_JOBS = cast(Table, Job.__table__)

def transition(
    session: Session, job_id: str, src: JobStatus | tuple[JobStatus, ...], dst: JobStatus, **values: Any
) -> bool:
    """Move a job from `src` (one status or any of several) to `dst`; True if this call did it."""
    sources = src if isinstance(src, tuple) else (src,)
    for s in sources:
        check_transition(s, dst)
    values.setdefault("updated_at", utcnow())
    status = _JOBS.c.status
    where = status == sources[0].value if len(sources) == 1 else status.in_([s.value for s in sources])
    stmt = update(_JOBS).where(_JOBS.c.id == job_id, where).values(status=dst.value, **values)
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def touch(session: Session, job_id: str, status: JobStatus, **values: Any) -> bool:
    """Update fields of a job only while it is still in `status` (no status change)."""
    values.setdefault("updated_at", utcnow())
    stmt = update(_JOBS).where(_JOBS.c.id == job_id, _JOBS.c.status == status.value).values(**values)
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
