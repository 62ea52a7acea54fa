"""Compare-and-set writes on the jobs table, and the derived timings.

Every write to a job is `UPDATE jobs SET ... WHERE id = :id AND status IN (:expected) [AND guards]`:
when two workers (or a worker, the API and the sweeper) race on one job, exactly one wins and the
others see `False`. A status change is also checked against the status machine before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Row, Table, select, update
from sqlalchemy.orm import Session

from genqueue.models.base import utcnow
from genqueue.models.status import JobStatus, check_transition
from genqueue.models.tables import Job

# Core UPDATEs on the table, not ORM-enabled ones: these run several times per job on the hot path and
# the ORM's bulk-update machinery (attribute lookup, session synchronisation) cost ~1 ms each on its
# own. Nothing is synchronised into a session: workers hold immutable snapshots, not rows.
JOBS = cast(Table, Job.__table__)

# An active job whose next check is this overdue lost its message (a worker died with it, Redis
# restarted empty): the sweeper sends the step again, and the ops figures count it as stuck. Steps
# run at their check time within a second when workers keep up; a backlog is recognised separately.
STUCK_AFTER = timedelta(seconds=30)
# A queued job waits in its lane in Redis (genqueue.sched.ready), as long as the backlog takes: its
# next_check_at is only when the sweeper makes sure it is still there (and then again this much later).
QUEUED_AUDIT = timedelta(seconds=60)


def compare_and_set(
    session: Session,
    job_id: str,
    expect: JobStatus | Iterable[JobStatus],
    values: Mapping[str, Any],
    *,
    to: JobStatus | None = None,
    guard: Mapping[str, Any] | None = None,
    returning: bool = False,
) -> Row[Any] | bool | None:
    """Write `values` (and status `to`, if given) to the job while it is in one of `expect` and every
    `guard` column still holds its value. Returns whether it matched, or with `returning` the whole
    row as written (None when it did not match)."""
    sources = (expect,) if isinstance(expect, JobStatus) else tuple(expect)
    if to is not None:
        for src in sources:
            check_transition(src, to)
    row = dict(values)
    row.setdefault("updated_at", utcnow())
    if to is not None:
        row["status"] = to.value
    status = JOBS.c.status
    where = [JOBS.c.id == job_id,
             status == sources[0].value if len(sources) == 1 else status.in_([s.value for s in sources])]
    where += [JOBS.c[name] == value for name, value in (guard or {}).items()]
    stmt = update(JOBS).where(*where).values(**row)
    if returning:
        return session.execute(stmt.returning(*JOBS.c)).one_or_none()
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def transition(
    session: Session, job_id: str, src: JobStatus | tuple[JobStatus, ...], dst: JobStatus, **values: Any
) -> bool:
    """Move a job from `src` (one status or any of several) to `dst`; True if this call did it."""
    return bool(compare_and_set(session, job_id, src, values, to=dst))


def touch(session: Session, job_id: str, status: JobStatus, **values: Any) -> bool:
    """Update fields of a job only while it is still in `status` (no status change)."""
    return bool(compare_and_set(session, job_id, status, values))


class Timeline(Protocol):
    """The moments the derived timings are computed from (a job row or a worker's snapshot)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def submit_started_at(self) -> datetime | None: ...
    @property
    def prediction_created_at(self) -> datetime | None: ...
    @property
    def prediction_started_at(self) -> datetime | None: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def detected_at(self) -> datetime | None: ...


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 6)


def finish_timings(job: Timeline, finished_at: datetime) -> dict[str, float | None]:
    """The derived timings for a job that becomes terminal at `finished_at`."""
    return {
        "queue_time": _secs(job.created_at, job.submit_started_at),
        "start_time": _secs(job.prediction_created_at, job.prediction_started_at),
        "detection_lag": _secs(job.completed_at, job.detected_at),
        "storage_time": _secs(job.detected_at, finished_at) if job.detected_at else None,
        "end_to_end_time": _secs(job.created_at, finished_at),
    }


def newest_sealed(session: Session) -> tuple[str, str] | None:
    """(id, sealed token) of the most recently created job that has sealed secrets, if any: the one a
    process checks its key against at start-up (the newest was sealed with the current key)."""
    row = session.execute(
        select(JOBS.c.id, JOBS.c.input_sealed).where(JOBS.c.input_sealed.is_not(None))
        .order_by(JOBS.c.created_at.desc()).limit(1)
    ).one_or_none()
    return (row.id, row.input_sealed) if row is not None else None
