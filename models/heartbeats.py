"""Worker heartbeats: telling a create in flight in a dead worker from one in a slow worker.

Replicate has no idempotency key, so a job claimed for a create (`submitting`) is looked up at
Replicate only after its create window (the create's own timeout and more): before that the claimant
may still get its answer, and a second create would be a second, billed prediction. When the claimant
is dead, that wait is pure delay: the chaos runs' slowest recoveries were such jobs (~47 s).

Each worker beats in SQL once a second (this module is the SQL). A claim records the worker that made
it. The sweeper reads the beats and decides who is dead (`worker.lifecycle.liveness`, a pure rule): a
claimant counts as dead only when its silence is its own: another worker has beaten without a break
for the last DEAD_AFTER seconds (so the database was reachable all that time) and the claimant has not
beaten in them. After a database outage every worker starts a new run, so nobody is judged until the
live ones have beaten again; a lone worker that was restarted judges its dead predecessor DEAD_AFTER
after its own start. All times come from the database's clock, so a worker host with a skewed clock
can neither look dead nor make others look dead.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Float, Table, and_, case, cast, delete, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from genqueue.models.jobs import JOBS
from genqueue.models.status import JobStatus
from genqueue.models.tables import WorkerHeartbeat

HEARTBEATS: Table = WorkerHeartbeat.__table__  # type: ignore[assignment]

BEAT_EVERY = 1.0  # seconds between a worker's beats
BROKEN_AFTER = 3.0  # a gap this long between two beats starts a new unbroken run (`since`)
FORGET_AFTER = 3600.0  # rows of workers silent this long are deleted


class Beat(NamedTuple):
    worker_id: str
    beat_at: float  # its last beat, seconds since the epoch by the database's clock
    since: float  # the start of its current unbroken run of beats


def db_epoch(session: Session) -> ColumnElement[float]:
    """Now, in seconds since the epoch, by the database's clock."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return (func.julianday("now") - 2440587.5) * 86400.0


def beat(session: Session, worker_id: str) -> None:
    now = db_epoch(session)
    hb = HEARTBEATS.c
    run_start = case((hb.beat_at < now - BROKEN_AFTER, now), else_=hb.since)
    updated = session.execute(update(HEARTBEATS).where(hb.id == worker_id).values(since=run_start, beat_at=now))
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.execute(insert(HEARTBEATS).values(id=worker_id, beat_at=now, since=now))


def read_beats(session: Session) -> tuple[float, list[Beat]]:
    """The database's now, and every worker's last beat and current run start."""
    db_now = session.execute(select(db_epoch(session))).scalar_one()
    rows = session.execute(select(HEARTBEATS.c.id, HEARTBEATS.c.beat_at, HEARTBEATS.c.since)).all()
    return float(db_now), [Beat(r.id, float(r.beat_at), float(r.since)) for r in rows]


def open_claims(session: Session, claimants: Collection[str], now: datetime,
                limit: int = 500) -> list[tuple[str, str]]:
    """(job id, claimant) of `submitting` jobs of these claimants whose create window is still open."""
    if not claimants:
        return []
    rows = session.execute(
        select(JOBS.c.id, JOBS.c.claimed_by)
        .where(JOBS.c.status == JobStatus.SUBMITTING.value, JOBS.c.claimed_by.in_(list(claimants)),
               JOBS.c.create_in_flight_until > now)
        .limit(limit)
    ).all()
    return [(r.id, r.claimed_by) for r in rows]


def close_create_window(session: Session, job_id: str, claimant: str, now: datetime) -> bool:
    """End the create window of a dead claimant's job (guarded by the claim, so a new claim made
    meanwhile is untouched): its next submit step looks the prediction up at once."""
    result = session.execute(
        update(JOBS)
        .where(and_(JOBS.c.id == job_id, JOBS.c.status == JobStatus.SUBMITTING.value, JOBS.c.claimed_by == claimant))
        .values(create_in_flight_until=now, next_check_at=now, updated_at=now))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_silent(session: Session) -> None:
    session.execute(delete(HEARTBEATS).where(HEARTBEATS.c.beat_at < db_epoch(session) - FORGET_AFTER))
