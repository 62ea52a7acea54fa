"""Reading a job's snapshot and writing a decision: the only place steps touch the jobs table."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from genqueue.core.events import publish
from genqueue.models import attempts, callbacks
from genqueue.models.base import utcnow
from genqueue.models.jobs import JOBS, compare_and_set
from genqueue.worker.context import WorkerContext
from genqueue.worker.lifecycle.decision import NOTHING, Decision, Deliveries, Next
from genqueue.worker.lifecycle.snapshot import JobSnapshot

log = logging.getLogger(__name__)

_SELECT = select(JOBS)  # built once; the hot path loads a job per step


def load(session: Session, job_id: str) -> JobSnapshot | None:
    row = session.execute(_SELECT.where(JOBS.c.id == job_id)).one_or_none()
    return JobSnapshot.from_row(row) if row is not None else None


def _values(d: Decision) -> dict[str, Any]:
    values = dict(d.values)
    if d.deliveries is Deliveries.RESET:
        values["deliveries"] = 0
    elif d.deliveries is Deliveries.COUNT:
        values["deliveries"] = JOBS.c.deliveries + 1
    values["updated_at"] = utcnow()
    return values


def write(session: Session, job_id: str, d: Decision) -> bool:
    """The decision's compare-and-set, in the caller's transaction; True if it matched. A decision that
    starts a new attempt records the finished one (job_attempts) in the same transaction."""
    if callbacks.event_for(d.to) is None:
        won = bool(compare_and_set(session, job_id, d.expect, _values(d), to=d.to, guard=d.guard))
        if won and d.archive is not None:
            attempts.add_record(session, [d.archive])
        return won
    return write_returning(session, job_id, d) is not None


def write_returning(session: Session, job_id: str, d: Decision) -> JobSnapshot | None:
    """The same, returning the job as written (None when it did not match)."""
    row = compare_and_set(session, job_id, d.expect, _values(d), to=d.to, guard=d.guard, returning=True)
    if row is None or isinstance(row, bool):
        return None
    if d.archive is not None:
        attempts.add_record(session, [d.archive])
    _callback_outbox(session, row, d)
    return JobSnapshot.from_row(row)


def _callback_outbox(session: Session, row: Row[Any], d: Decision) -> None:
    """A status change that triggers a callback queues it in the same transaction (the durable outbox,
    models.callbacks); the delivery runs later on the callbacks queue, never in this step. The row
    comes back with the UPDATE (RETURNING), so a job without a callback costs no statement."""
    event = callbacks.event_for(d.to)
    if event is None or not row.callback_url:
        return
    if event == callbacks.TERMINAL_EVENT or row.callback_on_running:
        callbacks.add(session, row.id, row.api_key_id, row.callback_url, event, utcnow())


def commit(ctx: WorkerContext, job: JobSnapshot, d: Decision | None) -> Next:
    """Write the decision in a transaction of its own, then its side effects: the model's observed
    duration and one log line. Returns the follow-up, or nothing when another writer won."""
    if d is None:
        return NOTHING
    with ctx.sessions.begin() as session:
        if not write(session, job.id, d):
            return NOTHING
    return effects(ctx, job, d)


def effects(ctx: WorkerContext, job: JobSnapshot, d: Decision) -> Next:
    """What follows a decision that was written (committed: a listener that reads the job sees it)."""
    if d.to is not None:
        publish(ctx.redis, job.id, d.to.value)  # job events (core/events.py); never raises
    if d.observed_duration is not None:
        ctx.durations.observe(job.model, d.observed_duration)
    if d.log:
        log.info("job=%s %s", job.id, d.log)
    return d.then
