"""The callback outbox in SQL: a delivery row is added in the transaction that writes the job's status
change (`add_for_status`), so the event survives any crash; workers claim a due row under a lease, try
it, and record the attempt; the sweeper finds rows nobody is carrying (`dispatch_overdue`).

Core statements on the tables, like `models.jobs`: these run on the workers' hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, and_, func, insert, literal, or_, select, true, update
from sqlalchemy.orm import Session

from genqueue.models.ids import new_id
from genqueue.models.status import TERMINAL, JobStatus
from genqueue.models.tables import ApiKey, CallbackAttempt, CallbackDelivery, Job

DELIVERIES = cast(Table, CallbackDelivery.__table__)
ATTEMPTS = cast(Table, CallbackAttempt.__table__)
_JOBS = cast(Table, Job.__table__)
_KEYS = cast(Table, ApiKey.__table__)

RUNNING_EVENT = "running"
TERMINAL_EVENT = "terminal"
BATCH_EVENT = "batch"  # a batch's every job is terminal (models.batches.batch_became_terminal)
# A message arriving this much before the row's next attempt time still counts as due (countdowns are
# rounded by the broker), so a retry message is not dropped as early.
EARLY = timedelta(seconds=0.5)


def event_for(status: JobStatus | None) -> str | None:
    """The callback event a status change is, if any."""
    if status is None:
        return None
    if status in TERMINAL:
        return TERMINAL_EVENT
    return RUNNING_EVENT if status is JobStatus.RUNNING else None


def add(session: Session, job_id: str, api_key_id: str | None, url: str, event: str, now: datetime) -> None:
    """Queue one delivery, in the caller's transaction (the one that wrote the status change)."""
    session.execute(insert(DELIVERIES).values(
        id="msg_" + new_id(), job_id=job_id, api_key_id=api_key_id, event=event, url=url, state="pending",
        attempts=0, created_at=now, next_attempt_at=now))


def add_for_batch(session: Session, batch_id: str, api_key_id: str | None, url: str, now: datetime) -> None:
    """Queue a batch's callback, in the transaction that records the batch as finished."""
    session.execute(insert(DELIVERIES).values(
        id="msg_" + new_id(), job_id=None, batch_id=batch_id, api_key_id=api_key_id, event=BATCH_EVENT, url=url,
        state="pending", attempts=0, created_at=now, next_attempt_at=now))


def add_for_status(session: Session, job_id: str, status: JobStatus | None, now: datetime) -> None:
    """In the caller's transaction (the one that moved the job to `status`): queue the callback this
    status change triggers, if the job has a callback URL (and, for `running`, asked for it). One
    INSERT ... SELECT: nothing is inserted for a job without a callback."""
    event = event_for(status)
    if event is None:
        return
    where = [_JOBS.c.id == job_id, _JOBS.c.callback_url.is_not(None)]
    if event == RUNNING_EVENT:
        where.append(_JOBS.c.callback_on_running == true())
    source = select(literal("msg_" + new_id()), _JOBS.c.id, _JOBS.c.api_key_id, literal(event),
                    _JOBS.c.callback_url, literal("pending"), literal(0), literal(now, DELIVERIES.c.created_at.type),
                    literal(now, DELIVERIES.c.next_attempt_at.type)).where(*where)
    session.execute(insert(DELIVERIES).from_select(
        ["id", "job_id", "api_key_id", "event", "url", "state", "attempts", "created_at", "next_attempt_at"],
        source))


def due_for_job(session: Session, owner: str, now: datetime) -> list[str]:
    """The pending deliveries of a job (one or two) or of a batch (one) that are due. Job and batch
    ids are both random 128-bit ids, so one id names one owner."""
    return list(session.scalars(select(DELIVERIES.c.id).where(
        or_(DELIVERIES.c.job_id == owner, DELIVERIES.c.batch_id == owner), DELIVERIES.c.state == "pending",
        _due(now)).order_by(DELIVERIES.c.created_at)))


def _due(now: datetime) -> ColumnElement[bool]:
    # A first attempt is due at once: its next_attempt_at was stamped by whichever host wrote the status
    # change, and a worker whose clock reads earlier must not wait for it.
    return or_(DELIVERIES.c.attempts == 0, DELIVERIES.c.next_attempt_at <= now + EARLY)


def claim(session: Session, delivery_id: str, now: datetime, lease: timedelta) -> Row[Any] | None:
    """Take a due, unleased delivery for one attempt (counted now, so an attempt whose worker died
    still counts); the row as claimed, or None when it is not due, leased or finished."""
    stmt = (update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.state == "pending", _due(now),
                   or_(DELIVERIES.c.lease_until.is_(None), DELIVERIES.c.lease_until < now))
            .values(attempts=DELIVERIES.c.attempts + 1, lease_until=now + lease)
            .returning(*DELIVERIES.c))
    return session.execute(stmt).one_or_none()


def freeze_body(session: Session, delivery_id: str, body: str) -> str:
    """Keep the first body ever built for this delivery: every attempt sends the same bytes."""
    session.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.body.is_(None))
                    .values(body=body))
    return str(session.scalar(select(DELIVERIES.c.body).where(DELIVERIES.c.id == delivery_id)))


def sealed_secret(session: Session, api_key_id: str | None) -> str | None:
    if api_key_id is None:
        return None
    return session.scalar(select(_KEYS.c.callback_secret_sealed).where(_KEYS.c.id == api_key_id))


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


def record(session: Session, delivery_id: str, result: AttemptResult, state: str, *,
           retry_at: datetime | None, error_code: str | None, dispatched_at: datetime | None) -> bool:
    """Record an attempt and its outcome. The row is updated only if this attempt is still the latest
    (a worker whose lease ran out while a reclaim went ahead records its attempt and changes nothing)."""
    session.execute(insert(ATTEMPTS).values(
        delivery_id=delivery_id, attempt=result.attempt, at=result.at, status_code=result.status_code,
        latency_ms=result.latency_ms, error=(result.error or None) and result.error[:200]))
    values: dict[str, Any] = {"state": state, "lease_until": None, "last_error": result.error}
    if state == "pending":
        assert retry_at is not None
        values.update(next_attempt_at=retry_at, dispatched_at=dispatched_at)
    else:
        values.update(finished_at=result.at, error_code=error_code)
    matched = session.execute(update(DELIVERIES).where(
        DELIVERIES.c.id == delivery_id, DELIVERIES.c.state == "pending",
        DELIVERIES.c.attempts == result.attempt).values(**values)).rowcount  # type: ignore[attr-defined]
    return bool(matched)


def dispatch_overdue(session: Session, now: datetime, redispatch: timedelta, limit: int = 500) -> list[str]:
    """Owners (job or batch ids) with a due delivery nobody carries: not leased, and no message sent for
    it in the last `redispatch` (or ever: a new row). Marks them sent."""
    owner = func.coalesce(DELIVERIES.c.job_id, DELIVERIES.c.batch_id).label("owner")
    rows = session.execute(select(DELIVERIES.c.id, owner).where(
        DELIVERIES.c.state == "pending", or_(DELIVERIES.c.attempts == 0, DELIVERIES.c.next_attempt_at <= now),
        or_(DELIVERIES.c.lease_until.is_(None), DELIVERIES.c.lease_until < now),
        or_(DELIVERIES.c.dispatched_at.is_(None), DELIVERIES.c.dispatched_at < now - redispatch),
    ).order_by(DELIVERIES.c.next_attempt_at).limit(limit)).all()
    if not rows:
        return []
    session.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_([r.id for r in rows])).values(dispatched_at=now))
    return list(dict.fromkeys(r.owner for r in rows))


def for_job(session: Session, job_id: str) -> list[tuple[Row[Any], list[Row[Any]]]]:
    """A job's deliveries, oldest first, each with its attempts in order."""
    deliveries = session.execute(select(DELIVERIES).where(DELIVERIES.c.job_id == job_id)
                                 .order_by(DELIVERIES.c.created_at, DELIVERIES.c.id)).all()
    if not deliveries:
        return []
    attempts = session.execute(select(ATTEMPTS).where(ATTEMPTS.c.delivery_id.in_([d.id for d in deliveries]))
                               .order_by(ATTEMPTS.c.attempt)).all()
    by_delivery: dict[str, list[Row[Any]]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return [(d, by_delivery.get(d.id, [])) for d in deliveries]


def counts(session: Session) -> dict[str, int]:
    """Deliveries by state, and attempts that failed (no answer or not 2xx), for /metrics and stats."""
    out = {"pending": 0, "delivered": 0, "failed": 0}
    for state, n in session.execute(select(DELIVERIES.c.state, func.count()).group_by(DELIVERIES.c.state)):
        out[str(state)] = int(n)
    code = ATTEMPTS.c.status_code
    out["failed_attempts"] = int(session.scalar(select(func.count()).select_from(ATTEMPTS).where(
        or_(code.is_(None), ~and_(code >= 200, code < 300)))) or 0)
    return out
