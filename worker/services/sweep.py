"""The sweeper (Celery beat): SQL is the truth, so anything overdue there is re-enqueued.

`next_check_at` on an active job is when its next step should run. A job whose check is overdue by
more than `stuck_after` lost its message (Redis restarted empty, a worker died, an enqueue failed):
the sweeper sends the step again. Steps are idempotent and guarded by compare-and-set, so a
duplicate message is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import ColumnElement, and_, or_, select, update

from genqueue.models.base import utcnow
from genqueue.models.status import JobStatus
from genqueue.models.tables import Job
from genqueue.worker.enqueue import QUEUE, STORE_QUEUE
from genqueue.worker.runtime import WorkerContext

log = logging.getLogger(__name__)

STEP_FOR_STATUS = {
    JobStatus.QUEUED: "submit",
    JobStatus.SUBMITTING: "submit",
    JobStatus.RUNNING: "poll",
    JobStatus.STORING: "store",
}


@dataclass
class SweepReport:
    requeued: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requeued.values())


# Steps whose messages wait in a list of their own, so a long list means "behind", not "lost".
_BACKLOG_QUEUES = {JobStatus.QUEUED: QUEUE, JobStatus.STORING: STORE_QUEUE}


def _skip_backlog(ctx: WorkerContext, rows: list[Any]) -> list[Any]:
    """Queued jobs (or finished ones waiting for their copy) overdue only because the workers are
    behind still have their message in the broker's list: re-sending them all every sweep would
    double a long backlog. While a list holds at least as many messages as there are overdue jobs
    of its step, leave those alone."""
    for status, queue in _BACKLOG_QUEUES.items():
        overdue = sum(1 for r in rows if r.status == status)
        if not overdue:
            continue
        try:
            waiting = int(ctx.redis.llen(queue))
        except redis.RedisError:
            waiting = 0
        if waiting >= overdue:
            rows = [r for r in rows if r.status != status]
    return rows


def _due(ctx: WorkerContext, now: datetime) -> ColumnElement[bool]:
    overdue = now - timedelta(seconds=ctx.settings.stuck_after)
    lost = or_(Job.next_check_at < overdue, Job.next_check_at.is_(None))
    if not ctx.settings.webhook_url:
        return lost
    # Webhooks on: a running job has no poll message waiting (see tasks._follow); its safety-net
    # poll is due as soon as next_check_at passes.
    return or_(lost, and_(Job.status == JobStatus.RUNNING.value, Job.next_check_at < now))


def sweep(ctx: WorkerContext, *, batch: int = 2000) -> SweepReport:
    now = utcnow()
    report = SweepReport()
    with ctx.sessions.begin() as session:
        rows = session.execute(
            select(Job.id, Job.status)
            .where(Job.status.in_([s.value for s in STEP_FOR_STATUS]), _due(ctx, now))
            .limit(batch)
        ).all()
        rows = _skip_backlog(ctx, list(rows))
        if not rows:
            return report
        # Push the check forward first, so the next sweep doesn't re-send while these are in flight.
        # A lost step counts as a delivery: a job whose step keeps vanishing (it kills its worker)
        # reaches max_deliveries and is failed by that step instead of looping forever.
        session.execute(
            update(Job).where(Job.id.in_([r.id for r in rows]))
            .values(next_check_at=now, deliveries=Job.deliveries + 1)
            .execution_options(synchronize_session=False)
        )
        # ... but waiting in a queue is not a delivery: queued jobs don't count.
        session.execute(
            update(Job).where(Job.id.in_([r.id for r in rows if r.status == JobStatus.QUEUED]))
            .values(deliveries=Job.deliveries - 1)
            .execution_options(synchronize_session=False)
        )
    for job_id, status in rows:
        step = STEP_FOR_STATUS[JobStatus(status)]
        if step == "submit":
            ctx.enqueuer.submit([job_id])
        elif step == "poll":
            ctx.enqueuer.poll(job_id)
        else:
            ctx.enqueuer.store(job_id)
        report.requeued[step] = report.requeued.get(step, 0) + 1
    # With webhooks on, safety-net polls are routine, not a sign of lost work.
    level = logging.INFO if ctx.settings.webhook_url and set(report.requeued) == {"poll"} else logging.WARNING
    log.log(level, "sweep re-enqueued %d overdue jobs %s", report.total, report.requeued)
    return report
