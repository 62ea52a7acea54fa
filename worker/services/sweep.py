"""The sweeper (Celery beat): SQL is the truth, so anything overdue there is sent again.

`next_check_at` on an active job is when its next step should run. A job whose check is overdue by
more than STUCK_AFTER lost its message (Redis restarted empty, a worker died with it, an enqueue
failed): the sweeper sends the step again, and that counts as a delivery. Recovery does not wait that
long: a step overdue by FAST_RESEND whose message is surely not waiting in its queue's list is sent
again at once, without counting a delivery. Overdue and not waiting means either the message is gone
or a busy worker still holds it; in the second case the duplicate is dropped by the step's own rules
(it arrives before the check time the live chain wrote, or finds the job past its step). Steps are idempotent and
guarded by compare-and-set, so a duplicate message is harmless. With a follow strategy that sends no
poll messages (webhooks), a running job's safety-net poll is due as soon as its next_check_at passes,
and the sweeper sends it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import ColumnElement, and_, or_, select, update

from genqueue.models import batches, callbacks, retention
from genqueue.models.heartbeats import close_create_window, forget_silent, open_claims, read_beats
from genqueue.models.jobs import JOBS, QUEUED_AUDIT, STUCK_AFTER
from genqueue.models.status import JobStatus
from genqueue.sched.ready import entry
from genqueue.storage import StorageError
from genqueue.worker.context import WorkerContext
from genqueue.worker.enqueue import CALLBACK, FOLLOW_QUEUE, QUEUE, STORE_QUEUE, TASK_FOR_STEP
from genqueue.worker.lifecycle.decision import Step
from genqueue.worker.lifecycle.liveness import dead_workers

log = logging.getLogger(__name__)

STEP_FOR_STATUS = {
    JobStatus.QUEUED: Step.SUBMIT,
    JobStatus.SUBMITTING: Step.SUBMIT,
    JobStatus.RUNNING: Step.POLL,
    JobStatus.STORING: Step.STORE,
}
# Each step's messages wait in a list of their own, so a list at least as long as the overdue jobs of
# its step means the workers are behind, not that messages were lost: re-sending them all every sweep
# would double a long backlog.
_QUEUE_FOR_STEP = {Step.SUBMIT: QUEUE, Step.POLL: FOLLOW_QUEUE, Step.STORE: STORE_QUEUE}
# With the sweep every 2 s (worker.celery_app.SWEEP_INTERVAL), a lost step runs again 2-4 s after it
# was due: the chaos suite's recovery figure (fault cleared -> job moves) is measured against 5 s.
FAST_RESEND = timedelta(seconds=2)


@dataclass
class SweepReport:
    requeued: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requeued.values())


def _resendable(ctx: WorkerContext, rows: list[Any], now: datetime) -> list[Any]:
    """Of the overdue rows, those whose message is surely not waiting in its queue. Per step: the list
    holds `waiting` messages, so at least `overdue - waiting` of the overdue jobs have none there; the
    most overdue of them are taken (a list at least as long as the overdue jobs: the workers are
    behind, and nothing is re-sent)."""
    out: list[Any] = []
    for step, queue in _QUEUE_FOR_STEP.items():
        overdue = [r for r in rows if STEP_FOR_STATUS[JobStatus(r.status)] is step]
        if not overdue:
            continue
        try:
            waiting = int(ctx.redis.llen(queue))
        except redis.RedisError:
            waiting = 0
        overdue.sort(key=lambda r: (r.next_check_at is not None, r.next_check_at))
        if step is Step.SUBMIT and waiting:
            # A backlog of new jobs: workers hold some of its messages (prefetched, waiting for a
            # thread) where the list does not show them, so a short list proves little. Until the
            # list is empty only STUCK_AFTER overdue jobs count (W2 with 10,000 queued re-sent ~130
            # held submits every sweep under the 2 s rule: 2x the worker CPU).
            overdue = [r for r in overdue if _is_lost(r, now)]
        out += overdue[:max(0, len(overdue) - waiting)]
    return out


def _due(ctx: WorkerContext, now: datetime) -> ColumnElement[bool]:
    lost = or_(JOBS.c.next_check_at < now - FAST_RESEND, JOBS.c.next_check_at.is_(None))
    if ctx.policy.follow.sends_polls:
        return lost
    return or_(lost, and_(JOBS.c.status == JobStatus.RUNNING.value, JOBS.c.next_check_at < now))


def database_now(ctx: WorkerContext) -> datetime:
    """Now by the database's clock (`worker.clock`, read at most every 30 s). The sweep runs on
    whichever worker takes its message, and decides for the whole fleet: what it calls overdue, and
    the check time it writes, must not depend on that host's clock. A host 90 s ahead
    (tests/chaos/test_hosts.py) otherwise found every job "overdue", counted their live steps as lost
    (poison after 8) and pushed their check time 90 s ahead, so the other hosts dropped those jobs'
    messages as early duplicates until it ran them itself."""
    return ctx.clock.now()


def sweep(ctx: WorkerContext, *, batch: int = 2000) -> SweepReport:
    now = database_now(ctx)
    report = SweepReport()
    _release_dead_claims(ctx, now, report)
    _dispatch_callbacks(ctx, now, report)
    _audit_queued(ctx, now, report, batch)
    with ctx.sessions.begin() as session:
        batches.close_finished(session, now)  # the batch callback's trigger (models/batches.py)
    _retention(ctx, now, report)
    with ctx.sessions.begin() as session:
        rows = session.execute(
            select(JOBS.c.id, JOBS.c.status, JOBS.c.next_check_at)
            .where(JOBS.c.status.in_([s.value for s in STEP_FOR_STATUS if s is not JobStatus.QUEUED]),
                   _due(ctx, now))
            .limit(batch)
        ).all()
        rows = _resendable(ctx, list(rows), now)
        if not rows:
            return report
        # Push the check forward first, so the next sweep doesn't re-send while these are in flight.
        # A lost step counts as a delivery (lifecycle.decision.Deliveries): a job whose step keeps
        # vanishing (it kills its worker) is failed by that step instead of looping forever. Waiting in
        # a queue is not a delivery: queued jobs don't count, nor do routine safety-net polls.
        lost = [r.id for r in rows if r.status != JobStatus.QUEUED and _is_lost(r, now)]
        session.execute(update(JOBS).where(JOBS.c.id.in_([r.id for r in rows])).values(next_check_at=now))
        if lost:
            session.execute(update(JOBS).where(JOBS.c.id.in_(lost)).values(deliveries=JOBS.c.deliveries + 1))
    for row in rows:
        step = STEP_FOR_STATUS[JobStatus(row.status)]
        ctx.enqueuer.send(TASK_FOR_STEP[step], [row.id])
        report.requeued[step.value] = report.requeued.get(step.value, 0) + 1
    level = logging.WARNING if lost else logging.INFO
    log.log(level, "sweep re-sent %d overdue steps %s (%d lost)", report.total, report.requeued, len(lost))
    return report


def _audit_queued(ctx: WorkerContext, now: datetime, report: SweepReport, batch: int) -> None:
    """Queued jobs wait in their lanes (`sched.ready`) for as long as the backlog takes, so an overdue
    check on one means only "make sure it is there": each is put back unless it is in its lane or in
    flight (an idempotent no-op for almost all), and checked again QUEUED_AUDIT later. Jobs whose
    enqueue failed at intake are due at once; Redis losing every lane is the dispatcher's to repair
    (its epoch key), at once and in order."""
    due = or_(JOBS.c.next_check_at < now - FAST_RESEND, JOBS.c.next_check_at.is_(None))
    with ctx.sessions.begin() as session:
        rows = session.execute(
            select(JOBS.c.id, JOBS.c.priority, JOBS.c.api_key_id, JOBS.c.created_at)
            .where(JOBS.c.status == JobStatus.QUEUED.value, due).limit(batch)
        ).all()
        if not rows:
            return
        session.execute(update(JOBS).where(JOBS.c.id.in_([r.id for r in rows]), JOBS.c.status == JobStatus.QUEUED.value)
                        .values(next_check_at=now + QUEUED_AUDIT))
    added = ctx.ready.requeue([entry(r.id, r.priority, r.api_key_id, r.created_at.timestamp()) for r in rows])
    if added:
        report.requeued["enqueue"] = added
        log.warning("sweep put %d queued jobs back in their lanes (of %d checked)", added, len(rows))


# Jobs whose outputs are deleted per sweep (a sweep every 2 s: 3,000 a minute), and sealed secrets
# dropped per sweep: bounded, so a day of expiries never makes one sweep long.
RETENTION_BATCH = 100
SECRETS_BATCH = 1000


def _retention(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    """Delete what retention says is due (models/retention.py), and the secrets past the replay window.
    A storage that refuses a delete leaves its job due for the next sweep; the others go on."""
    with ctx.sessions.begin() as session:
        dropped = retention.drop_replay_secrets(session, now, timedelta(seconds=ctx.settings.replay_window),
                                                SECRETS_BATCH)
        due = retention.due_for_retention(session, now, RETENTION_BATCH)
    erased = 0
    for job_id in due:
        try:
            erased += retention.erase(ctx.sessions, ctx.storage, job_id, now)
        except StorageError as exc:
            log.warning("retention: job=%s outputs not deleted yet (%s)", job_id, exc.reason or type(exc).__name__)
    if erased:
        report.requeued["retention"] = erased
        log.info("retention deleted the outputs and input of %d jobs", erased)
    if dropped:
        report.requeued["secrets_dropped"] = dropped


def _is_lost(row: Any, now: datetime) -> bool:
    return row.next_check_at is None or row.next_check_at < now - STUCK_AFTER



# A due callback whose message was sent this long ago and still nobody claimed it: sent again.
CALLBACK_REDISPATCH = timedelta(seconds=30)


def _dispatch_callbacks(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    """Send the callback step for due deliveries nobody carries: new outbox rows (their status change
    was committed by a step or the API), retries too far out for a countdown, and rows of a worker
    that died mid-attempt (its lease ran out)."""
    with ctx.sessions.begin() as session:
        job_ids = callbacks.dispatch_overdue(session, now, CALLBACK_REDISPATCH)
    for job_id in job_ids:
        ctx.enqueuer.send(CALLBACK, [job_id])
    if job_ids:
        report.requeued["callback"] = report.requeued.get("callback", 0) + len(job_ids)


def _release_dead_claims(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    """A job claimed by a worker that died mid-create is looked up at Replicate now, not when its
    create window ends (`models.heartbeats` says when a claimant counts as dead)."""
    with ctx.sessions.begin() as session:
        db_now, beats = read_beats(session)
        claims = open_claims(session, dead_workers(beats, db_now), now)
        released = [job_id for job_id, claimant in claims if close_create_window(session, job_id, claimant, now)]
        if random.random() < 0.01:  # now and then: rows of workers gone for an hour
            forget_silent(session)
    for job_id in released:
        ctx.enqueuer.send(TASK_FOR_STEP[Step.SUBMIT], [job_id])
    if released:
        report.requeued["submit"] = report.requeued.get("submit", 0) + len(released)
        log.warning("sweep looks up %d creates whose worker died: %s", len(released), released[:5])
